//! One struct per PDU type and the [`Pdu`] enum over them (RFC 7143 §11).
//!
//! Each family file holds the zerocopy layout of its BHS (private), the public `Repr`
//! struct, and `parse`/`emit` between the two.

mod async_msg;
mod data;
mod login;
mod logout;
mod nop;
mod recovery;
mod scsi;
mod task;
mod text;

use bytes::Bytes;

pub use self::async_msg::AsyncMessage;
pub use self::data::{DataIn, DataOut, R2t};
pub use self::login::{LoginRequest, LoginResponse};
pub use self::logout::{LogoutRequest, LogoutResponse};
pub use self::nop::{NopIn, NopOut};
pub use self::recovery::{Reject, SnackRequest};
pub use self::scsi::{ScsiCommand, ScsiResponse};
pub use self::task::{TaskMgmtRequest, TaskMgmtResponse};
pub use self::text::{TextRequest, TextResponse};
use crate::wire::codes::Opcode;
use crate::wire::error::InvalidPdu;
use crate::wire::header::{BHS_LEN, BasicHeader, RESERVED_TAG};

/// Any iSCSI PDU, with its data segment (unpadded, without digests).
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Pdu {
    /// NOP-Out (initiator).
    NopOut(NopOut),
    /// SCSI Command (initiator).
    ScsiCommand(ScsiCommand),
    /// Task Management Function Request (initiator).
    TaskMgmtRequest(TaskMgmtRequest),
    /// Login Request (initiator).
    LoginRequest(LoginRequest),
    /// Text Request (initiator).
    TextRequest(TextRequest),
    /// SCSI Data-Out (initiator).
    DataOut(DataOut),
    /// Logout Request (initiator).
    LogoutRequest(LogoutRequest),
    /// SNACK Request (initiator).
    SnackRequest(SnackRequest),
    /// NOP-In (target).
    NopIn(NopIn),
    /// SCSI Response (target).
    ScsiResponse(ScsiResponse),
    /// Task Management Function Response (target).
    TaskMgmtResponse(TaskMgmtResponse),
    /// Login Response (target).
    LoginResponse(LoginResponse),
    /// Text Response (target).
    TextResponse(TextResponse),
    /// SCSI Data-In (target).
    DataIn(DataIn),
    /// Logout Response (target).
    LogoutResponse(LogoutResponse),
    /// Ready To Transfer (target).
    R2t(R2t),
    /// Asynchronous Message (target).
    AsyncMessage(AsyncMessage),
    /// Reject (target).
    Reject(Reject),
}

/// Shared empty data segment for PDUs that have none.
static EMPTY: Bytes = Bytes::new();

impl Pdu {
    /// The opcode this PDU is sent with.
    pub fn opcode(&self) -> Opcode {
        match self {
            Pdu::NopOut(_) => Opcode::NOP_OUT,
            Pdu::ScsiCommand(_) => Opcode::SCSI_COMMAND,
            Pdu::TaskMgmtRequest(_) => Opcode::TASK_MGMT_REQUEST,
            Pdu::LoginRequest(_) => Opcode::LOGIN_REQUEST,
            Pdu::TextRequest(_) => Opcode::TEXT_REQUEST,
            Pdu::DataOut(_) => Opcode::DATA_OUT,
            Pdu::LogoutRequest(_) => Opcode::LOGOUT_REQUEST,
            Pdu::SnackRequest(_) => Opcode::SNACK_REQUEST,
            Pdu::NopIn(_) => Opcode::NOP_IN,
            Pdu::ScsiResponse(_) => Opcode::SCSI_RESPONSE,
            Pdu::TaskMgmtResponse(_) => Opcode::TASK_MGMT_RESPONSE,
            Pdu::LoginResponse(_) => Opcode::LOGIN_RESPONSE,
            Pdu::TextResponse(_) => Opcode::TEXT_RESPONSE,
            Pdu::DataIn(_) => Opcode::DATA_IN,
            Pdu::LogoutResponse(_) => Opcode::LOGOUT_RESPONSE,
            Pdu::R2t(_) => Opcode::R2T,
            Pdu::AsyncMessage(_) => Opcode::ASYNC_MESSAGE,
            Pdu::Reject(_) => Opcode::REJECT,
        }
    }

