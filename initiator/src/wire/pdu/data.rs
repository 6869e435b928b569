//! SCSI Data-Out, SCSI Data-In and R2T (RFC 7143 §11.7, §11.8).

use bytes::Bytes;
use zerocopy::network_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::wire::codes::{Opcode, ScsiStatus};
use crate::wire::error::InvalidPdu;
use crate::wire::header::{BHS_LEN, RESERVED_TAG, flag, opcode_byte, to_u24};
use crate::wire::lun::Lun;

/// SCSI Data-Out (RFC 7143 §11.7): write data, unsolicited or answering an R2T.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct DataOut {
    /// F bit: last PDU of the unsolicited data or of this R2T's sequence.
    pub final_: bool,
    /// LUN (or reserved).
    pub lun: Lun,
    /// Initiator Task Tag of the command.
    pub itt: u32,
    /// Target Transfer Tag from the R2T, 0xffffffff for unsolicited data.
    pub ttt: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// DataSN within this sequence.
    pub data_sn: u32,
    /// Offset of `data` within the command's data.
    pub buffer_offset: u32,
    /// Write data.
    pub data: Bytes,
}

/// SCSI Data-In (RFC 7143 §11.7): read data, possibly with the command's status.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct DataIn {
    /// F bit: last PDU of the sequence.
    pub final_: bool,
    /// A bit: the target asks for a DataACK SNACK.
    pub ack: bool,
    /// O bit: residual overflow (with `status_present`).
    pub overflow: bool,
    /// U bit: residual underflow (with `status_present`).
    pub underflow: bool,
    /// S bit: `status`, `stat_sn` and `residual` are valid and end the command.
    pub status_present: bool,
    /// SCSI status (or reserved).
    pub status: ScsiStatus,
    /// LUN (or reserved).
    pub lun: Lun,
    /// Initiator Task Tag of the command.
    pub itt: u32,
    /// Target Transfer Tag (0xffffffff unless `ack`).
    pub ttt: u32,
    /// StatSN (or reserved).
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// DataSN.
    pub data_sn: u32,
    /// Offset of `data` within the command's data.
    pub buffer_offset: u32,
    /// Residual Count (or reserved).
    pub residual: u32,
    /// Read data.
    pub data: Bytes,
}

/// Ready To Transfer (RFC 7143 §11.8): the target asks for a range of write data.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct R2t {
    /// LUN.
    pub lun: Lun,
    /// Initiator Task Tag of the command.
    pub itt: u32,
    /// Target Transfer Tag to echo in the Data-Out PDUs.
    pub ttt: u32,
    /// StatSN (next StatSN; not advanced by an R2T).
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// R2TSN.
    pub r2t_sn: u32,
    /// Offset of the requested data.
    pub buffer_offset: u32,
    /// Length of the requested data.
    pub desired_data_transfer_length: u32,
}

/// Wire layout of the Data-Out BHS.
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct DataOutBhs {
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
    reserved3: [u8; 4],
    data_sn: U32,
    buffer_offset: U32,
    reserved4: [u8; 4],
}

/// Wire layout of the Data-In BHS.
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct DataInBhs {
    opcode: u8,
    flags: u8,
    reserved1: u8,
    status: u8,
    total_ahs_len: u8,
    data_segment_len: [u8; 3],
    lun: [u8; 8],
    itt: U32,
    ttt: U32,
    stat_sn: U32,
    exp_cmd_sn: U32,
    max_cmd_sn: U32,
    data_sn: U32,
    buffer_offset: U32,
    residual: U32,
}

/// Wire layout of the R2T BHS.
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct R2tBhs {
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
    r2t_sn: U32,
    buffer_offset: U32,
    desired_data_transfer_length: U32,
}

const _: () = assert!(size_of::<DataOutBhs>() == BHS_LEN);
const _: () = assert!(size_of::<DataInBhs>() == BHS_LEN);
const _: () = assert!(size_of::<R2tBhs>() == BHS_LEN);

const FINAL: u8 = 0x80;
const ACK: u8 = 0x40;
const OVERFLOW: u8 = 0x04;
const UNDERFLOW: u8 = 0x02;
const STATUS: u8 = 0x01;

