//! Micro-benchmarks of the protocol code without sockets (issue 10, deliverable 1):
//!
//! - `header_parse`, `header_emit`: the BHS of every PDU type the initiator sends or receives
//!   (RFC 7143 §11), through `Codec::decode_header_as` + `Pdu::parse_header` and
//!   `Codec::encode_header`;
//! - `login_text`: the text keys of a full login (RFC 7143 §6, §13), both directions;
//! - `data_in_8k`, `data_in_256k`: the receive path of one Data-In through a real `Session`
//!   (header decode, `begin_data_in`, landing, data digest, `finish_data_in`) beside a plain
//!   memcpy and CRC32C alone over the same bytes, the physical limits;
//! - `session`: the sans-IO `Session` submitting and completing commands against an in-memory
//!   fake target, one command per iteration, and one timed run of 1,000,000 commands;
//! - `nbd_request`: the NBD request header parser and its validation (NBD proto.md);
//! - `selector`: the multipath path selectors choosing among 2 and 4 paths.
//!
//! Every bench checks its result once before it is measured.
//!
//! `cargo bench -p sanshim-bench --bench micro [-- FILTER]`
#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

mod data_in;
mod fake_target;
mod headers;
mod login_text;
mod nbd;
mod selector;
mod session;

use criterion::{criterion_group, criterion_main};

criterion_group!(
    benches,
    headers::parse,
    headers::emit,
    login_text::login_text,
    data_in::data_in,
    session::session,
    nbd::requests,
    selector::selector
);
criterion_main!(benches);
