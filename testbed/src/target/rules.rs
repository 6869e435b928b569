//! Fault scripting: [`Rule`]s armed on a running [`crate::FakeTarget`].
//!
//! Rules are shared by every connection of the target. Each connection consults them as it
//! goes; a rule fires for its count and then disarms itself. A rule is taken by whichever
//! connection meets its condition first (for rules without a condition: the first
//! full-feature normal-session connection to look, which every connection does at least
//! every 50 ms and on every PDU it receives).

use sanshim_initiator::scsi::SenseKey;
use sanshim_initiator::wire::{AsyncEvent, LoginStatus, Opcode, RejectReason, ScsiStatus};

/// Sense key, ASC and ASCQ of a CHECK CONDITION (SPC-5 §4.4), sent as fixed-format sense.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct SenseCode {
    /// SENSE KEY.
    pub key: SenseKey,
    /// ADDITIONAL SENSE CODE.
    pub asc: u8,
    /// ADDITIONAL SENSE CODE QUALIFIER.
    pub ascq: u8,
}

impl SenseCode {
    /// UNIT ATTENTION, POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (0x29/0x00).
    pub const POWER_ON_RESET: SenseCode = SenseCode::new(SenseKey::UNIT_ATTENTION, 0x29, 0x00);
    /// UNIT ATTENTION, BUS DEVICE RESET FUNCTION OCCURRED (0x29/0x03): what a LOGICAL UNIT
    /// RESET leaves on the other I_T nexuses.
    pub const LU_RESET: SenseCode = SenseCode::new(SenseKey::UNIT_ATTENTION, 0x29, 0x03);
    /// NOT READY, LOGICAL UNIT IS IN PROCESS OF BECOMING READY (0x04/0x01).
    pub const BECOMING_READY: SenseCode = SenseCode::new(SenseKey::NOT_READY, 0x04, 0x01);
    /// UNIT ATTENTION, REPORTED LUNS DATA HAS CHANGED (0x3f/0x0e).
    pub const LUNS_CHANGED: SenseCode = SenseCode::new(SenseKey::UNIT_ATTENTION, 0x3f, 0x0e);
    /// MEDIUM ERROR, UNRECOVERED READ ERROR (0x11/0x00).
    pub const READ_ERROR: SenseCode = SenseCode::new(SenseKey::MEDIUM_ERROR, 0x11, 0x00);

    /// A sense code from its three parts.
    pub const fn new(key: SenseKey, asc: u8, ascq: u8) -> SenseCode {
        SenseCode { key, asc, ascq }
    }
}

