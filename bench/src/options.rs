//! What a run does: [`BenchOptions`] (shared/DESIGN.md, `sanshim bench`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The access pattern (`--rw`).
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum ReadWrite {
    /// Sequential reads.
    Read,
    /// Sequential writes.
    Write,
    /// Reads at random offsets.
    RandRead,
    /// Writes at random offsets.
    RandWrite,
}

impl ReadWrite {
    /// Every pattern, in `--help` order.
    pub const ALL: [ReadWrite; 4] = [
        ReadWrite::Read,
        ReadWrite::Write,
        ReadWrite::RandRead,
        ReadWrite::RandWrite,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ReadWrite::Read => "read",
            ReadWrite::Write => "write",
            ReadWrite::RandRead => "randread",
            ReadWrite::RandWrite => "randwrite",
        }
    }

    /// Whether the pattern writes.
    pub fn is_write(self) -> bool {
        matches!(self, ReadWrite::Write | ReadWrite::RandWrite)
    }

    /// Whether offsets are random.
    pub fn is_random(self) -> bool {
        matches!(self, ReadWrite::RandRead | ReadWrite::RandWrite)
    }
}

impl fmt::Display for ReadWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An `--rw` value that names no pattern.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("unknown access pattern {0:?} (read, write, randread or randwrite)")]
pub struct UnknownReadWrite(pub String);

impl FromStr for ReadWrite {
    type Err = UnknownReadWrite;

    fn from_str(s: &str) -> Result<ReadWrite, UnknownReadWrite> {
        ReadWrite::ALL
            .into_iter()
            .find(|rw| rw.name() == s)
            .ok_or_else(|| UnknownReadWrite(s.to_string()))
    }
}

/// When a pass ends.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Bound {
    /// After this long (operations in flight then still complete and count).
    Time(Duration),
    /// After this many bytes, rounded up to whole operations.
    Bytes(u64),
}

/// The parameters of a run.
///
/// The I/O stays inside a window of the device: from `offset` for `span` bytes (to the end of
/// the device when `None`), cut into `bs`-sized slots. Sequential patterns go through the slots
/// in order and wrap around; random ones pick a slot at random for every operation.
///
/// With `verify`, a pass first writes stamped blocks (see [`crate::pattern`]) to each slot at
/// most once — in order, or in a seeded random permutation for the random patterns — until the
/// bound or the end of the window, then reads every slot it wrote back and checks it. A size
/// bound makes one pass; with a time bound, passes (each with a new tag) follow one another
/// until the time is up, the last one perhaps ending part-way. The passes that match `rw` are
/// the ones reported as measured.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct BenchOptions {
    /// Access pattern.
    pub rw: ReadWrite,
    /// Bytes per operation; a multiple of the device's block size.
    pub bs: u64,
    /// Operations kept in flight.
    pub qd: usize,
    /// When the run ends (with `verify`: when the writing ends).
    pub bound: Bound,
    /// Write stamped blocks, read them back and check them.
    pub verify: bool,
    /// Start of the window in bytes; a multiple of the block size.
    pub offset: u64,
    /// Length of the window in bytes; `None` for the rest of the device.
    pub span: Option<u64>,
    /// Seed of the offsets and the run tag; `None` picks one at random.
    pub seed: Option<u64>,
    /// How often the progress callback is called.
    pub progress_interval: Duration,
}

impl BenchOptions {
    /// Options for `rw` with `bs`-byte operations, `qd` in flight, ending at `bound`; no
    /// verification, the whole device, a random seed and progress once a second.
    pub fn new(rw: ReadWrite, bs: u64, qd: usize, bound: Bound) -> BenchOptions {
        BenchOptions {
            rw,
            bs,
            qd,
            bound,
            verify: false,
            offset: 0,
            span: None,
            seed: None,
            progress_interval: Duration::from_secs(1),
        }
    }
}
