//! The bench engine: `qd` tokio tasks issuing `bs`-sized I/O against any [`BlockDevice`],
//! timed into a shared histogram, with progress once per interval.
//!
//! ```text
//!  run ──► pass (Load | VerifyWrite then VerifyRead, repeated while time is left)
//!            ├─ qd workers: claim op number ─► slot ─► read/write ─► histogram, counters
//!            └─ ticker: snapshot counters ─► progress callback
//! ```
//!
//! Operation numbers are claimed from one atomic counter, so a size bound is exact and a
//! verifying pass knows afterwards which numbers (and so which slots) were written.
//!
//! Time is tokio's clock ([`tokio::time::Instant`]), so that tests can run on paused time.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sanshim_blockdev::{BlockDevice, BlockError, split};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::cpu::CpuTime;
use crate::histogram::AtomicHistogram;
use crate::options::{BenchOptions, Bound};
use crate::pattern::{self, Mismatch};
use crate::report::{Phase, PhaseReport, Progress, Report, VerifyReport};
use crate::rng::{Permutation, SplitMix64, mix64};

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The options do not fit the device (or each other).
    #[error("{0}")]
    Options(String),
    /// An I/O failed; the run stopped.
    #[error("{op} of {blocks} blocks at LBA {lba} failed: {error}")]
    Io {
        /// "read" or "write".
        op: &'static str,
        /// First block of the failed request.
        lba: u64,
        /// Blocks in the failed request.
        blocks: u64,
        /// What the device said.
        error: BlockError,
    },
    /// Blocks read back differ from what was written.
    #[error(
        "verification failed: {first} ({bad_blocks} of {checked_blocks} blocks bad in pass {pass})"
    )]
    Mismatch {
        /// The bad block with the lowest LBA.
        first: Mismatch,
        /// Number of bad blocks.
        bad_blocks: u64,
        /// Number of blocks checked in the pass.
        checked_blocks: u64,
        /// The pass that found them, from 1; the earlier passes were clean.
        pass: u64,
    },
    /// A worker task panicked or was cancelled.
    #[error("a bench worker stopped abnormally: {0}")]
    Worker(String),
}

/// Runs the benchmark `options` describe against `device`, calling `progress` once per
/// `options.progress_interval` of each pass. Must run inside a tokio runtime (it spawns
/// `qd` tasks).
///
/// # Errors
/// [`BenchError::Options`] before any I/O when the options do not fit the device;
/// [`BenchError::Io`] for the first failed request; [`BenchError::Mismatch`] when a verifying
/// run reads back anything but what it wrote.
pub async fn run<D: BlockDevice + 'static>(
    device: Arc<D>,
    options: &BenchOptions,
    mut progress: impl FnMut(&Progress),
) -> Result<Report, BenchError> {
    let plan = Plan::new(device.geometry(), options)?;
    let seed = options.seed.unwrap_or_else(random_seed);
    let order = match (options.rw.is_random(), options.verify) {
        (false, _) => Order::Sequential,
        (true, false) => Order::Random,
        (true, true) => Order::Permuted(Permutation::new(plan.slots, seed)),
    };
    let limit = match options.bound {
        Bound::Bytes(bytes) => bytes.div_ceil(options.bs),
        Bound::Time(_) => u64::MAX,
    };
    let make = |mode, limit| Pass::new(&device, &plan, options, order.clone(), mode, seed, limit);
    if !options.verify {
        let mode = if options.rw.is_write() {
            Mode::LoadWrite
        } else {
            Mode::LoadRead
        };
        let (measured, _) = drive(make(mode, limit), options, &mut progress).await?;
        return Ok(report(options, &plan, measured, None));
    }
    let verify = Verify {
        make,
        options,
        plan: &plan,
        first_tag: mix64(seed ^ TAG_SALT),
        ops_per_pass: limit.min(plan.slots),
        deadline: match options.bound {
            Bound::Time(t) => Some(Instant::now() + t),
            Bound::Bytes(_) => None,
        },
    };
    let verify = verify.run(&mut progress).await?;
    let measured = if options.rw.is_write() {
        &verify.write
    } else {
        &verify.read
    };
    Ok(report(options, &plan, measured.clone(), Some(verify)))
}

