//! The tokio driver of a [`Session`]: the one task per session that owns the socket, the
//! timers and the re-login, and moves requests, PDUs and completions. It makes no protocol
//! decision; everything it learns goes to the session, and it does what
//! [`Session::poll_event`] says.
//!
//! It waits on one thing at a time only in a cancellation-safe way — socket readiness,
//! the request channel, the session's next deadline, a reconnect timer or a login — and then
//! reads or writes only what the socket takes at once ([`Link`]). So a peer that stops in the
//! middle of a PDU stalls nothing: pings go out and time out, commands time out, requests are
//! taken (until the send queue is full: then the channel applies back-pressure to callers).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::connection::Connection;
use super::handle::{Request, Shared, refused};
use super::link::Link;
use super::login::{LoggedIn, LoginPolicy, SessionError, login};
use super::reply::Reply;
use super::socket;
use crate::login::LoginConfig;
use crate::portal::Portal;
use crate::session::{Event, Session, SessionStart, TaskError, TaskId};

/// Bytes queued for the socket beyond which no new request is taken.
const SEND_QUEUE_LIMIT: usize = 8 << 20;
/// Requests taken from the channel at once.
const BATCH: usize = 64;

/// How to log in again.
pub(crate) struct Relogin {
    pub portal: Portal,
    pub config: LoginConfig,
    pub policy: LoginPolicy,
    /// `TCP_USER_TIMEOUT` for the session's sockets.
    pub user_timeout: Duration,
}

type LoginFuture = Pin<Box<dyn Future<Output = Result<LoggedIn, SessionError>> + Send>>;

/// What woke the driver.
enum Wake {
    Request(Option<Request>),
    Readable(std::io::Result<()>),
    Writable(std::io::Result<()>),
    Timer,
    Reconnect,
    LoggedIn(Result<LoggedIn, SessionError>),
}

struct Driver {
    session: Session,
    requests: mpsc::Receiver<Request>,
    requests_open: bool,
    waiters: HashMap<TaskId, Reply>,
    closers: Vec<oneshot::Sender<()>>,
    link: Option<Link>,
    reconnect_at: Option<Instant>,
    login: Option<LoginFuture>,
    relogin: Relogin,
    shared: Arc<Shared>,
    done: bool,
    /// The one timer of the session's deadlines, re-armed only when a deadline comes earlier
    /// than the one it waits for (a later one costs at most an early, harmless wake).
    timer: Pin<Box<tokio::time::Sleep>>,
    timer_at: Option<Instant>,
}

/// Runs the session until it has logged out (or its owners went away and it logged out).
pub(crate) async fn run(
    session: Session,
    connection: Connection,
    requests: mpsc::Receiver<Request>,
    relogin: Relogin,
    shared: Arc<Shared>,
) {
    let link = up(connection, &relogin, &shared);
    let mut driver = Driver {
        session,
        requests,
        requests_open: true,
        waiters: HashMap::new(),
        closers: Vec::new(),
        link: Some(link),
        reconnect_at: None,
        login: None,
        relogin,
        shared,
        done: false,
        timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        timer_at: None,
    };
    driver.run().await;
}

impl Driver {
    async fn run(&mut self) {
        loop {
            self.settle();
            if self.done {
                break;
            }
            let wake = self.wait().await;
            self.handle(wake);
        }
        for closer in self.closers.drain(..) {
            let _ = closer.send(());
        }
        for (_, waiter) in self.waiters.drain() {
            waiter.send(Err(TaskError::SessionClosed));
        }
        self.shared.connected.store(false, Ordering::Relaxed);
        self.shared.health.send_modify(|h| {
            h.connected = false;
            h.changes += 1;
        });
        debug!(portal = %self.shared.portal, "session driver finished");
    }

