//! [`Multipath`]: the [`BlockDevice`] over every path, with failover.
//!
//! A request goes to a path the selector picks among the active paths of the best ALUA rank.
//! When it fails with a path error ([`BlockError::is_path_failure`]) the path is taken out of
//! service (its connection dropped, so that the old attempt's connection is gone) and the
//! request goes to another path. A path whose target port refuses a command for its ALUA
//! state ([`ErrorKind::PortUnavailable`]: standby, unavailable, transitioning) goes to standby
//! instead, keeping its connection, until the checker reads its group's state again; the
//! request goes to another path. A SCSI error that is not the path's (medium error, out of
//! range, read-only, out of space, a LU no longer presented) goes to the caller as it is. With no path left, requests wait for one for
//! the no-path-retry time, then fail; the caller (the NBD server) stays connected throughout.
//!
//! # Ghost writes
//! A write that failed on a path with the command in flight ([`ErrorKind::PathFailure`]) may
//! still be carried out by the target later — after the same blocks were written again
//! through another path — and silently undo that newer write. So before such a write is
//! re-driven, a LOGICAL UNIT RESET goes to the LU through the path that will carry it: SAM-5
//! makes the reset abort every task in the LU's task set, whichever I_T nexus it came from, and
//! answer only once they are gone. One reset covers every write that failed up to the moment
//! it was sent (a generation count). Writes that never reached the target
//! ([`ErrorKind::PathDown`]) and reads need none. The commands the reset aborts on the path
//! that sent it are re-issued by that session; on a third path they time out and are
//! re-issued (ABORT TASK finds them gone), so with more than two paths a write failover can
//! cost the others a command timeout. The reset leaves a reset unit attention on every other
//! I_T nexus; each path's disk is told beforehand
//! ([`ScsiDisk::expect_reset_attention`]), so that a SYNCHRONIZE CACHE meeting it is sent
//! again instead of reporting a possible loss of cached writes.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sanshim_blockdev::{BlockDevice, BlockError, ErrorKind, Geometry};
use sanshim_initiator::disk::ScsiDisk;
use sanshim_initiator::session::TaskManagement;
use sanshim_initiator::wire::{TmFunction, TmResponse};
use tokio::sync::{Mutex, Notify};
use tracing::{info, warn};

use crate::identity::{GroupError, identity};
use crate::path::{Path, PathStats, State};
use crate::selector::{Candidate, Policy};
use crate::{Config, NoPathRetry, checker};

/// How long after our own LOGICAL UNIT RESET its unit attention is taken for ours.
const OWN_RESET_WINDOW: Duration = Duration::from_secs(60);

/// Paths a device takes at most.
pub const MAX_PATHS: usize = 16;

/// A block device over several paths to one LU.
#[derive(Debug)]
pub struct Multipath {
    inner: Arc<Inner>,
    monitor: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) paths: Vec<Arc<Path>>,
    pub(crate) config: Config,
    geometry: Geometry,
    turn: AtomicU64,
    /// Path failures so far: the generation a ghost-write barrier must cover.
    failures: AtomicU64,
    /// The failure generation the last LUN reset covered.
    barrier: Mutex<u64>,
    /// Woken when a path goes into service.
    pub(crate) usable: Notify,
    /// The LU's identity ([`crate::identity::identity`]).
    identity: String,
}

