//! The workload: worker threads issuing random reads, writes (some with FUA), trims,
//! write-zeroes and flushes through NBD connections shared between them, every read checked
//! against the [`Model`], and the whole device read back at the end.
//!
//! Requests never overlap a write, trim or write-zeroes still in flight (a range is reserved
//! before it is sent), so the model knows what each block may hold whatever order the export
//! completes them in; reads may overlap reads.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sanshim_nbd::wire::{Command, command_flags, transmission_flags};

use crate::client::{Client, Reply};
use crate::model::{BLOCK, Model, Verdict, Version};
use crate::rng::Rng;

/// The kinds of request, as counted in the report.
pub const KINDS: [&str; 6] = [
    "read",
    "write",
    "write_fua",
    "trim",
    "write_zeroes",
    "flush",
];

/// What the reads found wrong, in one phase (during the run, the final read-back, the backing
/// file).
#[derive(Debug, Default)]
pub struct Findings {
    /// Acknowledged writes whose data was not there (by write id).
    pub lost_writes: BTreeSet<u64>,
    /// Blocks that held an older version than an acknowledged write.
    pub stale_blocks: u64,
    /// Blocks holding bytes no allowed version has.
    pub wrong_blocks: u64,
    /// Bytes differing from the newest allowed version in those blocks.
    pub wrong_bytes: u64,
    /// The first few findings, described.
    pub examples: Vec<String>,
}

impl Findings {
    /// Records one block's verdict.
    pub fn record(&mut self, lba: u64, verdict: Verdict) {
        match verdict {
            Verdict::Ok => return,
            Verdict::Lost { expected, .. } => {
                self.lost_writes.insert(expected.id().unwrap_or(0));
                self.stale_blocks += 1;
            }
            Verdict::Wrong { wrong, .. } => {
                self.wrong_blocks += 1;
                self.wrong_bytes += wrong as u64;
            }
        }
        if self.examples.len() < 20 {
            self.examples.push(format!("block {lba}: {verdict:?}"));
        }
    }
}

/// Counters of the workload.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests completed, by kind (index into [`KINDS`]), successful or not.
    pub ops: [u64; KINDS.len()],
    /// Requests that failed, by kind.
    pub errors: [u64; KINDS.len()],
    /// Failed requests by NBD error number.
    pub errnos: std::collections::BTreeMap<u32, u64>,
    /// Latency of every completed request, in microseconds.
    pub latencies_us: Vec<u64>,
    /// Bytes read and written (writes and write-zeroes).
    pub bytes: [u64; 2],
    /// Findings of the reads during the run.
    pub during: Findings,
}

/// The shared state of the workload.
pub struct Workload {
    state: Mutex<State>,
    stats: Mutex<Stats>,
    stop: AtomicBool,
    fatal: Mutex<Option<String>>,
    /// How long a request may take before the soak gives up on the export.
    pub request_timeout: Duration,
}

struct State {
    model: Model,
    /// Ranges in flight: first block, block count, whether they change content.
    inflight: Vec<(u64, u64, bool)>,
}

/// One request a worker is about to send.
#[derive(Clone, Copy, Debug)]
struct Op {
    kind: usize,
    lba: u64,
    blocks: u64,
    /// The version a write or write-zeroes puts there.
    version: Version,
}

impl Workload {
    /// A workload over a device of `blocks` blocks.
    pub fn new(blocks: u64) -> Workload {
        Workload {
            state: Mutex::new(State {
                model: Model::new(blocks),
                inflight: Vec::new(),
            }),
            stats: Mutex::default(),
            stop: AtomicBool::new(false),
            fatal: Mutex::new(None),
            request_timeout: Duration::from_secs(300),
        }
    }

    /// Runs one worker until `deadline`, a stop, or a fatal error.
    pub fn worker(&self, client: &Client, mut rng: Rng, deadline: Instant) {
        while Instant::now() < deadline && !self.stop.load(Ordering::Acquire) {
            let Some(op) = self.reserve(client, &mut rng) else {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            };
            let result = self.execute(client, op, &mut rng);
            self.release(op, result.as_ref().ok());
            if let Err(e) = result {
                self.fail(e);
            }
        }
    }

