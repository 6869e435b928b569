//! Text exchanges on the session: SendTargets with its continuation protocol, bounds, and
//! what a misbehaving target gets.

use proptest::prelude::*;

use super::*;
use crate::wire::{TextRequest, parse_text};

fn text_requests(sim: &mut Sim) -> Vec<TextRequest> {
    sim.sent_of(|p| match p {
        Pdu::TextRequest(t) => Some(t),
        _ => None,
    })
}

fn send_targets(sim: &mut Sim) -> TaskId {
    sim.session
        .submit_text(&[("SendTargets", "All")], sim.now)
        .unwrap()
}

fn text_outcome(sim: &mut Sim) -> Option<Result<Vec<(String, String)>, TaskError>> {
    sim.outcomes().into_iter().next().map(|(_, r)| {
        r.map(|o| match o {
            Outcome::Text(pairs) => pairs,
            other => panic!("{other:?}"),
        })
    })
}

/// Many targets with several portals each: an answer of roughly 10 KiB.
fn big_answer() -> Vec<u8> {
    let mut text = Vec::new();
    for t in 0..60 {
        text.extend_from_slice(format!("TargetName=iqn.2026-01.test:volume-{t:04}\0").as_bytes());
        for p in 0..3u16 {
            text.extend_from_slice(format!("TargetAddress=10.1.{t}.{p}:3260,{p}\0").as_bytes());
        }
    }
    text
}

#[test]
fn request_format() {
    let mut sim = Sim::default();
    send_targets(&mut sim);
    let first = text_requests(&mut sim).remove(0);
    assert_eq!(
        parse_text(&first.data).unwrap(),
        [("SendTargets".to_owned(), "All".to_owned())]
    );
    assert!(first.final_ && !first.cont && first.immediate);
    assert_eq!(first.ttt, RESERVED_TAG);
    assert_eq!(
        first.cmd_sn, sim.target.exp_cmd_sn,
        "immediate: CmdSN not consumed"
    );
    let answer =
        sim.target
            .text_response(first.itt, b"TargetName=iqn.x\0", true, false, RESERVED_TAG);
    sim.feed(answer);
    let pairs = text_outcome(&mut sim).unwrap().unwrap();
    assert_eq!(pairs, [("TargetName".to_owned(), "iqn.x".to_owned())]);
    // SCSI commands still flow with the CmdSN the text exchange left alone.
    sim.read(512);
    assert_eq!(sim.commands().len(), 1);
}

#[test]
fn answer_over_several_pdus() {
    let text = big_answer();
    let expected = parse_text(&text).unwrap();
    for chunk_len in [1000, 4096, 8192, 333] {
        let mut sim = Sim::default();
        send_targets(&mut sim);
        let mut current = text_requests(&mut sim).remove(0);
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
            let answer = sim
                .target
                .text_response(current.itt, chunk, last, cont, ttt);
            sim.feed(answer);
            if last {
                break;
            }
            let next = text_requests(&mut sim).remove(0);
            assert!(next.data.is_empty() && next.final_ && !next.cont);
            assert_eq!((next.ttt, next.itt), (ttt, current.itt), "TTT echoed");
            current = next;
        }
        let pairs = text_outcome(&mut sim).unwrap().unwrap();
        assert_eq!(pairs, expected, "chunks of {chunk_len}");
    }
}

#[test]
fn misbehaving_targets_fail_the_exchange() {
    type Make = fn(&mut Target, u32) -> Pdu;
    let cases: [Make; 4] = [
        |t, itt| t.text_response(itt, b"", true, true, RESERVED_TAG),
        |t, itt| t.text_response(itt, b"", true, false, 5),
        |t, itt| t.text_response(itt, b"TargetName=x\0", false, false, RESERVED_TAG),
        |t, itt| t.text_response(itt, b"TargetName", true, false, RESERVED_TAG),
    ];
    for make in cases {
        let mut sim = Sim::default();
        send_targets(&mut sim);
        let req = text_requests(&mut sim).remove(0);
        let bad = make(&mut sim.target, req.itt);
        sim.feed(bad);
        assert!(matches!(text_outcome(&mut sim), Some(Err(_))));
        assert!(sim.events().is_empty(), "the session goes on");
    }
    // A rejected Text Request ends the exchange with the reason.
    let mut sim = Sim::default();
    send_targets(&mut sim);
    let req = text_requests(&mut sim).remove(0);
    let reject = sim
        .target
        .reject(RejectReason::PROTOCOL_ERROR, &Pdu::TextRequest(req));
    sim.feed(reject);
    assert!(matches!(
        text_outcome(&mut sim),
        Some(Err(TaskError::Rejected { .. }))
    ));
    // An answer for a tag we never used is a protocol violation.
    let mut sim = Sim::default();
    let stray = sim.target.text_response(99, b"", true, false, RESERVED_TAG);
    sim.feed(stray);
    assert!(matches!(sim.events()[..], [Event::Reconnect { .. }]));
}

