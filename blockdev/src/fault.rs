//! [`FaultDisk`]: a decorator that makes any [`BlockDevice`] fail, slow down or lose its path
//! on command, for multipath and NBD tests.
//!
//! Faults are rules ([`Fault`]): which operations they watch ([`OpSet`]), when they fire
//! ([`Trigger`]: always, the Nth watched operation, a range of them, or operations touching
//! some blocks) and what they do ([`FaultAction`]: fail with an [`ErrorKind`] or delay). On top
//! of the rules a [`PathState`] switch makes every operation fail with
//! [`ErrorKind::PathFailure`] (a dead path) or wait until the switch is flipped back (a hung
//! path).

use std::ops::{BitOr, Range};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use crate::{BlockDevice, BlockError, ErrorKind, Geometry};

/// Wraps `D` and injects faults into the operations that pass through.
#[derive(Debug)]
pub struct FaultDisk<D> {
    inner: D,
    rules: Mutex<Rules>,
    path: watch::Sender<PathState>,
    ops: AtomicU64,
}

/// One fault rule; see the module documentation.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Fault {
    ops: OpSet,
    trigger: Trigger,
    action: FaultAction,
}

/// When a [`Fault`] fires. Operation indices count only the operations the rule watches,
/// from 0, since the rule was added.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Trigger {
    /// On every watched operation.
    Always,
    /// On the watched operation with this index, once.
    Nth(u64),
    /// On watched operations whose index lies in the range.
    Range(Range<u64>),
    /// On watched operations whose blocks overlap the range (flush and probe never do).
    Blocks(Range<u64>),
}

/// What a [`Fault`] does when it fires.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum FaultAction {
    /// The operation fails with this kind without reaching the inner device.
    Fail(ErrorKind),
    /// The operation waits this long, then goes on.
    Delay(Duration),
}

/// The state of the simulated path to the inner device.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum PathState {
    /// Operations go through (subject to the rules).
    #[default]
    Alive,
    /// Every operation fails at once with [`ErrorKind::PathFailure`].
    Dead,
    /// Every operation waits until the state changes, then goes on or fails accordingly.
    Hung,
}

/// The kind of a block operation.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Op {
    /// [`BlockDevice::read`].
    Read,
    /// [`BlockDevice::write`].
    Write,
    /// [`BlockDevice::flush`].
    Flush,
    /// [`BlockDevice::discard`].
    Discard,
    /// [`BlockDevice::write_zeroes`].
    WriteZeroes,
    /// [`BlockDevice::probe`].
    Probe,
}

/// A set of [`Op`]s; combine with `|`.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub struct OpSet(u8);

/// Names a rule added by [`FaultDisk::inject`], to remove it again.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub struct FaultId(u64);

#[derive(Debug, Default)]
struct Rules {
    next_id: u64,
    active: Vec<ActiveRule>,
}

#[derive(Debug)]
struct ActiveRule {
    id: FaultId,
    fault: Fault,
    seen: u64,
}

