//! [`MemDisk`]: a [`BlockDevice`] held in memory, for tests and benchmarks.
//!
//! The disk is either dense (one zeroed buffer of the whole size) or sparse (chunks allocated
//! on first write, freed again by discard and unmapping write-zeroes, so that a terabyte-sized
//! disk costs only what is written). It enforces its own [`Limits`], which lets tests check
//! that upper layers split requests, and counts operations in [`MemDiskStats`], which lets
//! tests check that FUA and flush reach the device.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};

use crate::{BlockDevice, BlockError, ErrorKind, Geometry, Limits};

/// Bytes per chunk of a sparse disk (or one block, when blocks are larger).
const SPARSE_CHUNK: u64 = 64 * 1024;

/// An in-memory block device. Cheap to share behind an `Arc`; every method may be called from
/// many tasks at once (a reader-writer lock keeps each request atomic).
#[derive(Debug)]
pub struct MemDisk {
    geometry: Geometry,
    store: RwLock<Store>,
    stats: Counters,
}

/// Configures a [`MemDisk`]; made by [`MemDisk::builder`]. Every capability is on by default.
#[derive(Clone, Debug)]
pub struct MemDiskBuilder {
    geometry: Geometry,
    sparse: bool,
}

/// Why a [`MemDisk`] could not be built.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MemDiskError {
    /// The block size is not a power of two of at least 512 bytes.
    #[error("block size {0} is not a power of two of at least 512")]
    BlockSize(u32),
    /// A dense disk of this size does not fit in memory; use a sparse one.
    #[error("a dense disk of {0} bytes does not fit in memory")]
    TooLarge(u64),
}

/// How many operations of each kind a [`MemDisk`] has completed successfully.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct MemDiskStats {
    /// Reads.
    pub reads: u64,
    /// Writes, with or without FUA.
    pub writes: u64,
    /// Writes with FUA.
    pub fua_writes: u64,
    /// Flushes.
    pub flushes: u64,
    /// Discards.
    pub discards: u64,
    /// Write-zeroes, with or without unmap.
    pub write_zeroes: u64,
    /// Write-zeroes that were allowed to unmap.
    pub unmapping_write_zeroes: u64,
}

#[derive(Debug)]
enum Store {
    Dense(Vec<u8>),
    Sparse {
        chunk: u64,
        chunks: HashMap<u64, Box<[u8]>>,
    },
}

#[derive(Debug, Default)]
struct Counters {
    reads: AtomicU64,
    writes: AtomicU64,
    fua_writes: AtomicU64,
    flushes: AtomicU64,
    discards: AtomicU64,
    write_zeroes: AtomicU64,
    unmapping_write_zeroes: AtomicU64,
}

impl MemDisk {
    /// A dense disk of `blocks` blocks of `block_size` bytes with every capability.
    ///
    /// # Errors
    /// [`MemDiskError`] for a bad block size or a size that does not fit in memory.
    pub fn new(block_size: u32, blocks: u64) -> Result<MemDisk, MemDiskError> {
        MemDisk::builder(block_size, blocks).build()
    }

    /// Starts configuring a disk of `blocks` blocks of `block_size` bytes.
    pub fn builder(block_size: u32, blocks: u64) -> MemDiskBuilder {
        MemDiskBuilder {
            geometry: Geometry {
                block_size,
                blocks,
                read_only: false,
                can_flush: true,
                can_fua: true,
                can_discard: true,
                can_write_zeroes: true,
                limits: Limits::default(),
            },
            sparse: false,
        }
    }

    /// Operation counts so far.
    pub fn stats(&self) -> MemDiskStats {
        let c = &self.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MemDiskStats {
            reads: get(&c.reads),
            writes: get(&c.writes),
            fua_writes: get(&c.fua_writes),
            flushes: get(&c.flushes),
            discards: get(&c.discards),
            write_zeroes: get(&c.write_zeroes),
            unmapping_write_zeroes: get(&c.unmapping_write_zeroes),
        }
    }

    /// Bytes of memory holding data: the whole size for a dense disk, the allocated chunks for a
    /// sparse one.
    pub fn allocated_bytes(&self) -> u64 {
        match &*self.store.read().unwrap_or_else(|e| e.into_inner()) {
            Store::Dense(v) => v.len() as u64,
            Store::Sparse { chunk, chunks } => chunks.len() as u64 * chunk,
        }
    }

