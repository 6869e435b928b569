//! Runs a checked [`Action`] against an export's device through [`Bytewise`]: aligned requests
//! go to the device as they are, cut to its limits (NBD requests may be up to the advertised
//! maximum, larger than a LUN's MAXIMUM TRANSFER LENGTH; the kernel's requests ignore the
//! advertised sizes entirely); requests from clients that did not agree to the block size may
//! cover parts of blocks and are served by read-modify-write (proto.md "Block size
//! constraints").

use bytes::{Bytes, BytesMut};
use sanshim_blockdev::{BlockDevice, BlockError, Bytewise};

use crate::pool::BufferPool;
use crate::request::Action;

/// What a request carries in.
pub(crate) enum Payload {
    /// Nothing.
    None,
    /// A write's data, exactly `length` bytes.
    Write(Bytes),
}

/// Runs `action` with its payload; a read returns its data, in a buffer from `pool` when the
/// read is aligned. Ranges are inside the export ([`crate::request::check`]).
///
/// # Errors
/// The first [`BlockError`] of the device; earlier pieces of a split request stay done.
pub(crate) async fn execute<D: BlockDevice>(
    dev: &Bytewise<D>,
    action: Action,
    payload: Payload,
    pool: &BufferPool,
) -> Result<Option<BytesMut>, BlockError> {
    match (action, payload) {
        (Action::Read { offset, length }, _) => dev
            .read_into(offset, length as usize, |len| pool.take(len))
            .await
            .map(Some),
        (Action::Write { offset, fua, .. }, Payload::Write(data)) => {
            dev.write(offset, data, fua).await.map(|()| None)
        }
        (Action::Flush, _) => dev.flush().await.map(|()| None),
        (
            Action::Trim {
                offset,
                length,
                fua,
            },
            _,
        ) => {
            dev.discard(offset, u64::from(length)).await?;
            flush_if(dev, fua).await.map(|()| None)
        }
        (
            Action::WriteZeroes {
                offset,
                length,
                fua,
                unmap,
                fast,
            },
            _,
        ) => {
            // NBD_CMD_FLAG_FAST_ZERO: a device that would write zero buffers answers
            // Unsupported (NBD_ENOTSUP) at once, so the client writes the zeroes itself only
            // once (qemu-img, nbdcopy) instead of twice.
            dev.write_zeroes(offset, u64::from(length), unmap, fast)
                .await?;
            flush_if(dev, fua).await.map(|()| None)
        }
        // A zero-length write carries no payload.
        (Action::Write { .. } | Action::Disconnect, _) => Ok(None),
    }
}

/// FUA on trim and write-zeroes: the trait has no FUA for them, so flush afterwards.
async fn flush_if<D: BlockDevice>(dev: &Bytewise<D>, fua: bool) -> Result<(), BlockError> {
    if fua && dev.geometry().can_flush {
        dev.flush().await
    } else {
        Ok(())
    }
}