    /// Moves what the session produced: PDUs to the socket, completions to their waiters,
    /// events into connection changes.
    fn settle(&mut self) {
        loop {
            self.transmit();
            while let Some((id, result)) = self.session.poll_completion() {
                if let Some(waiter) = self.waiters.remove(&id) {
                    waiter.send(result);
                }
            }
            let Some(event) = self.session.poll_event() else {
                return;
            };
            match event {
                Event::Reconnect { reason, delay } => {
                    warn!(
                        portal = %self.shared.portal, target = %self.shared.target, %reason,
                        ?delay, "connection lost; logging in again"
                    );
                    self.link = None;
                    self.login = None;
                    self.reconnect_at = Some(Instant::now() + delay);
                    self.shared.connected.store(false, Ordering::Relaxed);
                    self.shared.health.send_modify(|h| {
                        h.connected = false;
                        h.changes += 1;
                        h.lost = Some(reason);
                    });
                }
                Event::LoggedOut => {
                    self.link = None;
                    self.done = true;
                }
            }
        }
    }

    /// Hands queued PDUs to the link and writes what the socket takes now.
    fn transmit(&mut self) {
        let Some(link) = self.link.as_mut() else {
            while self.session.poll_transmit().is_some() {}
            return;
        };
        while let Some(pdu) = self.session.poll_transmit() {
            link.push(&pdu);
        }
        if let Err(reason) = link.write_ready() {
            self.session.handle_connection_lost(reason, Instant::now());
        }
    }

    async fn wait(&mut self) -> Wake {
        let accepting = self.requests_open
            && self
                .link
                .as_ref()
                .is_none_or(|l| l.queued() < SEND_QUEUE_LIMIT);
        let want_write = self.link.as_ref().is_some_and(|l| l.queued() > 0);
        self.arm_timer();
        let Driver {
            requests,
            link,
            reconnect_at,
            login,
            timer,
            timer_at,
            ..
        } = self;
        // `biased`: fixed order, no random draw per wait. Nothing starves: the timer is
        // disarmed once it fires, reads stop at a budget, and every wake also takes the
        // requests already queued (`handle`).
        tokio::select! {
            biased;
            () = timer.as_mut(), if timer_at.is_some() => Wake::Timer,
            r = readable(link.as_ref()) => Wake::Readable(r),
            r = writable(link.as_ref(), want_write) => Wake::Writable(r),
            r = requests.recv(), if accepting => Wake::Request(r),
            () = sleep(*reconnect_at) => Wake::Reconnect,
            r = logging_in(login) => Wake::LoggedIn(r),
        }
    }

    /// Points the timer at the session's next deadline when that comes before the instant
    /// the timer is set for (or the timer is idle).
    fn arm_timer(&mut self) {
        let Some(at) = self.session.poll_timeout() else {
            self.timer_at = None;
            return;
        };
        if self.timer_at.is_none_or(|t| at < t) {
            self.timer.as_mut().reset(at.into());
            self.timer_at = Some(at);
        }
    }

    fn handle(&mut self, wake: Wake) {
        let now = Instant::now();
        match wake {
            Wake::Request(r) => {
                let more = r.is_some();
                self.handle_request(r, now);
                if more {
                    self.take_queued(now);
                }
                return;
            }
            Wake::Readable(Ok(())) => {
                if let Some(link) = self.link.as_mut() {
                    match link.read_ready(&mut self.session, now) {
                        Ok(0) => {}
                        Ok(_) => {
                            let since = now.saturating_duration_since(self.shared.epoch);
                            let ms = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
                            self.shared.last_rx.store(ms, Ordering::Relaxed);
                        }
                        Err(reason) => self.session.handle_connection_lost(reason, now),
                    }
                }
            }
            Wake::Writable(Ok(())) => self.transmit(),
            Wake::Readable(Err(_)) | Wake::Writable(Err(_)) => {
                self.session
                    .handle_connection_lost(crate::session::ConnectionFailure::Io, now);
            }
            Wake::Timer => {
                self.timer_at = None;
                self.session.handle_timeout(now);
            }
            Wake::Reconnect => {
                self.reconnect_at = None;
                let Relogin {
                    portal,
                    config,
                    policy,
                    ..
                } = &self.relogin;
                let (portal, config, policy) = (portal.clone(), config.clone(), policy.clone());
                self.login = Some(Box::pin(
                    async move { login(&portal, config, &policy).await },
                ));
            }
            Wake::LoggedIn(result) => self.logged_in(result, now),
        }
        // Requests that arrived meanwhile go out with whatever this wake produced, without
        // a turn of the loop of their own.
        if self.requests_open {
            self.take_queued(now);
        }
    }