    /// Stops every worker with a fatal error (the first one is kept).
    pub fn fail(&self, why: String) {
        lock(&self.fatal).get_or_insert(why);
        self.stop.store(true, Ordering::Release);
    }

    /// The fatal error, if any.
    pub fn fatal(&self) -> Option<String> {
        lock(&self.fatal).clone()
    }

    /// The counters (locked).
    pub fn stats(&self) -> MutexGuard<'_, Stats> {
        lock(&self.stats)
    }

    /// Reads the whole device through `client` (`depth` requests in flight, 1 MiB each) and
    /// checks it against the model.
    ///
    /// # Errors
    /// A request failed or the connection broke.
    pub fn read_back(&self, client: &Client, depth: usize) -> Result<Findings, String> {
        let state = lock(&self.state);
        let blocks = state.model.blocks();
        let chunk = (1 << 20) / BLOCK as u64;
        let mut findings = Findings::default();
        let mut queue = std::collections::VecDeque::new();
        let mut lba = 0;
        while lba < blocks || !queue.is_empty() {
            while lba < blocks && queue.len() < depth {
                let n = chunk.min(blocks - lba);
                let rx = client
                    .submit(
                        Command::READ,
                        0,
                        lba * BLOCK as u64,
                        (n as usize * BLOCK) as u32,
                        None,
                    )
                    .map_err(|e| format!("read-back: {e}"))?;
                queue.push_back((lba, rx));
                lba += n;
            }
            let Some((at, rx)) = queue.pop_front() else {
                break;
            };
            let reply = rx
                .recv_timeout(self.request_timeout)
                .map_err(|_| format!("read-back at block {at}: no reply"))?;
            if reply.error != 0 {
                return Err(format!("read-back at block {at}: error {}", reply.error));
            }
            state
                .model
                .check(at, &reply.data, |b, v| findings.record(b, v));
        }
        Ok(findings)
    }

    /// Checks `data` (the device's whole content, from elsewhere) against the model.
    pub fn check_all(&self, data: &[u8]) -> Findings {
        let mut findings = Findings::default();
        lock(&self.state)
            .model
            .check(0, data, |b, v| findings.record(b, v));
        findings
    }

    /// Picks a random request whose range is free and reserves it.
    fn reserve(&self, client: &Client, rng: &mut Rng) -> Option<Op> {
        let kind = pick_kind(rng, client.flags);
        let mut state = lock(&self.state);
        let total = state.model.blocks();
        for _ in 0..8 {
            let (lba, blocks) = if kind == FLUSH {
                (0, 0)
            } else {
                pick_range(rng, total)
            };
            let changes = matches!(kind, WRITE | WRITE_FUA | TRIM | WRITE_ZEROES);
            let busy = state
                .inflight
                .iter()
                .any(|&(l, n, c)| (changes || c) && lba < l + n && l < lba + blocks);
            if busy {
                continue;
            }
            state.inflight.push((lba, blocks, changes));
            let version = match kind {
                WRITE | WRITE_FUA => state.model.next_write(),
                _ => Version::ZERO,
            };
            return Some(Op {
                kind,
                lba,
                blocks,
                version,
            });
        }
        None
    }

    /// Updates the model with the outcome (`Some(ok)`) and frees the range.
    fn release(&self, op: Op, ok: Option<&bool>) {
        let mut state = lock(&self.state);
        match (op.kind, ok) {
            (WRITE | WRITE_FUA, Some(true)) => state.model.set(op.lba, op.blocks, op.version),
            (WRITE_ZEROES, Some(true)) => state.model.set(op.lba, op.blocks, Version::ZERO),
            (WRITE | WRITE_FUA, _) => state.model.allow(op.lba, op.blocks, op.version),
            (TRIM | WRITE_ZEROES, _) => state.model.allow(op.lba, op.blocks, Version::ZERO),
            _ => {}
        }
        if let Some(i) = state
            .inflight
            .iter()
            .position(|&r| r == (op.lba, op.blocks, op.kind != READ && op.kind != FLUSH))
        {
            state.inflight.swap_remove(i);
        }
    }

    /// Sends `op`, waits for its reply and records it; `Ok(success)`, or a fatal error.
    fn execute(&self, client: &Client, op: Op, rng: &mut Rng) -> Result<bool, String> {
        let offset = op.lba * BLOCK as u64;
        let length = (op.blocks as usize * BLOCK) as u32;
        let data = matches!(op.kind, WRITE | WRITE_FUA).then(|| {
            let mut d = vec![0u8; length as usize];
            for (i, block) in d.chunks_mut(BLOCK).enumerate() {
                op.version.pattern(op.lba + i as u64, block);
            }
            d
        });
        let (command, flags) = match op.kind {
            READ => (Command::READ, 0),
            WRITE => (Command::WRITE, 0),
            WRITE_FUA => (Command::WRITE, command_flags::FUA),
            TRIM => (Command::TRIM, 0),
            WRITE_ZEROES if rng.chance(50) => (Command::WRITE_ZEROES, command_flags::NO_HOLE),
            WRITE_ZEROES => (Command::WRITE_ZEROES, 0),
            _ => (Command::FLUSH, 0),
        };
        let started = Instant::now();
        let rx = client
            .submit(command, flags, offset, length, data.as_deref())
            .map_err(|e| format!("NBD connection lost sending {command:?}: {e}"))?;
        let reply: Reply = rx.recv_timeout(self.request_timeout).map_err(|e| match e {
            std::sync::mpsc::RecvTimeoutError::Timeout => format!(
                "{command:?} of {length} bytes at {offset} unanswered after {:?}",
                self.request_timeout
            ),
            std::sync::mpsc::RecvTimeoutError::Disconnected => {
                format!("NBD connection lost waiting for {command:?}")
            }
        })?;
        let latency = started.elapsed();
        let ok = reply.error == 0;
        let mut stats = lock(&self.stats);
        stats.ops[op.kind] += 1;
        stats.latencies_us.push(latency.as_micros() as u64);
        if !ok {
            stats.errors[op.kind] += 1;
            *stats.errnos.entry(reply.error).or_default() += 1;
            return Ok(false);
        }
        match op.kind {
            READ => {
                stats.bytes[0] += u64::from(length);
                let state = lock(&self.state);
                let during = &mut stats.during;
                state
                    .model
                    .check(op.lba, &reply.data, |b, v| during.record(b, v));
            }
            WRITE | WRITE_FUA | WRITE_ZEROES => stats.bytes[1] += u64::from(length),
            _ => {}
        }
        Ok(true)
    }
}

