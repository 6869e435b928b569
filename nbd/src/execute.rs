//! Runs a checked [`Action`] against a [`BlockDevice`], split to the device's stated limits
//! (NBD requests may be up to the advertised maximum, larger than a LUN's MAXIMUM TRANSFER
//! LENGTH; the kernel's requests ignore the advertised sizes entirely).

use sanshim_blockdev::{BlockDevice, BlockError};

use crate::request::Action;

/// Runs `action`; `data` is the read destination or the write payload (exactly `length` bytes),
/// empty for the other actions. Offsets are block-aligned and in range ([`crate::request::check`]).
///
/// # Errors
/// The first [`BlockError`] of the device; earlier pieces of a split request stay done.
pub(crate) async fn execute(
    dev: &dyn BlockDevice,
    action: Action,
    data: &mut [u8],
) -> Result<(), BlockError> {
    let g = dev.geometry();
    let bs = u64::from(g.block_size.max(1));
    let lba = |offset: u64| offset / bs;
    let blocks = |length: u32| u64::from(length) / bs;
    match action {
        Action::Read { offset, .. } => {
            let piece = piece_bytes(g.limits.max_transfer_blocks.map(u64::from), bs);
            for (i, chunk) in data.chunks_mut(piece).enumerate() {
                dev.read(lba(offset) + (i * piece) as u64 / bs, chunk)
                    .await?;
            }
            Ok(())
        }
        Action::Write { offset, fua, .. } => {
            let piece = piece_bytes(g.limits.max_transfer_blocks.map(u64::from), bs);
            for (i, chunk) in data.chunks(piece).enumerate() {
                dev.write(lba(offset) + (i * piece) as u64 / bs, chunk, fua)
                    .await?;
            }
            Ok(())
        }
        Action::Flush => dev.flush().await,
        Action::Trim {
            offset,
            length,
            fua,
        } => {
            let max = g.limits.max_discard_blocks.map(u64::from);
            for (start, count) in pieces(lba(offset), blocks(length), max) {
                dev.discard(start, count).await?;
            }
            flush_if(dev, fua).await
        }
        Action::WriteZeroes {
            offset,
            length,
            fua,
            unmap,
        } => {
            for (start, count) in pieces(
                lba(offset),
                blocks(length),
                g.limits.max_write_zeroes_blocks,
            ) {
                dev.write_zeroes(start, count, unmap).await?;
            }
            flush_if(dev, fua).await
        }
        Action::Disconnect => Ok(()),
    }
}

/// FUA on trim and write-zeroes: the trait has no FUA for them, so flush afterwards.
async fn flush_if(dev: &dyn BlockDevice, fua: bool) -> Result<(), BlockError> {
    if fua && dev.geometry().can_flush {
        dev.flush().await
    } else {
        Ok(())
    }
}

/// Bytes per piece of a transfer, a whole number of blocks within `max_blocks`.
fn piece_bytes(max_blocks: Option<u64>, bs: u64) -> usize {
    let blocks = max_blocks.unwrap_or(u64::MAX).max(1);
    // Requests are at most 32 MiB, so capping the piece there loses nothing.
    blocks
        .saturating_mul(bs)
        .min(u64::from(crate::MAX_REQUEST_BYTES))
        .max(bs) as usize
}

/// Splits `count` blocks at `lba` into pieces of at most `max` blocks.
fn pieces(lba: u64, count: u64, max: Option<u64>) -> impl Iterator<Item = (u64, u64)> {
    let step = max.unwrap_or(u64::MAX).max(1);
    let mut done = 0;
    std::iter::from_fn(move || {
        (done < count).then(|| {
            let n = step.min(count - done);
            let piece = (lba + done, n);
            done += n;
            piece
        })
    })
}

#[cfg(test)]
mod tests {
    use sanshim_blockdev::{Limits, MemDisk};

    use super::*;

    #[test]
    fn test_pieces() {
        assert_eq!(
            pieces(10, 5, Some(2)).collect::<Vec<_>>(),
            [(10, 2), (12, 2), (14, 1)]
        );
        assert_eq!(pieces(0, 5, None).collect::<Vec<_>>(), [(0, 5)]);
        assert_eq!(pieces(0, 0, Some(3)).count(), 0);
        assert_eq!(piece_bytes(Some(4), 512), 2048);
        assert_eq!(piece_bytes(None, 4096), 32 << 20);
    }

    #[tokio::test]
    async fn test_execute_splits_to_device_limits() {
        let limits = Limits {
            max_transfer_blocks: Some(2),
            max_discard_blocks: Some(3),
            max_write_zeroes_blocks: Some(1),
            ..Limits::default()
        };
        let disk = MemDisk::builder(512, 64).limits(limits).build().unwrap();
        let mut data: Vec<u8> = (0..5 * 512).map(|i| (i % 251) as u8).collect();
        let write = Action::Write {
            offset: 1024,
            length: 2560,
            fua: true,
        };
        execute(&disk, write, &mut data).await.unwrap();
        let mut back = vec![0; 2560];
        execute(
            &disk,
            Action::Read {
                offset: 1024,
                length: 2560,
            },
            &mut back,
        )
        .await
        .unwrap();
        assert_eq!(back, data);
        let s = disk.stats();
        assert_eq!((s.writes, s.fua_writes, s.reads), (3, 3, 3));
        let wz = Action::WriteZeroes {
            offset: 1024,
            length: 1536,
            fua: true,
            unmap: true,
        };
        execute(&disk, wz, &mut []).await.unwrap();
        let trim = Action::Trim {
            offset: 0,
            length: 7 * 512,
            fua: false,
        };
        execute(&disk, trim, &mut []).await.unwrap();
        let s = disk.stats();
        assert_eq!((s.write_zeroes, s.flushes, s.discards), (3, 1, 3));
    }
}