    /// Takes the requests already queued behind the one that woke the driver, so that their
    /// commands go out together in one vectored write.
    fn take_queued(&mut self, now: Instant) {
        for _ in 0..BATCH {
            if self
                .link
                .as_ref()
                .is_some_and(|l| l.queued() >= SEND_QUEUE_LIMIT)
            {
                return;
            }
            match self.requests.try_recv() {
                Ok(r) => self.handle_request(Some(r), now),
                Err(_) => return,
            }
        }
    }

    fn handle_request(&mut self, request: Option<Request>, now: Instant) {
        let (submitted, reply) = match request {
            Some(Request::Command(command, reply)) => (self.session.submit(command, now), reply),
            Some(Request::Text(pairs, reply)) => {
                let pairs: Vec<(&str, &str)> = pairs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                (self.session.submit_text(&pairs, now), reply)
            }
            Some(Request::TaskManagement(tm, reply)) => {
                (self.session.submit_task_management(tm, now), reply)
            }
            Some(Request::Ping(len, timeout, reply)) => {
                (self.session.submit_ping(len, timeout, now), reply)
            }
            Some(Request::Drop(why)) => {
                warn!(portal = %self.shared.portal, reason = why, "dropping the connection");
                return self.session.drop_connection(why, now);
            }
            Some(Request::MaxSegment(mss)) => {
                info!(portal = %self.shared.portal, ?mss, "TCP maximum segment size changed");
                self.relogin.policy.max_segment = mss;
                return self
                    .session
                    .drop_connection("maximum segment size changed", now);
            }
            Some(Request::Close(closer)) => {
                self.closers.push(closer);
                return self.session.close(now);
            }
            None => {
                // Every handle is gone: log out.
                self.requests_open = false;
                return self.session.close(now);
            }
        };
        match submitted {
            Ok(id) => {
                self.waiters.insert(id, reply);
            }
            Err(e) => {
                reply.send(Err(refused(e)));
            }
        }
    }

    fn logged_in(&mut self, result: Result<LoggedIn, SessionError>, now: Instant) {
        self.login = None;
        match result {
            Ok(logged) => {
                let start = SessionStart::from_established(&logged.established);
                info!(portal = %logged.portal, target = %self.shared.target, "session re-established");
                self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                self.shared.connected.store(true, Ordering::Relaxed);
                let mss = self.relogin.policy.max_segment;
                self.shared.health.send_modify(|h| {
                    h.connected = true;
                    h.changes += 1;
                    h.max_segment = mss;
                });
                self.link = Some(up(logged.connection, &self.relogin, &self.shared));
                self.session.handle_connected(&start, now);
            }
            Err(e) => {
                warn!(portal = %self.relogin.portal, error = %e, "re-login failed");
                self.session.handle_login_failed(now);
            }
        }
    }
}

/// A logged-in connection, ready for the full feature phase.
fn up(connection: Connection, relogin: &Relogin, shared: &Shared) -> Link {
    let (stream, codec, leftover) = connection.into_parts();
    if let Err(e) = socket::configure(&stream, relogin.user_timeout) {
        debug!(error = %e, "cannot set socket options");
    }
    Link::new(stream, codec, leftover, Arc::clone(&shared.counters))
}

async fn readable(link: Option<&Link>) -> std::io::Result<()> {
    match link {
        Some(l) => l.stream().readable().await,
        None => std::future::pending().await,
    }
}

async fn writable(link: Option<&Link>, wanted: bool) -> std::io::Result<()> {
    match link {
        Some(l) if wanted => l.stream().writable().await,
        _ => std::future::pending().await,
    }
}

async fn sleep(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

async fn logging_in(login: &mut Option<LoginFuture>) -> Result<LoggedIn, SessionError> {
    match login {
        Some(f) => f.as_mut().await,
        None => std::future::pending().await,
    }
}
