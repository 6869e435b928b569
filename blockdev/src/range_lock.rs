//! [`RangeLock`]: shared and exclusive locks over ranges of blocks, granted first come, first
//! served among requests that conflict.
//!
//! Two requests conflict when their ranges overlap and at least one is exclusive. A request is
//! granted once no earlier request (held or still waiting) conflicts with it, so an exclusive
//! request is never starved by a stream of shared ones that keep overlapping it, and requests
//! that do not conflict never wait for each other. Dropping a guard — or the future of a request
//! not yet granted — withdraws the request and wakes the waiters.

use std::ops::Range;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Locks over block ranges; see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct RangeLock {
    state: Mutex<State>,
    released: Notify,
}

/// A granted (or, while its request is pending, requested) range; dropping it releases it.
#[derive(Debug)]
pub(crate) struct RangeGuard<'a> {
    lock: &'a RangeLock,
    ticket: u64,
}

#[derive(Debug, Default)]
struct State {
    next_ticket: u64,
    /// Held and waiting requests, in ticket order.
    entries: Vec<Entry>,
}

#[derive(Clone, Debug)]
struct Entry {
    ticket: u64,
    range: Range<u64>,
    exclusive: bool,
}

impl RangeLock {
    /// Waits until `range` is granted, shared or `exclusive`.
    pub(crate) async fn lock(&self, range: Range<u64>, exclusive: bool) -> RangeGuard<'_> {
        let ticket = {
            let mut state = self.state();
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.entries.push(Entry {
                ticket,
                range,
                exclusive,
            });
            ticket
        };
        // Made before the first check, so that a cancelled wait still withdraws the request.
        let guard = RangeGuard { lock: self, ticket };
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check: a release between the check and the wait wakes it.
            released.as_mut().enable();
            if self.granted(ticket) {
                return guard;
            }
            released.await;
        }
    }

    /// How many requests are held or waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state().entries.len()
    }

    fn granted(&self, ticket: u64) -> bool {
        let state = self.state();
        let Some(pos) = state.entries.iter().position(|e| e.ticket == ticket) else {
            return false;
        };
        let me = &state.entries[pos];
        !state.entries[..pos].iter().any(|e| e.conflicts(me))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding it: entries are only
        // pushed and removed whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        self.lock
            .state()
            .entries
            .retain(|e| e.ticket != self.ticket);
        self.lock.released.notify_waiters();
    }
}

impl Entry {
    fn conflicts(&self, other: &Entry) -> bool {
        let overlap = self.range.start < other.range.end && other.range.start < self.range.end;
        overlap && (self.exclusive || other.exclusive)
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// Polls `f` once: whether it completed.
    fn ready<F: Future>(f: std::pin::Pin<&mut F>) -> Option<F::Output> {
        match f.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }

    #[test]
    fn test_shared_overlap_exclusive_waits() {
        let lock = RangeLock::default();
        let a = ready(pin!(lock.lock(0..4, false))).unwrap();
        let b = ready(pin!(lock.lock(2..6, false))).unwrap();
        // Disjoint exclusive: granted at once.
        let c = ready(pin!(lock.lock(6..8, true))).unwrap();
        let mut x = pin!(lock.lock(3..7, true));
        assert!(ready(x.as_mut()).is_none(), "overlaps a, b and c");
        drop((a, b));
        assert!(ready(x.as_mut()).is_none(), "still overlaps c");
        drop(c);
        let x = ready(x.as_mut()).unwrap();
        assert_eq!(lock.len(), 1);
        drop(x);
        assert_eq!(lock.len(), 0);
    }

    #[test]
    fn test_first_come_first_served_and_cancellation() {
        let lock = RangeLock::default();
        let shared = ready(pin!(lock.lock(0..8, false))).unwrap();
        let mut exclusive = pin!(lock.lock(4..5, true));
        assert!(ready(exclusive.as_mut()).is_none());
        // A later shared request overlapping the waiting exclusive one queues behind it...
        let mut later = pin!(lock.lock(0..8, false));
        assert!(ready(later.as_mut()).is_none());
        // ...but one that does not overlap it goes ahead.
        let aside = ready(pin!(lock.lock(6..8, false))).unwrap();
        drop(shared);
        let exclusive = ready(exclusive.as_mut()).unwrap();
        assert!(ready(later.as_mut()).is_none());
        drop(exclusive);
        let later = ready(later.as_mut()).unwrap();
        drop((later, aside));
        // A request dropped while waiting leaves nothing behind.
        let held = ready(pin!(lock.lock(0..1, true))).unwrap();
        {
            let mut waiting = pin!(lock.lock(0..1, true));
            assert!(ready(waiting.as_mut()).is_none());
            assert_eq!(lock.len(), 2);
        }
        assert_eq!(lock.len(), 1);
        drop(held);
        assert_eq!(lock.len(), 0);
    }

    #[tokio::test]
    async fn test_waiters_wake_on_release() {
        let lock = std::sync::Arc::new(RangeLock::default());
        let held = lock.lock(0..10, true).await;
        let waiter = tokio::spawn({
            let lock = std::sync::Arc::clone(&lock);
            async move {
                let _g = lock.lock(5..6, true).await;
            }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        waiter.await.unwrap();
        assert_eq!(lock.len(), 0);
    }
}
