//! Arbitrary bytes as an iSCSI PDU stream: `sanshim_initiator::fuzzing::fuzz_pdu`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sanshim_initiator::fuzzing::fuzz_pdu(data));
