//! The full feature phase of a session (RFC 7143 §3.2.2, §4.2, §11.3-§11.19, error recovery
//! level 0 of §7): the one engine every command runs on — I/O, inspection, SendTargets and
//! other text exchanges, task management and logout — with many commands in flight inside the
//! CmdSN window, reads with Data-In sequencing checks, writes with immediate, unsolicited and
//! R2T-driven data, keep-alive pings, asynchronous messages, SCSI retries and session
//! reinstatement.
//!
//! [`Session`] is sans-IO, driven like a quinn connection:
//!
//! ```text
//!  submit(Command) ──────┐                                 ┌─► poll_transmit()   PDUs to send
//!  submit_text(pairs) ───┤                                 ├─► poll_completion() (TaskId, Outcome)
//!  submit_task_management┤                                 ├─► poll_event()      Reconnect, LoggedOut
//!  close ────────────────┼─► window · tasks · read · write ├─► poll_timeout()    next deadline
//!  handle_pdu(Pdu) ──────┤   keepalive · text · tmf        │
//!  begin/finish_data_in ─┤   control · recovery            │
//!  handle_timeout ───────┤                                 │
//!  handle_progress ──────┤  (bytes arrived, PDU not whole yet)
//!  handle_connected / handle_connection_lost / handle_login_failed
//! ```
//!
//! Every input takes `now`; the session never reads a clock, and every wait it imposes has a
//! deadline it reports through [`Session::poll_timeout`]: command and task management
//! timeouts, pings, retry pauses, the window-closed timeout, the logout and close deadlines
//! and the replacement timeout. A Data-In's data segment lands straight in the command's
//! buffer: [`Session::begin_data_in`] checks the header and says where the data goes,
//! [`Session::landing_buffer`] lends that slice, and [`Session::finish_data_in`] accepts it
//! once its digest (if any) checked out. Nothing the target sends makes the session panic; a
//! protocol violation ends the connection (ERL 0) and every unfinished command is re-issued on
//! the next one, a bounded number of times, so callers see an error only when no working
//! session exists for the replacement timeout or a command keeps failing.

mod control;
mod keepalive;
mod ping;
mod read;
mod recovery;
mod tasks;
mod text;
mod tmf;
mod types;
mod window;
mod write;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tracing::debug;

use self::keepalive::Keepalive;
use self::ping::Pings;
pub use self::read::{DataInRejected, Landing};
use self::tasks::{Task, TaskTable};
use self::text::TextTable;
use self::tmf::Tmf;
pub use self::types::{
    Command, ConnectionFailure, Event, Outcome, Response, SessionConfig, SessionStart, SubmitError,
    TaskError, TaskId, TaskManagement, Transfer,
};
use self::window::Window;
use crate::wire::Pdu;

/// Largest queue depth a session accepts.
pub const MAX_QUEUE_DEPTH: u32 = 512;

/// The negotiated values the engine works with.
#[derive(Clone, Copy, Debug)]
struct Params {
    /// The target's MaxRecvDataSegmentLength: our largest Data-Out / immediate / text segment.
    max_xmit: u32,
    first_burst: u32,
    max_burst: u32,
    initial_r2t: bool,
    immediate_data: bool,
    time2wait: Duration,
}

/// Where the session stands with its connection.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum State {
    /// Commands flow.
    Connected,
    /// The target asked for a logout (or a renegotiation we cannot honour): no new commands;
    /// log out once the running ones end or at `deadline`.
    Draining { deadline: Instant },
    /// A Logout Request is out; `by_owner` when we are closing for good.
    LoggingOut {
        itt: u32,
        deadline: Instant,
        by_owner: bool,
    },
    /// Our owner closes: log out once the running commands end, or at `deadline`.
    Closing { deadline: Instant },
    /// No connection since `since`; commands wait, and fail once `since` +
    /// replacement timeout has passed (`expired`).
    Disconnected {
        since: Instant,
        attempts: u32,
        expired: bool,
    },
    /// Logged out for good.
    Closed,
}

/// The sans-IO full-feature-phase engine of one single-connection session.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    window: Window,
    params: Params,
    next_task: u64,
    tasks: TaskTable,
    texts: TextTable,
    tmfs: HashMap<u32, Tmf>,
    keepalive: Keepalive,
    pings: Pings,
    transmit: VecDeque<Pdu>,
    completions: VecDeque<(TaskId, Result<Outcome, TaskError>)>,
    events: VecDeque<Event>,
}

