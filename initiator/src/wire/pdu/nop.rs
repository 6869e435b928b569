//! NOP-Out and NOP-In (RFC 7143 §11.18, §11.19): pings and window updates.

use bytes::Bytes;
use zerocopy::network_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::wire::codes::Opcode;
use crate::wire::error::InvalidPdu;
use crate::wire::header::{BHS_LEN, RESERVED_TAG, opcode_byte, to_u24};
use crate::wire::lun::Lun;

/// NOP-Out (RFC 7143 §11.18): a ping (valid `itt`) or the answer to a NOP-In (`ttt` echoed,
/// `itt` 0xffffffff and `immediate` set).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct NopOut {
    /// I bit: immediate delivery (required when `itt` is 0xffffffff).
    pub immediate: bool,
    /// LUN (echoed from the NOP-In when answering one).
    pub lun: Lun,
    /// Initiator Task Tag, or 0xffffffff when no NOP-In answer is wanted.
    pub itt: u32,
    /// Target Transfer Tag from the NOP-In, or 0xffffffff.
    pub ttt: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// Ping data.
    pub data: Bytes,
}

/// NOP-In (RFC 7143 §11.19): the answer to a ping, or a target-initiated ping/update.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct NopIn {
    /// LUN (valid when `ttt` is not 0xffffffff).
    pub lun: Lun,
    /// ITT of the NOP-Out answered, or 0xffffffff when target-initiated.
    pub itt: u32,
    /// Target Transfer Tag: not 0xffffffff when the target wants a NOP-Out back.
    pub ttt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Ping data echoed back.
    pub data: Bytes,
}

