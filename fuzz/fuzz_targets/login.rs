//! Arbitrary bytes as a hostile target's side of a login (Login Responses with CHAP
//! challenges and mutual answers), driving the initiator's sans-IO login:
//! `sanshim_initiator::fuzzing::fuzz_login`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sanshim_initiator::fuzzing::fuzz_login(data);
});
