//! The receive path of one Data-In PDU (RFC 7143 §11.7) without a socket, as
//! `transport::link` runs it: decode and check the header (`Codec::decode_header`,
//! `Pdu::parse_header`), `Session::begin_data_in`, land the data segment in the command's
//! buffer (a copy from an in-memory source standing in for the kernel's socket read), the
//! data digest over the landed bytes when digests are on, `Session::finish_data_in`.
//!
//! The PDUs belong to 1 MiB reads through a real `Session`, so completing a command and
//! submitting the next is amortised over its Data-Ins (128 of 8 KiB, 4 of 256 KiB); the fake
//! target's encoding of the headers is left out of the time. Beside it, over the same bytes
//! and the same destinations: a plain memcpy, CRC32C alone, and both — the physical limits.
//! "Digests on" is HeaderDigest and DataDigest both CRC32C, as negotiated in practice.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput};
use sanshim_initiator::session::{Command, Outcome, Session, Transfer};
use sanshim_initiator::wire::{Codec, DIGEST_LEN, Lun, Pdu, ScsiStatus, data_digest, read_digest};

use crate::fake_target::FakeTarget;

/// Expected Data Transfer Length of each read; also the span the memcpy baseline cycles over.
const COMMAND_LEN: usize = 1 << 20;

/// `data_in_{8k,256k}/{session_digests_off,session_digests_on,memcpy,crc32c,memcpy_crc32c}`.
pub fn data_in(c: &mut Criterion) {
    for pdu_len in [8 << 10, 256 << 10] {
        let mut group = c.benchmark_group(format!("data_in_{}k", pdu_len >> 10));
        group.throughput(Throughput::Bytes(pdu_len as u64));
        for digests in [false, true] {
            let mut rig = Rig::new(pdu_len, digests);
            rig.check();
            let name = match digests {
                true => "session_digests_on",
                false => "session_digests_off",
            };
            group.bench_function(name, |b| b.iter_custom(|iters| rig.run(iters)));
        }
        let mut limit = Baseline::new(pdu_len);
        let crc = limit.copy(true);
        assert_eq!(&limit.dst[..pdu_len], &limit.source[..], "memcpy copied");
        assert_eq!(crc, Some(data_digest(&limit.source)));
        group.bench_function("memcpy", |b| b.iter(|| limit.copy(false)));
        group.bench_function("crc32c", |b| {
            b.iter(|| crc32c::crc32c(black_box(&limit.source)))
        });
        group.bench_function("memcpy_crc32c", |b| b.iter(|| limit.copy(true)));
        group.finish();
    }
}

/// A session with one 1 MiB read in flight and the encoded headers of its Data-Ins.
struct Rig {
    session: Session,
    target: FakeTarget,
    codec: Codec,
    now: Instant,
    /// One data segment: what the socket holds after each header.
    source: Bytes,
    /// The data digest that follows each segment on the wire.
    digest: [u8; DIGEST_LEN],
    /// Headers (BHS and header digest) of the current read's Data-Ins.
    headers: Vec<BytesMut>,
    /// The next header to receive.
    next: usize,
}

impl Rig {
    fn new(pdu_len: usize, digests: bool) -> Rig {
        let now = Instant::now();
        let (mut session, target) = FakeTarget::connect(1, digests, now);
        let codec = Codec {
            header_digest: digests,
            data_digest: digests,
            max_recv_data_segment_length: 256 << 10,
        };
        let source = Bytes::from(pattern(pdu_len));
        let digest = data_digest(&source).to_le_bytes();
        submit(&mut session, BytesMut::zeroed(COMMAND_LEN), now);
        let mut rig = Rig {
            session,
            target,
            codec,
            now,
            source,
            digest,
            headers: vec![BytesMut::with_capacity(64); COMMAND_LEN / pdu_len],
            next: 0,
        };
        rig.answer();
        rig
    }

    /// Runs one whole read and checks that every segment landed where it belongs.
    fn check(&mut self) {
        let count = self.headers.len();
        for _ in 0..count {
            self.receive();
        }
        let data = self.complete();
        assert_eq!(data.len(), COMMAND_LEN);
        for chunk in data.chunks(self.source.len()) {
            assert_eq!(chunk, &self.source[..], "landed bytes equal the source");
        }
        submit(&mut self.session, data, self.now);
        self.answer();
    }

