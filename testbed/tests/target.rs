//! The fake target driven by a hand-rolled initiator over a std TcpStream.

mod support;

use std::time::Duration;

use sanshim_initiator::scsi::{
    Cdb, DeviceIdentification, ReadCapacity10, ReadCapacity16, Sense, SenseKey, StandardInquiry,
    SupportedVpdPages,
};
use sanshim_initiator::wire::{
    AsyncEvent, Bytes, LoginStatus, Lun, NopOut, Opcode, Pdu, RESERVED_TAG, RejectReason,
    ScsiStatus, Stage, TaskMgmtRequest, TextAssembler, TextRequest, TmFunction, TmResponse,
    encode_text,
};
use sanshim_testbed::{Digest, FakeTarget, Rule, SenseCode, TargetConfig};
use support::{Client, RecvError};

const SHORT: Duration = Duration::from_millis(300);

fn logged_in(target: &FakeTarget, keys: &[(&str, &str)]) -> Client {
    let mut c = Client::connect(target.addr());
    c.login(target.iqn(), keys);
    c
}

#[test]
fn login_inquiry_vpd_and_capacity() {
    let target = FakeTarget::start(TargetConfig::default());
    let mut c = logged_in(&target, &[("MaxRecvDataSegmentLength", "65536")]);
    assert_eq!(c.answer("TargetPortalGroupTag"), Some("1"));
    assert_eq!(c.answer("MaxRecvDataSegmentLength"), Some("262144"));
    assert_ne!(c.tsih, 0);

    let r = c.command(1, Cdb::inquiry(96).padded(), 96, &[]);
    assert_eq!(r.status, ScsiStatus::GOOD);
    let inq = StandardInquiry::parse(&r.data).unwrap();
    assert_eq!(
        (inq.vendor.as_str(), inq.product.as_str()),
        ("SANSHIM", "FAKE-TARGET")
    );
    assert!(r.underflow && r.residual == 96 - 36);

    let r = c.command(1, Cdb::inquiry_vpd(0x83, 255).padded(), 255, &[]);
    let id = DeviceIdentification::parse(&r.data).unwrap();
    assert_eq!(
        id.lu_identity().unwrap().value,
        TargetConfig::default().naa.to_vec()
    );
    assert!(id.designators.iter().any(|d| d.designator_type.0 == 1));
    let r = c.command(1, Cdb::inquiry_vpd(0, 255).padded(), 255, &[]);
    assert_eq!(SupportedVpdPages::parse(&r.data).unwrap().pages.len(), 6);

    let r = c.command(1, Cdb::read_capacity10().padded(), 8, &[]);
    let cap = ReadCapacity10::parse(&r.data).unwrap();
    assert_eq!((cap.blocks(), cap.block_length), (32_768, 512));
    let r = c.command(1, Cdb::read_capacity16(32).padded(), 32, &[]);
    assert_eq!(ReadCapacity16::parse(&r.data).unwrap().blocks, 32_768);

    let r = c.command(0, Cdb::inquiry(36).padded(), 36, &[]);
    assert_eq!(StandardInquiry::parse(&r.data).unwrap().device_type.0, 0x0c);

    let r = c.command(1, [0xee; 16], 0, &[]);
    let sense = Sense::from_response_data(&r.sense_segment)
        .unwrap()
        .unwrap();
    assert_eq!(
        (sense.key, sense.asc, sense.ascq),
        (SenseKey::ILLEGAL_REQUEST, 0x20, 0)
    );
    let r = c.command(1, Cdb::read16(32_768, 1).padded(), 512, &[]);
    let sense = Sense::from_response_data(&r.sense_segment)
        .unwrap()
        .unwrap();
    assert_eq!((sense.key, sense.asc), (SenseKey::ILLEGAL_REQUEST, 0x21));

    let counters = target.counters();
    assert_eq!(counters.logins_normal, 1);
    assert_eq!(counters.commands_of(0x12), 4);
}