impl DataOut {
    pub(crate) fn parse(bhs: &[u8; BHS_LEN], data: Bytes) -> Self {
        let raw: DataOutBhs = zerocopy::transmute!(*bhs);
        DataOut {
            final_: raw.flags & FINAL != 0,
            lun: Lun(raw.lun),
            itt: raw.itt.get(),
            ttt: raw.ttt.get(),
            exp_stat_sn: raw.exp_stat_sn.get(),
            data_sn: raw.data_sn.get(),
            buffer_offset: raw.buffer_offset.get(),
            data,
        }
    }

    pub(crate) fn emit(&self) -> [u8; BHS_LEN] {
        let raw = DataOutBhs {
            opcode: opcode_byte(Opcode::DATA_OUT, false),
            flags: flag(self.final_, FINAL),
            reserved1: [0; 2],
            total_ahs_len: 0,
            data_segment_len: to_u24(self.data.len()),
            lun: self.lun.0,
            itt: self.itt.into(),
            ttt: self.ttt.into(),
            reserved2: [0; 4],
            exp_stat_sn: self.exp_stat_sn.into(),
            reserved3: [0; 4],
            data_sn: self.data_sn.into(),
            buffer_offset: self.buffer_offset.into(),
            reserved4: [0; 4],
        };
        zerocopy::transmute!(raw)
    }
}

impl DataIn {
    pub(crate) fn parse(bhs: &[u8; BHS_LEN], data: Bytes) -> Result<Self, InvalidPdu> {
        let raw: DataInBhs = zerocopy::transmute!(*bhs);
        let f = raw.flags;
        let bad = |reason| InvalidPdu::Field {
            opcode: Opcode::DATA_IN,
            field: "flags",
            reason,
        };
        if f & STATUS != 0 && f & FINAL == 0 {
            return Err(bad("S bit set without the F bit"));
        }
        if f & OVERFLOW != 0 && f & UNDERFLOW != 0 {
            return Err(bad("O and U bits are both set"));
        }
        Ok(DataIn {
            final_: f & FINAL != 0,
            ack: f & ACK != 0,
            overflow: f & OVERFLOW != 0,
            underflow: f & UNDERFLOW != 0,
            status_present: f & STATUS != 0,
            status: ScsiStatus(raw.status),
            lun: Lun(raw.lun),
            itt: raw.itt.get(),
            ttt: raw.ttt.get(),
            stat_sn: raw.stat_sn.get(),
            exp_cmd_sn: raw.exp_cmd_sn.get(),
            max_cmd_sn: raw.max_cmd_sn.get(),
            data_sn: raw.data_sn.get(),
            buffer_offset: raw.buffer_offset.get(),
            residual: raw.residual.get(),
            data,
        })
    }

    pub(crate) fn emit(&self) -> [u8; BHS_LEN] {
        let raw = DataInBhs {
            opcode: opcode_byte(Opcode::DATA_IN, false),
            flags: flag(self.final_, FINAL)
                | flag(self.ack, ACK)
                | flag(self.overflow, OVERFLOW)
                | flag(self.underflow, UNDERFLOW)
                | flag(self.status_present, STATUS),
            reserved1: 0,
            status: self.status.0,
            total_ahs_len: 0,
            data_segment_len: to_u24(self.data.len()),
            lun: self.lun.0,
            itt: self.itt.into(),
            ttt: self.ttt.into(),
            stat_sn: self.stat_sn.into(),
            exp_cmd_sn: self.exp_cmd_sn.into(),
            max_cmd_sn: self.max_cmd_sn.into(),
            data_sn: self.data_sn.into(),
            buffer_offset: self.buffer_offset.into(),
            residual: self.residual.into(),
        };
        zerocopy::transmute!(raw)
    }
}

