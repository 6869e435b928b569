//! SCSI Command with its AHS, and SCSI Response (RFC 7143 §11.3, §11.4).

use bytes::{BufMut, Bytes, BytesMut};
use zerocopy::network_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::wire::codes::{Opcode, ScsiStatus, TaskAttr};
use crate::wire::error::InvalidPdu;
use crate::wire::header::{BHS_LEN, flag, opcode_byte, padding, to_u24};
use crate::wire::lun::Lun;

/// SCSI Command (RFC 7143 §11.3).
///
/// CDBs longer than 16 bytes keep their first 16 bytes in `cdb` and the rest in
/// `extended_cdb` (sent as an Extended CDB AHS); a bidirectional command's read length
/// travels in a Bidirectional Read Expected Data Transfer Length AHS.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ScsiCommand {
    /// I bit: immediate delivery.
    pub immediate: bool,
    /// F bit: no unsolicited Data-Out PDUs follow.
    pub final_: bool,
    /// R bit: data flows from target to initiator.
    pub read: bool,
    /// W bit: data flows from initiator to target.
    pub write: bool,
    /// Task attribute (three bits).
    pub attr: TaskAttr,
    /// Logical unit.
    pub lun: Lun,
    /// Initiator Task Tag.
    pub itt: u32,
    /// Expected Data Transfer Length (the write length for bidirectional commands).
    pub expected_data_transfer_length: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// The first 16 bytes of the CDB, zero padded.
    pub cdb: [u8; 16],
    /// CDB bytes beyond the first 16 (Extended CDB AHS, type 1).
    pub extended_cdb: Option<Bytes>,
    /// Read length of a bidirectional command (Bidirectional Read Expected Data Transfer
    /// Length AHS, type 2).
    pub bidi_read_length: Option<u32>,
    /// Immediate data.
    pub data: Bytes,
}

/// SCSI Response (RFC 7143 §11.4).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ScsiResponse {
    /// o bit: bidirectional read residual overflow.
    pub bidi_overflow: bool,
    /// u bit: bidirectional read residual underflow.
    pub bidi_underflow: bool,
    /// O bit: residual overflow.
    pub overflow: bool,
    /// U bit: residual underflow.
    pub underflow: bool,
    /// iSCSI service response: 0 command completed at target, 1 target failure.
    pub response: u8,
    /// SCSI status (valid when `response` is 0).
    pub status: ScsiStatus,
    /// Initiator Task Tag.
    pub itt: u32,
    /// SNACK Tag (or reserved).
    pub snack_tag: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// ExpDataSN (or reserved).
    pub exp_data_sn: u32,
    /// Bidirectional Read Residual Count (or reserved).
    pub bidi_residual: u32,
    /// Residual Count (or reserved).
    pub residual: u32,
    /// SenseLength (2 bytes) + sense data + response data; empty when there is none.
    pub data: Bytes,
}