#[test]
fn login_with_digests_reads_and_writes() {
    let config = TargetConfig {
        header_digest: Digest::Crc32c,
        data_digest: Digest::Crc32c,
        ..TargetConfig::default()
    };
    let target = FakeTarget::start(config);
    let keys = [
        ("HeaderDigest", "None,CRC32C"),
        ("DataDigest", "None,CRC32C"),
    ];
    let mut c = logged_in(&target, &keys);
    assert!(c.rx.header_digest && c.rx.data_digest);
    let data: Vec<u8> = (0..8192u32).map(|i| (i * 7) as u8).collect();
    let w = c.command(1, Cdb::write10(4, 16, false).padded(), 0, &data);
    assert_eq!(w.status, ScsiStatus::GOOD);
    let r = c.command(1, Cdb::read10(4, 16).padded(), 8192, &[]);
    assert_eq!(r.data, data);
    assert_eq!(target.read_back(4, 8192), data);

    // The initiator's first choice, and a target that insists on CRC32C.
    let target = FakeTarget::start(TargetConfig {
        header_digest: Digest::InitiatorFirst,
        data_digest: Digest::Crc32c,
        ..TargetConfig::default()
    });
    let mut c = Client::connect(target.addr());
    c.login(
        target.iqn(),
        &[("HeaderDigest", "None,CRC32C"), ("DataDigest", "None")],
    );
    assert_eq!(c.answer("HeaderDigest"), Some("None"));
    assert_eq!(c.answer("DataDigest"), Some("Reject"));
}

#[test]
fn write_with_r2ts_then_read_back() {
    let target = FakeTarget::start(TargetConfig {
        max_burst_length: 16_384,
        max_recv_data_segment_length: 4096,
        ..TargetConfig::default()
    });
    let keys = [
        ("ImmediateData", "No"),
        ("InitialR2T", "Yes"),
        ("MaxBurstLength", "262144"),
        ("MaxRecvDataSegmentLength", "8192"),
    ];
    let mut c = logged_in(&target, &keys);
    assert_eq!(c.answer("MaxBurstLength"), Some("16384"));
    let data: Vec<u8> = (0..65_536u32).map(|i| (i / 512) as u8 ^ i as u8).collect();
    let w = c.command(1, Cdb::write16(100, 128, false).padded(), 0, &data);
    assert_eq!(w.status, ScsiStatus::GOOD);
    assert_eq!(w.r2ts, 4);
    assert_eq!(target.read_back(100, 65_536), data);
    let r = c.command(1, Cdb::read16(100, 128).padded(), 65_536, &[]);
    assert_eq!(r.data, data);
    // 8192-byte Data-Ins (the initiator's MaxRecvDataSegmentLength).
    assert_eq!(r.data_in, 8);
    let counters = target.counters();
    assert_eq!((counters.r2ts, counters.data_out), (4, 16));
    assert_eq!(counters.lun1_bytes_written(), 65_536);
    assert_eq!(counters.lun1_bytes_read(), 65_536);
}

#[test]
fn unsolicited_data_and_status_in_a_separate_response() {
    let target = FakeTarget::start(TargetConfig {
        initial_r2t: false,
        status_in_data_in: false,
        ..TargetConfig::default()
    });
    let keys = [
        ("InitialR2T", "No"),
        ("FirstBurstLength", "16384"),
        ("MaxBurstLength", "16384"),
    ];
    let mut c = logged_in(&target, &keys);
    assert_eq!(c.answer("InitialR2T"), Some("No"));
    let data = vec![0x5a; 40_960];
    let w = c.command(1, Cdb::write10(0, 80, false).padded(), 0, &data);
    assert_eq!((w.status, w.r2ts), (ScsiStatus::GOOD, 2));
    let r = c.command(1, Cdb::read10(0, 80).padded(), 40_960, &[]);
    assert_eq!((r.data.len(), r.status), (40_960, ScsiStatus::GOOD));
    assert_eq!(r.data, data);
}

