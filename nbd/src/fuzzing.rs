//! Entry points for fuzz targets (`fuzz/fuzz_targets/nbd.rs`); each is a shim over the tested
//! parsing functions and checks their contracts: no panic on any input, parse∘emit round trips,
//! and verdicts consistent with the request.

use crate::negotiate::{ExportParams, Negotiation, Step};
use crate::request::{Action, Session, check};
use crate::wire::{InfoRequest, OptionCode, OptionHeader, Request, transmission_flags as tf};

/// Feeds `data` as a stream of transmission request headers through parsing and validation.
///
/// # Panics
/// When a contract is broken (that is the point of a fuzz target).
pub fn fuzz_requests(data: &[u8]) {
    let session = Session {
        size: 1 << 20,
        flags: tf::HAS_FLAGS | tf::SEND_FUA | tf::SEND_TRIM | tf::SEND_WRITE_ZEROES,
        block_size: 512,
        max_payload: 64 * 1024,
        structured: data.first().is_some_and(|b| b & 1 == 1),
    };
    for chunk in data.chunks(Request::LEN) {
        let Ok(request) = Request::parse(chunk) else {
            continue;
        };
        assert_eq!(
            Request::parse(&request.emit()),
            Ok(request),
            "emit∘parse round trip"
        );
        let checked = check(&request, &session);
        assert_eq!(checked.cookie, request.cookie);
        if let Ok(action) = checked.verdict {
            assert_action_in_bounds(action, &session);
        }
    }
}

/// Feeds `data` as client flags and a stream of options (header and data) through the
/// handshake state machine.
///
/// # Panics
/// When a contract is broken.
pub fn fuzz_options(data: &[u8]) {
    let exports = [ExportParams {
        name: "disk".into(),
        description: "fuzz".into(),
        size: 1 << 20,
        flags: tf::HAS_FLAGS,
        min_block: 512,
        preferred_block: 4096,
        max_block: 1 << 20,
    }];
    let mut n = Negotiation::new(&exports);
    let Some((flags, mut rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    if n.handle_client_flags(u32::from_be_bytes(*flags)).is_err() {
        return;
    }
    while let Ok((option, len)) = OptionHeader::parse(rest) {
        rest = rest.get(OptionHeader::LEN..).unwrap_or_default();
        let Some((payload, tail)) = rest.split_at_checked(len as usize) else {
            return;
        };
        rest = tail;
        if let Ok(info) = InfoRequest::parse(payload) {
            let mut out = Vec::new();
            info.emit(&mut out);
            assert_eq!(out, payload, "InfoRequest emit∘parse round trip");
        }
        match n.handle_option(option, payload) {
            Step::Continue(reply) => assert!(reply.len() >= 20, "every option gets a reply"),
            Step::Close(_) | Step::Refuse(_) => return,
            Step::Transmit { export, .. } => {
                assert!(matches!(option, OptionCode::GO | OptionCode::EXPORT_NAME));
                assert!(export < exports.len());
                return;
            }
        }
    }
}

fn assert_action_in_bounds(action: Action, s: &Session) {
    let (offset, length) = match action {
        Action::Read { offset, length }
        | Action::Write { offset, length, .. }
        | Action::Trim { offset, length, .. }
        | Action::WriteZeroes { offset, length, .. } => (offset, length),
        Action::Flush | Action::Disconnect => return,
    };
    assert!(
        offset + u64::from(length) <= s.size,
        "accepted a request past the end"
    );
    assert_eq!(
        offset % u64::from(s.block_size),
        0,
        "accepted a misaligned offset"
    );
    assert_eq!(length % s.block_size, 0, "accepted a misaligned length");
    if matches!(action, Action::Read { .. } | Action::Write { .. }) {
        assert!(length <= s.max_payload, "accepted an oversized payload");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn test_fuzz_requests_bounded(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            fuzz_requests(&data);
        }

        #[test]
        fn test_fuzz_requests_with_valid_magic(
            fields in proptest::collection::vec((any::<u16>(), 0u16..10, any::<u64>(), any::<u32>()), 1..8),
        ) {
            let mut data = vec![0u8];
            for (flags, command, offset, length) in fields {
                let r = Request { flags: flags & 0x1f, command: crate::wire::Command(command), cookie: 1, offset: offset % (2 << 20), length: length % (128 * 1024) };
                data.extend_from_slice(&r.emit());
            }
            fuzz_requests(&data[1..]);
        }

        #[test]
        fn test_fuzz_options_bounded(
            flags in 0u32..4,
            options in proptest::collection::vec((0u32..12, proptest::collection::vec(any::<u8>(), 0..40)), 0..6),
        ) {
            let mut data = flags.to_be_bytes().to_vec();
            for (option, payload) in options {
                data.extend_from_slice(zerocopy::IntoBytes::as_bytes(&OptionHeader::new(OptionCode(option), payload.len() as u32)));
                data.extend_from_slice(&payload);
            }
            fuzz_options(&data);
        }
    }
}
