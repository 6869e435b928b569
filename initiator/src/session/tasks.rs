//! The task table: SCSI commands waiting for the window (or for a retry's pause), commands in
//! flight by ITT, and ITT allocation that never hands out a tag still in use (RFC 7143
//! §11.2.1.8).

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::types::{Command, TaskId, Transfer};
use crate::scsi::{RetryCount, Sense};
use crate::wire::RESERVED_TAG;

/// One command, from submission to completion.
#[derive(Debug)]
pub(crate) struct Task {
    /// The caller's handle.
    pub id: TaskId,
    /// What to run (the read buffer lives in `command.transfer`).
    pub command: Command,
    /// How often it was re-issued (connection failures, aborts, TASK ABORTED).
    pub reissues: u32,
    /// SCSI retries so far (UNIT ATTENTION, BUSY, ...).
    pub retries: RetryCount,
    /// UNIT ATTENTIONs met on the way.
    pub unit_attentions: Vec<Sense>,
    /// When it joined the waiting queue (the window-closed timeout counts from here).
    pub queued: Instant,
    /// CmdSN of the current issue.
    pub cmd_sn: u32,
    /// When the current issue times out.
    pub deadline: Option<Instant>,
    /// Read: bytes received so far (always the contiguous prefix).
    pub received: u32,
    /// Read: DataSN of the next Data-In.
    pub next_data_sn: u32,
    /// Write: R2TSN of the next R2T.
    pub next_r2t_sn: u32,
    /// ABORT TASK (or a LUN reset) is under way for this issue.
    pub aborting: bool,
}

impl Task {
    /// A fresh task submitted at `now`.
    pub fn new(id: TaskId, command: Command, now: Instant) -> Task {
        Task {
            id,
            command,
            reissues: 0,
            retries: RetryCount::default(),
            unit_attentions: Vec::new(),
            queued: now,
            cmd_sn: 0,
            deadline: None,
            received: 0,
            next_data_sn: 0,
            next_r2t_sn: 0,
            aborting: false,
        }
    }

    /// Forgets the progress of the current issue, ready to be sent again.
    pub fn reset(&mut self) {
        self.deadline = None;
        self.received = 0;
        self.next_data_sn = 0;
        self.next_r2t_sn = 0;
        self.aborting = false;
    }

    /// Expected Data Transfer Length.
    pub fn expected_len(&self) -> u32 {
        u32::try_from(self.command.transfer.len()).unwrap_or(u32::MAX)
    }

    /// Whether this is a read.
    pub fn is_read(&self) -> bool {
        matches!(self.command.transfer, Transfer::Read(_))
    }
}

/// Waiting, pausing and in-flight tasks.
#[derive(Debug, Default)]
pub(crate) struct TaskTable {
    /// Not yet sent (or to be re-sent), in submission order.
    pub pending: VecDeque<Task>,
    /// Waiting out a retry's pause until the instant given.
    pub delayed: Vec<(Instant, Task)>,
    /// Sent and not finished, by ITT.
    pub in_flight: HashMap<u32, Task>,
    /// ITTs of the last commands a task management function aborted, newest last: a target
    /// may still answer them after the function's response (tgtd sends an R2T or a SCSI
    /// Response for them), and such a late answer is dropped, not a protocol violation.
    aborted: VecDeque<u32>,
    next_itt: u32,
    /// No task in flight times out before this (a lower bound kept as commands are sent and
    /// made exact by [`TaskTable::refresh_deadline`]), so the next deadline is known without
    /// a walk over every command in flight on each turn of the driver.
    earliest_deadline: Option<Instant>,
}

impl TaskTable {
    /// Puts a task back among the waiting ones, keeping submission order.
    pub fn requeue(&mut self, mut task: Task, now: Instant) {
        task.reset();
        task.queued = now;
        let at = self.pending.partition_point(|t| t.id < task.id);
        self.pending.insert(at, task);
    }

    /// Parks a task until `at`, then it waits for the window again.
    pub fn delay(&mut self, mut task: Task, at: Instant) {
        task.reset();
        self.delayed.push((at, task));
    }

    /// Moves the tasks whose pause has ended to the waiting queue.
    pub fn wake(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.delayed.len() {
            if self.delayed[i].0 <= now {
                let (_, task) = self.delayed.swap_remove(i);
                self.requeue(task, now);
            } else {
                i += 1;
            }
        }
    }

    /// When the earliest pause ends.
    pub fn next_wake(&self) -> Option<Instant> {
        self.delayed.iter().map(|(at, _)| *at).min()
    }

    /// Sets the deadline of a task about to be sent, keeping the lower bound.
    pub fn set_deadline(&mut self, task: &mut Task, deadline: Instant) {
        task.deadline = Some(deadline);
        self.earliest_deadline = Some(self.earliest_deadline.map_or(deadline, |d| d.min(deadline)));
    }

    /// A time no command in flight (and not being aborted) times out before: exact after
    /// [`TaskTable::refresh_deadline`], earlier (a harmless early wake) once commands finish.
    pub fn deadline_bound(&self) -> Option<Instant> {
        self.earliest_deadline
    }

    /// Makes the lower bound exact: the earliest deadline of a command in flight that is not
    /// being aborted.
    pub fn refresh_deadline(&mut self) {
        self.earliest_deadline = self
            .in_flight
            .values()
            .filter(|t| !t.aborting)
            .filter_map(|t| t.deadline)
            .min();
    }

    /// Takes every task that is not in flight: pausing and waiting ones.
    pub fn drain_waiting(&mut self) -> Vec<Task> {
        let mut tasks: Vec<Task> = self.pending.drain(..).collect();
        tasks.extend(self.delayed.drain(..).map(|(_, t)| t));
        tasks
    }

    /// Remembers that a task management function aborted the command with tag `itt` (the
    /// last [`ABORTED_KEPT`] of them are kept).
    pub fn note_aborted(&mut self, itt: u32) {
        if self.aborted.len() == ABORTED_KEPT {
            self.aborted.pop_front();
        }
        self.aborted.push_back(itt);
    }

    /// Whether `itt` is the tag of a command a task management function aborted lately.
    pub fn was_aborted(&self, itt: u32) -> bool {
        self.aborted.contains(&itt)
    }

    /// A tag neither reserved nor used by anything in `busy`, by a task in flight, nor by a
    /// command aborted lately (whose late answers must not be taken for a new command's).
    pub fn allocate_itt(&mut self, busy: impl Fn(u32) -> bool) -> u32 {
        loop {
            let itt = self.next_itt;
            self.next_itt = self.next_itt.wrapping_add(1);
            let used = self.in_flight.contains_key(&itt) || self.aborted.contains(&itt);
            if itt != RESERVED_TAG && !used && !busy(itt) {
                return itt;
            }
        }
    }

    /// Takes every task in flight (in submission order).
    pub fn drain_in_flight(&mut self) -> Vec<Task> {
        let mut tasks: Vec<Task> = self.in_flight.drain().map(|(_, t)| t).collect();
        tasks.sort_by_key(|t| t.id);
        tasks
    }

    /// The ITT of the task `id` in flight.
    pub fn itt_of(&self, id: TaskId) -> Option<u32> {
        self.in_flight
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(&itt, _)| itt)
    }
}

/// How many aborted commands' tags are remembered: more than a session has in flight.
const ABORTED_KEPT: usize = 1024;