#[test]
fn tgtd_style_first_burst_above_max_burst() {
    let target = FakeTarget::start(TargetConfig {
        max_burst_length: 16_384,
        first_burst_length: 65_536,
        ..TargetConfig::default()
    });
    let c = logged_in(
        &target,
        &[("FirstBurstLength", "65536"), ("MaxBurstLength", "262144")],
    );
    assert_eq!(c.answer("FirstBurstLength"), Some("65536"));
    assert_eq!(c.answer("MaxBurstLength"), Some("16384"));
}

#[test]
fn busy_rule_fires_once() {
    let target = FakeTarget::start(TargetConfig::default());
    let mut c = logged_in(&target, &[]);
    target.script(Rule::busy(1));
    let tur = Cdb::test_unit_ready().padded();
    assert_eq!(c.command(1, tur, 0, &[]).status, ScsiStatus::BUSY);
    assert_eq!(c.command(1, tur, 0, &[]).status, ScsiStatus::GOOD);
    assert_eq!(target.counters().faults_fired, 1);
    assert!(target.armed().is_empty());

    target.script(Rule::check_condition(
        Some(0x28),
        2,
        SenseCode::POWER_ON_RESET,
    ));
    assert_eq!(c.command(1, tur, 0, &[]).status, ScsiStatus::GOOD);
    for _ in 0..2 {
        let r = c.command(1, Cdb::read10(0, 1).padded(), 512, &[]);
        assert_eq!(r.status, ScsiStatus::CHECK_CONDITION);
        let sense = Sense::from_response_data(&r.sense_segment)
            .unwrap()
            .unwrap();
        assert_eq!((sense.key, sense.asc), (SenseKey::UNIT_ATTENTION, 0x29));
    }
    assert_eq!(
        c.command(1, Cdb::read10(0, 1).padded(), 512, &[]).status,
        ScsiStatus::GOOD
    );
    assert_eq!(target.counters().faults_fired, 3);
}

#[test]
fn closed_window_drops_commands_but_answers_pings() {
    let target = FakeTarget::start(TargetConfig::default());
    let mut c = logged_in(&target, &[]);
    let exp = c.cmd_sn;
    assert_eq!(c.max_cmd_sn, exp + 31);
    target.set_window(0);
    let update = c.recv_until(|p| matches!(p, Pdu::NopIn(n) if n.itt == RESERVED_TAG));
    let Pdu::NopIn(update) = update else {
        unreachable!()
    };
    // A granted CmdSN is not taken back (RFC 7143 §4.2.2.1): the window closes as the
    // initiator uses what it was given.
    assert_eq!((update.exp_cmd_sn, update.max_cmd_sn), (exp, exp + 31));
    let tur = Cdb::test_unit_ready().padded();
    for _ in 0..32 {
        assert_eq!(c.command(1, tur, 0, &[]).status, ScsiStatus::GOOD);
    }
    let cmd = c.command_pdu(1, tur, 0, 0);
    assert_eq!(cmd.cmd_sn, exp + 32);
    c.send(&Pdu::ScsiCommand(cmd.clone()));
    c.expect_silence(SHORT);
    assert_eq!(target.counters().out_of_window, 1);
    let itt = c.ping(b"still there?");
    let Pdu::NopIn(pong) = c.recv() else {
        panic!("no NOP-In")
    };
    assert_eq!((pong.itt, &pong.data[..]), (itt, &b"still there?"[..]));
    assert_eq!(
        (pong.exp_cmd_sn, pong.max_cmd_sn),
        (exp + 32, exp + 31),
        "closed"
    );

    target.set_window(4);
    let Pdu::NopIn(update) = c.recv() else {
        panic!("no window update")
    };
    assert_eq!(update.max_cmd_sn, exp + 35);
    c.send(&Pdu::ScsiCommand(cmd));
    let Pdu::ScsiResponse(r) = c.recv() else {
        panic!("no response")
    };
    assert_eq!(
        (r.status, r.exp_cmd_sn, r.max_cmd_sn),
        (ScsiStatus::GOOD, exp + 33, exp + 36)
    );
}