    /// Parses a PDU from its BHS, its AHS (`TotalAHSLength * 4` bytes) and its data segment
    /// (`DataSegmentLength` bytes, padding and digests already removed).
    ///
    /// Never panics. Reserved fields are ignored.
    ///
    /// # Errors
    /// [`InvalidPdu`] when the lengths disagree with the header, the opcode is unknown, or
    /// a field holds a value RFC 7143 forbids.
    pub fn parse(bhs: &[u8; BHS_LEN], ahs: &[u8], data: Bytes) -> Result<Pdu, InvalidPdu> {
        let header = BasicHeader::from_array(bhs);
        check_lengths(&header, ahs.len(), data.len())?;
        Self::parse_checked(bhs, ahs, data)
    }

    /// Parses a PDU's header without its data segment, which is left empty: for callers
    /// that land the data segment of a Data-In straight into their own buffer (see
    /// [`crate::wire::Codec::decode_header`]). Checks that concern the data segment's
    /// content are skipped; DataSegmentLength is still checked against the PDU type.
    ///
    /// # Errors
    /// As [`Pdu::parse`].
    pub fn parse_header(bhs: &[u8; BHS_LEN], ahs: &[u8]) -> Result<Pdu, InvalidPdu> {
        let header = BasicHeader::from_array(bhs);
        let opcode = header.opcode();
        if ahs.len() != header.ahs_len() {
            let declared = header.total_ahs_len;
            return Err(InvalidPdu::AhsLength {
                opcode,
                declared,
                actual: ahs.len(),
            });
        }
        check_header_lengths(&header)?;
        Self::parse_checked(bhs, ahs, Bytes::new())
    }

    /// Dispatches to the PDU type's parser once the lengths have been checked.
    fn parse_checked(bhs: &[u8; BHS_LEN], ahs: &[u8], data: Bytes) -> Result<Pdu, InvalidPdu> {
        let header = BasicHeader::from_array(bhs);
        Ok(match header.opcode() {
            Opcode::NOP_OUT => Pdu::NopOut(NopOut::parse(bhs, data)?),
            Opcode::SCSI_COMMAND => Pdu::ScsiCommand(ScsiCommand::parse(bhs, ahs, data)?),
            Opcode::TASK_MGMT_REQUEST => Pdu::TaskMgmtRequest(TaskMgmtRequest::parse(bhs)),
            Opcode::LOGIN_REQUEST => Pdu::LoginRequest(LoginRequest::parse(bhs, data)?),
            Opcode::TEXT_REQUEST => Pdu::TextRequest(TextRequest::parse(bhs, data)?),
            Opcode::DATA_OUT => Pdu::DataOut(DataOut::parse(bhs, data)),
            Opcode::LOGOUT_REQUEST => Pdu::LogoutRequest(LogoutRequest::parse(bhs)),
            Opcode::SNACK_REQUEST => Pdu::SnackRequest(SnackRequest::parse(bhs)),
            Opcode::NOP_IN => Pdu::NopIn(NopIn::parse(bhs, data)?),
            Opcode::SCSI_RESPONSE => Pdu::ScsiResponse(ScsiResponse::parse(bhs, data)?),
            Opcode::TASK_MGMT_RESPONSE => Pdu::TaskMgmtResponse(TaskMgmtResponse::parse(bhs)),
            Opcode::LOGIN_RESPONSE => Pdu::LoginResponse(LoginResponse::parse(bhs, data)?),
            Opcode::TEXT_RESPONSE => Pdu::TextResponse(TextResponse::parse(bhs, data)?),
            Opcode::DATA_IN => Pdu::DataIn(DataIn::parse(bhs, data)?),
            Opcode::LOGOUT_RESPONSE => Pdu::LogoutResponse(LogoutResponse::parse(bhs)),
            Opcode::R2T => Pdu::R2t(R2t::parse(bhs)?),
            Opcode::ASYNC_MESSAGE => Pdu::AsyncMessage(AsyncMessage::parse(bhs, data)),
            Opcode::REJECT => Pdu::Reject(Reject::parse(bhs, data)),
            opcode => return Err(InvalidPdu::UnknownOpcode { opcode }),
        })
    }

