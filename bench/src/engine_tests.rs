//! The engine against [`MemDisk`] and wrappers that measure concurrency or corrupt reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sanshim_blockdev::{
    BlockDevice, BlockError, ErrorKind, Fault, FaultDisk, Geometry, Limits, MemDisk, Op, Trigger,
};

use super::*;
use crate::options::ReadWrite;
use crate::pattern::BlockStamp;

const BS: u64 = 4096;

fn mem(blocks: u64) -> Arc<MemDisk> {
    Arc::new(MemDisk::new(512, blocks).unwrap())
}

fn bytes_opts(rw: ReadWrite, bs: u64, qd: usize, bytes: u64) -> BenchOptions {
    let mut o = BenchOptions::new(rw, bs, qd, Bound::Bytes(bytes));
    o.seed = Some(1234);
    o
}

/// A [`MemDisk`] with a twist, for what the engine must notice.
struct TestDisk {
    inner: Arc<MemDisk>,
    twist: Twist,
    now: AtomicUsize,
    max: AtomicUsize,
    /// Requests the twist has counted (reads of its block, or writes).
    seen: AtomicUsize,
}

enum Twist {
    /// Holds each request for this long, counting requests in flight.
    Gauge(Duration),
    /// Flips one byte (offset 100) of every block in the list as it is read.
    Corrupt(Vec<u64>),
    /// Acknowledges writes without doing them, as a `--bstype null` LUN does.
    DropWrites,
    /// Acknowledges the write requests after the first `n` without doing them.
    DropWritesAfter(usize),
    /// Flips one byte (offset 100) of block `lba` the `nth` time (from 1) a read covers it.
    CorruptNthRead { lba: u64, nth: usize },
    /// Holds the `nth` write (from 1) covering block `lba` for `stall`.
    StallNthWrite {
        lba: u64,
        nth: usize,
        stall: Duration,
    },
}

impl TestDisk {
    fn new(inner: Arc<MemDisk>, twist: Twist) -> Arc<TestDisk> {
        Arc::new(TestDisk {
            inner,
            twist,
            now: AtomicUsize::new(0),
            max: AtomicUsize::new(0),
            seen: AtomicUsize::new(0),
        })
    }

    /// Counts a request covering `lba`; whether it is the `nth` such request.
    fn nth_covering(&self, lba: u64, nth: usize, at: u64, bytes: usize) -> bool {
        let blocks = bytes as u64 / self.inner.geometry().block_size as u64;
        (at..at + blocks).contains(&lba) && self.seen.fetch_add(1, Ordering::SeqCst) + 1 == nth
    }