/// The passes of a verifying run: each writes stamped blocks to the slots of the window (at
/// most once each), then reads back exactly the ones it wrote. With a time bound, a pass that
/// covered the whole window is followed by another while time is left; pass `n` (from 1)
/// stamps tag `first_tag + n - 1`, so a block the device failed to rewrite reads back as the
/// previous pass's and is caught. A size bound makes one pass.
struct Verify<'a, F> {
    make: F,
    options: &'a BenchOptions,
    plan: &'a Plan,
    first_tag: u64,
    ops_per_pass: u64,
    /// When the time bound ends; a pass's writes stop there, its read-back does not.
    deadline: Option<Instant>,
}

impl<D: BlockDevice + 'static, F: Fn(Mode, u64) -> Pass<D>> Verify<'_, F> {
    /// Runs the passes; the report sums them.
    async fn run(&self, progress: &mut impl FnMut(&Progress)) -> Result<VerifyReport, BenchError> {
        let (mut total, mut written) = self.pass(1, progress).await?;
        while written == self.ops_per_pass && self.time_left() {
            let (next, n) = self.pass(total.passes + 1, progress).await?;
            if n == 0 {
                // The time ran out between the check and the first claim.
                break;
            }
            total.absorb(&next);
            written = n;
        }
        Ok(total)
    }

    /// Pass `number`: writes, reads back what was written, checks it. Returns the pass's
    /// report and the operations it wrote.
    async fn pass(
        &self,
        number: u64,
        progress: &mut impl FnMut(&Progress),
    ) -> Result<(VerifyReport, u64), BenchError> {
        let tag = self.first_tag.wrapping_add(number - 1);
        let mut write_pass = (self.make)(Mode::VerifyWrite { tag }, self.ops_per_pass);
        write_pass.time = self
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        let (write, written) = drive(write_pass, self.options, progress).await?;
        let read_pass = (self.make)(Mode::VerifyRead { tag }, written);
        let (read, checked) = drive_keep(read_pass, self.options, progress).await?;
        let blocks_checked = written.saturating_mul(self.plan.blocks_per_op);
        if let Some(first) = checked.first_mismatch() {
            return Err(BenchError::Mismatch {
                first,
                bad_blocks: checked.bad_blocks.load(Ordering::Relaxed),
                checked_blocks: blocks_checked,
                pass: number,
            });
        }
        let report = VerifyReport {
            tag: self.first_tag,
            passes: 1,
            write,
            read,
            blocks_checked,
        };
        Ok((report, written))
    }

    fn time_left(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() < d)
    }
}

fn report(
    options: &BenchOptions,
    plan: &Plan,
    measured: PhaseReport,
    verify: Option<VerifyReport>,
) -> Report {
    Report {
        rw: options.rw,
        bs: options.bs,
        qd: options.qd,
        block_size: plan.block_size as u32,
        measured,
        verify,
    }
}

/// The shape of the I/O, checked against the device.
#[derive(Clone, Debug)]
struct Plan {
    block_size: u64,
    blocks_per_op: u64,
    first_lba: u64,
    slots: u64,
}

