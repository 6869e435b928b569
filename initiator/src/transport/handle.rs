//! The one way to use a session: [`open`] logs in and starts its driver, and a cloneable
//! [`SessionHandle`] submits SCSI commands, text exchanges (SendTargets) and task management
//! functions to it, from any number of tasks at once, and logs it out.
//!
//! ```text
//!  SessionHandle::command ─┐ bounded channel           ┌─► Session (sans-IO)
//!  SessionHandle::text ────┼──────────────► driver ─────┤
//!  SessionHandle::task_management          (one task)   └─► socket (readiness, no blocking read)
//!  SessionHandle::close ───┘      ◄── oneshot per request
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::driver::{self, Relogin};
use super::link::Counters;
use super::login::{LoginPolicy, SessionError, login};
use super::reply::{Reply, ReplyPool, Waiting};
use super::socket;
use crate::login::{Established, LoginConfig};
use crate::portal::Portal;
use crate::session::{
    Command, ConnectionFailure, Outcome, Response, Session, SessionConfig, SessionStart,
    SubmitError, TaskError, TaskManagement,
};
use crate::wire::TmResponse;

/// Requests a handle may have queued for the driver before senders wait: the driver stops
/// taking requests while its socket's send queue is full, so this bounds memory end to end.
const CHANNEL_DEPTH: usize = 1024;

/// What a handle asks the driver for.
pub(crate) enum Request {
    /// Run a SCSI command.
    Command(Command, Reply),
    /// Run a text exchange.
    Text(Vec<(String, String)>, Reply),
    /// Run a task management function.
    TaskManagement(TaskManagement, Reply),
    /// Send a NOP-Out ping of this many bytes, answered within this time.
    Ping(usize, Duration, Reply),
    /// Give the connection up (the session logs in again).
    Drop(&'static str),
    /// Clamp the TCP maximum segment size of the session's next connections (or stop
    /// clamping), then log in again.
    MaxSegment(Option<u32>),
    /// Log out and stop.
    Close(oneshot::Sender<()>),
}

/// What every handle and the driver share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub portal: Portal,
    pub target: String,
    pub established: Established,
    pub reconnects: AtomicU64,
    pub connected: AtomicBool,
    pub close_wait: Duration,
    pub replies: Arc<ReplyPool>,
    pub counters: Arc<Counters>,
    /// When the session started: the origin of `last_rx`.
    pub epoch: Instant,
    /// Milliseconds after `epoch` when bytes last arrived.
    pub last_rx: AtomicU64,
    pub health: watch::Sender<Health>,
}

/// Whether a session's connection is up, published on every change.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Health {
    /// A connection carries the session.
    pub connected: bool,
    /// Changes so far (each connect and each loss counts one).
    pub changes: u64,
    /// Why the last connection ended, when it did.
    pub lost: Option<ConnectionFailure>,
    /// The TCP maximum segment size the current connection was made with, if clamped.
    pub max_segment: Option<u32>,
}

/// What a session's connections moved so far.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Stats {
    /// Data-In payload bytes the kernel read straight into the commands' buffers.
    pub landed_bytes: u64,
    /// Data-In payload bytes copied in userspace on their way to the commands' buffers.
    pub copied_bytes: u64,
    /// Times the session was re-established after losing its connection.
    pub reconnects: u64,
}

/// A handle on a running session. Clones share the session; when the last one is dropped
/// the session logs out.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    requests: mpsc::Sender<Request>,
    shared: Arc<Shared>,
}

/// A command submitted with [`SessionHandle::start`]; await [`PendingCommand::finish`].
#[derive(Debug)]
pub struct PendingCommand(Waiting);

