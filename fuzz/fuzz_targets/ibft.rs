//! Arbitrary bytes as an iBFT: `sanshim_ibft::fuzzing::parse_table` (parse, lint, render,
//! write back, parse again, compare).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sanshim_ibft::fuzzing::parse_table(data));