impl Session {
    /// A session without a connection yet; call [`Session::handle_connected`] once the first
    /// login succeeded. `config.queue_depth` is clamped to 1..=[`MAX_QUEUE_DEPTH`].
    pub fn new(mut config: SessionConfig, now: Instant) -> Session {
        config.queue_depth = config.queue_depth.clamp(1, MAX_QUEUE_DEPTH);
        Session {
            config,
            state: State::Disconnected {
                since: now,
                attempts: 0,
                expired: false,
            },
            window: Window {
                cmd_sn: 0,
                exp_cmd_sn: 0,
                max_cmd_sn: 0,
                exp_stat_sn: 0,
            },
            params: Params {
                max_xmit: crate::wire::DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH,
                first_burst: 65536,
                max_burst: 262_144,
                initial_r2t: true,
                immediate_data: false,
                time2wait: Duration::from_secs(2),
            },
            next_task: 0,
            tasks: TaskTable::default(),
            texts: TextTable::default(),
            tmfs: HashMap::new(),
            keepalive: Keepalive::new(now),
            pings: Pings::default(),
            transmit: VecDeque::new(),
            completions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    // ----- A: input from the owner -----

    /// Queues a SCSI command; it is sent once the window and the queue depth allow.
    ///
    /// # Errors
    /// [`SubmitError`] for a transfer too large for iSCSI or a closing session.
    pub fn submit(&mut self, command: Command, now: Instant) -> Result<TaskId, SubmitError> {
        let len = command.transfer.len();
        if u32::try_from(len).is_err() {
            return Err(SubmitError::TooLarge(len));
        }
        let id = self.admit()?;
        if let Some(error) = self.refusal() {
            self.fail(id, error);
            return Ok(id);
        }
        self.tasks.pending.push_back(Task::new(id, command, now));
        self.pump(now);
        Ok(id)
    }

    /// Starts an orderly close: waiting commands fail, running ones finish (for at most
    /// [`SessionConfig::close_timeout`]), then a Logout Request goes out; [`Event::LoggedOut`]
    /// follows its response, its deadline, or at once when no connection exists.
    pub fn close(&mut self, now: Instant) {
        for task in self.tasks.drain_waiting() {
            self.fail(task.id, TaskError::SessionClosed);
        }
        for id in self.texts.drain_waiting() {
            self.fail(id, TaskError::SessionClosed);
        }
        match self.state {
            State::Connected | State::Draining { .. } => {
                let deadline = now + self.config.close_timeout;
                self.state = State::Closing { deadline };
                self.pump(now);
            }
            // The target asked for this logout; its answer now ends the session for good.
            State::LoggingOut { itt, deadline, .. } => {
                self.state = State::LoggingOut {
                    itt,
                    deadline,
                    by_owner: true,
                };
            }
            State::Disconnected { .. } => self.finish_close(),
            State::Closing { .. } | State::Closed => {}
        }
    }

    // ----- B: input from the driver -----

    /// A login (first or re-login with the same ISID) succeeded: commands flow again, and
    /// every unfinished command is re-issued.
    pub fn handle_connected(&mut self, start: &SessionStart, now: Instant) {
        let n = &start.negotiated;
        self.params = Params {
            max_xmit: n.max_xmit_data_segment_length.max(512),
            first_burst: n.first_burst_length.min(n.max_burst_length),
            max_burst: n.max_burst_length.max(512),
            initial_r2t: n.initial_r2t,
            immediate_data: n.immediate_data,
            time2wait: Duration::from_secs(u64::from(n.default_time2wait)),
        };
        self.window = Window {
            cmd_sn: start.cmd_sn,
            exp_cmd_sn: start.exp_cmd_sn,
            max_cmd_sn: start.max_cmd_sn,
            exp_stat_sn: start.exp_stat_sn,
        };
        self.keepalive = Keepalive::new(now);
        self.tmfs.clear();
        self.transmit.clear();
        if let State::Disconnected { .. } = self.state {
            self.state = State::Connected;
            for task in &mut self.tasks.pending {
                task.queued = now;
            }
            self.pump(now);
        }
    }

    /// A (re-)login failed; a new [`Event::Reconnect`] follows with a longer delay.
    pub fn handle_login_failed(&mut self, now: Instant) {
        if let State::Disconnected { attempts, .. } = &mut self.state {
            *attempts += 1;
            let delay = recovery::backoff(*attempts);
            self.events.push_back(Event::Reconnect {
                reason: ConnectionFailure::Login,
                delay,
            });
        }
        self.handle_timeout(now);
    }

    /// The owner gives the connection up (`why` is logged and reported): as a lost
    /// connection, then a new login.
    pub fn drop_connection(&mut self, why: &'static str, now: Instant) {
        if self.is_connected() {
            self.fail_connection(ConnectionFailure::Dropped(why), Duration::ZERO, now);
        }
    }

    /// The connection broke (closed, socket error, undecodable bytes).
    pub fn handle_connection_lost(&mut self, reason: ConnectionFailure, now: Instant) {
        match self.state {
            State::LoggingOut { by_owner: true, .. } | State::Closing { .. } => {
                self.finish_close();
            }
            _ => {
                let delay = self.params.time2wait;
                self.fail_connection(reason, delay, now);
            }
        }
    }

    /// Bytes of a PDU arrived that do not complete it yet: the connection is alive.
    pub fn handle_progress(&mut self, now: Instant) {
        if self.is_connected() {
            self.keepalive.received(now);
        }
    }

    /// Consumes one PDU from the target. Data-In may come here with its data segment (the
    /// segment is copied into the command's buffer) or go through
    /// [`Session::begin_data_in`] to land without a copy.
    pub fn handle_pdu(&mut self, pdu: Pdu, now: Instant) {
        if !self.is_connected() {
            return;
        }
        self.keepalive.received(now);
        match pdu {
            Pdu::DataIn(d) => self.handle_data_in(d, now),
            Pdu::ScsiResponse(r) => self.handle_scsi_response(r, now),
            Pdu::R2t(r) => self.handle_r2t(r, now),
            Pdu::NopIn(n) => self.handle_nop_in(n, now),
            Pdu::TaskMgmtResponse(t) => self.handle_tmf_response(t, now),
            Pdu::TextResponse(t) => self.handle_text_response(t, now),
            Pdu::AsyncMessage(a) => self.handle_async(a, now),
            Pdu::Reject(r) => self.handle_reject(r, now),
            Pdu::LogoutResponse(l) => self.handle_logout_response(l, now),
            other => {
                debug!(opcode = ?other.opcode(), "unexpected PDU in full feature phase");
                self.protocol_error("unexpected PDU type in full feature phase", now);
            }
        }
        self.pump(now);
    }

    /// Runs the timers due at `now`: pings, command, text and task-management timeouts,
    /// retry pauses, the window-closed timeout, the logout and close deadlines and the
    /// replacement timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tasks.wake(now);
        match self.state {
            State::Disconnected {
                since,
                attempts,
                expired: false,
            } if now >= since + self.config.replacement_timeout => {
                self.state = State::Disconnected {
                    since,
                    attempts,
                    expired: true,
                };
                self.expire_waiting();
            }
            State::Disconnected { expired: true, .. } => self.expire_waiting(),
            State::Disconnected { .. } | State::Closed => {}
            State::LoggingOut {
                deadline, by_owner, ..
            } if now >= deadline => {
                if by_owner {
                    self.finish_close();
                } else {
                    self.fail_connection(ConnectionFailure::TargetLogout, Duration::ZERO, now);
                }
            }
            State::Draining { deadline } if now >= deadline => self.send_logout(false, now),
            State::Closing { deadline } if now >= deadline => {
                tracing::warn!(
                    running = self.tasks.in_flight.len(),
                    "commands still running at the close deadline; logging out regardless"
                );
                self.send_logout(true, now);
            }
            _ => {
                self.keepalive_timeout(now);
                self.tmf_timeouts(now);
                self.command_timeouts(now);
                self.text_timeouts(now);
                self.ping_timeouts(now);
                self.window_timeouts(now);
            }
        }
        self.tasks.refresh_deadline();
        self.pump(now);
    }

    // ----- C: output -----

    /// The next PDU to send.
    pub fn poll_transmit(&mut self) -> Option<Pdu> {
        self.transmit.pop_front()
    }

    /// The next finished request.
    pub fn poll_completion(&mut self) -> Option<(TaskId, Result<Outcome, TaskError>)> {
        self.completions.pop_front()
    }

    /// The next thing the driver must do.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let state = match self.state {
            State::Disconnected {
                since,
                expired: false,
                ..
            } => Some(since + self.config.replacement_timeout),
            State::Disconnected { .. } | State::Closed => None,
            State::LoggingOut { deadline, .. } => Some(deadline),
            State::Draining { deadline } | State::Closing { deadline } => {
                [Some(deadline), self.connected_timeout()]
                    .into_iter()
                    .flatten()
                    .min()
            }
            State::Connected => self.connected_timeout(),
        };
        [state, self.tasks.next_wake()].into_iter().flatten().min()
    }

    // ----- D: state queries -----

    /// Commands waiting plus commands in flight.
    pub fn outstanding(&self) -> usize {
        self.tasks.pending.len() + self.tasks.delayed.len() + self.tasks.in_flight.len()
    }

    /// Commands in flight on the connection.
    pub fn in_flight(&self) -> usize {
        self.tasks.in_flight.len()
    }

    /// Whether a connection carries the session now.
    pub fn is_connected(&self) -> bool {
        !matches!(self.state, State::Disconnected { .. } | State::Closed)
    }

    /// Whether the session logged out for good.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The negotiated MaxBurstLength (bytes), for callers sizing requests.
    pub fn max_burst_length(&self) -> u32 {
        self.params.max_burst
    }

    // ----- internals -----

    /// Hands out the next task id, unless the session is closing.
    fn admit(&mut self) -> Result<TaskId, SubmitError> {
        if matches!(
            self.state,
            State::Closing { .. } | State::Closed | State::LoggingOut { by_owner: true, .. }
        ) {
            return Err(SubmitError::Closing);
        }
        let id = TaskId(self.next_task);
        self.next_task += 1;
        Ok(id)
    }

    /// Why a new request fails at once: no working session for the replacement timeout, or
    /// no connection on a fail-fast session.
    fn refusal(&self) -> Option<TaskError> {
        match self.state {
            State::Disconnected { expired: true, .. } => Some(TaskError::ReplacementTimeout),
            State::Disconnected { .. } if self.config.fail_fast => {
                Some(TaskError::ConnectionLost { in_flight: false })
            }
            _ => None,
        }
    }

    fn fail(&mut self, id: TaskId, error: TaskError) {
        self.completions.push_back((id, Err(error)));
    }

    /// Sends waiting commands while the window and queue depth allow; starts the logout of
    /// a draining or closing session once nothing runs.
    fn pump(&mut self, now: Instant) {
        match self.state {
            State::Connected => {
                while self.tasks.in_flight.len() < self.config.queue_depth as usize
                    && self.window.is_open()
                {
                    let Some(task) = self.tasks.pending.pop_front() else {
                        break;
                    };
                    self.send_command(task, now);
                }
                self.pump_texts(now);
            }
            State::Draining { .. } if self.is_idle() => self.send_logout(false, now),
            State::Closing { .. } if self.is_idle() => self.send_logout(true, now),
            _ => {}
        }
    }

    /// Nothing runs on the connection that a logout would cut short.
    fn is_idle(&self) -> bool {
        self.tasks.in_flight.is_empty() && !self.texts.is_active() && self.tmfs.is_empty()
    }

    fn connected_timeout(&self) -> Option<Instant> {
        let tmfs = self.tmfs.values().map(|t| t.deadline);
        self.tasks
            .deadline_bound()
            .into_iter()
            .chain(tmfs)
            .chain(self.keepalive.next_timeout(&self.config))
            .chain(self.texts.deadline())
            .chain(self.pings.deadline())
            .chain(self.window_deadline())
            .min()
    }

    fn allocate_itt(&mut self) -> u32 {
        let (tmfs, keepalive, texts, pings) =
            (&self.tmfs, &self.keepalive, &self.texts, &self.pings);
        let logout = match self.state {
            State::LoggingOut { itt, .. } => Some(itt),
            _ => None,
        };
        self.tasks.allocate_itt(|itt| {
            tmfs.contains_key(&itt)
                || keepalive.is_ping(itt)
                || texts.uses_itt(itt)
                || pings.uses_itt(itt)
                || logout == Some(itt)
        })
    }
}