/// Wire layout of the NOP-Out BHS.
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct NopOutBhs {
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

/// Wire layout of the NOP-In BHS.
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct NopInBhs {
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

const _: () = assert!(size_of::<NopOutBhs>() == BHS_LEN);
const _: () = assert!(size_of::<NopInBhs>() == BHS_LEN);

impl NopOut {
    pub(crate) fn parse(bhs: &[u8; BHS_LEN], data: Bytes) -> Result<Self, InvalidPdu> {
        let raw: NopOutBhs = zerocopy::transmute!(*bhs);
        let immediate = raw.opcode & 0x40 != 0;
        if raw.itt.get() == RESERVED_TAG && !immediate {
            return Err(InvalidPdu::Field {
                opcode: Opcode::NOP_OUT,
                field: "I bit",
                reason: "must be 1 when the Initiator Task Tag is 0xffffffff",
            });
        }
        Ok(NopOut {
            immediate,
            lun: Lun(raw.lun),
            itt: raw.itt.get(),
            ttt: raw.ttt.get(),
            cmd_sn: raw.cmd_sn.get(),
            exp_stat_sn: raw.exp_stat_sn.get(),
            data,
        })
    }

    pub(crate) fn emit(&self) -> [u8; BHS_LEN] {
        let raw = NopOutBhs {
            opcode: opcode_byte(Opcode::NOP_OUT, self.immediate),
            flags: 0x80,
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

impl NopIn {
    pub(crate) fn parse(bhs: &[u8; BHS_LEN], data: Bytes) -> Result<Self, InvalidPdu> {
        let raw: NopInBhs = zerocopy::transmute!(*bhs);
        let (itt, ttt) = (raw.itt.get(), raw.ttt.get());
        let bad = |field, reason| InvalidPdu::Field {
            opcode: Opcode::NOP_IN,
            field,
            reason,
        };
        if itt != RESERVED_TAG && ttt != RESERVED_TAG {
            return Err(bad(
                "Target Transfer Tag",
                "must be 0xffffffff in an answer to a ping",
            ));
        }
        if itt == RESERVED_TAG && !data.is_empty() {
            return Err(bad(
                "DataSegmentLength",
                "must be 0 in a target-initiated NOP-In",
            ));
        }
        Ok(NopIn {
            lun: Lun(raw.lun),
            itt,
            ttt,
            stat_sn: raw.stat_sn.get(),
            exp_cmd_sn: raw.exp_cmd_sn.get(),
            max_cmd_sn: raw.max_cmd_sn.get(),
            data,
        })
    }

    pub(crate) fn emit(&self) -> [u8; BHS_LEN] {
        let raw = NopInBhs {
            opcode: opcode_byte(Opcode::NOP_IN, false),
            flags: 0x80,
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
    static NOP_OUT_BYTES: [u8; 48] = [
        0x40,                                           // I=1, opcode 0x00
        0x80,                                           // 1
        0x00, 0x00,                                     // reserved
        0x00,                                           // TotalAHSLength
        0x00, 0x00, 0x00,                               // DataSegmentLength
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // LUN 1
        0xff, 0xff, 0xff, 0xff,                         // ITT: no answer wanted
        0x00, 0x00, 0x00, 0x99,                         // TTT echoed from the NOP-In
        0x00, 0x00, 0x00, 0x20,                         // CmdSN
        0x00, 0x00, 0x00, 0x30,                         // ExpStatSN
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
    ];

    #[rustfmt::skip]
    static NOP_IN_BYTES: [u8; 48] = [
        0x20,                                           // opcode 0x20
        0x80,                                           // 1
        0x00, 0x00,                                     // reserved
        0x00,                                           // TotalAHSLength
        0x00, 0x00, 0x04,                               // DataSegmentLength = 4
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // LUN
        0x00, 0x00, 0x00, 0x05,                         // ITT of the ping
        0xff, 0xff, 0xff, 0xff,                         // TTT
        0x00, 0x00, 0x00, 0x31,                         // StatSN
        0x00, 0x00, 0x00, 0x21,                         // ExpCmdSN
        0x00, 0x00, 0x00, 0x40,                         // MaxCmdSN
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,             // reserved
    ];

    fn nop_out() -> NopOut {
        NopOut {
            immediate: true,
            lun: Lun::from_number(1),
            itt: RESERVED_TAG,
            ttt: 0x99,
            cmd_sn: 0x20,
            exp_stat_sn: 0x30,
            data: Bytes::new(),
        }
    }

    fn nop_in() -> NopIn {
        NopIn {
            lun: Lun::default(),
            itt: 5,
            ttt: RESERVED_TAG,
            stat_sn: 0x31,
            exp_cmd_sn: 0x21,
            max_cmd_sn: 0x40,
            data: Bytes::from_static(b"ping"),
        }
    }

    #[test]
    fn test_parse() {
        assert_eq!(
            Pdu::parse(&NOP_OUT_BYTES, &[], Bytes::new()).unwrap(),
            Pdu::NopOut(nop_out())
        );
        let pdu = Pdu::parse(&NOP_IN_BYTES, &[], Bytes::from_static(b"ping")).unwrap();
        assert_eq!(pdu, Pdu::NopIn(nop_in()));
    }

    #[test]
    fn test_emit() {
        assert_eq!(
            Pdu::NopOut(nop_out()).encoded_header(),
            (NOP_OUT_BYTES, None)
        );
        assert_eq!(Pdu::NopIn(nop_in()).encoded_header(), (NOP_IN_BYTES, None));
    }

    #[test]
    fn invalid_tag_combinations() {
        let field = |bhs: &[u8; 48], data: &'static [u8]| match Pdu::parse(
            bhs,
            &[],
            Bytes::from_static(data),
        ) {
            Err(InvalidPdu::Field { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        };
        let mut bhs = NOP_OUT_BYTES;
        bhs[0] = 0x00; // ITT 0xffffffff without the I bit
        assert_eq!(field(&bhs, b""), "I bit");
        let mut bhs = NOP_IN_BYTES;
        bhs[20..24].copy_from_slice(&[0, 0, 0, 1]); // answer to a ping with a TTT
        assert_eq!(field(&bhs, b"ping"), "Target Transfer Tag");
        let mut bhs = NOP_IN_BYTES;
        bhs[16..20].fill(0xff); // target-initiated, yet with data
        assert_eq!(field(&bhs, b"ping"), "DataSegmentLength");
    }

    proptest! {
        #[test]
        fn nop_out_round_trips(p in strategies::nop_out()) {
            strategies::assert_round_trip(&Pdu::NopOut(p))?;
        }

        #[test]
        fn nop_in_round_trips(p in strategies::nop_in()) {
            strategies::assert_round_trip(&Pdu::NopIn(p))?;
        }
    }
}
