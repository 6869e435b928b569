use std::sync::Arc;

use sanshim_blockdev::{Limits, MemDisk};

use super::*;
use crate::wire::{OptionReplyHeader, ReplyCode};

fn params() -> Vec<ExportParams> {
    vec![
        ExportParams {
            name: "disk".into(),
            description: "a disk".into(),
            size: 1 << 20,
            flags: tf::HAS_FLAGS | tf::SEND_FLUSH,
            min_block: 512,
            preferred_block: 4096,
            max_block: 32 << 20,
        },
        ExportParams {
            name: "other".into(),
            description: String::new(),
            size: 4096,
            flags: tf::HAS_FLAGS | tf::READ_ONLY,
            min_block: 4096,
            preferred_block: 4096,
            max_block: 1 << 20,
        },
    ]
}

/// Splits option replies into (option, reply code, payload).
fn replies(mut bytes: &[u8]) -> Vec<(OptionCode, ReplyCode, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (h, rest) = zerocopy::FromBytes::read_from_prefix(bytes).unwrap();
        let h: OptionReplyHeader = h;
        assert_eq!(h.magic.get(), crate::wire::OPTION_REPLY_MAGIC);
        let (payload, rest) = rest.split_at(h.length.get() as usize);
        out.push((
            OptionCode(h.option.get()),
            ReplyCode(h.reply.get()),
            payload.to_vec(),
        ));
        bytes = rest;
    }
    out
}

fn go_data(name: &str, infos: &[u16]) -> Vec<u8> {
    let mut d = Vec::new();
    InfoRequest {
        name: name.as_bytes(),
        requests: infos.iter().map(|&i| InfoType(i)).collect(),
    }
    .emit(&mut d);
    d
}

#[test]
fn test_client_flags() {
    let p = params();
    let mut n = Negotiation::new(&p);
    assert_eq!(
        n.handle_client_flags(4),
        Err(NegotiationError::UnknownClientFlags(4))
    );
    n.handle_client_flags(1).unwrap();
    assert!(!n.no_zeroes);
    n.handle_client_flags(3).unwrap();
    assert!(n.no_zeroes);
}

#[test]
fn test_export_name_sends_zeroes_unless_no_zeroes() {
    let p = params();
    let mut n = Negotiation::new(&p);
    n.handle_client_flags(1).unwrap();
    let Step::Transmit {
        reply,
        export,
        structured,
        block_size_agreed: false,
    } = n.handle_option(OptionCode::EXPORT_NAME, b"")
    else {
        panic!("expected transmission");
    };
    #[rustfmt::skip]
    let head = [
        0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, // size 1 MiB
        0x00, 0x05,                                     // HAS_FLAGS | SEND_FLUSH
    ];
    assert_eq!(reply.len(), 10 + 124);
    assert_eq!(reply[..10], head);
    assert!(reply[10..].iter().all(|&b| b == 0));
    assert_eq!((export, structured), (0, false));

    let mut n = Negotiation::new(&p);
    n.handle_client_flags(3).unwrap();
    match n.handle_option(OptionCode::EXPORT_NAME, b"other") {
        Step::Transmit {
            reply, export: 1, ..
        } => assert_eq!(reply.len(), 10),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        n.handle_option(OptionCode::EXPORT_NAME, b"nope"),
        Step::Refuse(NegotiationError::UnknownExport("nope".into()))
    );
}

#[test]
fn test_go_replies_info_then_ack() {
    let p = params();
    let mut n = Negotiation::new(&p);
    assert_eq!(
        replies(match &n.handle_option(OptionCode::STRUCTURED_REPLY, &[]) {
            Step::Continue(b) => b,
            other => panic!("unexpected {other:?}"),
        }),
        vec![(OptionCode::STRUCTURED_REPLY, ReplyCode::ACK, vec![])]
    );
    let step = n.handle_option(OptionCode::GO, &go_data("disk", &[1, 2, 3, 99]));
    let Step::Transmit {
        reply,
        export: 0,
        structured: true,
        block_size_agreed: true,
    } = step
    else {
        panic!("unexpected {step:?}");
    };
    let r = replies(&reply);
    let codes: Vec<_> = r.iter().map(|(o, c, _)| (*o, *c)).collect();
    assert_eq!(
        codes,
        [(OptionCode::GO, ReplyCode::INFO); 4]
            .iter()
            .copied()
            .chain([(OptionCode::GO, ReplyCode::ACK)])
            .collect::<Vec<_>>()
    );
    // SEND_DF joins the flags once structured replies are on.
    assert_eq!(
        r[0].2,
        emit_info_export(1 << 20, tf::HAS_FLAGS | tf::SEND_FLUSH | tf::SEND_DF)
    );
    assert_eq!(r[1].2, [&[0u8, 1][..], b"disk"].concat());
    assert_eq!(r[2].2, [&[0u8, 2][..], b"a disk"].concat());
    assert_eq!(r[3].2, emit_info_block_size(512, 4096, 32 << 20));
}

