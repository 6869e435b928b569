//! Logout Request and Logout Response (RFC 7143 §11.14, §11.15).

use zerocopy::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::wire::codes::{LogoutReason, LogoutResponseCode, Opcode};
use crate::wire::header::{BHS_LEN, opcode_byte};

/// Logout Request (RFC 7143 §11.14).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct LogoutRequest {
    /// I bit: immediate delivery.
    pub immediate: bool,
    /// Reason code (seven bits).
    pub reason: LogoutReason,
    /// Initiator Task Tag.
    pub itt: u32,
    /// CID of the connection to close (reserved when closing the session).
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
}

/// Logout Response (RFC 7143 §11.15).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct LogoutResponse {
    /// Outcome.
    pub response: LogoutResponseCode,
    /// ITT of the request.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Seconds to wait before reconnecting (connection recovery).
    pub time2wait: u16,
    /// Seconds the target keeps the connection's state for recovery.
    pub time2retain: u16,
}

/// Wire layout of the Logout Request BHS.
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct LogoutRequestBhs {
    opcode: u8,
    flags: u8,
    reserved1: [u8; 2],
    total_ahs_len: u8,
    data_segment_len: [u8; 3],
    reserved2: [u8; 8],
    itt: U32,
    cid: U16,
    reserved3: [u8; 2],
    cmd_sn: U32,
    exp_stat_sn: U32,
    reserved4: [u8; 16],
}

/// Wire layout of the Logout Response BHS.
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct LogoutResponseBhs {
    opcode: u8,
    flags: u8,
    response: u8,
    reserved1: u8,
    total_ahs_len: u8,
    data_segment_len: [u8; 3],
    reserved2: [u8; 8],
    itt: U32,
    reserved3: [u8; 4],
    stat_sn: U32,
    exp_cmd_sn: U32,
    max_cmd_sn: U32,
    reserved4: [u8; 4],
    time2wait: U16,
    time2retain: U16,
    reserved5: [u8; 4],
}

const _: () = assert!(size_of::<LogoutRequestBhs>() == BHS_LEN);
const _: () = assert!(size_of::<LogoutResponseBhs>() == BHS_LEN);

impl LogoutRequest {
    pub(crate) fn parse(bhs: &[u8; BHS_LEN]) -> Self {
        let raw: LogoutRequestBhs = zerocopy::transmute!(*bhs);
        LogoutRequest {
            immediate: raw.opcode & 0x40 != 0,
            reason: LogoutReason(raw.flags & 0x7f),
            itt: raw.itt.get(),
            cid: raw.cid.get(),
            cmd_sn: raw.cmd_sn.get(),
            exp_stat_sn: raw.exp_stat_sn.get(),
        }
    }

    pub(crate) fn emit(&self) -> [u8; BHS_LEN] {
        let raw = LogoutRequestBhs {
            opcode: opcode_byte(Opcode::LOGOUT_REQUEST, self.immediate),
            flags: 0x80 | self.reason.0 & 0x7f,
            reserved1: [0; 2],
            total_ahs_len: 0,
            data_segment_len: [0; 3],
            reserved2: [0; 8],
            itt: self.itt.into(),
            cid: self.cid.into(),
            reserved3: [0; 2],
            cmd_sn: self.cmd_sn.into(),
            exp_stat_sn: self.exp_stat_sn.into(),
            reserved4: [0; 16],
        };
        zerocopy::transmute!(raw)
    }
}

impl LogoutResponse {
    pub(crate) fn parse(bhs: &[u8; BHS_LEN]) -> Self {
        let raw: LogoutResponseBhs = zerocopy::transmute!(*bhs);
        LogoutResponse {
            response: LogoutResponseCode(raw.response),
            itt: raw.itt.get(),
            stat_sn: raw.stat_sn.get(),
            exp_cmd_sn: raw.exp_cmd_sn.get(),
            max_cmd_sn: raw.max_cmd_sn.get(),
            time2wait: raw.time2wait.get(),
            time2retain: raw.time2retain.get(),
        }
    }

