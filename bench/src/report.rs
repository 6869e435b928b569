//! What a run reports: the once-a-second [`Progress`] and the final [`Report`].

use std::fmt;
use std::time::Duration;

use crate::cpu::CpuTime;
use crate::histogram::Histogram;
use crate::options::ReadWrite;

/// Which pass of a run is going on.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Phase {
    /// The measured I/O of a run without `verify`.
    Load,
    /// The write pass of a verifying run (stamped blocks).
    VerifyWrite,
    /// The read-back pass of a verifying run.
    VerifyRead,
}

/// Figures of the last progress interval, handed to the progress callback.
#[derive(Clone, Debug)]
pub struct Progress {
    /// The pass the figures belong to.
    pub phase: Phase,
    /// Reads or writes.
    pub rw: ReadWrite,
    /// Time since the pass started.
    pub elapsed: Duration,
    /// Length of the interval the figures cover.
    pub interval: Duration,
    /// Operations completed in the interval.
    pub ops: u64,
    /// Bytes transferred in the interval.
    pub bytes: u64,
    /// Operations completed since the pass started.
    pub total_ops: u64,
    /// Latency of the operations completed in the interval, in nanoseconds.
    pub latency: Histogram,
}

impl Progress {
    /// Throughput over the interval in MiB/s.
    pub fn mib_per_s(&self) -> f64 {
        per_second(self.bytes, self.interval) / MIB
    }

    /// Operations per second over the interval.
    pub fn iops(&self) -> f64 {
        per_second(self.ops, self.interval)
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.phase {
            Phase::Load => self.rw.name(),
            Phase::VerifyWrite => "verify-write",
            Phase::VerifyRead => "verify-read",
        };
        write!(
            f,
            "{what:>12} {:>5.0}s {:>9.1} MiB/s {:>9.0} IOPS  p50 {}  p99 {}",
            self.elapsed.as_secs_f64(),
            self.mib_per_s(),
            self.iops(),
            Micros(self.latency.percentile(50.0)),
            Micros(self.latency.percentile(99.0)),
        )
    }
}

/// Figures of one pass over its whole length.
#[derive(Clone, Debug)]
pub struct PhaseReport {
    /// Wall time from the first submission to the last completion.
    pub elapsed: Duration,
    /// Operations completed.
    pub ops: u64,
    /// Bytes transferred.
    pub bytes: u64,
    /// Latency of every operation, in nanoseconds.
    pub latency: Histogram,
    /// CPU time of the whole process during the pass; `None` without /proc.
    pub cpu: Option<CpuTime>,
}

impl PhaseReport {
    /// Throughput in MiB/s.
    pub fn mib_per_s(&self) -> f64 {
        per_second(self.bytes, self.elapsed) / MIB
    }

    /// Operations per second.
    pub fn iops(&self) -> f64 {
        per_second(self.ops, self.elapsed)
    }

    /// Adds the figures of `other` (a later pass of the same kind) to these.
    pub fn absorb(&mut self, other: &PhaseReport) {
        self.elapsed += other.elapsed;
        self.ops += other.ops;
        self.bytes += other.bytes;
        self.latency.absorb(&other.latency);
        self.cpu = self.cpu.zip(other.cpu).map(|(a, b)| CpuTime {
            user: a.user + b.user,
            sys: a.sys + b.sys,
        });
    }

    /// The `p`-th latency percentile in microseconds (0 when nothing completed).
    pub fn latency_us(&self, p: f64) -> f64 {
        micros(self.latency.percentile(p))
    }

    /// The largest latency in microseconds (0 when nothing completed).
    pub fn max_latency_us(&self) -> f64 {
        micros(self.latency.max())
    }
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct Report {
    /// The access pattern.
    pub rw: ReadWrite,
    /// Bytes per operation.
    pub bs: u64,
    /// Operations kept in flight.
    pub qd: usize,
    /// Logical block size of the device.
    pub block_size: u32,
    /// The measured passes: the reads for `read`/`randread`, the writes for `write`/`randwrite`
    /// (with `verify`, those of every pass together).
    pub measured: PhaseReport,
    /// What a verifying run did besides, `None` without `verify`.
    pub verify: Option<VerifyReport>,
}

/// What a verifying run did: one or more passes, each writing stamped blocks and reading
/// back the ones it wrote.
#[derive(Clone, Debug)]
pub struct VerifyReport {
    /// The tag the blocks of the first pass carry; pass `n` (from 1) stamps `tag + n - 1`.
    pub tag: u64,
    /// Passes run; only the last may have ended before covering the whole window.
    pub passes: u64,
    /// The write passes together.
    pub write: PhaseReport,
    /// The read-back passes together.
    pub read: PhaseReport,
    /// Logical blocks read back and found as written, over all passes (all of those written).
    pub blocks_checked: u64,
}

impl VerifyReport {
    /// Adds a later pass (or passes) of the same run.
    pub fn absorb(&mut self, later: &VerifyReport) {
        self.passes += later.passes;
        self.write.absorb(&later.write);
        self.read.absorb(&later.read);
        self.blocks_checked += later.blocks_checked;
    }
}

/// Formats an optional nanosecond latency in a unit that suits it.
struct Micros(Option<u64>);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => write!(f, "     -"),
            Some(ns) if ns < 10_000_000 => write!(f, "{:>6.1}us", ns as f64 / 1e3),
            Some(ns) => write!(f, "{:>6.1}ms", ns as f64 / 1e6),
        }
    }
}

fn micros(ns: Option<u64>) -> f64 {
    ns.map_or(0.0, |ns| ns as f64 / 1e3)
}

fn per_second(count: u64, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

const MIB: f64 = 1024.0 * 1024.0;
