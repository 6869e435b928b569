//! Login Request and Login Response (RFC 7143 §11.12, §11.13).

use bytes::Bytes;
use zerocopy::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::wire::codes::{Isid, LoginStatus, Opcode, Stage};
use crate::wire::error::InvalidPdu;
use crate::wire::header::{BHS_LEN, flag, opcode_byte, to_u24};

/// Login Request (RFC 7143 §11.12): carries login key=value text in `data`.
///
/// `nsg` is emitted as given and parsed as received; RFC 7143 only gives it meaning when
/// `transit` is set, and only then is it checked.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct LoginRequest {
    /// T bit: the initiator is ready to move to `nsg`.
    pub transit: bool,
    /// C bit: the text in `data` continues in the next Login Request.
    pub cont: bool,
    /// Current stage.
    pub csg: Stage,
    /// Next stage (meaningful only with `transit`).
    pub nsg: Stage,
    /// Highest iSCSI version supported (0 for RFC 7143).
    pub version_max: u8,
    /// Lowest iSCSI version supported.
    pub version_min: u8,
    /// Initiator part of the session ID.
    pub isid: Isid,
    /// Target-assigned session handle, 0 for a new session.
    pub tsih: u16,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Connection ID.
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN (or reserved on the first Login Request).
    pub exp_stat_sn: u32,
    /// Key=value text.
    pub data: Bytes,
}

/// Login Response (RFC 7143 §11.13).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct LoginResponse {
    /// T bit: the target agrees to move to `nsg`.
    pub transit: bool,
    /// C bit: the text in `data` continues in the next Login Response.
    pub cont: bool,
    /// Current stage.
    pub csg: Stage,
    /// Next stage (meaningful only with `transit`).
    pub nsg: Stage,
    /// Highest version the target supports.
    pub version_max: u8,
    /// Version the target selected (or, on an unsupported version, its lowest one).
    pub version_active: u8,
    /// ISID echoed from the request.
    pub isid: Isid,
    /// Session handle assigned by the target on the final response.
    pub tsih: u16,
    /// Initiator Task Tag echoed from the request.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Status class and detail.
    pub status: LoginStatus,
    /// Key=value text.
    pub data: Bytes,
}

/// Wire layout of the Login Request BHS.
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct LoginRequestBhs {
    opcode: u8,
    flags: u8,
    version_max: u8,
    version_min: u8,
    total_ahs_len: u8,
    data_segment_len: [u8; 3],
    isid: [u8; 6],
    tsih: U16,
    itt: U32,
    cid: U16,
    reserved1: [u8; 2],
    cmd_sn: U32,
    exp_stat_sn: U32,
    reserved2: [u8; 16],
}

/// Wire layout of the Login Response BHS.
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct LoginResponseBhs {
    opcode: u8,
    flags: u8,
    version_max: u8,
    version_active: u8,
    total_ahs_len: u8,
    data_segment_len: [u8; 3],
    isid: [u8; 6],
    tsih: U16,
    itt: U32,
    reserved1: [u8; 4],
    stat_sn: U32,
    exp_cmd_sn: U32,
    max_cmd_sn: U32,
    status_class: u8,
    status_detail: u8,
    reserved2: [u8; 10],
}

const _: () = assert!(size_of::<LoginRequestBhs>() == BHS_LEN);
const _: () = assert!(size_of::<LoginResponseBhs>() == BHS_LEN);

const TRANSIT: u8 = 0x80;
const CONTINUE: u8 = 0x40;

/// The T, C, CSG and NSG bits of byte 1, checked (RFC 7143 §11.12.2-3).
struct StageFlags {
    transit: bool,
    cont: bool,
    csg: Stage,
    nsg: Stage,
}

impl StageFlags {
    fn parse(opcode: Opcode, flags: u8) -> Result<StageFlags, InvalidPdu> {
        let f = StageFlags {
            transit: flags & TRANSIT != 0,
            cont: flags & CONTINUE != 0,
            csg: Stage((flags >> 2) & 3),
            nsg: Stage(flags & 3),
        };
        let bad = |field, reason| InvalidPdu::Field {
            opcode,
            field,
            reason,
        };
        if f.transit && f.cont {
            return Err(bad("flags", "T and C bits are both set"));
        }
        if f.csg == Stage(2) {
            return Err(bad("CSG", "stage 2 is reserved"));
        }
        if f.transit && f.nsg == Stage(2) {
            return Err(bad("NSG", "stage 2 is reserved"));
        }
        Ok(f)
    }

    fn emit(transit: bool, cont: bool, csg: Stage, nsg: Stage) -> u8 {
        flag(transit, TRANSIT) | flag(cont, CONTINUE) | (csg.0 & 3) << 2 | nsg.0 & 3
    }
}

