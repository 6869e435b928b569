//! Errors of the wire layer, split by who is at fault (STYLE rule 7): a malformed PDU
//! ([`InvalidPdu`]), a framing or digest failure ([`DecodeError`]) and malformed text
//! key=value data ([`TextError`]). Each maps to the iSCSI Reject reason that answers it.

use core::fmt;

use crate::wire::codes::{Opcode, RejectReason};

/// Which end of a connection a codec works for, or which end sent a PDU.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Role {
    /// The iSCSI initiator.
    Initiator,
    /// The iSCSI target.
    Target,
}

impl Role {
    /// The other end.
    pub fn peer(self) -> Role {
        match self {
            Role::Initiator => Role::Target,
            Role::Target => Role::Initiator,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Initiator => "initiator",
            Role::Target => "target",
        })
    }
}

/// A PDU that breaks RFC 7143 §11: the peer sent something malformed.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidPdu {
    /// The opcode is not one RFC 7143 defines.
    #[error("unknown opcode {opcode:?}")]
    UnknownOpcode {
        /// The opcode received.
        opcode: Opcode,
    },
    /// An opcode only the receiver's own role may send (e.g. a target sent a SCSI Command).
    #[error("{opcode:?} is sent by the {receiver}, yet the {receiver} received it")]
    WrongDirection {
        /// The opcode received.
        opcode: Opcode,
        /// The role of the end that received it.
        receiver: Role,
    },
    /// A header field holds a value RFC 7143 forbids.
    #[error("{opcode:?}: invalid {field}: {reason}")]
    Field {
        /// The PDU's opcode.
        opcode: Opcode,
        /// The BHS field name as RFC 7143 spells it.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// DataSegmentLength disagrees with the data segment handed to the parser.
    #[error("{opcode:?}: DataSegmentLength is {declared} but the data segment is {actual} bytes")]
    DataLength {
        /// The PDU's opcode.
        opcode: Opcode,
        /// DataSegmentLength from the BHS.
        declared: u32,
        /// Length of the data segment handed over.
        actual: usize,
    },
    /// TotalAHSLength disagrees with the AHS bytes handed to the parser.
    #[error("{opcode:?}: TotalAHSLength is {declared} words but the AHS is {actual} bytes")]
    AhsLength {
        /// The PDU's opcode.
        opcode: Opcode,
        /// TotalAHSLength from the BHS, in 4-byte words.
        declared: u8,
        /// Length of the AHS handed over.
        actual: usize,
    },
    /// A data segment on a PDU type that has none (RFC 7143: DataSegmentLength MUST be 0).
    #[error("{opcode:?} must not carry a data segment, but DataSegmentLength is {len}")]
    UnexpectedData {
        /// The PDU's opcode.
        opcode: Opcode,
        /// DataSegmentLength from the BHS.
        len: u32,
    },
    /// AHS on a PDU type other than the SCSI Command (RFC 7143 §11.2.1.2).
    #[error("{opcode:?} must not carry AHS, but TotalAHSLength is {words} words")]
    UnexpectedAhs {
        /// The PDU's opcode.
        opcode: Opcode,
        /// TotalAHSLength from the BHS, in 4-byte words.
        words: u8,
    },
    /// An Additional Header Segment that is truncated, of unknown type or repeated.
    #[error("{opcode:?}: malformed AHS: {reason}")]
    Ahs {
        /// The PDU's opcode.
        opcode: Opcode,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl InvalidPdu {
    /// The Reject reason (RFC 7143 §11.17.1) that answers this PDU.
    pub fn reject_reason(&self) -> RejectReason {
        match self {
            InvalidPdu::UnknownOpcode { .. } => RejectReason::COMMAND_NOT_SUPPORTED,
            InvalidPdu::Field { .. } | InvalidPdu::Ahs { .. } => RejectReason::INVALID_PDU_FIELD,
            InvalidPdu::WrongDirection { .. }
            | InvalidPdu::DataLength { .. }
            | InvalidPdu::AhsLength { .. }
            | InvalidPdu::UnexpectedData { .. }
            | InvalidPdu::UnexpectedAhs { .. } => RejectReason::PROTOCOL_ERROR,
        }
    }

    /// The opcode of the offending PDU.
    pub fn opcode(&self) -> Opcode {
        match *self {
            InvalidPdu::UnknownOpcode { opcode }
            | InvalidPdu::WrongDirection { opcode, .. }
            | InvalidPdu::Field { opcode, .. }
            | InvalidPdu::DataLength { opcode, .. }
            | InvalidPdu::AhsLength { opcode, .. }
            | InvalidPdu::UnexpectedData { opcode, .. }
            | InvalidPdu::UnexpectedAhs { opcode, .. }
            | InvalidPdu::Ahs { opcode, .. } => opcode,
        }
    }
}

/// Failure to frame a PDU from the byte stream ([`crate::wire::Codec::decode`]).
///
/// Digest values: `expected` is the CRC32C computed over the bytes received, `actual` the
/// digest the PDU carried.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The PDU is malformed.
    #[error(transparent)]
    Invalid(#[from] InvalidPdu),
    /// The header digest does not match: nothing after this point of the stream can be
    /// trusted (RFC 7143 §7.8: discard up to a later PDU, or close the connection).
    #[error("header digest mismatch: computed {expected:#010x}, received {actual:#010x}")]
    HeaderDigest {
        /// CRC32C over the BHS and AHS as received.
        expected: u32,
        /// Header digest carried by the PDU.
        actual: u32,
    },
    /// The data digest does not match; the PDU has been consumed (its framing was sound).
    #[error(
        "data digest mismatch on ITT {itt:#x}: computed {expected:#010x}, received {actual:#010x}"
    )]
    DataDigest {
        /// Initiator Task Tag of the PDU.
        itt: u32,
        /// CRC32C over data segment and padding as received.
        expected: u32,
        /// Data digest carried by the PDU.
        actual: u32,
    },
    /// DataSegmentLength exceeds what we declared in MaxRecvDataSegmentLength.
    #[error("data segment of {len} bytes exceeds MaxRecvDataSegmentLength {max}")]
    TooLong {
        /// DataSegmentLength from the BHS.
        len: u32,
        /// Our MaxRecvDataSegmentLength.
        max: u32,
    },
}