impl Plan {
    fn new(geometry: &sanshim_blockdev::Geometry, o: &BenchOptions) -> Result<Plan, BenchError> {
        let fail = |s: String| Err(BenchError::Options(s));
        let block_size = u64::from(geometry.block_size);
        if block_size == 0 {
            return fail("the device reports a block size of 0".into());
        }
        if o.bs == 0 || o.bs % block_size != 0 {
            return fail(format!(
                "--bs {} is not a multiple of the device's block size {block_size}",
                o.bs
            ));
        }
        if o.qd == 0 || o.qd > MAX_QD {
            return fail(format!("--qd {} is outside 1..={MAX_QD}", o.qd));
        }
        if o.bs.saturating_mul(o.qd as u64) > MAX_BUFFER_BYTES {
            return fail(format!(
                "--bs {} times --qd {} needs more than {} MiB of buffers",
                o.bs,
                o.qd,
                MAX_BUFFER_BYTES >> 20
            ));
        }
        if (o.rw.is_write() || o.verify) && geometry.read_only {
            return fail("the device is read-only; writes and --verify need a writable one".into());
        }
        if matches!(o.bound, Bound::Bytes(0)) {
            return fail("--size 0 does no I/O".into());
        }
        if o.offset % block_size != 0 || o.offset > geometry.size_bytes() {
            return fail(format!(
                "offset {} is not a block boundary inside the device",
                o.offset
            ));
        }
        let span = o.span.unwrap_or(geometry.size_bytes() - o.offset);
        if span > geometry.size_bytes() - o.offset {
            return fail(format!(
                "window of {span} bytes reaches past the end of the device"
            ));
        }
        let slots = span / o.bs;
        if slots == 0 {
            return fail(format!("--bs {} is larger than the device or window", o.bs));
        }
        let blocks_per_op = o.bs / block_size;
        Ok(Plan {
            block_size,
            blocks_per_op,
            first_lba: o.offset / block_size,
            slots,
        })
    }
}

/// Which slot each operation goes to.
#[derive(Clone, Debug)]
enum Order {
    /// Slot = operation number, wrapping around.
    Sequential,
    /// A slot at random per operation.
    Random,
    /// Slot = a seeded permutation of the operation number (each slot at most once).
    Permuted(Permutation),
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Mode {
    LoadRead,
    LoadWrite,
    VerifyWrite { tag: u64 },
    VerifyRead { tag: u64 },
}

impl Mode {
    fn phase(self) -> Phase {
        match self {
            Mode::LoadRead | Mode::LoadWrite => Phase::Load,
            Mode::VerifyWrite { .. } => Phase::VerifyWrite,
            Mode::VerifyRead { .. } => Phase::VerifyRead,
        }
    }
}

/// The state one pass's workers share.
struct Pass<D> {
    device: Arc<D>,
    plan: Plan,
    order: Order,
    mode: Mode,
    seed: u64,
    bs: usize,
    /// Operation numbers below this may be claimed.
    limit: u64,
    /// How long the pass may take; turned into `deadline` when it starts.
    time: Option<Duration>,
    deadline: Option<Instant>,
    next: AtomicU64,
    stop: AtomicBool,
    ops: AtomicU64,
    bytes: AtomicU64,
    latency: AtomicHistogram,
    mismatch: Mutex<Option<Mismatch>>,
    bad_blocks: AtomicU64,
}

impl<D: BlockDevice> Pass<D> {
    fn new(
        device: &Arc<D>,
        plan: &Plan,
        options: &BenchOptions,
        order: Order,
        mode: Mode,
        seed: u64,
        limit: u64,
    ) -> Pass<D> {
        // Verify sets the time of its write passes from the run's deadline.
        let time = match (options.bound, mode) {
            (Bound::Time(t), Mode::LoadRead | Mode::LoadWrite) => Some(t),
            _ => None,
        };
        Pass {
            device: Arc::clone(device),
            plan: plan.clone(),
            order,
            mode,
            seed,
            // Plan::new bounded bs * qd by MAX_BUFFER_BYTES, so bs fits usize.
            bs: usize::try_from(options.bs).unwrap_or(usize::MAX),
            limit,
            time,
            deadline: None,
            next: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            ops: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            latency: AtomicHistogram::new(),
            mismatch: Mutex::new(None),
            bad_blocks: AtomicU64::new(0),
        }
    }

    /// The next operation number, or `None` when the pass is over.
    fn claim(&self) -> Option<u64> {
        if self.stop.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (n < self.limit).then_some(n)
    }

    /// Operations claimed (and so, once the workers are done, completed).
    fn claimed(&self) -> u64 {
        self.next.load(Ordering::Relaxed).min(self.limit)
    }

