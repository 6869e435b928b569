//! How a request's outcome travels from the driver back to the task that submitted it: a
//! one-shot slot, taken from a pool and returned to it, so that a request costs no
//! allocation for its reply once the pool is warm (a `tokio::sync::oneshot` allocates its
//! shared state per request).
//!
//! The driver holds the [`Reply`] end and fills it exactly once (an unfilled one reports
//! [`TaskError::SessionClosed`] when dropped); the submitter awaits the [`Waiting`] end,
//! which goes back to the pool once it has taken the outcome. A submitter that stops waiting
//! simply drops its end: the slot is then not reused, and is freed when the driver lets go.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::session::{Outcome, TaskError};

/// Slots kept for reuse at most (more may be in use).
const POOL_LIMIT: usize = 1024;

/// A pool of reply slots.
#[derive(Debug, Default)]
pub(crate) struct ReplyPool {
    free: Mutex<Vec<Arc<Slot>>>,
}

#[derive(Debug, Default)]
struct Slot {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    outcome: Option<Result<Outcome, TaskError>>,
    waker: Option<Waker>,
}

/// The driver's end of a slot.
#[derive(Debug)]
pub(crate) struct Reply(Option<Arc<Slot>>);

/// The submitter's end of a slot: a future of the outcome.
#[derive(Debug)]
pub(crate) struct Waiting {
    slot: Option<Arc<Slot>>,
    pool: Arc<ReplyPool>,
}

impl ReplyPool {
    /// A slot's two ends.
    pub fn pair(self: &Arc<ReplyPool>) -> (Reply, Waiting) {
        let slot = lock(&self.free).pop().unwrap_or_default();
        let waiting = Waiting {
            slot: Some(Arc::clone(&slot)),
            pool: Arc::clone(self),
        };
        (Reply(Some(slot)), waiting)
    }

    fn recycle(&self, slot: Arc<Slot>) {
        let mut free = lock(&self.free);
        if free.len() < POOL_LIMIT {
            free.push(slot);
        }
    }
}

impl Reply {
    /// Delivers the outcome and wakes the submitter.
    pub fn send(mut self, outcome: Result<Outcome, TaskError>) {
        if let Some(slot) = self.0.take() {
            fill(slot, outcome);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            fill(slot, Err(TaskError::SessionClosed));
        }
    }
}

/// Stores the outcome, lets go of the slot, then wakes: once the submitter sees the outcome
/// the driver holds no reference any more, so the slot can go back to the pool.
fn fill(slot: Arc<Slot>, outcome: Result<Outcome, TaskError>) {
    let waker = {
        let mut state = lock(&slot.state);
        state.outcome = Some(outcome);
        state.waker.take()
    };
    drop(slot);
    if let Some(w) = waker {
        w.wake();
    }
}

impl Future for Waiting {
    type Output = Result<Outcome, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(slot) = self.slot.as_ref() else {
            return Poll::Ready(Err(TaskError::SessionClosed));
        };
        let outcome = {
            let mut state = lock(&slot.state);
            match state.outcome.take() {
                Some(outcome) => {
                    state.waker = None;
                    outcome
                }
                None => {
                    match &state.waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => state.waker = Some(cx.waker().clone()),
                    }
                    return Poll::Pending;
                }
            }
        };
        if let Some(slot) = self.slot.take() {
            self.pool.recycle(slot);
        }
        Poll::Ready(outcome)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outcome_arrives_and_the_slot_is_reused() {
        let pool = Arc::new(ReplyPool::default());
        let (reply, waiting) = pool.pair();
        let first = Arc::as_ptr(reply.0.as_ref().unwrap());
        let task = tokio::spawn(waiting);
        tokio::task::yield_now().await;
        reply.send(Err(TaskError::Timeout));
        assert_eq!(task.await.unwrap().unwrap_err(), TaskError::Timeout);
        let (reply, _waiting) = pool.pair();
        assert_eq!(Arc::as_ptr(reply.0.as_ref().unwrap()), first, "reused");
    }

    #[tokio::test]
    async fn a_dropped_reply_closes_and_an_abandoned_wait_is_not_reused() {
        let pool = Arc::new(ReplyPool::default());
        let (reply, waiting) = pool.pair();
        drop(reply);
        assert_eq!(waiting.await.unwrap_err(), TaskError::SessionClosed);
        assert_eq!(lock(&pool.free).len(), 1, "the closed slot went back");
        let (reply, waiting) = pool.pair();
        drop(waiting);
        reply.send(Err(TaskError::Timeout));
        assert!(
            lock(&pool.free).is_empty(),
            "an abandoned slot is not reused"
        );
    }
}