#[test]
fn endless_answer_is_bounded() {
    let mut sim = Sim::default();
    send_targets(&mut sim);
    let mut current = text_requests(&mut sim).remove(0);
    for i in 0..10_000 {
        let more = sim
            .target
            .text_response(current.itt, b"X-a=1\0", false, false, 9);
        sim.feed(more);
        match text_requests(&mut sim).pop() {
            Some(next) => current = next,
            None => {
                assert!(i >= 1000);
                break;
            }
        }
    }
    assert!(matches!(
        text_outcome(&mut sim),
        Some(Err(TaskError::Text(_)))
    ));
}

#[test]
fn unanswered_exchange_times_out_and_late_answer_is_dropped() {
    let config = SessionConfig {
        noop_interval: Duration::ZERO,
        ..SessionConfig::default()
    };
    let mut sim = Sim::new(config, negotiated(8192, true, false));
    send_targets(&mut sim);
    let req = text_requests(&mut sim).remove(0);
    sim.run_to_timeout();
    assert!(matches!(
        text_outcome(&mut sim),
        Some(Err(TaskError::Timeout))
    ));
    let late = sim
        .target
        .text_response(req.itt, b"", true, false, RESERVED_TAG);
    sim.feed(late);
    assert!(sim.events().is_empty());
}

#[test]
fn exchange_cut_by_a_lost_connection_starts_over() {
    let mut sim = Sim::default();
    let id = send_targets(&mut sim);
    let req = text_requests(&mut sim).remove(0);
    let partial = sim
        .target
        .text_response(req.itt, b"TargetName=a\0", false, false, 7);
    sim.feed(partial);
    sim.session
        .handle_connection_lost(crate::session::ConnectionFailure::Closed, sim.now);
    sim.events();
    sim.reconnect();
    let again = text_requests(&mut sim).remove(0);
    assert_eq!(again.ttt, RESERVED_TAG, "a fresh exchange");
    let answer = sim
        .target
        .text_response(again.itt, b"TargetName=b\0", true, false, RESERVED_TAG);
    sim.feed(answer);
    let outcomes = sim.outcomes();
    assert_eq!(outcomes[0].0, id);
    assert!(matches!(&outcomes[0].1, Ok(Outcome::Text(p)) if p.len() == 1 && p[0].1 == "b"));
}

/// A target that drops the connection whenever the request arrives: the exchange starts
/// over a bounded number of times, then fails — it is not sent forever.
#[test]
fn a_request_that_kills_the_connection_is_not_sent_forever() {
    let mut sim = Sim::default();
    let id = send_targets(&mut sim);
    let mut sent = 0;
    loop {
        let requests = text_requests(&mut sim);
        if requests.is_empty() {
            break;
        }
        sent += requests.len();
        sim.session
            .handle_connection_lost(crate::session::ConnectionFailure::Closed, sim.now);
        sim.events();
        if let Some(outcome) = text_outcome(&mut sim) {
            assert!(
                matches!(outcome, Err(TaskError::TooManyRetries(2))),
                "{outcome:?}"
            );
            break;
        }
        sim.reconnect();
        assert!(sent < 10, "the exchange keeps being sent");
    }
    assert_eq!(sent, 3, "the first try and two restarts");
    let _ = id;
}

/// On a fail-fast session (a multipath path) the exchange fails at once, for the caller to
/// ask another path.
#[test]
fn a_fail_fast_session_fails_the_exchange_at_once() {
    let config = SessionConfig {
        fail_fast: true,
        ..SessionConfig::default()
    };
    let mut sim = Sim::new(config, Negotiated::default());
    send_targets(&mut sim);
    assert_eq!(text_requests(&mut sim).len(), 1);
    sim.session
        .handle_connection_lost(crate::session::ConnectionFailure::Closed, sim.now);
    sim.events();
    let outcome = text_outcome(&mut sim);
    assert!(
        matches!(
            outcome,
            Some(Err(TaskError::ConnectionLost { in_flight: true }))
        ),
        "{outcome:?}"
    );
}

proptest! {
    #[test]
    fn arbitrary_responses_never_panic(
        steps in proptest::collection::vec(
            (any::<(bool, bool, bool)>(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..40)),
            1..20),
    ) {
        let mut sim = Sim::default();
        send_targets(&mut sim);
        for ((final_, cont, good_ttt), ttt, data) in steps {
            let itt = text_requests(&mut sim).pop().map_or(0, |r| r.itt);
            let ttt = if good_ttt == final_ { RESERVED_TAG } else { ttt };
            let pdu = sim.target.text_response(itt, &data, final_, cont, ttt);
            sim.feed(pdu);
        }
        let _ = sim.outcomes();
    }
}
