//! The data a verifying run writes: every logical block carries who it is, so that a block
//! read back from the wrong place, from another run or torn by a bad path is told apart.
//!
//! ```text
//!  0        8        16       24       32                                  block_size
//!  | magic  |  LBA   |  tag   |  seq   | SplitMix64 stream seeded by (LBA, tag, seq) |
//! ```
//!
//! All fields little-endian. `tag` is random per run and one higher for each further pass of a
//! timed run, `seq` is the number of the write operation (within its pass) that put the block
//! there.

use std::fmt;

use crate::rng::{SplitMix64, mix64};

/// The first eight bytes of every block a verifying run writes.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SANSHIMV");
/// Bytes of header before the pattern.
pub const HEADER_LEN: usize = 32;

/// What a block's header says (or should say).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct BlockStamp {
    /// The magic number, [`MAGIC`] when intact.
    pub magic: u64,
    /// The logical block address the block was written to.
    pub lba: u64,
    /// The run tag.
    pub tag: u64,
    /// The write operation that wrote it.
    pub seq: u64,
}

/// A block that did not read back as written: the first differing byte, and the headers.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Mismatch {
    /// The logical block address that read back wrong.
    pub lba: u64,
    /// Offset of the first differing byte within the block.
    pub offset: usize,
    /// The byte that should be there.
    pub expected_byte: u8,
    /// The byte that is there.
    pub found_byte: u8,
    /// The header that should be there.
    pub expected: BlockStamp,
    /// The header bytes that are there, read as a header (meaningless if the block is foreign).
    pub found: BlockStamp,
}

impl BlockStamp {
    /// The stamp of block `lba` written by operation `seq` of run `tag`.
    pub fn new(lba: u64, tag: u64, seq: u64) -> BlockStamp {
        BlockStamp {
            magic: MAGIC,
            lba,
            tag,
            seq,
        }
    }

    /// Reads the header at the start of `block`; missing bytes read as zero.
    pub fn read(block: &[u8]) -> BlockStamp {
        let word = |i: usize| {
            let mut bytes = [0u8; 8];
            if let Some(src) = block.get(i * 8..i * 8 + 8) {
                bytes.copy_from_slice(src);
            }
            u64::from_le_bytes(bytes)
        };
        BlockStamp {
            magic: word(0),
            lba: word(1),
            tag: word(2),
            seq: word(3),
        }
    }

    fn header(&self) -> [u64; 4] {
        [self.magic, self.lba, self.tag, self.seq]
    }

    fn stream(&self) -> SplitMix64 {
        SplitMix64::new(mix64(self.lba ^ mix64(self.tag ^ mix64(self.seq))))
    }
}

impl fmt::Display for BlockStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.magic != MAGIC {
            write!(f, "no stamp (magic {:#018x}) ", self.magic)?;
        }
        write!(
            f,
            "lba {} tag {:#018x} seq {}",
            self.lba, self.tag, self.seq
        )
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "block at LBA {} differs at byte {}: expected {:#04x}, found {:#04x} \
             (expected header: {}; found header: {})",
            self.lba, self.offset, self.expected_byte, self.found_byte, self.expected, self.found
        )
    }
}

/// Fills `buf` (whole blocks of `block_size` bytes, the first at `lba`) with the stamped
/// pattern of write operation `seq` of run `tag`. A trailing partial block is left as is.
pub fn fill(buf: &mut [u8], block_size: usize, lba: u64, tag: u64, seq: u64) {
    for (i, block) in buf.chunks_exact_mut(block_size.max(1)).enumerate() {
        let stamp = BlockStamp::new(lba.wrapping_add(i as u64), tag, seq);
        let mut words = stamp
            .header()
            .into_iter()
            .chain(PatternWords(stamp.stream()));
        for chunk in block.chunks_mut(8) {
            let word = words.next().unwrap_or_default().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// Checks that `buf` (blocks from `lba`) holds what [`fill`] wrote for `(tag, seq)`; returns
/// the first block that does not.
pub fn check(buf: &[u8], block_size: usize, lba: u64, tag: u64, seq: u64) -> Option<Mismatch> {
    for (i, block) in buf.chunks_exact(block_size.max(1)).enumerate() {
        let expected = BlockStamp::new(lba.wrapping_add(i as u64), tag, seq);
        if let Some(m) = check_block(block, expected) {
            return Some(m);
        }
    }
    None
}

/// Compares one block with the pattern of `expected`, eight bytes at a time.
fn check_block(block: &[u8], expected: BlockStamp) -> Option<Mismatch> {
    let words = expected
        .header()
        .into_iter()
        .chain(PatternWords(expected.stream()));
    for ((index, chunk), word) in block.chunks(8).enumerate().zip(words) {
        let want = word.to_le_bytes();
        let Some(at) = chunk
            .iter()
            .zip(want)
            .position(|(have, want)| *have != want)
        else {
            continue;
        };
        let offset = index * 8 + at;
        return Some(Mismatch {
            lba: expected.lba,
            offset,
            expected_byte: want[at],
            found_byte: chunk[at],
            expected,
            found: BlockStamp::read(block),
        });
    }
    None
}

/// The body words of a stamped block.
struct PatternWords(SplitMix64);

impl Iterator for PatternWords {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        Some(self.0.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_fill_layout() {
        let mut buf = vec![0u8; 1024];
        fill(&mut buf, 512, 77, 0x1122_3344_5566_7788, 9);
        assert_eq!(&buf[0..8], b"SANSHIMV");
        assert_eq!(&buf[8..16], &77u64.to_le_bytes());
        assert_eq!(&buf[16..24], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&buf[24..32], &9u64.to_le_bytes());
        assert_eq!(
            &buf[512 + 8..512 + 16],
            &78u64.to_le_bytes(),
            "second block"
        );
        assert_ne!(
            &buf[32..512],
            &buf[512 + 32..1024],
            "patterns differ per block"
        );
        assert!(buf[32..512].iter().any(|&b| b != 0));
        assert_eq!(check(&buf, 512, 77, 0x1122_3344_5566_7788, 9), None);
    }

    #[test]
    fn test_check_names_the_first_bad_block_and_byte() {
        let mut buf = vec![0u8; 4 * 512];
        fill(&mut buf, 512, 1000, 5, 3);
        buf[2 * 512 + 300] ^= 0x40;
        buf[3 * 512 + 10] ^= 0x01;
        let m = check(&buf, 512, 1000, 5, 3).unwrap();
        assert_eq!(m.lba, 1002);
        assert_eq!(m.offset, 300);
        assert_eq!(m.found_byte ^ m.expected_byte, 0x40);
        assert_eq!(m.found, m.expected, "header intact");
        let text = m.to_string();
        assert!(
            text.contains("LBA 1002") && text.contains("byte 300"),
            "{text}"
        );
    }

    #[test]
    fn test_check_tells_other_writes_apart() {
        let mut buf = vec![0u8; 4096];
        fill(&mut buf, 4096, 8, 5, 3);
        let other_seq = check(&buf, 4096, 8, 5, 4).unwrap();
        assert_eq!((other_seq.offset, other_seq.found.seq), (24, 3));
        let other_run = check(&buf, 4096, 8, 6, 3).unwrap();
        assert_eq!((other_run.offset, other_run.found.tag), (16, 5));
        let misplaced = check(&buf, 4096, 9, 5, 3).unwrap();
        assert_eq!((misplaced.lba, misplaced.found.lba), (9, 8));
        let zeroes = check(&[0u8; 512], 512, 0, 5, 3).unwrap();
        assert_eq!(zeroes.offset, 0);
        assert!(zeroes.to_string().contains("no stamp"));
    }
}
