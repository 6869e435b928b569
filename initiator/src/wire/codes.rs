//! Code points of the iSCSI PDUs (RFC 7143 §11 and the IANA "iSCSI Parameters" registry).
//!
//! Every code point is an open newtype: an unknown value is kept as-is (so it survives a parse /
//! emit round trip) and `Debug` prints the registered name when there is one.

use core::fmt;

sanshim_codepoint::code_point! {
    /// PDU opcode (RFC 7143 §11.2.1.2): the low six bits of byte 0 of the BHS.
    ///
    /// Opcodes `0x00..=0x1f` are sent by initiators, `0x20..=0x3f` by targets.
    #[derive(Default)]
    pub struct Opcode(u8) {
        /// NOP-Out (§11.18).
        NOP_OUT = 0x00,
        /// SCSI Command (§11.3).
        SCSI_COMMAND = 0x01,
        /// SCSI Task Management Function Request (§11.5).
        TASK_MGMT_REQUEST = 0x02,
        /// Login Request (§11.12).
        LOGIN_REQUEST = 0x03,
        /// Text Request (§11.10).
        TEXT_REQUEST = 0x04,
        /// SCSI Data-Out (§11.7).
        DATA_OUT = 0x05,
        /// Logout Request (§11.14).
        LOGOUT_REQUEST = 0x06,
        /// SNACK Request (§11.16).
        SNACK_REQUEST = 0x10,
        /// NOP-In (§11.19).
        NOP_IN = 0x20,
        /// SCSI Response (§11.4).
        SCSI_RESPONSE = 0x21,
        /// SCSI Task Management Function Response (§11.6).
        TASK_MGMT_RESPONSE = 0x22,
        /// Login Response (§11.13).
        LOGIN_RESPONSE = 0x23,
        /// Text Response (§11.11).
        TEXT_RESPONSE = 0x24,
        /// SCSI Data-In (§11.7).
        DATA_IN = 0x25,
        /// Logout Response (§11.15).
        LOGOUT_RESPONSE = 0x26,
        /// Ready To Transfer (§11.8).
        R2T = 0x31,
        /// Asynchronous Message (§11.9).
        ASYNC_MESSAGE = 0x32,
        /// Reject (§11.17).
        REJECT = 0x3f,
    }
}

impl Opcode {
    /// Whether initiators send this opcode (`0x00..=0x1f`); otherwise targets do.
    pub fn is_initiator(self) -> bool {
        self.0 & 0x3f < 0x20
    }

    /// Whether a PDU with this opcode may carry a data segment. Task management, logout,
    /// R2T and SNACK PDUs have DataSegmentLength 0 (RFC 7143 §11.5, §11.6, §11.8, §11.14-16).
    pub fn allows_data(self) -> bool {
        !matches!(
            self,
            Self::TASK_MGMT_REQUEST
                | Self::TASK_MGMT_RESPONSE
                | Self::LOGOUT_REQUEST
                | Self::LOGOUT_RESPONSE
                | Self::R2T
                | Self::SNACK_REQUEST
        )
    }

    /// Whether a PDU with this opcode may carry AHS: only the SCSI Command (RFC 7143
    /// §11.2.1.2: "TotalAHSLength ... MUST be 0 in all other PDUs").
    pub fn allows_ahs(self) -> bool {
        self == Self::SCSI_COMMAND
    }
}

sanshim_codepoint::code_point! {
    /// Login stage (RFC 7143 §11.12.3, CSG and NSG); 2 is reserved.
    #[derive(Default)]
    pub struct Stage(u8) {
        /// SecurityNegotiation.
        SECURITY = 0,
        /// LoginOperationalNegotiation.
        OPERATIONAL = 1,
        /// FullFeaturePhase.
        FULL_FEATURE = 3,
    }
}

