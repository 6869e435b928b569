//! An in-process iSCSI target (RFC 7143) for tests and benches: login without
//! authentication (§6, §12.1), the full feature phase with correct StatSN / ExpCmdSN /
//! MaxCmdSN sequencing (§4.2.2), SCSI commands on an in-memory LUN (SPC-5, SBC-4), Data-In,
//! R2T and Data-Out (§11.7-§11.8), NOP-Out/NOP-In (§11.18-§11.19), SendTargets with text
//! continuation (§11.10-§11.11, Appendix C), task management (§11.5-§11.6), Async Messages
//! (§11.9), Reject (§11.17) and Logout (§11.14-§11.15); plus scripted faults ([`Rule`]) and
//! counters ([`Counters`]).
//!
//! ```text
//!  accept thread ──► one thread per connection: driver.rs (socket, framing, writev)
//!                        │ PDUs                      ▲ Transmit
//!                        ▼                           │
//!                    conn.rs (login.rs, task.rs) ── scsi.rs / pages.rs ── disk.rs
//!                        └──────── Shared: config, disk, Script, Counters, window
//! ```
//!
//! The target listens on 127.0.0.1 on an ephemeral port. Dropping the [`FakeTarget`] stops
//! accepting, shuts every connection down and joins their threads.

mod config;
mod conn;
mod counters;
mod disk;
mod driver;
mod login;
mod pages;
mod rules;
mod scsi;
mod task;
mod text;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use self::config::{Digest, TargetConfig};
pub use self::counters::{Counters, Event};
use self::disk::Disk;
use self::rules::Script;
pub use self::rules::{Rule, SenseCode};
use crate::net::{Acceptor, Streams};

/// A running fake iSCSI target; see the module documentation.
///
/// ```no_run
/// use sanshim_testbed::{FakeTarget, Rule, TargetConfig};
///
/// let target = FakeTarget::start(TargetConfig::default());
/// target.fill(0, b"hello");
/// target.script(Rule::busy(1));
/// // ... point the initiator under test at target.portal() and target.iqn() ...
/// assert_eq!(target.read_back(0, 5), b"hello");
/// ```
pub struct FakeTarget {
    shared: Arc<Shared>,
    acceptor: Acceptor,
    streams: Arc<Streams>,
}

/// State shared by the handle and every connection thread.
pub(crate) struct Shared {
    config: TargetConfig,
    port: u16,
    disk: Disk,
    script: Mutex<Script>,
    counters: Mutex<Counters>,
    window: AtomicU32,
    next_tsih: AtomicU32,
    stopping: AtomicBool,
    /// Writes waiting to be carried out ([`Rule::Defer`]).
    deferred: Mutex<Vec<task::Deferred>>,
    /// Connection ids, and which connections are alive.
    next_conn: std::sync::atomic::AtomicU64,
    live: Mutex<std::collections::HashSet<u64>>,
    /// The I_T nexuses (ISIDs of normal sessions) that logged in, and those a LOGICAL UNIT
    /// RESET from another nexus left a reset unit attention on (SAM-5 §7.7).
    nexuses: Mutex<std::collections::HashSet<[u8; 6]>>,
    reset_attention: Mutex<std::collections::HashSet<[u8; 6]>>,
    /// Further SendTargets addresses: the configuration's, then [`FakeTarget::add_address`]'s.
    extra_addresses: Mutex<Vec<String>>,
    /// The last [`EVENTS_KEPT`] events, oldest first.
    events: Mutex<std::collections::VecDeque<Event>>,
    /// How many times [`FakeTarget::release_held`] was called.
    released: std::sync::atomic::AtomicU64,
}

/// Events a target keeps ([`FakeTarget::events`]).
const EVENTS_KEPT: usize = 4096;