    /// The BHS and the AHS (if any) of this PDU, with TotalAHSLength and DataSegmentLength
    /// filled in from the AHS and [`Pdu::data`]. Reserved fields are zero; fields narrower
    /// than their Rust type (stages, task attribute, function and reason codes) are masked
    /// to their wire width.
    ///
    /// Never panics. The data segment must be shorter than 2^24 bytes (any negotiated
    /// MaxRecvDataSegmentLength is).
    pub fn encoded_header(&self) -> ([u8; BHS_LEN], Option<Bytes>) {
        let bhs = match self {
            Pdu::NopOut(p) => p.emit(),
            Pdu::ScsiCommand(p) => return p.emit(),
            Pdu::TaskMgmtRequest(p) => p.emit(),
            Pdu::LoginRequest(p) => p.emit(),
            Pdu::TextRequest(p) => p.emit(),
            Pdu::DataOut(p) => p.emit(),
            Pdu::LogoutRequest(p) => p.emit(),
            Pdu::SnackRequest(p) => p.emit(),
            Pdu::NopIn(p) => p.emit(),
            Pdu::ScsiResponse(p) => p.emit(),
            Pdu::TaskMgmtResponse(p) => p.emit(),
            Pdu::LoginResponse(p) => p.emit(),
            Pdu::TextResponse(p) => p.emit(),
            Pdu::DataIn(p) => p.emit(),
            Pdu::LogoutResponse(p) => p.emit(),
            Pdu::R2t(p) => p.emit(),
            Pdu::AsyncMessage(p) => p.emit(),
            Pdu::Reject(p) => p.emit(),
        };
        (bhs, None)
    }

    /// The data segment (empty for PDU types without one).
    pub fn data(&self) -> &Bytes {
        match self {
            Pdu::NopOut(p) => &p.data,
            Pdu::ScsiCommand(p) => &p.data,
            Pdu::LoginRequest(p) => &p.data,
            Pdu::TextRequest(p) => &p.data,
            Pdu::DataOut(p) => &p.data,
            Pdu::NopIn(p) => &p.data,
            Pdu::ScsiResponse(p) => &p.data,
            Pdu::LoginResponse(p) => &p.data,
            Pdu::TextResponse(p) => &p.data,
            Pdu::DataIn(p) => &p.data,
            Pdu::AsyncMessage(p) => &p.data,
            Pdu::Reject(p) => &p.data,
            Pdu::TaskMgmtRequest(_)
            | Pdu::LogoutRequest(_)
            | Pdu::SnackRequest(_)
            | Pdu::TaskMgmtResponse(_)
            | Pdu::LogoutResponse(_)
            | Pdu::R2t(_) => &EMPTY,
        }
    }

    /// The Initiator Task Tag (0xffffffff for Async Message and Reject, which carry none).
    pub fn itt(&self) -> u32 {
        match self {
            Pdu::NopOut(p) => p.itt,
            Pdu::ScsiCommand(p) => p.itt,
            Pdu::TaskMgmtRequest(p) => p.itt,
            Pdu::LoginRequest(p) => p.itt,
            Pdu::TextRequest(p) => p.itt,
            Pdu::DataOut(p) => p.itt,
            Pdu::LogoutRequest(p) => p.itt,
            Pdu::SnackRequest(p) => p.itt,
            Pdu::NopIn(p) => p.itt,
            Pdu::ScsiResponse(p) => p.itt,
            Pdu::TaskMgmtResponse(p) => p.itt,
            Pdu::LoginResponse(p) => p.itt,
            Pdu::TextResponse(p) => p.itt,
            Pdu::DataIn(p) => p.itt,
            Pdu::LogoutResponse(p) => p.itt,
            Pdu::R2t(p) => p.itt,
            Pdu::AsyncMessage(_) | Pdu::Reject(_) => RESERVED_TAG,
        }
    }
}

/// Checks the AHS and data lengths handed to [`Pdu::parse`] against the header, and the
/// PDU type against RFC 7143's rules on which PDUs carry AHS and data.
pub(crate) fn check_lengths(h: &BasicHeader, ahs: usize, data: usize) -> Result<(), InvalidPdu> {
    let opcode = h.opcode();
    if ahs != h.ahs_len() {
        return Err(InvalidPdu::AhsLength {
            opcode,
            declared: h.total_ahs_len,
            actual: ahs,
        });
    }
    if usize::try_from(h.data_len()).ok() != Some(data) {
        return Err(InvalidPdu::DataLength {
            opcode,
            declared: h.data_len(),
            actual: data,
        });
    }
    check_header_lengths(h)
}

