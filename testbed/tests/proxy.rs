//! The fault proxy in front of the fake target, driven by the hand-rolled initiator.

mod support;

use std::time::{Duration, Instant};

use sanshim_initiator::scsi::Cdb;
use sanshim_initiator::wire::{DecodeError, Opcode, Pdu, ScsiStatus};
use sanshim_testbed::{Digest, Direction, FakeTarget, FaultProxy, ProxyFault, TargetConfig};
use support::{Client, RecvError};

const SHORT: Duration = Duration::from_millis(400);

fn target(digests: bool) -> FakeTarget {
    let digest = if digests {
        Digest::Crc32c
    } else {
        Digest::None
    };
    let t = FakeTarget::start(TargetConfig {
        header_digest: digest,
        data_digest: digest,
        ..TargetConfig::default()
    });
    let pattern: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
    t.fill(0, &pattern);
    t
}

fn client(proxy: &FaultProxy, target: &FakeTarget, digests: bool) -> Client {
    let mut c = Client::connect(proxy.addr());
    let v = if digests { "CRC32C" } else { "None" };
    c.login(target.iqn(), &[("HeaderDigest", v), ("DataDigest", v)]);
    assert_eq!(c.rx.header_digest, digests);
    c
}

#[test]
fn forwards_login_and_io_with_digests() {
    let t = target(true);
    let proxy = FaultProxy::start(t.addr());
    let mut c = client(&proxy, &t, true);
    let data = vec![0xa5; 20_000];
    let w = c.command(
        1,
        Cdb::write10(200, 40, false).padded(),
        0,
        &data[..20_480.min(data.len())],
    );
    assert_eq!(w.status, ScsiStatus::GOOD);
    let r = c.command(1, Cdb::read10(0, 128).padded(), 65_536, &[]);
    assert_eq!(r.data, t.read_back(0, 65_536));
    assert_eq!(proxy.connections(), 1);
    assert!(proxy.forwarded(Direction::ToInitiator) > 65_536);
    assert!(proxy.forwarded(Direction::ToTarget) > 20_000);
    assert!(proxy.fired().is_empty());
}

#[test]
fn freeze_mid_data_in_holds_both_directions_until_release() {
    let t = target(false);
    let proxy = FaultProxy::start(t.addr());
    let mut c = client(&proxy, &t, false);
    proxy.arm(ProxyFault::FreezeMidDataIn);
    let before = proxy.forwarded(Direction::ToInitiator);
    let cmd = c.command_pdu(1, Cdb::read10(0, 16).padded(), 8192, 0);
    let itt = cmd.itt;
    c.send(&Pdu::ScsiCommand(cmd));
    let fired = proxy
        .wait_fired(Duration::from_secs(5))
        .expect("freeze fired");
    assert_eq!(
        (fired.fault, fired.connection),
        (ProxyFault::FreezeMidDataIn, 1)
    );
    assert!(proxy.is_frozen());
    // Header and half of the data segment passed, nothing more.
    assert!(matches!(c.try_recv(SHORT), Err(RecvError::Timeout)));
    assert_eq!(proxy.forwarded(Direction::ToInitiator) - before, 48 + 4096);
    let nops = t.counters().nop_outs;
    c.ping(b"are you there");
    c.expect_silence(SHORT);
    assert_eq!(
        t.counters().nop_outs,
        nops,
        "the ping must not reach the target"
    );
    assert!(fired.at.elapsed() >= SHORT);

    proxy.release();
    let done = c.finish(itt, &[], 8192);
    assert_eq!((done.status, done.data.len()), (ScsiStatus::GOOD, 8192));
    assert_eq!(done.data, t.read_back(0, 8192));
    assert!(matches!(c.recv(), Pdu::NopIn(_)));
}

#[test]
fn freeze_on_r2t_holds_the_r2t() {
    let t = target(false);
    let proxy = FaultProxy::start(t.addr());
    let mut c = Client::connect(proxy.addr());
    c.login(t.iqn(), &[("ImmediateData", "No")]);
    proxy.arm(ProxyFault::FreezeOnR2t);
    let cmd = c.command_pdu(1, Cdb::write10(0, 8, false).padded(), 0, 4096);
    let itt = cmd.itt;
    c.send(&Pdu::ScsiCommand(cmd));
    assert!(proxy.wait_fired(Duration::from_secs(5)).is_some());
    c.expect_silence(SHORT);
    assert_eq!(t.counters().r2ts, 1);
    proxy.release();
    let done = c.finish(itt, &[7; 4096], 8192);
    assert_eq!((done.status, done.r2ts), (ScsiStatus::GOOD, 1));
    assert_eq!(t.read_back(0, 4096), vec![7; 4096]);
}

