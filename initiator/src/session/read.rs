//! The read side of a command (RFC 7143 §11.7, §11.4): Data-In sequencing (DataSN order,
//! buffer offsets, F and S bits), status in the final Data-In, residuals, and the SCSI
//! Response that ends any command.

use std::time::Instant;

use bytes::BytesMut;

use super::recovery::Pace;
use super::types::{Outcome, Response, Transfer};
use super::{Session, Task};
use crate::scsi::{Sense, SenseKey, Verdict};
use crate::wire::{DataIn, ScsiResponse, ScsiStatus};

/// Where the data segment of an accepted Data-In header goes: bytes `start..end` of its
/// command's buffer. Hand it back to [`Session::landing_buffer`] and
/// [`Session::finish_data_in`].
#[derive(Clone, Debug)]
pub struct Landing {
    header: DataIn,
    start: usize,
    end: usize,
}

impl Landing {
    /// Length of the data segment.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the segment is empty.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// The Initiator Task Tag of the Data-In.
    pub fn itt(&self) -> u32 {
        self.header.itt
    }
}

/// The Data-In header broke the protocol; the session is dropping the connection (see
/// [`Session::poll_event`]).
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[error("Data-In rejected: {0}")]
pub struct DataInRejected(pub &'static str);

impl Session {
    /// Checks a Data-In header whose data segment of `data_len` bytes has not been read yet.
    ///
    /// # Errors
    /// [`DataInRejected`] when the header is out of sequence or out of bounds; the session
    /// has then failed the connection, and the data must not be delivered anywhere.
    pub fn begin_data_in(
        &mut self,
        header: DataIn,
        data_len: usize,
        now: Instant,
    ) -> Result<Landing, DataInRejected> {
        if !self.is_connected() {
            return Err(DataInRejected("no connection"));
        }
        self.keepalive.received(now);
        self.window.update(header.exp_cmd_sn, header.max_cmd_sn);
        match check_data_in(self.tasks.in_flight.get(&header.itt), &header, data_len) {
            Ok((start, end)) => Ok(Landing { header, start, end }),
            Err(what) => {
                self.protocol_error(what, now);
                Err(DataInRejected(what))
            }
        }
    }

    /// The slice of the command's buffer the accepted Data-In's segment goes to (empty if
    /// the command went away meanwhile).
    pub fn landing_buffer(&mut self, landing: &Landing) -> &mut [u8] {
        let task = self.tasks.in_flight.get_mut(&landing.header.itt);
        match task.map(|t| &mut t.command.transfer) {
            Some(Transfer::Read(buf)) => buf.get_mut(landing.start..landing.end).unwrap_or(&mut []),
            _ => &mut [],
        }
    }

    /// Accepts the data that landed (its digest, if any, verified), and ends the command if
    /// the Data-In carried status.
    pub fn finish_data_in(&mut self, landing: Landing, now: Instant) {
        let Landing { header, end, .. } = landing;
        let Some(task) = self.tasks.in_flight.get_mut(&header.itt) else {
            return;
        };
        // `end` was checked against the expected length, which fits u32.
        task.received = u32::try_from(end).unwrap_or(u32::MAX);
        task.next_data_sn = task.next_data_sn.wrapping_add(1);
        if header.status_present {
            if self.ack(header.stat_sn, now).is_err() {
                return;
            }
            let residual = Residual::from_flags(header.underflow, header.overflow, header.residual);
            self.complete(header.itt, 0, header.status, None, residual, now);
        }
        self.pump(now);
    }

    /// A Data-In with its data segment in hand (tests, or a driver that does not land).
    pub(super) fn handle_data_in(&mut self, mut d: DataIn, now: Instant) {
        let data = std::mem::take(&mut d.data);
        let Ok(landing) = self.begin_data_in(d, data.len(), now) else {
            return;
        };
        let dst = self.landing_buffer(&landing);
        if let Some(src) = data.get(..dst.len()) {
            dst.copy_from_slice(src);
        }
        self.finish_data_in(landing, now);
    }

    pub(super) fn handle_scsi_response(&mut self, r: ScsiResponse, now: Instant) {
        self.window.update(r.exp_cmd_sn, r.max_cmd_sn);
        if !self.tasks.in_flight.contains_key(&r.itt) {
            if self.tasks.was_aborted(r.itt) {
                // Its StatSN still counts.
                tracing::debug!(itt = r.itt, status = ?r.status, "SCSI Response for an aborted command; dropped");
                let _ = self.ack(r.stat_sn, now);
                return;
            }
            return self.protocol_error("SCSI Response for an ITT not in flight", now);
        }
        if self.ack(r.stat_sn, now).is_err() {
            return;
        }
        if r.response == 0 && r.status == ScsiStatus::TASK_ABORTED {
            // Aborted by a reset or another initiator: run it again after a pause, within
            // the re-issue bound.
            if let Some(task) = self.tasks.in_flight.remove(&r.itt) {
                tracing::debug!(itt = r.itt, "TASK ABORTED; re-issuing the command");
                self.reissue(task, Pace::Backoff, now);
            }
            return;
        }
        // Sense that cannot be decoded is dropped: the status still says the command failed.
        let sense = Sense::from_response_data(&r.data).ok().flatten();
        let residual = Residual::from_flags(r.underflow, r.overflow, r.residual);
        self.complete(r.itt, r.response, r.status, sense, residual, now);
    }

    /// Ends the command `itt` with a status: retried when its policy says so, otherwise
    /// handed to the caller with its data cut to what arrived.
    fn complete(
        &mut self,
        itt: u32,
        response: u8,
        status: ScsiStatus,
        sense: Option<Sense>,
        residual: Residual,
        now: Instant,
    ) {
        let Some(mut task) = self.tasks.in_flight.remove(&itt) else {
            return;
        };
        if response == 0 {
            let policy = task.command.retry;
            if let Verdict::Retry(pause) = policy.verdict(status, sense.as_ref(), &mut task.retries)
            {
                tracing::debug!(?status, ?sense, ?pause, "retrying the command");
                if let Some(s) = sense.filter(|s| s.key == SenseKey::UNIT_ATTENTION) {
                    task.unit_attentions.push(s);
                }
                return match pause.is_zero() {
                    true => self.tasks.requeue(task, now),
                    false => self.tasks.delay(task, now + pause),
                };
            }
        }
        let received = task.received;
        let underflow = match residual {
            Residual::Under(n) => Some(n),
            _ if task.is_read() && received < task.expected_len() => {
                // A target that sends less than asked without saying so: the caller sees how
                // much arrived (SPC commands may legitimately return less).
                Some(task.expected_len() - received)
            }
            _ => None,
        };
        let overflow = match residual {
            Residual::Over(n) => Some(n),
            _ => None,
        };
        let data = match task.command.transfer {
            Transfer::Read(mut buf) => {
                buf.truncate(received as usize);
                buf
            }
            _ => BytesMut::new(),
        };
        let done = Response {
            response,
            status,
            sense,
            data,
            underflow,
            overflow,
            unit_attentions: task.unit_attentions,
        };
        self.completions
            .push_back((task.id, Ok(Outcome::Scsi(done))));
    }
}

/// The residual a status PDU reports.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Residual {
    None,
    Under(u32),
    Over(u32),
}

