//! Text Request and Text Response (RFC 7143 §11.10, §11.11).

use bytes::Bytes;
use zerocopy::network_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::wire::codes::Opcode;
use crate::wire::error::InvalidPdu;
use crate::wire::header::{BHS_LEN, flag, opcode_byte, to_u24};
use crate::wire::lun::Lun;

/// Text Request (RFC 7143 §11.10): key=value text in `data`.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct TextRequest {
    /// I bit: immediate delivery.
    pub immediate: bool,
    /// F bit: the initiator has no more text to send in this negotiation.
    pub final_: bool,
    /// C bit: the text continues in the next Text Request (then `final_` is false).
    pub cont: bool,
    /// LUN (or reserved).
    pub lun: Lun,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Target Transfer Tag: 0xffffffff to start, else echoed from the last Text Response.
    pub ttt: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// Key=value text.
    pub data: Bytes,
}

/// Text Response (RFC 7143 §11.11).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct TextResponse {
    /// F bit: the target has no more text to send.
    pub final_: bool,
    /// C bit: the text continues in the next Text Response (then `final_` is false).
    pub cont: bool,
    /// LUN (or reserved).
    pub lun: Lun,
    /// Initiator Task Tag echoed from the request.
    pub itt: u32,
    /// Target Transfer Tag: to be echoed in the next Text Request when not final.
    pub ttt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Key=value text.
    pub data: Bytes,
}

/// Wire layout of the Text Request BHS.
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct TextRequestBhs {
    opcode: u8,
    flags: u8,
    reserved1: [u8; 2],
    total_ahs_len: u8,
    data_segment_len: [u8; 3],
    lun: [u8; 8],
    itt: U32,
    ttt: U32,
    cmd_sn: U32,
    exp_stat_sn: U32,
    reserved2: [u8; 16],
}

/// Wire layout of the Text Response BHS.
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct TextResponseBhs {
    opcode: u8,
    flags: u8,
    reserved1: [u8; 2],
    total_ahs_len: u8,
    data_segment_len: [u8; 3],
    lun: [u8; 8],
    itt: U32,
    ttt: U32,
    stat_sn: U32,
    exp_cmd_sn: U32,
    max_cmd_sn: U32,
    reserved2: [u8; 12],
}

const _: () = assert!(size_of::<TextRequestBhs>() == BHS_LEN);
const _: () = assert!(size_of::<TextResponseBhs>() == BHS_LEN);

const FINAL: u8 = 0x80;
const CONTINUE: u8 = 0x40;

/// Reads F and C, rejecting both set (RFC 7143 §11.10.2, §11.11.2).
fn final_cont(opcode: Opcode, flags: u8) -> Result<(bool, bool), InvalidPdu> {
    let (final_, cont) = (flags & FINAL != 0, flags & CONTINUE != 0);
    if final_ && cont {
        return Err(InvalidPdu::Field {
            opcode,
            field: "flags",
            reason: "F and C bits both set",
        });
    }
    Ok((final_, cont))
}

impl TextRequest {
    pub(crate) fn parse(bhs: &[u8; BHS_LEN], data: Bytes) -> Result<Self, InvalidPdu> {
        let raw: TextRequestBhs = zerocopy::transmute!(*bhs);
        let (final_, cont) = final_cont(Opcode::TEXT_REQUEST, raw.flags)?;
        Ok(TextRequest {
            immediate: raw.opcode & 0x40 != 0,
            final_,
            cont,
            lun: Lun(raw.lun),
            itt: raw.itt.get(),
            ttt: raw.ttt.get(),
            cmd_sn: raw.cmd_sn.get(),
            exp_stat_sn: raw.exp_stat_sn.get(),
            data,
        })
    }

    pub(crate) fn emit(&self) -> [u8; BHS_LEN] {
        let raw = TextRequestBhs {
            opcode: opcode_byte(Opcode::TEXT_REQUEST, self.immediate),
            flags: flag(self.final_, FINAL) | flag(self.cont, CONTINUE),
            reserved1: [0; 2],
            total_ahs_len: 0,
            data_segment_len: to_u24(self.data.len()),
            lun: self.lun.0,
            itt: self.itt.into(),
            ttt: self.ttt.into(),
            cmd_sn: self.cmd_sn.into(),
            exp_stat_sn: self.exp_stat_sn.into(),
            reserved2: [0; 16],
        };
        zerocopy::transmute!(raw)
    }
}

