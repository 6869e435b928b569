//! The two threads of one proxied connection: each reads one direction, frames PDUs
//! ([`super::framing`]), applies the armed faults that match, and forwards. A frozen
//! connection neither reads nor writes until released; a cut shuts both sockets down.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use sanshim_initiator::wire::{BHS_LEN, Opcode};

use super::framing::{Digests, Frame, LoginWatch, frame};
use super::{Direction, Fired, ProxyFault, ProxyShared, Which, connect_upstream};
use crate::net::Streams;

/// Index of a direction in per-direction arrays.
pub(super) fn index(direction: Direction) -> usize {
    match direction {
        Direction::ToTarget => 0,
        Direction::ToInitiator => 1,
    }
}

/// One proxied connection, shared by its two pumps.
struct Link {
    id: u32,
    client: TcpStream,
    upstream: TcpStream,
    /// Digests after login (`None` while logging in), and the login watcher.
    framing: Mutex<(Option<Digests>, LoginWatch)>,
    forwarded: [AtomicU64; 2],
}

impl Link {
    fn digests(&self) -> Digests {
        let framing = self.framing.lock().unwrap_or_else(PoisonError::into_inner);
        framing.0.unwrap_or_default()
    }

    /// Watches a login PDU; switches to full-feature digests after the final response.
    fn observe_login(&self, pdu: &[u8], frame: &Frame, forced: &super::ProxyConfig) {
        let mut framing = self.framing.lock().unwrap_or_else(PoisonError::into_inner);
        if framing.0.is_some() {
            return;
        }
        if let Some(learned) = framing.1.observe(pdu, frame) {
            framing.0 = Some(Digests {
                header: forced.header_digest.unwrap_or(learned.header),
                data: forced.data_digest.unwrap_or(learned.data),
            });
        }
    }

    fn shutdown_both(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

/// Connects upstream for a new client connection and starts its two pumps.
pub(super) fn spawn_link(
    shared: &Arc<ProxyShared>,
    streams: &Arc<Streams>,
    id: u32,
    client: TcpStream,
) {
    let upstream = match connect_upstream(shared.upstream) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("fault proxy: upstream {}: {e}", shared.upstream);
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let keys = [streams.insert(&client), streams.insert(&upstream)];
    let (Ok(client_copy), Ok(upstream_copy)) = (client.try_clone(), upstream.try_clone()) else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
        return;
    };
    let link = Arc::new(Link {
        id,
        client: client_copy,
        upstream: upstream_copy,
        framing: Mutex::default(),
        forwarded: [AtomicU64::new(0), AtomicU64::new(0)],
    });
    let alive = Arc::new(AtomicUsize::new(2));
    let ends = [
        (
            Direction::ToTarget,
            client.try_clone(),
            upstream.try_clone(),
        ),
        (
            Direction::ToInitiator,
            upstream.try_clone(),
            client.try_clone(),
        ),
    ];
    for (direction, from, to) in ends {
        let (Ok(from), Ok(to)) = (from, to) else {
            link.shutdown_both();
            continue;
        };
        let pump = Pump {
            shared: shared.clone(),
            link: link.clone(),
            direction,
        };
        let (streams2, alive) = (streams.clone(), alive.clone());
        let spawned = std::thread::Builder::new()
            .name("fault-proxy-pump".to_owned())
            .spawn(move || {
                pump.run(from, to);
                // The last pump of the link forgets both sockets.
                if alive.fetch_sub(1, Ordering::AcqRel) == 1 {
                    keys.into_iter().flatten().for_each(|k| streams2.remove(k));
                }
            });
        match spawned {
            Ok(handle) => streams.add_thread(handle),
            Err(_) => link.shutdown_both(),
        }
    }
}

/// What the armed faults ask of one PDU.
#[derive(Debug, Default)]
struct Actions {
    /// Forward this many bytes, then freeze (or cut, with `cut`) before the rest.
    split: Option<usize>,
    /// Freeze before forwarding anything of this PDU.
    freeze_before: bool,
    /// Shut both connections down after `split` (or after `cut_at`).
    cut: bool,
    /// Forward only this many bytes of the PDU, then cut.
    cut_at: Option<usize>,
    /// Byte offsets within the PDU whose bit 0 to flip.
    flips: Vec<usize>,
    delay: Option<Duration>,
}

struct Pump {
    shared: Arc<ProxyShared>,
    link: Arc<Link>,
    direction: Direction,
}

/// Why a pump stopped forwarding other than at end of stream.
struct Stopped;

impl Pump {
    fn run(&self, mut from: TcpStream, mut to: TcpStream) {
        match self.forward_all(&mut from, &mut to) {
            Ok(()) => {
                // End of stream: pass the FIN on (once any freeze is over).
                if self.wait_unfrozen().is_ok() {
                    let _ = to.shutdown(Shutdown::Write);
                }
            }
            Err(Stopped) => self.link.shutdown_both(),
        }
    }