impl LoginRequest {
    pub(crate) fn parse(bhs: &[u8; BHS_LEN], data: Bytes) -> Result<Self, InvalidPdu> {
        let raw: LoginRequestBhs = zerocopy::transmute!(*bhs);
        let f = StageFlags::parse(Opcode::LOGIN_REQUEST, raw.flags)?;
        if raw.version_min > raw.version_max {
            return Err(InvalidPdu::Field {
                opcode: Opcode::LOGIN_REQUEST,
                field: "Version-min",
                reason: "greater than Version-max",
            });
        }
        Ok(LoginRequest {
            transit: f.transit,
            cont: f.cont,
            csg: f.csg,
            nsg: f.nsg,
            version_max: raw.version_max,
            version_min: raw.version_min,
            isid: Isid(raw.isid),
            tsih: raw.tsih.get(),
            itt: raw.itt.get(),
            cid: raw.cid.get(),
            cmd_sn: raw.cmd_sn.get(),
            exp_stat_sn: raw.exp_stat_sn.get(),
            data,
        })
    }

    pub(crate) fn emit(&self) -> [u8; BHS_LEN] {
        let raw = LoginRequestBhs {
            // RFC 7143 §11.12: the I bit is always 1 on a Login Request.
            opcode: opcode_byte(Opcode::LOGIN_REQUEST, true),
            flags: StageFlags::emit(self.transit, self.cont, self.csg, self.nsg),
            version_max: self.version_max,
            version_min: self.version_min,
            total_ahs_len: 0,
            data_segment_len: to_u24(self.data.len()),
            isid: self.isid.0,
            tsih: self.tsih.into(),
            itt: self.itt.into(),
            cid: self.cid.into(),
            reserved1: [0; 2],
            cmd_sn: self.cmd_sn.into(),
            exp_stat_sn: self.exp_stat_sn.into(),
            reserved2: [0; 16],
        };
        zerocopy::transmute!(raw)
    }
}

impl LoginResponse {
    pub(crate) fn parse(bhs: &[u8; BHS_LEN], data: Bytes) -> Result<Self, InvalidPdu> {
        let raw: LoginResponseBhs = zerocopy::transmute!(*bhs);
        let f = StageFlags::parse(Opcode::LOGIN_RESPONSE, raw.flags)?;
        // Version-active is either the selected version or the target's lowest one; both
        // are within the target's own range.
        if raw.version_active > raw.version_max {
            return Err(InvalidPdu::Field {
                opcode: Opcode::LOGIN_RESPONSE,
                field: "Version-active",
                reason: "greater than Version-max",
            });
        }
        Ok(LoginResponse {
            transit: f.transit,
            cont: f.cont,
            csg: f.csg,
            nsg: f.nsg,
            version_max: raw.version_max,
            version_active: raw.version_active,
            isid: Isid(raw.isid),
            tsih: raw.tsih.get(),
            itt: raw.itt.get(),
            stat_sn: raw.stat_sn.get(),
            exp_cmd_sn: raw.exp_cmd_sn.get(),
            max_cmd_sn: raw.max_cmd_sn.get(),
            status: LoginStatus::from_parts(raw.status_class, raw.status_detail),
            data,
        })
    }

