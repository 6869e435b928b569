//! The one interface every sanshim block layer speaks.
//!
//! ```text
//!  nbd server ──► BlockDevice (dyn) ──► mpath::Multipath ──► initiator::ScsiDisk (per path)
//!                                   └─► MemDisk (tests), FaultDisk<D> (fault injection)
//! ```
//!
//! # Contract of [`BlockDevice`]
//! - Units are logical blocks of [`Geometry::block_size`] bytes; `lba` is the first block, buffer
//!   lengths are whole multiples of the block size. A request that is not a whole number of
//!   blocks fails with [`ErrorKind::InvalidRequest`]; one that reaches past
//!   [`Geometry::blocks`] fails with [`ErrorKind::OutOfRange`]. Neither touches the medium.
//! - Buffers are owned and move with the request, so they can cross a channel to the task that
//!   does the I/O and come back without a copy: a read takes a buffer of the length to read
//!   and returns that same buffer filled (a caller that split it off a larger buffer can join
//!   it back with [`bytes::BytesMut::unsplit`] at no cost); a write hands its data over as
//!   [`Bytes`], which a device may keep sharing until the write completes.
//! - Every method may be called concurrently from many tasks; implementations order nothing
//!   between concurrent requests (as SCSI SIMPLE tasks), except that [`BlockDevice::flush`]
//!   covers every write that completed before it was called.
//! - A write with `fua` completes only once its data is on stable storage.
//! - A request longer than a limit the device states in [`Limits`] may fail with
//!   [`ErrorKind::InvalidRequest`]; callers split large requests, in one place: the functions
//!   of [`split`], which run the pieces concurrently.
//! - No method panics on any argument; failures are returned as [`BlockError`].
//! - The futures are `Send` and not boxed: layers are composed by generics (`FaultDisk<D>`,
//!   a multipath device over `D`, the NBD server over `D`), so a request costs no allocation
//!   per layer.
//!
//! [`Bytewise`] serves byte-addressed requests over any device, by read-modify-write where a
//! request covers part of a block, serialised against every request that writes those blocks.
//!
//! Besides the trait this crate holds the test tools every layer shares: [`MemDisk`] (an
//! in-memory disk), [`FaultDisk`] (a decorator that injects failures, delays and dead paths) and
//! [`conformance`], the suite of contract checks every implementation runs.
#![forbid(unsafe_code)]

mod bytewise;
pub mod conformance;
mod fault;
mod mem;
mod range_lock;
pub mod split;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

pub use bytes::{Bytes, BytesMut};

pub use crate::bytewise::{Bytewise, BytewiseStats};
pub use crate::fault::{Fault, FaultAction, FaultDisk, FaultId, Op, OpSet, PathState, Trigger};
pub use crate::mem::{MemDisk, MemDiskBuilder, MemDiskError, MemDiskStats};

/// Shape and capabilities of a block device, fixed while it is open.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Geometry {
    /// Logical block size in bytes (a power of two, at least 512).
    pub block_size: u32,
    /// Number of logical blocks.
    pub blocks: u64,
    /// The device refuses writes (write-protected LUN or a read-only export).
    pub read_only: bool,
    /// [`BlockDevice::flush`] does something (a volatile write cache may exist).
    pub can_flush: bool,
    /// Writes with `fua` are honoured rather than turned into write + flush.
    pub can_fua: bool,
    /// [`BlockDevice::discard`] may free blocks (SCSI UNMAP / thin provisioning).
    pub can_discard: bool,
    /// [`BlockDevice::write_zeroes`] is done by the device (e.g. WRITE SAME) rather than by
    /// writing zero buffers.
    pub can_write_zeroes: bool,
    /// Limits the device advertises (SCSI Block Limits VPD page).
    pub limits: Limits,
}

impl Geometry {
    /// Size of the device in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.blocks.saturating_mul(u64::from(self.block_size))
    }

    /// Checks that `len` bytes at `lba` is a whole number of blocks inside the device, and
    /// returns the number of blocks.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRequest`] for a partial block, [`ErrorKind::OutOfRange`] past the end.
    pub fn check_range(&self, lba: u64, len: u64) -> Result<u64, BlockError> {
        let bs = u64::from(self.block_size);
        if bs == 0 || len % bs != 0 {
            return Err(BlockError::new(
                ErrorKind::InvalidRequest,
                "length is not whole blocks",
            ));
        }
        self.check_blocks(lba, len / bs)?;
        Ok(len / bs)
    }

    /// Checks that `count` blocks at `lba` lie inside the device.
    ///
    /// # Errors
    /// [`ErrorKind::OutOfRange`] when the range reaches past the last block or overflows.
    pub fn check_blocks(&self, lba: u64, count: u64) -> Result<(), BlockError> {
        match lba.checked_add(count) {
            Some(end) if end <= self.blocks => Ok(()),
            _ => Err(BlockError::new(
                ErrorKind::OutOfRange,
                "range past the end of the device",
            )),
        }
    }
}

