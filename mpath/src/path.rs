//! One path of a multipath device: its disk (an iSCSI session to the LU), whether it may
//! carry I/O, and what it did — requests, bytes, errors, failovers, state changes, latency —
//! for the logs, `sanshim status` and `bench`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sanshim_initiator::disk::ScsiDisk;
use tracing::{info, warn};

use crate::selector::{Candidate, MIN_SAMPLE_BYTES};

/// Whether a path carries I/O.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum State {
    /// In service.
    Active,
    /// Out of service since a failure; the checker reinstates it once its session is back and
    /// answers (TEST UNIT READY, the MTU probe).
    Failed,
    /// Connected, but its ALUA target port group is in standby, unavailable or offline: it
    /// carries no I/O.
    Standby,
}

impl State {
    /// The state's name in logs and `status`.
    pub fn name(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Failed => "failed",
            State::Standby => "standby",
        }
    }
}

/// ALUA preference of a path: lower is better; 0 is active/optimized (or no ALUA).
pub(crate) const RANK_OPTIMIZED: u32 = 0;

/// How often a path in standby has its ALUA state read again.
const STANDBY_RECHECK: Duration = Duration::from_secs(5);

/// A path and its counters.
#[derive(Debug)]
pub struct Path {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) disk: ScsiDisk,
    status: Mutex<Status>,
    in_flight: AtomicU32,
    in_flight_bytes: AtomicU64,
    ops: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    failovers: AtomicU64,
    state_changes: AtomicU64,
    /// Bytes per second, as `f64` bits: an exponentially weighted average of completions.
    throughput: AtomicU64,
    /// ALUA rank of the path's target port group (see `RANK_*`).
    pub(crate) rank: AtomicU32,
    /// The device's dispatch count when this path last took a request.
    pub(crate) last_turn: AtomicU64,
    /// The session's connection-change count when the path failed: it is reinstated only
    /// on a connection made after that.
    failed_at: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

#[derive(Debug)]
struct Status {
    state: State,
    since: Instant,
    reason: String,
    /// The TCP maximum segment size the path was clamped to after an MTU black hole.
    max_segment: Option<u32>,
}

/// A snapshot of a path for `sanshim status`, SIGUSR1 and `bench`.
#[derive(Clone, Debug, PartialEq)]
pub struct PathStats {
    /// 1-based path number.
    pub number: usize,
    /// The path's name (its portal).
    pub name: String,
    /// Its state.
    pub state: State,
    /// Why it is in that state.
    pub reason: String,
    /// How long it has been in that state.
    pub for_secs: f64,
    /// Whether its session has a connection now.
    pub connected: bool,
    /// Requests completed.
    pub ops: u64,
    /// Bytes moved by completed reads and writes.
    pub bytes: u64,
    /// Requests that failed on this path (and went to another, or to the caller).
    pub errors: u64,
    /// Times the path failed over to another.
    pub failovers: u64,
    /// Times its state changed.
    pub state_changes: u64,
    /// Requests in flight now.
    pub in_flight: u32,
    /// Latency percentiles of completed requests, in microseconds: p50, p90, p99, max.
    pub latency_us: [u64; 4],
    /// Times its session logged in again.
    pub reconnects: u64,
    /// SYNCHRONIZE CACHE commands that completed on it ([`ScsiDisk::syncs`]).
    pub syncs: u64,
    /// The TCP maximum segment size it is clamped to, if any.
    pub max_segment: Option<u32>,
    /// ALUA: 0 active/optimized (or no ALUA), 1 active/non-optimized.
    pub alua_rank: u32,
}

/// One request in flight on a path; say how it ended.
pub(crate) struct InFlight<'a> {
    path: &'a Path,
    bytes: u64,
    started: Instant,
}

impl Path {
    pub(crate) fn new(index: usize, name: String, disk: ScsiDisk) -> Path {
        // 1 µs to an hour, two significant digits: constant bounds that hdrhistogram accepts.
        let latency = Histogram::new_with_bounds(1, 3_600_000_000, 2)
            .expect("constant histogram bounds are valid");
        Path {
            index,
            name,
            disk,
            status: Mutex::new(Status {
                state: State::Active,
                since: Instant::now(),
                reason: "logged in".to_owned(),
                max_segment: None,
            }),
            in_flight: AtomicU32::new(0),
            in_flight_bytes: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            state_changes: AtomicU64::new(0),
            throughput: AtomicU64::new(0f64.to_bits()),
            rank: AtomicU32::new(RANK_OPTIMIZED),
            last_turn: AtomicU64::new(0),
            failed_at: AtomicU64::new(0),
            latency: Mutex::new(latency),
        }
    }

