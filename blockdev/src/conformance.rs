//! The contract checks every [`BlockDevice`] implementation runs (see the crate documentation
//! for the contract).
//!
//! Each check is an async function over any `&D` where `D: BlockDevice` that returns a [`Failure`]
//! naming the check and what differed, rather than panicking, so that callers (unit tests, the
//! iSCSI and multipath integration tests, a `--self-test` command) report it their own way.
//! [`run_all`] runs every check that applies to the device's [`Geometry`].
//!
//! The checks are destructive: on a writable device they overwrite the first and last
//! [`REGION_BLOCKS`] blocks (or all blocks of a smaller device). They keep each transfer within
//! the device's [`crate::Limits`].

use std::fmt;

use bytes::{Bytes, BytesMut};

use crate::split::join_all;
use crate::{BlockDevice, BlockError, ErrorKind, Geometry};

/// How many blocks at each end of the device the checks use at most.
pub const REGION_BLOCKS: u64 = 64;

/// A failed contract check.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Failure {
    /// Which check failed.
    pub check: &'static str,
    /// What was expected and what happened.
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conformance check {} failed: {}",
            self.check, self.detail
        )
    }
}

impl std::error::Error for Failure {}

/// Result of one check.
pub type CheckResult = Result<(), Failure>;

/// Runs every check that applies: the geometry and range checks always, then either the data
/// checks (writable device) or the read-only checks.
///
/// # Errors
/// The first [`Failure`].
pub async fn run_all<D: BlockDevice>(dev: &D) -> CheckResult {
    check_geometry(dev)?;
    check_out_of_range(dev).await?;
    check_partial_blocks(dev).await?;
    check_probe(dev).await?;
    if dev.geometry().read_only {
        return check_read_only(dev).await;
    }
    check_write_read_back(dev).await?;
    check_fua(dev).await?;
    check_flush(dev).await?;
    check_discard(dev).await?;
    check_write_zeroes(dev).await?;
    check_concurrent_disjoint_writers(dev).await
}

/// The geometry is sane: block size a power of two of at least 512, at least one block, a size
/// that fits in 64 bits, limits that allow at least one block.
///
/// # Errors
/// A [`Failure`] naming the bad field.
pub fn check_geometry<D: BlockDevice>(dev: &D) -> CheckResult {
    const CHECK: &str = "geometry";
    let g = dev.geometry();
    ensure(
        CHECK,
        g.block_size >= 512 && g.block_size.is_power_of_two(),
        || format!("block size {} is not a power of two >= 512", g.block_size),
    )?;
    ensure(CHECK, g.blocks > 0, || "device has no blocks".into())?;
    ensure(
        CHECK,
        g.blocks.checked_mul(u64::from(g.block_size)).is_some(),
        || "size in bytes overflows u64".into(),
    )?;
    let l = &g.limits;
    let nonzero = l.max_transfer_blocks != Some(0)
        && l.max_discard_blocks != Some(0)
        && l.max_write_zeroes_blocks != Some(0);
    ensure(CHECK, nonzero, || format!("a limit of zero blocks: {l:?}"))
}

/// Requests reaching past the end (or overflowing) fail with `OutOfRange`, for every operation.
///
/// # Errors
/// A [`Failure`] naming the operation that did not.
pub async fn check_out_of_range<D: BlockDevice>(dev: &D) -> CheckResult {
    const CHECK: &str = "out-of-range";
    let g = dev.geometry();
    let bs = g.block_size as usize;
    for (lba, len) in [(g.blocks, bs), (g.blocks - 1, 2 * bs), (u64::MAX, bs)] {
        let r = dev.read(lba, BytesMut::zeroed(len)).await.map(drop);
        expect_kind(CHECK, "read", r, ErrorKind::OutOfRange)?;
        let r = dev.write(lba, Bytes::from(vec![0u8; len]), false).await;
        expect_kind(CHECK, "write", r, ErrorKind::OutOfRange)?;
    }
    for (lba, count) in [(g.blocks, 1), (g.blocks - 1, 2), (1, u64::MAX)] {
        let r = dev.write_zeroes(lba, count, false).await;
        expect_kind(CHECK, "write_zeroes", r, ErrorKind::OutOfRange)?;
        if g.can_discard {
            expect_kind(
                CHECK,
                "discard",
                dev.discard(lba, count).await,
                ErrorKind::OutOfRange,
            )?;
        }
    }
    Ok(())
}

