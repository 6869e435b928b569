//! Pings the owner asks for (RFC 7143 §11.18, §11.19): a NOP-Out carrying `len` bytes of data,
//! which the target echoes in a NOP-In. Multipath uses them to check a suspect path at once and
//! to probe for a jumbo-frame black hole (a full-size ping that never comes back while small
//! ones do). A ping unanswered by its deadline fails; its late answer is acknowledged and
//! dropped rather than taken for a protocol violation.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::types::{Outcome, SubmitError, TaskError, TaskId};
use super::{Session, State};
use crate::wire::{Lun, NopIn, NopOut, Pdu, RESERVED_TAG};

/// Late answers remembered at most.
const ABANDONED: usize = 16;

/// The owner's pings on the wire.
#[derive(Debug, Default)]
pub(super) struct Pings {
    out: HashMap<u32, Ping>,
    abandoned: VecDeque<u32>,
}

#[derive(Debug)]
struct Ping {
    id: TaskId,
    deadline: Instant,
}

impl Pings {
    pub fn uses_itt(&self, itt: u32) -> bool {
        self.out.contains_key(&itt) || self.abandoned.contains(&itt)
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.out.values().map(|p| p.deadline).min()
    }

    /// The owners of every ping on the wire (the connection is gone).
    pub fn drain(&mut self) -> Vec<TaskId> {
        self.abandoned.clear();
        self.out.drain().map(|(_, p)| p.id).collect()
    }
}

impl Session {
    /// Sends a NOP-Out ping carrying `len` bytes; it completes with [`Outcome::Pong`] holding
    /// the length echoed, or fails with [`TaskError::Timeout`] after `timeout`.
    ///
    /// # Errors
    /// [`SubmitError::TooLarge`] when `len` exceeds what the target accepts in one segment,
    /// [`SubmitError::Closing`] on a closing session.
    pub fn submit_ping(
        &mut self,
        len: usize,
        timeout: Duration,
        now: Instant,
    ) -> Result<TaskId, SubmitError> {
        if len > self.params.max_xmit as usize {
            return Err(SubmitError::TooLarge(len));
        }
        let id = self.admit()?;
        if !matches!(self.state, State::Connected | State::Draining { .. }) {
            self.fail(id, TaskError::ConnectionLost { in_flight: false });
            return Ok(id);
        }
        let itt = self.allocate_itt();
        let data: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(151) ^ 0x5a)
            .collect();
        self.transmit.push_back(Pdu::NopOut(NopOut {
            immediate: true,
            lun: Lun::default(),
            itt,
            ttt: RESERVED_TAG,
            cmd_sn: self.window.cmd_sn,
            exp_stat_sn: self.window.exp_stat_sn,
            data: Bytes::from(data),
        }));
        let deadline = now + timeout;
        self.pings.out.insert(itt, Ping { id, deadline });
        Ok(id)
    }

    /// A NOP-In answering one of the owner's pings (a live one or a late one): acknowledged,
    /// and the live one completed. `false` when `n` answers no such ping.
    pub(super) fn handle_pong(&mut self, n: &NopIn, now: Instant) -> bool {
        if let Some(ping) = self.pings.out.remove(&n.itt) {
            if self.ack(n.stat_sn, now).is_ok() {
                let echoed = Outcome::Pong(n.data.len());
                self.completions.push_back((ping.id, Ok(echoed)));
            }
            return true;
        }
        if let Some(at) = self.pings.abandoned.iter().position(|&i| i == n.itt) {
            self.pings.abandoned.remove(at);
            let _ = self.ack(n.stat_sn, now);
            return true;
        }
        false
    }

    /// Fails the pings past their deadline.
    pub(super) fn ping_timeouts(&mut self, now: Instant) {
        let expired: Vec<u32> = self
            .pings
            .out
            .iter()
            .filter(|(_, p)| now >= p.deadline)
            .map(|(&itt, _)| itt)
            .collect();
        for itt in expired {
            if let Some(ping) = self.pings.out.remove(&itt) {
                self.fail(ping.id, TaskError::Timeout);
                if self.pings.abandoned.len() == ABANDONED {
                    self.pings.abandoned.pop_front();
                }
                self.pings.abandoned.push_back(itt);
            }
        }
    }
}
