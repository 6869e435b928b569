//! The block operations of [`ScsiDisk`] as SCSI commands (SBC-4 §5), with the SCSI-level
//! retries: UNIT ATTENTION at once, BUSY / TASK SET FULL / NOT READY (becoming ready) after a
//! growing pause. Sense is mapped to [`ErrorKind`] by [`Sense::to_block_error`].

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use sanshim_blockdev::{BlockDevice, BlockError, ErrorKind, Geometry};
use tokio::sync::oneshot;
use tracing::debug;

use super::ScsiDisk;
use super::driver::Request;
use crate::scsi::{Cdb, SenseKey, UnmapRange, unmap_parameter_list};
use crate::session::{Command, Response, TaskError, Transfer};
use crate::wire::ScsiStatus;

/// Attempts per command before a retryable condition becomes an error.
const ATTEMPTS: u32 = 12;
/// Largest transfer per command when the target states no limit.
const DEFAULT_MAX_TRANSFER: u64 = 8 << 20;

impl ScsiDisk {
    /// Runs one command, retrying what SAM says may succeed when sent again.
    async fn exec(
        &self,
        cdb: Cdb,
        transfer: impl Fn() -> Transfer,
    ) -> Result<Response, BlockError> {
        let mut pause = Duration::from_millis(5);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (tx, rx) = oneshot::channel();
            let command = Command::new(self.lun, cdb.padded(), transfer());
            self.requests
                .send(Request::Command(command, tx))
                .map_err(|_| closed())?;
            let response = rx.await.map_err(|_| closed())?.map_err(task_error)?;
            if response.response != 0 {
                return Err(BlockError::new(
                    ErrorKind::TargetFailure,
                    "iSCSI target failure",
                ));
            }
            let wait = match response.status {
                ScsiStatus::GOOD | ScsiStatus::CONDITION_MET => return Ok(response),
                ScsiStatus::CHECK_CONDITION => {
                    let Some(sense) = response.sense else {
                        return Err(BlockError::new(
                            ErrorKind::TargetFailure,
                            "CHECK CONDITION without sense data",
                        ));
                    };
                    if sense.is_recovered() {
                        return Ok(response);
                    }
                    if !sense.is_retryable() || attempt >= ATTEMPTS {
                        debug!(%sense, op = ?cdb.op(), "command failed");
                        return Err(sense.to_block_error());
                    }
                    sense.key != SenseKey::UNIT_ATTENTION
                }
                ScsiStatus::BUSY | ScsiStatus::TASK_SET_FULL if attempt < ATTEMPTS => true,
                ScsiStatus::BUSY | ScsiStatus::TASK_SET_FULL => {
                    return Err(BlockError::new(ErrorKind::PathFailure, "target stays busy"));
                }
                ScsiStatus::RESERVATION_CONFLICT => {
                    return Err(BlockError::new(
                        ErrorKind::TargetFailure,
                        "reservation conflict",
                    ));
                }
                _ => {
                    return Err(BlockError::new(
                        ErrorKind::TargetFailure,
                        "unexpected SCSI status",
                    ));
                }
            };
            if wait {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }

    /// Blocks per READ/WRITE command: the Block Limits maximum (or 8 MiB).
    fn max_blocks(&self) -> u64 {
        let bs = u64::from(self.geometry.block_size);
        let stated = self.geometry.limits.max_transfer_blocks.map(u64::from);
        stated
            .unwrap_or(DEFAULT_MAX_TRANSFER / bs)
            .clamp(1, u64::from(u32::MAX))
    }

    async fn read_chunk(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let blocks = blocks_of(buf.len(), self.geometry.block_size);
        let len = buf.len();
        let transfer = || Transfer::Read(BytesMut::zeroed(len));
        let response = match self.rw_cdb(lba, blocks, None) {
            Some(cdb) => self.exec(cdb, transfer).await,
            None => Err(unsupported16()),
        };
        let response = match response {
            Err(e) if e.kind() == ErrorKind::Unsupported && self.fall_back_to_10(lba, blocks) => {
                let cdb = self.rw_cdb(lba, blocks, None).ok_or_else(unsupported16)?;
                self.exec(cdb, transfer).await?
            }
            other => other?,
        };
        if response.data.len() != buf.len() {
            return Err(BlockError::new(ErrorKind::TargetFailure, "short read"));
        }
        buf.copy_from_slice(&response.data);
        Ok(())
    }

    async fn write_chunk(&self, lba: u64, data: Bytes, fua: bool) -> Result<(), BlockError> {
        let blocks = blocks_of(data.len(), self.geometry.block_size);
        let transfer = || Transfer::Write(data.clone());
        let result = match self.rw_cdb(lba, blocks, Some(fua)) {
            Some(cdb) => self.exec(cdb, transfer).await,
            None => Err(unsupported16()),
        };
        let response = match result {
            Err(e) if e.kind() == ErrorKind::Unsupported && self.fall_back_to_10(lba, blocks) => {
                let cdb = self
                    .rw_cdb(lba, blocks, Some(fua))
                    .ok_or_else(unsupported16)?;
                self.exec(cdb, transfer).await?
            }
            other => other?,
        };
        if response.underflow.is_some_and(|n| n > 0) {
            return Err(BlockError::new(ErrorKind::TargetFailure, "short write"));
        }
        Ok(())
    }

    /// READ/WRITE CDB (`fua` set for writes): the 16-byte form, or the 10-byte one once the
    /// target turned out to lack READ(16)/WRITE(16); `None` when the 10-byte form cannot
    /// address the range.
    fn rw_cdb(&self, lba: u64, blocks: u32, fua: Option<bool>) -> Option<Cdb> {
        if self.use16.load(Ordering::Relaxed) {
            return Some(match fua {
                None => Cdb::read16(lba, blocks),
                Some(f) => Cdb::write16(lba, blocks, f),
            });
        }
        let (lba, blocks) = (u32::try_from(lba).ok()?, u16::try_from(blocks).ok()?);
        Some(match fua {
            None => Cdb::read10(lba, blocks),
            Some(f) => Cdb::write10(lba, blocks, f),
        })
    }

    /// After INVALID COMMAND OPERATION CODE on a 16-byte command: switch to the 10-byte
    /// forms if they can address this range.
    fn fall_back_to_10(&self, lba: u64, blocks: u32) -> bool {
        let fits = u32::try_from(lba).is_ok() && u16::try_from(blocks).is_ok();
        if fits && self.use16.swap(false, Ordering::Relaxed) {
            debug!("target lacks READ(16)/WRITE(16); using the 10-byte forms");
            return true;
        }
        false
    }

    /// SYNCHRONIZE CACHE(16), or (10) when the target lacks the 16-byte form.
    pub(super) async fn synchronize_cache(&self) -> Result<(), BlockError> {
        match self
            .exec(Cdb::synchronize_cache16(0, 0), || Transfer::None)
            .await
        {
            Err(e) if e.kind() == ErrorKind::Unsupported => self
                .exec(Cdb::synchronize_cache10(0, 0), || Transfer::None)
                .await
                .map(drop),
            other => other.map(drop),
        }
    }

    async fn write_same(&self, lba: u64, blocks: u64, unmap: bool) -> Result<(), BlockError> {
        let per = self
            .geometry
            .limits
            .max_write_zeroes_blocks
            .unwrap_or(1 << 16)
            .clamp(1, u64::from(u32::MAX));
        let zero = Bytes::from(vec![0u8; self.geometry.block_size as usize]);
        let unmap = unmap && self.report.provisioning.is_some_and(|p| p.lbpws);
        let mut done = 0;
        while done < blocks {
            let n = (blocks - done).min(per);
            let cdb = Cdb::write_same16(lba + done, n as u32, unmap);
            self.exec(cdb, || Transfer::Write(zero.clone())).await?;
            done += n;
        }
        Ok(())
    }

    async fn write_zero_buffers(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        let per = self.max_blocks().min(256);
        let bs = self.geometry.block_size as usize;
        let mut done = 0;
        while done < blocks {
            let n = (blocks - done).min(per);
            let zero = Bytes::from(vec![0u8; n as usize * bs]);
            self.write_chunk(lba + done, zero, false).await?;
            done += n;
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<(), BlockError> {
        if self.geometry.read_only {
            return Err(BlockError::new(ErrorKind::ReadOnly, "device is read-only"));
        }
        Ok(())
    }
}

#[async_trait]
impl BlockDevice for ScsiDisk {
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    async fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let blocks = self.geometry.check_range(lba, buf.len() as u64)?;
        let bs = self.geometry.block_size as usize;
        let per = self.max_blocks();
        let mut done = 0u64;
        for chunk in buf.chunks_mut(per as usize * bs) {
            self.read_chunk(lba + done, chunk).await?;
            done += (chunk.len() / bs) as u64;
        }
        debug_assert_eq!(done, blocks);
        Ok(())
    }

    async fn write(&self, lba: u64, buf: &[u8], fua: bool) -> Result<(), BlockError> {
        self.geometry.check_range(lba, buf.len() as u64)?;
        self.check_writable()?;
        let bs = self.geometry.block_size as usize;
        let per = self.max_blocks() as usize * bs;
        // A device without DPOFUA may refuse the FUA bit: write, then SYNCHRONIZE CACHE.
        let native_fua = fua && self.geometry.can_fua;
        let mut at = lba;
        for chunk in buf.chunks(per) {
            self.write_chunk(at, Bytes::copy_from_slice(chunk), native_fua)
                .await?;
            at += (chunk.len() / bs) as u64;
        }
        if fua && !native_fua {
            self.synchronize_cache().await?;
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), BlockError> {
        self.synchronize_cache().await
    }

    async fn discard(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        self.geometry.check_blocks(lba, blocks)?;
        if !self.geometry.can_discard {
            return Err(BlockError::new(
                ErrorKind::Unsupported,
                "the LU does not support UNMAP",
            ));
        }
        self.check_writable()?;
        let per = self
            .geometry
            .limits
            .max_discard_blocks
            .map_or(u64::from(u32::MAX), u64::from)
            .max(1);
        let mut done = 0;
        while done < blocks {
            let n = (blocks - done).min(per);
            let range = UnmapRange {
                lba: lba + done,
                blocks: n as u32,
            };
            let list = unmap_parameter_list(&[range])
                .map_err(|_| BlockError::new(ErrorKind::InvalidRequest, "UNMAP list"))?;
            let cdb = Cdb::unmap(list.len() as u16);
            let list = Bytes::from(list);
            self.exec(cdb, || Transfer::Write(list.clone())).await?;
            done += n;
        }
        Ok(())
    }

    async fn write_zeroes(&self, lba: u64, blocks: u64, unmap: bool) -> Result<(), BlockError> {
        self.geometry.check_blocks(lba, blocks)?;
        self.check_writable()?;
        if blocks == 0 {
            return Ok(());
        }
        if self.write_same.load(Ordering::Relaxed) {
            match self.write_same(lba, blocks, unmap).await {
                Err(e) if e.kind() == ErrorKind::Unsupported => {
                    debug!("target lacks WRITE SAME(16); writing zero buffers");
                    self.write_same.store(false, Ordering::Relaxed);
                }
                other => return other,
            }
        }
        self.write_zero_buffers(lba, blocks).await
    }

    async fn probe(&self) -> Result<(), BlockError> {
        self.exec(Cdb::test_unit_ready(), || Transfer::None)
            .await
            .map(drop)
    }
}

fn blocks_of(len: usize, block_size: u32) -> u32 {
    u32::try_from(len / block_size as usize).unwrap_or(u32::MAX)
}

fn closed() -> BlockError {
    BlockError::new(ErrorKind::PathFailure, "the iSCSI session is closed")
}

fn unsupported16() -> BlockError {
    BlockError::new(
        ErrorKind::Unsupported,
        "range not addressable by READ(10)/WRITE(10)",
    )
}

fn task_error(e: TaskError) -> BlockError {
    match e {
        TaskError::Rejected { .. } => BlockError::new(
            ErrorKind::TargetFailure,
            "the target rejected the command PDU",
        ),
        TaskError::ReplacementTimeout => BlockError::new(
            ErrorKind::PathFailure,
            "no working iSCSI session within the replacement timeout",
        ),
        TaskError::TooManyRetries(_) => BlockError::new(
            ErrorKind::PathFailure,
            "command failed repeatedly on broken connections",
        ),
        _ => closed(),
    }
}