    fn forward_all(&self, from: &mut TcpStream, to: &mut TcpStream) -> Result<(), Stopped> {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            let mut want = 64 * 1024;
            if let Some(f) = frame(&buf, self.link.digests()) {
                if buf.len() >= f.total {
                    let pdu = buf.split_to(f.total);
                    self.forward_pdu(pdu, &f, to)?;
                    continue;
                }
                want = want.max(f.total - buf.len());
            }
            self.wait_unfrozen()?;
            let start = buf.len();
            buf.resize(start + want, 0);
            match from.read(&mut buf[start..]) {
                Ok(0) => {
                    buf.truncate(start);
                    return self.forward_tail(&buf, to);
                }
                Ok(n) => buf.truncate(start + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(start),
                Err(_) => return Err(Stopped),
            }
        }
    }

    /// Forwards bytes left over at end of stream (a partial PDU) as they are.
    fn forward_tail(&self, rest: &[u8], to: &mut TcpStream) -> Result<(), Stopped> {
        if !rest.is_empty() {
            self.write(to, rest)?;
        }
        Ok(())
    }

    fn forward_pdu(&self, mut pdu: BytesMut, f: &Frame, to: &mut TcpStream) -> Result<(), Stopped> {
        if matches!(f.opcode, Opcode::LOGIN_REQUEST | Opcode::LOGIN_RESPONSE) {
            self.link.observe_login(&pdu, f, &self.shared.config);
        }
        let actions = self.decide(f);
        for at in &actions.flips {
            if let Some(b) = pdu.get_mut(*at) {
                *b ^= 0x01;
            }
        }
        if let Some(d) = actions.delay {
            self.sleep(d)?;
        }
        if let Some(n) = actions.cut_at {
            self.write(to, pdu.get(..n).unwrap_or(&pdu))?;
            return Err(Stopped);
        }
        if actions.freeze_before {
            self.wait_unfrozen()?;
        }
        if let Some(n) = actions.split {
            let (head, tail) = pdu.split_at(n.min(pdu.len()));
            self.write(to, head)?;
            if actions.cut {
                return Err(Stopped);
            }
            self.wait_unfrozen()?;
            return self.write(to, tail);
        }
        self.wait_unfrozen()?;
        self.write(to, &pdu)
    }

    /// Fires the armed faults that match this PDU.
    fn decide(&self, f: &Frame) -> Actions {
        let mut actions = Actions::default();
        let now = Instant::now();
        let id = self.link.id;
        let done = self.link.forwarded[index(self.direction)].load(Ordering::Relaxed);
        let mut state = self.shared.lock();
        let mut fired = Vec::new();
        let mut i = 0;
        while let Some(armed) = state.armed.get_mut(i) {
            let mine = match armed.which {
                Which::Connection(n) => n == id,
                Which::Any => true,
            };
            let outcome = if mine {
                self.matches(&armed.fault, &mut armed.base, f, done, &mut actions)
            } else {
                Match::No
            };
            match outcome {
                Match::No => i += 1,
                Match::Once => {
                    fired.push(state.armed.remove(i).fault);
                }
                Match::Again { first } => {
                    if first {
                        fired.push(armed.fault.clone());
                    }
                    i += 1;
                }
            }
        }
        for fault in fired {
            if matches!(fault, ProxyFault::FreezeMidDataIn | ProxyFault::FreezeOnR2t) {
                state.frozen.insert(id);
            }
            state.fired.push(Fired {
                fault,
                connection: id,
                at: now,
            });
        }
        drop(state);
        self.shared.changed.notify_all();
        actions
    }

