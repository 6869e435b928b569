//! [`Bytewise`]: byte-addressed requests over a [`BlockDevice`], for callers whose requests
//! need not be aligned to its logical blocks — NBD clients that did not negotiate block sizes,
//! which a server should serve with a minimum block size of 1 (NBD proto.md "Block size
//! constraints").
//!
//! Aligned requests go to the device as they are (cut to its limits by [`split`]). The others:
//!
//! - read: a read of the covering blocks; the requested bytes are returned as a view of them,
//!   not copied;
//! - write: a read of the partial first and last blocks, the data merged in, one write of the
//!   covering blocks (with the request's FUA);
//! - write-zeroes: the whole blocks inside zeroed by the device; the partial edge blocks read,
//!   zeroed in part and written back;
//! - discard: a discard of the whole blocks inside only (discard is advisory; the rest is left
//!   as it is).
//!
//! A read-modify-write must not run beside another request that writes its blocks, or one of
//! the two updates is lost: every request that changes the medium holds a [`RangeLock`] over
//! its blocks until it completes — shared for aligned requests (which, as SCSI SIMPLE tasks,
//! need no order among themselves), exclusive over the covering blocks for a read-modify-write.
//! Reads take no lock: the bytes a read-modify-write rewrites beyond its request are written
//! back as they were, so a read beside it sees them unchanged either way.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes, BytesMut};

use crate::range_lock::RangeLock;
use crate::{BlockDevice, BlockError, ErrorKind, Geometry, split};

/// A [`BlockDevice`] addressed in bytes; see the module documentation.
#[derive(Debug)]
pub struct Bytewise<D> {
    device: D,
    locks: RangeLock,
    unaligned_reads: AtomicU64,
    read_modify_writes: AtomicU64,
}

/// How many requests a [`Bytewise`] served by reading or rewriting whole blocks around them.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct BytewiseStats {
    /// Reads not aligned to the device's blocks.
    pub unaligned_reads: u64,
    /// Writes and write-zeroes that rewrote partial blocks.
    pub read_modify_writes: u64,
}

/// A byte range in terms of blocks.
#[derive(Clone, Copy, Debug)]
struct Span {
    /// First block touched.
    first: u64,
    /// One past the last block touched.
    end: u64,
    /// Offset of the range in its first block.
    head: usize,
    /// Bytes of the range in its last block when that block is partial, else 0.
    tail: usize,
    /// Length of the range in bytes.
    len: usize,
}