    pub(crate) fn emit(&self) -> [u8; BHS_LEN] {
        let raw = LogoutResponseBhs {
            opcode: opcode_byte(Opcode::LOGOUT_RESPONSE, false),
            flags: 0x80,
            response: self.response.0,
            reserved1: 0,
            total_ahs_len: 0,
            data_segment_len: [0; 3],
            reserved2: [0; 8],
            itt: self.itt.into(),
            reserved3: [0; 4],
            stat_sn: self.stat_sn.into(),
            exp_cmd_sn: self.exp_cmd_sn.into(),
            max_cmd_sn: self.max_cmd_sn.into(),
            reserved4: [0; 4],
            time2wait: self.time2wait.into(),
            time2retain: self.time2retain.into(),
            reserved5: [0; 4],
        };
        zerocopy::transmute!(raw)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::wire::pdu::Pdu;
    use crate::wire::strategies;

    #[rustfmt::skip]
    static REQUEST_BYTES: [u8; 48] = [
        0x46,                                           // I=1, opcode 0x06
        0x80,                                           // 1, Reason: close the session
        0x00, 0x00,                                     // reserved
        0x00,                                           // TotalAHSLength
        0x00, 0x00, 0x00,                               // DataSegmentLength
        0, 0, 0, 0, 0, 0, 0, 0,                         // reserved
        0x00, 0x00, 0x00, 0x60,                         // ITT
        0x00, 0x01,                                     // CID
        0x00, 0x00,                                     // reserved
        0x00, 0x00, 0x00, 0x24,                         // CmdSN
        0x00, 0x00, 0x00, 0x34,                         // ExpStatSN
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
    ];

    #[rustfmt::skip]
    static RESPONSE_BYTES: [u8; 48] = [
        0x26,                                           // opcode 0x26
        0x80,                                           // 1
        0x00,                                           // Response: success
        0x00,                                           // reserved
        0x00,                                           // TotalAHSLength
        0x00, 0x00, 0x00,                               // DataSegmentLength
        0, 0, 0, 0, 0, 0, 0, 0,                         // reserved
        0x00, 0x00, 0x00, 0x60,                         // ITT
        0x00, 0x00, 0x00, 0x00,                         // reserved
        0x00, 0x00, 0x00, 0x34,                         // StatSN
        0x00, 0x00, 0x00, 0x25,                         // ExpCmdSN
        0x00, 0x00, 0x00, 0x44,                         // MaxCmdSN
        0x00, 0x00, 0x00, 0x00,                         // reserved
        0x00, 0x02,                                     // Time2Wait
        0x00, 0x14,                                     // Time2Retain
        0x00, 0x00, 0x00, 0x00,                         // reserved
    ];

    fn request() -> LogoutRequest {
        LogoutRequest {
            immediate: true,
            reason: LogoutReason::CLOSE_SESSION,
            itt: 0x60,
            cid: 1,
            cmd_sn: 0x24,
            exp_stat_sn: 0x34,
        }
    }

    fn response() -> LogoutResponse {
        LogoutResponse {
            response: LogoutResponseCode::SUCCESS,
            itt: 0x60,
            stat_sn: 0x34,
            exp_cmd_sn: 0x25,
            max_cmd_sn: 0x44,
            time2wait: 2,
            time2retain: 20,
        }
    }

    #[test]
    fn test_parse() {
        let pdu = Pdu::parse(&REQUEST_BYTES, &[], Bytes::new()).unwrap();
        assert_eq!(pdu, Pdu::LogoutRequest(request()));
        let pdu = Pdu::parse(&RESPONSE_BYTES, &[], Bytes::new()).unwrap();
        assert_eq!(pdu, Pdu::LogoutResponse(response()));
    }

    #[test]
    fn test_emit() {
        assert_eq!(
            Pdu::LogoutRequest(request()).encoded_header(),
            (REQUEST_BYTES, None)
        );
        assert_eq!(
            Pdu::LogoutResponse(response()).encoded_header(),
            (RESPONSE_BYTES, None)
        );
    }

    proptest! {
        #[test]
        fn request_round_trips(p in strategies::logout_request()) {
            strategies::assert_round_trip(&Pdu::LogoutRequest(p))?;
        }

        #[test]
        fn response_round_trips(p in strategies::logout_response()) {
            strategies::assert_round_trip(&Pdu::LogoutResponse(p))?;
        }
    }
}