#[test]
fn reject_advances_stat_sn() {
    let target = FakeTarget::start(TargetConfig::default());
    let mut c = logged_in(&target, &[]);
    target.script(Rule::Reject {
        opcode: Opcode::NOP_OUT,
        reason: RejectReason::INVALID_PDU_FIELD,
    });
    let itt = c.ping(b"x");
    let Pdu::Reject(rej) = c.recv() else {
        panic!("no Reject")
    };
    assert_eq!(rej.reason, RejectReason::INVALID_PDU_FIELD);
    let bhs = rej.rejected_header().unwrap();
    assert_eq!(bhs[0] & 0x3f, 0x00);
    assert_eq!(u32::from_be_bytes(bhs[16..20].try_into().unwrap()), itt);
    c.ping(b"y");
    let Pdu::NopIn(pong) = c.recv() else {
        panic!("no NOP-In")
    };
    assert_eq!(pong.stat_sn, rej.stat_sn + 1);
    assert_eq!(target.counters().rejects, 1);
}

#[test]
fn send_targets_with_continuation() {
    let extra: Vec<String> = (0..40)
        .map(|i| format!("192.0.2.{i}:3260,{}", i + 2))
        .collect();
    let target = FakeTarget::start(TargetConfig {
        extra_addresses: extra.clone(),
        ..TargetConfig::default()
    });
    let mut c = Client::connect(target.addr());
    c.login_discovery(&[("MaxRecvDataSegmentLength", "512")]);
    assert_eq!(c.answer("TargetPortalGroupTag"), None);
    let mut assembler = TextAssembler::default();
    let mut pairs = Vec::new();
    let (mut ttt, mut segments) = (RESERVED_TAG, 0);
    let data = encode_text(&[("SendTargets", "All")]).unwrap().freeze();
    loop {
        let req = TextRequest {
            immediate: true,
            final_: true,
            itt: 9,
            ttt,
            cmd_sn: c.cmd_sn,
            exp_stat_sn: c.exp_stat_sn,
            data: if ttt == RESERVED_TAG {
                data.clone()
            } else {
                Bytes::new()
            },
            ..TextRequest::default()
        };
        c.send(&Pdu::TextRequest(req));
        let Pdu::TextResponse(r) = c.recv() else {
            panic!("no Text Response")
        };
        segments += 1;
        assert!(r.data.len() <= 512);
        if let Some(p) = assembler.push(&r.data, r.cont).unwrap() {
            pairs.extend(p);
        }
        if r.final_ {
            assert_eq!(r.ttt, RESERVED_TAG);
            break;
        }
        assert_ne!(r.ttt, RESERVED_TAG);
        ttt = r.ttt;
    }
    assert!(segments > 2, "{segments} segments");
    assert_eq!(pairs[0], ("TargetName".to_owned(), target.iqn().to_owned()));
    assert_eq!(pairs[1].1, format!("127.0.0.1:{},1", target.port()));
    assert_eq!(pairs.len(), 2 + extra.len());
    assert_eq!(pairs.last().unwrap().1, extra[39]);

    let empty = TextRequest {
        immediate: true,
        final_: true,
        itt: 10,
        ttt: RESERVED_TAG,
        ..TextRequest::default()
    };
    c.send(&Pdu::TextRequest(empty));
    let Pdu::TextResponse(r) = c.recv() else {
        panic!("no Text Response")
    };
    assert!(r.final_ && r.data.is_empty() && r.itt == 10);
    assert_eq!(target.counters().logins_discovery, 1);
}

