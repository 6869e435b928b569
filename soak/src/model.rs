//! The model of the device: what each 512-byte block may hold, and the check of data read back
//! against it.
//!
//! Every write fills each block it covers with a pattern that names the write and the block
//! (`Version::pattern`): bytes 0..8 the write's id, 8..16 the block's LBA, the rest a
//! pseudo-random stream seeded by both. So a block read back that does not hold what the model
//! allows can be told apart: a valid pattern of an older write of this block (or zeroes where
//! a write was acknowledged) is a **lost write**; anything else is **wrong bytes**.
//!
//! What a block may hold:
//! - an acknowledged write of `id`: exactly `id` (ids grow, so nothing older may come back);
//! - a write that failed: what it held before, or the new data (each block on its own: a
//!   command that failed half way may have written some blocks);
//! - a trim (acknowledged or not): what it held before, or zeroes (tgtd punches a hole; NBD
//!   leaves trimmed content unspecified, the target reads zeroes);
//! - an acknowledged write-zeroes: zeroes; a failed one: what it held before, or zeroes.

use std::collections::BTreeSet;

/// Block size of the model (the LUN's logical block size).
pub const BLOCK: usize = 512;

/// What a block may hold: zeroes or the pattern of one write.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct Version(u64);

impl Version {
    /// All zeroes (the device's initial content, a trim, a write-zeroes).
    pub const ZERO: Version = Version(0);

    /// The pattern of write number `id` (ids start at 1).
    pub fn write(id: u64) -> Version {
        Version(id.max(1))
    }

    /// The write's id, `None` for zeroes.
    pub fn id(self) -> Option<u64> {
        (self.0 != 0).then_some(self.0)
    }

    /// Fills `out` (one block) with this version's content at `lba`.
    pub fn pattern(self, lba: u64, out: &mut [u8]) {
        let Some(id) = self.id() else {
            out.fill(0);
            return;
        };
        let mut x =
            id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ lba.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        for (i, word) in out.chunks_mut(8).enumerate() {
            let v = match i {
                0 => id,
                1 => lba,
                _ => splitmix(&mut x),
            };
            let bytes = v.to_le_bytes();
            word.copy_from_slice(bytes.get(..word.len()).unwrap_or(&bytes));
        }
    }
}

/// What a checked block turned out to hold.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Verdict {
    /// One of the versions the model allows.
    Ok,
    /// A version this block held earlier (or zeroes) instead of an acknowledged write's:
    /// `expected` is the newest version the model allows, `found` what was read.
    Lost {
        /// The newest allowed version.
        expected: Version,
        /// The version read.
        found: Version,
    },
    /// Bytes that are no allowed version: `wrong` of them differ from the newest allowed one.
    Wrong {
        /// The newest allowed version.
        expected: Version,
        /// Bytes differing from it.
        wrong: usize,
    },
}

/// The model of a whole device; see the module documentation.
#[derive(Debug)]
pub struct Model {
    blocks: Vec<Allowed>,
    next_id: u64,
}

/// The versions one block may hold: usually one, more after failed writes and trims.
#[derive(Clone, Debug)]
enum Allowed {
    One(Version),
    Many(BTreeSet<Version>),
}

impl Model {
    /// A device of `blocks` blocks, all zeroes.
    pub fn new(blocks: u64) -> Model {
        let n = usize::try_from(blocks).unwrap_or(usize::MAX);
        Model {
            blocks: vec![Allowed::One(Version::ZERO); n],
            next_id: 1,
        }
    }

    /// Number of blocks.
    pub fn blocks(&self) -> u64 {
        self.blocks.len() as u64
    }

    /// A fresh version for a write about to be sent.
    pub fn next_write(&mut self) -> Version {
        let v = Version::write(self.next_id);
        self.next_id += 1;
        v
    }

    /// Blocks `lba..lba + n` now hold exactly `v` (an acknowledged write or write-zeroes).
    pub fn set(&mut self, lba: u64, n: u64, v: Version) {
        for b in self.range_mut(lba, n) {
            *b = Allowed::One(v);
        }
    }

    /// Blocks `lba..lba + n` may now also hold `v` (a failed write, any trim).
    pub fn allow(&mut self, lba: u64, n: u64, v: Version) {
        for b in self.range_mut(lba, n) {
            match b {
                Allowed::One(old) if *old == v => {}
                Allowed::One(old) => *b = Allowed::Many(BTreeSet::from([*old, v])),
                Allowed::Many(set) => {
                    set.insert(v);
                }
            }
        }
    }

    /// Checks `data` (whole blocks read at `lba`), calling `each` with every block's
    /// verdict that is not [`Verdict::Ok`].
    pub fn check(&self, lba: u64, data: &[u8], mut each: impl FnMut(u64, Verdict)) {
        let mut expected = [0u8; BLOCK];
        for (i, block) in data.chunks(BLOCK).enumerate() {
            let at = lba + i as u64;
            let Some(allowed) = usize::try_from(at).ok().and_then(|i| self.blocks.get(i)) else {
                each(
                    at,
                    Verdict::Wrong {
                        expected: Version::ZERO,
                        wrong: block.len(),
                    },
                );
                continue;
            };
            let verdict = judge(at, block, allowed, &mut expected);
            if verdict != Verdict::Ok {
                each(at, verdict);
            }
        }
    }

    fn range_mut(&mut self, lba: u64, n: u64) -> &mut [Allowed] {
        let len = self.blocks.len();
        let start = usize::try_from(lba).unwrap_or(len).min(len);
        let end = usize::try_from(lba.saturating_add(n))
            .unwrap_or(len)
            .min(len);
        self.blocks.get_mut(start..end).unwrap_or_default()
    }
}