impl R2t {
    pub(crate) fn parse(bhs: &[u8; BHS_LEN]) -> Result<Self, InvalidPdu> {
        let raw: R2tBhs = zerocopy::transmute!(*bhs);
        let bad = |field, reason| InvalidPdu::Field {
            opcode: Opcode::R2T,
            field,
            reason,
        };
        if raw.desired_data_transfer_length.get() == 0 {
            return Err(bad("Desired Data Transfer Length", "must not be 0"));
        }
        if raw.ttt.get() == RESERVED_TAG {
            return Err(bad("Target Transfer Tag", "0xffffffff is reserved"));
        }
        Ok(R2t {
            lun: Lun(raw.lun),
            itt: raw.itt.get(),
            ttt: raw.ttt.get(),
            stat_sn: raw.stat_sn.get(),
            exp_cmd_sn: raw.exp_cmd_sn.get(),
            max_cmd_sn: raw.max_cmd_sn.get(),
            r2t_sn: raw.r2t_sn.get(),
            buffer_offset: raw.buffer_offset.get(),
            desired_data_transfer_length: raw.desired_data_transfer_length.get(),
        })
    }

    pub(crate) fn emit(&self) -> [u8; BHS_LEN] {
        let raw = R2tBhs {
            opcode: opcode_byte(Opcode::R2T, false),
            flags: 0x80,
            reserved1: [0; 2],
            total_ahs_len: 0,
            data_segment_len: [0; 3],
            lun: self.lun.0,
            itt: self.itt.into(),
            ttt: self.ttt.into(),
            stat_sn: self.stat_sn.into(),
            exp_cmd_sn: self.exp_cmd_sn.into(),
            max_cmd_sn: self.max_cmd_sn.into(),
            r2t_sn: self.r2t_sn.into(),
            buffer_offset: self.buffer_offset.into(),
            desired_data_transfer_length: self.desired_data_transfer_length.into(),
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
    static DATA_OUT_BYTES: [u8; 48] = [
        0x05,                                           // opcode 0x05
        0x80,                                           // F=1
        0x00, 0x00,                                     // reserved
        0x00,                                           // TotalAHSLength
        0x00, 0x00, 0x04,                               // DataSegmentLength = 4
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // LUN 1
        0x00, 0x00, 0x00, 0x10,                         // ITT
        0x00, 0x00, 0x00, 0x77,                         // TTT
        0x00, 0x00, 0x00, 0x00,                         // reserved
        0x00, 0x00, 0x00, 0x30,                         // ExpStatSN
        0x00, 0x00, 0x00, 0x00,                         // reserved
        0x00, 0x00, 0x00, 0x01,                         // DataSN
        0x00, 0x00, 0x20, 0x00,                         // Buffer Offset
        0x00, 0x00, 0x00, 0x00,                         // reserved
    ];

    #[rustfmt::skip]
    static DATA_IN_BYTES: [u8; 48] = [
        0x25,                                           // opcode 0x25
        0x83,                                           // F=1 A=0 O=0 U=1 S=1
        0x00,                                           // reserved
        0x00,                                           // Status: GOOD
        0x00,                                           // TotalAHSLength
        0x00, 0x00, 0x08,                               // DataSegmentLength = 8
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // LUN 1
        0x00, 0x00, 0x00, 0x10,                         // ITT
        0xff, 0xff, 0xff, 0xff,                         // TTT
        0x00, 0x00, 0x00, 0x31,                         // StatSN
        0x00, 0x00, 0x00, 0x21,                         // ExpCmdSN
        0x00, 0x00, 0x00, 0x40,                         // MaxCmdSN
        0x00, 0x00, 0x00, 0x02,                         // DataSN
        0x00, 0x00, 0x04, 0x00,                         // Buffer Offset
        0x00, 0x00, 0x0f, 0xf8,                         // Residual Count
    ];

    #[rustfmt::skip]
    static R2T_BYTES: [u8; 48] = [
        0x31,                                           // opcode 0x31
        0x80,                                           // 1
        0x00, 0x00,                                     // reserved
        0x00,                                           // TotalAHSLength
        0x00, 0x00, 0x00,                               // DataSegmentLength
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // LUN 1
        0x00, 0x00, 0x00, 0x10,                         // ITT
        0x00, 0x00, 0x00, 0x77,                         // TTT
        0x00, 0x00, 0x00, 0x31,                         // StatSN
        0x00, 0x00, 0x00, 0x21,                         // ExpCmdSN
        0x00, 0x00, 0x00, 0x40,                         // MaxCmdSN
        0x00, 0x00, 0x00, 0x00,                         // R2TSN
        0x00, 0x00, 0x20, 0x00,                         // Buffer Offset
        0x00, 0x01, 0x00, 0x00,                         // Desired Data Transfer Length
    ];

    fn data_out() -> DataOut {
        DataOut {
            final_: true,
            lun: Lun::from_number(1),
            itt: 0x10,
            ttt: 0x77,
            exp_stat_sn: 0x30,
            data_sn: 1,
            buffer_offset: 0x2000,
            data: Bytes::from_static(b"wxyz"),
        }
    }

    fn data_in() -> DataIn {
        DataIn {
            final_: true,
            underflow: true,
            status_present: true,
            status: ScsiStatus::GOOD,
            lun: Lun::from_number(1),
            itt: 0x10,
            ttt: RESERVED_TAG,
            stat_sn: 0x31,
            exp_cmd_sn: 0x21,
            max_cmd_sn: 0x40,
            data_sn: 2,
            buffer_offset: 0x400,
            residual: 0xff8,
            data: Bytes::from_static(b"12345678"),
            ..DataIn::default()
        }
    }

    fn r2t() -> R2t {
        R2t {
            lun: Lun::from_number(1),
            itt: 0x10,
            ttt: 0x77,
            stat_sn: 0x31,
            exp_cmd_sn: 0x21,
            max_cmd_sn: 0x40,
            r2t_sn: 0,
            buffer_offset: 0x2000,
            desired_data_transfer_length: 0x10000,
        }
    }

    #[test]
    fn test_parse() {
        let pdu = Pdu::parse(&DATA_OUT_BYTES, &[], Bytes::from_static(b"wxyz")).unwrap();
        assert_eq!(pdu, Pdu::DataOut(data_out()));
        let pdu = Pdu::parse(&DATA_IN_BYTES, &[], Bytes::from_static(b"12345678")).unwrap();
        assert_eq!(pdu, Pdu::DataIn(data_in()));
        assert_eq!(
            Pdu::parse(&R2T_BYTES, &[], Bytes::new()).unwrap(),
            Pdu::R2t(r2t())
        );
    }

    #[test]
    fn test_emit() {
        assert_eq!(
            Pdu::DataOut(data_out()).encoded_header(),
            (DATA_OUT_BYTES, None)
        );
        assert_eq!(
            Pdu::DataIn(data_in()).encoded_header(),
            (DATA_IN_BYTES, None)
        );
        assert_eq!(Pdu::R2t(r2t()).encoded_header(), (R2T_BYTES, None));
    }

    #[test]
    fn invalid_fields() {
        let field = |bhs: &[u8; 48], data: &'static [u8]| match Pdu::parse(
            bhs,
            &[],
            Bytes::from_static(data),
        ) {
            Err(InvalidPdu::Field { field, reason, .. }) => (field, reason),
            other => panic!("expected a field error, got {other:?}"),
        };
        let mut bhs = DATA_IN_BYTES;
        bhs[1] = 0x01; // S without F
        assert_eq!(field(&bhs, b"12345678").1, "S bit set without the F bit");
        bhs[1] = 0x87; // O and U
        assert_eq!(field(&bhs, b"12345678").1, "O and U bits are both set");
        let mut bhs = R2T_BYTES;
        bhs[44..48].fill(0);
        assert_eq!(field(&bhs, b"").0, "Desired Data Transfer Length");
        let mut bhs = R2T_BYTES;
        bhs[20..24].fill(0xff);
        assert_eq!(field(&bhs, b"").0, "Target Transfer Tag");
        let mut bhs = R2T_BYTES;
        bhs[7] = 4; // R2T carries no data segment
        let err = Pdu::parse(&bhs, &[], Bytes::from_static(b"abcd")).unwrap_err();
        assert!(
            matches!(err, InvalidPdu::UnexpectedData { len: 4, .. }),
            "{err:?}"
        );
    }

    proptest! {
        #[test]
        fn data_out_round_trips(p in strategies::data_out()) {
            strategies::assert_round_trip(&Pdu::DataOut(p))?;
        }

        #[test]
        fn data_in_round_trips(p in strategies::data_in()) {
            strategies::assert_round_trip(&Pdu::DataIn(p))?;
        }

        #[test]
        fn r2t_round_trips(p in strategies::r2t()) {
            strategies::assert_round_trip(&Pdu::R2t(p))?;
        }
    }
}