    fn byte_range(&self, lba: u64, blocks: u64) -> (u64, u64) {
        let bs = u64::from(self.geometry.block_size);
        // check_blocks has bounded lba + blocks by the device size, which fits in u64 bytes.
        (lba.saturating_mul(bs), blocks.saturating_mul(bs))
    }

    fn check_writable(&self) -> Result<(), BlockError> {
        if self.geometry.read_only {
            return Err(BlockError::new(
                ErrorKind::ReadOnly,
                "memory disk is read-only",
            ));
        }
        Ok(())
    }

    fn check_limit(
        &self,
        blocks: u64,
        limit: Option<u64>,
        what: &'static str,
    ) -> Result<(), BlockError> {
        match limit {
            Some(max) if blocks > max => Err(BlockError::new(ErrorKind::InvalidRequest, what)),
            _ => Ok(()),
        }
    }

    fn zero_range(&self, lba: u64, blocks: u64, unmap: bool) {
        let (start, len) = self.byte_range(lba, blocks);
        let mut store = self.store.write().unwrap_or_else(|e| e.into_inner());
        store.zero(start, len, unmap);
    }
}

impl MemDiskBuilder {
    /// Makes the disk refuse writes.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.geometry.read_only = read_only;
        self
    }

    /// Sets [`Geometry::can_flush`].
    pub fn can_flush(mut self, can: bool) -> Self {
        self.geometry.can_flush = can;
        self
    }

    /// Sets [`Geometry::can_fua`].
    pub fn can_fua(mut self, can: bool) -> Self {
        self.geometry.can_fua = can;
        self
    }

    /// Sets [`Geometry::can_discard`]; without it, discard fails with `Unsupported` and
    /// write-zeroes never deallocates.
    pub fn can_discard(mut self, can: bool) -> Self {
        self.geometry.can_discard = can;
        self
    }

    /// Sets [`Geometry::can_write_zeroes`].
    pub fn can_write_zeroes(mut self, can: bool) -> Self {
        self.geometry.can_write_zeroes = can;
        self
    }

    /// Sets the limits the disk states and enforces.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.geometry.limits = limits;
        self
    }

    /// Allocates memory only for chunks that were written.
    pub fn sparse(mut self, sparse: bool) -> Self {
        self.sparse = sparse;
        self
    }

    /// Builds the disk, all zeroes.
    ///
    /// # Errors
    /// [`MemDiskError`] for a bad block size or a dense size that does not fit in memory.
    pub fn build(self) -> Result<MemDisk, MemDiskError> {
        let bs = self.geometry.block_size;
        if bs < 512 || !bs.is_power_of_two() {
            return Err(MemDiskError::BlockSize(bs));
        }
        let size = self.geometry.blocks.checked_mul(u64::from(bs));
        let store = match (self.sparse, size) {
            (_, None) => return Err(MemDiskError::TooLarge(u64::MAX)),
            (true, Some(_)) => Store::Sparse {
                chunk: SPARSE_CHUNK.max(u64::from(bs)),
                chunks: HashMap::new(),
            },
            (false, Some(size)) => {
                let len = usize::try_from(size).map_err(|_| MemDiskError::TooLarge(size))?;
                let mut v = Vec::new();
                v.try_reserve_exact(len)
                    .map_err(|_| MemDiskError::TooLarge(size))?;
                v.resize(len, 0);
                Store::Dense(v)
            }
        };
        Ok(MemDisk {
            geometry: self.geometry,
            store: RwLock::new(store),
            stats: Counters::default(),
        })
    }
}

impl BlockDevice for MemDisk {
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    async fn read(&self, lba: u64, mut buf: BytesMut) -> Result<BytesMut, BlockError> {
        let blocks = self.geometry.check_range(lba, buf.len() as u64)?;
        let max = self.geometry.limits.max_transfer_blocks.map(u64::from);
        self.check_limit(blocks, max, "read longer than the maximum transfer length")?;
        let (start, _) = self.byte_range(lba, blocks);
        self.store
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .read(start, &mut buf);
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        Ok(buf)
    }