    fn lba_of(&self, op: u64, rng: &mut SplitMix64) -> u64 {
        let slot = match &self.order {
            Order::Sequential => op % self.plan.slots,
            Order::Random => rng.below(self.plan.slots),
            Order::Permuted(p) => p.apply(op),
        };
        self.plan.first_lba + slot * self.plan.blocks_per_op
    }

    /// One operation on `buf` at `lba`: the buffer is written, or read into, and comes back
    /// (split at the device's transfer limit by [`split`], the one place that does it).
    async fn submit(&self, lba: u64, buf: Buffer) -> Result<Buffer, BenchError> {
        let blocks = buf.len() as u64 / self.plan.block_size;
        let (op, result) = match buf {
            Buffer::Write(data) => {
                let kept = data.clone();
                let r = split::write(&*self.device, lba, data, false).await;
                ("write", r.map(|()| Buffer::Write(kept)))
            }
            Buffer::Read(data) => {
                let r = split::read(&*self.device, lba, data).await;
                ("read", r.map(Buffer::Read))
            }
        };
        result.map_err(|error| BenchError::Io {
            op,
            lba,
            blocks,
            error,
        })
    }

    /// Checks a read-back buffer block by block, keeping the lowest bad LBA.
    fn check(&self, buf: &[u8], lba: u64, tag: u64, op: u64) {
        let block_size = self.plan.block_size as usize;
        for (i, block) in buf.chunks_exact(block_size).enumerate() {
            let Some(m) = pattern::check(block, block_size, lba + i as u64, tag, op) else {
                continue;
            };
            self.bad_blocks.fetch_add(1, Ordering::Relaxed);
            let mut first = self.mismatch.lock().unwrap_or_else(|e| e.into_inner());
            if first.is_none_or(|f| m.lba < f.lba) {
                *first = Some(m);
            }
        }
    }

