//! The iSCSI wire format: PDUs (RFC 7143 §11), text keys (§6, §13), sequence numbers
//! (RFC 1982) and SAM LUNs.
//!
//! # Contract
//!
//! Following smoltcp's `wire` module, every PDU exists at two levels:
//!
//! - a private zerocopy struct per BHS layout (`#[repr(C)]`, `network_endian` fields), read
//!   from exactly 48 bytes and checked once;
//! - a public `Repr` struct ([`LoginRequest`], [`DataIn`], ...) gathered in [`Pdu`], with
//!   plain field types and the data segment as [`Bytes`].
//!
//! [`Pdu::parse`] never panics on any input: it returns [`InvalidPdu`] for what RFC 7143
//! forbids and ignores reserved fields. [`Pdu::encoded_header`] never panics and writes
//! reserved fields as zero. For every PDU that parses, `parse(emit(pdu)) == pdu`.
//!
//! [`Codec`] frames PDUs on a byte stream (AHS, padding, CRC32C digests). It is incremental
//! (`Ok(None)` = need more bytes, nothing consumed until a whole PDU is present) and checks
//! DataSegmentLength against our MaxRecvDataSegmentLength before reserving anything. It
//! rejects opcodes that only the receiving role may send.

mod codec;
mod codes;
mod error;
mod header;
mod lun;
mod pdu;
mod roundtrip;
mod serial;
#[cfg(test)]
mod strategies;
mod text;

pub use bytes::Bytes;

pub use self::codec::{
    Codec, DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH, EncodedPdu, HeaderInfo, data_digest,
    header_digest, read_digest,
};
pub use self::codes::{
    AsyncEvent, Isid, LoginStatus, LogoutReason, LogoutResponseCode, Opcode, RejectReason,
    ScsiStatus, SnackType, Stage, TaskAttr, TmFunction, TmResponse,
};
pub use self::error::{DecodeError, InvalidPdu, Role, TextError};
pub use self::header::{BHS_LEN, BasicHeader, DIGEST_LEN, RESERVED_TAG, padding};
pub use self::lun::Lun;
pub use self::pdu::{
    AsyncMessage, DataIn, DataOut, LoginRequest, LoginResponse, LogoutRequest, LogoutResponse,
    NopIn, NopOut, Pdu, R2t, Reject, ScsiCommand, ScsiResponse, SnackRequest, TaskMgmtRequest,
    TaskMgmtResponse, TextRequest, TextResponse,
};
#[doc(hidden)]
pub use self::roundtrip::{pdu_round_trip, text_round_trip};
pub use self::serial::Sn;
pub use self::text::{
    DEFAULT_MAX_LONG_VALUE_LEN, DEFAULT_MAX_TEXT_LEN, DEFAULT_MAX_VALUE_LEN, MAX_KEY_LEN,
    TextAssembler, TextLimits, TextPairs, TextSplitter, encode_text, encode_text_with, parse_text,
    parse_text_with,
};

/// The iSCSI protocol version of RFC 7143 (Version-max, Version-min, Version-active).
pub const ISCSI_VERSION: u8 = 0x00;