#[test]
fn cut_mid_data_in_closes_the_connection() {
    let t = target(false);
    let proxy = FaultProxy::start(t.addr());
    let mut c = client(&proxy, &t, false);
    proxy.arm(ProxyFault::CutMidDataIn);
    let cmd = c.command_pdu(1, Cdb::read10(0, 8).padded(), 4096, 0);
    c.send(&Pdu::ScsiCommand(cmd));
    assert!(matches!(
        c.try_recv(Duration::from_secs(5)),
        Err(RecvError::Closed)
    ));
    assert_eq!(proxy.faults_fired(), 1);
}

#[test]
fn flipped_data_bit_is_a_digest_error_or_silent_corruption() {
    let t = target(true);
    let proxy = FaultProxy::start(t.addr());
    let mut c = client(&proxy, &t, true);
    proxy.arm(ProxyFault::FlipDataBit);
    let cmd = c.command_pdu(1, Cdb::read10(0, 8).padded(), 4096, 0);
    c.send(&Pdu::ScsiCommand(cmd));
    match c.try_recv(Duration::from_secs(5)) {
        Err(RecvError::Decode(DecodeError::DataDigest { .. })) => {}
        other => panic!("expected a data digest error, got {other:?}"),
    }

    let t = target(false);
    let proxy = FaultProxy::start(t.addr());
    let mut c = client(&proxy, &t, false);
    proxy.arm(ProxyFault::FlipDataBit);
    let r = c.command(1, Cdb::read10(0, 8).padded(), 4096, &[]);
    let good = t.read_back(0, 4096);
    let diff: Vec<usize> = (0..4096).filter(|&i| r.data[i] != good[i]).collect();
    assert_eq!(diff, vec![2048]);
    assert_eq!(r.data[2048] ^ good[2048], 1);
}

#[test]
fn flipped_header_bit_is_a_header_digest_error() {
    let t = target(true);
    let proxy = FaultProxy::start(t.addr());
    let mut c = client(&proxy, &t, true);
    proxy.arm(ProxyFault::FlipHeaderBit {
        opcode: Opcode::SCSI_RESPONSE,
    });
    let cmd = c.command_pdu(1, Cdb::test_unit_ready().padded(), 0, 0);
    c.send(&Pdu::ScsiCommand(cmd));
    match c.try_recv(Duration::from_secs(5)) {
        Err(RecvError::Decode(DecodeError::HeaderDigest { .. })) => {}
        other => panic!("expected a header digest error, got {other:?}"),
    }
}

#[test]
fn cut_after_bytes_and_per_connection_arming() {
    let t = target(false);
    let proxy = FaultProxy::start(t.addr());
    proxy.arm_on(
        2,
        ProxyFault::CutAfterBytes {
            direction: Direction::ToInitiator,
            bytes: 60,
        },
    );
    let mut first = client(&proxy, &t, false);
    let r = first.command(1, Cdb::read10(0, 8).padded(), 4096, &[]);
    assert_eq!(r.status, ScsiStatus::GOOD);
    assert!(proxy.fired().is_empty());

    let mut second = Client::connect(proxy.addr());
    let names = [
        ("InitiatorName", support::INITIATOR),
        ("TargetName", t.iqn()),
        ("AuthMethod", "None"),
    ];
    let req = sanshim_initiator::wire::LoginRequest {
        transit: true,
        nsg: sanshim_initiator::wire::Stage::OPERATIONAL,
        data: sanshim_initiator::wire::encode_text(&names)
            .unwrap()
            .freeze(),
        ..Default::default()
    };
    second.send(&Pdu::LoginRequest(req));
    // The first Login Response is longer than 60 bytes: it never arrives whole.
    assert!(matches!(
        second.try_recv(Duration::from_secs(5)),
        Err(RecvError::Closed)
    ));
    let fired = proxy.fired();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].connection, 2);
    let r = first.command(1, Cdb::read10(0, 8).padded(), 4096, &[]);
    assert_eq!(r.status, ScsiStatus::GOOD);
}

#[test]
fn delay_slows_every_pdu() {
    let t = target(false);
    let proxy = FaultProxy::start(t.addr());
    let mut c = client(&proxy, &t, false);
    proxy.arm(ProxyFault::Delay(Duration::from_millis(100)));
    let start = Instant::now();
    c.ping(b"slow");
    assert!(matches!(c.recv(), Pdu::NopIn(_)));
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(proxy.faults_fired(), 1);
}

#[test]
fn dropping_the_proxy_closes_a_frozen_connection() {
    let t = target(false);
    let proxy = FaultProxy::start(t.addr());
    let mut c = client(&proxy, &t, false);
    proxy.arm(ProxyFault::FreezeMidDataIn);
    let cmd = c.command_pdu(1, Cdb::read10(0, 8).padded(), 4096, 0);
    c.send(&Pdu::ScsiCommand(cmd));
    assert!(proxy.wait_fired(Duration::from_secs(5)).is_some());
    let start = Instant::now();
    drop(proxy);
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(matches!(
        c.try_recv(Duration::from_secs(2)),
        Err(RecvError::Closed | RecvError::Io(_))
    ));
}