/// Transfer limits of a device, in blocks; `None` means no limit was stated.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Limits {
    /// Largest single transfer (SCSI MAXIMUM TRANSFER LENGTH).
    pub max_transfer_blocks: Option<u32>,
    /// Preferred multiple for transfer sizes (SCSI OPTIMAL TRANSFER LENGTH GRANULARITY); 0 or 1
    /// when nothing is preferred.
    pub optimal_granularity_blocks: u32,
    /// Largest single discard (SCSI MAXIMUM UNMAP LBA COUNT).
    pub max_discard_blocks: Option<u32>,
    /// Largest single write-zeroes (SCSI MAXIMUM WRITE SAME LENGTH).
    pub max_write_zeroes_blocks: Option<u64>,
}

/// A block device: geometry, read, write (with FUA), flush, discard, write-zeroes and probe.
///
/// See the crate documentation for the contract every implementation keeps.
pub trait BlockDevice: Send + Sync {
    /// Shape and capabilities of the device.
    fn geometry(&self) -> &Geometry;

    /// Reads `buf.len()` bytes starting at block `lba` into `buf` and returns it.
    ///
    /// # Errors
    /// Any [`BlockError`]; the buffer is then dropped.
    fn read(
        &self,
        lba: u64,
        buf: BytesMut,
    ) -> impl Future<Output = Result<BytesMut, BlockError>> + Send;

    /// Writes `data` starting at block `lba`; with `fua` the data is durable on return.
    ///
    /// # Errors
    /// Any [`BlockError`]; [`ErrorKind::ReadOnly`] on a read-only device.
    fn write(
        &self,
        lba: u64,
        data: Bytes,
        fua: bool,
    ) -> impl Future<Output = Result<(), BlockError>> + Send;

    /// Makes every write completed before this call durable.
    ///
    /// # Errors
    /// Any [`BlockError`].
    fn flush(&self) -> impl Future<Output = Result<(), BlockError>> + Send;

    /// Tells the device that `blocks` blocks at `lba` are no longer needed; their contents
    /// become unspecified.
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] when [`Geometry::can_discard`] is false.
    fn discard(&self, lba: u64, blocks: u64)
    -> impl Future<Output = Result<(), BlockError>> + Send;

    /// Sets `blocks` blocks at `lba` to zero; with `unmap` the device may deallocate them as
    /// long as they then read back as zeroes.
    ///
    /// # Errors
    /// Any [`BlockError`].
    fn write_zeroes(
        &self,
        lba: u64,
        blocks: u64,
        unmap: bool,
    ) -> impl Future<Output = Result<(), BlockError>> + Send;

    /// Like [`BlockDevice::write_zeroes`], but only when the device zeroes the range itself
    /// (WRITE SAME, deallocation): a device that would write zero buffers instead fails at
    /// once, touching nothing, so that the caller can write them itself (NBD's
    /// `NBD_CMD_FLAG_FAST_ZERO`). The default relies on [`Geometry::can_write_zeroes`];
    /// devices that learn it on the way (a target without WRITE SAME) override it.
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] when zeroing would be slow; any error of `write_zeroes`.
    fn write_zeroes_fast(
        &self,
        lba: u64,
        blocks: u64,
        unmap: bool,
    ) -> impl Future<Output = Result<(), BlockError>> + Send {
        async move {
            if self.geometry().can_write_zeroes {
                self.write_zeroes(lba, blocks, unmap).await
            } else {
                Err(BlockError::new(
                    ErrorKind::Unsupported,
                    "the device cannot zero without writing zero buffers",
                ))
            }
        }
    }

    /// Checks that the device (or path) answers, without touching data (SCSI TEST UNIT READY).
    ///
    /// # Errors
    /// A [`BlockError`] when the device does not answer or is not ready.
    fn probe(&self) -> impl Future<Output = Result<(), BlockError>> + Send;
}

