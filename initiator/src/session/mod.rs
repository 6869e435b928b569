//! The full feature phase of a session (RFC 7143 §3.2.2, §4.2, §11.3-§11.9, §11.14-§11.19,
//! error recovery level 0 of §7): many commands in flight inside the CmdSN window, reads with
//! Data-In sequencing checks, writes with immediate, unsolicited and R2T-driven data,
//! keep-alive pings, asynchronous messages, task management and session reinstatement.
//!
//! [`Session`] is sans-IO, driven like a quinn connection:
//!
//! ```text
//!  submit(Command) ─┐                                  ┌─► poll_transmit()   PDUs to send
//!  handle_pdu(Pdu) ─┤                                  ├─► poll_completion() (TaskId, result)
//!  begin_data_in /  ├─►  window · tasks · read · write ├─► poll_event()      Reconnect, LoggedOut
//!   finish_data_in  │     keepalive · tmf · recovery   └─► poll_timeout()    next deadline
//!  handle_timeout ──┤
//!  handle_connected / handle_connection_lost / handle_login_failed
//! ```
//!
//! Every input takes `now`; the session never reads a clock. A Data-In's data segment can
//! land straight in the command's buffer: [`Session::begin_data_in`] checks the header and
//! says where the data goes, [`Session::landing_buffer`] lends that slice, and
//! [`Session::finish_data_in`] accepts it once its digest (if any) checked out. Nothing the
//! target sends makes the session panic; a protocol violation ends the connection (ERL 0) and
//! every unfinished command is re-issued on the next one, so callers see an error only when no
//! working session exists for the replacement timeout.

mod keepalive;
mod read;
mod tasks;
mod tmf;
mod types;
mod window;
mod write;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use self::keepalive::Keepalive;
pub use self::read::Landing;
use self::tasks::{Task, TaskTable};
use self::tmf::Tmf;
pub use self::types::{
    Command, ConnectionFailure, Event, Response, SessionConfig, SessionStart, SubmitError,
    TaskError, TaskId, Transfer,
};
use self::window::{StatSnError, Window};
use crate::wire::{
    AsyncEvent, AsyncMessage, LogoutReason, LogoutRequest, LogoutResponse, Pdu, Reject,
    RejectReason,
};

/// Largest queue depth a session accepts.
pub const MAX_QUEUE_DEPTH: u32 = 512;

/// The negotiated values the engine works with.
#[derive(Clone, Copy, Debug)]
struct Params {
    /// The target's MaxRecvDataSegmentLength: our largest Data-Out / immediate segment.
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
    /// The target asked for a logout: no new commands; log out once the running ones end or
    /// at `deadline`.
    Draining { deadline: Instant },
    /// A Logout Request is out; `by_owner` when we are closing for good.
    LoggingOut {
        itt: u32,
        deadline: Instant,
        by_owner: bool,
    },
    /// Our owner closes: log out once the running commands end.
    Closing,
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
    tmfs: HashMap<u32, Tmf>,
    keepalive: Keepalive,
    transmit: VecDeque<Pdu>,
    completions: VecDeque<(TaskId, Result<Response, TaskError>)>,
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
            tmfs: HashMap::new(),
            keepalive: Keepalive::new(now),
            transmit: VecDeque::new(),
            completions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    // ----- A: input from the owner -----

    /// Queues a command; it is sent once the window and the queue depth allow.
    ///
    /// # Errors
    /// [`SubmitError`] for a transfer too large for iSCSI or a closing session.
    pub fn submit(&mut self, command: Command, now: Instant) -> Result<TaskId, SubmitError> {
        let len = command.transfer.len();
        if u32::try_from(len).is_err() {
            return Err(SubmitError::TooLarge(len));
        }
        if matches!(
            self.state,
            State::Closing | State::Closed | State::LoggingOut { by_owner: true, .. }
        ) {
            return Err(SubmitError::Closing);
        }
        let id = TaskId(self.next_task);
        self.next_task += 1;
        if let State::Disconnected { expired: true, .. } = self.state {
            self.completions
                .push_back((id, Err(TaskError::ReplacementTimeout)));
            return Ok(id);
        }
        self.tasks.pending.push_back(Task::new(id, command));
        self.pump(now);
        Ok(id)
    }

    /// Starts an orderly close: pending commands fail, running ones finish, then a Logout
    /// Request goes out; [`Event::LoggedOut`] follows its response.
    pub fn close(&mut self, now: Instant) {
        for task in std::mem::take(&mut self.tasks.pending) {
            self.completions
                .push_back((task.id, Err(TaskError::SessionClosed)));
        }
        match self.state {
            State::Connected | State::Draining { .. } => {
                self.state = State::Closing;
                self.pump(now);
            }
            State::Disconnected { .. } => {
                self.state = State::Closed;
                self.events.push_back(Event::LoggedOut);
            }
            State::LoggingOut { .. } | State::Closing | State::Closed => {}
        }
    }

