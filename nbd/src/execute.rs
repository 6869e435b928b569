//! Runs a checked [`Action`] against a [`BlockDevice`]. Requests longer than the device's
//! limits (NBD requests may be up to the advertised maximum, larger than a LUN's MAXIMUM
//! TRANSFER LENGTH; the kernel's requests ignore the advertised sizes entirely) are cut by
//! [`sanshim_blockdev::split`], the one place that does it.

use bytes::{Bytes, BytesMut};
use sanshim_blockdev::{BlockDevice, BlockError, split};

use crate::request::Action;

/// What a request carries in and out.
pub(crate) enum Payload {
    /// Nothing.
    None,
    /// A read's destination, exactly `length` bytes.
    Read(BytesMut),
    /// A write's data, exactly `length` bytes.
    Write(Bytes),
}

/// Runs `action` with its payload; a read returns its buffer filled. Offsets are
/// block-aligned and in range ([`crate::request::check`]).
///
/// # Errors
/// The first [`BlockError`] of the device; earlier pieces of a split request stay done.
pub(crate) async fn execute<D: BlockDevice>(
    dev: &D,
    action: Action,
    payload: Payload,
) -> Result<Option<BytesMut>, BlockError> {
    let g = dev.geometry();
    let bs = u64::from(g.block_size.max(1));
    let lba = |offset: u64| offset / bs;
    let blocks = |length: u32| u64::from(length) / bs;
    match (action, payload) {
        (Action::Read { offset, .. }, Payload::Read(buf)) => {
            split::read(dev, lba(offset), buf).await.map(Some)
        }
        (Action::Write { offset, fua, .. }, Payload::Write(data)) => {
            split::write(dev, lba(offset), data, fua)
                .await
                .map(|()| None)
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
            split::discard(dev, lba(offset), blocks(length)).await?;
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
            if fast {
                // NBD_CMD_FLAG_FAST_ZERO: a device that would write zero buffers answers
                // Unsupported (NBD_ENOTSUP) at once, so the client writes the zeroes itself
                // only once (qemu-img, nbdcopy) instead of twice.
                split::write_zeroes_fast(dev, lba(offset), blocks(length), unmap).await?;
            } else {
                split::write_zeroes(dev, lba(offset), blocks(length), unmap).await?;
            }
            flush_if(dev, fua).await.map(|()| None)
        }
        // Zero-length transfers carry no payload.
        (Action::Read { .. }, _) => Ok(Some(BytesMut::new())),
        (Action::Write { .. } | Action::Disconnect, _) => Ok(None),
    }
}

/// FUA on trim and write-zeroes: the trait has no FUA for them, so flush afterwards.
async fn flush_if<D: BlockDevice>(dev: &D, fua: bool) -> Result<(), BlockError> {
    if fua && dev.geometry().can_flush {
        dev.flush().await
    } else {
        Ok(())
    }
}