macro_rules! forward_block_device {
    ($($ptr:ident),*) => {$(
        impl<T: BlockDevice + ?Sized> BlockDevice for $ptr<T> {
            fn geometry(&self) -> &Geometry {
                (**self).geometry()
            }
            fn read(
                &self,
                lba: u64,
                buf: BytesMut,
            ) -> impl Future<Output = Result<BytesMut, BlockError>> + Send {
                (**self).read(lba, buf)
            }
            fn write(
                &self,
                lba: u64,
                data: Bytes,
                fua: bool,
            ) -> impl Future<Output = Result<(), BlockError>> + Send {
                (**self).write(lba, data, fua)
            }
            fn flush(&self) -> impl Future<Output = Result<(), BlockError>> + Send {
                (**self).flush()
            }
            fn discard(
                &self,
                lba: u64,
                blocks: u64,
            ) -> impl Future<Output = Result<(), BlockError>> + Send {
                (**self).discard(lba, blocks)
            }
            fn write_zeroes(
                &self,
                lba: u64,
                blocks: u64,
                unmap: bool,
            ) -> impl Future<Output = Result<(), BlockError>> + Send {
                (**self).write_zeroes(lba, blocks, unmap)
            }
            fn write_zeroes_fast(
                &self,
                lba: u64,
                blocks: u64,
                unmap: bool,
            ) -> impl Future<Output = Result<(), BlockError>> + Send {
                (**self).write_zeroes_fast(lba, blocks, unmap)
            }
            fn probe(&self) -> impl Future<Output = Result<(), BlockError>> + Send {
                (**self).probe()
            }
        }
    )*};
}

// Decorators and composites may hold devices behind pointers (`FaultDisk<Arc<D>>`).
forward_block_device!(Arc, Box);

/// What went wrong, in the terms a caller (NBD errno, multipath failover) needs.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The medium could not be read or written (SCSI MEDIUM ERROR).
    Medium,
    /// The target or device failed in a way another path will not fix (HARDWARE ERROR,
    /// unexpected check condition).
    TargetFailure,
    /// The path to the device failed (connection lost, timeout, transport error) with the
    /// request possibly at the device; another path may succeed.
    PathFailure,
    /// The path is down and the request never reached the device; another path may succeed.
    PathDown,
    /// The path's target port cannot serve requests now (ALUA: transitioning, standby or
    /// unavailable) and refused this one without executing it; another path may succeed, and
    /// this one needs no reconnection — only a new look at its port's state.
    PortUnavailable,
    /// The request reaches past the end of the device.
    OutOfRange,
    /// The request is malformed (not whole blocks, buffer size mismatch).
    InvalidRequest,
    /// The device is read-only (write-protected LUN or read-only export).
    ReadOnly,
    /// The device does not support this operation.
    Unsupported,
    /// The device is out of space (thin provisioning exhausted).
    NoSpace,
    /// The logical unit is no longer presented (SCSI LOGICAL UNIT NOT SUPPORTED: unmapped or
    /// masked on the array). No path reaches it any more; not a path failure: a multipath
    /// device that failed over on it would go round its paths for ever.
    NotPresent,
}

impl ErrorKind {
    /// The errno an NBD server answers with for this kind (NBD proto.md "Error values").
    pub fn errno(self) -> i32 {
        match self {
            ErrorKind::Medium
            | ErrorKind::TargetFailure
            | ErrorKind::PathFailure
            | ErrorKind::PathDown
            | ErrorKind::PortUnavailable
            | ErrorKind::NotPresent => 5, // EIO
            ErrorKind::OutOfRange | ErrorKind::InvalidRequest => 22, // EINVAL
            ErrorKind::ReadOnly => 1,                                // EPERM
            ErrorKind::Unsupported => 95,                            // EOPNOTSUPP
            ErrorKind::NoSpace => 28,                                // ENOSPC
        }
    }
}

/// A failed block operation: its kind and a static description of what failed.
///
/// `Copy` and allocation-free, since it travels on the hot path.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct BlockError {
    kind: ErrorKind,
    context: &'static str,
}

impl BlockError {
    /// A new error of `kind`, with `context` saying what failed.
    pub const fn new(kind: ErrorKind, context: &'static str) -> Self {
        BlockError { kind, context }
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What failed, in words.
    pub fn context(&self) -> &'static str {
        self.context
    }

    /// Whether the failure belongs to the path rather than the device, so that multipath
    /// should retry the request on another path.
    pub fn is_path_failure(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::PathFailure | ErrorKind::PathDown | ErrorKind::PortUnavailable
        )
    }
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.context)
    }
}

impl std::error::Error for BlockError {}
