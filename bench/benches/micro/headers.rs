//! Header parse and emit of every PDU type the initiator sends or receives (RFC 7143 §11).
//!
//! Parse is what the connection does with a whole header (`Codec::decode_header_as`, then
//! `Pdu::parse_header`), as the receiver of the PDU: the initiator for target PDUs, a target
//! for the initiator's own. Emit is `Codec::encode_header`. Digests are off: their cost is
//! CRC32C over 48 bytes, measured by `pdu.rs`.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput};
use sanshim_initiator::scsi::Cdb;
use sanshim_initiator::wire::{
    AsyncEvent, AsyncMessage, Codec, DataIn, DataOut, Isid, LoginRequest, LoginResponse,
    LoginStatus, LogoutReason, LogoutRequest, LogoutResponse, LogoutResponseCode, Lun, NopIn,
    NopOut, Pdu, R2t, RESERVED_TAG, Reject, RejectReason, Role, ScsiCommand, ScsiResponse,
    ScsiStatus, Stage, TaskAttr, TaskMgmtRequest, TaskMgmtResponse, TextRequest, TextResponse,
    TmFunction, TmResponse,
};

/// `header_parse/<type>`: decode and parse one header.
pub fn parse(c: &mut Criterion) {
    let codec = codec();
    let mut group = c.benchmark_group("header_parse");
    group.throughput(Throughput::Elements(1));
    for (name, pdu) in pdus() {
        let mut wire = BytesMut::new();
        codec.encode(&pdu, &mut wire);
        let receiver = if pdu.opcode().is_initiator() {
            Role::Target
        } else {
            Role::Initiator
        };
        check_parse(&codec, &pdu, &wire, receiver);
        group.bench_function(name, |b| {
            b.iter(|| parse_one(&codec, black_box(&wire), receiver))
        });
    }
    group.finish();
}

/// `header_emit/<type>`: encode one header.
pub fn emit(c: &mut Criterion) {
    let codec = codec();
    let mut group = c.benchmark_group("header_emit");
    group.throughput(Throughput::Elements(1));
    for (name, pdu) in pdus() {
        let mut whole = BytesMut::new();
        codec.encode(&pdu, &mut whole);
        let mut out = BytesMut::with_capacity(128);
        let len = codec.encode_header(&pdu, &mut out);
        assert_eq!(
            &out[..],
            &whole[..len],
            "{name}: header emitted as by encode"
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                black_box(codec.encode_header(black_box(&pdu), &mut out))
            })
        });
    }
    group.finish();
}

fn codec() -> Codec {
    Codec {
        max_recv_data_segment_length: 256 * 1024,
        ..Codec::new()
    }
}

fn parse_one(codec: &Codec, wire: &[u8], receiver: Role) -> Pdu {
    let info = match codec.decode_header_as(wire, receiver) {
        Ok(Some(info)) => info,
        other => panic!("header did not decode: {other:?}"),
    };
    let ahs = wire.get(info.ahs_range()).unwrap_or_default();
    match Pdu::parse_header(&info.bhs, ahs) {
        Ok(pdu) => pdu,
        Err(e) => panic!("header did not parse: {e}"),
    }
}

/// The parsed header is the PDU without its data segment: it emits the same BHS but for
/// DataSegmentLength.
fn check_parse(codec: &Codec, pdu: &Pdu, wire: &[u8], receiver: Role) {
    let parsed = parse_one(codec, wire, receiver);
    let (mut want, _) = pdu.encoded_header();
    want[5..8].fill(0);
    let (got, _) = parsed.encoded_header();
    assert_eq!(got, want, "{:?} header round trip", pdu.opcode());
    assert!(parsed.data().is_empty());
}

/// One typical PDU of each type, named for the bench id.
fn pdus() -> Vec<(&'static str, Pdu)> {
    let mut pdus = initiator_pdus();
    pdus.extend(target_pdus());
    pdus
}

fn initiator_pdus() -> Vec<(&'static str, Pdu)> {
    let text = |s: &str| Bytes::from(s.replace(' ', "\0") + "\0");
    vec![
        ("scsi_command", Pdu::ScsiCommand(read16())),
        (
            "data_out",
            Pdu::DataOut(DataOut {
                final_: true,
                lun: Lun::from_number(1),
                itt: 0x1234,
                ttt: 0x5678,
                exp_stat_sn: 66,
                data_sn: 3,
                buffer_offset: 3 * 8192,
                data: Bytes::from(vec![0xa5; 8192]),
            }),
        ),
        (
            "nop_out",
            Pdu::NopOut(NopOut {
                immediate: true,
                itt: 0x4321,
                ttt: RESERVED_TAG,
                cmd_sn: 78,
                exp_stat_sn: 66,
                ..NopOut::default()
            }),
        ),
        (
            "text_request",
            Pdu::TextRequest(TextRequest {
                final_: true,
                itt: 0x99,
                ttt: RESERVED_TAG,
                cmd_sn: 78,
                exp_stat_sn: 66,
                data: text("SendTargets=All"),
                ..TextRequest::default()
            }),
        ),
        (
            "login_request",
            Pdu::LoginRequest(LoginRequest {
                transit: true,
                csg: Stage::SECURITY,
                nsg: Stage::OPERATIONAL,
                isid: Isid::random_qualifier(7),
                itt: 1,
                cmd_sn: 1,
                data: text(
                    "InitiatorName=iqn.2026-12.bench.sanshim:i \
                     TargetName=iqn.2026-12.bench.sanshim:t SessionType=Normal AuthMethod=None",
                ),
                ..LoginRequest::default()
            }),
        ),
        (
            "logout_request",
            Pdu::LogoutRequest(LogoutRequest {
                immediate: true,
                reason: LogoutReason::CLOSE_SESSION,
                itt: 0x77,
                cmd_sn: 80,
                exp_stat_sn: 70,
                ..LogoutRequest::default()
            }),
        ),
        (
            "task_mgmt_request",
            Pdu::TaskMgmtRequest(TaskMgmtRequest {
                immediate: true,
                function: TmFunction::ABORT_TASK,
                lun: Lun::from_number(1),
                itt: 0x55,
                referenced_task_tag: 0x1234,
                cmd_sn: 79,
                exp_stat_sn: 66,
                ref_cmd_sn: 77,
                exp_data_sn: 0,
            }),
        ),
    ]
}

