//! Additional sense codes and qualifiers (SPC-5 §4.4.2, table 50 — "ASC and ASCQ
//! assignments"; the full list is at t10.org/lists/asc-num.htm).

use std::fmt;

/// An ADDITIONAL SENSE CODE and ADDITIONAL SENSE CODE QUALIFIER pair, as `(asc << 8) | ascq`.
///
/// An open newtype: every value round-trips; [`AscAscq::name`] knows the common ones.
#[derive(Clone, Copy, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct AscAscq(pub u16);

impl AscAscq {
    /// NO ADDITIONAL SENSE INFORMATION.
    pub const NO_ADDITIONAL_SENSE: AscAscq = AscAscq(0x0000);
    /// LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE.
    pub const LU_NOT_READY: AscAscq = AscAscq(0x0400);
    /// LOGICAL UNIT IS IN PROCESS OF BECOMING READY.
    pub const LU_BECOMING_READY: AscAscq = AscAscq(0x0401);
    /// LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED.
    pub const LU_NOT_READY_INIT_REQUIRED: AscAscq = AscAscq(0x0402);
    /// LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED.
    pub const LU_NOT_READY_MANUAL_INTERVENTION: AscAscq = AscAscq(0x0403);
    /// LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION.
    pub const LU_NOT_ACCESSIBLE_ALUA_TRANSITION: AscAscq = AscAscq(0x040a);
    /// LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE.
    pub const LU_NOT_ACCESSIBLE_STANDBY: AscAscq = AscAscq(0x040b);
    /// LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE.
    pub const LU_NOT_ACCESSIBLE_UNAVAILABLE: AscAscq = AscAscq(0x040c);
    /// WRITE ERROR.
    pub const WRITE_ERROR: AscAscq = AscAscq(0x0c00);
    /// UNRECOVERED READ ERROR.
    pub const UNRECOVERED_READ_ERROR: AscAscq = AscAscq(0x1100);
    /// PARAMETER LIST LENGTH ERROR.
    pub const PARAMETER_LIST_LENGTH_ERROR: AscAscq = AscAscq(0x1a00);
    /// INVALID COMMAND OPERATION CODE.
    pub const INVALID_COMMAND_OPERATION_CODE: AscAscq = AscAscq(0x2000);
    /// LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const LBA_OUT_OF_RANGE: AscAscq = AscAscq(0x2100);
    /// INVALID FIELD IN CDB.
    pub const INVALID_FIELD_IN_CDB: AscAscq = AscAscq(0x2400);
    /// LOGICAL UNIT NOT SUPPORTED.
    pub const LU_NOT_SUPPORTED: AscAscq = AscAscq(0x2500);
    /// INVALID FIELD IN PARAMETER LIST.
    pub const INVALID_FIELD_IN_PARAMETER_LIST: AscAscq = AscAscq(0x2600);
    /// WRITE PROTECTED.
    pub const WRITE_PROTECTED: AscAscq = AscAscq(0x2700);
    /// SPACE ALLOCATION FAILED WRITE PROTECT (thin provisioning exhausted).
    pub const SPACE_ALLOCATION_FAILED_WRITE_PROTECT: AscAscq = AscAscq(0x2707);
    /// NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED.
    pub const NOT_READY_TO_READY_CHANGE: AscAscq = AscAscq(0x2800);
    /// POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
    pub const POWER_ON_RESET: AscAscq = AscAscq(0x2900);
    /// PARAMETERS CHANGED.
    pub const PARAMETERS_CHANGED: AscAscq = AscAscq(0x2a00);
    /// MODE PARAMETERS CHANGED.
    pub const MODE_PARAMETERS_CHANGED: AscAscq = AscAscq(0x2a01);
    /// ASYMMETRIC ACCESS STATE CHANGED.
    pub const ASYMMETRIC_ACCESS_STATE_CHANGED: AscAscq = AscAscq(0x2a06);
    /// CAPACITY DATA HAS CHANGED.
    pub const CAPACITY_DATA_CHANGED: AscAscq = AscAscq(0x2a09);
    /// THIN PROVISIONING SOFT THRESHOLD REACHED.
    pub const THIN_PROVISIONING_SOFT_THRESHOLD: AscAscq = AscAscq(0x3807);
    /// MEDIUM NOT PRESENT.
    pub const MEDIUM_NOT_PRESENT: AscAscq = AscAscq(0x3a00);
    /// INQUIRY DATA HAS CHANGED.
    pub const INQUIRY_DATA_CHANGED: AscAscq = AscAscq(0x3f03);
    /// REPORTED LUNS DATA HAS CHANGED.
    pub const REPORTED_LUNS_DATA_CHANGED: AscAscq = AscAscq(0x3f0e);
    /// INTERNAL TARGET FAILURE.
    pub const INTERNAL_TARGET_FAILURE: AscAscq = AscAscq(0x4400);