/// One scripted fault. Each fires for its count (once when it has none) and then disarms.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Rule {
    /// Answer the next `count` SCSI commands (only those whose CDB starts with `opcode`, when
    /// given) with `status` and no data, without executing them; `sense` is sent for CHECK
    /// CONDITION. Any write data the initiator sends for such a command is discarded.
    Answer {
        /// SCSI operation code to match, or any command.
        opcode: Option<u8>,
        /// How many commands to answer this way.
        count: u32,
        /// Status to send: BUSY, TASK SET FULL, TASK ABORTED, RESERVATION CONFLICT, ...
        status: ScsiStatus,
        /// Sense data for CHECK CONDITION.
        sense: Option<SenseCode>,
    },
    /// Never answer the next `count` SCSI commands with this operation code: they are held
    /// until ABORT TASK or LOGICAL UNIT RESET drops them, the connection ends, or
    /// [`crate::FakeTarget::release_held`] carries them out. Held commands still advance
    /// ExpCmdSN.
    Hold {
        /// SCSI operation code to match.
        opcode: u8,
        /// How many commands to hold.
        count: u32,
    },
    /// Accept the next `count` SCSI commands with this (write) operation code and carry them
    /// out only `delay` later — even when their connection is gone by then, as targets that
    /// keep a dropped connection's tasks alive do (a "ghost write") — unless a LOGICAL UNIT
    /// RESET of their LUN comes first, from any connection. A command is answered when it is
    /// carried out, if its connection still exists; a live connection's periodic tick carries
    /// out the commands whose connection is gone.
    Defer {
        /// SCSI operation code to match (WRITE(10) 0x2a, WRITE(16) 0x8a).
        opcode: u8,
        /// How many commands to defer.
        count: u32,
        /// How long after their data arrived they are carried out.
        delay: std::time::Duration,
    },
    /// Send an Asynchronous Message (RFC 7143 §11.9) at the next opportunity, on one
    /// connection: event 0 SCSI event (with `sense`, LUN 1), 1 logout request (parameter3 =
    /// seconds to log out within), 2 connection drop (parameter1 CID, parameter2
    /// Time2Wait, parameter3 Time2Retain), 3 session drop, 4 negotiation request. The
    /// target sends the message and nothing more: it drops nothing by itself (combine with
    /// [`Rule::CloseAfter`] for that).
    Async {
        /// AsyncEvent code.
        event: AsyncEvent,
        /// Parameter1.
        parameter1: u16,
        /// Parameter2.
        parameter2: u16,
        /// Parameter3.
        parameter3: u16,
        /// Sense data for a SCSI event (sent as SenseLength + fixed-format sense).
        sense: Option<SenseCode>,
    },
    /// Answer the next PDU with this iSCSI opcode (for example `Opcode::NOP_OUT`,
    /// `Opcode::SCSI_COMMAND`) with a Reject of this reason carrying the PDU's BHS, instead
    /// of processing it. The Reject advances StatSN (RFC 7143 §11.17.3); a rejected
    /// non-immediate command still consumes its CmdSN.
    Reject {
        /// iSCSI opcode of the PDU to reject.
        opcode: Opcode,
        /// Reject reason, for example 0x04 protocol error, 0x09 invalid PDU field, 0x0c
        /// waiting for logout.
        reason: RejectReason,
    },
    /// Send the next Data-In that has data with a wrong data digest (the correct CRC32C
    /// with its lowest bit flipped). Waits armed while no connection uses data digests.
    CorruptDataDigest,
    /// The connection that takes this rule stops sending anything, for good, while it keeps
    /// the TCP connection open and keeps reading (and discarding) what arrives.
    GoSilent,
    /// The connection that takes this rule handles its next `n` received PDUs as usual, then
    /// closes the TCP connection (shutdown of both directions) without a Logout. `0` closes
    /// at once.
    CloseAfter(u32),
    /// Fail the next `count` logins with this status on their first Login Response (for
    /// example 0x0301 service unavailable), then close the connection.
    FailLogin {
        /// Login status class and detail.
        status: LoginStatus,
        /// How many logins to fail.
        count: u32,
    },
}

impl Rule {
    /// Answer the next `count` commands (any opcode) with BUSY.
    pub fn busy(count: u32) -> Rule {
        Rule::status(None, count, ScsiStatus::BUSY)
    }

    /// Answer the next `count` commands (any opcode, or `opcode` when given) with `status`
    /// and no sense.
    pub fn status(opcode: Option<u8>, count: u32, status: ScsiStatus) -> Rule {
        Rule::Answer {
            opcode,
            count,
            status,
            sense: None,
        }
    }

    /// Answer the next `count` commands (any opcode, or `opcode`) with CHECK CONDITION and
    /// this sense.
    pub fn check_condition(opcode: Option<u8>, count: u32, sense: SenseCode) -> Rule {
        Rule::Answer {
            opcode,
            count,
            status: ScsiStatus::CHECK_CONDITION,
            sense: Some(sense),
        }
    }

    /// An Async Message with `event` and all parameters zero.
    pub fn async_event(event: AsyncEvent) -> Rule {
        Rule::Async {
            event,
            parameter1: 0,
            parameter2: 0,
            parameter3: 0,
            sense: None,
        }
    }

    fn count(&self) -> u32 {
        match self {
            Rule::Answer { count, .. }
            | Rule::Hold { count, .. }
            | Rule::Defer { count, .. }
            | Rule::FailLogin { count, .. } => *count,
            _ => 1,
        }
    }
}

/// The armed rules of one target, each with the firings it has left.
#[derive(Debug, Default)]
pub(crate) struct Script {
    armed: Vec<(Rule, u32)>,
    fired: u64,
}

impl Script {
    pub(crate) fn arm(&mut self, rule: Rule) {
        let n = rule.count();
        if n > 0 {
            self.armed.push((rule, n));
        }
    }