    async fn hold<T>(&self, op: impl Future<Output = T>) -> T {
        let Twist::Gauge(delay) = self.twist else {
            return op.await;
        };
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        let out = op.await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

impl BlockDevice for TestDisk {
    fn geometry(&self) -> &Geometry {
        self.inner.geometry()
    }
    async fn read(&self, lba: u64, buf: BytesMut) -> Result<BytesMut, BlockError> {
        let mut buf = self.hold(self.inner.read(lba, buf)).await?;
        let bs = self.inner.geometry().block_size as u64;
        let bad = match &self.twist {
            Twist::Corrupt(bad) => bad.clone(),
            &Twist::CorruptNthRead { lba: bad, nth }
                if self.nth_covering(bad, nth, lba, buf.len()) =>
            {
                vec![bad]
            }
            _ => Vec::new(),
        };
        for bad in bad {
            if (lba..lba + buf.len() as u64 / bs).contains(&bad) {
                buf[((bad - lba) * bs + 100) as usize] ^= 0x08;
            }
        }
        Ok(buf)
    }
    async fn write(&self, lba: u64, buf: Bytes, fua: bool) -> Result<(), BlockError> {
        let drop_it = match self.twist {
            Twist::DropWrites => true,
            Twist::DropWritesAfter(n) => self.seen.fetch_add(1, Ordering::SeqCst) >= n,
            Twist::StallNthWrite {
                lba: at,
                nth,
                stall,
            } => {
                if self.nth_covering(at, nth, lba, buf.len()) {
                    tokio::time::sleep(stall).await;
                }
                false
            }
            _ => false,
        };
        if drop_it {
            return self.geometry().check_range(lba, buf.len() as u64).map(drop);
        }
        self.hold(self.inner.write(lba, buf, fua)).await
    }
    async fn flush(&self) -> Result<(), BlockError> {
        self.inner.flush().await
    }
    async fn discard(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        self.inner.discard(lba, blocks).await
    }
    async fn write_zeroes(&self, lba: u64, n: u64, unmap: bool) -> Result<(), BlockError> {
        self.inner.write_zeroes(lba, n, unmap).await
    }
    async fn probe(&self) -> Result<(), BlockError> {
        self.inner.probe().await
    }
}

#[tokio::test]
async fn size_bound_counts_are_consistent() {
    for rw in ReadWrite::ALL {
        let disk = mem(2048);
        let o = bytes_opts(rw, BS, 4, 100 * BS + 1);
        let report = run(disk.clone(), &o, |_| {}).await.unwrap();
        let m = &report.measured;
        assert_eq!(m.ops, 101, "{rw}: size rounded up to whole operations");
        assert_eq!(m.bytes, 101 * BS);
        assert_eq!(m.latency.count(), 101);
        let stats = disk.stats();
        let (done, other) = if rw.is_write() {
            (stats.writes, stats.reads)
        } else {
            (stats.reads, stats.writes)
        };
        assert_eq!((done, other), (101, 0), "{rw}");
        assert!(m.iops() > 0.0 && m.mib_per_s() > 0.0);
        assert!(m.latency_us(50.0) <= m.latency_us(99.0));
        assert!(m.latency_us(99.0) <= m.max_latency_us());
        assert!(report.verify.is_none());
    }
}

#[tokio::test]
async fn sequential_wraps_inside_the_window() {
    let disk = mem(1024);
    let mut o = bytes_opts(ReadWrite::Write, BS, 1, 10 * BS);
    o.offset = 64 * 512;
    o.span = Some(3 * BS);
    run(disk.clone(), &o, |_| {}).await.unwrap();
    let all = disk.read(0, BytesMut::zeroed(1024 * 512)).await.unwrap();
    let window = 64 * 512..64 * 512 + 3 * BS as usize;
    assert!(
        all[..window.start].iter().all(|&b| b == 0),
        "before the window"
    );
    assert!(
        all[window.end..].iter().all(|&b| b == 0),
        "after the window"
    );
    assert!(all[window].chunks(512).all(|b| b.iter().any(|&x| x != 0)));
}

#[tokio::test(start_paused = true)]
async fn time_bound_is_respected() {
    // Paused time: each request takes 1 ms of tokio's clock, so the bound is exact whatever
    // the machine's load.
    let disk = TestDisk::new(mem(4096), Twist::Gauge(Duration::from_millis(1)));
    let mut o = BenchOptions::new(
        ReadWrite::RandRead,
        BS,
        8,
        Bound::Time(Duration::from_millis(300)),
    );
    o.progress_interval = Duration::from_millis(50);
    let mut calls = Vec::new();
    let report = run(disk, &o, |p| calls.push(p.clone())).await.unwrap();
    let m = &report.measured;
    assert!(m.elapsed >= Duration::from_millis(300), "{:?}", m.elapsed);
    // Requests stop being issued at the bound; those in flight end within one request time.
    assert!(m.elapsed <= Duration::from_millis(301), "{:?}", m.elapsed);
    // 8 in flight, 1 ms each: 8 per millisecond until the bound.
    assert!((2392..=2408).contains(&m.ops), "{} ops", m.ops);
    assert_eq!(m.bytes, m.ops * BS);
    assert!(calls.len() >= 4, "{} progress calls", calls.len());
    let seen: u64 = calls.iter().map(|p| p.ops).sum();
    assert!(seen <= m.ops);
    assert_eq!(calls.last().unwrap().total_ops, seen);
    assert!(
        calls
            .iter()
            .all(|p| p.phase == Phase::Load && p.bytes == p.ops * BS)
    );
    assert!(calls.iter().any(|p| p.iops() > 0.0));
}

#[tokio::test(start_paused = true)]
async fn queue_depth_is_respected() {
    for qd in [1, 8, 32] {
        let gauge = TestDisk::new(mem(4096), Twist::Gauge(Duration::from_millis(2)));
        let o = bytes_opts(ReadWrite::RandWrite, BS, qd, 200 * BS);
        run(gauge.clone(), &o, |_| {}).await.unwrap();
        assert_eq!(gauge.max.load(Ordering::SeqCst), qd, "qd {qd}");
    }
}

#[tokio::test]
async fn large_operations_are_split_at_the_transfer_limit() {
    let limits = Limits {
        max_transfer_blocks: Some(2),
        ..Limits::default()
    };
    let disk = Arc::new(MemDisk::builder(512, 1024).limits(limits).build().unwrap());
    let o = bytes_opts(ReadWrite::Read, 3 * 512, 2, 30 * 512);
    let report = run(disk.clone(), &o, |_| {}).await.unwrap();
    assert_eq!(report.measured.ops, 10);
    assert_eq!(disk.stats().reads, 20, "each 3-block operation as 2 + 1");
}

#[tokio::test]
async fn verify_writes_then_reads_back_every_block() {
    for rw in ReadWrite::ALL {
        let disk = mem(512);
        let mut o = bytes_opts(rw, BS, 8, 1 << 30);
        o.verify = true;
        let mut phases = Vec::new();
        o.progress_interval = Duration::from_millis(10);
        let report = run(disk.clone(), &o, |p| phases.push(p.phase))
            .await
            .unwrap();
        let v = report.verify.as_ref().unwrap();
        // The window holds 64 slots; each is written once and checked once.
        assert_eq!((v.write.ops, v.read.ops), (64, 64), "{rw}");
        assert_eq!(
            (v.passes, v.blocks_checked),
            (1, 512),
            "a size bound makes one pass"
        );
        let measured = if rw.is_write() { &v.write } else { &v.read };
        assert_eq!(report.measured.ops, measured.ops);
        assert_eq!(report.measured.elapsed, measured.elapsed);
        assert!(!phases.contains(&Phase::Load), "{rw}: {phases:?}");
        let stats = disk.stats();
        assert_eq!((stats.writes, stats.reads), (64, 64), "{rw}");
        for lba in [0, 7, 300, 511] {
            let block = disk.read(lba, BytesMut::zeroed(512)).await.unwrap();
            let stamp = BlockStamp::read(&block);
            assert_eq!((stamp.lba, stamp.tag), (lba, v.tag), "{rw}");
        }
    }
}

#[tokio::test]
async fn verify_names_the_corrupted_lba() {
    for rw in [ReadWrite::Read, ReadWrite::RandWrite] {
        let disk = TestDisk::new(mem(1024), Twist::Corrupt(vec![777, 333]));
        let mut o = bytes_opts(rw, 8 * 512, 16, 1 << 20);
        o.verify = true;
        match run(disk, &o, |_| {}).await {
            Err(BenchError::Mismatch {
                first,
                bad_blocks,
                checked_blocks,
                pass,
            }) => {
                assert_eq!(pass, 1);
                assert_eq!(first.lba, 333, "{rw}: the lowest bad LBA");
                assert_eq!(first.offset, 100);
                assert_eq!(first.expected_byte ^ first.found_byte, 0x08);
                assert_eq!((bad_blocks, checked_blocks), (2, 1024), "{rw}");
            }
            other => panic!("{rw}: expected a mismatch, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn verify_catches_a_device_that_drops_writes() {
    let disk = Arc::new(FaultDisk::new(MemDisk::new(512, 256).unwrap()));
    // Writes touching block 100 fail at the device: the run stops with an I/O error there.
    disk.inject(
        Fault::fail(ErrorKind::Medium)
            .on(Op::Write)
            .when(Trigger::Blocks(100..101)),
    );
    let mut o = bytes_opts(ReadWrite::Write, BS, 4, 1 << 20);
    o.verify = true;
    match run(disk.clone(), &o, |_| {}).await {
        Err(BenchError::Io {
            op,
            lba,
            blocks,
            error,
        }) => {
            assert_eq!((op, lba, blocks), ("write", 96, 8));
            assert_eq!(error.kind(), ErrorKind::Medium);
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[tokio::test]
async fn stale_data_from_another_run_is_a_mismatch() {
    let disk = mem(256);
    let mut first = bytes_opts(ReadWrite::Write, BS, 4, 1 << 20);
    first.verify = true;
    run(disk.clone(), &first, |_| {}).await.unwrap();
    // A second run whose writes go nowhere reads the first run's blocks back.
    let dropping = TestDisk::new(disk, Twist::DropWrites);
    let mut second = first.clone();
    second.seed = Some(99);
    let err = run(dropping, &second, |_| {}).await.unwrap_err();
    let BenchError::Mismatch {
        first: m,
        bad_blocks,
        ..
    } = err
    else {
        panic!("expected a mismatch, got {err:?}");
    };
    assert_eq!(
        (m.lba, m.offset, bad_blocks),
        (0, 16, 256),
        "the tag differs first"
    );
}

#[tokio::test]
async fn bad_options_are_refused_before_any_io() {
    let disk = mem(64);
    let ro = Arc::new(MemDisk::builder(512, 64).read_only(true).build().unwrap());
    let cases: Vec<(Arc<MemDisk>, BenchOptions, &str)> = vec![
        (
            disk.clone(),
            bytes_opts(ReadWrite::Read, 1000, 1, BS),
            "multiple",
        ),
        (
            disk.clone(),
            bytes_opts(ReadWrite::Read, BS, 0, BS),
            "--qd 0",
        ),
        (
            disk.clone(),
            bytes_opts(ReadWrite::Read, 64 * 1024, 1, BS),
            "larger than",
        ),
        (
            disk.clone(),
            bytes_opts(ReadWrite::Read, BS, 1, 0),
            "--size 0",
        ),
        (
            disk.clone(),
            bytes_opts(ReadWrite::Read, 1 << 29, 4, BS),
            "MiB of buffers",
        ),
        (
            ro.clone(),
            bytes_opts(ReadWrite::Write, BS, 1, BS),
            "read-only",
        ),
        (
            ro,
            {
                let mut o = bytes_opts(ReadWrite::Read, BS, 1, BS);
                o.verify = true;
                o
            },
            "read-only",
        ),
        (
            disk.clone(),
            {
                let mut o = bytes_opts(ReadWrite::Read, BS, 1, BS);
                o.offset = 100;
                o
            },
            "offset",
        ),
        (
            disk.clone(),
            {
                let mut o = bytes_opts(ReadWrite::Read, BS, 1, BS);
                o.span = Some(1 << 20);
                o
            },
            "past the end",
        ),
    ];
    for (device, o, want) in cases {
        match run(device, &o, |_| {}).await {
            Err(BenchError::Options(msg)) => assert!(msg.contains(want), "{msg:?} lacks {want:?}"),
            other => panic!("{o:?}: expected an options error, got {other:?}"),
        }
    }
    assert_eq!(disk.stats(), Default::default(), "no I/O was done");
}

#[tokio::test]
async fn read_only_devices_can_be_read() {
    let ro = Arc::new(MemDisk::builder(512, 64).read_only(true).build().unwrap());
    let report = run(ro, &bytes_opts(ReadWrite::RandRead, BS, 2, 4 * BS), |_| {})
        .await
        .unwrap();
    assert_eq!(report.measured.ops, 4);
}

/// Verifying options for a run of `time` over 16 slots of [`BS`] bytes (a 128-block disk).
fn timed_verify(rw: ReadWrite, qd: usize, time: Duration) -> BenchOptions {
    let mut o = BenchOptions::new(rw, BS, qd, Bound::Time(time));
    o.seed = Some(1234);
    o.verify = true;
    o
}

/// The tag pass `n` (from 1) of a run with `timed_verify`'s seed stamps.
fn pass_tag(n: u64) -> u64 {
    mix64(1234 ^ TAG_SALT).wrapping_add(n - 1)
}

#[tokio::test(start_paused = true)]
async fn timed_verify_repeats_passes_until_the_time_is_up() {
    for rw in [ReadWrite::Write, ReadWrite::RandWrite] {
        // Every request takes 1 ms of (paused) time: a pass of 16 + 16 requests at qd 4 takes
        // about 8 ms, so 100 ms leave room for several.
        let mem = mem(128);
        let disk = TestDisk::new(mem.clone(), Twist::Gauge(Duration::from_millis(1)));
        let o = timed_verify(rw, 4, Duration::from_millis(100));
        let report = run(disk, &o, |_| {}).await.unwrap();
        let v = report.verify.as_ref().unwrap();
        assert!(v.passes >= 3, "{rw}: {} passes", v.passes);
        assert_eq!(v.tag, pass_tag(1));
        // All passes but the last covered the 16 slots; each written request was read back.
        let last_ops = v.write.ops - (v.passes - 1) * 16;
        assert!((1..=16).contains(&last_ops), "{rw}: {} ops", v.write.ops);
        assert_eq!(v.read.ops, v.write.ops, "{rw}");
        assert_eq!(v.blocks_checked, v.write.ops * 8, "{rw}");
        assert_eq!(
            report.measured.ops, v.write.ops,
            "{rw}: the writes are measured"
        );
        let stats = mem.stats();
        assert_eq!(
            (stats.writes, stats.reads),
            (v.write.ops, v.write.ops),
            "{rw}"
        );
        // The blocks hold the last pass's stamp where it wrote, the one before elsewhere.
        let mut newest = 0;
        for lba in 0..128 {
            let block = mem.read(lba, BytesMut::zeroed(512)).await.unwrap();
            let stamp = BlockStamp::read(&block);
            assert_eq!(stamp.lba, lba);
            if stamp.tag == pass_tag(v.passes) {
                newest += 1;
            } else {
                assert_eq!(stamp.tag, pass_tag(v.passes - 1), "{rw}: block {lba}");
            }
        }
        assert_eq!(newest, last_ops * 8, "{rw}");
    }
}

#[tokio::test(start_paused = true)]
async fn timed_verify_names_a_block_corrupted_in_pass_2() {
    let disk = TestDisk::new(mem(128), Twist::CorruptNthRead { lba: 77, nth: 2 });
    let o = timed_verify(ReadWrite::Write, 4, Duration::from_secs(3600));
    match run(disk, &o, |_| {}).await {
        Err(BenchError::Mismatch {
            first,
            bad_blocks,
            checked_blocks,
            pass,
        }) => {
            assert_eq!((pass, first.lba, first.offset), (2, 77, 100));
            assert_eq!(first.expected, first.found, "header intact");
            assert_eq!(first.expected.tag, pass_tag(2));
            assert_eq!((bad_blocks, checked_blocks), (1, 128));
        }
        other => panic!("expected a mismatch in pass 2, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn timed_verify_catches_writes_that_stop_landing() {
    // Pass 1's 16 writes land, pass 2's do not: its read-back finds pass 1's tag.
    let disk = TestDisk::new(mem(128), Twist::DropWritesAfter(16));
    let o = timed_verify(ReadWrite::Write, 1, Duration::from_secs(3600));
    match run(disk, &o, |_| {}).await {
        Err(BenchError::Mismatch {
            first,
            bad_blocks,
            pass,
            ..
        }) => {
            assert_eq!((pass, first.lba, first.offset, bad_blocks), (2, 0, 16, 128));
            assert_eq!(first.found.tag, pass_tag(1));
        }
        other => panic!("expected a mismatch in pass 2, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn timed_verify_checks_only_what_the_last_pass_wrote() {
    // At qd 1, pass 2's 11th write (blocks 80..88) outlasts the time: pass 2 ends there, and
    // slots 11..16, still holding pass 1's blocks, are not read back.
    let mem = mem(128);
    let stall = Twist::StallNthWrite {
        lba: 80,
        nth: 2,
        stall: Duration::from_secs(10),
    };
    let disk = TestDisk::new(mem.clone(), stall);
    let o = timed_verify(ReadWrite::Write, 1, Duration::from_secs(1));
    let report = run(disk, &o, |_| {}).await.unwrap();
    let v = report.verify.unwrap();
    assert_eq!((v.passes, v.write.ops, v.read.ops), (2, 27, 27));
    assert_eq!(v.blocks_checked, 27 * 8);
    for (lba, pass) in [(0, 2), (87, 2), (88, 1), (127, 1)] {
        let block = mem.read(lba, BytesMut::zeroed(512)).await.unwrap();
        assert_eq!(BlockStamp::read(&block).tag, pass_tag(pass), "block {lba}");
    }
}