    /// The pair from its two bytes.
    pub const fn new(asc: u8, ascq: u8) -> Self {
        AscAscq(u16::from_be_bytes([asc, ascq]))
    }

    /// The ADDITIONAL SENSE CODE byte.
    pub const fn asc(self) -> u8 {
        self.0.to_be_bytes()[0]
    }

    /// The ADDITIONAL SENSE CODE QUALIFIER byte.
    pub const fn ascq(self) -> u8 {
        self.0.to_be_bytes()[1]
    }

    /// The standard's text for this pair, or `None` when this crate does not know it.
    pub fn name(self) -> Option<&'static str> {
        NAMES
            .binary_search_by_key(&self.0, |&(code, _)| code)
            .ok()
            .and_then(|i| NAMES.get(i).map(|&(_, name)| name))
    }
}

impl fmt::Debug for AscAscq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AscAscq({:#04x}/{:#04x}", self.asc(), self.ascq())?;
        if let Some(name) = self.name() {
            write!(f, " {name}")?;
        }
        f.write_str(")")
    }
}

/// `NAME (0xAA/0xQQ)`, or `ASC 0xAA ASCQ 0xQQ` for an unknown pair (vendor-specific pairs,
/// ASC 0x80 and above, are named as such).
impl fmt::Display for AscAscq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (asc, ascq) = (self.asc(), self.ascq());
        match self.name() {
            Some(name) => write!(f, "{name} ({asc:#04x}/{ascq:#04x})"),
            None if asc >= 0x80 || ascq >= 0x80 => {
                write!(f, "vendor-specific ({asc:#04x}/{ascq:#04x})")
            }
            None => write!(f, "ASC {asc:#04x} ASCQ {ascq:#04x}"),
        }
    }
}

