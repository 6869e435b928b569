//! Sequence numbers (CmdSN, StatSN, DataSN, R2TSN) compared with RFC 1982 serial number
//! arithmetic, SERIAL_BITS = 32 (RFC 7143 §4.2.2.1 and §4.2.2.2).
//!
//! Serial numbers are not totally ordered: two numbers 2^31 apart are neither less nor
//! greater than each other, which is why `Sn` implements no `Ord`.

use core::fmt;

/// A 32-bit serial number.
#[derive(Clone, Copy, Default, Eq, Hash, PartialEq)]
pub struct Sn(pub u32);

/// Half the serial number space: comparisons are defined only for distances below this.
const HALF: u32 = 1 << 31;

impl Sn {
    /// `self < other` per RFC 1982 §3.2.
    pub fn lt(self, other: Sn) -> bool {
        let d = other.0.wrapping_sub(self.0);
        d != 0 && d < HALF
    }

    /// `self <= other`.
    pub fn le(self, other: Sn) -> bool {
        self == other || self.lt(other)
    }

    /// `self > other` per RFC 1982 §3.2.
    pub fn gt(self, other: Sn) -> bool {
        other.lt(self)
    }

    /// `self >= other`.
    pub fn ge(self, other: Sn) -> bool {
        self == other || self.gt(other)
    }

    /// Serial addition (RFC 1982 §3.1). Only `n <= 2^31 - 1` is defined by the RFC; larger
    /// values wrap like any other.
    #[must_use]
    #[allow(clippy::should_implement_trait, reason = "also offered as `Sn + u32`")]
    pub fn add(self, n: u32) -> Sn {
        Sn(self.0.wrapping_add(n))
    }

    /// How far `to` lies after `self`: positive when `to` is later, negative when it is
    /// earlier. `i32::MIN` means the two are 2^31 apart, where order is undefined.
    pub fn distance(self, to: Sn) -> i32 {
        to.0.wrapping_sub(self.0) as i32
    }

    /// Whether `lo <= self <= hi` in serial order (e.g. a CmdSN inside the command window
    /// `[ExpCmdSN, MaxCmdSN]`).
    pub fn within(self, lo: Sn, hi: Sn) -> bool {
        lo.le(self) && self.le(hi)
    }
}

impl fmt::Debug for Sn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sn({})", self.0)
    }
}

impl core::ops::Add<u32> for Sn {
    type Output = Sn;

    fn add(self, n: u32) -> Sn {
        Sn(self.0.wrapping_add(n))
    }
}

impl From<u32> for Sn {
    fn from(value: u32) -> Self {
        Sn(value)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn rfc1982_examples() {
        // RFC 1982 §3.2 uses SERIAL_BITS = 2; these are the 32-bit analogues.
        assert!(Sn(0).lt(Sn(1)));
        assert!(Sn(u32::MAX).lt(Sn(0)));
        assert!(Sn(0).gt(Sn(u32::MAX)));
        assert!(Sn(0).lt(Sn(HALF - 1)));
        // Exactly half apart: undefined, neither lt nor gt.
        assert!(!Sn(0).lt(Sn(HALF)) && !Sn(0).gt(Sn(HALF)));
        assert_eq!(Sn(0).distance(Sn(HALF)), i32::MIN);
        assert_eq!(Sn(5).distance(Sn(3)), -2);
        assert_eq!(Sn(u32::MAX).add(2), Sn(1));
        assert_eq!(Sn(u32::MAX) + 2, Sn(1));
        // Closed command window: MaxCmdSN = ExpCmdSN - 1.
        assert!(!Sn(10).within(Sn(10), Sn(9)));
        assert!(Sn(u32::MAX).within(Sn(u32::MAX - 1), Sn(3)));
    }

    proptest! {
        #[test]
        fn add_is_greater(a: u32, n in 1u32..HALF) {
            let a = Sn(a);
            prop_assert!(a.lt(a.add(n)));
            prop_assert!(a.add(n).gt(a));
            prop_assert_eq!(a.distance(a.add(n)), n as i32);
        }

        #[test]
        fn trichotomy_except_at_half(a: u32, b: u32) {
            let (a, b) = (Sn(a), Sn(b));
            let defined = b.0.wrapping_sub(a.0) != HALF;
            let count = [a == b, a.lt(b), a.gt(b)].iter().filter(|&&x| x).count();
            prop_assert_eq!(count, usize::from(defined));
        }

        #[test]
        fn lt_is_antisymmetric(a: u32, b: u32) {
            prop_assert!(!(Sn(a).lt(Sn(b)) && Sn(b).lt(Sn(a))));
        }
    }
}
