//! NBD transmission requests (NBD proto.md "Request message"): the header parser
//! (`wire::Request::parse`) alone and followed by the validation every request gets
//! (`request::check`), over a stream of 1024 requests as a client sends them — reads,
//! writes with their 4 KiB payload in the stream, flushes and trims.

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use sanshim_nbd::request::{self, Action};
use sanshim_nbd::wire::{Command, Request, transmission_flags as tf};

const REQUESTS: usize = 1024;
const PAYLOAD: u32 = 4096;

/// `nbd_request/{parse,parse_check}`.
pub fn requests(c: &mut Criterion) {
    let stream = stream();
    let session = request::Session {
        size: 1 << 30,
        flags: tf::HAS_FLAGS | tf::SEND_FLUSH | tf::SEND_FUA | tf::SEND_TRIM,
        block_size: 512,
        max_payload: 32 << 20,
        structured: false,
    };
    check(&stream, &session);
    let mut group = c.benchmark_group("nbd_request");
    group.throughput(Throughput::Elements(REQUESTS as u64));
    group.bench_function("parse", |b| b.iter(|| parse_all(black_box(&stream))));
    group.bench_function("parse_check", |b| {
        b.iter(|| check_all(black_box(&stream), &session))
    });
    group.finish();
}

/// Parses every header of the stream, skipping write payloads; returns the sum of the
/// cookies.
fn parse_all(stream: &[u8]) -> u64 {
    let mut at = 0;
    let mut cookies = 0u64;
    while let Some(rest) = stream.get(at..).filter(|r| !r.is_empty()) {
        let req = match Request::parse(rest) {
            Ok(req) => req,
            Err(e) => panic!("request did not parse: {e}"),
        };
        cookies = cookies.wrapping_add(req.cookie);
        let payload = if req.command == Command::WRITE {
            req.length
        } else {
            0
        };
        at += Request::LEN + payload as usize;
    }
    cookies
}

/// Parses and validates every request of the stream; returns how many were accepted.
fn check_all(stream: &[u8], session: &request::Session) -> usize {
    let mut at = 0;
    let mut accepted = 0;
    while let Some(rest) = stream.get(at..).filter(|r| !r.is_empty()) {
        let req = match Request::parse(rest) {
            Ok(req) => req,
            Err(e) => panic!("request did not parse: {e}"),
        };
        let checked = request::check(&req, session);
        accepted += usize::from(black_box(checked.verdict).is_ok());
        at += Request::LEN + checked.payload as usize;
    }
    accepted
}

/// Every request parses, in order, and every one is accepted with the action it asked for.
fn check(stream: &[u8], session: &request::Session) {
    assert_eq!(parse_all(stream), (0..REQUESTS as u64).sum::<u64>());
    assert_eq!(check_all(stream, session), REQUESTS);
    let first = match Request::parse(stream) {
        Ok(req) => request::check(&req, session).verdict,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        first,
        Ok(Action::Read {
            offset: 0,
            length: 128 << 10
        })
    );
}

/// 1024 requests: of every 8, five reads of 4 to 128 KiB, two 4 KiB writes, then a flush
/// or a trim.
fn stream() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..REQUESTS {
        let cookie = i as u64;
        let offset = (cookie * 1_048_576) % (1 << 30);
        let (command, length) = match i % 8 {
            0..=2 => (Command::READ, 128 << 10),
            3 | 4 => (Command::READ, 4096 << (i % 6)),
            5 | 6 => (Command::WRITE, PAYLOAD),
            _ if i % 16 == 7 => (Command::FLUSH, 0),
            _ => (Command::TRIM, 1 << 20),
        };
        let offset = if command == Command::FLUSH { 0 } else { offset };
        let req = Request {
            flags: 0,
            command,
            cookie,
            offset,
            length,
        };
        out.extend_from_slice(&req.emit());
        if command == Command::WRITE {
            out.extend(std::iter::repeat_n(i as u8, length as usize));
        }
    }
    out
}