sanshim_codepoint::code_point! {
    /// Login response status, `class << 8 | detail` (RFC 7143 §11.13.5).
    #[derive(Default)]
    pub struct LoginStatus(u16) {
        /// Login is proceeding OK.
        SUCCESS = 0x0000,
        /// The requested target has moved temporarily (see TargetAddress).
        TARGET_MOVED_TEMPORARILY = 0x0101,
        /// The requested target has moved permanently (see TargetAddress).
        TARGET_MOVED_PERMANENTLY = 0x0102,
        /// Miscellaneous initiator error.
        INITIATOR_ERROR = 0x0200,
        /// The initiator could not be authenticated.
        AUTHENTICATION_FAILURE = 0x0201,
        /// The initiator is not allowed access to the target.
        AUTHORIZATION_FAILURE = 0x0202,
        /// The requested target name does not exist here.
        NOT_FOUND = 0x0203,
        /// The requested target has been removed.
        TARGET_REMOVED = 0x0204,
        /// The requested iSCSI version range is not supported by the target.
        UNSUPPORTED_VERSION = 0x0205,
        /// Too many connections on this session.
        TOO_MANY_CONNECTIONS = 0x0206,
        /// A required parameter is missing.
        MISSING_PARAMETER = 0x0207,
        /// The target does not support session spanning to this connection.
        CANT_INCLUDE_IN_SESSION = 0x0208,
        /// The target does not support this type of session.
        SESSION_TYPE_NOT_SUPPORTED = 0x0209,
        /// An attempt to add a connection to a nonexistent session.
        SESSION_DOES_NOT_EXIST = 0x020a,
        /// Invalid request type during login.
        INVALID_DURING_LOGIN = 0x020b,
        /// The target has encountered a non-specific error.
        TARGET_ERROR = 0x0300,
        /// The target is currently unavailable.
        SERVICE_UNAVAILABLE = 0x0301,
        /// The target has insufficient resources.
        OUT_OF_RESOURCES = 0x0302,
    }
}

