//! Task management (RFC 7143 §11.5, §11.6; SAM-5 §7): a command past its timeout gets
//! ABORT TASK; if that fails, LOGICAL UNIT RESET; if that fails too, the connection is
//! dropped and the session rebuilt. The owner may also ask for a function itself (multipath
//! resets a LU through a working path before re-driving writes elsewhere).
//!
//! Aborted commands are re-issued after a pause, counting against the re-issue bound, so a
//! hung LU costs a bounded number of attempts. A reset re-issues only the commands it
//! aborted: those in flight on the LU when it was sent, not those sent after it.

use std::time::Instant;

use tracing::warn;

use super::recovery::Pace;
use super::types::{ConnectionFailure, Outcome, SubmitError, TaskError, TaskId, TaskManagement};
use super::{Session, State};
use crate::wire::{
    Lun, Pdu, RESERVED_TAG, RejectReason, TaskMgmtRequest, TaskMgmtResponse, TmFunction, TmResponse,
};

/// An outstanding task management request.
#[derive(Clone, Debug)]
pub(crate) struct Tmf {
    /// What it does and for whom.
    pub kind: TmfKind,
    /// The ITTs of the commands it aborts when it succeeds.
    pub victims: Vec<u32>,
    /// When we give up waiting for the answer.
    pub deadline: Instant,
}

/// What a request does.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TmfKind {
    /// ABORT TASK of a timed-out command.
    Abort { lun: Lun },
    /// LOGICAL UNIT RESET after a failed abort.
    LunReset { lun: Lun },
    /// A function the owner asked for.
    Owner { id: TaskId },
}

/// How a task management request failed.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum TmfFailure {
    /// No answer within the task management timeout.
    TimedOut,
    /// The target answered with a failure.
    Refused,
    /// The target rejected the request PDU.
    Rejected(RejectReason),
}

impl TmfFailure {
    fn describe(self) -> &'static str {
        match self {
            TmfFailure::TimedOut => "task management request timed out",
            TmfFailure::Refused => "task management function refused",
            TmfFailure::Rejected(_) => "task management request rejected",
        }
    }
}

impl Tmf {
    /// The owner waiting for this request, if any.
    pub fn owner(&self) -> Option<TaskId> {
        match self.kind {
            TmfKind::Owner { id } => Some(id),
            _ => None,
        }
    }
}

impl Session {
    /// Sends a task management function for the owner; it completes with
    /// [`Outcome::TaskManagement`] holding the target's response. A successful function
    /// re-issues the commands of this session it aborted.
    ///
    /// # Errors
    /// [`SubmitError::NoSuchTask`] for an ABORT TASK of a command not in flight,
    /// [`SubmitError::Closing`] on a closing session.
    pub fn submit_task_management(
        &mut self,
        tm: TaskManagement,
        now: Instant,
    ) -> Result<TaskId, SubmitError> {
        let referenced = match (tm.function, tm.task) {
            (TmFunction::ABORT_TASK, Some(task)) => {
                let itt = self.tasks.itt_of(task).ok_or(SubmitError::NoSuchTask)?;
                Some(itt)
            }
            (TmFunction::ABORT_TASK, None) => return Err(SubmitError::NoSuchTask),
            _ => None,
        };
        let id = self.admit()?;
        if self.state != State::Connected {
            self.fail(id, TaskError::NotConnected);
            return Ok(id);
        }
        let victims = match referenced {
            Some(itt) => vec![itt],
            None => self.victims(tm.function, tm.lun),
        };
        let (tag, ref_cmd_sn) = referenced
            .and_then(|itt| self.tasks.in_flight.get(&itt).map(|t| (itt, t.cmd_sn)))
            .unwrap_or((RESERVED_TAG, self.window.cmd_sn));
        self.mark_aborting(&victims);
        let kind = TmfKind::Owner { id };
        self.send_tmf(tm.function, tm.lun, tag, ref_cmd_sn, kind, victims, now);
        Ok(id)
    }

    /// Starts ABORT TASK for every command past its deadline.
    pub(super) fn command_timeouts(&mut self, now: Instant) {
        let expired: Vec<(u32, Lun, u32)> = self
            .tasks
            .in_flight
            .iter()
            .filter(|(_, t)| !t.aborting && t.deadline.is_some_and(|d| now >= d))
            .map(|(&itt, t)| (itt, t.command.lun, t.cmd_sn))
            .collect();
        for (itt, lun, cmd_sn) in expired {
            warn!(itt, ?lun, "command timed out; sending ABORT TASK");
            self.mark_aborting(&[itt]);
            let kind = TmfKind::Abort { lun };
            self.send_tmf(
                TmFunction::ABORT_TASK,
                lun,
                itt,
                cmd_sn,
                kind,
                vec![itt],
                now,
            );
        }
    }

    /// Escalates every task management request past its deadline.
    pub(super) fn tmf_timeouts(&mut self, now: Instant) {
        let expired: Vec<u32> = self
            .tmfs
            .iter()
            .filter(|(_, t)| now >= t.deadline)
            .map(|(&itt, _)| itt)
            .collect();
        for itt in expired {
            self.tmf_failed(itt, TmfFailure::TimedOut, now);
        }
    }