    // ----- B: input from the driver -----

    /// A login (first or re-login with the same ISID) succeeded: commands flow again, and
    /// every unfinished command is re-issued.
    pub fn handle_connected(&mut self, start: &SessionStart, now: Instant) {
        let n = &start.negotiated;
        self.params = Params {
            max_xmit: n.max_xmit_data_segment_length.max(512),
            first_burst: n.first_burst_length,
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
        if self.state != State::Closed {
            self.state = State::Connected;
            self.pump(now);
        }
    }

    /// A (re-)login failed; a new [`Event::Reconnect`] follows with a longer delay.
    pub fn handle_login_failed(&mut self, now: Instant) {
        if let State::Disconnected { attempts, .. } = &mut self.state {
            *attempts += 1;
            let delay = backoff(*attempts);
            self.events.push_back(Event::Reconnect {
                reason: ConnectionFailure::Login,
                delay,
            });
        }
        self.handle_timeout(now);
    }

    /// The connection broke (closed, socket error, undecodable bytes).
    pub fn handle_connection_lost(&mut self, reason: ConnectionFailure, now: Instant) {
        match self.state {
            State::LoggingOut { by_owner: true, .. } | State::Closing => {
                self.state = State::Closed;
                self.events.push_back(Event::LoggedOut);
            }
            _ => {
                let delay = self.params.time2wait;
                self.fail_connection(reason, delay, now);
            }
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

    /// Runs the timers due at `now`: pings, command and task-management timeouts, the logout
    /// deadline and the replacement timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
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
                warn!("no working session within the replacement timeout; failing commands");
                let tasks: Vec<Task> = self.tasks.pending.drain(..).collect();
                for task in tasks {
                    self.completions
                        .push_back((task.id, Err(TaskError::ReplacementTimeout)));
                }
            }
            State::Disconnected { .. } | State::Closed => {}
            State::LoggingOut {
                deadline, by_owner, ..
            } if now >= deadline => {
                if by_owner {
                    self.state = State::Closed;
                    self.events.push_back(Event::LoggedOut);
                } else {
                    self.fail_connection(ConnectionFailure::TargetLogout, Duration::ZERO, now);
                }
            }
            State::Draining { deadline } if now >= deadline => self.send_logout(false, now),
            _ => {
                self.keepalive_timeout(now);
                self.tmf_timeouts(now);
                self.command_timeouts(now);
            }
        }
        self.pump(now);
    }

    // ----- C: output -----

    /// The next PDU to send.
    pub fn poll_transmit(&mut self) -> Option<Pdu> {
        self.transmit.pop_front()
    }

    /// The next finished command.
    pub fn poll_completion(&mut self) -> Option<(TaskId, Result<Response, TaskError>)> {
        self.completions.pop_front()
    }