impl LoginStatus {
    /// Status class: 0 success, 1 redirection, 2 initiator error, 3 target error.
    pub fn class(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// Status detail within the class.
    pub fn detail(self) -> u8 {
        self.0 as u8
    }

    /// Builds a status from its class and detail bytes.
    pub fn from_parts(class: u8, detail: u8) -> Self {
        Self(u16::from(class) << 8 | u16::from(detail))
    }
}

sanshim_codepoint::code_point! {
    /// SCSI status byte (SAM-5 §5.3; carried in SCSI Response and Data-In).
    #[derive(Default)]
    pub struct ScsiStatus(u8) {
        /// The command completed.
        GOOD = 0x00,
        /// Sense data describe an error or exception.
        CHECK_CONDITION = 0x02,
        /// Condition met (PRE-FETCH).
        CONDITION_MET = 0x04,
        /// The logical unit is busy.
        BUSY = 0x08,
        /// Intermediate condition met (obsolete in SAM-5; linked commands).
        INTERMEDIATE_CONDITION_MET = 0x14,
        /// Another initiator holds a conflicting reservation.
        RESERVATION_CONFLICT = 0x18,
        /// The task set is full.
        TASK_SET_FULL = 0x28,
        /// An ACA condition exists.
        ACA_ACTIVE = 0x30,
        /// The command was aborted.
        TASK_ABORTED = 0x40,
    }
}

sanshim_codepoint::code_point! {
    /// Reject reason (RFC 7143 §11.17.1).
    #[derive(Default)]
    pub struct RejectReason(u8) {
        /// Data (payload) digest error.
        DATA_DIGEST_ERROR = 0x02,
        /// SNACK reject.
        SNACK_REJECT = 0x03,
        /// Protocol error (e.g. a SNACK for a status that was already acknowledged).
        PROTOCOL_ERROR = 0x04,
        /// Command not supported.
        COMMAND_NOT_SUPPORTED = 0x05,
        /// Immediate command rejected: too many immediate commands.
        IMMEDIATE_COMMAND_REJECT = 0x06,
        /// Task in progress.
        TASK_IN_PROGRESS = 0x07,
        /// Invalid data ack.
        INVALID_DATA_ACK = 0x08,
        /// Invalid PDU field.
        INVALID_PDU_FIELD = 0x09,
        /// Long operation rejected: cannot generate a Target Transfer Tag (out of resources).
        LONG_OP_REJECT = 0x0a,
        /// Deprecated; MUST NOT be used (was "negotiation reset").
        NEGOTIATION_RESET = 0x0b,
        /// Waiting for a logout.
        WAITING_FOR_LOGOUT = 0x0c,
    }
}

sanshim_codepoint::code_point! {
    /// Task management function (RFC 7143 §11.5.1), seven bits.
    #[derive(Default)]
    pub struct TmFunction(u8) {
        /// ABORT TASK.
        ABORT_TASK = 1,
        /// ABORT TASK SET.
        ABORT_TASK_SET = 2,
        /// CLEAR ACA.
        CLEAR_ACA = 3,
        /// CLEAR TASK SET.
        CLEAR_TASK_SET = 4,
        /// LOGICAL UNIT RESET.
        LOGICAL_UNIT_RESET = 5,
        /// TARGET WARM RESET.
        TARGET_WARM_RESET = 6,
        /// TARGET COLD RESET.
        TARGET_COLD_RESET = 7,
        /// TASK REASSIGN.
        TASK_REASSIGN = 8,
    }
}

sanshim_codepoint::code_point! {
    /// Task management function response (RFC 7143 §11.6.1).
    #[derive(Default)]
    pub struct TmResponse(u8) {
        /// Function complete.
        FUNCTION_COMPLETE = 0,
        /// Task does not exist.
        TASK_DOES_NOT_EXIST = 1,
        /// LUN does not exist.
        LUN_DOES_NOT_EXIST = 2,
        /// Task still allegiant.
        TASK_STILL_ALLEGIANT = 3,
        /// Task allegiance reassignment not supported.
        REASSIGNMENT_NOT_SUPPORTED = 4,
        /// Task management function not supported.
        NOT_SUPPORTED = 5,
        /// Function authorization failed.
        AUTHORIZATION_FAILED = 6,
        /// Function rejected.
        FUNCTION_REJECTED = 255,
    }
}

sanshim_codepoint::code_point! {
    /// Logout reason code (RFC 7143 §11.14.1), seven bits.
    #[derive(Default)]
    pub struct LogoutReason(u8) {
        /// Close the session.
        CLOSE_SESSION = 0,
        /// Close the connection.
        CLOSE_CONNECTION = 1,
        /// Remove the connection for recovery.
        REMOVE_FOR_RECOVERY = 2,
    }
}

sanshim_codepoint::code_point! {
    /// Logout response (RFC 7143 §11.15.1).
    #[derive(Default)]
    pub struct LogoutResponseCode(u8) {
        /// Connection or session closed successfully.
        SUCCESS = 0,
        /// CID not found.
        CID_NOT_FOUND = 1,
        /// Connection recovery is not supported.
        RECOVERY_NOT_SUPPORTED = 2,
        /// Cleanup failed for various reasons.
        CLEANUP_FAILED = 3,
    }
}

sanshim_codepoint::code_point! {
    /// Asynchronous event code (RFC 7143 §11.9.1).
    #[derive(Default)]
    pub struct AsyncEvent(u8) {
        /// A SCSI asynchronous event is reported in the sense data.
        SCSI_EVENT = 0,
        /// The target requests a logout.
        LOGOUT_REQUEST = 1,
        /// The target will drop the connection named in Parameter1.
        CONNECTION_DROP = 2,
        /// The target will drop all connections of the session.
        SESSION_DROP = 3,
        /// The target requests parameter negotiation.
        NEGOTIATION_REQUEST = 4,
        /// All active tasks of the LU named in the LUN field are being terminated.
        TASK_TERMINATION = 5,
        /// Vendor-specific event.
        VENDOR_SPECIFIC = 255,
    }
}

sanshim_codepoint::code_point! {
    /// SCSI task attribute (RFC 7143 §11.3.1, ATTR), three bits.
    #[derive(Default)]
    pub struct TaskAttr(u8) {
        /// Untagged.
        UNTAGGED = 0,
        /// Simple.
        SIMPLE = 1,
        /// Ordered.
        ORDERED = 2,
        /// Head of queue.
        HEAD_OF_QUEUE = 3,
        /// ACA.
        ACA = 4,
    }
}

sanshim_codepoint::code_point! {
    /// SNACK type (RFC 7143 §11.16.1), four bits.
    #[derive(Default)]
    pub struct SnackType(u8) {
        /// Data/R2T SNACK.
        DATA_R2T = 0,
        /// Status SNACK.
        STATUS = 1,
        /// DataACK.
        DATA_ACK = 2,
        /// R-Data SNACK.
        R_DATA = 3,
    }
}

/// Initiator Session ID (RFC 7143 §11.12.5): type (2 bits) + A (6), B (16), C (8), D (16).
#[derive(Clone, Copy, Default, Eq, Hash, PartialEq)]
pub struct Isid(pub [u8; 6]);

impl Isid {
    /// An ISID of the "Random" format (T = 10b, first byte 0x80): B and C hold the high 24
    /// bits of `qualifier`, D holds its low 8 bits.
    ///
    /// Pass a random `u32` for a fresh session identity, or a per-path counter so that
    /// sessions from one initiator to one target over several paths get distinct I_T nexuses.
    /// (The 0x40 prefix some stacks use is the IANA enterprise-number format, which requires
    /// a registered enterprise number in B and C.)
    pub fn random_qualifier(qualifier: u32) -> Isid {
        let q = qualifier.to_be_bytes();
        Isid([0x80, q[0], q[1], q[2], 0, q[3]])
    }

