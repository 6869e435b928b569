//! Entry points for the cargo-fuzz targets in `fuzz/` (STYLE rule 12): each is a shim over
//! the tested functions of this crate and checks their contracts. Built under `cfg(fuzzing)`,
//! where digest checks are skipped so the fuzzer reaches the parsers, and in tests, which run
//! every shim over the committed seed corpus (`fuzz/corpus/<target>/`, captured from tgtd) so
//! a shim cannot rot. The same checks run on stable as bounded property tests in `wire`.

mod login;

pub use self::login::{LoginSummary, fuzz_login};
use crate::discovery::parse_send_targets;
use crate::portal::TargetAddress;
use crate::wire::parse_text;

/// Decodes arbitrary bytes as a PDU stream (framing settings from the first byte) and
/// checks the decode → encode → decode round trip of every PDU found.
pub fn fuzz_pdu(data: &[u8]) {
    crate::wire::pdu_round_trip(data);
}

/// Parses arbitrary bytes as key=value text and checks continuation, re-encoding and
/// splitting.
pub fn fuzz_text(data: &[u8]) {
    crate::wire::text_round_trip(data);
}

/// Parses arbitrary bytes as the text of a SendTargets answer, as the session hands it to
/// [`parse_send_targets`], and checks every address it accepts: its rendering parses back
/// to the same address. Returns the targets found (`None` when the text or the answer is
/// refused).
///
/// # Panics
/// When an accepted address does not survive the round trip, or a target has no name.
pub fn fuzz_send_targets(data: &[u8]) -> Option<usize> {
    let pairs = parse_text(data).ok()?;
    let targets = match parse_send_targets(&pairs) {
        Ok(targets) => targets,
        Err(e) => {
            let _ = e.to_string();
            return None;
        }
    };
    for target in &targets {
        assert!(!target.name.is_empty(), "a target without a name");
        for address in &target.portals {
            let rendered = address.to_string();
            assert_eq!(
                TargetAddress::parse(&rendered).as_ref(),
                Ok(address),
                "TargetAddress changed across render/parse ({rendered:?})"
            );
        }
    }
    Some(targets.len())
}

/// Runs every SCSI data parser (INQUIRY and VPD pages, READ CAPACITY, MODE SENSE, REPORT
/// LUNS, REPORT TARGET PORT GROUPS, sense data, SCSI Response data) over arbitrary bytes.
pub fn fuzz_scsi(data: &[u8]) {
    crate::scsi::parse_all(data);
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use super::*;

    /// The committed seed corpus of one fuzz target: real captures, made by `scripts/fuzz-seed`.
    pub(crate) fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                let path = entry.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                (path, bytes)
            })
            .collect();
        files.sort();
        assert!(files.len() >= 3, "{}: fewer than 3 seeds", dir.display());
        files
    }

    #[test]
    fn pdu_and_text_seeds() {
        for (_, seed) in corpus("pdu") {
            fuzz_pdu(&seed);
        }
        for (_, seed) in corpus("text") {
            fuzz_text(&seed);
        }
    }

    #[test]
    fn send_targets_seeds_list_targets() {
        let found: Vec<Option<usize>> = corpus("sendtargets")
            .iter()
            .map(|(_, seed)| fuzz_send_targets(seed))
            .collect();
        assert!(
            found.iter().any(|n| n.is_some_and(|n| n > 0)),
            "no seed lists a target: {found:?}"
        );
        let answer = b"TargetName=iqn.2026-12.test:a\0TargetAddress=[fe80::1]:3260,1\0\
                       TargetAddress=10.0.0.1\0TargetName=iqn.2026-12.test:b\0";
        assert_eq!(fuzz_send_targets(answer), Some(2));
        assert_eq!(fuzz_send_targets(b"SendTargets=Reject\0"), None);
        assert_eq!(fuzz_send_targets(b"TargetAddress=10.0.0.1\0"), None);
    }

    #[test]
    fn scsi_seeds() {
        let seeds = corpus("scsi");
        for (_, seed) in &seeds {
            fuzz_scsi(seed);
        }
        // Among the captures: a standard INQUIRY and a READ CAPACITY (16) answer of tgtd.
        let parses = |f: fn(&[u8]) -> bool| seeds.iter().any(|(_, s)| f(s));
        assert!(parses(
            |s| crate::scsi::StandardInquiry::parse(s).is_ok_and(|i| i.vendor.starts_with("IET"))
        ));
        assert!(parses(
            |s| s.len() == 32 && crate::scsi::ReadCapacity16::parse(s).is_ok()
        ));
    }
}
