//! Arbitrary bytes as an NBD client's handshake (client flags, then options):
//! `sanshim_nbd::fuzzing::fuzz_options`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sanshim_nbd::fuzzing::fuzz_options(data);
});