    /// Whether `fault` applies to this PDU, recording what it asks in `actions`.
    fn matches(
        &self,
        fault: &ProxyFault,
        base: &mut Option<(u32, u64)>,
        f: &Frame,
        done: u64,
        actions: &mut Actions,
    ) -> Match {
        let from_target = self.direction == Direction::ToInitiator;
        let data_in = from_target && f.opcode == Opcode::DATA_IN;
        let busy = actions.split.is_some() || actions.cut_at.is_some() || actions.freeze_before;
        let half = f.header_len + f.data_len / 2;
        match fault {
            ProxyFault::FreezeMidDataIn | ProxyFault::CutMidDataIn
                if data_in && f.data_len >= 2 && !busy =>
            {
                actions.split = Some(half);
                actions.cut = *fault == ProxyFault::CutMidDataIn;
                Match::Once
            }
            ProxyFault::FreezeOnR2t if from_target && f.opcode == Opcode::R2T && !busy => {
                actions.freeze_before = true;
                Match::Once
            }
            ProxyFault::FlipDataBit if data_in && f.data_len >= 1 => {
                actions.flips.push(half);
                Match::Once
            }
            ProxyFault::FlipDataOutBit
                if !from_target
                    && matches!(f.opcode, Opcode::DATA_OUT | Opcode::SCSI_COMMAND)
                    && f.data_len >= 1 =>
            {
                actions.flips.push(half);
                Match::Once
            }
            ProxyFault::FlipHeaderBit { opcode }
                if f.opcode == *opcode && opcode.is_initiator() != from_target =>
            {
                actions.flips.push(ITT_LOW_BYTE);
                Match::Once
            }
            ProxyFault::CutAfterBytes { direction, bytes } if *direction == self.direction => {
                let (conn, start) = *base.get_or_insert((self.link.id, done));
                if conn != self.link.id {
                    return Match::No;
                }
                let left = (start + bytes).saturating_sub(done);
                if left >= f.total as u64 || busy {
                    return Match::No;
                }
                actions.cut_at = Some(left as usize);
                Match::Once
            }
            ProxyFault::Delay(d) => {
                actions.delay = Some(actions.delay.unwrap_or_default() + *d);
                let first = base.is_none();
                *base = Some((self.link.id, done));
                Match::Again { first }
            }
            _ => Match::No,
        }
    }

    /// Counts the bytes, then writes them to the peer: counted first, so that once the peer
    /// has received them the count includes them (a test that reads the count after its
    /// client saw a reply must not race the proxy thread).
    fn write(&self, to: &mut TcpStream, bytes: &[u8]) -> Result<(), Stopped> {
        let n = bytes.len() as u64;
        self.link.forwarded[index(self.direction)].fetch_add(n, Ordering::Relaxed);
        self.shared.lock().forwarded[index(self.direction)] += n;
        to.write_all(bytes).map_err(|_| Stopped)
    }

    /// Blocks while this connection is frozen; fails when the proxy stops.
    fn wait_unfrozen(&self) -> Result<(), Stopped> {
        let mut state = self.shared.lock();
        loop {
            if self.shared.is_stopping() {
                return Err(Stopped);
            }
            if !state.frozen.contains(&self.link.id) {
                return Ok(());
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Sleeps `d`, waking early (and failing) when the proxy stops.
    fn sleep(&self, d: Duration) -> Result<(), Stopped> {
        let end = Instant::now() + d;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            if self.shared.is_stopping() {
                return Err(Stopped);
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        Ok(())
    }
}

/// Whether a fault fired on a PDU.
enum Match {
    No,
    /// Fired; disarm it.
    Once,
    /// Applies and stays armed (`first`: its first application).
    Again {
        first: bool,
    },
}

/// BHS byte 19: the low byte of the Initiator Task Tag (bytes 16-19).
const ITT_LOW_BYTE: usize = 19;
const _: () = assert!(ITT_LOW_BYTE < BHS_LEN);
