//! SCSI tasks on a connection (RFC 7143 §11.3-§11.8): running a command on the device,
//! returning read data in Data-In PDUs of at most the initiator's MaxRecvDataSegmentLength
//! (with the status in the last one, §11.7.4, or in a SCSI Response), and collecting write
//! data from immediate data, unsolicited Data-Out (up to FirstBurstLength) and R2T-solicited
//! Data-Out, one R2T of at most MaxBurstLength at a time (MaxOutstandingR2T=1).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use sanshim_initiator::wire::{
    Bytes, DataIn, DataOut, Lun, Pdu, R2t, RESERVED_TAG, ScsiCommand, ScsiResponse, ScsiStatus,
};

use super::Event;
use super::conn::Connection;
use super::pages;
use super::rules::SenseCode;
use super::scsi::{Device, Outcome, Plan, WriteOp};

/// A write whose execution a [`crate::Rule::Defer`] put off.
#[derive(Debug)]
pub(crate) struct Deferred {
    due: Instant,
    conn: u64,
    task: WriteTask,
}

/// A write command collecting its Data-Out.
#[derive(Debug)]
pub(crate) struct WriteTask {
    pub(crate) lun: Lun,
    opcode: u8,
    itt: u32,
    edtl: u32,
    op: WriteOp,
    buf: Vec<u8>,
    /// Bytes the device needs (the buffer holds at most the EDTL of them).
    needed: usize,
    /// Unsolicited Data-Out may still arrive (the command had F=0).
    unsolicited_open: bool,
    /// End of the data received without an R2T.
    unsolicited_end: usize,
    /// Where the next R2T starts.
    next_offset: usize,
    /// The outstanding R2T: TTT, offset, length.
    r2t: Option<(u32, usize, usize)>,
    r2t_sn: u32,
}

/// Residual count and the U/O bits for `sent` bytes against an expected `edtl`.
struct Residual {
    underflow: bool,
    overflow: bool,
    count: u32,
}

impl Residual {
    fn of(actual: usize, edtl: u32) -> Residual {
        let actual = u32::try_from(actual).unwrap_or(u32::MAX);
        Residual {
            underflow: actual < edtl,
            overflow: actual > edtl,
            count: actual.abs_diff(edtl),
        }
    }
}

