//! The block operations of [`ScsiDisk`] as SCSI commands (SBC-4 §5). The session has already
//! retried what the SCSI retry policy allows; a status that reaches here is final, and its
//! sense is mapped to [`ErrorKind`] by [`Sense::to_block_error`].

use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use sanshim_blockdev::{BlockDevice, BlockError, ErrorKind, Geometry};
use tracing::{debug, error, info, warn};

use super::ScsiDisk;
use crate::scsi::{AscAscq, Cdb, RetryPolicy, UnmapRange, is_reset, unmap_parameter_list};
use crate::session::{Command, Response, SubmitError, TaskError, Transfer};
use crate::wire::ScsiStatus;

/// Largest transfer per command when the target states no limit.
pub(super) const DEFAULT_MAX_TRANSFER: u64 = 8 << 20;

impl ScsiDisk {
    /// Runs one command and maps its outcome ([`status`]).
    async fn exec(&self, command: Command) -> Result<Response, BlockError> {
        let op = command.cdb[0];
        let response = self.session.command(command).await.map_err(task_error)?;
        self.note_attentions(&response);
        let result = status(response, op);
        self.tell(result.as_ref().err());
        result
    }

    /// Logs, once per episode, the one line a user must act on at the array: the LU no longer
    /// presented, or out of space. A command that goes through ends the episode.
    fn tell(&self, error: Option<&BlockError>) {
        let code = match error.map(BlockError::kind) {
            None if self.told.load(Ordering::Relaxed) == 0 => return,
            None => 0,
            Some(ErrorKind::NotPresent) => 1,
            Some(ErrorKind::NoSpace) => 2,
            Some(_) => return,
        };
        if self.told.swap(code, Ordering::Relaxed) == code || !self.options.log_conditions {
            return;
        }
        let (lun, target, portal) = (
            self.options.lun,
            self.session.target(),
            self.session.portal(),
        );
        match error.and_then(|e| super::explain(e.kind(), lun, target, &portal.to_string())) {
            Some(line) => error!("{line}"),
            None => info!(lun, %target, %portal, "the LU takes commands again"),
        }
    }

    /// Remembers an ALUA state change reported on the way (retried by the session) or as the
    /// final status.
    fn note_attentions(&self, response: &Response) {
        let alua = |s: &crate::scsi::Sense| {
            s.key == crate::scsi::SenseKey::UNIT_ATTENTION && (s.asc, s.ascq) == (0x2a, 0x06)
        };
        // A port that refuses for its ALUA state (standby, unavailable, transitioning) may
        // never send the unit attention (the change predates this nexus): look again too.
        let refused = |s: &crate::scsi::Sense| alua(s) || s.is_port_unavailable();
        if response.unit_attentions.iter().any(alua) || response.sense.as_ref().is_some_and(refused)
        {
            self.alua_changed.store(true, Ordering::Relaxed);
        }
        // Our own reset's attention, taken (and retried) by some other command first.
        for ua in response.unit_attentions.iter().filter(|s| is_reset(s)) {
            self.take_own_reset(ua);
        }
        let (lun, target, portal) = (
            self.options.lun,
            self.session.target(),
            self.session.portal(),
        );
        for ua in &response.unit_attentions {
            match ua.additional() {
                AscAscq::THIN_PROVISIONING_SOFT_THRESHOLD => warn!(
                    lun, %target, %portal,
                    "the target's thin pool behind LUN {lun} of {target} passed its soft \
                     threshold (THIN PROVISIONING SOFT THRESHOLD REACHED): free space on the \
                     array before writes fail"
                ),
                AscAscq::REPORTED_LUNS_DATA_CHANGED => warn!(
                    lun, %target, %portal,
                    "the target's LUN inventory changed (REPORTED LUNS DATA HAS CHANGED); \
                     LUN {lun} is still used"
                ),
                _ => {}
            }
        }
    }

