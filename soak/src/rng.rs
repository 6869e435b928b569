//! A small seeded pseudo-random generator (splitmix64): the soak's choices are reproducible
//! from its seed (up to the timing of the threads that use them).

use crate::model::splitmix;

/// A splitmix64 stream.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A stream from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A new independent stream, for another thread.
    pub fn fork(&mut self) -> Rng {
        Rng(self.next())
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        splitmix(&mut self.0)
    }

    /// A value in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next() % (hi - lo)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// A duration between `lo_ms` and `hi_ms` milliseconds.
    pub fn millis(&mut self, lo_ms: u64, hi_ms: u64) -> std::time::Duration {
        std::time::Duration::from_millis(self.range(lo_ms, hi_ms))
    }
}