impl ScsiResponse {
    /// The sense data: the `SenseLength` bytes after the 2-byte length, or `None` when the
    /// data segment is empty or shorter than its SenseLength says.
    pub fn sense(&self) -> Option<&[u8]> {
        let len = self.data.get(..2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        self.data.get(2..2 + len)
    }
}

/// Wire layout of the SCSI Command BHS.
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct ScsiCommandBhs {
    opcode: u8,
    flags: u8,
    reserved1: [u8; 2],
    total_ahs_len: u8,
    data_segment_len: [u8; 3],
    lun: [u8; 8],
    itt: U32,
    expected_data_transfer_length: U32,
    cmd_sn: U32,
    exp_stat_sn: U32,
    cdb: [u8; 16],
}

/// Wire layout of the SCSI Response BHS.
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct ScsiResponseBhs {
    opcode: u8,
    flags: u8,
    response: u8,
    status: u8,
    total_ahs_len: u8,
    data_segment_len: [u8; 3],
    reserved1: [u8; 8],
    itt: U32,
    snack_tag: U32,
    stat_sn: U32,
    exp_cmd_sn: U32,
    max_cmd_sn: U32,
    exp_data_sn: U32,
    bidi_residual: U32,
    residual: U32,
}

/// Header of one Additional Header Segment (RFC 7143 §11.2.2).
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct AhsHeader {
    /// Length of the AHS-specific bytes, from the byte after `ahs_type`, without padding.
    ahs_len: zerocopy::network_endian::U16,
    ahs_type: u8,
}

const _: () = assert!(size_of::<ScsiCommandBhs>() == BHS_LEN);
const _: () = assert!(size_of::<ScsiResponseBhs>() == BHS_LEN);

const FINAL: u8 = 0x80;
const READ: u8 = 0x40;
const WRITE: u8 = 0x20;
const ATTR_MASK: u8 = 0x07;
const AHS_EXTENDED_CDB: u8 = 1;
const AHS_BIDI_READ_LENGTH: u8 = 2;

impl ScsiCommand {
    pub(crate) fn parse(bhs: &[u8; BHS_LEN], ahs: &[u8], data: Bytes) -> Result<Self, InvalidPdu> {
        let raw: ScsiCommandBhs = zerocopy::transmute!(*bhs);
        let (read, write) = (raw.flags & READ != 0, raw.flags & WRITE != 0);
        let edtl = raw.expected_data_transfer_length.get();
        if edtl != 0 && !read && !write {
            return Err(InvalidPdu::Field {
                opcode: Opcode::SCSI_COMMAND,
                field: "flags",
                reason: "R and W are both 0 but Expected Data Transfer Length is not",
            });
        }
        let (extended_cdb, bidi_read_length) = parse_ahs(ahs)?;
        Ok(ScsiCommand {
            immediate: raw.opcode & 0x40 != 0,
            final_: raw.flags & FINAL != 0,
            read,
            write,
            attr: TaskAttr(raw.flags & ATTR_MASK),
            lun: Lun(raw.lun),
            itt: raw.itt.get(),
            expected_data_transfer_length: edtl,
            cmd_sn: raw.cmd_sn.get(),
            exp_stat_sn: raw.exp_stat_sn.get(),
            cdb: raw.cdb,
            extended_cdb,
            bidi_read_length,
            data,
        })
    }

    pub(crate) fn emit(&self) -> ([u8; BHS_LEN], Option<Bytes>) {
        let ahs = self.emit_ahs();
        let ahs_words = ahs.as_ref().map_or(0, |a| a.len() / 4);
        let raw = ScsiCommandBhs {
            opcode: opcode_byte(Opcode::SCSI_COMMAND, self.immediate),
            flags: flag(self.final_, FINAL)
                | flag(self.read, READ)
                | flag(self.write, WRITE)
                | self.attr.0 & ATTR_MASK,
            reserved1: [0; 2],
            // An extended CDB is at most 260 bytes (the SAM limit), so this fits a byte.
            total_ahs_len: u8::try_from(ahs_words).unwrap_or(u8::MAX),
            data_segment_len: to_u24(self.data.len()),
            lun: self.lun.0,
            itt: self.itt.into(),
            expected_data_transfer_length: self.expected_data_transfer_length.into(),
            cmd_sn: self.cmd_sn.into(),
            exp_stat_sn: self.exp_stat_sn.into(),
            cdb: self.cdb,
        };
        (zerocopy::transmute!(raw), ahs)
    }