    /// The next thing the driver must do.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Disconnected {
                since,
                expired: false,
                ..
            } => Some(since + self.config.replacement_timeout),
            State::Disconnected { .. } | State::Closed => None,
            State::LoggingOut { deadline, .. } => Some(deadline),
            State::Draining { deadline } => [Some(deadline), self.connected_timeout()]
                .into_iter()
                .flatten()
                .min(),
            State::Connected | State::Closing => self.connected_timeout(),
        }
    }

    // ----- D: state queries -----

    /// Commands waiting plus commands in flight.
    pub fn outstanding(&self) -> usize {
        self.tasks.pending.len() + self.tasks.in_flight.len()
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
            }
            State::Draining { .. } if self.tasks.in_flight.is_empty() => {
                self.send_logout(false, now);
            }
            State::Closing if self.tasks.in_flight.is_empty() => self.send_logout(true, now),
            _ => {}
        }
    }

    fn connected_timeout(&self) -> Option<Instant> {
        let tasks = self
            .tasks
            .in_flight
            .values()
            .filter(|t| !t.aborting)
            .filter_map(|t| t.deadline);
        let tmfs = self.tmfs.values().map(|t| t.deadline);
        tasks
            .chain(tmfs)
            .chain(self.keepalive.next_timeout(&self.config))
            .min()
    }

    fn send_logout(&mut self, by_owner: bool, now: Instant) {
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

    fn handle_logout_response(&mut self, l: LogoutResponse, now: Instant) {
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
            self.state = State::Closed;
            self.events.push_back(Event::LoggedOut);
        } else {
            let delay = Duration::from_secs(u64::from(l.time2wait));
            self.fail_connection(ConnectionFailure::TargetLogout, delay, now);
        }
    }

    fn handle_async(&mut self, a: AsyncMessage, now: Instant) {
        self.window.update(a.exp_cmd_sn, a.max_cmd_sn);
        if self.ack(a.stat_sn, now).is_err() {
            return;
        }
        let seconds = |v: u16| Duration::from_secs(u64::from(v));
        match a.event {
            AsyncEvent::LOGOUT_REQUEST => {
                info!(within = a.parameter3, "target requests a logout");
                if self.state == State::Connected {
                    let grace = seconds(a.parameter3).max(Duration::from_secs(1));
                    self.state = State::Draining {
                        deadline: now + grace,
                    };
                }
            }
            AsyncEvent::CONNECTION_DROP | AsyncEvent::SESSION_DROP => {
                warn!(event = ?a.event, time2wait = a.parameter2, "target drops the connection");
                self.fail_connection(ConnectionFailure::TargetDrop, seconds(a.parameter2), now);
            }
            AsyncEvent::NEGOTIATION_REQUEST => {
                warn!("target requests parameter renegotiation; keeping the negotiated values");
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

    fn handle_reject(&mut self, r: Reject, now: Instant) {
        self.window.update(r.exp_cmd_sn, r.max_cmd_sn);
        let itt = r
            .rejected_header()
            .map(|h| crate::wire::BasicHeader::from_array(h).itt());
        warn!(reason = ?r.reason, ?itt, "target rejected a PDU");
        if r.reason == RejectReason::DATA_DIGEST_ERROR {
            // Under ERL 0 the damaged data cannot be resent alone: start over on a new
            // connection, which re-issues the command.
            return self.protocol_error("target saw a data digest error in our data", now);
        }
        let Some(itt) = itt else { return };
        if let Some(task) = self.tasks.in_flight.remove(&itt) {
            self.completions
                .push_back((task.id, Err(TaskError::Rejected { reason: r.reason })));
        } else if self.tmfs.contains_key(&itt) {
            self.tmf_failed(itt, "task management request rejected", now);
        } else if self.keepalive.is_ping(itt) {
            self.keepalive.answered();
        }
    }

    /// Acknowledges a StatSN; a gap or stale number ends the connection.
    fn ack(&mut self, stat_sn: u32, now: Instant) -> Result<(), ()> {
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

    fn protocol_error(&mut self, what: &'static str, now: Instant) {
        warn!(
            error = what,
            "target protocol violation; dropping the connection"
        );
        self.fail_connection(ConnectionFailure::PeerMisbehaved(what), Duration::ZERO, now);
    }

    /// Gives up the connection: every running command goes back to the queue (or fails after
    /// too many re-issues) and the driver is told to reconnect after `delay`.
    fn fail_connection(&mut self, reason: ConnectionFailure, delay: Duration, now: Instant) {
        let since = match self.state {
            State::Disconnected { .. } | State::Closed => return,
            State::Closing | State::LoggingOut { by_owner: true, .. } => {
                self.state = State::Closed;
                self.events.push_back(Event::LoggedOut);
                for task in self.tasks.drain_in_flight() {
                    self.completions
                        .push_back((task.id, Err(TaskError::SessionClosed)));
                }
                return;
            }
            _ => now,
        };
        for mut task in self.tasks.drain_in_flight() {
            task.reissues += 1;
            if task.reissues > self.config.max_reissues {
                let err = TaskError::TooManyRetries(task.reissues);
                self.completions.push_back((task.id, Err(err)));
            } else {
                self.tasks.requeue(task);
            }
        }
        self.tmfs.clear();
        self.transmit.clear();
        self.state = State::Disconnected {
            since,
            attempts: 0,
            expired: false,
        };
        self.events.push_back(Event::Reconnect { reason, delay });
    }

    fn allocate_itt(&mut self) -> u32 {
        let (tmfs, keepalive) = (&self.tmfs, &self.keepalive);
        let logout = match self.state {
            State::LoggingOut { itt, .. } => Some(itt),
            _ => None,
        };
        self.tasks.allocate_itt(|itt| {
            tmfs.contains_key(&itt) || keepalive.is_ping(itt) || logout == Some(itt)
        })
    }
}

/// Delay before login attempt `attempt` (1-based) after the first failed one.
fn backoff(attempt: u32) -> Duration {
    let ms = 250u64.saturating_mul(1 << attempt.min(5));
    Duration::from_millis(ms).min(Duration::from_secs(4))
}
