//! Asynchronous Message (RFC 7143 §11.9): target-initiated events.

use bytes::Bytes;
use zerocopy::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::wire::codes::{AsyncEvent, Opcode};
use crate::wire::header::{BHS_LEN, RESERVED_TAG, opcode_byte, to_u24};
use crate::wire::lun::Lun;

/// Asynchronous Message (RFC 7143 §11.9). Its ITT is always 0xffffffff.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct AsyncMessage {
    /// LUN the event concerns (or reserved).
    pub lun: Lun,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
    /// Event code.
    pub event: AsyncEvent,
    /// Vendor-specific detail for `AsyncEvent::VENDOR_SPECIFIC`.
    pub vendor_code: u8,
    /// Event parameter 1 (e.g. the CID for a connection drop).
    pub parameter1: u16,
    /// Event parameter 2 (e.g. Time2Wait).
    pub parameter2: u16,
    /// Event parameter 3 (e.g. Time2Retain, or the logout deadline).
    pub parameter3: u16,
    /// SenseLength + sense data (SCSI events) or iSCSI event data.
    pub data: Bytes,
}

/// Wire layout of the Asynchronous Message BHS.
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct AsyncMessageBhs {
    opcode: u8,
    flags: u8,
    reserved1: [u8; 2],
    total_ahs_len: u8,
    data_segment_len: [u8; 3],
    lun: [u8; 8],
    itt: U32,
    reserved2: [u8; 4],
    stat_sn: U32,
    exp_cmd_sn: U32,
    max_cmd_sn: U32,
    event: u8,
    vendor_code: u8,
    parameter1: U16,
    parameter2: U16,
    parameter3: U16,
    reserved3: [u8; 4],
}

const _: () = assert!(size_of::<AsyncMessageBhs>() == BHS_LEN);

impl AsyncMessage {
    pub(crate) fn parse(bhs: &[u8; BHS_LEN], data: Bytes) -> Self {
        let raw: AsyncMessageBhs = zerocopy::transmute!(*bhs);
        AsyncMessage {
            lun: Lun(raw.lun),
            stat_sn: raw.stat_sn.get(),
            exp_cmd_sn: raw.exp_cmd_sn.get(),
            max_cmd_sn: raw.max_cmd_sn.get(),
            event: AsyncEvent(raw.event),
            vendor_code: raw.vendor_code,
            parameter1: raw.parameter1.get(),
            parameter2: raw.parameter2.get(),
            parameter3: raw.parameter3.get(),
            data,
        }
    }

    pub(crate) fn emit(&self) -> [u8; BHS_LEN] {
        let raw = AsyncMessageBhs {
            opcode: opcode_byte(Opcode::ASYNC_MESSAGE, false),
            flags: 0x80,
            reserved1: [0; 2],
            total_ahs_len: 0,
            data_segment_len: to_u24(self.data.len()),
            lun: self.lun.0,
            itt: RESERVED_TAG.into(),
            reserved2: [0; 4],
            stat_sn: self.stat_sn.into(),
            exp_cmd_sn: self.exp_cmd_sn.into(),
            max_cmd_sn: self.max_cmd_sn.into(),
            event: self.event.0,
            vendor_code: self.vendor_code,
            parameter1: self.parameter1.into(),
            parameter2: self.parameter2.into(),
            parameter3: self.parameter3.into(),
            reserved3: [0; 4],
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
    static BYTES: [u8; 48] = [
        0x32,                                           // opcode 0x32
        0x80,                                           // 1
        0x00, 0x00,                                     // reserved
        0x00,                                           // TotalAHSLength
        0x00, 0x00, 0x00,                               // DataSegmentLength
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // LUN
        0xff, 0xff, 0xff, 0xff,                         // ITT: always 0xffffffff
        0x00, 0x00, 0x00, 0x00,                         // reserved
        0x00, 0x00, 0x00, 0x35,                         // StatSN
        0x00, 0x00, 0x00, 0x26,                         // ExpCmdSN
        0x00, 0x00, 0x00, 0x45,                         // MaxCmdSN
        0x01,                                           // AsyncEvent: logout requested
        0x00,                                           // AsyncVCode
        0x00, 0x00,                                     // Parameter1
        0x00, 0x00,                                     // Parameter2
        0x00, 0x1e,                                     // Parameter3: 30 s to log out
        0x00, 0x00, 0x00, 0x00,                         // reserved
    ];

    fn message() -> AsyncMessage {
        AsyncMessage {
            lun: Lun::default(),
            stat_sn: 0x35,
            exp_cmd_sn: 0x26,
            max_cmd_sn: 0x45,
            event: AsyncEvent::LOGOUT_REQUEST,
            vendor_code: 0,
            parameter1: 0,
            parameter2: 0,
            parameter3: 30,
            data: Bytes::new(),
        }
    }

    #[test]
    fn test_parse() {
        let pdu = Pdu::parse(&BYTES, &[], Bytes::new()).unwrap();
        assert_eq!(pdu, Pdu::AsyncMessage(message()));
        assert_eq!(pdu.itt(), RESERVED_TAG);
    }

    #[test]
    fn test_emit() {
        assert_eq!(Pdu::AsyncMessage(message()).encoded_header(), (BYTES, None));
    }

    proptest! {
        #[test]
        fn round_trips(p in strategies::async_message()) {
            strategies::assert_round_trip(&Pdu::AsyncMessage(p))?;
        }
    }
}