/// Buffers that are not whole blocks fail with `InvalidRequest` and touch nothing.
///
/// # Errors
/// A [`Failure`] naming the operation that did not.
pub async fn check_partial_blocks<D: BlockDevice>(dev: &D) -> CheckResult {
    const CHECK: &str = "partial-blocks";
    let bs = dev.geometry().block_size as usize;
    for len in [1, bs - 1, bs + 1, bs + bs / 2] {
        let r = dev.read(0, BytesMut::zeroed(len)).await.map(drop);
        expect_kind(CHECK, "read", r, ErrorKind::InvalidRequest)?;
        let r = dev.write(0, Bytes::from(vec![0u8; len]), false).await;
        expect_kind(CHECK, "write", r, ErrorKind::InvalidRequest)?;
    }
    Ok(())
}

/// A probe of a healthy device succeeds.
///
/// # Errors
/// A [`Failure`] with the probe's error.
pub async fn check_probe<D: BlockDevice>(dev: &D) -> CheckResult {
    dev.probe()
        .await
        .map_err(|e| fail("probe", format!("probe failed: {e}")))
}

/// Data written at the start, in the middle and at the very end reads back, in single-block
/// and multi-block transfers.
///
/// # Errors
/// A [`Failure`] on an error or a mismatch.
pub async fn check_write_read_back<D: BlockDevice>(dev: &D) -> CheckResult {
    const CHECK: &str = "write-read-back";
    let g = dev.geometry().clone();
    let n = transfer_blocks(&g, 8);
    for (i, lba) in [0, (g.blocks - n) / 2, g.blocks - n]
        .into_iter()
        .enumerate()
    {
        let data = pattern(&g, lba, n, i as u8);
        call(
            CHECK,
            "write",
            dev.write(lba, Bytes::from(data.clone()), false).await,
        )?;
        expect_data(CHECK, dev, lba, &data).await?;
    }
    let last = g.blocks - 1;
    let data = pattern(&g, last, 1, 0x5a);
    call(
        CHECK,
        "write last block",
        dev.write(last, Bytes::from(data.clone()), false).await,
    )?;
    expect_data(CHECK, dev, last, &data).await
}

/// A FUA write succeeds and reads back, whether or not the device advertises FUA.
///
/// # Errors
/// A [`Failure`] on an error or a mismatch.
pub async fn check_fua<D: BlockDevice>(dev: &D) -> CheckResult {
    const CHECK: &str = "fua";
    let g = dev.geometry().clone();
    let n = transfer_blocks(&g, 4);
    let data = pattern(&g, 0, n, 0xf0);
    call(
        CHECK,
        "write with fua",
        dev.write(0, Bytes::from(data.clone()), true).await,
    )?;
    expect_data(CHECK, dev, 0, &data).await
}

/// A flush succeeds after writes (and on a device without a cache), and leaves data readable.
///
/// # Errors
/// A [`Failure`] on an error or a mismatch.
pub async fn check_flush<D: BlockDevice>(dev: &D) -> CheckResult {
    const CHECK: &str = "flush";
    let g = dev.geometry().clone();
    let n = transfer_blocks(&g, 2);
    let data = pattern(&g, 0, n, 0x11);
    call(
        CHECK,
        "write",
        dev.write(0, Bytes::from(data.clone()), false).await,
    )?;
    call(CHECK, "flush", dev.flush().await)?;
    call(CHECK, "second flush", dev.flush().await)?;
    expect_data(CHECK, dev, 0, &data).await
}

