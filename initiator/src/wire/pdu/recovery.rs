//! Reject and SNACK Request (RFC 7143 §11.17, §11.16): error reporting and recovery.

use bytes::Bytes;
use zerocopy::network_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::wire::codes::{Opcode, RejectReason};
use crate::wire::header::{BHS_LEN, RESERVED_TAG, opcode_byte, to_u24};
use crate::wire::lun::Lun;

/// Reject (RFC 7143 §11.17). Its ITT is always 0xffffffff; the rejected PDU's header is
/// in `data`.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Reject {
    /// Why the PDU was rejected.
    pub reason: RejectReason,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// DataSN or R2TSN for a rejected SNACK (or reserved).
    pub data_sn_or_r2t_sn: u32,
    /// The complete header (BHS and AHS) of the rejected PDU.
    pub data: Bytes,
}

impl Reject {
    /// The BHS of the rejected PDU, if the data segment holds one.
    pub fn rejected_header(&self) -> Option<&[u8; BHS_LEN]> {
        self.data.get(..BHS_LEN).and_then(|b| b.try_into().ok())
    }
}

/// SNACK Request (RFC 7143 §11.16).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct SnackRequest {
    /// SNACK type (four bits; see [`crate::wire::SnackType`]).
    pub snack_type: u8,
    /// LUN (or reserved).
    pub lun: Lun,
    /// Initiator Task Tag (or 0xffffffff).
    pub itt: u32,
    /// Target Transfer Tag or SNACK Tag (or 0xffffffff).
    pub ttt: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// First DataSN, R2TSN or StatSN requested.
    pub beg_run: u32,
    /// Number of PDUs requested, 0 for "all from `beg_run`".
    pub run_length: u32,
}

/// Wire layout of the Reject BHS.
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct RejectBhs {
    opcode: u8,
    flags: u8,
    reason: u8,
    reserved1: u8,
    total_ahs_len: u8,
    data_segment_len: [u8; 3],
    reserved2: [u8; 8],
    itt: U32,
    reserved3: [u8; 4],
    stat_sn: U32,
    exp_cmd_sn: U32,
    max_cmd_sn: U32,
    data_sn_or_r2t_sn: U32,
    reserved4: [u8; 8],
}

/// Wire layout of the SNACK Request BHS.
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct SnackRequestBhs {
    opcode: u8,
    flags: u8,
    reserved1: [u8; 2],
    total_ahs_len: u8,
    data_segment_len: [u8; 3],
    lun: [u8; 8],
    itt: U32,
    ttt: U32,
    reserved2: [u8; 4],
    exp_stat_sn: U32,
    reserved3: [u8; 8],
    beg_run: U32,
    run_length: U32,
}

const _: () = assert!(size_of::<RejectBhs>() == BHS_LEN);
const _: () = assert!(size_of::<SnackRequestBhs>() == BHS_LEN);

impl Reject {
    pub(crate) fn parse(bhs: &[u8; BHS_LEN], data: Bytes) -> Self {
        let raw: RejectBhs = zerocopy::transmute!(*bhs);
        Reject {
            reason: RejectReason(raw.reason),
            stat_sn: raw.stat_sn.get(),
            exp_cmd_sn: raw.exp_cmd_sn.get(),
            max_cmd_sn: raw.max_cmd_sn.get(),
            data_sn_or_r2t_sn: raw.data_sn_or_r2t_sn.get(),
            data,
        }
    }

    pub(crate) fn emit(&self) -> [u8; BHS_LEN] {
        let raw = RejectBhs {
            opcode: opcode_byte(Opcode::REJECT, false),
            flags: 0x80,
            reason: self.reason.0,
            reserved1: 0,
            total_ahs_len: 0,
            data_segment_len: to_u24(self.data.len()),
            reserved2: [0; 8],
            itt: RESERVED_TAG.into(),
            reserved3: [0; 4],
            stat_sn: self.stat_sn.into(),
            exp_cmd_sn: self.exp_cmd_sn.into(),
            max_cmd_sn: self.max_cmd_sn.into(),
            data_sn_or_r2t_sn: self.data_sn_or_r2t_sn.into(),
            reserved4: [0; 8],
        };
        zerocopy::transmute!(raw)
    }
}

impl SnackRequest {
    pub(crate) fn parse(bhs: &[u8; BHS_LEN]) -> Self {
        let raw: SnackRequestBhs = zerocopy::transmute!(*bhs);
        SnackRequest {
            snack_type: raw.flags & 0x0f,
            lun: Lun(raw.lun),
            itt: raw.itt.get(),
            ttt: raw.ttt.get(),
            exp_stat_sn: raw.exp_stat_sn.get(),
            beg_run: raw.beg_run.get(),
            run_length: raw.run_length.get(),
        }
    }

