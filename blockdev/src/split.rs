//! The one place a large request is cut to a device's [`crate::Limits`]: the pieces run
//! concurrently (a device with several queues, or several paths, serves them in parallel), a
//! read's pieces are cut from the caller's buffer and joined back without copying, and the
//! first error wins.
//!
//! A request within the limits goes to the device as it is, with no extra cost.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use bytes::{Bytes, BytesMut};

use crate::{BlockDevice, BlockError, ErrorKind};

/// Reads `buf.len()` bytes at `lba`, in pieces of at most the device's maximum transfer.
///
/// # Errors
/// The first piece's [`BlockError`].
pub async fn read<D: BlockDevice>(
    dev: &D,
    lba: u64,
    mut buf: BytesMut,
) -> Result<BytesMut, BlockError> {
    let bs = block_size(dev)?;
    let piece = piece_bytes(dev.geometry().limits.max_transfer_blocks.map(u64::from), bs);
    if buf.len() <= piece {
        return dev.read(lba, buf).await;
    }
    let mut reads = Vec::new();
    let mut at = lba;
    while !buf.is_empty() {
        let part = buf.split_to(piece.min(buf.len()));
        let blocks = (part.len() / bs) as u64;
        reads.push(dev.read(at, part));
        at += blocks;
    }
    let mut joined: Option<BytesMut> = None;
    for part in join_all(reads).await {
        let part = part?;
        match joined.as_mut() {
            None => joined = Some(part),
            Some(j) => j.unsplit(part),
        }
    }
    Ok(joined.unwrap_or_default())
}

/// Writes `data` at `lba`, in pieces of at most the device's maximum transfer (each with
/// `fua`).
///
/// # Errors
/// The first piece's [`BlockError`]; other pieces may have been written.
pub async fn write<D: BlockDevice>(
    dev: &D,
    lba: u64,
    data: Bytes,
    fua: bool,
) -> Result<(), BlockError> {
    let bs = block_size(dev)?;
    let piece = piece_bytes(dev.geometry().limits.max_transfer_blocks.map(u64::from), bs);
    if data.len() <= piece {
        return dev.write(lba, data, fua).await;
    }
    let writes: Vec<_> = (0..data.len())
        .step_by(piece)
        .map(|start| {
            let part = data.slice(start..(start + piece).min(data.len()));
            dev.write(lba + (start / bs) as u64, part, fua)
        })
        .collect();
    join_all(writes).await.into_iter().collect()
}

/// Discards `blocks` blocks at `lba`, in pieces of at most the device's maximum unmap count.
///
/// # Errors
/// The first piece's [`BlockError`].
pub async fn discard<D: BlockDevice>(dev: &D, lba: u64, blocks: u64) -> Result<(), BlockError> {
    let max = dev.geometry().limits.max_discard_blocks.map(u64::from);
    let runs = pieces(lba, blocks, max).map(|(at, n)| dev.discard(at, n));
    join_all(runs.collect()).await.into_iter().collect()
}

/// Zeroes `blocks` blocks at `lba`, in pieces of at most the device's maximum write-zeroes
/// length.
///
/// # Errors
/// The first piece's [`BlockError`].
pub async fn write_zeroes<D: BlockDevice>(
    dev: &D,
    lba: u64,
    blocks: u64,
    unmap: bool,
) -> Result<(), BlockError> {
    let max = dev.geometry().limits.max_write_zeroes_blocks;
    let runs = pieces(lba, blocks, max).map(|(at, n)| dev.write_zeroes(at, n, unmap));
    join_all(runs.collect()).await.into_iter().collect()
}

/// [`BlockDevice::write_zeroes_fast`] over `blocks` blocks at `lba`, in pieces the device
/// takes.
///
/// # Errors
/// The first piece's error; [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) when
/// the device cannot zero without writing buffers.
pub async fn write_zeroes_fast<D: BlockDevice>(
    dev: &D,
    lba: u64,
    blocks: u64,
    unmap: bool,
) -> Result<(), BlockError> {
    let max = dev.geometry().limits.max_write_zeroes_blocks;
    let runs = pieces(lba, blocks, max).map(|(at, n)| dev.write_zeroes_fast(at, n, unmap));
    join_all(runs.collect()).await.into_iter().collect()
}

/// Polls futures together on the caller's task (no spawning, so they may borrow) and returns
/// their outputs in order.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (fut, out) in pending.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

fn block_size<D: BlockDevice>(dev: &D) -> Result<usize, BlockError> {
    match dev.geometry().block_size {
        0 => Err(BlockError::new(
            ErrorKind::InvalidRequest,
            "device has no block size",
        )),
        bs => Ok(bs as usize),
    }
}

/// Bytes per piece of a transfer: a whole number of blocks within `max_blocks`.
fn piece_bytes(max_blocks: Option<u64>, bs: usize) -> usize {
    let blocks = max_blocks.unwrap_or(u64::MAX).max(1);
    usize::try_from(blocks.saturating_mul(bs as u64)).unwrap_or(usize::MAX)
}

/// Splits `count` blocks at `lba` into pieces of at most `max` blocks (none for zero blocks).
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
    use super::*;
    use crate::{Limits, MemDisk};

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn test_pieces() {
        assert_eq!(
            pieces(10, 5, Some(2)).collect::<Vec<_>>(),
            [(10, 2), (12, 2), (14, 1)]
        );
        assert_eq!(pieces(0, 5, None).collect::<Vec<_>>(), [(0, 5)]);
        assert_eq!(pieces(0, 0, Some(3)).count(), 0);
        assert_eq!(piece_bytes(Some(4), 512), 2048);
    }

    #[test]
    fn test_split_to_device_limits() {
        block_on(async {
            let limits = Limits {
                max_transfer_blocks: Some(2),
                max_discard_blocks: Some(3),
                max_write_zeroes_blocks: Some(1),
                ..Limits::default()
            };
            let disk = MemDisk::builder(512, 64).limits(limits).build().unwrap();
            let data: Vec<u8> = (0..5 * 512).map(|i| (i % 251) as u8).collect();
            write(&disk, 2, Bytes::from(data.clone()), true)
                .await
                .unwrap();
            let back = read(&disk, 2, BytesMut::zeroed(data.len())).await.unwrap();
            assert_eq!(&back[..], &data[..]);
            let s = disk.stats();
            assert_eq!((s.writes, s.fua_writes, s.reads), (3, 3, 3));
            write_zeroes(&disk, 2, 3, true).await.unwrap();
            discard(&disk, 0, 7).await.unwrap();
            let s = disk.stats();
            assert_eq!((s.write_zeroes, s.discards), (3, 3));
            let zero = read(&disk, 0, BytesMut::zeroed(8 * 512)).await.unwrap();
            assert!(zero.iter().all(|&b| b == 0));
        });
    }

    #[test]
    fn test_a_read_comes_back_in_one_allocation() {
        block_on(async {
            let limits = Limits {
                max_transfer_blocks: Some(1),
                ..Limits::default()
            };
            let disk = MemDisk::builder(512, 8).limits(limits).build().unwrap();
            let buf = BytesMut::zeroed(4 * 512);
            let ptr = buf.as_ptr();
            let back = read(&disk, 0, buf).await.unwrap();
            assert_eq!(back.len(), 4 * 512);
            assert_eq!(back.as_ptr(), ptr, "pieces are joined without a copy");
        });
    }

    #[test]
    fn test_first_error_wins() {
        block_on(async {
            let disk = MemDisk::new(512, 8).unwrap();
            let e = read(&disk, 7, BytesMut::zeroed(2 * 512)).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::OutOfRange);
        });
    }
}