impl TextResponse {
    pub(crate) fn parse(bhs: &[u8; BHS_LEN], data: Bytes) -> Result<Self, InvalidPdu> {
        let raw: TextResponseBhs = zerocopy::transmute!(*bhs);
        let (final_, cont) = final_cont(Opcode::TEXT_RESPONSE, raw.flags)?;
        Ok(TextResponse {
            final_,
            cont,
            lun: Lun(raw.lun),
            itt: raw.itt.get(),
            ttt: raw.ttt.get(),
            stat_sn: raw.stat_sn.get(),
            exp_cmd_sn: raw.exp_cmd_sn.get(),
            max_cmd_sn: raw.max_cmd_sn.get(),
            data,
        })
    }

    pub(crate) fn emit(&self) -> [u8; BHS_LEN] {
        let raw = TextResponseBhs {
            opcode: opcode_byte(Opcode::TEXT_RESPONSE, false),
            flags: flag(self.final_, FINAL) | flag(self.cont, CONTINUE),
            reserved1: [0; 2],
            total_ahs_len: 0,
            data_segment_len: to_u24(self.data.len()),
            lun: self.lun.0,
            itt: self.itt.into(),
            ttt: self.ttt.into(),
            stat_sn: self.stat_sn.into(),
            exp_cmd_sn: self.exp_cmd_sn.into(),
            max_cmd_sn: self.max_cmd_sn.into(),
            reserved2: [0; 12],
        };
        zerocopy::transmute!(raw)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::pdu::Pdu;
    use crate::wire::strategies;

    #[rustfmt::skip]
    static REQUEST_BYTES: [u8; 48] = [
        0x44,                                           // I=1, opcode 0x04
        0x80,                                           // F=1 C=0
        0x00, 0x00,                                     // reserved
        0x00,                                           // TotalAHSLength
        0x00, 0x00, 0x10,                               // DataSegmentLength = 16
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // LUN
        0x00, 0x00, 0x00, 0x01,                         // ITT
        0xff, 0xff, 0xff, 0xff,                         // TTT
        0x00, 0x00, 0x00, 0x02,                         // CmdSN
        0x00, 0x00, 0x00, 0x03,                         // ExpStatSN
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
    ];

    #[rustfmt::skip]
    static RESPONSE_BYTES: [u8; 48] = [
        0x24,                                           // opcode 0x24
        0x40,                                           // F=0 C=1
        0x00, 0x00,                                     // reserved
        0x00,                                           // TotalAHSLength
        0x00, 0x00, 0x00,                               // DataSegmentLength
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // LUN 1
        0x00, 0x00, 0x00, 0x01,                         // ITT
        0x00, 0x00, 0x00, 0x09,                         // TTT
        0x00, 0x00, 0x00, 0x03,                         // StatSN
        0x00, 0x00, 0x00, 0x03,                         // ExpCmdSN
        0x00, 0x00, 0x00, 0x13,                         // MaxCmdSN
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,             // reserved
    ];

    fn request() -> TextRequest {
        TextRequest {
            immediate: true,
            final_: true,
            cont: false,
            lun: Lun::default(),
            itt: 1,
            ttt: 0xffff_ffff,
            cmd_sn: 2,
            exp_stat_sn: 3,
            data: Bytes::from_static(b"SendTargets=All\0"),
        }
    }

    fn response() -> TextResponse {
        TextResponse {
            final_: false,
            cont: true,
            lun: Lun::from_number(1),
            itt: 1,
            ttt: 9,
            stat_sn: 3,
            exp_cmd_sn: 3,
            max_cmd_sn: 19,
            data: Bytes::new(),
        }
    }

    #[test]
    fn test_parse() {
        let data = Bytes::from_static(b"SendTargets=All\0");
        assert_eq!(
            Pdu::parse(&REQUEST_BYTES, &[], data).unwrap(),
            Pdu::TextRequest(request())
        );
        let pdu = Pdu::parse(&RESPONSE_BYTES, &[], Bytes::new()).unwrap();
        assert_eq!(pdu, Pdu::TextResponse(response()));
    }

    #[test]
    fn test_emit() {
        assert_eq!(
            Pdu::TextRequest(request()).encoded_header(),
            (REQUEST_BYTES, None)
        );
        assert_eq!(
            Pdu::TextResponse(response()).encoded_header(),
            (RESPONSE_BYTES, None)
        );
    }

    #[test]
    fn final_and_continue_together_are_rejected() {
        let mut bhs = RESPONSE_BYTES;
        bhs[1] = 0xc0;
        let err = Pdu::parse(&bhs, &[], Bytes::new()).unwrap_err();
        assert!(
            matches!(err, InvalidPdu::Field { field: "flags", .. }),
            "{err:?}"
        );
    }

    proptest! {
        #[test]
        fn request_round_trips(p in strategies::text_request()) {
            strategies::assert_round_trip(&Pdu::TextRequest(p))?;
        }

        #[test]
        fn response_round_trips(p in strategies::text_response()) {
            strategies::assert_round_trip(&Pdu::TextResponse(p))?;
        }
    }
}
