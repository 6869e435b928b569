//! A TCP proxy that understands iSCSI PDU boundaries (RFC 7143 §11.2) and injects faults at
//! chosen points of the stream: freezes that hold both TCP connections open without
//! forwarding, cuts, bit flips in headers or data, and delays.
//!
//! ```text
//!  initiator ──► [client pump: frames PDUs] ──► upstream (FakeTarget or tgtd)
//!            ◄── [server pump: frames PDUs, watches login text, fires faults] ◄──
//! ```
//!
//! Each accepted connection gets a number (1, 2, ... in accept order) and two threads, one
//! per direction. Login PDUs are framed without digests; when the target's Login Response
//! with T=1, NSG=3 and success passes, both directions switch to the HeaderDigest and
//! DataDigest that login agreed on (learned from the login text of both sides, or forced by
//! [`ProxyConfig`]). A fault is armed for one connection (by default the first), fires once,
//! and is recorded with the [`Instant`] it fired ([`Fired`]).
//!
//! Dropping the proxy shuts every connection down (FIN both ways) and joins its threads.

mod framing;
mod pump;

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sanshim_initiator::wire::Opcode;

use crate::net::{Acceptor, Streams};

/// A direction of traffic through the proxy.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Direction {
    /// From the initiator to the target.
    ToTarget,
    /// From the target to the initiator.
    ToInitiator,
}

/// A fault the proxy injects. Every fault but [`ProxyFault::Delay`] fires once.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ProxyFault {
    /// At the next Data-In (opcode 0x25) from the target whose data segment has at least 2
    /// bytes: forward its header (BHS, header digest) and the first `DataSegmentLength / 2`
    /// bytes of its data, then forward nothing more in either direction — and read nothing
    /// more either, so TCP flow control holds both peers — while both TCP connections stay
    /// open (no FIN, no RST). [`FaultProxy::release`] resumes forwarding exactly where it
    /// stopped (the rest of the Data-In first); dropping the proxy closes both connections.
    FreezeMidDataIn,
    /// At the next R2T (opcode 0x31) from the target: hold the R2T back and freeze both
    /// directions as [`ProxyFault::FreezeMidDataIn`] does; [`FaultProxy::release`] forwards
    /// the R2T and resumes.
    FreezeOnR2t,
    /// As [`ProxyFault::FreezeMidDataIn`] up to half the data segment, then shut both TCP
    /// connections down (FIN to the initiator and to the target).
    CutMidDataIn,
    /// Flip bit 0 of the middle byte of the data segment of the next Data-In from the target
    /// that has data. With data digests on, the initiator sees a data digest error; with
    /// them off, the read returns silently corrupted data.
    FlipDataBit,
    /// Flip bit 0 of the middle byte of the data segment of the next PDU from the initiator
    /// that carries write data: a Data-Out (opcode 0x05) or a SCSI Command with immediate
    /// data. With data digests on, the target sees a data digest error; with them off, the
    /// target writes the corrupted data.
    FlipDataOutBit,
    /// Flip bit 0 of BHS byte 19 (the low byte of the Initiator Task Tag) of the next PDU
    /// with this opcode (from the target for target opcodes, from the initiator for
    /// initiator opcodes). With header digests on, the receiver sees a header digest
    /// error; with them off, the PDU names a task tag off by one. Lengths are untouched,
    /// so framing stays intact.
    FlipHeaderBit {
        /// Opcode of the PDU to corrupt.
        opcode: Opcode,
    },
    /// Forward exactly `bytes` more bytes in `direction` (counted from the first PDU the
    /// proxy handles in that direction after arming), then shut both TCP connections down,
    /// wherever that falls in a PDU.
    CutAfterBytes {
        /// The direction counted.
        direction: Direction,
        /// Bytes still forwarded.
        bytes: u64,
    },
    /// Wait this long before forwarding each PDU, in both directions, for the life of the
    /// connection (recorded as fired once, at the first delayed PDU).
    Delay(Duration),
}

/// Proxy options.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct ProxyConfig {
    /// Force the HeaderDigest used after login; `None` learns it from the login text.
    pub header_digest: Option<bool>,
    /// Force the DataDigest used after login; `None` learns it from the login text.
    pub data_digest: Option<bool>,
}

/// A fault that fired.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Fired {
    /// The fault.
    pub fault: ProxyFault,
    /// The connection it fired on (1 = first accepted).
    pub connection: u32,
    /// When it fired.
    pub at: Instant,
}

/// A running fault proxy; see the module documentation.
///
/// ```no_run
/// use sanshim_testbed::{FakeTarget, FaultProxy, ProxyFault, TargetConfig};
///
/// let target = FakeTarget::start(TargetConfig::default());
/// let proxy = FaultProxy::start(target.addr());
/// proxy.arm(ProxyFault::FreezeMidDataIn);
/// // ... the initiator logs in through proxy.portal() and reads ...
/// let fired = proxy.wait_fired(std::time::Duration::from_secs(5)).expect("froze");
/// // ... measure how long the initiator takes to notice, from fired.at ...
/// proxy.release();
/// ```
pub struct FaultProxy {
    shared: Arc<ProxyShared>,
    acceptor: Acceptor,
    streams: Arc<Streams>,
}

