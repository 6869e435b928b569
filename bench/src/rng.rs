//! Small deterministic randomness for the engine: a SplitMix64 generator (offsets of random
//! I/O, verify patterns) and a seeded permutation of `0..n` (the order a random verify pass
//! writes each slot exactly once in).

/// SplitMix64 (Steele, Lea, Flood 2014): one `u64` of state, good enough statistics for
/// picking offsets, and cheap enough to fill data blocks with.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// A value in `0..n` (`n > 0`; 0 when `n` is 0), by multiply-shift: the bias is below
    /// `n / 2^64`, nothing for offsets.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The SplitMix64 finaliser: a bijective mix of 64 bits.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seeded bijection of `0..len` onto itself, computed on demand (no table): a few rounds
/// of invertible steps on the smallest power-of-two domain holding `len`, cycle-walking past
/// values outside `0..len`. Since the domain is less than twice `len`, a walk takes fewer than
/// two steps on average.
#[derive(Clone, Debug)]
pub struct Permutation {
    len: u64,
    bits: u32,
    keys: [u64; ROUNDS],
}

impl Permutation {
    /// A permutation of `0..len` chosen by `seed`.
    pub fn new(len: u64, seed: u64) -> Permutation {
        let bits = (64 - len.saturating_sub(1).leading_zeros()).max(1);
        let mut rng = SplitMix64::new(seed);
        Permutation {
            len,
            bits,
            keys: std::array::from_fn(|_| rng.next_u64()),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the permutation is of nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where `index` goes; `index` itself when it is outside `0..len`.
    pub fn apply(&self, index: u64) -> u64 {
        if index >= self.len {
            return index;
        }
        let mut x = index;
        loop {
            x = self.round_trip(x);
            if x < self.len {
                return x;
            }
        }
    }

    /// One pass of the bijection on `bits`-bit values.
    fn round_trip(&self, mut x: u64) -> u64 {
        let mask = if self.bits == 64 {
            u64::MAX
        } else {
            (1u64 << self.bits) - 1
        };
        let half = self.bits.div_ceil(2);
        for key in self.keys {
            // Each step is invertible on `bits`-bit values: add, multiply by an odd number,
            // xor with a right shift of itself.
            x = x.wrapping_add(key) & mask;
            x = x.wrapping_mul(key | 1) & mask;
            x ^= x >> half;
        }
        x
    }
}

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
const ROUNDS: usize = 3;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn test_below_stays_in_range() {
        let mut rng = SplitMix64::new(7);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let v = rng.below(10);
            assert!(v < 10);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "every value comes up");
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn test_permutation_shuffles() {
        let p = Permutation::new(1000, 42);
        let moved = (0..1000).filter(|&i| p.apply(i) != i).count();
        assert!(moved > 900, "only {moved} of 1000 moved");
        assert_ne!(
            (0..20).map(|i| p.apply(i)).collect::<Vec<_>>(),
            (0..20)
                .map(|i| Permutation::new(1000, 43).apply(i))
                .collect::<Vec<_>>()
        );
    }

    proptest! {
        #[test]
        fn permutation_is_a_bijection(len in 0u64..3000, seed in any::<u64>()) {
            let p = Permutation::new(len, seed);
            let mut hit = vec![false; len as usize];
            for i in 0..len {
                let j = p.apply(i);
                prop_assert!(j < len);
                prop_assert!(!hit[j as usize], "{} hit twice", j);
                hit[j as usize] = true;
            }
        }

        #[test]
        fn permutation_of_huge_domains_stays_inside(len in 1u64.., seed in any::<u64>(), i in any::<u64>()) {
            let p = Permutation::new(len, seed);
            prop_assert!(p.apply(i % len) < len);
        }
    }
}
