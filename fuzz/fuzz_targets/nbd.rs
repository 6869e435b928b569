//! Arbitrary bytes as NBD client traffic: the first byte picks transmission requests
//! (`sanshim_nbd::fuzzing::fuzz_requests`) or handshake options
//! (`sanshim_nbd::fuzzing::fuzz_options`) for the rest.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| match data.split_first() {
    Some((selector, rest)) if selector & 1 == 0 => sanshim_nbd::fuzzing::fuzz_requests(rest),
    Some((_, rest)) => sanshim_nbd::fuzzing::fuzz_options(rest),
    None => {}
});