/// Discard refuses with `Unsupported` when the device cannot discard; otherwise it succeeds and
/// leaves the neighbouring blocks intact.
///
/// # Errors
/// A [`Failure`] on an unexpected result or a changed neighbour.
pub async fn check_discard<D: BlockDevice>(dev: &D) -> CheckResult {
    const CHECK: &str = "discard";
    let g = dev.geometry().clone();
    let n = transfer_blocks(&g, 6);
    if n < 3 {
        return Ok(());
    }
    let data = pattern(&g, 0, n, 0x33);
    call(
        CHECK,
        "write",
        dev.write(0, Bytes::from(data.clone()), false).await,
    )?;
    let r = dev.discard(1, n - 2).await;
    if !g.can_discard {
        return expect_kind(CHECK, "discard", r, ErrorKind::Unsupported);
    }
    call(CHECK, "discard", r)?;
    expect_neighbours(CHECK, dev, &data, n).await
}

/// Write-zeroes, with and without unmap, makes the range read as zeroes and leaves the
/// neighbouring blocks intact.
///
/// # Errors
/// A [`Failure`] on an error, non-zero data or a changed neighbour.
pub async fn check_write_zeroes<D: BlockDevice>(dev: &D) -> CheckResult {
    const CHECK: &str = "write-zeroes";
    let g = dev.geometry().clone();
    let n = transfer_blocks(&g, 6);
    if n < 3 {
        return Ok(());
    }
    for unmap in [false, true] {
        let data = pattern(&g, 0, n, 0x44 + u8::from(unmap));
        call(
            CHECK,
            "write",
            dev.write(0, Bytes::from(data.clone()), false).await,
        )?;
        call(
            CHECK,
            "write_zeroes",
            dev.write_zeroes(1, n - 2, unmap).await,
        )?;
        expect_neighbours(CHECK, dev, &data, n).await?;
        let zeroes = vec![0u8; (n as usize - 2) * g.block_size as usize];
        expect_data(CHECK, dev, 1, &zeroes).await?;
    }
    Ok(())
}

/// Several writers on disjoint ranges, in flight together, each read back their own data.
///
/// # Errors
/// A [`Failure`] on an error or a mismatch.
pub async fn check_concurrent_disjoint_writers<D: BlockDevice>(dev: &D) -> CheckResult {
    const CHECK: &str = "concurrent-writers";
    const WRITERS: u64 = 8;
    let g = dev.geometry().clone();
    let per = transfer_blocks(&g, 4).min(g.blocks / WRITERS);
    if per == 0 {
        return Ok(());
    }
    let datas: Vec<Vec<u8>> = (0..WRITERS)
        .map(|w| pattern(&g, w * per, per, 0x80 | w as u8))
        .collect();
    let writes = datas
        .iter()
        .enumerate()
        .map(|(w, d)| dev.write(w as u64 * per, Bytes::from(d.clone()), false));
    for r in join_all(writes.collect()).await {
        call(CHECK, "concurrent write", r)?;
    }
    let reads = (0..WRITERS).map(|w| async move {
        let len = (per * u64::from(g.block_size)) as usize;
        dev.read(w * per, BytesMut::zeroed(len))
            .await
            .map(|b| b.to_vec())
    });
    for (w, r) in join_all(reads.collect()).await.into_iter().enumerate() {
        let got = r.map_err(|e| fail(CHECK, format!("concurrent read failed: {e}")))?;
        ensure(CHECK, got == datas[w], || {
            format!("writer {w} reads back other data")
        })?;
    }
    Ok(())
}