/// Logs in to `portal` with `config` (a normal or a discovery session) and starts the
/// session's driver; the session re-logs in on its own after a connection failure.
///
/// # Errors
/// [`SessionError`] when the portal is unreachable or the login fails.
pub async fn open(
    portal: &Portal,
    config: LoginConfig,
    policy: &LoginPolicy,
    session: SessionConfig,
) -> Result<SessionHandle, SessionError> {
    let logged = login(portal, config.clone(), policy).await?;
    let now = Instant::now();
    let start = SessionStart::from_established(&logged.established);
    let mut engine = Session::new(session, now);
    engine.handle_connected(&start, now);
    let target = config
        .target_name
        .clone()
        .unwrap_or_else(|| "discovery".to_owned());
    let shared = Arc::new(Shared {
        portal: portal.clone(),
        target,
        established: logged.established.clone(),
        reconnects: AtomicU64::new(0),
        connected: AtomicBool::new(true),
        close_wait: session.close_timeout + session.tmf_timeout + Duration::from_secs(2),
        replies: Arc::new(ReplyPool::default()),
        counters: Arc::new(Counters::default()),
        epoch: now,
        last_rx: AtomicU64::new(0),
        health: watch::Sender::new(Health {
            connected: true,
            changes: 1,
            lost: None,
            max_segment: policy.max_segment,
        }),
    });
    // Re-logins reinstate the session: same ISID, TSIH 0 (RFC 7143 §6.3.5), and wait for
    // a busy target less than a first login does (the replacement timeout bounds them).
    let mut relogin_config = config;
    relogin_config.tsih = 0;
    // A redirection applies to one login (RFC 7143 §11.13.5: "moved temporarily"): log in
    // again where the user pointed, and follow the target's redirection again if it answers
    // with one.
    let relogin = Relogin {
        portal: portal.clone(),
        config: relogin_config,
        policy: LoginPolicy {
            busy_retries: 0,
            connect_timeout: policy.connect_timeout.min(Duration::from_secs(3)),
            response_timeout: policy.response_timeout.min(Duration::from_secs(5)),
            ..policy.clone()
        },
        user_timeout: socket::user_timeout(session.noop_interval, session.noop_timeout),
    };
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    tokio::spawn(driver::run(
        engine,
        logged.connection,
        rx,
        relogin,
        shared.clone(),
    ));
    Ok(SessionHandle {
        requests: tx,
        shared,
    })
}

impl SessionHandle {
    /// Runs a SCSI command and waits for its outcome. A SCSI error status is not an error
    /// here but part of the [`Response`]; retries the command's policy allows have been
    /// made.
    ///
    /// # Errors
    /// [`TaskError`] when the command could not be completed at all.
    pub async fn command(&self, command: Command) -> Result<Response, TaskError> {
        self.start(command).await?.finish().await
    }

    /// Submits a SCSI command without waiting for it, so several can be in flight from one
    /// caller.
    ///
    /// # Errors
    /// [`TaskError::SessionClosed`] when the session has ended.
    pub async fn start(&self, command: Command) -> Result<PendingCommand, TaskError> {
        let (reply, waiting) = self.shared.replies.pair();
        self.send(Request::Command(command, reply)).await?;
        Ok(PendingCommand(waiting))
    }

    /// Runs a text exchange (e.g. `[("SendTargets", "All")]`) and returns every key=value
    /// pair of the answer.
    ///
    /// # Errors
    /// [`TaskError`] when the exchange failed or the answer was malformed.
    pub async fn text(&self, pairs: &[(&str, &str)]) -> Result<Vec<(String, String)>, TaskError> {
        let owned = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let (reply, waiting) = self.shared.replies.pair();
        self.send(Request::Text(owned, reply)).await?;
        match waiting.await? {
            Outcome::Text(pairs) => Ok(pairs),
            _ => Err(TaskError::Text("unexpected outcome for a text exchange")),
        }
    }

    /// Runs a task management function and returns the target's response.
    ///
    /// # Errors
    /// [`TaskError`] when the request could not be sent or went unanswered.
    pub async fn task_management(&self, tm: TaskManagement) -> Result<TmResponse, TaskError> {
        let (reply, waiting) = self.shared.replies.pair();
        self.send(Request::TaskManagement(tm, reply)).await?;
        match waiting.await? {
            Outcome::TaskManagement(r) => Ok(r),
            _ => Err(TaskError::Text("unexpected outcome for task management")),
        }
    }