impl Multipath {
    /// Groups `paths` (a name and an opened disk each) into one device, after checking that
    /// they reach one LU (identity and shape), and starts the path checker. Every path starts
    /// in service unless its first check fails. Must run inside a tokio runtime.
    ///
    /// # Errors
    /// [`GroupError`] naming the paths that differ.
    pub async fn new(
        paths: Vec<(String, ScsiDisk)>,
        config: Config,
    ) -> Result<Multipath, GroupError> {
        let (first_name, first) = paths.first().ok_or(GroupError::NoPaths)?;
        let want = identity(first.report()).ok_or_else(|| GroupError::NoIdentity {
            path: 1,
            name: first_name.clone(),
        })?;
        let g0 = first.geometry().clone();
        for (i, (name, disk)) in paths.iter().enumerate().skip(1).take(MAX_PATHS) {
            let got = identity(disk.report()).ok_or_else(|| GroupError::NoIdentity {
                path: i + 1,
                name: name.clone(),
            })?;
            if got != want {
                return Err(GroupError::DifferentLu {
                    path: i + 1,
                    name: name.clone(),
                    identity: got,
                    first_name: first_name.clone(),
                    first: want,
                });
            }
            let g = disk.geometry();
            if (g.blocks, g.block_size) != (g0.blocks, g0.block_size) {
                return Err(GroupError::DifferentShape {
                    path: i + 1,
                    name: name.clone(),
                    blocks: g.blocks,
                    block_size: g.block_size,
                    first_blocks: g0.blocks,
                    first_block_size: g0.block_size,
                });
            }
        }
        let geometry = combined_geometry(paths.iter().map(|(_, d)| d.geometry()));
        let paths: Vec<Arc<Path>> = paths
            .into_iter()
            .take(MAX_PATHS)
            .enumerate()
            .map(|(i, (name, disk))| Arc::new(Path::new(i, name, disk)))
            .collect();
        info!(paths = paths.len(), identity = %want, policy = ?config.policy, "multipath device");
        let inner = Arc::new(Inner {
            paths,
            config,
            geometry,
            turn: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            barrier: Mutex::new(0),
            usable: Notify::new(),
            identity: want,
        });
        checker::first_checks(&inner).await;
        let monitor = tokio::spawn(checker::run(Arc::downgrade(&inner)));
        Ok(Multipath { inner, monitor })
    }

    /// The LU's identity, as the paths were grouped by (e.g. `naa.6001405...`).
    pub fn identity(&self) -> &str {
        &self.inner.identity
    }

    /// The paths.
    pub fn paths(&self) -> &[Arc<Path>] {
        &self.inner.paths
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A snapshot of every path.
    pub fn stats(&self) -> Vec<PathStats> {
        self.inner.paths.iter().map(|p| p.stats()).collect()
    }

    /// Flushes (when writable) and logs every path out; the checker stops.
    ///
    /// # Errors
    /// The flush's error; the logouts happen regardless.
    pub async fn close(self) -> Result<(), BlockError> {
        self.monitor.abort();
        let flushed = match self.inner.geometry.read_only {
            true => Ok(()),
            false => self.flush().await,
        };
        let inner = self.inner.clone();
        drop(self);
        for path in &inner.paths {
            path.disk.session().close().await;
        }
        flushed
    }
}

impl Drop for Multipath {
    fn drop(&mut self) {
        self.monitor.abort();
    }
}

impl Inner {
    /// Runs `op` on a path, failing over on path errors (see the module documentation).
    /// `op` gets the path and returns its value and the bytes it moved; `modifies` says
    /// whether the request changes data (and so needs the ghost-write barrier).
    async fn dispatch<T, F, Fut>(
        &self,
        bytes: u64,
        modifies: bool,
        mut op: F,
    ) -> Result<T, BlockError>
    where
        F: FnMut(Arc<Path>) -> Fut,
        Fut: Future<Output = Result<(T, u64), BlockError>>,
    {
        let mut waiting_since: Option<Instant> = None;
        let mut barrier_for = 0u64;
        loop {
            let Some(path) = self.pick(bytes) else {
                self.wait_for_path(&mut waiting_since).await?;
                continue;
            };
            if modifies && barrier_for > 0 {
                if let Err(e) = self.barrier(barrier_for, &path).await {
                    self.path_failed(&path, e.context());
                    continue;
                }
            }
            let flight = path.begin(bytes);
            match op(Arc::clone(&path)).await {
                Ok((value, moved)) => {
                    flight.done(moved);
                    return Ok(value);
                }
                Err(e) if e.kind() == ErrorKind::PortUnavailable => {
                    // Refused unexecuted for the port's ALUA state: no connection to drop,
                    // no write that could land later. The path waits in standby while the
                    // checker reads the groups' states again (the disk noted the refusal).
                    drop(flight);
                    path.count_failover();
                    self.path_unavailable(&path, e.context());
                }
                Err(e) if e.is_path_failure() => {
                    flight.failed();
                    path.count_failover();
                    let generation = self.path_failed(&path, e.context());
                    if e.kind() == ErrorKind::PathFailure {
                        barrier_for = barrier_for.max(generation);
                    }
                }
                Err(e) => {
                    flight.failed();
                    return Err(e);
                }
            }
        }
    }