#[test]
fn hold_then_abort_task_and_lun_reset() {
    let target = FakeTarget::start(TargetConfig::default());
    let mut c = logged_in(&target, &[]);
    target.script(Rule::Hold {
        opcode: 0x28,
        count: 2,
    });
    let read = c.command_pdu(1, Cdb::read10(0, 1).padded(), 512, 0);
    let held_itt = read.itt;
    c.send(&Pdu::ScsiCommand(read));
    let second = c.command_pdu(1, Cdb::read10(1, 1).padded(), 512, 0);
    c.send(&Pdu::ScsiCommand(second));
    c.expect_silence(SHORT);
    let tmf = |c: &mut Client, function, referenced| {
        let itt = c.itt();
        let req = TaskMgmtRequest {
            immediate: true,
            function,
            lun: Lun::from_number(1),
            itt,
            referenced_task_tag: referenced,
            cmd_sn: c.cmd_sn,
            exp_stat_sn: c.exp_stat_sn,
            ..TaskMgmtRequest::default()
        };
        c.send(&Pdu::TaskMgmtRequest(req));
        let Pdu::TaskMgmtResponse(r) = c.recv() else {
            panic!("no TMF response")
        };
        r.response
    };
    assert_eq!(
        tmf(&mut c, TmFunction::ABORT_TASK, held_itt),
        TmResponse::FUNCTION_COMPLETE
    );
    assert_eq!(
        tmf(&mut c, TmFunction::ABORT_TASK, held_itt),
        TmResponse::TASK_DOES_NOT_EXIST
    );
    assert_eq!(
        tmf(&mut c, TmFunction::LOGICAL_UNIT_RESET, RESERVED_TAG),
        TmResponse::FUNCTION_COMPLETE
    );
    assert_eq!(
        tmf(&mut c, TmFunction::TARGET_COLD_RESET, RESERVED_TAG),
        TmResponse::NOT_SUPPORTED
    );
    c.expect_silence(SHORT);
    let r = c.command(1, Cdb::read10(0, 1).padded(), 512, &[]);
    assert_eq!(r.status, ScsiStatus::GOOD);
    assert_eq!(target.counters().task_mgmt_of(1), 2);
}

#[test]
fn async_message_silence_and_close() {
    let target = FakeTarget::start(TargetConfig::default());
    let mut c = logged_in(&target, &[]);
    target.script(Rule::Async {
        event: AsyncEvent::LOGOUT_REQUEST,
        parameter1: 0,
        parameter2: 0,
        parameter3: 7,
        sense: None,
    });
    let Pdu::AsyncMessage(m) = c.recv() else {
        panic!("no Async Message")
    };
    assert_eq!((m.event, m.parameter3), (AsyncEvent::LOGOUT_REQUEST, 7));

    target.script(Rule::CloseAfter(1));
    c.ping(b"last");
    assert!(matches!(c.recv(), Pdu::NopIn(_)));
    assert!(matches!(
        c.try_recv(Duration::from_secs(2)),
        Err(RecvError::Closed)
    ));

    let mut c = logged_in(&target, &[]);
    target.script(Rule::GoSilent);
    std::thread::sleep(Duration::from_millis(100));
    c.ping(b"anyone?");
    c.expect_silence(SHORT);
    assert_eq!(target.counters().connections, 2);
}

#[test]
fn corrupt_data_digest() {
    let target = FakeTarget::start(TargetConfig {
        data_digest: Digest::Crc32c,
        ..TargetConfig::default()
    });
    let mut c = logged_in(&target, &[("DataDigest", "CRC32C")]);
    target.script(Rule::CorruptDataDigest);
    let cmd = c.command_pdu(1, Cdb::read10(0, 2).padded(), 1024, 0);
    c.send(&Pdu::ScsiCommand(cmd));
    match c.try_recv(Duration::from_secs(5)) {
        Err(RecvError::Decode(e)) => assert!(e.to_string().contains("data digest"), "{e}"),
        other => panic!("expected a data digest error, got {other:?}"),
    }
}