/// A request kind: reads 45 %, writes 30 % (a fifth of them FUA), trims 8 %, write-zeroes
/// 7 %, flushes 5 % — trims and write-zeroes only when the export offers them.
fn pick_kind(rng: &mut Rng, flags: u16) -> usize {
    let r = rng.range(0, 100);
    let kind = match r {
        0..45 => READ,
        45..69 => WRITE,
        69..75 => WRITE_FUA,
        75..83 => TRIM,
        83..90 => WRITE_ZEROES,
        90..95 => FLUSH,
        _ => READ,
    };
    match kind {
        TRIM if flags & transmission_flags::SEND_TRIM == 0 => WRITE,
        WRITE_ZEROES if flags & transmission_flags::SEND_WRITE_ZEROES == 0 => WRITE,
        k => k,
    }
}

/// A random range: within the first 16 MiB six times in ten (so reads meet earlier writes),
/// anywhere otherwise; 1-16 blocks mostly, up to 256 KiB often, up to 2 MiB sometimes.
fn pick_range(rng: &mut Rng, total: u64) -> (u64, u64) {
    let blocks = match rng.range(0, 100) {
        0..65 => rng.range(1, 17),
        65..95 => rng.range(17, 513),
        _ => rng.range(513, 4097),
    }
    .min(total);
    let span = if rng.chance(60) {
        total.min(HOT_BLOCKS)
    } else {
        total
    };
    let lba = rng.range(0, span.saturating_sub(blocks) + 1);
    (lba, blocks)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

const READ: usize = 0;
const WRITE: usize = 1;
const WRITE_FUA: usize = 2;
const TRIM: usize = 3;
const WRITE_ZEROES: usize = 4;
const FLUSH: usize = 5;
/// 16 MiB in blocks.
const HOT_BLOCKS: u64 = (16 << 20) / BLOCK as u64;