impl Residual {
    fn from_flags(underflow: bool, overflow: bool, count: u32) -> Residual {
        match (underflow, overflow) {
            (true, _) => Residual::Under(count),
            (false, true) => Residual::Over(count),
            (false, false) => Residual::None,
        }
    }
}

/// Sequencing checks of one Data-In header against its command; returns the byte range
/// its data fills.
fn check_data_in(
    task: Option<&Task>,
    d: &DataIn,
    data_len: usize,
) -> Result<(usize, usize), &'static str> {
    let task = task.ok_or("Data-In for an ITT not in flight")?;
    if !task.is_read() {
        return Err("Data-In for a command that reads nothing");
    }
    if d.data_sn != task.next_data_sn {
        return Err("Data-In out of DataSN order");
    }
    if d.buffer_offset != task.received {
        return Err("Data-In at an unexpected buffer offset (out of order or overlapping)");
    }
    let len = u32::try_from(data_len).map_err(|_| "Data-In segment too long")?;
    let end = d
        .buffer_offset
        .checked_add(len)
        .filter(|&e| e <= task.expected_len())
        .ok_or("Data-In beyond the expected data transfer length")?;
    if d.status_present && !d.final_ {
        return Err("Data-In with status but without the F bit");
    }
    // §11.7.4: with the S bit the status is GOOD, CONDITION MET or INTERMEDIATE CONDITION
    // MET; anything else comes in a SCSI Response.
    let status_ok = matches!(
        d.status,
        ScsiStatus::GOOD | ScsiStatus::CONDITION_MET | ScsiStatus::INTERMEDIATE_CONDITION_MET
    );
    if d.status_present && !status_ok {
        return Err("Data-In carries a status that needs a SCSI Response");
    }
    if d.underflow && d.overflow {
        return Err("Data-In with both residual overflow and underflow");
    }
    Ok((d.buffer_offset as usize, end as usize))
}
