//! Entry points for the cargo-fuzz targets in `fuzz/` (STYLE rule 12). Built only under
//! `cfg(fuzzing)`, where digest checks are skipped so the fuzzer reaches the parsers. The
//! same checks run on stable as bounded property tests in `wire`.

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
