//! Fuzz logic, shared by the cargo-fuzz target `fuzz/fuzz_targets/ibft.rs` and a bounded
//! proptest on stable (STYLE rule 12). Compiled under `cfg(fuzzing)` and in tests only.
//!
//! The checksum is not bypassed: a bad checksum is only a warning, so random input reaches
//! every structure either way.

use crate::lint;
use crate::model::Ibft;
use crate::render::{self, Options};
use crate::writer::{self, Layout, WriteError};

/// Parses `data`; when it parses, lints and renders it in every format, writes it back with
/// the default layout and asserts that the written table parses to the same [`Ibft`].
///
/// # Panics
/// When parsing or rendering panics, or the round trip changes the table: each is a bug.
pub fn parse_table(data: &[u8]) {
    let Ok(parsed) = Ibft::parse(data) else {
        return;
    };
    let lints = lint::check(&parsed.ibft);
    let options = Options { show_secrets: true };
    let _ = render::text(&parsed.ibft, "fuzz", &lints, options);
    let _ = render::env(&parsed.ibft, "fuzz", options);
    for target in &parsed.ibft.targets {
        let _ = render::url(target);
    }
    let bytes = match writer::emit(&parsed.ibft, &Layout::default()) {
        Ok(bytes) => bytes,
        // Overlapping structures or shared strings can need more room than 16-bit offsets
        // reach, and lossy decoding can lengthen an OEM id: such tables cannot be rewritten.
        Err(WriteError::TooLarge { .. } | WriteError::OemTooLong) => return,
    };
    let again = match Ibft::parse(&bytes) {
        Ok(again) => again,
        Err(e) => panic!("a written table does not parse: {e}"),
    };
    assert_eq!(
        comparable(again.ibft),
        comparable(parsed.ibft),
        "round trip changed the table"
    );
}

/// The table without what a rewrite legitimately changes: length and checksum.
fn comparable(mut ibft: Ibft) -> Ibft {
    ibft.header.length = None;
    ibft.header.checksum_ok = None;
    ibft
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed seeds (the writer tables of the VM test, `scripts/fuzz-seed`) parse, and
    /// go through the whole fuzz logic.
    #[test]
    fn seeds_parse_and_round_trip() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/ibft");
        let seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
            .collect();
        assert!(seeds.len() >= 3, "{}: fewer than 3 seeds", dir.display());
        let parsed = seeds.iter().filter(|s| Ibft::parse(s).is_ok()).count();
        assert!(
            parsed * 2 > seeds.len(),
            "{parsed} of {} seeds parse",
            seeds.len()
        );
        for seed in &seeds {
            parse_table(seed);
        }
    }
}