#[test]
fn login_failures() {
    let target = FakeTarget::start(TargetConfig::default());
    let mut c = Client::connect(target.addr());
    let r = c.login_step(
        Stage::SECURITY,
        Stage::FULL_FEATURE,
        &[
            ("InitiatorName", support::INITIATOR),
            ("TargetName", "iqn.nope:x"),
        ],
    );
    assert_eq!(r.status, LoginStatus::NOT_FOUND);
    target.script(Rule::FailLogin {
        status: LoginStatus::SERVICE_UNAVAILABLE,
        count: 1,
    });
    let mut c = Client::connect(target.addr());
    let names = [
        ("InitiatorName", support::INITIATOR),
        ("TargetName", target.iqn()),
    ];
    let r = c.login_step(Stage::SECURITY, Stage::FULL_FEATURE, &names);
    assert_eq!(r.status, LoginStatus::SERVICE_UNAVAILABLE);
    // Straight from security to full feature phase.
    let mut c = Client::connect(target.addr());
    let r = c.login_step(Stage::SECURITY, Stage::FULL_FEATURE, &names);
    assert_eq!(
        (r.status, r.nsg),
        (LoginStatus::SUCCESS, Stage::FULL_FEATURE)
    );
    assert_eq!(target.counters().login_failures, 2);
}

#[test]
fn target_pings_and_logout() {
    let target = FakeTarget::start(TargetConfig {
        ping_interval: Some(Duration::from_millis(100)),
        ..TargetConfig::default()
    });
    let mut c = logged_in(&target, &[]);
    let ping = c.recv_until(|p| matches!(p, Pdu::NopIn(n) if n.ttt != RESERVED_TAG));
    let Pdu::NopIn(ping) = ping else {
        unreachable!()
    };
    c.pong(ping.ttt, ping.lun);
    assert!(target.wait_for(Duration::from_secs(2), |c| c.ping_replies >= 1));
    let logout = sanshim_initiator::wire::LogoutRequest {
        immediate: true,
        itt: 77,
        cmd_sn: c.cmd_sn,
        exp_stat_sn: c.exp_stat_sn,
        ..Default::default()
    };
    c.send(&Pdu::LogoutRequest(logout));
    let r = c.recv_until(|p| matches!(p, Pdu::LogoutResponse(_)));
    assert_eq!(r.itt(), 77);
    assert!(matches!(
        c.try_recv(Duration::from_secs(2)),
        Err(RecvError::Closed)
    ));
    assert_eq!(target.counters().logouts, 1);
}

#[test]
fn dropping_the_target_closes_its_connections() {
    let target = FakeTarget::start(TargetConfig::default());
    let mut c = logged_in(&target, &[]);
    let nop = NopOut {
        immediate: true,
        itt: 5,
        ttt: RESERVED_TAG,
        ..NopOut::default()
    };
    c.send(&Pdu::NopOut(nop));
    c.recv();
    let start = std::time::Instant::now();
    drop(target);
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(matches!(
        c.try_recv(Duration::from_secs(1)),
        Err(RecvError::Closed | RecvError::Io(_))
    ));
}

#[test]
fn reads_are_fast_from_memory() {
    let target = FakeTarget::start(TargetConfig {
        block_count: 131_072,
        ..TargetConfig::default()
    });
    let mut c = logged_in(&target, &[("MaxRecvDataSegmentLength", "262144")]);
    let start = std::time::Instant::now();
    let mut total = 0;
    for i in 0..32u64 {
        let r = c.command(1, Cdb::read16(i % 4 * 2048, 2048).padded(), 1 << 20, &[]);
        total += r.data.len();
    }
    let mib_s = total as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64();
    eprintln!("fake target read throughput: {mib_s:.0} MiB/s");
    assert_eq!(total, 32 << 20);
}
