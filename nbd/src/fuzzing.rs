//! Entry points for the fuzz targets `fuzz/fuzz_targets/nbd_handshake.rs` and
//! `nbd_request.rs`; each is a shim over the tested parsing functions, reads the client's
//! bytes the way `conn` does, and checks their contracts: no panic on any input, parse∘emit
//! round trips, and verdicts consistent with the request. Tests run them over the committed
//! seeds (`fuzz/corpus/`, captured from nbdinfo, qemu-img and nbdcopy by `scripts/fuzz-seed`).

use crate::negotiate::{ExportParams, MAX_OPTION_DATA, Negotiation, Step};
use crate::request::{Action, Session, check};
use crate::wire::{InfoRequest, OptionCode, OptionHeader, Request, transmission_flags as tf};

/// Feeds `data` as the client's side of the transmission phase: request headers, each write
/// followed by its payload (skipped, as `conn` reads or skips it), through parsing and
/// validation. The first byte says whether structured replies were negotiated. Returns the
/// number of requests accepted.
///
/// # Panics
/// When a contract is broken (that is the point of a fuzz target).
pub fn fuzz_requests(data: &[u8]) -> usize {
    let Some((&settings, mut rest)) = data.split_first() else {
        return 0;
    };
    let session = Session {
        size: 1 << 20,
        flags: tf::HAS_FLAGS | tf::SEND_FUA | tf::SEND_TRIM | tf::SEND_WRITE_ZEROES,
        block_size: 512,
        max_payload: 64 * 1024,
        structured: settings & 1 == 1,
    };
    let mut accepted = 0;
    while let Some((header, tail)) = rest.split_at_checked(Request::LEN) {
        // A header that does not parse closes the connection.
        let Ok(request) = Request::parse(header) else {
            break;
        };
        assert_eq!(
            Request::parse(&request.emit()),
            Ok(request),
            "emit∘parse round trip"
        );
        let checked = check(&request, &session);
        assert_eq!(checked.cookie, request.cookie);
        match checked.verdict {
            Ok(Action::Disconnect) => break,
            Ok(action) => {
                assert_action_in_bounds(action, &session);
                accepted += 1;
            }
            Err(_) => {}
        }
        let payload = usize::try_from(checked.payload).unwrap_or(usize::MAX);
        rest = tail.get(payload..).unwrap_or_default();
    }
    accepted
}

/// Feeds `data` as the client's side of the handshake — client flags, then options (header
/// and data; data over [`MAX_OPTION_DATA`] skipped, as `conn` does) — through the handshake
/// state machine. Returns the export chosen, if the client got to the transmission phase.
///
/// # Panics
/// When a contract is broken.
pub fn fuzz_options(data: &[u8]) -> Option<usize> {
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
    let (flags, mut rest) = data.split_first_chunk::<4>()?;
    n.handle_client_flags(u32::from_be_bytes(*flags)).ok()?;
    while let Ok((option, len)) = OptionHeader::parse(rest) {
        rest = rest.get(OptionHeader::LEN..).unwrap_or_default();
        let payload = rest.get(..len as usize);
        rest = rest.get(len as usize..).unwrap_or_default();
        let step = if len > MAX_OPTION_DATA {
            n.handle_oversized_option(option)
        } else {
            let payload = payload?;
            if let Ok(info) = InfoRequest::parse(payload) {
                let mut out = Vec::new();
                info.emit(&mut out);
                assert_eq!(out, payload, "InfoRequest emit∘parse round trip");
            }
            n.handle_option(option, payload)
        };
        match step {
            Step::Continue(reply) => assert!(reply.len() >= 20, "every option gets a reply"),
            Step::Close(_) | Step::Refuse(_) => return None,
            Step::Transmit { export, .. } => {
                assert!(matches!(option, OptionCode::GO | OptionCode::EXPORT_NAME));
                assert!(export < exports.len());
                return Some(export);
            }
        }
    }
    None
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
        offset
            .checked_add(u64::from(length))
            .is_some_and(|end| end <= s.size),
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
                if r.command == crate::wire::Command::WRITE {
                    data.resize(data.len() + r.length as usize, 0xa5);
                }
            }
            fuzz_requests(&data);
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

    /// The committed seeds of one target: client bytes captured by `scripts/fuzz-seed`.
    fn corpus(target: &str) -> Vec<Vec<u8>> {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
            .collect();
        assert!(seeds.len() >= 3, "{}: fewer than 3 seeds", dir.display());
        seeds
    }

    #[test]
    fn captured_handshakes_reach_transmission() {
        let chosen: Vec<Option<usize>> = corpus("nbd_handshake")
            .iter()
            .map(|s| fuzz_options(s))
            .collect();
        assert!(chosen.contains(&Some(0)), "{chosen:?}");
    }

    /// qemu-io's session (a write with its payload, write-zeroes, trim, read, flushes) is
    /// walked request by request: a payload not skipped would end the walk at the first write.
    #[test]
    fn captured_requests_are_accepted() {
        let accepted: Vec<usize> = corpus("nbd_request")
            .iter()
            .map(|s| fuzz_requests(s))
            .collect();
        assert!(accepted.iter().any(|&n| n >= 5), "{accepted:?}");
    }
}
