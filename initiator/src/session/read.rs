//! The read side of a command (RFC 7143 §11.7, §11.4): Data-In sequencing (DataSN order,
//! buffer offsets, F and S bits), status in the final Data-In, residuals, and the SCSI
//! Response that ends any command.

use std::time::Instant;

use bytes::BytesMut;

use super::types::{Response, Transfer};
use super::{Session, Task};
use crate::scsi::Sense;
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
            return self.protocol_error("SCSI Response for an ITT not in flight", now);
        }
        if self.ack(r.stat_sn, now).is_err() {
            return;
        }
        if r.status == ScsiStatus::TASK_ABORTED {
            // Aborted by our own task management (or a reset): run it again.
            if let Some(task) = self.tasks.in_flight.remove(&r.itt) {
                self.tasks.requeue(task);
            }
            return;
        }
        // Sense that cannot be decoded is dropped: the status still says the command failed.
        let sense = Sense::from_response_data(&r.data).ok().flatten();
        let residual = Residual::from_flags(r.underflow, r.overflow, r.residual);
        self.complete(r.itt, r.response, r.status, sense, residual, now);
    }

    /// Ends the command `itt` with a status, after checking residuals against the data.
    fn complete(
        &mut self,
        itt: u32,
        response: u8,
        status: ScsiStatus,
        sense: Option<Sense>,
        residual: Residual,
        now: Instant,
    ) {
        let Some(task) = self.tasks.in_flight.get(&itt) else {
            return;
        };
        if response == 0 && status == ScsiStatus::GOOD {
            if let Err(what) = check_residual(task, residual) {
                return self.protocol_error(what, now);
            }
        }
        let Some(task) = self.tasks.in_flight.remove(&itt) else {
            return;
        };
        let received = task.received as usize;
        let data = match task.command.transfer {
            Transfer::Read(mut buf) => {
                buf.truncate(received);
                buf
            }
            _ => BytesMut::new(),
        };
        let (underflow, overflow) = match residual {
            Residual::Under(n) => (Some(n), None),
            Residual::Over(n) => (None, Some(n)),
            Residual::None => (None, None),
        };
        let done = Response {
            response,
            status,
            sense,
            data,
            underflow,
            overflow,
        };
        self.completions.push_back((task.id, Ok(done)));
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
    if d.status_present && d.status != ScsiStatus::GOOD {
        return Err("Data-In carries a status other than GOOD");
    }
    if d.underflow && d.overflow {
        return Err("Data-In with both residual overflow and underflow");
    }
    Ok((d.buffer_offset as usize, end as usize))
}

/// A GOOD status must account for every expected byte: received + underflow = expected.
fn check_residual(task: &Task, residual: Residual) -> Result<(), &'static str> {
    let expected = task.expected_len();
    if !task.is_read() {
        return match residual {
            Residual::Over(_) => Err("residual overflow on a command without read data"),
            _ => Ok(()),
        };
    }
    let ok = match residual {
        Residual::None => task.received == expected,
        Residual::Under(n) => u64::from(task.received) + u64::from(n) == u64::from(expected),
        Residual::Over(_) => task.received == expected,
    };
    if ok {
        Ok(())
    } else {
        Err("read data and residual count disagree with the expected length")
    }
}
