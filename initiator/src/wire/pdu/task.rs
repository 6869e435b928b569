//! Task Management Function Request and Response (RFC 7143 §11.5, §11.6).

use zerocopy::network_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::wire::codes::{Opcode, TmFunction, TmResponse};
use crate::wire::header::{BHS_LEN, opcode_byte};
use crate::wire::lun::Lun;

/// Task Management Function Request (RFC 7143 §11.5).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct TaskMgmtRequest {
    /// I bit: immediate delivery.
    pub immediate: bool,
    /// Function (seven bits).
    pub function: TmFunction,
    /// LUN (or reserved for target-wide functions).
    pub lun: Lun,
    /// Initiator Task Tag of this request.
    pub itt: u32,
    /// ITT of the task to act on (ABORT TASK, TASK REASSIGN), else 0xffffffff.
    pub referenced_task_tag: u32,
    /// CmdSN.
    pub cmd_sn: u32,
    /// ExpStatSN.
    pub exp_stat_sn: u32,
    /// CmdSN of the referenced task (ABORT TASK), or reserved.
    pub ref_cmd_sn: u32,
    /// ExpDataSN for TASK REASSIGN, or reserved.
    pub exp_data_sn: u32,
}

/// Task Management Function Response (RFC 7143 §11.6).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct TaskMgmtResponse {
    /// Outcome of the function.
    pub response: TmResponse,
    /// ITT of the request.
    pub itt: u32,
    /// StatSN.
    pub stat_sn: u32,
    /// ExpCmdSN.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN.
    pub max_cmd_sn: u32,
}

/// Wire layout of the Task Management Function Request BHS.
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct TaskMgmtRequestBhs {
    opcode: u8,
    flags: u8,
    reserved1: [u8; 2],
    total_ahs_len: u8,
    data_segment_len: [u8; 3],
    lun: [u8; 8],
    itt: U32,
    referenced_task_tag: U32,
    cmd_sn: U32,
    exp_stat_sn: U32,
    ref_cmd_sn: U32,
    exp_data_sn: U32,
    reserved2: [u8; 8],
}

/// Wire layout of the Task Management Function Response BHS.
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct TaskMgmtResponseBhs {
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
    reserved4: [u8; 12],
}

const _: () = assert!(size_of::<TaskMgmtRequestBhs>() == BHS_LEN);
const _: () = assert!(size_of::<TaskMgmtResponseBhs>() == BHS_LEN);

impl TaskMgmtRequest {
    pub(crate) fn parse(bhs: &[u8; BHS_LEN]) -> Self {
        let raw: TaskMgmtRequestBhs = zerocopy::transmute!(*bhs);
        TaskMgmtRequest {
            immediate: raw.opcode & 0x40 != 0,
            function: TmFunction(raw.flags & 0x7f),
            lun: Lun(raw.lun),
            itt: raw.itt.get(),
            referenced_task_tag: raw.referenced_task_tag.get(),
            cmd_sn: raw.cmd_sn.get(),
            exp_stat_sn: raw.exp_stat_sn.get(),
            ref_cmd_sn: raw.ref_cmd_sn.get(),
            exp_data_sn: raw.exp_data_sn.get(),
        }
    }

    pub(crate) fn emit(&self) -> [u8; BHS_LEN] {
        let raw = TaskMgmtRequestBhs {
            opcode: opcode_byte(Opcode::TASK_MGMT_REQUEST, self.immediate),
            flags: 0x80 | self.function.0 & 0x7f,
            reserved1: [0; 2],
            total_ahs_len: 0,
            data_segment_len: [0; 3],
            lun: self.lun.0,
            itt: self.itt.into(),
            referenced_task_tag: self.referenced_task_tag.into(),
            cmd_sn: self.cmd_sn.into(),
            exp_stat_sn: self.exp_stat_sn.into(),
            ref_cmd_sn: self.ref_cmd_sn.into(),
            exp_data_sn: self.exp_data_sn.into(),
            reserved2: [0; 8],
        };
        zerocopy::transmute!(raw)
    }
}

impl TaskMgmtResponse {
    pub(crate) fn parse(bhs: &[u8; BHS_LEN]) -> Self {
        let raw: TaskMgmtResponseBhs = zerocopy::transmute!(*bhs);
        TaskMgmtResponse {
            response: TmResponse(raw.response),
            itt: raw.itt.get(),
            stat_sn: raw.stat_sn.get(),
            exp_cmd_sn: raw.exp_cmd_sn.get(),
            max_cmd_sn: raw.max_cmd_sn.get(),
        }
    }