    /// The ISID format from the top two bits: 0 OUI, 1 IANA enterprise number, 2 random,
    /// 3 reserved.
    pub fn format(&self) -> u8 {
        self.0[0] >> 6
    }
}

impl fmt::Debug for Isid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Isid(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_names_and_unknown_values() {
        assert_eq!(format!("{:?}", Opcode::SCSI_COMMAND), "SCSI_COMMAND");
        assert_eq!(format!("{:?}", Opcode(0x1c)), "Opcode(0x1c)");
        assert_eq!(format!("{:?}", LoginStatus(0x0999)), "LoginStatus(0x999)");
        assert_eq!(
            format!("{:?}", Isid([0x80, 1, 2, 3, 4, 5])),
            "Isid(800102030405)"
        );
    }

    #[test]
    fn opcode_directions() {
        assert!(Opcode::SNACK_REQUEST.is_initiator());
        assert!(Opcode(0x1f).is_initiator());
        assert!(!Opcode::NOP_IN.is_initiator());
        assert!(!Opcode::REJECT.is_initiator());
        assert!(!Opcode::R2T.allows_data());
        assert!(Opcode::DATA_IN.allows_data());
        assert!(Opcode::SCSI_COMMAND.allows_ahs());
        assert!(!Opcode::SCSI_RESPONSE.allows_ahs());
    }

    #[test]
    fn login_status_parts() {
        let s = LoginStatus::AUTHENTICATION_FAILURE;
        assert_eq!((s.class(), s.detail()), (2, 1));
        assert_eq!(LoginStatus::from_parts(3, 2), LoginStatus::OUT_OF_RESOURCES);
    }

    #[test]
    fn isid_random_format() {
        let isid = Isid::random_qualifier(0x1234_5678);
        assert_eq!(isid.0, [0x80, 0x12, 0x34, 0x56, 0x00, 0x78]);
        assert_eq!(isid.format(), 2);
        assert_ne!(Isid::random_qualifier(1), Isid::random_qualifier(2));
    }
}