/// A read-only device reads, flushes, and refuses write, FUA write, discard and write-zeroes
/// with `ReadOnly`.
///
/// # Errors
/// A [`Failure`] naming the operation that was not refused.
pub async fn check_read_only<D: BlockDevice>(dev: &D) -> CheckResult {
    const CHECK: &str = "read-only";
    let g = dev.geometry();
    let buf = dev
        .read(0, BytesMut::zeroed(g.block_size as usize))
        .await
        .map_err(|e| fail(CHECK, format!("read failed: {e}")))?;
    call(CHECK, "flush", dev.flush().await)?;
    for fua in [false, true] {
        expect_kind(
            CHECK,
            "write",
            dev.write(0, buf.clone().freeze(), fua).await,
            ErrorKind::ReadOnly,
        )?;
    }
    expect_kind(
        CHECK,
        "write_zeroes",
        dev.write_zeroes(0, 1, false).await,
        ErrorKind::ReadOnly,
    )?;
    if g.can_discard {
        expect_kind(
            CHECK,
            "discard",
            dev.discard(0, 1).await,
            ErrorKind::ReadOnly,
        )?;
    }
    let after = dev
        .read(0, BytesMut::zeroed(buf.len()))
        .await
        .map_err(|e| fail(CHECK, format!("read failed: {e}")))?;
    ensure(CHECK, after == buf, || {
        "a refused write changed the data".into()
    })
}

/// Blocks per transfer: `want`, bounded by the device size, the region and the limits (a
/// discard or write-zeroes covers all but the first and last block of a transfer).
fn transfer_blocks(g: &Geometry, want: u64) -> u64 {
    let cap = |limit: Option<u64>, extra: u64| limit.map_or(u64::MAX, |v| v.saturating_add(extra));
    want.min(g.blocks)
        .min(REGION_BLOCKS)
        .min(cap(g.limits.max_transfer_blocks.map(u64::from), 0))
        .min(cap(g.limits.max_discard_blocks.map(u64::from), 2))
        .min(cap(g.limits.max_write_zeroes_blocks, 2))
}

/// Data for `blocks` blocks at `lba` that differs per block, per position and per `seed`.
fn pattern(g: &Geometry, lba: u64, blocks: u64, seed: u8) -> Vec<u8> {
    let bs = g.block_size as usize;
    let mut v = vec![0u8; bs * blocks as usize];
    for (i, block) in v.chunks_mut(bs).enumerate() {
        let tag = (lba + i as u64).to_le_bytes();
        for (j, b) in block.iter_mut().enumerate() {
            *b = seed ^ tag[j % 8] ^ (j as u8).wrapping_mul(31);
        }
    }
    v
}

async fn expect_data<D: BlockDevice>(
    check: &'static str,
    dev: &D,
    lba: u64,
    want: &[u8],
) -> CheckResult {
    let got = dev
        .read(lba, BytesMut::zeroed(want.len()))
        .await
        .map_err(|e| fail(check, format!("read back failed: {e}")))?;
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    ensure(check, first.is_none(), || {
        format!(
            "data read back at block {lba} differs from byte {}",
            first.unwrap_or(0)
        )
    })
}

/// The first and the last of `n` blocks at 0 still hold `data`.
async fn expect_neighbours<D: BlockDevice>(
    check: &'static str,
    dev: &D,
    data: &[u8],
    n: u64,
) -> CheckResult {
    let bs = data.len() / n as usize;
    expect_data(check, dev, 0, &data[..bs]).await?;
    expect_data(check, dev, n - 1, &data[data.len() - bs..]).await
}

fn expect_kind(
    check: &'static str,
    op: &str,
    r: Result<(), BlockError>,
    want: ErrorKind,
) -> CheckResult {
    match r {
        Err(e) if e.kind() == want => Ok(()),
        Err(e) => Err(fail(check, format!("{op}: expected {want:?}, got {e}"))),
        Ok(()) => Err(fail(check, format!("{op}: expected {want:?}, got success"))),
    }
}

fn call(check: &'static str, op: &str, r: Result<(), BlockError>) -> CheckResult {
    r.map_err(|e| fail(check, format!("{op} failed: {e}")))
}

fn ensure(check: &'static str, ok: bool, detail: impl FnOnce() -> String) -> CheckResult {
    if ok {
        Ok(())
    } else {
        Err(fail(check, detail()))
    }
}

fn fail(check: &'static str, detail: String) -> Failure {
    Failure { check, detail }
}