    /// The AHS bytes: Extended CDB first, then the bidirectional read length.
    fn emit_ahs(&self) -> Option<Bytes> {
        if self.extended_cdb.is_none() && self.bidi_read_length.is_none() {
            return None;
        }
        let mut out = BytesMut::new();
        if let Some(ext) = &self.extended_cdb {
            let len = u16::try_from(ext.len() + 1).unwrap_or(u16::MAX);
            out.put_u16(len);
            out.put_u8(AHS_EXTENDED_CDB);
            out.put_u8(0);
            out.put_slice(ext);
            out.put_bytes(0, padding(ext.len()));
        }
        if let Some(read_len) = self.bidi_read_length {
            out.put_u16(5);
            out.put_u8(AHS_BIDI_READ_LENGTH);
            out.put_u8(0);
            out.put_u32(read_len);
        }
        Some(out.freeze())
    }
}

/// Parses the AHS of a SCSI Command into (extended CDB, bidirectional read length).
fn parse_ahs(mut ahs: &[u8]) -> Result<(Option<Bytes>, Option<u32>), InvalidPdu> {
    let bad = |reason| InvalidPdu::Ahs {
        opcode: Opcode::SCSI_COMMAND,
        reason,
    };
    let (mut extended_cdb, mut bidi_read_length) = (None, None);
    while !ahs.is_empty() {
        let (header, rest) = AhsHeader::ref_from_prefix(ahs).map_err(|_| bad("truncated"))?;
        let len = usize::from(header.ahs_len.get());
        let body = rest
            .get(..len)
            .ok_or(bad("AHSLength runs past TotalAHSLength"))?;
        // The segment (3 header bytes + body) is padded to a multiple of 4.
        let total = 3 + len + padding(3 + len);
        ahs = ahs
            .get(total..)
            .ok_or(bad("padding runs past TotalAHSLength"))?;
        match header.ahs_type {
            AHS_EXTENDED_CDB if extended_cdb.is_none() => {
                // The first AHS-specific byte is reserved.
                let cdb = body.get(1..).ok_or(bad("empty Extended CDB AHS"))?;
                extended_cdb = Some(Bytes::copy_from_slice(cdb));
            }
            AHS_BIDI_READ_LENGTH if bidi_read_length.is_none() => {
                let b: [u8; 4] = body
                    .get(1..5)
                    .filter(|_| len == 5)
                    .and_then(|b| b.try_into().ok())
                    .ok_or(bad("Bidirectional Read Length AHS must have AHSLength 5"))?;
                bidi_read_length = Some(u32::from_be_bytes(b));
            }
            AHS_EXTENDED_CDB | AHS_BIDI_READ_LENGTH => return Err(bad("repeated AHS type")),
            _ => return Err(bad("unknown AHS type")),
        }
    }
    Ok((extended_cdb, bidi_read_length))
}

const BIDI_OVERFLOW: u8 = 0x10;
const BIDI_UNDERFLOW: u8 = 0x08;
const OVERFLOW: u8 = 0x04;
const UNDERFLOW: u8 = 0x02;

impl ScsiResponse {
    pub(crate) fn parse(bhs: &[u8; BHS_LEN], data: Bytes) -> Result<Self, InvalidPdu> {
        let raw: ScsiResponseBhs = zerocopy::transmute!(*bhs);
        let f = raw.flags;
        let both = |a, b| f & a != 0 && f & b != 0;
        if both(OVERFLOW, UNDERFLOW) || both(BIDI_OVERFLOW, BIDI_UNDERFLOW) {
            return Err(InvalidPdu::Field {
                opcode: Opcode::SCSI_RESPONSE,
                field: "flags",
                reason: "overflow and underflow bits are both set",
            });
        }
        Ok(ScsiResponse {
            bidi_overflow: f & BIDI_OVERFLOW != 0,
            bidi_underflow: f & BIDI_UNDERFLOW != 0,
            overflow: f & OVERFLOW != 0,
            underflow: f & UNDERFLOW != 0,
            response: raw.response,
            status: ScsiStatus(raw.status),
            itt: raw.itt.get(),
            snack_tag: raw.snack_tag.get(),
            stat_sn: raw.stat_sn.get(),
            exp_cmd_sn: raw.exp_cmd_sn.get(),
            max_cmd_sn: raw.max_cmd_sn.get(),
            exp_data_sn: raw.exp_data_sn.get(),
            bidi_residual: raw.bidi_residual.get(),
            residual: raw.residual.get(),
            data,
        })
    }