    pub(crate) fn emit(&self) -> [u8; BHS_LEN] {
        let raw = SnackRequestBhs {
            opcode: opcode_byte(Opcode::SNACK_REQUEST, false),
            flags: 0x80 | self.snack_type & 0x0f,
            reserved1: [0; 2],
            total_ahs_len: 0,
            data_segment_len: [0; 3],
            lun: self.lun.0,
            itt: self.itt.into(),
            ttt: self.ttt.into(),
            reserved2: [0; 4],
            exp_stat_sn: self.exp_stat_sn.into(),
            reserved3: [0; 8],
            beg_run: self.beg_run.into(),
            run_length: self.run_length.into(),
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
    static REJECT_BYTES: [u8; 48] = [
        0x3f,                                           // opcode 0x3f
        0x80,                                           // 1
        0x09,                                           // Reason: invalid PDU field
        0x00,                                           // reserved
        0x00,                                           // TotalAHSLength
        0x00, 0x00, 0x30,                               // DataSegmentLength = 48
        0, 0, 0, 0, 0, 0, 0, 0,                         // reserved
        0xff, 0xff, 0xff, 0xff,                         // ITT: always 0xffffffff
        0x00, 0x00, 0x00, 0x00,                         // reserved
        0x00, 0x00, 0x00, 0x36,                         // StatSN
        0x00, 0x00, 0x00, 0x27,                         // ExpCmdSN
        0x00, 0x00, 0x00, 0x46,                         // MaxCmdSN
        0x00, 0x00, 0x00, 0x00,                         // DataSN/R2TSN
        0, 0, 0, 0, 0, 0, 0, 0,                         // reserved
    ];

    #[rustfmt::skip]
    static SNACK_BYTES: [u8; 48] = [
        0x10,                                           // opcode 0x10
        0x81,                                           // 1, Type: status SNACK
        0x00, 0x00,                                     // reserved
        0x00,                                           // TotalAHSLength
        0x00, 0x00, 0x00,                               // DataSegmentLength
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // LUN
        0xff, 0xff, 0xff, 0xff,                         // ITT
        0xff, 0xff, 0xff, 0xff,                         // TTT / SNACK Tag
        0x00, 0x00, 0x00, 0x00,                         // reserved
        0x00, 0x00, 0x00, 0x37,                         // ExpStatSN
        0, 0, 0, 0, 0, 0, 0, 0,                         // reserved
        0x00, 0x00, 0x00, 0x33,                         // BegRun
        0x00, 0x00, 0x00, 0x02,                         // RunLength
    ];

    fn reject() -> Reject {
        Reject {
            reason: RejectReason::INVALID_PDU_FIELD,
            stat_sn: 0x36,
            exp_cmd_sn: 0x27,
            max_cmd_sn: 0x46,
            data_sn_or_r2t_sn: 0,
            data: Bytes::from_static(&SNACK_BYTES),
        }
    }

    fn snack() -> SnackRequest {
        SnackRequest {
            snack_type: crate::wire::SnackType::STATUS.0,
            lun: Lun::default(),
            itt: RESERVED_TAG,
            ttt: RESERVED_TAG,
            exp_stat_sn: 0x37,
            beg_run: 0x33,
            run_length: 2,
        }
    }

    #[test]
    fn test_parse() {
        let pdu = Pdu::parse(&REJECT_BYTES, &[], Bytes::from_static(&SNACK_BYTES)).unwrap();
        assert_eq!(pdu, Pdu::Reject(reject()));
        let pdu = Pdu::parse(&SNACK_BYTES, &[], Bytes::new()).unwrap();
        assert_eq!(pdu, Pdu::SnackRequest(snack()));
    }

    #[test]
    fn test_emit() {
        assert_eq!(Pdu::Reject(reject()).encoded_header(), (REJECT_BYTES, None));
        assert_eq!(
            Pdu::SnackRequest(snack()).encoded_header(),
            (SNACK_BYTES, None)
        );
    }

    #[test]
    fn rejected_header() {
        assert_eq!(reject().rejected_header(), Some(&SNACK_BYTES));
        let short = Reject {
            data: Bytes::from_static(&[0x01; 47]),
            ..reject()
        };
        assert_eq!(short.rejected_header(), None);
    }

    proptest! {
        #[test]
        fn reject_round_trips(p in strategies::reject()) {
            strategies::assert_round_trip(&Pdu::Reject(p))?;
        }

        #[test]
        fn snack_round_trips(p in strategies::snack_request()) {
            strategies::assert_round_trip(&Pdu::SnackRequest(p))?;
        }
    }
}