/// Which connections an armed fault applies to.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Which {
    Connection(u32),
    Any,
}

#[derive(Debug)]
struct Armed {
    which: Which,
    fault: ProxyFault,
    /// For `CutAfterBytes`: the connection and byte count when first seen.
    base: Option<(u32, u64)>,
}

#[derive(Debug, Default)]
struct State {
    armed: Vec<Armed>,
    fired: Vec<Fired>,
    frozen: HashSet<u32>,
    connections: u32,
    forwarded: [u64; 2],
}

/// State shared by the handle and the pump threads.
pub(crate) struct ProxyShared {
    upstream: SocketAddr,
    config: ProxyConfig,
    state: Mutex<State>,
    changed: Condvar,
    stopping: AtomicBool,
}

impl ProxyShared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 (ephemeral port) to `upstream`, learning digests from
    /// the login.
    ///
    /// # Panics
    /// When the socket cannot be bound.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        FaultProxy::start_with(upstream, ProxyConfig::default())
    }

    /// Starts a proxy with options.
    ///
    /// # Panics
    /// When the socket cannot be bound; see [`FaultProxy::try_start`].
    pub fn start_with(upstream: SocketAddr, config: ProxyConfig) -> FaultProxy {
        FaultProxy::try_start(upstream, config).unwrap_or_else(|e| panic!("fault proxy: {e}"))
    }

    /// Starts a proxy with options.
    ///
    /// # Errors
    /// The error of binding the listening socket or spawning its thread.
    pub fn try_start(upstream: SocketAddr, config: ProxyConfig) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let shared = Arc::new(ProxyShared {
            upstream,
            config,
            state: Mutex::default(),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
        });
        let streams = Arc::new(Streams::default());
        let (s, st) = (shared.clone(), streams.clone());
        let acceptor = Acceptor::spawn(listener, "fault-proxy-accept", move |client| {
            let id = {
                let mut state = s.lock();
                state.connections += 1;
                state.connections
            };
            pump::spawn_link(&s, &st, id, client);
        })?;
        Ok(FaultProxy {
            shared,
            acceptor,
            streams,
        })
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.acceptor.addr().port()
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.acceptor.addr()
    }

    /// The portal, `127.0.0.1:PORT`.
    pub fn portal(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// Arms `fault` for the first connection.
    pub fn arm(&self, fault: ProxyFault) {
        self.arm_on(1, fault);
    }

    /// Arms `fault` for connection number `connection` (1 = first accepted).
    pub fn arm_on(&self, connection: u32, fault: ProxyFault) {
        self.push(Which::Connection(connection), fault);
    }

    /// Arms `fault` for whichever connection meets its condition first.
    pub fn arm_any(&self, fault: ProxyFault) {
        self.push(Which::Any, fault);
    }

    fn push(&self, which: Which, fault: ProxyFault) {
        self.shared.lock().armed.push(Armed {
            which,
            fault,
            base: None,
        });
    }

    /// Disarms every fault that has not fired (and stops delays).
    pub fn disarm(&self) {
        self.shared.lock().armed.clear();
    }

    /// Ends every freeze: forwarding resumes where it stopped.
    pub fn release(&self) {
        self.shared.lock().frozen.clear();
        self.shared.changed.notify_all();
    }

    /// Whether some connection is frozen.
    pub fn is_frozen(&self) -> bool {
        !self.shared.lock().frozen.is_empty()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u32 {
        self.shared.lock().connections
    }

    /// Faults fired so far, in order.
    pub fn fired(&self) -> Vec<Fired> {
        self.shared.lock().fired.clone()
    }

    /// Number of faults fired so far.
    pub fn faults_fired(&self) -> usize {
        self.shared.lock().fired.len()
    }

    /// Waits until a fault has fired (returning the first one) or `timeout` passes.
    pub fn wait_fired(&self, timeout: Duration) -> Option<Fired> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if let Some(f) = state.fired.first() {
                return Some(f.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Bytes forwarded so far in `direction`, over all connections.
    pub fn forwarded(&self, direction: Direction) -> u64 {
        self.shared.lock().forwarded[pump::index(direction)]
    }

    /// Shuts every proxied connection down now (FIN both ways); keeps listening.
    pub fn cut_all(&self) {
        self.streams.shutdown_all();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.changed.notify_all();
        self.acceptor.stop();
        self.streams.close();
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("portal", &self.portal())
            .field("upstream", &self.shared.upstream)
            .finish_non_exhaustive()
    }
}

/// Connects to the upstream target, giving up after 5 seconds.
fn connect_upstream(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