impl Connection {
    fn device(&self) -> Device<'_> {
        Device {
            config: &self.shared.config,
            disk: &self.shared.disk,
        }
    }

    /// Runs a SCSI command whose CmdSN has been accepted.
    pub(super) fn handle_command(&mut self, cmd: ScsiCommand) {
        let op = cmd.cdb[0];
        self.shared.log(Event::Command { opcode: op });
        // INQUIRY, REPORT LUNS and REQUEST SENSE do not report a unit attention (SPC-5
        // §5.14); everything else meets a pending reset attention first.
        if !matches!(op, 0x12 | 0xa0 | 0x03) && self.shared.take_reset_attention(self.nexus) {
            let outcome = Outcome::status(ScsiStatus::CHECK_CONDITION, Some(SenseCode::LU_RESET));
            return self.respond(&cmd, outcome, Residual::of(0, 0));
        }
        if self.shared.script(|s| s.take_hold(op)) {
            self.held.insert(cmd.itt, cmd);
            return;
        }
        if let Some((status, sense)) = self.shared.script(|s| s.take_answer(op)) {
            return self.respond(&cmd, Outcome::status(status, sense), Residual::of(0, 0));
        }
        self.execute(cmd);
    }

    /// Carries out the held commands once [`crate::FakeTarget::release_held`] was called.
    pub(super) fn run_released(&mut self) {
        let released = self.shared.released();
        if released == self.released {
            return;
        }
        self.released = released;
        let mut held: Vec<ScsiCommand> = self.held.drain().map(|(_, cmd)| cmd).collect();
        held.sort_by_key(|cmd| cmd.cmd_sn);
        for cmd in held {
            self.execute(cmd);
        }
    }

    /// Runs a command on the device.
    fn execute(&mut self, cmd: ScsiCommand) {
        match self.device().plan(cmd.lun.number(), &cmd.cdb) {
            Plan::Done(outcome) => self.complete(&cmd, outcome),
            Plan::Write { len, op } => self.start_write(cmd, len, op),
        }
    }

    /// Sends a finished command's data and status.
    fn complete(&mut self, cmd: &ScsiCommand, outcome: Outcome) {
        let data = outcome.data.clone();
        if outcome.status != ScsiStatus::GOOD || data.is_empty() || !cmd.read {
            let residual = Residual::of(data.len(), cmd.expected_data_transfer_length);
            return self.respond(cmd, outcome, residual);
        }
        if matches!(cmd.cdb[0], 0x28 | 0x88) {
            let lun = cmd.lun.number().unwrap_or(u64::MAX);
            self.shared
                .count(|c| *c.bytes_read.entry(lun).or_default() += data.len() as u64);
        }
        let residual = Residual::of(data.len(), cmd.expected_data_transfer_length);
        let edtl = usize::try_from(cmd.expected_data_transfer_length).unwrap_or(usize::MAX);
        let data = data.slice(..data.len().min(edtl));
        let collapse = self.shared.config.status_in_data_in;
        if collapse {
            self.shared.log(Event::Status {
                opcode: cmd.cdb[0],
                status: ScsiStatus::GOOD,
            });
        }
        let sent = self.send_data_in(cmd, data, collapse.then_some(&residual));
        if !collapse {
            self.respond_after(cmd, outcome, residual, sent);
        }
    }

    /// Sends `data` as Data-In PDUs; with `status`, the last carries GOOD status (S bit).
    /// Returns the number of PDUs sent.
    fn send_data_in(&mut self, cmd: &ScsiCommand, data: Bytes, status: Option<&Residual>) -> u32 {
        let segment = (self.params.peer_mrdsl as usize).max(512);
        let burst = (self.params.max_burst as usize).max(512);
        let digest = self.params.data_digest;
        let (mut offset, mut in_burst, mut data_sn) = (0, 0, 0u32);
        while offset < data.len() {
            let n = segment.min(data.len() - offset).min(burst - in_burst);
            let last = offset + n == data.len();
            in_burst += n;
            let end_of_burst = last || in_burst == burst;
            if end_of_burst {
                in_burst = 0;
            }
            let with_status = last && status.is_some();
            let residual = status.filter(|_| with_status);
            let pdu = DataIn {
                final_: end_of_burst,
                ack: false,
                overflow: residual.is_some_and(|r| r.overflow),
                underflow: residual.is_some_and(|r| r.underflow),
                status_present: with_status,
                status: ScsiStatus::GOOD,
                lun: cmd.lun,
                itt: cmd.itt,
                ttt: RESERVED_TAG,
                stat_sn: if with_status {
                    self.advance_stat_sn()
                } else {
                    self.stat_sn
                },
                exp_cmd_sn: self.exp_cmd_sn,
                max_cmd_sn: self.max_cmd_sn(),
                data_sn,
                buffer_offset: offset as u32,
                residual: residual.map_or(0, |r| r.count),
                data: data.slice(offset..offset + n),
            };
            let corrupt = digest && self.shared.script(|s| s.take_corrupt());
            self.send_with(Pdu::DataIn(pdu), corrupt);
            offset += n;
            data_sn += 1;
        }
        self.shared.count(|c| c.data_in += u64::from(data_sn));
        data_sn
    }

    fn respond(&mut self, cmd: &ScsiCommand, outcome: Outcome, residual: Residual) {
        self.respond_after(cmd, outcome, residual, 0);
    }

    /// Sends a SCSI Response; `exp_data_sn` counts the Data-In or R2T PDUs sent before it.
    fn respond_after(&mut self, cmd: &ScsiCommand, o: Outcome, r: Residual, exp_data_sn: u32) {
        self.shared.log(Event::Status {
            opcode: cmd.cdb[0],
            status: o.status,
        });
        let pdu = ScsiResponse {
            overflow: r.overflow,
            underflow: r.underflow,
            response: 0,
            status: o.status,
            itt: cmd.itt,
            stat_sn: self.advance_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            exp_data_sn,
            residual: r.count,
            data: o.sense.map(pages::sense_segment).unwrap_or_default(),
            ..ScsiResponse::default()
        };
        self.send(Pdu::ScsiResponse(pdu));
    }

    fn start_write(&mut self, cmd: ScsiCommand, len: usize, op: WriteOp) {
        let edtl = usize::try_from(cmd.expected_data_transfer_length).unwrap_or(usize::MAX);
        let mut task = WriteTask {
            lun: cmd.lun,
            opcode: cmd.cdb[0],
            itt: cmd.itt,
            edtl: cmd.expected_data_transfer_length,
            op,
            buf: vec![0; len.min(edtl)],
            needed: len,
            unsolicited_open: !cmd.final_,
            unsolicited_end: 0,
            next_offset: 0,
            r2t: None,
            r2t_sn: 0,
        };
        task.store(0, &cmd.data);
        task.unsolicited_end = cmd.data.len().min(task.buf.len());
        task.next_offset = task.unsolicited_end;
        self.advance_write(task);
    }

    /// Handles a Data-Out: unsolicited (TTT 0xffffffff) or answering our R2T.
    pub(super) fn handle_data_out(&mut self, data: DataOut) {
        self.shared.count(|c| c.data_out += 1);
        // Data for a task we no longer know (answered early, aborted) is dropped.
        let Some(mut task) = self.writes.remove(&data.itt) else {
            return;
        };
        let offset = data.buffer_offset as usize;
        task.store(offset, &data.data);
        let end = offset.saturating_add(data.data.len()).min(task.buf.len());
        match task.r2t {
            Some((ttt, r2t_offset, r2t_len)) if data.ttt == ttt && data.final_ => {
                task.r2t = None;
                task.next_offset = task.next_offset.max(r2t_offset + r2t_len);
            }
            _ if data.ttt == RESERVED_TAG => {
                task.unsolicited_end = task.unsolicited_end.max(end);
                if data.final_ {
                    task.unsolicited_open = false;
                    task.next_offset = task.next_offset.max(task.unsolicited_end);
                }
            }
            _ => {}
        }
        self.advance_write(task);
    }

    /// Asks for the next range with an R2T, finishes the command when all data is in, or
    /// parks the task to wait for Data-Out.
    fn advance_write(&mut self, mut task: WriteTask) {
        let waiting = task.unsolicited_open || task.r2t.is_some();
        if !waiting && task.next_offset >= task.buf.len() {
            return self.finish_write(task);
        }
        if !waiting {
            let len = (task.buf.len() - task.next_offset).min(self.params.max_burst as usize);
            let ttt = self.fresh_ttt();
            let pdu = R2t {
                lun: task.lun,
                itt: task.itt,
                ttt,
                stat_sn: self.stat_sn,
                exp_cmd_sn: self.exp_cmd_sn,
                max_cmd_sn: self.max_cmd_sn(),
                r2t_sn: task.r2t_sn,
                buffer_offset: task.next_offset as u32,
                desired_data_transfer_length: len as u32,
            };
            task.r2t = Some((ttt, task.next_offset, len));
            task.r2t_sn += 1;
            self.shared.count(|c| c.r2ts += 1);
            self.send(Pdu::R2t(pdu));
        }
        self.writes.insert(task.itt, task);
    }

    fn finish_write(&mut self, task: WriteTask) {
        if let Some(delay) = self.shared.script(|s| s.take_defer(task.opcode)) {
            let deferred = Deferred {
                due: Instant::now() + delay,
                conn: self.id,
                task,
            };
            return lock(&self.shared.deferred).push(deferred);
        }
        self.carry_out(task);
    }

    /// Carries out the deferred writes that are due: this connection's own (answered), and
    /// those whose connection is gone (ghost writes, unanswered).
    pub(super) fn run_deferred(&mut self, now: Instant) {
        let live = lock(&self.shared.live).clone();
        let due: Vec<Deferred> = {
            let mut all = lock(&self.shared.deferred);
            let (due, rest) = std::mem::take(&mut *all)
                .into_iter()
                .partition(|d| now >= d.due && (d.conn == self.id || !live.contains(&d.conn)));
            *all = rest;
            due
        };
        for d in due {
            if d.conn == self.id {
                self.carry_out(d.task);
            } else {
                let outcome = self.device().finish(d.task.op, &d.task.buf);
                let lun = d.task.lun.number().unwrap_or(u64::MAX);
                self.shared.count(|c| {
                    *c.bytes_written.entry(lun).or_default() += outcome.written;
                    c.ghost_writes += 1;
                });
            }
        }
    }

    /// A LOGICAL UNIT RESET cancels the deferred writes of its LUN.
    pub(super) fn cancel_deferred(&mut self, lun: Lun) {
        let mut all = lock(&self.shared.deferred);
        let before = all.len();
        all.retain(|d| d.task.lun != lun);
        let cancelled = (before - all.len()) as u64;
        drop(all);
        self.shared.count(|c| c.deferred_cancelled += cancelled);
    }

    /// Executes a write and answers it.
    fn carry_out(&mut self, task: WriteTask) {
        let outcome = self.device().finish(task.op, &task.buf);
        let lun = task.lun.number().unwrap_or(u64::MAX);
        self.shared
            .count(|c| *c.bytes_written.entry(lun).or_default() += outcome.written);
        let mut cdb = [0; 16];
        cdb[0] = task.opcode;
        let cmd = ScsiCommand {
            lun: task.lun,
            itt: task.itt,
            expected_data_transfer_length: task.edtl,
            cdb,
            ..ScsiCommand::default()
        };
        let residual = Residual::of(task.needed, task.edtl);
        self.respond_after(&cmd, outcome, residual, task.r2t_sn);
    }
}

impl WriteTask {
    /// Copies Data-Out bytes into the buffer, ignoring whatever lies beyond it.
    fn store(&mut self, offset: usize, data: &[u8]) {
        let end = offset.saturating_add(data.len()).min(self.buf.len());
        if let (Some(dst), Some(src)) = (
            self.buf.get_mut(offset..end),
            data.get(..end.saturating_sub(offset)),
        ) {
            dst.copy_from_slice(src);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