    /// The path's name (its portal).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The disk the path reaches the LU through.
    pub fn disk(&self) -> &ScsiDisk {
        &self.disk
    }

    /// Its state now.
    pub fn state(&self) -> State {
        self.lock().state
    }

    /// Whether it carries I/O now.
    pub fn is_active(&self) -> bool {
        self.state() == State::Active
    }

    /// Changes the state (logged with the reason); `false` when it already was `state`.
    pub(crate) fn set_state(&self, state: State, reason: &str) -> bool {
        let mut s = self.lock();
        if s.state == state {
            return false;
        }
        let was = s.state;
        if state == State::Failed {
            let changes = self.disk.session().health().borrow().changes;
            self.failed_at.store(changes, Ordering::Relaxed);
        }
        s.state = state;
        s.since = Instant::now();
        s.reason = reason.to_owned();
        drop(s);
        self.state_changes.fetch_add(1, Ordering::Relaxed);
        match state {
            State::Active => {
                info!(path = self.index + 1, name = %self.name, from = was.name(), reason, "path active")
            }
            _ => {
                warn!(path = self.index + 1, name = %self.name, from = was.name(), to = state.name(), reason, "path out of service")
            }
        }
        true
    }

    /// For a path in standby: whether its ALUA state is due to be read again (every 5 s).
    pub(crate) fn due_for_recheck(&self) -> bool {
        let s = self.lock();
        s.state == State::Standby && s.since.elapsed() >= STANDBY_RECHECK
    }

    /// Whether the session has a connection made after the path failed.
    pub(crate) fn reconnected(&self) -> bool {
        let health = *self.disk.session().health().borrow();
        health.connected && health.changes > self.failed_at.load(Ordering::Relaxed)
    }

    pub(crate) fn set_max_segment(&self, mss: Option<u32>) {
        self.lock().max_segment = mss;
    }

    pub(crate) fn max_segment(&self) -> Option<u32> {
        self.lock().max_segment
    }

    /// What the selector needs to know.
    pub(crate) fn candidate(&self, turn: u64) -> Candidate {
        Candidate {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            in_flight_bytes: self.in_flight_bytes.load(Ordering::Relaxed),
            throughput: f64::from_bits(self.throughput.load(Ordering::Relaxed)),
            passed_over: turn.saturating_sub(self.last_turn.load(Ordering::Relaxed)),
        }
    }

    /// Requests in flight now.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request of `bytes` going out.
    pub(crate) fn begin(&self, bytes: u64) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.in_flight_bytes.fetch_add(bytes, Ordering::Relaxed);
        InFlight {
            path: self,
            bytes,
            started: Instant::now(),
        }
    }

    pub(crate) fn count_failover(&self) {
        self.failovers.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot for operators.
    pub fn stats(&self) -> PathStats {
        let s = self.lock();
        let latency = {
            let h = self.latency.lock().unwrap_or_else(|e| e.into_inner());
            [
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.9),
                h.value_at_quantile(0.99),
                h.max(),
            ]
        };
        PathStats {
            number: self.index + 1,
            name: self.name.clone(),
            state: s.state,
            reason: s.reason.clone(),
            for_secs: s.since.elapsed().as_secs_f64(),
            connected: self.disk.session().is_connected(),
            ops: self.ops.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            failovers: self.failovers.load(Ordering::Relaxed),
            state_changes: self.state_changes.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            latency_us: latency,
            reconnects: self.disk.reconnects(),
            syncs: self.disk.syncs(),
            max_segment: s.max_segment,
            alua_rank: self.rank.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl InFlight<'_> {
    /// The request completed (successfully or with an error that is not the path's).
    pub(crate) fn done(self, moved: u64) {
        let p = self.path;
        let elapsed = self.started.elapsed();
        p.ops.fetch_add(1, Ordering::Relaxed);
        p.bytes.fetch_add(moved, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        p.latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .saturating_record(micros);
        if moved >= MIN_SAMPLE_BYTES {
            update_throughput(&p.throughput, moved, elapsed);
        }
    }

    /// The request failed on this path.
    pub(crate) fn failed(self) {
        self.path.errors.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.path.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.path
            .in_flight_bytes
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Folds one completion into the throughput estimate (weight 1/16).
fn update_throughput(slot: &AtomicU64, bytes: u64, elapsed: Duration) {
    let secs = elapsed.as_secs_f64().max(1e-6);
    let sample = bytes as f64 / secs;
    let old = f64::from_bits(slot.load(Ordering::Relaxed));
    let new = if old == 0.0 {
        sample
    } else {
        old + (sample - old) / 16.0
    };
    slot.store(new.to_bits(), Ordering::Relaxed);
}
