//! The one SCSI retry policy (SAM-5 §5.3 status codes, SPC-5 §4.4 sense keys): which command
//! outcomes are worth sending again on the same path, how often, and after what pause.
//!
//! The session engine applies it when a command ends, so the wait happens on the engine's
//! clock (`now`), not in a sleeping caller:
//!
//! - UNIT ATTENTION: at once (the condition is reported once per I_T nexus and is gone on the
//!   next try), up to [`RetryPolicy::unit_attention`] times;
//! - BUSY and TASK SET FULL: after a pause doubling from 5 ms to 1 s, up to
//!   [`RetryPolicy::busy`] times;
//! - NOT READY while the unit becomes ready or an ALUA transition runs, and ABORTED COMMAND
//!   other than a protection information failure: after the same pauses, up to
//!   [`RetryPolicy::not_ready`] times.
//!
//! A power-on or reset unit attention (ASC 29h) on a command that made writes durable
//! (SYNCHRONIZE CACHE) is not retried when [`RetryPolicy::reset_ends_command`] is set: the
//! target's volatile cache may have lost writes it had acknowledged, and a second, successful
//! flush would hide that.

use std::time::Duration;

use super::{Sense, SenseKey};
use crate::wire::ScsiStatus;

/// Bounds of the retries of one command.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct RetryPolicy {
    /// Retries after UNIT ATTENTION.
    pub unit_attention: u8,
    /// Retries after BUSY or TASK SET FULL.
    pub busy: u8,
    /// Retries after NOT READY (becoming ready, ALUA transition) or ABORTED COMMAND.
    pub not_ready: u8,
    /// A power-on/reset UNIT ATTENTION (ASC 29h) ends the command instead of being retried.
    pub reset_ends_command: bool,
}

/// How often each condition has been retried so far.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct RetryCount {
    /// UNIT ATTENTION retries.
    pub unit_attention: u8,
    /// BUSY / TASK SET FULL retries.
    pub busy: u8,
    /// NOT READY / ABORTED COMMAND retries.
    pub not_ready: u8,
}

/// What to do with a finished command.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Verdict {
    /// Hand the outcome to the caller.
    Complete,
    /// Send the command again after this pause (zero: at once).
    Retry(Duration),
}

impl RetryPolicy {
    /// The policy for ordinary commands.
    pub const STANDARD: RetryPolicy = RetryPolicy {
        unit_attention: 8,
        busy: 12,
        not_ready: 12,
        reset_ends_command: false,
    };

    /// The policy for SYNCHRONIZE CACHE: as [`RetryPolicy::STANDARD`], but a power-on or
    /// reset unit attention ends the command.
    pub const FLUSH: RetryPolicy = RetryPolicy {
        reset_ends_command: true,
        ..RetryPolicy::STANDARD
    };

    /// Never retry.
    pub const NONE: RetryPolicy = RetryPolicy {
        unit_attention: 0,
        busy: 0,
        not_ready: 0,
        reset_ends_command: false,
    };

