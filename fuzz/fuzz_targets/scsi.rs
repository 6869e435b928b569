//! Arbitrary bytes as SCSI data a target returns (INQUIRY, VPD pages, READ CAPACITY, MODE
//! SENSE, REPORT LUNS, REPORT TARGET PORT GROUPS, sense data):
//! `sanshim_initiator::fuzzing::fuzz_scsi`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sanshim_initiator::fuzzing::fuzz_scsi(data));