fn target_pdus() -> Vec<(&'static str, Pdu)> {
    let text = |s: &str| Bytes::from(s.replace(' ', "\0") + "\0");
    vec![
        ("scsi_response", Pdu::ScsiResponse(scsi_response())),
        ("data_in", Pdu::DataIn(data_in())),
        (
            "r2t",
            Pdu::R2t(R2t {
                lun: Lun::from_number(1),
                itt: 0x1234,
                ttt: 0x5678,
                stat_sn: 67,
                exp_cmd_sn: 78,
                max_cmd_sn: 140,
                r2t_sn: 1,
                buffer_offset: 65536,
                desired_data_transfer_length: 262_144,
            }),
        ),
        (
            "nop_in",
            Pdu::NopIn(NopIn {
                itt: 0x4321,
                ttt: RESERVED_TAG,
                stat_sn: 67,
                exp_cmd_sn: 79,
                max_cmd_sn: 141,
                ..NopIn::default()
            }),
        ),
        (
            "text_response",
            Pdu::TextResponse(TextResponse {
                final_: true,
                itt: 0x99,
                ttt: RESERVED_TAG,
                stat_sn: 67,
                exp_cmd_sn: 79,
                max_cmd_sn: 141,
                data: text("TargetName=iqn.2026-12.bench.sanshim:t TargetAddress=10.0.0.1:3260,1"),
                ..TextResponse::default()
            }),
        ),
        (
            "login_response",
            Pdu::LoginResponse(LoginResponse {
                transit: true,
                csg: Stage::OPERATIONAL,
                nsg: Stage::FULL_FEATURE,
                isid: Isid::random_qualifier(7),
                tsih: 3,
                itt: 1,
                stat_sn: 1,
                exp_cmd_sn: 1,
                max_cmd_sn: 64,
                status: LoginStatus::SUCCESS,
                data: text("HeaderDigest=None DataDigest=None MaxRecvDataSegmentLength=262144"),
                ..LoginResponse::default()
            }),
        ),
        (
            "logout_response",
            Pdu::LogoutResponse(LogoutResponse {
                response: LogoutResponseCode::SUCCESS,
                itt: 0x77,
                stat_sn: 70,
                exp_cmd_sn: 81,
                max_cmd_sn: 143,
                time2wait: 2,
                time2retain: 0,
            }),
        ),
        (
            "task_mgmt_response",
            Pdu::TaskMgmtResponse(TaskMgmtResponse {
                response: TmResponse::FUNCTION_COMPLETE,
                itt: 0x55,
                stat_sn: 68,
                exp_cmd_sn: 80,
                max_cmd_sn: 142,
            }),
        ),
        ("reject", Pdu::Reject(reject())),
        (
            "async_message",
            Pdu::AsyncMessage(AsyncMessage {
                lun: Lun::from_number(1),
                stat_sn: 69,
                exp_cmd_sn: 80,
                max_cmd_sn: 142,
                event: AsyncEvent::LOGOUT_REQUEST,
                parameter3: 2,
                ..AsyncMessage::default()
            }),
        ),
    ]
}

fn read16() -> ScsiCommand {
    ScsiCommand {
        final_: true,
        read: true,
        attr: TaskAttr::SIMPLE,
        lun: Lun::from_number(1),
        itt: 0x1234,
        expected_data_transfer_length: 131_072,
        cmd_sn: 77,
        exp_stat_sn: 66,
        cdb: Cdb::read16(0x0123_4567, 256).padded(),
        ..ScsiCommand::default()
    }
}

fn scsi_response() -> ScsiResponse {
    ScsiResponse {
        status: ScsiStatus::GOOD,
        itt: 0x1234,
        stat_sn: 66,
        exp_cmd_sn: 78,
        max_cmd_sn: 140,
        ..ScsiResponse::default()
    }
}

fn data_in() -> DataIn {
    DataIn {
        final_: true,
        status_present: true,
        status: ScsiStatus::GOOD,
        itt: 0x1234,
        ttt: RESERVED_TAG,
        stat_sn: 66,
        exp_cmd_sn: 78,
        max_cmd_sn: 140,
        data_sn: 15,
        buffer_offset: 15 * 8192,
        data: Bytes::from(vec![0x5a; 8192]),
        ..DataIn::default()
    }
}

/// A Reject of a SCSI Command: its BHS in the data segment.
fn reject() -> Reject {
    let (bhs, _) = Pdu::ScsiCommand(read16()).encoded_header();
    Reject {
        reason: RejectReason::PROTOCOL_ERROR,
        stat_sn: 68,
        exp_cmd_sn: 78,
        max_cmd_sn: 140,
        data_sn_or_r2t_sn: 0,
        data: Bytes::copy_from_slice(&bhs),
    }
}