/// Only a GO that asked for `NBD_INFO_BLOCK_SIZE` binds the client to the minimum block
/// size; every other client may send requests of any alignment.
#[test]
fn test_block_sizes_bind_only_clients_that_asked() {
    let p = params();
    for (infos, agreed) in [(&[][..], false), (&[1, 2][..], false), (&[3][..], true)] {
        let mut n = Negotiation::new(&p);
        match n.handle_option(OptionCode::GO, &go_data("disk", infos)) {
            Step::Transmit {
                block_size_agreed, ..
            } => assert_eq!(block_size_agreed, agreed, "{infos:?}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(p[0].session(false, true).block_size, 512);
    assert_eq!(p[0].session(false, false).block_size, 1);
}

#[test]
fn test_a_refusing_handshake_serves_nothing_and_says_why() {
    let p = params();
    let mut n = Negotiation::refusing(&p, "too many connections");
    n.handle_client_flags(3).unwrap();
    for option in [
        OptionCode::GO,
        OptionCode::INFO,
        OptionCode::LIST,
        OptionCode(77),
    ] {
        let Step::Continue(bytes) = n.handle_option(option, &go_data("disk", &[3])) else {
            panic!("{option:?} must be answered");
        };
        assert_eq!(
            replies(&bytes),
            [(
                option,
                ReplyCode::ERR_POLICY,
                b"too many connections".to_vec()
            )]
        );
    }
    assert!(matches!(
        n.handle_oversized_option(OptionCode::GO),
        Step::Continue(_)
    ));
    assert_eq!(
        n.handle_option(OptionCode::EXPORT_NAME, b"disk"),
        Step::Refuse(NegotiationError::Refused("too many connections"))
    );
    assert!(matches!(
        n.handle_option(OptionCode::ABORT, &[]),
        Step::Close(_)
    ));
}

#[test]
fn test_info_errors_and_continues() {
    let p = params();
    let mut n = Negotiation::new(&p);
    let codes = |s: Step| match s {
        Step::Continue(b) => replies(&b)
            .into_iter()
            .map(|(_, c, _)| c)
            .collect::<Vec<_>>(),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        codes(n.handle_option(OptionCode::INFO, &go_data("x", &[]))),
        [ReplyCode::ERR_UNKNOWN]
    );
    assert_eq!(
        codes(n.handle_option(OptionCode::GO, &[0, 0, 0])),
        [ReplyCode::ERR_INVALID]
    );
    // Default export; the description of "other" is empty and therefore not sent.
    assert_eq!(
        codes(n.handle_option(OptionCode::INFO, &go_data("other", &[2]))),
        [ReplyCode::INFO, ReplyCode::INFO, ReplyCode::ACK]
    );
    assert_eq!(
        codes(n.handle_option(OptionCode::STRUCTURED_REPLY, &[1])),
        [ReplyCode::ERR_INVALID]
    );
    assert_eq!(
        codes(n.handle_option(OptionCode::STARTTLS, &[])),
        [ReplyCode::ERR_UNSUP]
    );
    assert_eq!(
        codes(n.handle_option(OptionCode(0xdead), &[1, 2])),
        [ReplyCode::ERR_UNSUP]
    );
    assert_eq!(
        codes(n.handle_oversized_option(OptionCode::GO)),
        [ReplyCode::ERR_TOO_BIG]
    );
    assert!(matches!(
        n.handle_oversized_option(OptionCode::EXPORT_NAME),
        Step::Refuse(_)
    ));
}

#[test]
fn test_list_and_abort() {
    let p = params();
    let mut n = Negotiation::new(&p);
    let Step::Continue(b) = n.handle_option(OptionCode::LIST, &[]) else {
        panic!()
    };
    let r = replies(&b);
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].1, ReplyCode::SERVER);
    assert_eq!(r[0].2, emit_server_entry("disk", "a disk"));
    assert_eq!(r[1].2, emit_server_entry("other", ""));
    assert_eq!(r[2].1, ReplyCode::ACK);
    let Step::Continue(b) = n.handle_option(OptionCode::LIST, &[0]) else {
        panic!()
    };
    assert_eq!(replies(&b)[0].1, ReplyCode::ERR_INVALID);
    let Step::Close(b) = n.handle_option(OptionCode::ABORT, &[]) else {
        panic!()
    };
    assert_eq!(
        replies(&b),
        vec![(OptionCode::ABORT, ReplyCode::ACK, vec![])]
    );
}

#[test]
fn test_export_params_from_device() {
    let limits = Limits {
        optimal_granularity_blocks: 16,
        ..Limits::default()
    };
    let disk = MemDisk::builder(512, 2048)
        .limits(limits)
        .can_write_zeroes(false)
        .build()
        .unwrap();
    let export = Export {
        name: "d".into(),
        description: String::new(),
        device: Arc::new(disk),
        read_only: false,
    };
    let p = ExportParams::new(&export, 32 << 20);
    assert_eq!(
        (p.size, p.min_block, p.preferred_block, p.max_block),
        (1 << 20, 512, 8192, 32 << 20)
    );
    let want = tf::HAS_FLAGS
        | tf::CAN_MULTI_CONN
        | tf::SEND_FLUSH
        | tf::SEND_FUA
        | tf::SEND_TRIM
        | tf::SEND_WRITE_ZEROES
        // Honoured even by a disk that zeroes slowly: it answers NBD_ENOTSUP at once.
        | tf::SEND_FAST_ZERO;
    assert_eq!(p.flags, want);
    let ro = ExportParams::new(
        &Export {
            read_only: true,
            ..export
        },
        1 << 20,
    );
    assert_eq!(
        ro.flags,
        tf::HAS_FLAGS | tf::CAN_MULTI_CONN | tf::SEND_FLUSH | tf::READ_ONLY
    );
    assert_eq!((ro.preferred_block, ro.max_block), (8192, 1 << 20));
}