    fn command(&self, cdb: Cdb, transfer: Transfer) -> Command {
        Command::new(self.lun, cdb.padded(), transfer)
    }

    /// Runs a READ or WRITE, falling back to the 10-byte form once the target turns out to
    /// lack the 16-byte one.
    async fn read_write(
        &self,
        lba: u64,
        blocks: u32,
        fua: Option<bool>,
        transfer: Transfer,
    ) -> Result<Response, BlockError> {
        let cdb = self.rw_cdb(lba, blocks, fua).ok_or_else(unsupported16)?;
        // A second try in the 10-byte form sends the same data, or reads into a new buffer
        // of the same length (the first one went with the failed command).
        let (data, len) = match &transfer {
            Transfer::Write(data) => (Some(data.clone()), data.len()),
            other => (None, other.len()),
        };
        match self.exec(self.command(cdb, transfer)).await {
            Err(e) if e.kind() == ErrorKind::Unsupported && self.fall_back_to_10(lba, blocks) => {
                let cdb = self.rw_cdb(lba, blocks, fua).ok_or_else(unsupported16)?;
                let again = match data {
                    Some(data) => Transfer::Write(data),
                    None => Transfer::Read(BytesMut::zeroed(len)),
                };
                self.exec(self.command(cdb, again)).await
            }
            other => other,
        }
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

    /// SYNCHRONIZE CACHE(16), or (10) when the target lacks the 16-byte form. A power-on or
    /// reset unit attention is an error here: the target's volatile cache may have lost
    /// writes it had acknowledged, and only the caller can decide what to do about that.
    pub(super) async fn synchronize_cache(&self) -> Result<(), BlockError> {
        match self.sync(Cdb::synchronize_cache16(0, 0)).await {
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                self.sync(Cdb::synchronize_cache10(0, 0)).await
            }
            other => other,
        }
    }