impl<D: BlockDevice> Bytewise<D> {
    /// Serves byte-addressed requests over `device`.
    pub fn new(device: D) -> Self {
        Bytewise {
            device,
            locks: RangeLock::default(),
            unaligned_reads: AtomicU64::new(0),
            read_modify_writes: AtomicU64::new(0),
        }
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device's geometry.
    pub fn geometry(&self) -> &Geometry {
        self.device.geometry()
    }

    /// The unaligned requests served so far.
    pub fn stats(&self) -> BytewiseStats {
        BytewiseStats {
            unaligned_reads: self.unaligned_reads.load(Ordering::Relaxed),
            read_modify_writes: self.read_modify_writes.load(Ordering::Relaxed),
        }
    }

    /// Reads `len` bytes at byte `offset`.
    ///
    /// # Errors
    /// [`ErrorKind::OutOfRange`] past the end; any error of the device.
    pub async fn read(&self, offset: u64, len: usize) -> Result<BytesMut, BlockError> {
        self.read_into(offset, len, BytesMut::zeroed).await
    }

    /// As [`Bytewise::read`], with the buffer of an aligned read (`len` bytes, their old
    /// contents overwritten on success; one of another length is replaced) from `buffer`, so
    /// that a caller may reuse its buffers instead of zero-filling fresh ones for every read.
    ///
    /// # Errors
    /// As [`Bytewise::read`].
    pub async fn read_into(
        &self,
        offset: u64,
        len: usize,
        buffer: impl FnOnce(usize) -> BytesMut,
    ) -> Result<BytesMut, BlockError> {
        let Some(s) = self.span(offset, len)? else {
            return Ok(BytesMut::new());
        };
        if s.aligned() {
            let buf = match buffer(len) {
                b if b.len() == len => b,
                _ => BytesMut::zeroed(len),
            };
            return split::read(&self.device, s.first, buf).await;
        }
        // Boxed, as the other unaligned paths below: a rare path must not grow the future of
        // every request (tokio boxes a spawned future past 2 KiB in debug builds, 16 KiB in
        // release, and the hot path counts its allocations).
        Box::pin(self.read_unaligned(s, len)).await
    }

    async fn read_unaligned(&self, s: Span, len: usize) -> Result<BytesMut, BlockError> {
        self.unaligned_reads.fetch_add(1, Ordering::Relaxed);
        let cover = self.cover_bytes(&s)?;
        let mut buf = split::read(&self.device, s.first, BytesMut::zeroed(cover)).await?;
        buf.advance(s.head);
        buf.truncate(len);
        Ok(buf)
    }

    /// Writes `data` at byte `offset`; with `fua` the data is durable on return.
    ///
    /// # Errors
    /// [`ErrorKind::OutOfRange`] past the end; any error of the device (a failed edge read
    /// leaves the medium untouched).
    pub async fn write(&self, offset: u64, data: Bytes, fua: bool) -> Result<(), BlockError> {
        let Some(s) = self.span(offset, data.len())? else {
            return Ok(());
        };
        if s.aligned() {
            let _shared = self.locks.lock(s.blocks(), false).await;
            return split::write(&self.device, s.first, data, fua).await;
        }
        Box::pin(self.write_unaligned(s, data, fua)).await
    }

    async fn write_unaligned(&self, s: Span, data: Bytes, fua: bool) -> Result<(), BlockError> {
        self.read_modify_writes.fetch_add(1, Ordering::Relaxed);
        let _exclusive = self.locks.lock(s.blocks(), true).await;
        let mut merged = BytesMut::zeroed(self.cover_bytes(&s)?);
        self.read_edges(&s, &mut merged).await?;
        // The covering blocks hold head + len bytes and more: `span` computed them so.
        merged[s.head..s.head + s.len].copy_from_slice(&data);
        split::write(&self.device, s.first, merged.freeze(), fua).await
    }

    /// Zeroes `len` bytes at byte `offset`; with `unmap` the device may deallocate whole
    /// blocks, with `fast` it must zero them itself ([`BlockDevice::write_zeroes_fast`]).
    ///
    /// # Errors
    /// [`ErrorKind::OutOfRange`] past the end; [`ErrorKind::Unsupported`] with `fast` on a
    /// device that would write zero buffers (nothing touched); any error of the device.
    pub async fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        unmap: bool,
        fast: bool,
    ) -> Result<(), BlockError> {
        let Some(s) = self.span_u64(offset, len)? else {
            return Ok(());
        };
        if s.aligned() {
            let _shared = self.locks.lock(s.blocks(), false).await;
            return self.zero_blocks(s.blocks(), unmap, fast).await;
        }
        Box::pin(self.write_zeroes_unaligned(s, unmap, fast)).await
    }

    async fn write_zeroes_unaligned(
        &self,
        s: Span,
        unmap: bool,
        fast: bool,
    ) -> Result<(), BlockError> {
        self.read_modify_writes.fetch_add(1, Ordering::Relaxed);
        let _exclusive = self.locks.lock(s.blocks(), true).await;
        let inner = s.inner();
        if inner.is_empty() && fast && !self.geometry().can_write_zeroes {
            return Err(BlockError::new(
                ErrorKind::Unsupported,
                "the device cannot zero without writing zero buffers",
            ));
        }
        // The middle first: with `fast` it is what may refuse, and then nothing is touched.
        self.zero_blocks(inner, unmap, fast).await?;
        let bs = self.block_bytes()?;
        let (head, tail) = s.partial_edges(bs);
        let (h, t) = tokio::join!(self.zero_part(head), self.zero_part(tail));
        h.and(t)
    }

    /// Discards the whole blocks inside `len` bytes at byte `offset`; partial blocks at the
    /// edges are left as they are.
    ///
    /// # Errors
    /// [`ErrorKind::OutOfRange`] past the end; any error of the device.
    pub async fn discard(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        let Some(s) = self.span_u64(offset, len)? else {
            return Ok(());
        };
        let inner = s.inner();
        if inner.is_empty() {
            return Ok(());
        }
        let _shared = self.locks.lock(inner.clone(), false).await;
        split::discard(&self.device, inner.start, inner.end - inner.start).await
    }

    /// Makes every write completed before this call durable.
    ///
    /// # Errors
    /// Any error of the device.
    pub async fn flush(&self) -> Result<(), BlockError> {
        self.device.flush().await
    }