    pub(crate) fn emit(&self) -> [u8; BHS_LEN] {
        let raw = LoginResponseBhs {
            opcode: opcode_byte(Opcode::LOGIN_RESPONSE, false),
            flags: StageFlags::emit(self.transit, self.cont, self.csg, self.nsg),
            version_max: self.version_max,
            version_active: self.version_active,
            total_ahs_len: 0,
            data_segment_len: to_u24(self.data.len()),
            isid: self.isid.0,
            tsih: self.tsih.into(),
            itt: self.itt.into(),
            reserved1: [0; 4],
            stat_sn: self.stat_sn.into(),
            exp_cmd_sn: self.exp_cmd_sn.into(),
            max_cmd_sn: self.max_cmd_sn.into(),
            status_class: self.status.class(),
            status_detail: self.status.detail(),
            reserved2: [0; 10],
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
        0x43,                               // I=1, opcode 0x03
        0x87,                               // T=1 C=0 CSG=1 NSG=3
        0x00, 0x00,                         // Version-max, Version-min
        0x00,                               // TotalAHSLength
        0x00, 0x00, 0x05,                   // DataSegmentLength = 5
        0x80, 0x12, 0x34, 0x56, 0x00, 0x01, // ISID
        0x00, 0x00,                         // TSIH
        0x00, 0x00, 0x00, 0x07,             // ITT
        0x00, 0x01,                         // CID
        0x00, 0x00,                         // reserved
        0x00, 0x00, 0x00, 0x0a,             // CmdSN
        0x00, 0x00, 0x00, 0x0b,             // ExpStatSN
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
    ];

    #[rustfmt::skip]
    static RESPONSE_BYTES: [u8; 48] = [
        0x23,                               // opcode 0x23
        0x87,                               // T=1 C=0 CSG=1 NSG=3
        0x00, 0x00,                         // Version-max, Version-active
        0x00,                               // TotalAHSLength
        0x00, 0x00, 0x00,                   // DataSegmentLength
        0x80, 0x12, 0x34, 0x56, 0x00, 0x01, // ISID
        0x12, 0x34,                         // TSIH
        0x00, 0x00, 0x00, 0x07,             // ITT
        0x00, 0x00, 0x00, 0x00,             // reserved
        0x00, 0x00, 0x00, 0x0b,             // StatSN
        0x00, 0x00, 0x00, 0x0a,             // ExpCmdSN
        0x00, 0x00, 0x00, 0x1a,             // MaxCmdSN
        0x02, 0x01,                         // Status-Class, Status-Detail
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0,       // reserved
    ];

    fn request() -> LoginRequest {
        LoginRequest {
            transit: true,
            cont: false,
            csg: Stage::OPERATIONAL,
            nsg: Stage::FULL_FEATURE,
            version_max: 0,
            version_min: 0,
            isid: Isid([0x80, 0x12, 0x34, 0x56, 0x00, 0x01]),
            tsih: 0,
            itt: 7,
            cid: 1,
            cmd_sn: 10,
            exp_stat_sn: 11,
            data: Bytes::from_static(b"a=b\0\0"),
        }
    }

    fn response() -> LoginResponse {
        LoginResponse {
            transit: true,
            cont: false,
            csg: Stage::OPERATIONAL,
            nsg: Stage::FULL_FEATURE,
            version_max: 0,
            version_active: 0,
            isid: Isid([0x80, 0x12, 0x34, 0x56, 0x00, 0x01]),
            tsih: 0x1234,
            itt: 7,
            stat_sn: 11,
            exp_cmd_sn: 10,
            max_cmd_sn: 26,
            status: LoginStatus::AUTHENTICATION_FAILURE,
            data: Bytes::new(),
        }
    }

    #[test]
    fn test_parse() {
        let data = Bytes::from_static(b"a=b\0\0");
        let pdu = Pdu::parse(&REQUEST_BYTES, &[], data).unwrap();
        assert_eq!(pdu, Pdu::LoginRequest(request()));
        let pdu = Pdu::parse(&RESPONSE_BYTES, &[], Bytes::new()).unwrap();
        assert_eq!(pdu, Pdu::LoginResponse(response()));
    }

    #[test]
    fn test_emit() {
        assert_eq!(
            Pdu::LoginRequest(request()).encoded_header(),
            (REQUEST_BYTES, None)
        );
        assert_eq!(
            Pdu::LoginResponse(response()).encoded_header(),
            (RESPONSE_BYTES, None)
        );
    }

    #[test]
    fn reserved_bytes_are_ignored() {
        let mut bhs = RESPONSE_BYTES;
        bhs[0] |= 0xc0; // reserved bits of byte 0
        bhs[20] = 0xff; // reserved
        bhs[47] = 0xff; // reserved
        let pdu = Pdu::parse(&bhs, &[], Bytes::new()).unwrap();
        assert_eq!(pdu, Pdu::LoginResponse(response()));
    }

    #[test]
    fn invalid_flags_and_versions() {
        let field = |bhs: &[u8; 48], len| match Pdu::parse(bhs, &[], Bytes::from(vec![0; len])) {
            Err(InvalidPdu::Field { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        };
        let mut bhs = RESPONSE_BYTES;
        bhs[1] = 0xc7; // T and C
        assert_eq!(field(&bhs, 0), "flags");
        bhs[1] = 0x8b; // CSG = 2
        assert_eq!(field(&bhs, 0), "CSG");
        bhs[1] = 0x86; // T, NSG = 2
        assert_eq!(field(&bhs, 0), "NSG");
        bhs[1] = 0x06; // no T: NSG = 2 is not looked at
        assert!(Pdu::parse(&bhs, &[], Bytes::new()).is_ok());
        let mut bhs = RESPONSE_BYTES;
        bhs[3] = 1; // Version-active above Version-max
        assert_eq!(field(&bhs, 0), "Version-active");
        let mut bhs = REQUEST_BYTES;
        bhs[3] = 1; // Version-min above Version-max
        assert_eq!(field(&bhs, 5), "Version-min");
    }

    proptest! {
        #[test]
        fn request_round_trips(p in strategies::login_request()) {
            strategies::assert_round_trip(&Pdu::LoginRequest(p))?;
        }

        #[test]
        fn response_round_trips(p in strategies::login_response()) {
            strategies::assert_round_trip(&Pdu::LoginResponse(p))?;
        }
    }
}
