//! The session's control traffic: logout (RFC 7143 §11.14-§11.15), asynchronous messages
//! (§11.9), rejects (§11.17), StatSN acknowledgement (§4.2.2.2) and protocol violations.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::recovery::Pace;
use super::tmf::TmfFailure;
use super::types::{ConnectionFailure, TaskError};
use super::window::StatSnError;
use super::{Session, State};
use crate::wire::{
    AsyncEvent, AsyncMessage, BasicHeader, LogoutReason, LogoutRequest, LogoutResponse, Opcode,
    Pdu, Reject, RejectReason,
};

impl Session {
    pub(super) fn send_logout(&mut self, by_owner: bool, now: Instant) {
        let itt = self.allocate_itt();
        self.transmit.push_back(Pdu::LogoutRequest(LogoutRequest {
            immediate: true,
            reason: LogoutReason::CLOSE_SESSION,
            itt,
            cid: 0,
            cmd_sn: self.window.cmd_sn,
            exp_stat_sn: self.window.exp_stat_sn,
        }));
        self.state = State::LoggingOut {
            itt,
            deadline: now + self.config.tmf_timeout,
            by_owner,
        };
    }

    pub(super) fn handle_logout_response(&mut self, l: LogoutResponse, now: Instant) {
        self.window.update(l.exp_cmd_sn, l.max_cmd_sn);
        let State::LoggingOut { itt, by_owner, .. } = self.state else {
            return self.protocol_error("Logout Response without a Logout Request", now);
        };
        if l.itt != itt {
            return self.protocol_error("Logout Response for another ITT", now);
        }
        if self.ack(l.stat_sn, now).is_err() {
            return;
        }
        info!(response = ?l.response, "logged out");
        if by_owner {
            self.finish_close();
        } else {
            let delay = Duration::from_secs(u64::from(l.time2wait));
            self.fail_connection(ConnectionFailure::TargetLogout, delay, now);
        }
    }

    /// Stops taking new commands and logs out once the running ones end (or after `grace`);
    /// the session then reconnects.
    pub(super) fn drain(&mut self, grace: Duration, now: Instant) {
        if self.state == State::Connected {
            self.state = State::Draining {
                deadline: now + grace.max(Duration::from_secs(1)),
            };
        }
    }

    pub(super) fn handle_async(&mut self, a: AsyncMessage, now: Instant) {
        self.window.update(a.exp_cmd_sn, a.max_cmd_sn);
        if self.ack(a.stat_sn, now).is_err() {
            return;
        }
        let seconds = |v: u16| Duration::from_secs(u64::from(v));
        match a.event {
            AsyncEvent::LOGOUT_REQUEST => {
                info!(within = a.parameter3, "target requests a logout");
                self.drain(seconds(a.parameter3), now);
            }
            AsyncEvent::CONNECTION_DROP | AsyncEvent::SESSION_DROP => {
                warn!(event = ?a.event, time2wait = a.parameter2, "target drops the connection");
                self.fail_connection(ConnectionFailure::TargetDrop, seconds(a.parameter2), now);
            }
            AsyncEvent::NEGOTIATION_REQUEST => {
                // §11.9.1: answer with a Text Request (or a Logout) as early as possible.
                info!(
                    within = a.parameter3,
                    "target requests parameter negotiation; sending a Text Request"
                );
                self.request_renegotiation(seconds(a.parameter3), now);
            }
            AsyncEvent::SCSI_EVENT => {
                let sense = crate::scsi::Sense::from_response_data(&a.data)
                    .ok()
                    .flatten();
                info!(?sense, lun = ?a.lun, "target reports a SCSI asynchronous event");
            }
            other => info!(event = ?other, "target sent an asynchronous message"),
        }
    }

    /// A Reject (§11.17): it carries a StatSN of its own, and it ends a request only when the
    /// rejected PDU started it — a SCSI Command, a Text Request, a task management request.
    /// A rejected Data-Out or SNACK ends nothing (the target answers the command itself);
    /// a rejected ping counts as an answer.
    pub(super) fn handle_reject(&mut self, r: Reject, now: Instant) {
        self.window.update(r.exp_cmd_sn, r.max_cmd_sn);
        if self.ack(r.stat_sn, now).is_err() {
            return;
        }
        let rejected = r.rejected_header().map(BasicHeader::from_array);
        let (opcode, itt) = rejected.map_or((None, None), |h| (Some(h.opcode()), Some(h.itt())));
        warn!(reason = ?r.reason, ?opcode, ?itt, "target rejected a PDU");
        if r.reason == RejectReason::DATA_DIGEST_ERROR {
            // Under ERL 0 the damaged data cannot be resent alone: start over on a new
            // connection, which re-issues the command.
            return self.protocol_error("target saw a data digest error in our data", now);
        }
        let (Some(opcode), Some(itt)) = (opcode, itt) else {
            return;
        };
        match opcode {
            Opcode::SCSI_COMMAND => self.command_rejected(itt, r.reason, now),
            Opcode::TEXT_REQUEST => {
                if let Some(id) = self.texts.rejected(itt) {
                    self.fail(id, TaskError::Rejected { reason: r.reason });
                }
            }
            Opcode::TASK_MGMT_REQUEST if self.tmfs.contains_key(&itt) => {
                self.tmf_failed(itt, TmfFailure::Rejected(r.reason), now);
            }
            Opcode::NOP_OUT if self.keepalive.is_ping(itt) => self.keepalive.answered(),
            Opcode::LOGOUT_REQUEST => self.protocol_error("target rejected our Logout", now),
            _ => {}
        }
    }

    fn command_rejected(&mut self, itt: u32, reason: RejectReason, now: Instant) {
        let Some(task) = self.tasks.in_flight.remove(&itt) else {
            return;
        };
        match reason {
            // The target cannot take the command now: it runs again (on the next connection
            // after a logout the target is waiting for), within the re-issue bound.
            RejectReason::WAITING_FOR_LOGOUT => {
                self.reissue(task, Pace::Backoff, now);
                self.drain(Duration::ZERO, now);
            }
            RejectReason::IMMEDIATE_COMMAND_REJECT | RejectReason::LONG_OP_REJECT => {
                self.reissue(task, Pace::Backoff, now);
            }
            reason => self.fail(task.id, TaskError::Rejected { reason }),
        }
    }

    /// Acknowledges a StatSN; a gap or stale number ends the connection.
    pub(super) fn ack(&mut self, stat_sn: u32, now: Instant) -> Result<(), ()> {
        match self.window.ack_stat_sn(stat_sn) {
            Ok(()) => Ok(()),
            Err(StatSnError::Gap) => {
                self.protocol_error("StatSN gap: a status was lost", now);
                Err(())
            }
            Err(StatSnError::Stale) => {
                self.protocol_error("StatSN already acknowledged", now);
                Err(())
            }
        }
    }

    pub(super) fn protocol_error(&mut self, what: &'static str, now: Instant) {
        warn!(
            error = what,
            "target protocol violation; dropping the connection"
        );
        self.fail_connection(ConnectionFailure::PeerMisbehaved(what), Duration::ZERO, now);
    }
}