    pub(crate) fn emit(&self) -> [u8; BHS_LEN] {
        let raw = ScsiResponseBhs {
            opcode: opcode_byte(Opcode::SCSI_RESPONSE, false),
            flags: 0x80
                | flag(self.bidi_overflow, BIDI_OVERFLOW)
                | flag(self.bidi_underflow, BIDI_UNDERFLOW)
                | flag(self.overflow, OVERFLOW)
                | flag(self.underflow, UNDERFLOW),
            response: self.response,
            status: self.status.0,
            total_ahs_len: 0,
            data_segment_len: to_u24(self.data.len()),
            reserved1: [0; 8],
            itt: self.itt.into(),
            snack_tag: self.snack_tag.into(),
            stat_sn: self.stat_sn.into(),
            exp_cmd_sn: self.exp_cmd_sn.into(),
            max_cmd_sn: self.max_cmd_sn.into(),
            exp_data_sn: self.exp_data_sn.into(),
            bidi_residual: self.bidi_residual.into(),
            residual: self.residual.into(),
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
    static READ10_BYTES: [u8; 48] = [
        0x01,                                           // I=0, opcode 0x01
        0xc1,                                           // F=1 R=1 W=0 ATTR=SIMPLE
        0x00, 0x00,                                     // reserved
        0x00,                                           // TotalAHSLength
        0x00, 0x00, 0x00,                               // DataSegmentLength
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // LUN 1
        0x00, 0x00, 0x00, 0x10,                         // ITT
        0x00, 0x00, 0x10, 0x00,                         // Expected Data Transfer Length
        0x00, 0x00, 0x00, 0x20,                         // CmdSN
        0x00, 0x00, 0x00, 0x30,                         // ExpStatSN
        0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // CDB: READ(10), 8 blocks
        0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    #[rustfmt::skip]
    static BIDI_BYTES: [u8; 48] = [
        0x41,                                           // I=1, opcode 0x01
        0x67,                                           // F=0 R=1 W=1 ATTR=7
        0x00, 0x00,                                     // reserved
        0x07,                                           // TotalAHSLength: 7 words
        0x00, 0x00, 0x03,                               // DataSegmentLength = 3
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // LUN 1
        0x00, 0x00, 0x00, 0x11,                         // ITT
        0x00, 0x00, 0x02, 0x00,                         // Expected Data Transfer Length
        0x00, 0x00, 0x00, 0x21,                         // CmdSN
        0x00, 0x00, 0x00, 0x31,                         // ExpStatSN
        0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x18, // CDB bytes 0-15 (32-byte CDB)
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    #[rustfmt::skip]
    static BIDI_AHS: [u8; 28] = [
        0x00, 0x11,                                     // AHSLength = 17
        0x01,                                           // AHSType: Extended CDB
        0x00,                                           // reserved
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, // CDB bytes 16-31
        0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
        0x00, 0x05,                                     // AHSLength = 5
        0x02,                                           // AHSType: bidi read length
        0x00,                                           // reserved
        0x00, 0x00, 0x04, 0x00,                         // read length 1024
    ];

    #[rustfmt::skip]
    static RESPONSE_BYTES: [u8; 48] = [
        0x21,                                           // opcode 0x21
        0x82,                                           // 1, o=0 u=0 O=0 U=1
        0x00,                                           // Response: completed at target
        0x02,                                           // Status: CHECK CONDITION
        0x00,                                           // TotalAHSLength
        0x00, 0x00, 0x14,                               // DataSegmentLength = 20
        0, 0, 0, 0, 0, 0, 0, 0,                         // reserved
        0x00, 0x00, 0x00, 0x10,                         // ITT
        0x00, 0x00, 0x00, 0x00,                         // SNACK Tag
        0x00, 0x00, 0x00, 0x31,                         // StatSN
        0x00, 0x00, 0x00, 0x21,                         // ExpCmdSN
        0x00, 0x00, 0x00, 0x40,                         // MaxCmdSN
        0x00, 0x00, 0x00, 0x01,                         // ExpDataSN
        0x00, 0x00, 0x00, 0x00,                         // Bidirectional Read Residual Count
        0x00, 0x00, 0x02, 0x00,                         // Residual Count
    ];

    #[rustfmt::skip]
    static SENSE: [u8; 20] = [
        0x00, 0x12,                                     // SenseLength = 18
        0x70, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x0a, // fixed sense, ILLEGAL REQUEST
        0x00, 0x00, 0x00, 0x00, 0x24, 0x00, 0x00, 0x00, // ASC 0x24
        0x00, 0x00,
    ];

    fn read10() -> ScsiCommand {
        let mut cdb = [0; 16];
        cdb[0] = 0x28;
        cdb[8] = 8;
        ScsiCommand {
            immediate: false,
            final_: true,
            read: true,
            write: false,
            attr: TaskAttr::SIMPLE,
            lun: Lun::from_number(1),
            itt: 0x10,
            expected_data_transfer_length: 4096,
            cmd_sn: 0x20,
            exp_stat_sn: 0x30,
            cdb,
            ..ScsiCommand::default()
        }
    }

    fn bidi() -> ScsiCommand {
        let mut cdb = [0; 16];
        cdb[0] = 0x7f;
        cdb[7] = 0x18;
        ScsiCommand {
            immediate: true,
            final_: false,
            read: true,
            write: true,
            attr: TaskAttr(7),
            lun: Lun::from_number(1),
            itt: 0x11,
            expected_data_transfer_length: 512,
            cmd_sn: 0x21,
            exp_stat_sn: 0x31,
            cdb,
            extended_cdb: Some(Bytes::from_iter(0x10..0x20u8)),
            bidi_read_length: Some(1024),
            data: Bytes::from_static(b"abc"),
        }
    }

    fn response() -> ScsiResponse {
        ScsiResponse {
            underflow: true,
            status: ScsiStatus::CHECK_CONDITION,
            itt: 0x10,
            stat_sn: 0x31,
            exp_cmd_sn: 0x21,
            max_cmd_sn: 0x40,
            exp_data_sn: 1,
            residual: 512,
            data: Bytes::from_static(&SENSE),
            ..ScsiResponse::default()
        }
    }

    #[test]
    fn test_parse() {
        let pdu = Pdu::parse(&READ10_BYTES, &[], Bytes::new()).unwrap();
        assert_eq!(pdu, Pdu::ScsiCommand(read10()));
        let pdu = Pdu::parse(&BIDI_BYTES, &BIDI_AHS, Bytes::from_static(b"abc")).unwrap();
        assert_eq!(pdu, Pdu::ScsiCommand(bidi()));
        let pdu = Pdu::parse(&RESPONSE_BYTES, &[], Bytes::from_static(&SENSE)).unwrap();
        assert_eq!(pdu, Pdu::ScsiResponse(response()));
    }

    #[test]
    fn test_emit() {
        assert_eq!(
            Pdu::ScsiCommand(read10()).encoded_header(),
            (READ10_BYTES, None)
        );
        let ahs = Some(Bytes::from_static(&BIDI_AHS));
        assert_eq!(Pdu::ScsiCommand(bidi()).encoded_header(), (BIDI_BYTES, ahs));
        assert_eq!(
            Pdu::ScsiResponse(response()).encoded_header(),
            (RESPONSE_BYTES, None)
        );
    }

    #[test]
    fn sense_data() {
        assert_eq!(response().sense(), Some(&SENSE[2..]));
        let short = ScsiResponse {
            data: Bytes::from_static(&[0x00, 0x12, 0x70]),
            ..response()
        };
        assert_eq!(short.sense(), None);
        assert_eq!(ScsiResponse::default().sense(), None);
    }

    #[test]
    fn malformed_ahs() {
        let ahs_error = |ahs: &[u8]| {
            let mut bhs = BIDI_BYTES;
            bhs[4] = (ahs.len() / 4) as u8;
            match Pdu::parse(&bhs, ahs, Bytes::from_static(b"abc")) {
                Err(InvalidPdu::Ahs { reason, .. }) => reason,
                other => panic!("expected an AHS error, got {other:?}"),
            }
        };
        assert_eq!(
            ahs_error(&[0, 5, 2, 0, 0, 0, 4, 0, 0, 5, 2, 0, 0, 0, 4, 0]),
            "repeated AHS type"
        );
        assert_eq!(ahs_error(&[0, 1, 9, 0]), "unknown AHS type");
        assert_eq!(
            ahs_error(&[0, 9, 1, 0, 0, 0, 0, 0]),
            "AHSLength runs past TotalAHSLength"
        );
        assert_eq!(ahs_error(&[0, 0, 1, 0]), "empty Extended CDB AHS");
        assert!(ahs_error(&[0, 4, 2, 0, 0, 0, 4, 0]).starts_with("Bidirectional"));
    }

    #[test]
    fn invalid_flags() {
        let mut bhs = READ10_BYTES;
        bhs[1] = 0x81; // R=0 W=0 with a nonzero Expected Data Transfer Length
        let err = Pdu::parse(&bhs, &[], Bytes::new()).unwrap_err();
        assert!(
            matches!(err, InvalidPdu::Field { field: "flags", .. }),
            "{err:?}"
        );
        let mut bhs = RESPONSE_BYTES;
        bhs[1] = 0x86; // O and U
        let err = Pdu::parse(&bhs, &[], Bytes::from_static(&SENSE)).unwrap_err();
        assert!(
            matches!(err, InvalidPdu::Field { field: "flags", .. }),
            "{err:?}"
        );
        bhs[1] = 0x98; // o and u
        assert!(Pdu::parse(&bhs, &[], Bytes::from_static(&SENSE)).is_err());
    }

    proptest! {
        #[test]
        fn command_round_trips(p in strategies::scsi_command()) {
            strategies::assert_round_trip(&Pdu::ScsiCommand(p))?;
        }

        #[test]
        fn response_round_trips(p in strategies::scsi_response()) {
            strategies::assert_round_trip(&Pdu::ScsiResponse(p))?;
        }
    }
}