impl Shared {
    fn script<T>(&self, f: impl FnOnce(&mut Script) -> T) -> T {
        f(&mut self.script.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn count(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.counters.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn window(&self) -> u32 {
        self.window.load(Ordering::Relaxed)
    }

    fn log(&self, event: Event) {
        let mut events = lock(&self.events);
        if events.len() == EVENTS_KEPT {
            events.pop_front();
        }
        events.push_back(event);
    }

    fn released(&self) -> u64 {
        self.released.load(Ordering::Acquire)
    }

    /// A fresh nonzero TSIH.
    fn next_tsih(&self) -> u16 {
        loop {
            let t = self.next_tsih.fetch_add(1, Ordering::Relaxed) as u16;
            if t != 0 {
                return t;
            }
        }
    }

    /// A LOGICAL UNIT RESET from `from`: every other nexus gets a reset unit attention.
    fn reset_from(&self, from: Option<[u8; 6]>) {
        let others: Vec<[u8; 6]> = lock(&self.nexuses)
            .iter()
            .filter(|n| Some(**n) != from)
            .copied()
            .collect();
        self.count(|c| c.reset_attentions_set += others.len() as u64);
        lock(&self.reset_attention).extend(others);
    }

    /// Takes the reset unit attention pending on `nexus`, if any.
    fn take_reset_attention(&self, nexus: Option<[u8; 6]>) -> bool {
        let taken = nexus.is_some_and(|n| lock(&self.reset_attention).remove(&n));
        if taken {
            self.count(|c| c.reset_attentions_reported += 1);
        }
        taken
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

impl FakeTarget {
    /// Starts a target on 127.0.0.1 with an ephemeral port.
    ///
    /// # Panics
    /// When the configuration is unusable (block size not 512 or 4096, a LUN too large for
    /// memory) or the socket cannot be bound; see [`FakeTarget::try_start`].
    pub fn start(config: TargetConfig) -> FakeTarget {
        FakeTarget::try_start(config).unwrap_or_else(|e| panic!("fake target: {e}"))
    }

    /// Starts a target on 127.0.0.1 with an ephemeral port.
    ///
    /// # Errors
    /// `InvalidInput` for an unusable configuration; the error of binding or spawning.
    pub fn try_start(config: TargetConfig) -> io::Result<FakeTarget> {
        if !matches!(config.block_size, 512 | 4096) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "block size must be 512 or 4096",
            ));
        }
        let capacity = usize::try_from(config.capacity())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "LUN too large"))?;
        let config_extra = config.extra_addresses.clone();
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            window: AtomicU32::new(config.window),
            config,
            port,
            disk: Disk::new(capacity),
            script: Mutex::default(),
            counters: Mutex::default(),
            next_tsih: AtomicU32::new(1),
            stopping: AtomicBool::new(false),
            deferred: Mutex::default(),
            next_conn: std::sync::atomic::AtomicU64::new(1),
            live: Mutex::default(),
            nexuses: Mutex::default(),
            reset_attention: Mutex::default(),
            extra_addresses: Mutex::new(config_extra),
            events: Mutex::default(),
            released: std::sync::atomic::AtomicU64::new(0),
        });
        let streams = Arc::new(Streams::default());
        let (conn_shared, conn_streams) = (shared.clone(), streams.clone());
        let acceptor = Acceptor::spawn(listener, "fake-target-accept", move |stream| {
            conn_shared.count(|c| c.connections += 1);
            let Some(key) = conn_streams.insert(&stream) else {
                return;
            };
            let (shared, streams) = (conn_shared.clone(), conn_streams.clone());
            let spawned = std::thread::Builder::new()
                .name("fake-target-conn".to_owned())
                .spawn(move || {
                    driver::serve(shared, stream);
                    streams.remove(key);
                });
            match spawned {
                Ok(handle) => conn_streams.add_thread(handle),
                Err(e) => tracing::warn!("fake target: cannot spawn a connection thread: {e}"),
            }
        })?;
        Ok(FakeTarget {
            shared,
            acceptor,
            streams,
        })
    }

    /// Adds a `TargetAddress` value (`host:port,tpgt`) to the SendTargets answers from now on
    /// — for a portal known only once the target runs, such as a proxy in front of it.
    pub fn add_address(&self, address: &str) {
        lock(&self.shared.extra_addresses).push(address.to_owned());
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.acceptor.addr()
    }

    /// The portal, `127.0.0.1:PORT`.
    pub fn portal(&self) -> String {
        format!("127.0.0.1:{}", self.shared.port)
    }

    /// The target's iSCSI name.
    pub fn iqn(&self) -> &str {
        &self.shared.config.iqn
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &TargetConfig {
        &self.shared.config
    }

    /// Arms a fault; see [`Rule`].
    pub fn script(&self, rule: Rule) {
        self.shared.script(|s| s.arm(rule));
    }

    /// The rules still armed.
    pub fn armed(&self) -> Vec<Rule> {
        self.shared.script(|s| s.armed())
    }

    /// Disarms every rule.
    pub fn clear_rules(&self) {
        self.shared.script(Script::clear);
    }

    /// Sets the command window: MaxCmdSN = ExpCmdSN + `window` - 1 in every PDU from now on,
    /// but never below a MaxCmdSN already announced (RFC 7143 §4.2.2.1: an initiator ignores
    /// a smaller one). So `0` stops granting: once the initiator has used the CmdSNs it was
    /// given, the window is closed (MaxCmdSN = ExpCmdSN - 1) while NOP-Out pings are still
    /// answered.
    /// Each full-feature connection announces the change within about 50 ms with a
    /// NOP-In carrying ITT and TTT 0xffffffff (RFC 7143 §11.19).
    pub fn set_window(&self, window: u32) {
        self.shared.window.store(window, Ordering::Relaxed);
    }

    /// The current command window.
    pub fn window(&self) -> u32 {
        self.shared.window()
    }

    /// `len` bytes of LUN 1 from the start of block `lba` (shorter when that runs past the
    /// end of the LUN).
    pub fn read_back(&self, lba: u64, len: usize) -> Vec<u8> {
        let offset = lba.saturating_mul(u64::from(self.shared.config.block_size));
        let len = len.min(self.shared.config.capacity().saturating_sub(offset) as usize);
        self.shared.disk.read(offset, len).to_vec()
    }

    /// Stores `data` on LUN 1 from the start of block `lba` (what does not fit is dropped).
    pub fn fill(&self, lba: u64, data: &[u8]) {
        let offset = lba.saturating_mul(u64::from(self.shared.config.block_size));
        let fits = self.shared.config.capacity().saturating_sub(offset) as usize;
        self.shared
            .disk
            .write(offset, data.get(..fits.min(data.len())).unwrap_or_default());
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        let mut c = self
            .shared
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        c.faults_fired = self.shared.script(|s| s.fired());
        c
    }

    /// What the target did, in order: the last 4096 [`Event`]s.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.shared.events).iter().copied().collect()
    }

    /// Carries out the commands [`Rule::Hold`] holds now, on every connection, within about
    /// 50 ms (each connection's next tick), and answers them as if they had just arrived. A
    /// write keeps only its immediate data: Data-Out that came while it was held is gone.
    pub fn release_held(&self) {
        self.shared.released.fetch_add(1, Ordering::AcqRel);
    }

    /// Polls the counters until `until` holds or `timeout` passes; returns whether it held.
    pub fn wait_for(&self, timeout: Duration, until: impl Fn(&Counters) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if until(&self.counters()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Closes every open connection at once (a target restart as the initiator sees it),
    /// and keeps listening for new ones. LUN contents are kept.
    pub fn drop_connections(&self) {
        self.streams.shutdown_all();
    }
}

impl Drop for FakeTarget {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.acceptor.stop();
        self.streams.close();
    }
}

impl std::fmt::Debug for FakeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTarget")
            .field("portal", &self.portal())
            .field("iqn", &self.iqn())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
