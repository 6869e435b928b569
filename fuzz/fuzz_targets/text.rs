//! Arbitrary bytes as iSCSI key=value text: `sanshim_initiator::fuzzing::fuzz_text`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sanshim_initiator::fuzzing::fuzz_text(data));
