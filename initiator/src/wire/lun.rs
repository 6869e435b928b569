//! SCSI logical unit numbers as carried in iSCSI PDUs (RFC 7143 §11.2.1.3; SAM-5 §4.7).
//!
//! The 8-byte LUN field holds a SAM LUN structure. For a single-level LUN the first two bytes
//! select the addressing method: peripheral device addressing (`00b`, LUN < 256), flat space
//! addressing (`01b`, LUN < 16384) or extended flat space (`11b`, length-tagged, 24 or 40
//! bits).

use core::fmt;

/// An 8-byte SAM logical unit number, exactly as it appears on the wire.
#[derive(Clone, Copy, Default, Eq, Hash, PartialEq)]
pub struct Lun(pub [u8; 8]);

impl Lun {
    /// Encodes a single-level LUN number the way targets report it: peripheral device
    /// addressing below 256, flat space below 16384, extended flat space (0xD2, 24 bits) and
    /// long extended flat space (0xE2, 40 bits) above. Numbers of 2^40 and more cannot be
    /// single-level LUNs; they are taken as the raw 8-byte big-endian LUN structure.
    pub fn from_number(n: u64) -> Lun {
        let b = n.to_be_bytes();
        match n {
            0..=0xff => Lun([0, b[7], 0, 0, 0, 0, 0, 0]),
            0x100..=0x3fff => Lun([0x40 | b[6], b[7], 0, 0, 0, 0, 0, 0]),
            0x4000..=0xff_ffff => Lun([0xd2, b[5], b[6], b[7], 0, 0, 0, 0]),
            0x100_0000..=0xff_ffff_ffff => Lun([0xe2, b[3], b[4], b[5], b[6], b[7], 0, 0]),
            _ => Lun(b),
        }
    }

    /// The single-level LUN number, or `None` for structures `from_number` does not produce
    /// (hierarchical LUNs, bus identifiers, logical unit addressing, well-known LUNs).
    pub fn number(&self) -> Option<u64> {
        let b = self.0;
        let tail_zero = |from: usize| b.iter().skip(from).all(|&x| x == 0);
        match b[0] {
            0x00 if tail_zero(2) => Some(u64::from(b[1])),
            0x40..=0x7f if tail_zero(2) => Some(u64::from(b[0] & 0x3f) << 8 | u64::from(b[1])),
            0xd2 if tail_zero(4) => Some(u64::from_be_bytes([0, 0, 0, 0, 0, b[1], b[2], b[3]])),
            0xe2 if tail_zero(6) => {
                Some(u64::from_be_bytes([0, 0, 0, b[1], b[2], b[3], b[4], b[5]]))
            }
            _ => None,
        }
    }

    /// The eight bytes as one big-endian integer (how iBFT and `lun_raw` print it).
    pub fn raw(&self) -> u64 {
        u64::from_be_bytes(self.0)
    }
}

impl fmt::Debug for Lun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.number() {
            Some(n) => write!(f, "Lun({n})"),
            None => write!(f, "Lun({:#018x})", self.raw()),
        }
    }
}

impl From<u64> for Lun {
    fn from(n: u64) -> Self {
        Lun::from_number(n)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(Lun::from_number(0).0, [0; 8]);
        assert_eq!(Lun::from_number(1).0, [0x00, 0x01, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Lun::from_number(255).0, [0x00, 0xff, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Lun::from_number(256).0, [0x41, 0x00, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Lun::from_number(16383).0, [0x7f, 0xff, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            Lun::from_number(16384).0,
            [0xd2, 0x00, 0x40, 0x00, 0, 0, 0, 0]
        );
        assert_eq!(Lun::from_number(1 << 24).0, [0xe2, 0, 0x01, 0, 0, 0, 0, 0]);
        assert_eq!(Lun::from_number(1).raw(), 0x0001_0000_0000_0000);
    }

    #[test]
    fn non_single_level_luns_have_no_number() {
        // Peripheral addressing with bus 1.
        assert_eq!(Lun([0x01, 0x05, 0, 0, 0, 0, 0, 0]).number(), None);
        // Two-level hierarchical LUN.
        assert_eq!(Lun([0x00, 0x01, 0x00, 0x02, 0, 0, 0, 0]).number(), None);
        // REPORT LUNS well-known LUN.
        assert_eq!(Lun([0xc1, 0x01, 0, 0, 0, 0, 0, 0]).number(), None);
    }

    proptest! {
        #[test]
        fn number_round_trips(n in 0u64..(1 << 40)) {
            prop_assert_eq!(Lun::from_number(n).number(), Some(n));
        }
    }
}