impl DecodeError {
    /// The Reject reason (RFC 7143 §11.17.1) that answers this error. A header digest error
    /// is normally not answered at all (the header cannot be trusted); it maps to
    /// `PROTOCOL_ERROR` for callers that must say something.
    pub fn reject_reason(&self) -> RejectReason {
        match self {
            DecodeError::Invalid(e) => e.reject_reason(),
            DecodeError::DataDigest { .. } => RejectReason::DATA_DIGEST_ERROR,
            DecodeError::HeaderDigest { .. } | DecodeError::TooLong { .. } => {
                RejectReason::PROTOCOL_ERROR
            }
        }
    }
}

/// Malformed or oversized text key=value data (RFC 7143 §6.1).
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// The last key=value pair is not terminated by a NUL byte.
    #[error("text data does not end with a NUL delimiter")]
    Unterminated,
    /// A pair has no `=`.
    #[error("key=value pair at byte {offset} has no '='")]
    MissingEquals {
        /// Offset of the pair in the text data.
        offset: usize,
    },
    /// A key is empty, longer than 63 bytes or uses characters outside `[A-Za-z0-9.-+@_]`.
    #[error("invalid key at byte {offset}: {reason}")]
    InvalidKey {
        /// Offset of the pair in the text data.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value is not UTF-8 or contains a NUL.
    #[error("invalid value at byte {offset}: {reason}")]
    InvalidValue {
        /// Offset of the pair in the text data.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value is longer than allowed for its key.
    #[error("value at byte {offset} is {len} bytes, more than the {max} allowed")]
    ValueTooLong {
        /// Offset of the pair in the text data.
        offset: usize,
        /// Length of the value.
        len: usize,
        /// Bound for this key.
        max: usize,
    },
    /// The text split over continued PDUs exceeds the assembler's bound.
    #[error("continued text exceeds {max} bytes")]
    TooLong {
        /// Bound on the total text size.
        max: usize,
    },
}

impl TextError {
    /// The Reject reason (RFC 7143 §11.17.1) that answers a Text Request carrying this
    /// data. (During login, malformed text is answered with an initiator-error status
    /// instead.)
    pub fn reject_reason(&self) -> RejectReason {
        RejectReason::PROTOCOL_ERROR
    }
}