    fn first_mismatch(&self) -> Option<Mismatch> {
        *self.mismatch.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A worker's buffer: data to write (shared with the device while a write runs) or a
/// buffer to read into. It is reused from one operation to the next.
enum Buffer {
    Write(Bytes),
    Read(BytesMut),
}

impl Buffer {
    fn len(&self) -> usize {
        match self {
            Buffer::Write(b) => b.len(),
            Buffer::Read(b) => b.len(),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Buffer::Write(b) => b,
            Buffer::Read(b) => b,
        }
    }

    /// The buffer to fill with a block pattern: the same memory once the device has let go
    /// of it.
    fn into_mut(self) -> BytesMut {
        match self {
            Buffer::Read(b) => b,
            Buffer::Write(b) => b
                .try_into_mut()
                .unwrap_or_else(|shared| BytesMut::from(&shared[..])),
        }
    }
}

/// One of the `qd` tasks of a pass.
async fn worker<D: BlockDevice>(pass: Arc<Pass<D>>, index: u64) -> Result<(), BenchError> {
    let mut rng = SplitMix64::new(mix64(pass.seed ^ mix64(index)));
    let mut first = BytesMut::zeroed(pass.bs);
    let mut buf = match pass.mode {
        Mode::LoadWrite => {
            // Incompressible data, so that no layer can cheat; the same buffer is written
            // again.
            for chunk in first.chunks_mut(8) {
                let word = rng.next_u64().to_le_bytes();
                chunk.copy_from_slice(&word[..chunk.len()]);
            }
            Buffer::Write(first.freeze())
        }
        Mode::VerifyWrite { .. } => Buffer::Write(first.freeze()),
        Mode::LoadRead | Mode::VerifyRead { .. } => Buffer::Read(first),
    };
    let block_size = pass.plan.block_size as usize;
    while let Some(op) = pass.claim() {
        let lba = pass.lba_of(op, &mut rng);
        if let Mode::VerifyWrite { tag } = pass.mode {
            let mut data = buf.into_mut();
            pattern::fill(&mut data, block_size, lba, tag, op);
            buf = Buffer::Write(data.freeze());
        }
        let start = Instant::now();
        buf = match pass.submit(lba, buf).await {
            Ok(buf) => buf,
            Err(e) => {
                pass.stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        };
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        pass.latency.record(nanos);
        pass.ops.fetch_add(1, Ordering::Relaxed);
        pass.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        if let Mode::VerifyRead { tag } = pass.mode {
            pass.check(buf.as_slice(), lba, tag, op);
        }
        // A device that completes at once (MemDisk) never returns to the scheduler by itself;
        // this yields once the task's cooperative budget is spent, so that the other workers
        // and the progress ticker get their turn.
        tokio::task::consume_budget().await;
    }
    Ok(())
}

/// Runs a pass to its end; returns its figures and how many operations it completed.
async fn drive<D: BlockDevice + 'static>(
    pass: Pass<D>,
    options: &BenchOptions,
    progress: &mut impl FnMut(&Progress),
) -> Result<(PhaseReport, u64), BenchError> {
    let (report, pass) = drive_keep(pass, options, progress).await?;
    Ok((report, pass.claimed()))
}

/// Runs a pass to its end; returns its figures and the pass state.
async fn drive_keep<D: BlockDevice + 'static>(
    mut pass: Pass<D>,
    options: &BenchOptions,
    progress: &mut impl FnMut(&Progress),
) -> Result<(PhaseReport, Arc<Pass<D>>), BenchError> {
    let cpu_start = CpuTime::now();
    let start = Instant::now();
    pass.deadline = pass.time.map(|t| start + t);
    let pass = Arc::new(pass);
    let mut workers = JoinSet::new();
    for index in 0..options.qd as u64 {
        workers.spawn(worker(Arc::clone(&pass), index));
    }
    let interval = options.progress_interval.max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval_at(start + interval, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut ticks = Ticks::new(start);
    let mut failure = None;
    loop {
        tokio::select! {
            joined = workers.join_next() => match joined {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    pass.stop.store(true, Ordering::Relaxed);
                    failure.get_or_insert(e);
                }
                Some(Err(e)) => {
                    pass.stop.store(true, Ordering::Relaxed);
                    failure.get_or_insert(BenchError::Worker(e.to_string()));
                }
            },
            _ = ticker.tick() => progress(&ticks.next(&pass, options)),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let report = PhaseReport {
        elapsed: start.elapsed(),
        ops: pass.ops.load(Ordering::Relaxed),
        bytes: pass.bytes.load(Ordering::Relaxed),
        latency: pass.latency.snapshot(),
        cpu: cpu_start.zip(CpuTime::now()).map(|(a, b)| b.since(&a)),
    };
    Ok((report, pass))
}

/// What the previous progress call saw, to report per interval.
struct Ticks {
    start: Instant,
    last: Instant,
    ops: u64,
    bytes: u64,
    latency: crate::histogram::Histogram,
}

impl Ticks {
    fn new(start: Instant) -> Ticks {
        Ticks {
            start,
            last: start,
            ops: 0,
            bytes: 0,
            latency: crate::histogram::Histogram::new(),
        }
    }

    fn next<D>(&mut self, pass: &Pass<D>, options: &BenchOptions) -> Progress {
        let now = Instant::now();
        let latency = pass.latency.snapshot();
        let ops = pass.ops.load(Ordering::Relaxed);
        let bytes = pass.bytes.load(Ordering::Relaxed);
        let progress = Progress {
            phase: pass.mode.phase(),
            rw: options.rw,
            elapsed: now - self.start,
            interval: now - self.last,
            ops: ops - self.ops,
            bytes: bytes - self.bytes,
            total_ops: ops,
            latency: latency.since(&self.latency),
        };
        (self.last, self.ops, self.bytes, self.latency) = (now, ops, bytes, latency);
        progress
    }
}

fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    RandomState::new().hash_one(nanos)
}

/// Largest queue depth accepted.
const MAX_QD: usize = 4096;
/// Largest total of I/O buffers (`bs * qd`) accepted.
const MAX_BUFFER_BYTES: u64 = 1 << 30;
/// Separates the run tag from the offset seed.
const TAG_SALT: u64 = 0x7461_6773_616e_7368;

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