/// The verdict on one block read at `lba`.
fn judge(lba: u64, block: &[u8], allowed: &Allowed, scratch: &mut [u8; BLOCK]) -> Verdict {
    let versions: &mut dyn Iterator<Item = Version> = match allowed {
        Allowed::One(v) => &mut std::iter::once(*v),
        Allowed::Many(set) => &mut set.iter().copied(),
    };
    let mut newest = Version::ZERO;
    for v in versions {
        v.pattern(lba, scratch);
        if scratch.get(..block.len()) == Some(block) {
            return Verdict::Ok;
        }
        newest = newest.max(v);
    }
    if let Some(found) = identify(lba, block, scratch)
        && found < newest
    {
        return Verdict::Lost {
            expected: newest,
            found,
        };
    }
    newest.pattern(lba, scratch);
    let wrong = block
        .iter()
        .zip(scratch.iter())
        .filter(|(a, b)| a != b)
        .count();
    Verdict::Wrong {
        expected: newest,
        wrong,
    }
}

/// The version `block` is a valid pattern of at `lba`, if any.
fn identify(lba: u64, block: &[u8], scratch: &mut [u8; BLOCK]) -> Option<Version> {
    let word = |i: usize| -> Option<u64> {
        let bytes: [u8; 8] = block.get(i * 8..i * 8 + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(bytes))
    };
    let candidate = match (word(0)?, word(1)?) {
        (0, _) => Version::ZERO,
        (id, at) if at == lba => Version::write(id),
        _ => return None,
    };
    candidate.pattern(lba, scratch);
    (scratch.get(..block.len()) == Some(block)).then_some(candidate)
}

/// splitmix64 (Steele, Lea, Flood 2014): one step.
pub fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(lba: u64, versions: &[Version]) -> Vec<u8> {
        let mut out = vec![0u8; versions.len() * BLOCK];
        for (i, (v, block)) in versions.iter().zip(out.chunks_mut(BLOCK)).enumerate() {
            v.pattern(lba + i as u64, block);
        }
        out
    }

    fn verdicts(model: &Model, lba: u64, data: &[u8]) -> Vec<(u64, Verdict)> {
        let mut out = Vec::new();
        model.check(lba, data, |at, v| out.push((at, v)));
        out
    }

    #[test]
    fn pattern_names_write_and_block() {
        let mut b = [0u8; BLOCK];
        Version::write(7).pattern(42, &mut b);
        assert_eq!(b[..8], 7u64.to_le_bytes());
        assert_eq!(b[8..16], 42u64.to_le_bytes());
        let mut c = [0u8; BLOCK];
        Version::write(7).pattern(43, &mut c);
        assert_ne!(b[16..], c[16..], "the stream depends on the LBA");
        Version::ZERO.pattern(42, &mut c);
        assert!(c.iter().all(|&x| x == 0));
    }

    #[test]
    fn acknowledged_write_is_the_only_allowed_content() {
        let mut m = Model::new(16);
        let (a, b) = (m.next_write(), m.next_write());
        m.set(4, 2, a);
        let good = content(4, &[a, a]);
        assert!(verdicts(&m, 4, &good).is_empty());
        m.set(5, 1, b);
        // Block 5 still holding `a` after `b` was acknowledged: a lost write.
        assert_eq!(
            verdicts(&m, 4, &good),
            [(
                5,
                Verdict::Lost {
                    expected: b,
                    found: a
                }
            )]
        );
        // Zeroes where a write was acknowledged: lost as well.
        let zero = vec![0u8; BLOCK];
        assert_eq!(
            verdicts(&m, 5, &zero),
            [(
                5,
                Verdict::Lost {
                    expected: b,
                    found: Version::ZERO
                }
            )]
        );
    }

    #[test]
    fn failed_write_and_trim_allow_old_or_new() {
        let mut m = Model::new(8);
        let a = m.next_write();
        m.set(0, 4, a);
        let failed = m.next_write();
        m.allow(0, 2, failed);
        m.allow(1, 2, Version::ZERO);
        let data = content(0, &[failed, Version::ZERO, a, a]);
        assert!(verdicts(&m, 0, &data).is_empty());
        // Block 3 was untouched by both: zeroes there are a lost write.
        let data = content(3, &[Version::ZERO]);
        assert_eq!(
            verdicts(&m, 3, &data),
            [(
                3,
                Verdict::Lost {
                    expected: a,
                    found: Version::ZERO
                }
            )]
        );
    }

    #[test]
    fn flipped_bit_and_misplaced_block_are_wrong_bytes() {
        let mut m = Model::new(8);
        let a = m.next_write();
        m.set(0, 2, a);
        let mut data = content(0, &[a, a]);
        data[BLOCK + 100] ^= 0x10;
        assert_eq!(
            verdicts(&m, 0, &data),
            [(
                1,
                Verdict::Wrong {
                    expected: a,
                    wrong: 1
                }
            )]
        );
        // Block 0's valid pattern read at block 1 (a misdirected write) is not "lost".
        let data = content(0, &[a]);
        let v = verdicts(&m, 1, &data);
        assert!(
            matches!(v[..], [(1, Verdict::Wrong { wrong, .. })] if wrong > 0),
            "{v:?}"
        );
    }

    #[test]
    fn a_newer_write_than_allowed_is_wrong_not_lost() {
        let mut m = Model::new(2);
        let a = m.next_write();
        let b = m.next_write();
        m.set(0, 1, a);
        let data = content(0, &[b]);
        assert!(matches!(
            verdicts(&m, 0, &data)[..],
            [(0, Verdict::Wrong { .. })]
        ));
    }
}