    pub(crate) fn emit(&self) -> [u8; BHS_LEN] {
        let raw = TaskMgmtResponseBhs {
            opcode: opcode_byte(Opcode::TASK_MGMT_RESPONSE, false),
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
            reserved4: [0; 12],
        };
        zerocopy::transmute!(raw)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::wire::error::InvalidPdu;
    use crate::wire::pdu::Pdu;
    use crate::wire::strategies;

    #[rustfmt::skip]
    static REQUEST_BYTES: [u8; 48] = [
        0x42,                                           // I=1, opcode 0x02
        0x81,                                           // 1, Function: ABORT TASK
        0x00, 0x00,                                     // reserved
        0x00,                                           // TotalAHSLength
        0x00, 0x00, 0x00,                               // DataSegmentLength
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // LUN 1
        0x00, 0x00, 0x00, 0x50,                         // ITT
        0x00, 0x00, 0x00, 0x10,                         // Referenced Task Tag
        0x00, 0x00, 0x00, 0x22,                         // CmdSN
        0x00, 0x00, 0x00, 0x32,                         // ExpStatSN
        0x00, 0x00, 0x00, 0x20,                         // RefCmdSN
        0x00, 0x00, 0x00, 0x00,                         // ExpDataSN
        0, 0, 0, 0, 0, 0, 0, 0,                         // reserved
    ];

    #[rustfmt::skip]
    static RESPONSE_BYTES: [u8; 48] = [
        0x22,                                           // opcode 0x22
        0x80,                                           // 1
        0x01,                                           // Response: task does not exist
        0x00,                                           // reserved
        0x00,                                           // TotalAHSLength
        0x00, 0x00, 0x00,                               // DataSegmentLength
        0, 0, 0, 0, 0, 0, 0, 0,                         // reserved
        0x00, 0x00, 0x00, 0x50,                         // ITT
        0x00, 0x00, 0x00, 0x00,                         // reserved
        0x00, 0x00, 0x00, 0x32,                         // StatSN
        0x00, 0x00, 0x00, 0x23,                         // ExpCmdSN
        0x00, 0x00, 0x00, 0x42,                         // MaxCmdSN
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,             // reserved
    ];

    fn request() -> TaskMgmtRequest {
        TaskMgmtRequest {
            immediate: true,
            function: TmFunction::ABORT_TASK,
            lun: Lun::from_number(1),
            itt: 0x50,
            referenced_task_tag: 0x10,
            cmd_sn: 0x22,
            exp_stat_sn: 0x32,
            ref_cmd_sn: 0x20,
            exp_data_sn: 0,
        }
    }

    fn response() -> TaskMgmtResponse {
        TaskMgmtResponse {
            response: TmResponse::TASK_DOES_NOT_EXIST,
            itt: 0x50,
            stat_sn: 0x32,
            exp_cmd_sn: 0x23,
            max_cmd_sn: 0x42,
        }
    }

    #[test]
    fn test_parse() {
        let pdu = Pdu::parse(&REQUEST_BYTES, &[], Bytes::new()).unwrap();
        assert_eq!(pdu, Pdu::TaskMgmtRequest(request()));
        let pdu = Pdu::parse(&RESPONSE_BYTES, &[], Bytes::new()).unwrap();
        assert_eq!(pdu, Pdu::TaskMgmtResponse(response()));
    }

    #[test]
    fn test_emit() {
        assert_eq!(
            Pdu::TaskMgmtRequest(request()).encoded_header(),
            (REQUEST_BYTES, None)
        );
        assert_eq!(
            Pdu::TaskMgmtResponse(response()).encoded_header(),
            (RESPONSE_BYTES, None)
        );
    }

    #[test]
    fn data_segment_is_rejected() {
        let mut bhs = RESPONSE_BYTES;
        bhs[7] = 1;
        let err = Pdu::parse(&bhs, &[], Bytes::from_static(b"x")).unwrap_err();
        assert!(
            matches!(err, InvalidPdu::UnexpectedData { len: 1, .. }),
            "{err:?}"
        );
    }

    proptest! {
        #[test]
        fn request_round_trips(p in strategies::task_mgmt_request()) {
            strategies::assert_round_trip(&Pdu::TaskMgmtRequest(p))?;
        }

        #[test]
        fn response_round_trips(p in strategies::task_mgmt_response()) {
            strategies::assert_round_trip(&Pdu::TaskMgmtResponse(p))?;
        }
    }
}