    pub(crate) fn clear(&mut self) {
        self.armed.clear();
    }

    pub(crate) fn armed(&self) -> Vec<Rule> {
        self.armed.iter().map(|(r, _)| r.clone()).collect()
    }

    pub(crate) fn fired(&self) -> u64 {
        self.fired
    }

    /// Fires the first armed rule `pick` selects, returning what `pick` extracted from it.
    fn take<T>(&mut self, mut pick: impl FnMut(&Rule) -> Option<T>) -> Option<T> {
        let (i, value) = self
            .armed
            .iter()
            .enumerate()
            .find_map(|(i, (rule, _))| pick(rule).map(|v| (i, v)))?;
        let left = self.armed.get_mut(i).map(|(_, n)| {
            *n -= 1;
            *n
        });
        if left == Some(0) {
            self.armed.remove(i);
        }
        self.fired += 1;
        Some(value)
    }

    /// A scripted status for a SCSI command with this operation code.
    pub(crate) fn take_answer(&mut self, op: u8) -> Option<(ScsiStatus, Option<SenseCode>)> {
        self.take(|r| match r {
            Rule::Answer {
                opcode,
                status,
                sense,
                ..
            } if opcode.is_none_or(|o| o == op) => Some((*status, *sense)),
            _ => None,
        })
    }

    pub(crate) fn take_hold(&mut self, op: u8) -> bool {
        self.take(|r| matches!(r, Rule::Hold { opcode, .. } if *opcode == op).then_some(()))
            .is_some()
    }

    pub(crate) fn take_defer(&mut self, op: u8) -> Option<std::time::Duration> {
        self.take(|r| match r {
            Rule::Defer { opcode, delay, .. } if *opcode == op => Some(*delay),
            _ => None,
        })
    }

    pub(crate) fn take_reject(&mut self, op: Opcode) -> Option<RejectReason> {
        self.take(|r| match r {
            Rule::Reject { opcode, reason } if *opcode == op => Some(*reason),
            _ => None,
        })
    }

    pub(crate) fn take_async(&mut self) -> Option<Rule> {
        self.take(|r| matches!(r, Rule::Async { .. }).then(|| r.clone()))
    }

    pub(crate) fn take_corrupt(&mut self) -> bool {
        self.take(|r| matches!(r, Rule::CorruptDataDigest).then_some(()))
            .is_some()
    }

    pub(crate) fn take_silent(&mut self) -> bool {
        self.take(|r| matches!(r, Rule::GoSilent).then_some(()))
            .is_some()
    }

    pub(crate) fn take_close_after(&mut self) -> Option<u32> {
        self.take(|r| match r {
            Rule::CloseAfter(n) => Some(*n),
            _ => None,
        })
    }

    pub(crate) fn take_fail_login(&mut self) -> Option<LoginStatus> {
        self.take(|r| match r {
            Rule::FailLogin { status, .. } => Some(*status),
            _ => None,
        })
    }

    /// Whether any rule of the kinds a connection checks while idle is armed (a cheap test
    /// before taking the lock's contents apart).
    pub(crate) fn has_idle_work(&self) -> bool {
        self.armed
            .iter()
            .any(|(r, _)| matches!(r, Rule::Async { .. } | Rule::GoSilent | Rule::CloseAfter(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_fire_for_their_count_then_disarm() {
        let mut s = Script::default();
        s.arm(Rule::status(Some(0x28), 2, ScsiStatus::BUSY));
        assert_eq!(s.take_answer(0x2a), None);
        assert_eq!(s.take_answer(0x28), Some((ScsiStatus::BUSY, None)));
        assert_eq!(s.take_answer(0x28), Some((ScsiStatus::BUSY, None)));
        assert_eq!(s.take_answer(0x28), None);
        assert_eq!(s.fired(), 2);
        assert!(s.armed().is_empty());
    }

    #[test]
    fn single_shot_rules() {
        let mut s = Script::default();
        s.arm(Rule::GoSilent);
        s.arm(Rule::Hold {
            opcode: 0x28,
            count: 0,
        });
        assert_eq!(s.armed(), vec![Rule::GoSilent]);
        assert!(s.has_idle_work());
        assert!(s.take_silent());
        assert!(!s.take_silent());
        assert!(!s.has_idle_work());
    }
}
