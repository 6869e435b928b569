//! Error recovery level 0 (RFC 7143 §7.1.5, §7.3, §6.3.5 session reinstatement): giving up a
//! connection, re-issuing its commands on the next one a bounded number of times with a
//! growing pause, failing what waited too long, and ending the session for good.

use std::time::{Duration, Instant};

use tracing::warn;

use super::types::{ConnectionFailure, Event, TaskError};
use super::{Session, State, Task};

impl Session {
    /// Gives up the connection: every running command goes back to the queue (or fails
    /// after too many re-issues) and the driver is told to reconnect after `delay`.
    pub(super) fn fail_connection(
        &mut self,
        reason: ConnectionFailure,
        delay: Duration,
        now: Instant,
    ) {
        match self.state {
            State::Disconnected { .. } | State::Closed => return,
            State::Closing { .. } | State::LoggingOut { by_owner: true, .. } => {
                return self.finish_close();
            }
            _ => {}
        }
        for task in self.tasks.drain_in_flight() {
            match self.config.fail_fast {
                true => self.fail(task.id, TaskError::ConnectionLost { in_flight: true }),
                false => self.reissue(task, Pace::Now, now),
            }
        }
        if self.config.fail_fast {
            for task in self.tasks.drain_waiting() {
                self.fail(task.id, TaskError::ConnectionLost { in_flight: false });
            }
        }
        for id in self.pings.drain() {
            self.fail(id, TaskError::ConnectionLost { in_flight: true });
        }
        // A fail-fast session's owner retries elsewhere; others start over, a few times.
        if let Some(id) = self.texts.connection_lost(!self.config.fail_fast) {
            let error = if self.config.fail_fast {
                TaskError::ConnectionLost { in_flight: true }
            } else {
                TaskError::TooManyRetries(super::text::MAX_RESTARTS)
            };
            self.fail(id, error);
        }
        let owners: Vec<_> = self.tmfs.drain().filter_map(|(_, t)| t.owner()).collect();
        for id in owners {
            self.fail(id, TaskError::SessionClosed);
        }
        self.transmit.clear();
        self.state = State::Disconnected {
            since: now,
            attempts: 0,
            expired: false,
        };
        self.events.push_back(Event::Reconnect { reason, delay });
    }

    /// Sends a task that did not complete again — at once, or after a pause growing with
    /// each re-issue — unless it was re-issued [`super::SessionConfig::max_reissues`] times
    /// already.
    pub(super) fn reissue(&mut self, mut task: Task, pace: Pace, now: Instant) {
        task.reissues += 1;
        if task.reissues > self.config.max_reissues {
            warn!(
                reissues = task.reissues - 1,
                "command keeps failing; giving up on it"
            );
            return self.fail(task.id, TaskError::TooManyRetries(task.reissues - 1));
        }
        match pace {
            Pace::Now => self.tasks.requeue(task, now),
            Pace::Backoff => {
                let at = now + reissue_pause(task.reissues);
                self.tasks.delay(task, at);
            }
        }
    }

    /// The session is over: nothing more runs, everything waiting fails.
    pub(super) fn finish_close(&mut self) {
        for task in self.tasks.drain_in_flight() {
            self.fail(task.id, TaskError::SessionClosed);
        }
        for task in self.tasks.drain_waiting() {
            self.fail(task.id, TaskError::SessionClosed);
        }
        for id in self.texts.drain_all() {
            self.fail(id, TaskError::SessionClosed);
        }
        let owners: Vec<_> = self.tmfs.drain().filter_map(|(_, t)| t.owner()).collect();
        for id in owners {
            self.fail(id, TaskError::SessionClosed);
        }
        self.transmit.clear();
        if self.state != State::Closed {
            self.state = State::Closed;
            self.events.push_back(Event::LoggedOut);
        }
    }

    /// No working session within the replacement timeout: what waits fails, and so does
    /// what comes until a login succeeds.
    pub(super) fn expire_waiting(&mut self) {
        let waiting = self.tasks.drain_waiting();
        if !waiting.is_empty() {
            warn!(
                commands = waiting.len(),
                "no working session within the replacement timeout; failing commands"
            );
        }
        for task in waiting {
            self.fail(task.id, TaskError::ReplacementTimeout);
        }
        for id in self.texts.drain_waiting() {
            self.fail(id, TaskError::ReplacementTimeout);
        }
    }

    /// Commands that waited a whole command timeout behind a closed window fail: a target
    /// that answers pings but never opens its window must not hold them forever.
    pub(super) fn window_timeouts(&mut self, now: Instant) {
        if self.window.is_open() {
            return;
        }
        let limit = self.config.command_timeout;
        if self.window_deadline().is_none_or(|d| now < d) {
            return;
        }
        let (expired, waiting) = std::mem::take(&mut self.tasks.pending)
            .into_iter()
            .partition::<Vec<Task>, _>(|t| now >= t.queued + limit);
        self.tasks.pending = waiting.into();
        warn!(
            commands = expired.len(),
            cmd_sn = self.window.cmd_sn,
            max_cmd_sn = self.window.max_cmd_sn,
            "commands waited the whole command timeout behind a closed command window"
        );
        for task in expired {
            self.fail(task.id, TaskError::Timeout);
        }
    }

    /// When the oldest command waiting behind a closed window times out.
    pub(super) fn window_deadline(&self) -> Option<Instant> {
        if self.window.is_open() {
            return None;
        }
        let oldest = self.tasks.pending.iter().map(|t| t.queued).min()?;
        Some(oldest + self.config.command_timeout)
    }
}

/// How soon a command that did not complete goes out again.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) enum Pace {
    /// As soon as the window (or the next connection) allows: the reconnect is the pause.
    Now,
    /// After a pause growing with each re-issue.
    Backoff,
}

/// Delay before login attempt `attempt` (1-based) after the first failed one.
pub(super) fn backoff(attempt: u32) -> Duration {
    let ms = 250u64.saturating_mul(1 << attempt.min(5));
    Duration::from_millis(ms).min(Duration::from_secs(4))
}

/// Pause before re-issue number `n` (1-based) of an aborted command: 100 ms doubling up to
/// 5 s, so a target that keeps aborting a command is not hammered with it.
fn reissue_pause(n: u32) -> Duration {
    let ms = 100u64.saturating_mul(1 << n.saturating_sub(1).min(6));
    Duration::from_millis(ms).min(Duration::from_secs(5))
}