/// Sorted by code, for binary search.
const NAMES: &[(u16, &str)] = &[
    (0x0000, "NO ADDITIONAL SENSE INFORMATION"),
    (0x0006, "I/O PROCESS TERMINATED"),
    (0x0016, "OPERATION IN PROGRESS"),
    (0x0200, "NO SEEK COMPLETE"),
    (0x0300, "PERIPHERAL DEVICE WRITE FAULT"),
    (0x0400, "LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE"),
    (0x0401, "LOGICAL UNIT IS IN PROCESS OF BECOMING READY"),
    (
        0x0402,
        "LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED",
    ),
    (
        0x0403,
        "LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED",
    ),
    (0x0404, "LOGICAL UNIT NOT READY, FORMAT IN PROGRESS"),
    (0x0405, "LOGICAL UNIT NOT READY, REBUILD IN PROGRESS"),
    (0x0406, "LOGICAL UNIT NOT READY, RECALCULATION IN PROGRESS"),
    (0x0407, "LOGICAL UNIT NOT READY, OPERATION IN PROGRESS"),
    (0x0408, "LOGICAL UNIT NOT READY, LONG WRITE IN PROGRESS"),
    (0x0409, "LOGICAL UNIT NOT READY, SELF-TEST IN PROGRESS"),
    (
        0x040a,
        "LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION",
    ),
    (
        0x040b,
        "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE",
    ),
    (
        0x040c,
        "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE",
    ),
    (0x040d, "LOGICAL UNIT NOT READY, STRUCTURE CHECK REQUIRED"),
    (
        0x0410,
        "LOGICAL UNIT NOT READY, AUXILIARY MEMORY NOT ACCESSIBLE",
    ),
    (
        0x0411,
        "LOGICAL UNIT NOT READY, NOTIFY (ENABLE SPINUP) REQUIRED",
    ),
    (0x0412, "LOGICAL UNIT NOT READY, OFFLINE"),
    (0x0413, "LOGICAL UNIT NOT READY, SA CREATION IN PROGRESS"),
    (
        0x0414,
        "LOGICAL UNIT NOT READY, SPACE ALLOCATION IN PROGRESS",
    ),
    (0x041b, "LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS"),
    (0x0500, "LOGICAL UNIT DOES NOT RESPOND TO SELECTION"),
    (0x0800, "LOGICAL UNIT COMMUNICATION FAILURE"),
    (0x0801, "LOGICAL UNIT COMMUNICATION TIME-OUT"),
    (0x0c00, "WRITE ERROR"),
    (0x0c02, "WRITE ERROR - AUTO REALLOCATION FAILED"),
    (0x0c03, "WRITE ERROR - RECOMMEND REASSIGNMENT"),
    (0x0c07, "WRITE ERROR - RECOVERY NEEDED"),
    (0x0c08, "WRITE ERROR - RECOVERY FAILED"),
    (0x0c0d, "WRITE ERROR - NOT ENOUGH UNSOLICITED DATA"),
    (0x1000, "ID CRC OR ECC ERROR"),
    (0x1001, "LOGICAL BLOCK GUARD CHECK FAILED"),
    (0x1002, "LOGICAL BLOCK APPLICATION TAG CHECK FAILED"),
    (0x1003, "LOGICAL BLOCK REFERENCE TAG CHECK FAILED"),
    (0x1100, "UNRECOVERED READ ERROR"),
    (0x1101, "READ RETRIES EXHAUSTED"),
    (0x1102, "ERROR TOO LONG TO CORRECT"),
    (0x1104, "UNRECOVERED READ ERROR - AUTO REALLOCATE FAILED"),
    (0x110b, "UNRECOVERED READ ERROR - RECOMMEND REASSIGNMENT"),
    (
        0x110c,
        "UNRECOVERED READ ERROR - RECOMMEND REWRITE THE DATA",
    ),
    (0x1401, "RECORD NOT FOUND"),
    (0x1a00, "PARAMETER LIST LENGTH ERROR"),
    (0x1d00, "MISCOMPARE DURING VERIFY OPERATION"),
    (0x2000, "INVALID COMMAND OPERATION CODE"),
    (0x2001, "ACCESS DENIED - INITIATOR PENDING-ENROLLED"),
    (0x2002, "ACCESS DENIED - NO ACCESS RIGHTS"),
    (0x2100, "LOGICAL BLOCK ADDRESS OUT OF RANGE"),
    (0x2101, "INVALID ELEMENT ADDRESS"),
    (0x2400, "INVALID FIELD IN CDB"),
    (0x2500, "LOGICAL UNIT NOT SUPPORTED"),
    (0x2600, "INVALID FIELD IN PARAMETER LIST"),
    (0x2601, "PARAMETER NOT SUPPORTED"),
    (0x2602, "PARAMETER VALUE INVALID"),
    (0x2700, "WRITE PROTECTED"),
    (0x2701, "HARDWARE WRITE PROTECTED"),
    (0x2702, "LOGICAL UNIT SOFTWARE WRITE PROTECTED"),
    (0x2707, "SPACE ALLOCATION FAILED WRITE PROTECT"),
    (0x2800, "NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED"),
    (0x2900, "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED"),
    (0x2901, "POWER ON OCCURRED"),
    (0x2902, "SCSI BUS RESET OCCURRED"),
    (0x2903, "BUS DEVICE RESET FUNCTION OCCURRED"),
    (0x2904, "DEVICE INTERNAL RESET"),
    (0x2907, "I_T NEXUS LOSS OCCURRED"),
    (0x2a00, "PARAMETERS CHANGED"),
    (0x2a01, "MODE PARAMETERS CHANGED"),
    (0x2a02, "LOG PARAMETERS CHANGED"),
    (0x2a03, "RESERVATIONS PREEMPTED"),
    (0x2a04, "RESERVATIONS RELEASED"),
    (0x2a05, "REGISTRATIONS PREEMPTED"),
    (0x2a06, "ASYMMETRIC ACCESS STATE CHANGED"),
    (0x2a07, "IMPLICIT ASYMMETRIC ACCESS STATE TRANSITION FAILED"),
    (0x2a09, "CAPACITY DATA HAS CHANGED"),
    (0x2a10, "TIMESTAMP CHANGED"),
    (0x2c00, "COMMAND SEQUENCE ERROR"),
    (0x2f00, "COMMANDS CLEARED BY ANOTHER INITIATOR"),
    (0x2f01, "COMMANDS CLEARED BY POWER LOSS NOTIFICATION"),
    (0x2f02, "COMMANDS CLEARED BY DEVICE SERVER"),
    (0x3100, "MEDIUM FORMAT CORRUPTED"),
    (0x3200, "NO DEFECT SPARE LOCATION AVAILABLE"),
    (0x3807, "THIN PROVISIONING SOFT THRESHOLD REACHED"),
    (0x3a00, "MEDIUM NOT PRESENT"),
    (0x3e00, "LOGICAL UNIT HAS NOT SELF-CONFIGURED YET"),
    (0x3e01, "LOGICAL UNIT FAILURE"),
    (0x3e02, "TIMEOUT ON LOGICAL UNIT"),
    (0x3e03, "LOGICAL UNIT FAILED SELF-TEST"),
    (0x3f00, "TARGET OPERATING CONDITIONS HAVE CHANGED"),
    (0x3f01, "MICROCODE HAS BEEN CHANGED"),
    (0x3f02, "CHANGED OPERATING DEFINITION"),
    (0x3f03, "INQUIRY DATA HAS CHANGED"),
    (0x3f0e, "REPORTED LUNS DATA HAS CHANGED"),
    (0x4400, "INTERNAL TARGET FAILURE"),
    (0x4700, "SCSI PARITY ERROR"),
    (0x4703, "INFORMATION UNIT iuCRC ERROR DETECTED"),
    (0x4800, "INITIATOR DETECTED ERROR MESSAGE RECEIVED"),
    (0x4900, "INVALID MESSAGE ERROR"),
    (0x4b00, "DATA PHASE ERROR"),
    (0x4b01, "INVALID TARGET PORT TRANSFER TAG RECEIVED"),
    (0x4b02, "TOO MUCH WRITE DATA"),
    (0x4b03, "ACK/NAK TIMEOUT"),
    (0x4b04, "NAK RECEIVED"),
    (0x4b05, "DATA OFFSET ERROR"),
    (0x4b06, "INITIATOR RESPONSE TIMEOUT"),
    (0x4c00, "LOGICAL UNIT FAILED SELF-CONFIGURATION"),
    (0x5302, "MEDIUM REMOVAL PREVENTED"),
    (0x5503, "INSUFFICIENT RESOURCES"),
    (0x5d00, "FAILURE PREDICTION THRESHOLD EXCEEDED"),
    (0x670a, "SET TARGET PORT GROUPS COMMAND FAILED"),
    (0x7471, "LOGICAL UNIT ACCESS NOT AUTHORIZED"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_for_binary_search() {
        assert!(NAMES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn names_and_display() {
        assert_eq!(AscAscq::new(0x21, 0x00), AscAscq::LBA_OUT_OF_RANGE);
        assert_eq!(
            AscAscq::LBA_OUT_OF_RANGE.to_string(),
            "LOGICAL BLOCK ADDRESS OUT OF RANGE (0x21/0x00)"
        );
        assert_eq!(
            AscAscq::new(0x27, 0x07).name(),
            Some("SPACE ALLOCATION FAILED WRITE PROTECT")
        );
        assert_eq!(
            AscAscq::new(0x3f, 0x0e).name(),
            Some("REPORTED LUNS DATA HAS CHANGED")
        );
        assert_eq!(
            AscAscq::new(0x2a, 0x06).name(),
            Some("ASYMMETRIC ACCESS STATE CHANGED")
        );
    }

    #[test]
    fn unknown_pairs_round_trip() {
        let odd = AscAscq::new(0x99, 0x42);
        assert_eq!((odd.asc(), odd.ascq()), (0x99, 0x42));
        assert_eq!(odd.name(), None);
        assert_eq!(odd.to_string(), "vendor-specific (0x99/0x42)");
        assert_eq!(AscAscq::new(0x5e, 0x41).to_string(), "ASC 0x5e ASCQ 0x41");
        assert_eq!(format!("{odd:?}"), "AscAscq(0x99/0x42)");
    }
}
