//! SendTargets tests: portal parsing, answer parsing, and the exchange against a scripted
//! target that splits its answer over several Text Responses.

use proptest::prelude::*;

use super::*;
use crate::wire::{Reject, parse_text};

fn portal(host: &str, port: u16, tpgt: Option<u16>) -> Portal {
    Portal {
        host: host.into(),
        port,
        tpgt,
    }
}

#[test]
fn target_address_forms() {
    let cases = [
        ("[fe80::1]:3260,1", portal("fe80::1", 3260, Some(1))),
        ("10.0.0.1,1", portal("10.0.0.1", 3260, Some(1))),
        ("10.0.0.1:3261", portal("10.0.0.1", 3261, None)),
        ("disk.example.com", portal("disk.example.com", 3260, None)),
        ("[::1]", portal("::1", 3260, None)),
        ("[::1],2", portal("::1", 3260, Some(2))),
        ("fe80::1", portal("fe80::1", 3260, None)),
        (
            "[fe80::1%eth0]:3260,0x10",
            portal("fe80::1%eth0", 3260, Some(16)),
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(Portal::parse(value), Ok(expected), "{value}");
    }
    for bad in [
        "",
        ":3260",
        "[fe80::1",
        "[fe80::1]3260",
        "10.0.0.1:0",
        "10.0.0.1:99999",
        "10.0.0.1:",
        "10.0.0.1,x",
        "10.0.0.1,65536",
        "10.0.0.1,",
        "a b:1",
        "[]:3260",
    ] {
        assert!(
            matches!(
                Portal::parse(bad),
                Err(DiscoveryError::InvalidAddress { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn portal_display() {
    assert_eq!(
        portal("fe80::1", 3260, Some(1)).to_string(),
        "[fe80::1]:3260"
    );
    assert_eq!(portal("10.0.0.1", 3261, None).to_string(), "10.0.0.1:3261");
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn answer_parsing() {
    let answer = pairs(&[
        ("TargetName", "iqn.2026-01.test:a"),
        ("TargetAddress", "10.0.0.1:3260,1"),
        ("TargetAddress", "[fe80::1]:3260,2"),
        ("TargetAlias", "disk a"),
        ("TargetName", "iqn.2026-01.test:b"),
        ("TargetName", "iqn.2026-01.test:c"),
        ("TargetAddress", "10.0.0.3"),
    ]);
    let targets = parse_send_targets(&answer).unwrap();
    assert_eq!(
        targets,
        vec![
            DiscoveredTarget {
                name: "iqn.2026-01.test:a".into(),
                portals: vec![
                    portal("10.0.0.1", 3260, Some(1)),
                    portal("fe80::1", 3260, Some(2))
                ],
            },
            DiscoveredTarget {
                name: "iqn.2026-01.test:b".into(),
                portals: vec![]
            },
            DiscoveredTarget {
                name: "iqn.2026-01.test:c".into(),
                portals: vec![portal("10.0.0.3", 3260, None)]
            },
        ]
    );
    assert_eq!(parse_send_targets(&[]), Ok(vec![]));
    assert_eq!(
        parse_send_targets(&pairs(&[
            ("TargetAddress", "10.0.0.1"),
            ("TargetName", "iqn.x")
        ])),
        Err(DiscoveryError::AddressBeforeName("10.0.0.1".into()))
    );
    assert_eq!(
        parse_send_targets(&pairs(&[("SendTargets", "Reject")])),
        Err(DiscoveryError::Refused("Reject".into()))
    );
    assert!(
        parse_send_targets(&pairs(&[
            ("TargetName", "iqn.x"),
            ("TargetAddress", "[::1")
        ]))
        .is_err()
    );
}

fn request(exchange: &mut SendTargets) -> TextRequest {
    match exchange.poll_transmit() {
        Some(Pdu::TextRequest(request)) => request,
        other => panic!("expected a Text Request, got {other:?}"),
    }
}

fn response(request: &TextRequest, data: &[u8], final_: bool, cont: bool, ttt: u32) -> Pdu {
    Pdu::TextResponse(TextResponse {
        final_,
        cont,
        lun: Lun::default(),
        itt: request.itt,
        ttt,
        stat_sn: 40 + request.cmd_sn,
        exp_cmd_sn: request.cmd_sn.wrapping_add(1),
        max_cmd_sn: request.cmd_sn.wrapping_add(8),
        data: Bytes::copy_from_slice(data),
    })
}

/// Many targets with several portals each: an answer of roughly 10 KiB.
fn big_answer() -> (Vec<u8>, Vec<DiscoveredTarget>) {
    let mut text = Vec::new();
    let mut expected = Vec::new();
    for t in 0..60 {
        let name = format!("iqn.2026-01.test.storage:volume-{t:04}");
        text.extend_from_slice(format!("TargetName={name}\0").as_bytes());
        let mut portals = Vec::new();
        for p in 0..3u16 {
            text.extend_from_slice(format!("TargetAddress=10.1.{t}.{p}:3260,{p}\0").as_bytes());
            portals.push(portal(&format!("10.1.{t}.{p}"), 3260, Some(p)));
        }
        text.extend_from_slice(format!("TargetAddress=[fd00::{t:x}]:3261,9\0").as_bytes());
        portals.push(portal(&format!("fd00::{t:x}"), 3261, Some(9)));
        expected.push(DiscoveredTarget { name, portals });
    }
    (text, expected)
}

#[test]
fn request_format() {
    let established = crate::login::Established {
        negotiated: Default::default(),
        tsih: 1,
        cmd_sn: 10,
        stat_sn: 20,
        exp_cmd_sn: 10,
        max_cmd_sn: 12,
        chap_algorithm: None,
        target_authenticated: false,
    };
    let mut exchange = SendTargets::after_login(&established);
    let first = request(&mut exchange);
    assert_eq!(
        parse_text(&first.data).unwrap(),
        pairs(&[("SendTargets", "All")])
    );
    assert!(first.final_ && !first.cont && first.immediate);
    assert_eq!(
        (first.itt, first.ttt, first.cmd_sn, first.exp_stat_sn),
        (1, RESERVED_TAG, 10, 21)
    );
    assert!(
        exchange.poll_transmit().is_none(),
        "one request outstanding"
    );
    exchange
        .handle_pdu(response(
            &first,
            b"TargetName=iqn.x\0",
            true,
            false,
            RESERVED_TAG,
        ))
        .unwrap();
    let targets = exchange.poll_outcome().unwrap().unwrap();
    assert_eq!(
        targets,
        vec![DiscoveredTarget {
            name: "iqn.x".into(),
            portals: vec![]
        }]
    );
    assert_eq!((exchange.cmd_sn(), exchange.exp_stat_sn()), (10, 51));
}

#[test]
fn answer_over_several_pdus() {
    let (text, expected) = big_answer();
    for chunk_len in [1000, 4096, 8192, 333] {
        let mut exchange = SendTargets::new(7, 100, 5);
        let mut current = request(&mut exchange);
        let chunks: Vec<&[u8]> = text.chunks(chunk_len).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            // C is set when a key=value pair continues in the next PDU.
            let cont = !last && chunk.last() != Some(&0);
            let ttt = if last {
                RESERVED_TAG
            } else {
                0x5000 + i as u32
            };
            exchange
                .handle_pdu(response(&current, chunk, last, cont, ttt))
                .unwrap();
            if last {
                break;
            }
            let next = request(&mut exchange);
            assert!(next.data.is_empty() && next.final_ && !next.cont);
            assert_eq!(next.ttt, ttt, "TTT echoed");
            assert_eq!(next.cmd_sn, 100, "immediate requests keep CmdSN");
            assert_eq!(next.exp_stat_sn, 40 + current.cmd_sn + 1);
            current = next;
        }
        assert_eq!(
            exchange.poll_outcome(),
            Some(Ok(expected.clone())),
            "chunks of {chunk_len}"
        );
    }
}

#[test]
fn misbehaving_targets() {
    type Make = fn(&TextRequest) -> Pdu;
    let cases: [(Make, DiscoveryError); 6] = [
        (
            |r| {
                let Pdu::TextResponse(mut t) = response(r, b"", true, false, RESERVED_TAG) else {
                    unreachable!()
                };
                t.itt = 99;
                Pdu::TextResponse(t)
            },
            DiscoveryError::PeerMisbehaved("text response for another task"),
        ),
        (
            |r| response(r, b"", true, true, RESERVED_TAG),
            DiscoveryError::PeerMisbehaved("text response with both F and C bits"),
        ),
        (
            |r| response(r, b"", true, false, 5),
            DiscoveryError::PeerMisbehaved("Target Transfer Tag inconsistent with the F bit"),
        ),
        (
            |r| response(r, b"TargetName=x\0", false, false, RESERVED_TAG),
            DiscoveryError::PeerMisbehaved("Target Transfer Tag inconsistent with the F bit"),
        ),
        (
            |r| response(r, b"TargetName", true, false, RESERVED_TAG),
            DiscoveryError::Text(TextError::Unterminated),
        ),
        (
            |_| {
                Pdu::Reject(Reject {
                    reason: RejectReason::PROTOCOL_ERROR,
                    ..Reject::default()
                })
            },
            DiscoveryError::PduRejected {
                reason: RejectReason::PROTOCOL_ERROR,
            },
        ),
    ];
    for (make, expected) in cases {
        let mut exchange = SendTargets::new(1, 1, 1);
        let first = request(&mut exchange);
        assert_eq!(exchange.handle_pdu(make(&first)), Err(expected.clone()));
        assert_eq!(exchange.poll_outcome(), Some(Err(expected)));
        assert_eq!(
            exchange.handle_pdu(make(&first)),
            Err(DiscoveryError::Finished)
        );
    }
    let mut exchange = SendTargets::new(1, 1, 1);
    let first = request(&mut exchange);
    let bad = response(
        &first,
        b"TargetAddress=10.0.0.1\0TargetName=iqn.x\0",
        true,
        false,
        RESERVED_TAG,
    );
    exchange.handle_pdu(bad).unwrap();
    assert_eq!(
        exchange.poll_outcome(),
        Some(Err(DiscoveryError::AddressBeforeName("10.0.0.1".into())))
    );
}

#[test]
fn endless_answer_is_bounded() {
    let mut exchange = SendTargets::new(1, 1, 1);
    let mut current = request(&mut exchange);
    for i in 0.. {
        if exchange
            .handle_pdu(response(&current, b"X-a=1\0", false, false, 9))
            .is_err()
        {
            assert!(i >= 1000);
            break;
        }
        current = request(&mut exchange);
    }
    assert!(matches!(
        exchange.poll_outcome(),
        Some(Err(DiscoveryError::PeerMisbehaved(_)))
    ));
}

#[test]
fn nop_ping_is_answered_and_close_fails() {
    let mut exchange = SendTargets::new(1, 4, 9);
    let _ = request(&mut exchange);
    let ping = NopIn {
        ttt: 0x33,
        lun: Lun([0, 1, 0, 0, 0, 0, 0, 0]),
        data: Bytes::from_static(b"ping"),
        ..NopIn::default()
    };
    exchange.handle_pdu(Pdu::NopIn(ping)).unwrap();
    let Some(Pdu::NopOut(pong)) = exchange.poll_transmit() else {
        panic!("no NOP-Out")
    };
    assert_eq!(
        (pong.itt, pong.ttt, pong.cmd_sn, pong.lun.0[1]),
        (RESERVED_TAG, 0x33, 4, 1)
    );
    assert!(pong.immediate);
    assert_eq!(&pong.data[..], b"ping");
    exchange
        .handle_pdu(Pdu::NopIn(NopIn {
            ttt: RESERVED_TAG,
            ..NopIn::default()
        }))
        .unwrap();
    assert!(
        exchange.poll_transmit().is_none(),
        "a NOP-In without TTT needs no answer"
    );
    exchange.handle_close();
    assert_eq!(
        exchange.poll_outcome(),
        Some(Err(DiscoveryError::ConnectionClosed))
    );
}

proptest! {
    #[test]
    fn portal_parse_never_panics_and_round_trips(value in "[\\[\\]:,0-9a-fA-Fx.%-]{0,40}") {
        if let Ok(parsed) = Portal::parse(&value) {
            let again = Portal::parse(&parsed.to_string()).unwrap();
            prop_assert_eq!((again.host, again.port), (parsed.host, parsed.port));
        }
    }

    #[test]
    fn arbitrary_responses_never_panic(
        steps in proptest::collection::vec(
            (any::<(bool, bool, bool)>(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..40)),
            1..20),
    ) {
        let mut exchange = SendTargets::new(1, 1, 1);
        for ((final_, cont, good_ttt), ttt, data) in steps {
            let current = exchange.poll_transmit();
            let itt = match &current { Some(Pdu::TextRequest(r)) => r.itt, _ => 1 };
            let ttt = if good_ttt == final_ { RESERVED_TAG } else { ttt };
            let pdu = Pdu::TextResponse(TextResponse {
                final_, cont, itt, ttt, data: Bytes::from(data), ..TextResponse::default()
            });
            let _ = exchange.handle_pdu(pdu);
        }
        exchange.handle_close();
        prop_assert!(exchange.poll_outcome().is_some());
    }
}
