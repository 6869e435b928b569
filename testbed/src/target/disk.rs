//! LUN 1's medium: one byte vector in memory, shared by every connection and kept across
//! reconnections for the life of the target.

use std::sync::{PoisonError, RwLock};

use bytes::{Bytes, BytesMut};

/// The in-memory medium. Offsets and lengths are in bytes; callers check LBA ranges first,
/// and anything outside the medium is ignored (reads of it return nothing).
#[derive(Debug)]
pub(crate) struct Disk {
    bytes: RwLock<Vec<u8>>,
}

impl Disk {
    /// A zeroed medium of `len` bytes (the allocator maps zero pages lazily, so a large
    /// medium costs only what is written).
    pub(crate) fn new(len: usize) -> Disk {
        Disk {
            bytes: RwLock::new(vec![0; len]),
        }
    }

    /// Copies `len` bytes at `offset` out, in one allocation.
    pub(crate) fn read(&self, offset: u64, len: usize) -> Bytes {
        let bytes = self.bytes.read().unwrap_or_else(PoisonError::into_inner);
        let Some(src) = range(offset, len).and_then(|r| bytes.get(r)) else {
            return Bytes::new();
        };
        let mut out = BytesMut::with_capacity(len);
        out.extend_from_slice(src);
        out.freeze()
    }

    /// Stores `data` at `offset`.
    pub(crate) fn write(&self, offset: u64, data: &[u8]) {
        let mut bytes = self.bytes.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(dst) = range(offset, data.len()).and_then(|r| bytes.get_mut(r)) {
            dst.copy_from_slice(data);
        }
    }

    /// Stores `pattern` repeated `count` times from `offset` (WRITE SAME), or zeroes when
    /// `pattern` is empty (unmap).
    pub(crate) fn write_same(&self, offset: u64, pattern: &[u8], len: usize) {
        let mut bytes = self.bytes.write().unwrap_or_else(PoisonError::into_inner);
        let Some(dst) = range(offset, len).and_then(|r| bytes.get_mut(r)) else {
            return;
        };
        if pattern.is_empty() || pattern.iter().all(|&b| b == 0) {
            dst.fill(0);
            return;
        }
        for chunk in dst.chunks_mut(pattern.len()) {
            let n = chunk.len();
            if let Some(src) = pattern.get(..n) {
                chunk.copy_from_slice(src);
            }
        }
    }
}

fn range(offset: u64, len: usize) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(offset).ok()?;
    Some(start..start.checked_add(len)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_write_same_and_bounds() {
        let d = Disk::new(16);
        d.write(2, b"abc");
        assert_eq!(&d.read(0, 6)[..], b"\0\0abc\0");
        d.write_same(8, b"xy", 6);
        assert_eq!(&d.read(8, 8)[..], b"xyxyxy\0\0");
        d.write_same(8, b"", 4);
        assert_eq!(&d.read(8, 8)[..], b"\0\0\0\0xy\0\0");
        assert!(d.read(10, 10).is_empty());
        d.write(15, b"zz");
        assert_eq!(&d.read(14, 2)[..], b"\0\0");
    }
}