    /// Sends a NOP-Out ping carrying `len` bytes and waits for its echo, at most `timeout`;
    /// returns how long the round trip took.
    ///
    /// # Errors
    /// [`TaskError::Timeout`] when no echo came, [`TaskError::Refused`] for a `len` above
    /// the target's MaxRecvDataSegmentLength, [`TaskError::ConnectionLost`] without a
    /// connection, or an echo of another length as [`TaskError::Text`].
    pub async fn ping(&self, len: usize, timeout: Duration) -> Result<Duration, TaskError> {
        let started = Instant::now();
        let (reply, waiting) = self.shared.replies.pair();
        self.send(Request::Ping(len, timeout, reply)).await?;
        match waiting.await? {
            Outcome::Pong(n) if n == len => Ok(started.elapsed()),
            Outcome::Pong(_) => Err(TaskError::Text("the target echoed another length")),
            _ => Err(TaskError::Text("unexpected outcome for a ping")),
        }
    }

    /// Gives the connection up (`why` is logged): commands in flight end as after a lost
    /// connection, and the session logs in again.
    pub async fn drop_connection(&self, why: &'static str) {
        let _ = self.send(Request::Drop(why)).await;
    }

    /// Clamps the TCP maximum segment size of the session's connections to `mss` (`None`:
    /// no clamp) and logs in again with it.
    pub async fn set_max_segment(&self, mss: Option<u32>) {
        let _ = self.send(Request::MaxSegment(mss)).await;
    }

    /// The connection's state, and a way to wait for its next change.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.shared.health.subscribe()
    }

    /// How long since bytes last arrived from the target.
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.shared.last_rx.load(Ordering::Relaxed));
        self.shared.epoch.elapsed().saturating_sub(last)
    }

    /// Logs the session out: waiting commands fail, running ones finish (within the
    /// session's close timeout), then the Logout. Returns once the driver has stopped, or
    /// after the close timeout plus the logout's own, whichever comes first.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.requests.send(Request::Close(tx)).await.is_err() {
            return;
        }
        if tokio::time::timeout(self.shared.close_wait, rx)
            .await
            .is_err()
        {
            tracing::warn!(portal = %self.shared.portal, "logout did not finish in time");
        }
    }

    /// The portal the session was opened at (a login redirection may have taken the
    /// connection elsewhere).
    pub fn portal(&self) -> &Portal {
        &self.shared.portal
    }

    /// The target's name ("discovery" for a discovery session).
    pub fn target(&self) -> &str {
        &self.shared.target
    }

    /// What the first login established (negotiated parameters, TSIH, CHAP).
    pub fn established(&self) -> &Established {
        &self.shared.established
    }

    /// How many times the session was re-established after losing its connection.
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }

    /// What the session's connections moved so far.
    pub fn stats(&self) -> Stats {
        Stats {
            landed_bytes: self.shared.counters.landed.load(Ordering::Relaxed),
            copied_bytes: self.shared.counters.staged.load(Ordering::Relaxed),
            reconnects: self.reconnects(),
        }
    }

    /// Whether a connection carries the session now.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    async fn send(&self, request: Request) -> Result<(), TaskError> {
        self.requests
            .send(request)
            .await
            .map_err(|_| TaskError::SessionClosed)
    }
}

impl PendingCommand {
    /// Waits for the command's outcome.
    ///
    /// # Errors
    /// As [`SessionHandle::command`].
    pub async fn finish(self) -> Result<Response, TaskError> {
        match self.0.await? {
            Outcome::Scsi(r) => Ok(r),
            _ => Err(TaskError::Text("unexpected outcome for a SCSI command")),
        }
    }
}

/// The error a submission refused by the session completes with.
pub(crate) fn refused(e: SubmitError) -> TaskError {
    match e {
        SubmitError::Closing => TaskError::SessionClosed,
        other => TaskError::Refused(other),
    }
}
