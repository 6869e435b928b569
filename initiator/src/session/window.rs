//! Command and status numbering of one connection (RFC 7143 §4.2.2): the CmdSN window
//! `[ExpCmdSN, MaxCmdSN]` the target grants, and the StatSN we acknowledge with ExpStatSN.

use crate::wire::Sn;

/// CmdSN / ExpCmdSN / MaxCmdSN / ExpStatSN of a connection.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct Window {
    /// CmdSN of the next non-immediate command.
    pub cmd_sn: u32,
    /// The target's ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// The target's MaxCmdSN.
    pub max_cmd_sn: u32,
    /// The StatSN we expect next (sent as ExpStatSN).
    pub exp_stat_sn: u32,
}

/// How a StatSN compares with the one expected.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum StatSnError {
    /// A status was skipped: one of our responses is lost.
    Gap,
    /// A status number already seen.
    Stale,
}

impl Window {
    /// Whether a non-immediate command may be sent now: CmdSN <= MaxCmdSN. A closed window
    /// has MaxCmdSN = ExpCmdSN - 1.
    pub fn is_open(&self) -> bool {
        Sn(self.cmd_sn).le(Sn(self.max_cmd_sn))
    }

    /// Takes the CmdSN for a non-immediate command and advances it.
    pub fn take_cmd_sn(&mut self) -> u32 {
        let sn = self.cmd_sn;
        self.cmd_sn = sn.wrapping_add(1);
        sn
    }

    /// Applies ExpCmdSN and MaxCmdSN from a target PDU. RFC 7143 §4.2.2.1: values with
    /// MaxCmdSN < ExpCmdSN - 1 are ignored, and so are values older than what we have.
    pub fn update(&mut self, exp_cmd_sn: u32, max_cmd_sn: u32) {
        if Sn(max_cmd_sn).lt(Sn(exp_cmd_sn.wrapping_sub(1))) {
            return;
        }
        // ExpCmdSN can never pass the CmdSN we have used.
        if Sn(exp_cmd_sn).gt(Sn(self.exp_cmd_sn)) && Sn(exp_cmd_sn).le(Sn(self.cmd_sn)) {
            self.exp_cmd_sn = exp_cmd_sn;
        }
        if Sn(max_cmd_sn).gt(Sn(self.max_cmd_sn)) {
            self.max_cmd_sn = max_cmd_sn;
        }
    }

    /// Acknowledges a StatSN that the PDU consumes; under ERL 0 anything but the expected
    /// number is an error.
    pub fn ack_stat_sn(&mut self, stat_sn: u32) -> Result<(), StatSnError> {
        match Sn(self.exp_stat_sn).distance(Sn(stat_sn)) {
            0 => {
                self.exp_stat_sn = stat_sn.wrapping_add(1);
                Ok(())
            }
            d if d > 0 => Err(StatSnError::Gap),
            _ => Err(StatSnError::Stale),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(cmd_sn: u32, max: u32) -> Window {
        Window {
            cmd_sn,
            exp_cmd_sn: cmd_sn,
            max_cmd_sn: max,
            exp_stat_sn: 7,
        }
    }

    #[test]
    fn closed_window_is_max_below_exp() {
        let mut w = window(10, 9);
        assert!(!w.is_open());
        w.update(10, 10);
        assert!(w.is_open());
        assert_eq!(w.take_cmd_sn(), 10);
        assert!(!w.is_open());
    }

    #[test]
    fn invalid_and_stale_updates_are_ignored() {
        let mut w = window(10, 20);
        w.update(10, 5); // MaxCmdSN < ExpCmdSN - 1
        assert_eq!(w.max_cmd_sn, 20);
        w.update(10, 15); // older
        assert_eq!(w.max_cmd_sn, 20);
        w.update(11, 21); // ExpCmdSN beyond our CmdSN
        assert_eq!((w.exp_cmd_sn, w.max_cmd_sn), (10, 21));
    }

    #[test]
    fn window_wraps() {
        let mut w = window(u32::MAX, 1);
        assert!(w.is_open());
        assert_eq!(w.take_cmd_sn(), u32::MAX);
        assert_eq!(w.take_cmd_sn(), 0);
        assert!(w.is_open());
    }

    #[test]
    fn stat_sn_gaps_and_stale() {
        let mut w = window(1, 1);
        assert_eq!(w.ack_stat_sn(7), Ok(()));
        assert_eq!(w.ack_stat_sn(9), Err(StatSnError::Gap));
        assert_eq!(w.ack_stat_sn(7), Err(StatSnError::Stale));
        assert_eq!(w.ack_stat_sn(8), Ok(()));
    }
}