    /// The path that takes the next request of `bytes`: among the active paths of the best
    /// ALUA rank, as the policy chooses.
    fn pick(&self, bytes: u64) -> Option<Arc<Path>> {
        let best = self
            .paths
            .iter()
            .filter(|p| p.is_active())
            .map(|p| p.rank.load(Ordering::Relaxed))
            .min()?;
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let mut candidates = [Candidate::default(); MAX_PATHS];
        let mut index = [0usize; MAX_PATHS];
        let mut n = 0;
        for p in &self.paths {
            if p.is_active() && p.rank.load(Ordering::Relaxed) == best && n < MAX_PATHS {
                candidates[n] = p.candidate(turn);
                index[n] = p.index;
                n += 1;
            }
        }
        let chosen = self.config.policy.choose(&candidates[..n], bytes, turn)?;
        let path = self.paths.get(index[chosen])?;
        path.last_turn.store(turn, Ordering::Relaxed);
        Some(path.clone())
    }

    /// Waits for a path to come into service, as long as no-path-retry allows counting from
    /// the first wait of this request.
    async fn wait_for_path(&self, since: &mut Option<Instant>) -> Result<(), BlockError> {
        let started = *since.get_or_insert_with(Instant::now);
        let notified = self.usable.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.paths.iter().any(|p| p.is_active()) {
            return Ok(());
        }
        let limit = match self.config.no_path_retry {
            NoPathRetry::Fail => return Err(no_path()),
            NoPathRetry::Queue => None,
            NoPathRetry::For(d) => Some(started + d),
        };
        match limit {
            None => {
                notified.await;
                Ok(())
            }
            Some(deadline) => {
                let deadline = tokio::time::Instant::from_std(deadline);
                tokio::time::timeout_at(deadline, notified)
                    .await
                    .map_err(|_| no_path())
            }
        }
    }

    /// Takes a path out of service after a failure (if it still was in service) and drops its
    /// connection; returns the failure generation that covers it.
    pub(crate) fn path_failed(&self, path: &Arc<Path>, reason: &str) -> u64 {
        if path.set_state(State::Failed, reason) {
            let generation = self.failures.fetch_add(1, Ordering::SeqCst) + 1;
            let session = path.disk.session().clone();
            tokio::spawn(async move { session.drop_connection("path failed").await });
            return generation;
        }
        self.failures.load(Ordering::SeqCst)
    }

    /// Takes a path whose target port refused a command for its ALUA state out of the
    /// selection, into standby: its connection stays, and the checker puts it back once its
    /// port group carries I/O again.
    pub(crate) fn path_unavailable(&self, path: &Arc<Path>, reason: &str) {
        if path.state() == State::Active {
            path.set_state(
                State::Standby,
                &format!("{reason}: the target port refused the command for its ALUA state"),
            );
        }
    }

    /// Puts a path back into service.
    pub(crate) fn path_active(&self, path: &Path, reason: &str) {
        if path.set_state(State::Active, reason) {
            self.usable.notify_waiters();
        }
    }

    /// Makes sure no write that failed up to `generation` can still land: a LOGICAL UNIT
    /// RESET through `via` (see the module documentation), once per generation.
    async fn barrier(&self, generation: u64, via: &Path) -> Result<(), BlockError> {
        let mut covered = self.barrier.lock().await;
        if *covered >= generation {
            return Ok(());
        }
        let now = self.failures.load(Ordering::SeqCst);
        let tm = TaskManagement {
            function: TmFunction::LOGICAL_UNIT_RESET,
            lun: via.disk.lun(),
            task: None,
        };
        warn!(
            via = %via.name,
            "writes were in flight on a failed path: LOGICAL UNIT RESET before re-driving them"
        );
        // The reset leaves a reset unit attention on every I_T nexus, the paths that are not
        // in service included; each must know it is ours, not a power loss.
        for p in self.paths.iter() {
            p.disk.expect_reset_attention(OWN_RESET_WINDOW);
        }
        match via.disk.session().task_management(tm).await {
            Ok(TmResponse::FUNCTION_COMPLETE) => {
                *covered = now;
                drop(covered);
                self.absorb_reset_attention(via);
                Ok(())
            }
            _ => Err(BlockError::new(
                ErrorKind::PathFailure,
                "LOGICAL UNIT RESET before a write failover failed",
            )),
        }
    }

