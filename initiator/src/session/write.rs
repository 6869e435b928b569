//! Sending commands and the write side of a command (RFC 7143 §11.3, §11.7, §11.8, §13.12-
//! §13.14): immediate data up to FirstBurstLength, unsolicited Data-Out when InitialR2T=No,
//! and R2T-driven Data-Out, every PDU within the target's MaxRecvDataSegmentLength.

use std::time::Instant;

use bytes::Bytes;

use super::types::Transfer;
use super::{Session, Task};
use crate::wire::{DataOut, Lun, Pdu, R2t, RESERVED_TAG, ScsiCommand};

impl Session {
    /// Issues `task` with the next CmdSN and a fresh ITT, with its immediate and unsolicited
    /// data.
    pub(super) fn send_command(&mut self, mut task: Task, now: Instant) {
        let itt = self.allocate_itt();
        let cmd_sn = self.window.take_cmd_sn();
        task.reset();
        task.cmd_sn = cmd_sn;
        self.tasks
            .set_deadline(&mut task, now + self.config.command_timeout);
        let edtl = task.expected_len();
        let (read, write, data) = match &task.command.transfer {
            Transfer::None => (false, false, Bytes::new()),
            Transfer::Read(_) => (true, false, Bytes::new()),
            Transfer::Write(d) => (false, true, d.clone()),
        };
        let p = self.params;
        let unsolicited = match (write, p.initial_r2t, p.immediate_data) {
            (false, _, _) => 0,
            (true, true, false) => 0,
            (true, true, true) => edtl.min(p.first_burst).min(p.max_xmit),
            (true, false, _) => edtl.min(p.first_burst),
        };
        let immediate = if write && p.immediate_data {
            unsolicited.min(p.max_xmit)
        } else {
            0
        };
        self.transmit.push_back(Pdu::ScsiCommand(ScsiCommand {
            immediate: false,
            final_: immediate == unsolicited,
            read,
            write,
            attr: task.command.attr,
            lun: task.command.lun,
            itt,
            expected_data_transfer_length: edtl,
            cmd_sn,
            exp_stat_sn: self.window.exp_stat_sn,
            cdb: task.command.cdb,
            extended_cdb: None,
            bidi_read_length: None,
            data: data.slice(..immediate as usize),
        }));
        if unsolicited > immediate {
            let lun = task.command.lun;
            self.queue_data_out(&data, lun, itt, RESERVED_TAG, immediate, unsolicited);
        }
        self.tasks.in_flight.insert(itt, task);
    }

    /// Answers an R2T with Data-Out PDUs for exactly the range it asks for.
    pub(super) fn handle_r2t(&mut self, r: R2t, now: Instant) {
        self.window.update(r.exp_cmd_sn, r.max_cmd_sn);
        let max_burst = self.params.max_burst;
        let Some(task) = self.tasks.in_flight.get_mut(&r.itt) else {
            if self.tasks.was_aborted(r.itt) {
                // Never answered: the aborted write must not reach the LU after the abort.
                tracing::debug!(itt = r.itt, "R2T for an aborted command; dropped");
                return;
            }
            return self.protocol_error("R2T for an ITT not in flight", now);
        };
        let Transfer::Write(data) = &task.command.transfer else {
            return self.protocol_error("R2T for a command that writes nothing", now);
        };
        let data = data.clone();
        if r.r2t_sn != task.next_r2t_sn {
            return self.protocol_error("R2T out of R2TSN order", now);
        }
        if r.desired_data_transfer_length == 0 || r.desired_data_transfer_length > max_burst {
            return self.protocol_error("R2T length zero or above MaxBurstLength", now);
        }
        let end = r
            .buffer_offset
            .checked_add(r.desired_data_transfer_length)
            .filter(|&e| e as usize <= data.len());
        let Some(end) = end else {
            return self.protocol_error("R2T beyond the expected data transfer length", now);
        };
        if r.ttt == RESERVED_TAG {
            return self.protocol_error("R2T with the reserved Target Transfer Tag", now);
        }
        task.next_r2t_sn = task.next_r2t_sn.wrapping_add(1);
        let lun = task.command.lun;
        self.queue_data_out(&data, lun, r.itt, r.ttt, r.buffer_offset, end);
    }

    /// Queues one data sequence: `data[start..end]` in PDUs of at most the target's
    /// MaxRecvDataSegmentLength, DataSN from 0, the F bit on the last.
    fn queue_data_out(&mut self, data: &Bytes, lun: Lun, itt: u32, ttt: u32, start: u32, end: u32) {
        let step = self.params.max_xmit;
        let mut offset = start;
        let mut data_sn = 0u32;
        while offset < end {
            let next = offset.saturating_add(step).min(end);
            self.transmit.push_back(Pdu::DataOut(DataOut {
                final_: next == end,
                lun,
                itt,
                ttt,
                exp_stat_sn: self.window.exp_stat_sn,
                data_sn,
                buffer_offset: offset,
                data: data.slice(offset as usize..next as usize),
            }));
            data_sn = data_sn.wrapping_add(1);
            offset = next;
        }
    }
}