    async fn zero_blocks(
        &self,
        blocks: Range<u64>,
        unmap: bool,
        fast: bool,
    ) -> Result<(), BlockError> {
        let (lba, count) = (blocks.start, blocks.end.saturating_sub(blocks.start));
        match (count, fast) {
            (0, _) => Ok(()),
            (_, true) => split::write_zeroes_fast(&self.device, lba, count, unmap).await,
            (_, false) => split::write_zeroes(&self.device, lba, count, unmap).await,
        }
    }

    /// Reads the partial first and last blocks of `s` into their places in `merged` (the
    /// covering blocks' buffer).
    async fn read_edges(&self, s: &Span, merged: &mut BytesMut) -> Result<(), BlockError> {
        let bs = self.block_bytes()?;
        let last = s.end - 1;
        let want_first = s.head != 0 || (s.first == last && s.tail != 0);
        let want_last = s.tail != 0 && last != s.first;
        let read = |want: bool, lba: u64| async move {
            if want {
                self.device.read(lba, BytesMut::zeroed(bs)).await.map(Some)
            } else {
                Ok(None)
            }
        };
        let (first, last_block) = tokio::join!(read(want_first, s.first), read(want_last, last));
        if let Some(b) = first? {
            merged[..bs].copy_from_slice(&b);
        }
        if let Some(b) = last_block? {
            let at = merged.len() - bs;
            merged[at..].copy_from_slice(&b);
        }
        Ok(())
    }

    /// Zeroes the bytes `part.1` of block `part.0` by read-modify-write; nothing for an empty
    /// part.
    async fn zero_part(&self, part: (u64, Range<usize>)) -> Result<(), BlockError> {
        let (lba, bytes) = part;
        if bytes.is_empty() {
            return Ok(());
        }
        let bs = self.block_bytes()?;
        let mut block = self.device.read(lba, BytesMut::zeroed(bs)).await?;
        block[bytes].fill(0);
        self.device.write(lba, block.freeze(), false).await
    }

    /// The blocks of a request of `len` bytes at `offset`, checked against the device's end;
    /// `None` for an empty request.
    fn span(&self, offset: u64, len: usize) -> Result<Option<Span>, BlockError> {
        self.span_u64(offset, len as u64)
    }

    fn span_u64(&self, offset: u64, len: u64) -> Result<Option<Span>, BlockError> {
        let bs = self.block_bytes()? as u64;
        let size = self.geometry().blocks.checked_mul(bs);
        let end = offset
            .checked_add(len)
            .filter(|&end| size.is_some_and(|size| end <= size))
            .ok_or(BlockError::new(
                ErrorKind::OutOfRange,
                "range past the end of the device",
            ))?;
        if len == 0 {
            return Ok(None);
        }
        Ok(Some(Span {
            first: offset / bs,
            end: end.div_ceil(bs),
            head: (offset % bs) as usize,
            tail: (end % bs) as usize,
            len: usize::try_from(len).unwrap_or(usize::MAX),
        }))
    }

    fn block_bytes(&self) -> Result<usize, BlockError> {
        match self.geometry().block_size {
            0 => Err(BlockError::new(
                ErrorKind::InvalidRequest,
                "device has no block size",
            )),
            bs => Ok(bs as usize),
        }
    }

    /// Bytes of the blocks covering `s`.
    fn cover_bytes(&self, s: &Span) -> Result<usize, BlockError> {
        let bs = self.block_bytes()? as u64;
        (s.end - s.first)
            .checked_mul(bs)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or(BlockError::new(
                ErrorKind::InvalidRequest,
                "request too large to rewrite in memory",
            ))
    }
}

impl Span {
    fn aligned(&self) -> bool {
        self.head == 0 && self.tail == 0
    }

    fn blocks(&self) -> Range<u64> {
        self.first..self.end
    }

    /// The whole blocks inside the range (possibly none).
    fn inner(&self) -> Range<u64> {
        let start = self.first + u64::from(self.head != 0);
        let end = self.end - u64::from(self.tail != 0);
        start..end.max(start)
    }

    /// The partial first and last blocks, each with the bytes of the range in it; an edge that
    /// is a whole block has an empty byte range, and a range inside one block is all "head".
    fn partial_edges(&self, bs: usize) -> ((u64, Range<usize>), (u64, Range<usize>)) {
        let last = self.end - 1;
        if self.first == last {
            let part = if self.aligned() {
                0..0
            } else {
                self.head..self.head + self.len
            };
            return ((self.first, part), (last, 0..0));
        }
        let head = if self.head != 0 { self.head..bs } else { 0..0 };
        ((self.first, head), (last, 0..self.tail))
    }
}

#[cfg(test)]
mod tests;