    /// Receives `iters` Data-Ins; returns the time spent by the initiator.
    fn run(&mut self, iters: u64) -> Duration {
        let mut elapsed = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let start = Instant::now();
            while left > 0 && self.next < self.headers.len() {
                self.receive();
                left -= 1;
            }
            let done = self.next == self.headers.len();
            if done {
                let data = self.complete();
                submit(&mut self.session, data, self.now);
            }
            elapsed += start.elapsed();
            if done {
                self.answer();
            }
        }
        elapsed
    }

    /// The initiator's work for one Data-In, as `transport::link` does it.
    fn receive(&mut self) {
        let head = &self.headers[self.next];
        self.next += 1;
        let info = match self.codec.decode_header(head) {
            Ok(Some(info)) => info,
            other => panic!("Data-In header did not decode: {other:?}"),
        };
        let ahs = head.get(info.ahs_range()).unwrap_or_default();
        let header = match Pdu::parse_header(&info.bhs, ahs) {
            Ok(Pdu::DataIn(header)) => header,
            other => panic!("not a Data-In header: {other:?}"),
        };
        let landing = match self.session.begin_data_in(header, info.data_len, self.now) {
            Ok(landing) => landing,
            Err(e) => panic!("{e}"),
        };
        let dst = self.session.landing_buffer(&landing);
        if dst.len() != self.source.len() {
            panic!(
                "landing of {} bytes for a {}-byte segment",
                dst.len(),
                self.source.len()
            );
        }
        dst.copy_from_slice(&self.source);
        if info.has_data_digest {
            let landed = self.session.landing_buffer(&landing);
            if data_digest(landed) != read_digest(&self.digest) {
                panic!("data digest mismatch");
            }
        }
        self.session.finish_data_in(landing, self.now);
    }

    /// Takes the finished read's buffer back.
    fn complete(&mut self) -> BytesMut {
        match self.session.poll_completion() {
            Some((_, Ok(Outcome::Scsi(r)))) if r.status == ScsiStatus::GOOD => r.data,
            other => panic!("the read did not complete with GOOD: {other:?}"),
        }
    }

    /// The target takes the read just submitted and encodes the headers of its Data-Ins.
    fn answer(&mut self) {
        let cmd = match self.session.poll_transmit() {
            Some(Pdu::ScsiCommand(cmd)) => cmd,
            other => panic!("expected a SCSI Command, got {other:?}"),
        };
        self.target.accept(&cmd);
        let count = self.headers.len();
        let len = self.source.len();
        for (i, head) in self.headers.iter_mut().enumerate() {
            let last = i + 1 == count;
            let data_sn = u32::try_from(i).unwrap_or(u32::MAX);
            let d = self
                .target
                .data_in(cmd.itt, data_sn, i * len, self.source.clone(), last);
            head.clear();
            self.codec.encode_header(&Pdu::DataIn(d), head);
        }
        self.next = 0;
    }
}

/// The physical limits: the same segment copied to the same destinations as the landing.
struct Baseline {
    source: Vec<u8>,
    dst: Vec<u8>,
    offset: usize,
}

impl Baseline {
    fn new(pdu_len: usize) -> Baseline {
        Baseline {
            source: pattern(pdu_len),
            dst: vec![0; COMMAND_LEN],
            offset: 0,
        }
    }

    /// Copies the segment to its next slot, and computes its CRC32C there if `with_crc`.
    fn copy(&mut self, with_crc: bool) -> Option<u32> {
        let len = self.source.len();
        let slot = &mut self.dst[self.offset..self.offset + len];
        slot.copy_from_slice(black_box(&self.source));
        self.offset = (self.offset + len) % COMMAND_LEN;
        let crc = with_crc.then(|| crc32c::crc32c(slot));
        black_box(slot);
        crc
    }
}

/// Submits a read of `buf.len()` bytes into `buf`.
fn submit(session: &mut Session, buf: BytesMut, now: Instant) {
    let blocks = u32::try_from(buf.len() / 512).unwrap_or(u32::MAX);
    let cdb = sanshim_initiator::scsi::Cdb::read16(0, blocks).padded();
    let command = Command::new(Lun::from_number(1), cdb, Transfer::Read(buf));
    if let Err(e) = session.submit(command, now) {
        panic!("submit failed: {e}");
    }
}

/// Bytes that vary, so that a segment landed in the wrong place shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 4096 + 1) as u8).collect()
}
