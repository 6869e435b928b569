//! Arbitrary bytes as an NBD client's transmission phase (request headers and write
//! payloads): `sanshim_nbd::fuzzing::fuzz_requests`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sanshim_nbd::fuzzing::fuzz_requests(data);
});
