//! Latency histograms: log-linear buckets (32 per power of two, so a reported percentile is
//! within about 3 % of the true value), a fixed array of counters, nothing allocated per
//! sample.
//!
//! Values below 64 have a bucket each; above, bucket `i` of octave `e` (values in
//! `[2^e, 2^(e+1))`) holds the values whose five bits after the leading one equal `i`.
//! Percentiles use the nearest-rank definition (the smallest recorded value with at least
//! `p` % of the samples at or below it) and report the top of that value's bucket, capped at
//! the largest value recorded.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bits of mantissa kept below the leading one.
const SUB_BITS: u32 = 5;
/// Buckets per octave.
const SUB: u64 = 1 << SUB_BITS;
/// Number of buckets: exact values below `2 * SUB`, then `SUB` per octave up to 2^64.
pub const BUCKETS: usize = ((65 - SUB_BITS) as usize) * SUB as usize;

/// A histogram of `u64` samples (nanoseconds, in the bench engine).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    max: u64,
}

/// A histogram many tasks record into at once (relaxed atomic counters); read it through
/// [`AtomicHistogram::snapshot`].
#[derive(Debug)]
pub struct AtomicHistogram {
    counts: Box<[AtomicU64; BUCKETS]>,
    max: AtomicU64,
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            max: 0,
        }
    }

    /// Adds one sample.
    pub fn record(&mut self, value: u64) {
        self.counts[bucket_of(value)] += 1;
        self.total += 1;
        self.max = self.max.max(value);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest sample (exact), `None` when empty.
    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    /// The `p`-th percentile (`p` in 0..=100, clamped), `None` when empty; see the module
    /// documentation for the definition and precision.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = rank_of(p, self.total);
        let mut seen = 0u64;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(bucket_range(bucket).1.min(self.max));
            }
        }
        Some(self.max)
    }

    /// Adds the samples of `other`.
    pub fn absorb(&mut self, other: &Histogram) {
        for (count, more) in self.counts.iter_mut().zip(other.counts.iter()) {
            *count += more;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The samples of `self` that `earlier` (an older snapshot of the same recorder) did not
    /// have yet. The maximum is that of `self`, since a maximum cannot be subtracted.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let mut out = Histogram::new();
        for (i, (now, then)) in self.counts.iter().zip(earlier.counts.iter()).enumerate() {
            out.counts[i] = now.saturating_sub(*then);
        }
        out.total = out.counts.iter().sum();
        out.max = self.max;
        out
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl AtomicHistogram {
    /// An empty histogram.
    pub fn new() -> AtomicHistogram {
        AtomicHistogram {
            counts: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            max: AtomicU64::new(0),
        }
    }

    /// Adds one sample.
    pub fn record(&self, value: u64) {
        self.counts[bucket_of(value)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(value, Ordering::Relaxed);
    }

    /// A copy of the counts so far. Samples recorded meanwhile may or may not be included.
    pub fn snapshot(&self) -> Histogram {
        let mut out = Histogram::new();
        for (slot, counter) in out.counts.iter_mut().zip(self.counts.iter()) {
            *slot = counter.load(Ordering::Relaxed);
        }
        out.total = out.counts.iter().sum();
        out.max = self.max.load(Ordering::Relaxed);
        out
    }
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram::new()
    }
}

/// The bucket a value falls in.
pub fn bucket_of(value: u64) -> usize {
    if value < 2 * SUB {
        return value as usize;
    }
    let octave = 63 - value.leading_zeros();
    let shift = octave - SUB_BITS;
    let mantissa = value >> shift; // in [SUB, 2 * SUB)
    ((shift as u64 + 1) * SUB + mantissa - SUB) as usize
}

/// The smallest and largest value of a bucket (both inclusive).
pub fn bucket_range(bucket: usize) -> (u64, u64) {
    let bucket = bucket as u64;
    if bucket < 2 * SUB {
        return (bucket, bucket);
    }
    let shift = bucket / SUB - 1;
    let mantissa = bucket % SUB + SUB;
    let low = mantissa << shift;
    (low, low + ((1u64 << shift) - 1))
}

/// Nearest rank (1-based) of the `p`-th percentile among `total` samples.
fn rank_of(p: f64, total: u64) -> u64 {
    let p = if p.is_nan() {
        100.0
    } else {
        p.clamp(0.0, 100.0)
    };
    // total < 2^53 in any real run, so the float product is exact enough.
    let rank = (p / 100.0 * total as f64).ceil() as u64;
    rank.clamp(1, total)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn test_buckets_are_contiguous() {
        let mut next = 0u64;
        for bucket in 0..BUCKETS {
            let (low, high) = bucket_range(bucket);
            assert_eq!(low, next, "bucket {bucket}");
            assert!(high >= low);
            assert_eq!(bucket_of(low), bucket);
            assert_eq!(bucket_of(high), bucket);
            next = high.wrapping_add(1);
        }
        assert_eq!(next, 0, "the last bucket ends at u64::MAX");
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn test_precision() {
        for bucket in 2 * SUB as usize..BUCKETS {
            let (low, high) = bucket_range(bucket);
            assert!(
                (high - low) as f64 <= low as f64 / SUB as f64,
                "bucket {bucket}"
            );
        }
    }

    #[test]
    fn test_empty_and_small() {
        let mut h = Histogram::new();
        assert_eq!(h.percentile(50.0), None);
        assert_eq!(h.max(), None);
        for v in [5, 1, 3, 2, 4] {
            h.record(v);
        }
        assert_eq!(h.percentile(0.0), Some(1));
        assert_eq!(h.percentile(50.0), Some(3));
        assert_eq!(h.percentile(99.0), Some(5));
        assert_eq!(h.percentile(100.0), Some(5));
        assert_eq!(h.max(), Some(5));
        assert_eq!(h.count(), 5);
    }

    #[test]
    fn test_atomic_snapshot_and_since() {
        let a = AtomicHistogram::new();
        a.record(10);
        a.record(1_000_000);
        let first = a.snapshot();
        a.record(20);
        a.record(30);
        let second = a.snapshot();
        let delta = second.since(&first);
        assert_eq!(delta.count(), 2);
        assert_eq!(delta.percentile(50.0), Some(20));
        assert_eq!(second.max(), Some(1_000_000));
        assert_eq!(second.count(), 4);
    }

    #[test]
    fn test_absorb_is_recording_both() {
        let (mut a, mut b, mut both) = (Histogram::new(), Histogram::new(), Histogram::new());
        for v in [7, 300, 90_000] {
            a.record(v);
            both.record(v);
        }
        for v in [1, 5_000_000] {
            b.record(v);
            both.record(v);
        }
        a.absorb(&b);
        assert_eq!(a, both);
        a.absorb(&Histogram::new());
        assert_eq!(
            a, both,
            "an empty histogram adds nothing, the maximum stays"
        );
    }

    /// The reference: nearest rank over the sorted samples.
    fn reference(sorted: &[u64], p: f64) -> u64 {
        sorted[(rank_of(p, sorted.len() as u64) - 1) as usize]
    }

    proptest! {
        #[test]
        fn percentiles_match_sorted_reference(
            samples in prop::collection::vec(
                prop_oneof![0u64..200, 0u64..10_000_000, any::<u64>()], 1..400),
            p in prop_oneof![Just(50.0), Just(99.0), Just(0.0), Just(100.0), 0.0f64..=100.0],
        ) {
            let mut h = Histogram::new();
            let atomic = AtomicHistogram::new();
            for &s in &samples {
                h.record(s);
                atomic.record(s);
            }
            let mut sorted = samples.clone();
            sorted.sort_unstable();
            let want = reference(&sorted, p);
            let got = h.percentile(p).unwrap();
            let (low, high) = bucket_range(bucket_of(want));
            prop_assert!(low <= got && got <= high, "p{p}: got {got}, true {want}");
            prop_assert!(got >= want);
            prop_assert_eq!(h.max(), sorted.last().copied());
            prop_assert_eq!(atomic.snapshot(), h);
        }
    }
}