    pub(super) fn handle_tmf_response(&mut self, r: TaskMgmtResponse, now: Instant) {
        self.window.update(r.exp_cmd_sn, r.max_cmd_sn);
        if !self.tmfs.contains_key(&r.itt) {
            return self.protocol_error("task management response for an unknown ITT", now);
        }
        if self.ack(r.stat_sn, now).is_err() {
            return;
        }
        let Some(tmf) = self.tmfs.get(&r.itt) else {
            return;
        };
        let ok = match tmf.kind {
            TmfKind::Abort { .. } => matches!(
                r.response,
                TmResponse::FUNCTION_COMPLETE | TmResponse::TASK_DOES_NOT_EXIST
            ),
            TmfKind::LunReset { .. } | TmfKind::Owner { .. } => {
                r.response == TmResponse::FUNCTION_COMPLETE
            }
        };
        if !ok {
            warn!(response = ?r.response, "task management function failed");
            if let TmfKind::Owner { id } = tmf.kind {
                self.tmfs.remove(&r.itt);
                self.clear_aborting();
                self.completions
                    .push_back((id, Ok(Outcome::TaskManagement(r.response))));
                return;
            }
            return self.tmf_failed(r.itt, TmfFailure::Refused, now);
        }
        let Some(tmf) = self.tmfs.remove(&r.itt) else {
            return;
        };
        // The aborted commands run again under new tags. Their old tags are remembered: a
        // target may still send an R2T or a SCSI Response it had queued for them after its
        // answer (tgtd does), and that is no reason to drop the connection.
        for itt in tmf.victims {
            if let Some(task) = self.tasks.in_flight.remove(&itt) {
                self.tasks.note_aborted(itt);
                self.reissue(task, Pace::Backoff, now);
            }
        }
        if let TmfKind::Owner { id } = tmf.kind {
            self.completions
                .push_back((id, Ok(Outcome::TaskManagement(r.response))));
        }
    }

    /// A request failed (refused, rejected or timed out): ABORT TASK escalates to a LUN
    /// reset, a LUN reset to a new session; the owner's request just fails.
    pub(super) fn tmf_failed(&mut self, itt: u32, failure: TmfFailure, now: Instant) {
        let what = failure.describe();
        let Some(tmf) = self.tmfs.remove(&itt) else {
            return;
        };
        match tmf.kind {
            TmfKind::Abort { lun } => {
                let resetting = self
                    .tmfs
                    .values()
                    .any(|t| matches!(t.kind, TmfKind::LunReset { lun: l } if l == lun));
                if !resetting {
                    warn!(
                        ?lun,
                        reason = what,
                        "ABORT TASK failed; sending LOGICAL UNIT RESET"
                    );
                    let victims = self.victims(TmFunction::LOGICAL_UNIT_RESET, lun);
                    self.mark_aborting(&victims);
                    let kind = TmfKind::LunReset { lun };
                    let (f, tag) = (TmFunction::LOGICAL_UNIT_RESET, RESERVED_TAG);
                    self.send_tmf(f, lun, tag, self.window.cmd_sn, kind, victims, now);
                }
            }
            TmfKind::LunReset { .. } => {
                let delay = std::time::Duration::ZERO;
                self.fail_connection(ConnectionFailure::TaskManagement(what), delay, now);
            }
            TmfKind::Owner { id } => {
                self.clear_aborting();
                let error = match failure {
                    TmfFailure::TimedOut | TmfFailure::Refused => TaskError::Timeout,
                    TmfFailure::Rejected(reason) => TaskError::Rejected { reason },
                };
                self.fail(id, error);
            }
        }
    }

    /// The commands in flight that `function` on `lun` aborts.
    fn victims(&self, function: TmFunction, lun: Lun) -> Vec<u32> {
        let whole_target = matches!(
            function,
            TmFunction::TARGET_WARM_RESET | TmFunction::TARGET_COLD_RESET
        );
        self.tasks
            .in_flight
            .iter()
            .filter(|(_, t)| whole_target || t.command.lun == lun)
            .map(|(&itt, _)| itt)
            .collect()
    }

    fn mark_aborting(&mut self, itts: &[u32]) {
        for itt in itts {
            if let Some(t) = self.tasks.in_flight.get_mut(itt) {
                t.aborting = true;
            }
        }
    }

    /// After an owner's function failed, commands it named run on under their own timeouts
    /// again, unless another request still aborts them.
    fn clear_aborting(&mut self) {
        let still: Vec<u32> = self.tmfs.values().flat_map(|t| t.victims.clone()).collect();
        for (itt, task) in self.tasks.in_flight.iter_mut() {
            if !still.contains(itt) {
                task.aborting = false;
            }
        }
    }

    #[allow(clippy::too_many_arguments, reason = "one PDU's worth of fields")]
    fn send_tmf(
        &mut self,
        function: TmFunction,
        lun: Lun,
        referenced: u32,
        ref_cmd_sn: u32,
        kind: TmfKind,
        victims: Vec<u32>,
        now: Instant,
    ) {
        let itt = self.allocate_itt();
        self.transmit
            .push_back(Pdu::TaskMgmtRequest(TaskMgmtRequest {
                immediate: true,
                function,
                lun,
                itt,
                referenced_task_tag: referenced,
                cmd_sn: self.window.cmd_sn,
                exp_stat_sn: self.window.exp_stat_sn,
                ref_cmd_sn,
                exp_data_sn: 0,
            }));
        let deadline = now + self.config.tmf_timeout;
        self.tmfs.insert(
            itt,
            Tmf {
                kind,
                victims,
                deadline,
            },
        );
    }
}
