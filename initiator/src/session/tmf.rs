//! Task management (RFC 7143 §11.5, §11.6; SAM-5 §7): a command past its timeout gets
//! ABORT TASK; if that fails, LOGICAL UNIT RESET; if that fails too, the connection is
//! dropped and the session rebuilt. Aborted commands are re-issued.

use std::time::Instant;

use tracing::warn;

use super::Session;
use super::types::ConnectionFailure;
use crate::wire::{
    Lun, Pdu, RESERVED_TAG, TaskMgmtRequest, TaskMgmtResponse, TmFunction, TmResponse,
};

/// An outstanding task management request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tmf {
    /// ABORT TASK of `task` (its ITT), or a reset of `lun`.
    pub kind: TmfKind,
    /// When we give up waiting for the answer.
    pub deadline: Instant,
}

/// What a request does.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TmfKind {
    /// ABORT TASK.
    Abort { task: u32, lun: Lun },
    /// LOGICAL UNIT RESET.
    LunReset { lun: Lun },
}

impl Session {
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
            if let Some(t) = self.tasks.in_flight.get_mut(&itt) {
                t.aborting = true;
            }
            let kind = TmfKind::Abort { task: itt, lun };
            self.send_tmf(TmFunction::ABORT_TASK, lun, itt, cmd_sn, kind, now);
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
            self.tmf_failed(itt, "task management request timed out", now);
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
        let Some(tmf) = self.tmfs.get(&r.itt).copied() else {
            return;
        };
        let ok = match tmf.kind {
            TmfKind::Abort { .. } => matches!(
                r.response,
                TmResponse::FUNCTION_COMPLETE | TmResponse::TASK_DOES_NOT_EXIST
            ),
            TmfKind::LunReset { .. } => r.response == TmResponse::FUNCTION_COMPLETE,
        };
        if !ok {
            warn!(response = ?r.response, "task management function failed");
            return self.tmf_failed(r.itt, "task management function refused", now);
        }
        self.tmfs.remove(&r.itt);
        match tmf.kind {
            // The target answers nothing more for the task: its ITT is free and it runs again.
            TmfKind::Abort { task, .. } => self.requeue_task(task),
            TmfKind::LunReset { lun } => {
                let on_lun: Vec<u32> = self
                    .tasks
                    .in_flight
                    .iter()
                    .filter(|(_, t)| t.command.lun == lun)
                    .map(|(&itt, _)| itt)
                    .collect();
                for itt in on_lun {
                    self.requeue_task(itt);
                }
            }
        }
    }

    /// A request failed (refused, rejected or timed out): ABORT TASK escalates to a LUN
    /// reset, a LUN reset to a new session.
    pub(super) fn tmf_failed(&mut self, itt: u32, what: &'static str, now: Instant) {
        let Some(tmf) = self.tmfs.remove(&itt) else {
            return;
        };
        match tmf.kind {
            TmfKind::Abort { lun, .. } => {
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
                    for t in self.tasks.in_flight.values_mut() {
                        if t.command.lun == lun {
                            t.aborting = true;
                        }
                    }
                    let kind = TmfKind::LunReset { lun };
                    let (f, tag) = (TmFunction::LOGICAL_UNIT_RESET, RESERVED_TAG);
                    self.send_tmf(f, lun, tag, self.window.cmd_sn, kind, now);
                }
            }
            TmfKind::LunReset { .. } => {
                let delay = std::time::Duration::ZERO;
                self.fail_connection(ConnectionFailure::TaskManagement(what), delay, now);
            }
        }
    }

    fn send_tmf(
        &mut self,
        function: TmFunction,
        lun: Lun,
        referenced: u32,
        ref_cmd_sn: u32,
        kind: TmfKind,
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
        self.tmfs.insert(itt, Tmf { kind, deadline });
    }

    fn requeue_task(&mut self, itt: u32) {
        if let Some(mut task) = self.tasks.in_flight.remove(&itt) {
            task.reissues += 1;
            self.tasks.requeue(task);
        }
    }
}