    /// The reset leaves a UNIT ATTENTION on every other I_T nexus; a TEST UNIT READY on each
    /// active path takes it early (a path coming back takes it with its own TEST UNIT READY;
    /// a SYNCHRONIZE CACHE that meets it first knows it from
    /// `ScsiDisk::expect_reset_attention`).
    fn absorb_reset_attention(&self, via: &Path) {
        for p in self
            .paths
            .iter()
            .filter(|p| p.index != via.index && p.is_active())
        {
            let p = Arc::clone(p);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), p.disk.probe()).await;
            });
        }
    }
}

impl BlockDevice for Multipath {
    fn geometry(&self) -> &Geometry {
        &self.inner.geometry
    }

    async fn read(&self, lba: u64, buf: BytesMut) -> Result<BytesMut, BlockError> {
        let len = buf.len();
        let mut first = Some(buf);
        self.inner
            .dispatch(len as u64, false, |path| {
                // The first try reads into the caller's buffer; a failed try loses it.
                let buf = first.take().unwrap_or_else(|| BytesMut::zeroed(len));
                async move { path.disk.read(lba, buf).await.map(|b| (b, len as u64)) }
            })
            .await
    }

    async fn write(&self, lba: u64, data: Bytes, fua: bool) -> Result<(), BlockError> {
        let len = data.len() as u64;
        self.inner
            .dispatch(len, true, |path| {
                let data = data.clone();
                async move { path.disk.write(lba, data, fua).await.map(|()| ((), len)) }
            })
            .await
    }

    async fn flush(&self) -> Result<(), BlockError> {
        self.inner
            .dispatch(0, false, |path| async move {
                path.disk.flush().await.map(|()| ((), 0))
            })
            .await
    }

    async fn discard(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        self.inner
            .dispatch(0, true, |path| async move {
                path.disk.discard(lba, blocks).await.map(|()| ((), 0))
            })
            .await
    }

    async fn write_zeroes(&self, lba: u64, blocks: u64, unmap: bool) -> Result<(), BlockError> {
        self.inner
            .dispatch(0, true, |path| async move {
                path.disk
                    .write_zeroes(lba, blocks, unmap)
                    .await
                    .map(|()| ((), 0))
            })
            .await
    }

    async fn write_zeroes_fast(
        &self,
        lba: u64,
        blocks: u64,
        unmap: bool,
    ) -> Result<(), BlockError> {
        self.inner
            .dispatch(0, true, |path| async move {
                path.disk
                    .write_zeroes_fast(lba, blocks, unmap)
                    .await
                    .map(|()| ((), 0))
            })
            .await
    }

    async fn probe(&self) -> Result<(), BlockError> {
        self.inner
            .dispatch(0, false, |path| async move {
                path.disk.probe().await.map(|()| ((), 0))
            })
            .await
    }
}

/// The device's shape: the first path's, with each limit the tightest of all paths and each
/// capability one that every path has.
fn combined_geometry<'a>(mut all: impl Iterator<Item = &'a Geometry>) -> Geometry {
    let Some(first) = all.next() else {
        return Geometry {
            block_size: 512,
            blocks: 0,
            read_only: true,
            can_flush: false,
            can_fua: false,
            can_discard: false,
            can_write_zeroes: false,
            limits: Default::default(),
        };
    };
    let mut g = first.clone();
    for other in all {
        g.read_only |= other.read_only;
        g.can_flush &= other.can_flush;
        g.can_fua &= other.can_fua;
        g.can_discard &= other.can_discard;
        g.can_write_zeroes &= other.can_write_zeroes;
        let l = &mut g.limits;
        let o = &other.limits;
        l.max_transfer_blocks = min_limit(l.max_transfer_blocks, o.max_transfer_blocks);
        l.max_discard_blocks = min_limit(l.max_discard_blocks, o.max_discard_blocks);
        l.max_write_zeroes_blocks = min_limit(l.max_write_zeroes_blocks, o.max_write_zeroes_blocks);
        l.optimal_granularity_blocks = l
            .optimal_granularity_blocks
            .max(o.optimal_granularity_blocks);
    }
    g
}

fn min_limit<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn no_path() -> BlockError {
    BlockError::new(
        ErrorKind::PathFailure,
        "no path to the LU within no-path-retry",
    )
}

/// The policy's name for logs and `status`.
pub fn policy_name(p: Policy) -> &'static str {
    match p {
        Policy::RoundRobin { .. } => "round-robin",
        Policy::QueueLength => "queue-length",
        Policy::ServiceTime => "service-time",
    }
}
