//! The path checker: one task per device that watches every path and acts.
//!
//! - A path whose session lost its connection (TCP error, NOP-Out ping timeout) leaves
//!   service at once.
//! - A *silent* path is judged by the lack of progress on its own commands: commands in flight
//!   and nothing received for `stall`, while another path is in service to take them over,
//!   sends it an immediate ping; no answer within `probe_timeout` takes it out of service and
//!   drops its connection. So a silent cut costs about `stall` + `probe_timeout`, not the
//!   keep-alive's interval + timeout — also when the stalled command is the only one, as
//!   with a single `dd` writing through the device. A command that is merely slow (a long
//!   WRITE SAME on a busy array) costs a ping: the target answers it and the path stays. The
//!   only path left is never judged this way: failing it would help nothing, so its
//!   keep-alive decides.
//! - A failed path whose session logged in again (it retries on its own, with backoff) is
//!   reinstated once it answers TEST UNIT READY and passes the MTU probe ([`crate::mtu`]).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sanshim_blockdev::BlockDevice;
use tracing::{debug, warn};

use crate::alua::{self, Access};
use crate::device::Inner;
use crate::mtu;
use crate::path::{Path, State};

/// Runs until the device is dropped.
pub(crate) async fn run(device: Weak<Inner>) {
    let mut busy: Vec<Option<tokio::task::JoinHandle<()>>> = Vec::new();
    loop {
        let Some(inner) = device.upgrade() else {
            return;
        };
        busy.resize_with(inner.paths.len(), || None);
        let interval = inner.config.check_interval;
        for (path, job) in inner.paths.iter().zip(busy.iter_mut()) {
            if job.as_ref().is_some_and(|j| !j.is_finished()) {
                continue;
            }
            *job = check(&inner, path);
        }
        drop(inner);
        tokio::time::sleep(interval).await;
    }
}

/// Checks every path once before the device serves: a path that fails starts out of service
/// (the checker reinstates it later).
pub(crate) async fn first_checks(inner: &Arc<Inner>) {
    let checks = inner.paths.iter().map(|p| {
        let inner = Arc::clone(inner);
        let path = Arc::clone(p);
        tokio::spawn(async move {
            match admit(&path).await {
                Ok(access) => set_access(&inner, &path, access, "first check"),
                Err(why) => {
                    inner.path_failed(&path, &why);
                }
            }
        })
    });
    for check in checks.collect::<Vec<_>>() {
        let _ = check.await;
    }
}

/// Looks at one path; returns the job it started, if any.
fn check(inner: &Arc<Inner>, path: &Arc<Path>) -> Option<tokio::task::JoinHandle<()>> {
    let session = path.disk.session();
    let connected = session.is_connected();
    if connected && path.disk.take_alua_changed() {
        // The state of every group may have changed: look at every path again.
        return Some(spawn(inner, path, reread_alua));
    }
    match path.state() {
        State::Active if !connected => {
            let why = session.health().borrow().lost.map_or_else(
                || "connection lost".to_owned(),
                |r| format!("connection lost: {r}"),
            );
            inner.path_failed(path, &why);
            None
        }
        State::Active if stalled(inner, path) => Some(spawn(inner, path, probe_stalled)),
        State::Failed if path.reconnected() => Some(spawn(inner, path, reinstate)),
        State::Standby if connected && path.due_for_recheck() => {
            Some(spawn(inner, path, reinstate))
        }
        _ => None,
    }
}

/// Commands in flight and nothing received for `stall`, while another path is in service.
fn stalled(inner: &Inner, path: &Path) -> bool {
    let stall = inner.config.stall;
    if path.in_flight() == 0 || path.disk.session().idle_for() < stall {
        return false;
    }
    inner
        .paths
        .iter()
        .any(|p| p.index != path.index && p.is_active() && p.disk.session().is_connected())
}

fn spawn<F, Fut>(inner: &Arc<Inner>, path: &Arc<Path>, job: F) -> tokio::task::JoinHandle<()>
where
    F: FnOnce(Arc<Inner>, Arc<Path>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(job(Arc::clone(inner), Arc::clone(path)))
}

/// A stalled path gets one ping; without an answer it leaves service.
async fn probe_stalled(inner: Arc<Inner>, path: Arc<Path>) {
    let timeout = inner.config.probe_timeout;
    let session = path.disk.session();
    debug!(path = %path.name, idle = ?session.idle_for(), "path makes no progress; pinging it");
    if session.ping(0, timeout).await.is_err() && path.is_active() {
        let why = format!(
            "no progress for {:?} with commands in flight, and no answer to a ping within \
             {timeout:?}",
            session.idle_for()
        );
        inner.path_failed(&path, &why);
    }
}

/// After an ASYMMETRIC ACCESS STATE CHANGED: every path's state read again.
async fn reread_alua(inner: Arc<Inner>, _seen_on: Arc<Path>) {
    for path in &inner.paths {
        if !path.disk.session().is_connected() || path.state() == State::Failed {
            continue;
        }
        let access = alua::refresh(path).await;
        set_access(&inner, path, access, "ALUA state changed");
    }
}

/// Puts a connected path in or out of service as its ALUA access says.
fn set_access(inner: &Inner, path: &Path, access: Access, why: &str) {
    match (alua::apply(path, access), access) {
        (true, _) => inner.path_active(path, why),
        (false, Access::None(state)) => {
            let reason = format!("{why}: its target port group is {state}");
            path.set_state(State::Standby, &reason);
        }
        (false, Access::Io(_)) => {}
    }
}

/// A path back from a failure (or in standby): into service once it answers, passes the
/// MTU probe and its ALUA group carries I/O.
async fn reinstate(inner: Arc<Inner>, path: Arc<Path>) {
    match admit(&path).await {
        Ok(access) => {
            let why = match access {
                Access::Io(_) => "logged in again, TEST UNIT READY and MTU probe passed",
                Access::None(_) => "logged in again",
            };
            set_access(&inner, &path, access, why);
        }
        Err(why) => {
            debug!(path = %path.name, why, "path not reinstated yet");
            // Give it time before the next try; its session keeps logging in on its own.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Whether a connected path may carry I/O: TEST UNIT READY, the MTU probe, and its ALUA
/// access. A path whose TEST UNIT READY fails is still asked for its ALUA state: a port in
/// standby or unavailable may refuse TEST UNIT READY (SPC-5 §5.16.2.4.4 does not list it;
/// LIO answers NOT READY), and such a path belongs in standby, not among the failed ones.
async fn admit(path: &Path) -> Result<Access, String> {
    let started = Instant::now();
    let tur = tokio::time::timeout(Duration::from_secs(10), path.disk.probe()).await;
    match tur {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return match alua::refresh(path).await {
                Access::None(state) => Ok(Access::None(state)),
                Access::Io(_) => Err(format!("TEST UNIT READY failed: {e}")),
            };
        }
        Err(_) => return Err("TEST UNIT READY timed out".to_owned()),
    }
    mtu::probe(path).await?;
    let access = alua::refresh(path).await;
    if started.elapsed() > Duration::from_secs(2) {
        warn!(path = %path.name, took = ?started.elapsed(), "slow path check");
    }
    Ok(access)
}