    async fn sync(&self, cdb: Cdb) -> Result<(), BlockError> {
        let mut response = self.sync_once(cdb).await?;
        if response
            .sense
            .as_ref()
            .is_some_and(|s| self.take_own_reset(s))
        {
            info!(
                portal = %self.session.portal(), target = %self.session.target(),
                "SYNCHRONIZE CACHE met the unit attention of our own LOGICAL UNIT RESET; \
                 sending it again"
            );
            response = self.sync_once(cdb).await?;
        }
        let op = cdb.as_bytes()[0];
        if response.sense.as_ref().is_some_and(is_reset) {
            error!(
                portal = %self.session.portal(), target = %self.session.target(),
                "SYNCHRONIZE CACHE met a power-on/reset unit attention: the target's \
                 volatile write cache may have lost acknowledged writes"
            );
            return Err(BlockError::new(
                ErrorKind::TargetFailure,
                "target reset before the flush: acknowledged writes may be lost",
            ));
        }
        let result = status(response, op).map(drop);
        self.tell(result.as_ref().err());
        if result.is_ok() {
            self.syncs.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn sync_once(&self, cdb: Cdb) -> Result<Response, BlockError> {
        let command = self
            .command(cdb, Transfer::None)
            .with_retry(RetryPolicy::FLUSH);
        let response = self.session.command(command).await.map_err(task_error)?;
        self.note_attentions(&response);
        Ok(response)
    }

    async fn write_same(&self, lba: u64, blocks: u64, unmap: bool) -> Result<(), BlockError> {
        let per = self
            .geometry
            .limits
            .max_write_zeroes_blocks
            .unwrap_or(1 << 16)
            .clamp(1, u64::from(u32::MAX));
        let zero = Bytes::from(vec![0u8; self.geometry.block_size as usize]);
        // UNMAP in WRITE SAME only where unmapped blocks are guaranteed to read as zeroes
        // (LBPRZ, SBC-4 §6.6.5); elsewhere the zeroes are written.
        let unmap = unmap
            && self
                .report
                .provisioning
                .is_some_and(|p| p.lbpws && p.lbprz & 1 == 1);
        let mut done = 0;
        while done < blocks {
            let n = (blocks - done).min(per);
            let cdb = Cdb::write_same16(lba + done, n as u32, unmap);
            self.exec(self.command(cdb, Transfer::Write(zero.clone())))
                .await?;
            done += n;
        }
        Ok(())
    }

    async fn write_zero_buffers(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        let per = self.max_blocks().min(256);
        let bs = self.geometry.block_size as usize;
        let zero = Bytes::from(vec![0u8; per as usize * bs]);
        let mut done = 0;
        while done < blocks {
            let n = (blocks - done).min(per);
            let data = zero.slice(..n as usize * bs);
            self.read_write(lba + done, n as u32, Some(false), Transfer::Write(data))
                .await?;
            done += n;
        }
        Ok(())
    }

    /// Blocks per READ/WRITE command.
    fn max_blocks(&self) -> u64 {
        self.geometry
            .limits
            .max_transfer_blocks
            .map_or(1, u64::from)
            .max(1)
    }

    /// Checks a READ/WRITE request: in range, whole blocks, one command's worth.
    fn check_transfer(&self, lba: u64, len: usize) -> Result<u32, BlockError> {
        let blocks = self.geometry.check_range(lba, len as u64)?;
        if blocks > self.max_blocks() {
            return Err(BlockError::new(
                ErrorKind::InvalidRequest,
                "transfer longer than the LU's maximum transfer length",
            ));
        }
        Ok(blocks as u32)
    }

    fn check_writable(&self) -> Result<(), BlockError> {
        if self.geometry.read_only {
            return Err(BlockError::new(ErrorKind::ReadOnly, "device is read-only"));
        }
        Ok(())
    }
}

impl BlockDevice for ScsiDisk {
    fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    async fn read(&self, lba: u64, buf: BytesMut) -> Result<BytesMut, BlockError> {
        let blocks = self.check_transfer(lba, buf.len())?;
        let len = buf.len();
        let response = self
            .read_write(lba, blocks, None, Transfer::Read(buf))
            .await?;
        if response.data.len() != len {
            return Err(BlockError::new(ErrorKind::TargetFailure, "short read"));
        }
        Ok(response.data)
    }

    async fn write(&self, lba: u64, data: Bytes, fua: bool) -> Result<(), BlockError> {
        let blocks = self.check_transfer(lba, data.len())?;
        self.check_writable()?;
        // A device without DPOFUA may refuse the FUA bit: write, then SYNCHRONIZE CACHE.
        let native_fua = fua && self.geometry.can_fua;
        let response = self
            .read_write(lba, blocks, Some(native_fua), Transfer::Write(data))
            .await?;
        if response.underflow.is_some_and(|n| n > 0) {
            return Err(BlockError::new(ErrorKind::TargetFailure, "short write"));
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
            self.exec(self.command(cdb, Transfer::Write(Bytes::from(list))))
                .await?;
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

    async fn write_zeroes_fast(
        &self,
        lba: u64,
        blocks: u64,
        unmap: bool,
    ) -> Result<(), BlockError> {
        self.geometry.check_blocks(lba, blocks)?;
        self.check_writable()?;
        if blocks == 0 {
            return Ok(());
        }
        let slow = || {
            BlockError::new(
                ErrorKind::Unsupported,
                "the target lacks WRITE SAME(16): zeroing would write zero buffers",
            )
        };
        if !self.write_same.load(Ordering::Relaxed) {
            return Err(slow());
        }
        match self.write_same(lba, blocks, unmap).await {
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                debug!("target lacks WRITE SAME(16); fast zeroing refused from now on");
                self.write_same.store(false, Ordering::Relaxed);
                Err(slow())
            }
            other => other,
        }
    }

    async fn probe(&self) -> Result<(), BlockError> {
        self.exec(self.command(Cdb::test_unit_ready(), Transfer::None))
            .await
            .map(drop)
    }
}

/// Maps a command's outcome: GOOD, CONDITION MET and RECOVERED ERROR are success, anything
/// else a [`BlockError`].
fn status(response: Response, op: u8) -> Result<Response, BlockError> {
    if response.response != 0 {
        return Err(BlockError::new(
            ErrorKind::TargetFailure,
            "iSCSI target failure",
        ));
    }
    match response.status {
        ScsiStatus::GOOD | ScsiStatus::CONDITION_MET => Ok(response),
        ScsiStatus::CHECK_CONDITION => match response.sense {
            Some(sense) if sense.is_recovered() => Ok(response),
            Some(sense) => {
                debug!(%sense, op, "command failed");
                Err(sense.to_block_error())
            }
            None => Err(BlockError::new(
                ErrorKind::TargetFailure,
                "CHECK CONDITION without sense data",
            )),
        },
        ScsiStatus::BUSY | ScsiStatus::TASK_SET_FULL => {
            Err(BlockError::new(ErrorKind::PathFailure, "target stays busy"))
        }
        ScsiStatus::RESERVATION_CONFLICT => Err(BlockError::new(
            ErrorKind::TargetFailure,
            "reservation conflict",
        )),
        _ => Err(BlockError::new(
            ErrorKind::TargetFailure,
            "unexpected SCSI status",
        )),
    }
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
            "command re-issued too often without completing",
        ),
        TaskError::Timeout => BlockError::new(
            ErrorKind::PathFailure,
            "the target did not accept the command within the command timeout",
        ),
        TaskError::Refused(SubmitError::Closing) => BlockError::new(
            ErrorKind::PathDown,
            "the iSCSI session is closing; the command was not sent",
        ),
        // A closed session fails its commands in flight too: the target may still run them.
        TaskError::SessionClosed => {
            BlockError::new(ErrorKind::PathFailure, "the iSCSI session is closed")
        }
        TaskError::Refused(_) => {
            BlockError::new(ErrorKind::InvalidRequest, "the session refused the command")
        }
        TaskError::ConnectionLost { in_flight: true } => BlockError::new(
            ErrorKind::PathFailure,
            "the connection to the target was lost with the command in flight",
        ),
        TaskError::ConnectionLost { in_flight: false } | TaskError::NotConnected => {
            BlockError::new(
                ErrorKind::PathDown,
                "no connection to the target; the command was not sent",
            )
        }
        TaskError::Text(_) | TaskError::MalformedText(_) => BlockError::new(
            ErrorKind::PathFailure,
            "the target broke the iSCSI text exchange",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Multipath re-drives a write with no reset barrier only when the command never left:
    /// anything that may still be at the target must come back as a path failure.
    #[test]
    fn lost_commands_are_told_apart_from_unsent_ones() {
        let kind = |e| task_error(e).kind();
        assert_eq!(
            kind(TaskError::ConnectionLost { in_flight: true }),
            ErrorKind::PathFailure
        );
        assert_eq!(kind(TaskError::SessionClosed), ErrorKind::PathFailure);
        assert_eq!(kind(TaskError::Timeout), ErrorKind::PathFailure);
        assert_eq!(
            kind(TaskError::ConnectionLost { in_flight: false }),
            ErrorKind::PathDown
        );
        assert_eq!(kind(TaskError::NotConnected), ErrorKind::PathDown);
        assert_eq!(
            kind(TaskError::Refused(SubmitError::Closing)),
            ErrorKind::PathDown
        );
        assert_eq!(
            kind(TaskError::Refused(SubmitError::TooLarge(1 << 33))),
            ErrorKind::InvalidRequest
        );
        for e in [
            TaskError::ConnectionLost { in_flight: true },
            TaskError::ConnectionLost { in_flight: false },
        ] {
            assert!(task_error(e).is_path_failure());
        }
    }
}