impl<D: BlockDevice> FaultDisk<D> {
    /// Wraps `inner` with no faults and a live path.
    pub fn new(inner: D) -> Self {
        FaultDisk {
            inner,
            rules: Mutex::new(Rules::default()),
            path: watch::Sender::new(PathState::Alive),
            ops: AtomicU64::new(0),
        }
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Adds a rule; rules apply in the order they were added (delays add up, the first failure
    /// wins).
    pub fn inject(&self, fault: Fault) -> FaultId {
        let mut rules = self.lock();
        let id = FaultId(rules.next_id);
        rules.next_id += 1;
        rules.active.push(ActiveRule { id, fault, seen: 0 });
        id
    }

    /// Removes a rule; returns whether it was still there.
    pub fn remove(&self, id: FaultId) -> bool {
        let mut rules = self.lock();
        let before = rules.active.len();
        rules.active.retain(|r| r.id != id);
        rules.active.len() != before
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.lock().active.clear();
    }

    /// Switches the simulated path; waiting operations of a hung path resume.
    pub fn set_path_state(&self, state: PathState) {
        self.path.send_replace(state);
    }

    /// The current path state.
    pub fn path_state(&self) -> PathState {
        *self.path.borrow()
    }

    /// How many operations have been submitted, whatever became of them.
    pub fn op_count(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rules> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies the path state and the rules to one operation before it reaches the device.
    async fn gate(&self, op: Op, blocks: Option<Range<u64>>) -> Result<(), BlockError> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        self.check_path().await?;
        let (delay, failure) = self.lock().apply(op, blocks.as_ref());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match failure {
            Some(kind) => Err(BlockError::new(kind, "injected fault")),
            // A path that died or hung during the delay affects the operation too.
            None => self.check_path().await,
        }
    }

    async fn check_path(&self) -> Result<(), BlockError> {
        let mut rx = self.path.subscribe();
        let state = match rx.wait_for(|s| *s != PathState::Hung).await {
            Ok(state) => *state,
            // The sender lives in `self`, so the channel cannot close while we borrow it.
            Err(_) => PathState::Dead,
        };
        match state {
            PathState::Dead | PathState::Hung => Err(BlockError::new(
                ErrorKind::PathFailure,
                "injected dead path",
            )),
            PathState::Alive => Ok(()),
        }
    }
}

impl<D: BlockDevice> BlockDevice for FaultDisk<D> {
    fn geometry(&self) -> &Geometry {
        self.inner.geometry()
    }

    async fn read(&self, lba: u64, buf: BytesMut) -> Result<BytesMut, BlockError> {
        let blocks = buf.len() as u64 / u64::from(self.geometry().block_size.max(1));
        self.gate(Op::Read, Some(lba..lba.saturating_add(blocks)))
            .await?;
        self.inner.read(lba, buf).await
    }

    async fn write(&self, lba: u64, data: Bytes, fua: bool) -> Result<(), BlockError> {
        let blocks = data.len() as u64 / u64::from(self.geometry().block_size.max(1));
        self.gate(Op::Write, Some(lba..lba.saturating_add(blocks)))
            .await?;
        self.inner.write(lba, data, fua).await
    }

    async fn flush(&self) -> Result<(), BlockError> {
        self.gate(Op::Flush, None).await?;
        self.inner.flush().await
    }

    async fn discard(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        self.gate(Op::Discard, Some(lba..lba.saturating_add(blocks)))
            .await?;
        self.inner.discard(lba, blocks).await
    }

    async fn write_zeroes(&self, lba: u64, blocks: u64, unmap: bool) -> Result<(), BlockError> {
        self.gate(Op::WriteZeroes, Some(lba..lba.saturating_add(blocks)))
            .await?;
        self.inner.write_zeroes(lba, blocks, unmap).await
    }

    async fn write_zeroes_fast(
        &self,
        lba: u64,
        blocks: u64,
        unmap: bool,
    ) -> Result<(), BlockError> {
        self.gate(Op::WriteZeroes, Some(lba..lba.saturating_add(blocks)))
            .await?;
        self.inner.write_zeroes_fast(lba, blocks, unmap).await
    }

    async fn probe(&self) -> Result<(), BlockError> {
        self.gate(Op::Probe, None).await?;
        self.inner.probe().await
    }
}

impl Fault {
    /// Fails every operation with `kind`; narrow it with [`Fault::on`] and [`Fault::when`].
    pub fn fail(kind: ErrorKind) -> Self {
        Fault {
            ops: OpSet::ALL,
            trigger: Trigger::Always,
            action: FaultAction::Fail(kind),
        }
    }

    /// Delays every operation by `delay`; narrow it with [`Fault::on`] and [`Fault::when`].
    pub fn delay(delay: Duration) -> Self {
        Fault {
            ops: OpSet::ALL,
            trigger: Trigger::Always,
            action: FaultAction::Delay(delay),
        }
    }

    /// Watches only these operations.
    pub fn on(mut self, ops: impl Into<OpSet>) -> Self {
        self.ops = ops.into();
        self
    }

    /// Fires only on this trigger.
    pub fn when(mut self, trigger: Trigger) -> Self {
        self.trigger = trigger;
        self
    }
}

impl OpSet {
    /// Every operation.
    pub const ALL: OpSet = OpSet(0x3f);
    /// Reads and writes.
    pub const DATA: OpSet = OpSet(0x03);
    /// Operations that change the medium: write, discard, write-zeroes.
    pub const MODIFY: OpSet = OpSet(0x1a);

    /// Whether `op` is in the set.
    pub fn contains(self, op: Op) -> bool {
        self.0 & OpSet::from(op).0 != 0
    }
}

impl From<Op> for OpSet {
    fn from(op: Op) -> Self {
        OpSet(match op {
            Op::Read => 0x01,
            Op::Write => 0x02,
            Op::Flush => 0x04,
            Op::Discard => 0x08,
            Op::WriteZeroes => 0x10,
            Op::Probe => 0x20,
        })
    }
}

impl<T: Into<OpSet>> BitOr<T> for OpSet {
    type Output = OpSet;

    fn bitor(self, rhs: T) -> OpSet {
        OpSet(self.0 | rhs.into().0)
    }
}

impl<T: Into<OpSet>> BitOr<T> for Op {
    type Output = OpSet;

    fn bitor(self, rhs: T) -> OpSet {
        OpSet::from(self) | rhs
    }
}

impl Rules {
    /// Advances the counters of the rules watching `op` and returns the total delay and the
    /// first failure among those that fire.
    fn apply(&mut self, op: Op, blocks: Option<&Range<u64>>) -> (Duration, Option<ErrorKind>) {
        let mut delay = Duration::ZERO;
        let mut failure = None;
        for rule in self.active.iter_mut().filter(|r| r.fault.ops.contains(op)) {
            let index = rule.seen;
            rule.seen += 1;
            let fires = match &rule.fault.trigger {
                Trigger::Always => true,
                Trigger::Nth(n) => index == *n,
                Trigger::Range(r) => r.contains(&index),
                Trigger::Blocks(r) => blocks.is_some_and(|b| b.start < r.end && r.start < b.end),
            };
            match rule.fault.action {
                FaultAction::Delay(d) if fires => delay = delay.saturating_add(d),
                FaultAction::Fail(kind) if fires => failure = failure.or(Some(kind)),
                _ => {}
            }
        }
        (delay, failure)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::MemDisk;

    fn disk() -> FaultDisk<MemDisk> {
        FaultDisk::new(MemDisk::new(512, 64).unwrap())
    }

    fn kind<T>(r: Result<T, BlockError>) -> Option<ErrorKind> {
        r.err().map(|e| e.kind())
    }

    fn zeroed(len: usize) -> BytesMut {
        BytesMut::zeroed(len)
    }

    #[tokio::test]
    async fn test_nth_fires_once_on_watched_ops_only() {
        let d = disk();
        d.inject(
            Fault::fail(ErrorKind::Medium)
                .on(Op::Write)
                .when(Trigger::Nth(1)),
        );
        let buf = Bytes::from_static(&[0u8; 512]);
        assert_eq!(kind(d.read(0, zeroed(512)).await), None);
        assert_eq!(kind(d.write(0, buf.clone(), false).await), None);
        assert_eq!(kind(d.read(0, zeroed(512)).await), None);
        assert_eq!(
            kind(d.write(0, buf.clone(), false).await),
            Some(ErrorKind::Medium)
        );
        assert_eq!(kind(d.write(0, buf, false).await), None);
        assert_eq!(d.op_count(), 5);
        assert_eq!(d.inner().stats().writes, 2);
    }

    #[tokio::test]
    async fn test_range_and_blocks_triggers() {
        let d = disk();
        let id = d.inject(Fault::fail(ErrorKind::TargetFailure).when(Trigger::Range(1..3)));
        let results: Vec<_> = [
            d.flush().await,
            d.flush().await,
            d.probe().await,
            d.flush().await,
        ]
        .into_iter()
        .map(kind)
        .collect();
        let tf = Some(ErrorKind::TargetFailure);
        assert_eq!(results, vec![None, tf, tf, None]);
        assert!(d.remove(id));
        assert!(!d.remove(id));
        d.inject(
            Fault::fail(ErrorKind::Medium)
                .on(OpSet::ALL)
                .when(Trigger::Blocks(10..12)),
        );
        assert_eq!(kind(d.read(8, zeroed(1024)).await), None);
        assert_eq!(kind(d.read(9, zeroed(1024)).await), Some(ErrorKind::Medium));
        assert_eq!(kind(d.discard(11, 5).await), Some(ErrorKind::Medium));
        assert_eq!(kind(d.flush().await), None);
        d.clear();
        assert_eq!(kind(d.read(9, zeroed(1024)).await), None);
    }

    #[tokio::test(start_paused = true)]
    async fn test_delay_uses_the_tokio_clock() {
        let d = disk();
        d.inject(Fault::delay(Duration::from_secs(5)).on(Op::Flush | Op::Probe));
        let start = tokio::time::Instant::now();
        d.probe().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        d.read(0, zeroed(512)).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn test_dead_and_hung_paths() {
        let d = Arc::new(disk());
        d.set_path_state(PathState::Dead);
        assert_eq!(kind(d.probe().await), Some(ErrorKind::PathFailure));
        assert!(d.probe().await.unwrap_err().is_path_failure());
        d.set_path_state(PathState::Hung);
        let waiter = tokio::spawn({
            let d = Arc::clone(&d);
            async move { d.write(0, Bytes::from_static(&[5; 512]), false).await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiter.is_finished());
        d.set_path_state(PathState::Alive);
        assert_eq!(kind(waiter.await.unwrap()), None);
        let buf = d.read(0, zeroed(512)).await.unwrap();
        assert_eq!(&buf[..], &[5; 512]);
    }
}
