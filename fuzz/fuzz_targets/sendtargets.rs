//! Arbitrary bytes as the text of a SendTargets answer:
//! `sanshim_initiator::fuzzing::fuzz_send_targets`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sanshim_initiator::fuzzing::fuzz_send_targets(data);
});