    /// Judges a command that ended with `status` (and `sense` for CHECK CONDITION), counting
    /// the retry in `count` when one is due.
    pub fn verdict(
        &self,
        status: ScsiStatus,
        sense: Option<&Sense>,
        count: &mut RetryCount,
    ) -> Verdict {
        match status {
            ScsiStatus::BUSY | ScsiStatus::TASK_SET_FULL => {
                bump(&mut count.busy, self.busy).map_or(Verdict::Complete, pause)
            }
            ScsiStatus::CHECK_CONDITION => match sense {
                Some(s) if s.key == SenseKey::UNIT_ATTENTION => {
                    if self.reset_ends_command && is_reset(s) {
                        return Verdict::Complete;
                    }
                    bump(&mut count.unit_attention, self.unit_attention)
                        .map_or(Verdict::Complete, |_| Verdict::Retry(Duration::ZERO))
                }
                Some(s) if s.is_retryable() => {
                    bump(&mut count.not_ready, self.not_ready).map_or(Verdict::Complete, pause)
                }
                _ => Verdict::Complete,
            },
            _ => Verdict::Complete,
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::STANDARD
    }
}

/// Whether a unit attention reports a power on, reset or I_T nexus loss (ASC 29h).
pub fn is_reset(sense: &Sense) -> bool {
    sense.key == SenseKey::UNIT_ATTENTION && sense.asc == 0x29
}

/// Counts one more retry unless `bound` is reached; returns the new count.
fn bump(count: &mut u8, bound: u8) -> Option<u8> {
    if *count >= bound {
        return None;
    }
    *count += 1;
    Some(*count)
}

/// The pause before retry number `n` (1-based): 5 ms doubling up to 1 s.
fn pause(n: u8) -> Verdict {
    let ms = 5u64 << u32::from(n.saturating_sub(1)).min(8);
    Verdict::Retry(Duration::from_millis(ms.min(1000)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sense(key: SenseKey, asc: u8, ascq: u8) -> Sense {
        Sense {
            key,
            asc,
            ascq,
            info: None,
            deferred: false,
        }
    }

    #[test]
    fn busy_backs_off_then_gives_up() {
        let p = RetryPolicy::STANDARD;
        let mut c = RetryCount::default();
        let mut pauses = Vec::new();
        while let Verdict::Retry(d) = p.verdict(ScsiStatus::BUSY, None, &mut c) {
            pauses.push(d.as_millis());
        }
        assert_eq!(pauses.len(), 12);
        assert_eq!(&pauses[..4], [5, 10, 20, 40]);
        assert_eq!(*pauses.last().unwrap(), 1000);
        assert_eq!(
            p.verdict(ScsiStatus::TASK_SET_FULL, None, &mut c),
            Verdict::Complete
        );
    }

    #[test]
    fn unit_attention_is_retried_at_once_and_bounded() {
        let p = RetryPolicy::STANDARD;
        let ua = sense(SenseKey::UNIT_ATTENTION, 0x2a, 0x09);
        let mut c = RetryCount::default();
        for _ in 0..8 {
            let v = p.verdict(ScsiStatus::CHECK_CONDITION, Some(&ua), &mut c);
            assert_eq!(v, Verdict::Retry(Duration::ZERO));
        }
        let v = p.verdict(ScsiStatus::CHECK_CONDITION, Some(&ua), &mut c);
        assert_eq!(v, Verdict::Complete);
    }

    #[test]
    fn a_flush_meeting_a_reset_is_not_retried() {
        let reset = sense(SenseKey::UNIT_ATTENTION, 0x29, 0x00);
        let mut c = RetryCount::default();
        let v = RetryPolicy::FLUSH.verdict(ScsiStatus::CHECK_CONDITION, Some(&reset), &mut c);
        assert_eq!(v, Verdict::Complete);
        let v = RetryPolicy::STANDARD.verdict(ScsiStatus::CHECK_CONDITION, Some(&reset), &mut c);
        assert_eq!(v, Verdict::Retry(Duration::ZERO));
        // Other unit attentions are retried for a flush as well.
        let changed = sense(SenseKey::UNIT_ATTENTION, 0x2a, 0x01);
        let v = RetryPolicy::FLUSH.verdict(ScsiStatus::CHECK_CONDITION, Some(&changed), &mut c);
        assert_eq!(v, Verdict::Retry(Duration::ZERO));
    }

    #[test]
    fn errors_that_will_not_change_complete() {
        let p = RetryPolicy::STANDARD;
        let mut c = RetryCount::default();
        for s in [
            sense(SenseKey::MEDIUM_ERROR, 0x11, 0x00),
            sense(SenseKey::ILLEGAL_REQUEST, 0x21, 0x00),
            sense(SenseKey::NOT_READY, 0x3a, 0x00),
        ] {
            let v = p.verdict(ScsiStatus::CHECK_CONDITION, Some(&s), &mut c);
            assert_eq!(v, Verdict::Complete, "{s}");
        }
        assert_eq!(
            p.verdict(ScsiStatus::CHECK_CONDITION, None, &mut c),
            Verdict::Complete
        );
        assert_eq!(p.verdict(ScsiStatus::GOOD, None, &mut c), Verdict::Complete);
        let becoming = sense(SenseKey::NOT_READY, 0x04, 0x01);
        let v = p.verdict(ScsiStatus::CHECK_CONDITION, Some(&becoming), &mut c);
        assert_eq!(v, Verdict::Retry(Duration::from_millis(5)));
        assert_eq!(
            RetryPolicy::NONE.verdict(ScsiStatus::BUSY, None, &mut c),
            Verdict::Complete
        );
    }
}