    async fn write(&self, lba: u64, buf: Bytes, fua: bool) -> Result<(), BlockError> {
        let blocks = self.geometry.check_range(lba, buf.len() as u64)?;
        self.check_writable()?;
        let max = self.geometry.limits.max_transfer_blocks.map(u64::from);
        self.check_limit(blocks, max, "write longer than the maximum transfer length")?;
        let (start, _) = self.byte_range(lba, blocks);
        self.store
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .write(start, &buf);
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        if fua {
            self.stats.fua_writes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), BlockError> {
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn discard(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        self.geometry.check_blocks(lba, blocks)?;
        self.check_writable()?;
        if !self.geometry.can_discard {
            return Err(BlockError::new(
                ErrorKind::Unsupported,
                "memory disk cannot discard",
            ));
        }
        let max = self.geometry.limits.max_discard_blocks.map(u64::from);
        self.check_limit(blocks, max, "discard longer than the maximum unmap count")?;
        self.zero_range(lba, blocks, true);
        self.stats.discards.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn write_zeroes(&self, lba: u64, blocks: u64, unmap: bool) -> Result<(), BlockError> {
        self.geometry.check_blocks(lba, blocks)?;
        self.check_writable()?;
        let max = self.geometry.limits.max_write_zeroes_blocks;
        self.check_limit(
            blocks,
            max,
            "write-zeroes longer than the maximum write-same length",
        )?;
        let unmap = unmap && self.geometry.can_discard;
        self.zero_range(lba, blocks, unmap);
        self.stats.write_zeroes.fetch_add(1, Ordering::Relaxed);
        if unmap {
            self.stats
                .unmapping_write_zeroes
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn probe(&self) -> Result<(), BlockError> {
        Ok(())
    }
}

impl Store {
    /// Calls `f(chunk index, offset in chunk, range in the caller's buffer)` for each chunk
    /// piece of `len` bytes at `start`.
    fn pieces(
        chunk: u64,
        start: u64,
        len: u64,
        mut f: impl FnMut(u64, usize, std::ops::Range<usize>),
    ) {
        let mut done = 0u64;
        while done < len {
            let pos = start + done;
            let (index, offset) = (pos / chunk, pos % chunk);
            let n = (chunk - offset).min(len - done);
            // Offsets and lengths are below the chunk size or the caller's buffer length.
            f(index, offset as usize, done as usize..(done + n) as usize);
            done += n;
        }
    }

    fn read(&self, start: u64, buf: &mut [u8]) {
        match self {
            Store::Dense(v) => {
                let s = start as usize;
                buf.copy_from_slice(&v[s..s + buf.len()]);
            }
            Store::Sparse { chunk, chunks } => {
                Store::pieces(*chunk, start, buf.len() as u64, |i, off, r| {
                    let dst = &mut buf[r];
                    match chunks.get(&i) {
                        Some(c) => dst.copy_from_slice(&c[off..off + dst.len()]),
                        None => dst.fill(0),
                    }
                });
            }
        }
    }

    fn write(&mut self, start: u64, buf: &[u8]) {
        match self {
            Store::Dense(v) => {
                let s = start as usize;
                v[s..s + buf.len()].copy_from_slice(buf);
            }
            Store::Sparse { chunk, chunks } => {
                let size = *chunk as usize;
                Store::pieces(*chunk, start, buf.len() as u64, |i, off, r| {
                    let c = chunks
                        .entry(i)
                        .or_insert_with(|| vec![0; size].into_boxed_slice());
                    c[off..off + r.len()].copy_from_slice(&buf[r]);
                });
            }
        }
    }

    /// Zeroes `len` bytes at `start`; with `unmap` a sparse store frees whole chunks, without
    /// it every touched chunk ends up allocated (as NBD's NO_HOLE asks).
    fn zero(&mut self, start: u64, len: u64, unmap: bool) {
        match self {
            Store::Dense(v) => {
                let s = start as usize;
                v[s..s + len as usize].fill(0);
            }
            Store::Sparse { chunk, chunks } => {
                let size = *chunk as usize;
                Store::pieces(*chunk, start, len, |i, off, r| {
                    if unmap && r.len() == size {
                        chunks.remove(&i);
                    } else if unmap {
                        if let Some(c) = chunks.get_mut(&i) {
                            c[off..off + r.len()].fill(0);
                        }
                    } else {
                        let c = chunks
                            .entry(i)
                            .or_insert_with(|| vec![0; size].into_boxed_slice());
                        c[off..off + r.len()].fill(0);
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn test_build_rejects_bad_block_size() {
        assert_eq!(
            MemDisk::new(1000, 8).unwrap_err(),
            MemDiskError::BlockSize(1000)
        );
        assert_eq!(
            MemDisk::new(256, 8).unwrap_err(),
            MemDiskError::BlockSize(256)
        );
        assert!(matches!(
            MemDisk::new(4096, u64::MAX).unwrap_err(),
            MemDiskError::TooLarge(_)
        ));
    }

    #[test]
    fn test_sparse_allocates_on_write_and_frees_on_unmap() {
        block_on(async {
            let disk = MemDisk::builder(512, 1 << 31).sparse(true).build().unwrap();
            assert_eq!(disk.allocated_bytes(), 0);
            disk.write(1000, Bytes::from_static(&[7; 1024]), false)
                .await
                .unwrap();
            assert_eq!(disk.allocated_bytes(), SPARSE_CHUNK);
            // A partial unmap zeroes but keeps the chunk.
            disk.write_zeroes(1000, 1, true).await.unwrap();
            assert_eq!(disk.allocated_bytes(), SPARSE_CHUNK);
            let buf = disk.read(1000, BytesMut::zeroed(1024)).await.unwrap();
            assert!(buf[..512].iter().all(|&b| b == 0) && buf[512..].iter().all(|&b| b == 7));
            // Unmapping the whole chunk frees it; NO_HOLE-style zeroing allocates it again.
            disk.discard(896, 128).await.unwrap();
            assert_eq!(disk.allocated_bytes(), 0);
            disk.write_zeroes(896, 128, false).await.unwrap();
            assert_eq!(disk.allocated_bytes(), SPARSE_CHUNK);
        });
    }

    #[test]
    fn test_limits_are_enforced() {
        block_on(async {
            let limits = Limits {
                max_transfer_blocks: Some(4),
                max_discard_blocks: Some(8),
                max_write_zeroes_blocks: Some(16),
                ..Limits::default()
            };
            let disk = MemDisk::builder(512, 64).limits(limits).build().unwrap();
            let kind = |r: Result<(), BlockError>| r.unwrap_err().kind();
            assert_eq!(
                kind(disk.write(0, Bytes::from_static(&[0; 2560]), false).await),
                ErrorKind::InvalidRequest
            );
            assert_eq!(
                kind(disk.read(0, BytesMut::zeroed(2560)).await.map(drop)),
                ErrorKind::InvalidRequest
            );
            assert_eq!(kind(disk.discard(0, 9).await), ErrorKind::InvalidRequest);
            assert_eq!(
                kind(disk.write_zeroes(0, 17, false).await),
                ErrorKind::InvalidRequest
            );
            disk.write(0, Bytes::from_static(&[0; 2048]), false)
                .await
                .unwrap();
        });
    }

    #[test]
    fn test_stats_count_fua_and_flush() {
        block_on(async {
            let disk = MemDisk::new(4096, 16).unwrap();
            disk.write(0, Bytes::from_static(&[1; 4096]), true)
                .await
                .unwrap();
            disk.write(1, Bytes::from_static(&[1; 4096]), false)
                .await
                .unwrap();
            disk.flush().await.unwrap();
            disk.write_zeroes(2, 1, true).await.unwrap();
            let s = disk.stats();
            assert_eq!((s.writes, s.fua_writes, s.flushes), (2, 1, 1));
            assert_eq!((s.write_zeroes, s.unmapping_write_zeroes), (1, 1));
        });
    }

    #[test]
    fn test_no_discard_means_write_zeroes_keeps_allocation() {
        block_on(async {
            let disk = MemDisk::builder(512, 1024)
                .sparse(true)
                .can_discard(false)
                .build()
                .unwrap();
            assert_eq!(
                disk.discard(0, 1).await.unwrap_err().kind(),
                ErrorKind::Unsupported
            );
            disk.write_zeroes(0, 128, true).await.unwrap();
            assert_eq!(disk.allocated_bytes(), SPARSE_CHUNK);
            assert_eq!(disk.stats().unmapping_write_zeroes, 0);
        });
    }
}