/// The part of [`check_lengths`] that needs the header only (used by the codec before
/// reading the rest of the PDU).
pub(crate) fn check_header_lengths(h: &BasicHeader) -> Result<(), InvalidPdu> {
    let opcode = h.opcode();
    if h.total_ahs_len != 0 && !opcode.allows_ahs() {
        return Err(InvalidPdu::UnexpectedAhs {
            opcode,
            words: h.total_ahs_len,
        });
    }
    if h.data_len() != 0 && !opcode.allows_data() {
        return Err(InvalidPdu::UnexpectedData {
            opcode,
            len: h.data_len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::strategies;

    /// A Logout Response BHS with the given opcode byte, AHS words and data length.
    fn bhs(opcode: u8, ahs_words: u8, data_len: u8) -> [u8; BHS_LEN] {
        let mut bhs = [0; BHS_LEN];
        bhs[0] = opcode;
        bhs[1] = 0x80;
        bhs[4] = ahs_words;
        bhs[7] = data_len;
        bhs
    }

    #[test]
    fn unknown_opcode() {
        let err = Pdu::parse(&bhs(0x1c, 0, 0), &[], Bytes::new()).unwrap_err();
        assert_eq!(
            err,
            InvalidPdu::UnknownOpcode {
                opcode: Opcode(0x1c)
            }
        );
        assert_eq!(err.to_string(), "unknown opcode Opcode(0x1c)");
    }

    #[test]
    fn lengths_must_match_the_header() {
        let err = Pdu::parse(&bhs(0x20, 0, 4), &[], Bytes::from_static(b"abc")).unwrap_err();
        let opcode = Opcode::NOP_IN;
        assert_eq!(
            err,
            InvalidPdu::DataLength {
                opcode,
                declared: 4,
                actual: 3
            }
        );
        let err = Pdu::parse(&bhs(0x20, 1, 0), &[], Bytes::new()).unwrap_err();
        assert_eq!(
            err,
            InvalidPdu::AhsLength {
                opcode,
                declared: 1,
                actual: 0
            }
        );
        let err = Pdu::parse(&bhs(0x20, 1, 0), &[0, 1, 1, 0], Bytes::new()).unwrap_err();
        assert_eq!(err, InvalidPdu::UnexpectedAhs { opcode, words: 1 });
        let err = Pdu::parse(&bhs(0x26, 0, 1), &[], Bytes::from_static(b"x")).unwrap_err();
        let opcode = Opcode::LOGOUT_RESPONSE;
        assert_eq!(err, InvalidPdu::UnexpectedData { opcode, len: 1 });
    }

    #[test]
    fn header_only_parse() {
        let mut bhs = bhs(0x25, 0, 200); // Data-In with 200 bytes of data
        bhs[16..20].copy_from_slice(&[0, 0, 0, 9]);
        let Ok(Pdu::DataIn(header)) = Pdu::parse_header(&bhs, &[]) else {
            panic!("Data-In header did not parse");
        };
        assert_eq!((header.itt, header.data.len()), (9, 0));
        let err = Pdu::parse_header(&bhs, &[0; 4]).unwrap_err();
        assert!(matches!(err, InvalidPdu::AhsLength { .. }), "{err:?}");
        let err = Pdu::parse_header(&self::bhs(0x31, 0, 4), &[]).unwrap_err();
        assert!(matches!(err, InvalidPdu::UnexpectedData { .. }), "{err:?}");
    }

    #[test]
    fn data_accessor() {
        let pdu = Pdu::R2t(R2t::default());
        assert!(pdu.data().is_empty());
        let pdu = Pdu::NopOut(NopOut {
            data: Bytes::from_static(b"x"),
            ..NopOut::default()
        });
        assert_eq!(pdu.data().as_ref(), b"x");
    }

    proptest! {
        #[test]
        fn every_pdu_round_trips(pdu in strategies::any_pdu()) {
            strategies::assert_round_trip(&pdu)?;
        }

        #[test]
        fn reserved_bits_of_byte_0_are_ignored(pdu in strategies::any_pdu()) {
            let (mut bhs, ahs) = pdu.encoded_header();
            // Bit 7 is reserved everywhere; bit 6 (I) is reserved in target PDUs.
            bhs[0] |= if pdu.opcode().is_initiator() { 0x80 } else { 0xc0 };
            let parsed = Pdu::parse(&bhs, &ahs.unwrap_or_default(), pdu.data().clone());
            prop_assert_eq!(parsed, Ok(pdu));
        }

        #[test]
        fn parse_never_panics(
            bhs: [u8; 32],
            tail: [u8; 16],
            ahs in proptest::collection::vec(any::<u8>(), 0..40),
            data in strategies::data(),
        ) {
            let mut full = [0; BHS_LEN];
            full[..32].copy_from_slice(&bhs);
            full[32..].copy_from_slice(&tail);
            // Half the time, make the lengths agree so the opcode parsers are reached.
            if bhs[0] & 1 == 0 {
                full[4] = (ahs.len() / 4) as u8;
                full[5..8].copy_from_slice(&crate::wire::header::to_u24(data.len()));
            }
            let ahs = &ahs[..usize::from(full[4]) * 4 % (ahs.len() + 1)];
            if let Ok(pdu) = Pdu::parse(&full, ahs, data) {
                strategies::assert_round_trip(&pdu)?;
            }
        }
    }
}
