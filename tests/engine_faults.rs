//! The session engine's error paths on the real driver: a fault proxy in front of a real
//! tgtd (a link that goes silent in the middle of a Data-In or while a write waits for its
//! R2T, digest errors, a connection cut mid-PDU) under `sanshim bench --verify`, and the
//! in-process fake target for SCSI conditions tgtd cannot be pushed into (BUSY, TASK SET
//! FULL, UNIT ATTENTION, a held command, a closed window, a target reset before a flush).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::sanshim;
use common::tgtd::Tgtd;
use sanshim_blockdev::{BlockDevice, ErrorKind};
use sanshim_initiator::disk::{DiskOptions, ScsiDisk};
use sanshim_initiator::login::LoginConfig;
use sanshim_initiator::portal::Portal;
use sanshim_initiator::scsi::SenseKey;
use sanshim_initiator::transport::LoginPolicy;
use sanshim_initiator::wire::{Isid, Opcode, ScsiStatus};
use sanshim_testbed::{
    Direction, FakeTarget, FaultProxy, ProxyFault, Rule, SenseCode, TargetConfig,
};

const IQN: &str = "iqn.2026-12.test.sanshim:faults";
const MIB: u64 = 1 << 20;
/// The keep-alive settings of these runs: a silent link is dead after about 2 s.
const NOOP: [&str; 4] = ["--noop-interval", "1", "--noop-timeout", "1"];

fn tgtd(params: &[(&str, &str)]) -> Option<Tgtd> {
    let mut t = match Tgtd::try_start() {
        Ok(t) => t,
        Err(reason) => {
            eprintln!("SKIPPED: {reason}");
            return None;
        }
    };
    t.add_target(1, IQN);
    t.add_file_lun(1, 1, 128 * MIB);
    for (k, v) in params {
        t.set_param(1, k, v);
    }
    Some(t)
}

fn upstream(t: &Tgtd) -> std::net::SocketAddr {
    t.portal().parse().unwrap()
}

/// `sanshim bench --verify ARGS iscsi://PORTAL/IQN/1` with the short keep-alive, running.
fn bench(portal: &str, args: &[&str]) -> Child {
    let url = format!("iscsi://{portal}/{IQN}/1");
    sanshim()
        .args(["bench", "--verify"])
        .args(args)
        .args(NOOP)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for the run to end; returns stdout and stderr, failing on a non-zero exit.
fn finish(mut child: Child) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            let mut err = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(status.success(), "bench failed ({status}):\n{out}\n{err}");
            return (out, err);
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("bench did not finish within two minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `f` holds, up to `timeout`.
fn wait_until(timeout: Duration, f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Arms `fault` once `bytes` have gone `direction` through the proxy (so that it hits the
/// I/O, not the inspection at open), and returns when it fired and when the initiator had
/// a new connection up.
fn inject(proxy: &FaultProxy, direction: Direction, bytes: u64, fault: ProxyFault) -> Duration {
    assert!(
        wait_until(Duration::from_secs(60), || proxy.forwarded(direction)
            >= bytes),
        "the run never moved {bytes} bytes"
    );
    proxy.arm_any(fault);
    let fired = proxy
        .wait_fired(Duration::from_secs(30))
        .expect("the fault fired");
    let before = fired.connection;
    assert!(
        wait_until(Duration::from_secs(30), || proxy.connections() > before),
        "no new connection after the fault"
    );
    fired.at.elapsed()
}

/// A link that stops forwarding in both directions in the middle of a Data-In segment,
/// holding the connection open: the engine declares it dead within noop-interval +
/// noop-timeout, logs in again, and the verified run completes.
#[test]
fn silent_link_in_the_middle_of_a_data_in() {
    let Some(t) = tgtd(&[]) else { return };
    let proxy = FaultProxy::start(upstream(&t));
    let child = bench(
        &proxy.portal(),
        &["--rw", "read", "--bs", "256k", "--size", "48M"],
    );
    // The write pass sends 48 MiB; the read pass then brings Data-In back.
    let stall = inject(
        &proxy,
        Direction::ToInitiator,
        8 * MIB,
        ProxyFault::FreezeMidDataIn,
    );
    let (out, err) = finish(child);
    assert!(out.contains("verified"), "{out}");
    assert!(
        err.contains("connection lost") && err.contains(&proxy.portal()),
        "the log names the dead connection:\n{err}"
    );
    assert!(
        err.contains("NOP-Out"),
        "the ping timeout is the reason:\n{err}"
    );
    eprintln!("silent mid Data-In: reconnected {stall:?} after the freeze");
    assert!(stall < Duration::from_secs(5), "stall {stall:?}");
}

/// The same while a write waits for its R2T.
#[test]
fn silent_link_while_a_write_waits_for_r2t() {
    let Some(t) = tgtd(&[("InitialR2T", "Yes"), ("ImmediateData", "No")]) else {
        return;
    };
    let proxy = FaultProxy::start(upstream(&t));
    let child = bench(
        &proxy.portal(),
        &["--rw", "write", "--bs", "1m", "--size", "64M"],
    );
    let stall = inject(
        &proxy,
        Direction::ToTarget,
        8 * MIB,
        ProxyFault::FreezeOnR2t,
    );
    let (out, err) = finish(child);
    assert!(out.contains("verified"), "{out}");
    assert!(err.contains("connection lost"), "{err}");
    eprintln!("silent at R2T: reconnected {stall:?} after the freeze");
    assert!(stall < Duration::from_secs(5), "stall {stall:?}");
}

/// A flipped bit in a Data-In's data with data digests on: the driver sees the digest
/// error, drops the connection, the read is re-issued and the bad bytes never reach the
/// caller (the run verifies).
#[test]
fn data_digest_error_reissues_and_returns_no_bad_byte() {
    let Some(t) = tgtd(&[("HeaderDigest", "CRC32C"), ("DataDigest", "CRC32C")]) else {
        return;
    };
    let proxy = FaultProxy::start(upstream(&t));
    let args = [
        "--rw",
        "read",
        "--bs",
        "128k",
        "--size",
        "24M",
        "--data-digest",
        "crc32c",
        "--header-digest",
        "crc32c",
    ];
    let child = bench(&proxy.portal(), &args);
    inject(
        &proxy,
        Direction::ToInitiator,
        4 * MIB,
        ProxyFault::FlipDataBit,
    );
    let (out, err) = finish(child);
    assert!(out.contains("verified"), "{out}");
    assert!(err.contains("data digest"), "{err}");
}

/// A flipped bit in a PDU header with header digests on.
#[test]
fn header_digest_error_reissues() {
    let Some(t) = tgtd(&[("HeaderDigest", "CRC32C")]) else {
        return;
    };
    let proxy = FaultProxy::start(upstream(&t));
    let args = [
        "--rw",
        "read",
        "--bs",
        "64k",
        "--size",
        "16M",
        "--header-digest",
        "crc32c",
    ];
    let child = bench(&proxy.portal(), &args);
    let fault = ProxyFault::FlipHeaderBit {
        opcode: Opcode::DATA_IN,
    };
    inject(&proxy, Direction::ToInitiator, 4 * MIB, fault);
    let (out, err) = finish(child);
    assert!(out.contains("verified"), "{out}");
    assert!(err.contains("header digest"), "{err}");
}

/// The connection cut (FIN both ways) in the middle of a Data-In.
#[test]
fn connection_cut_in_the_middle_of_a_data_in() {
    let Some(t) = tgtd(&[]) else { return };
    let proxy = FaultProxy::start(upstream(&t));
    let child = bench(
        &proxy.portal(),
        &["--rw", "read", "--bs", "256k", "--size", "32M"],
    );
    let stall = inject(
        &proxy,
        Direction::ToInitiator,
        4 * MIB,
        ProxyFault::CutMidDataIn,
    );
    let (out, err) = finish(child);
    assert!(out.contains("verified"), "{out}");
    assert!(err.contains("connection lost"), "{err}");
    assert!(
        stall < Duration::from_secs(3),
        "a cut is noticed at once: {stall:?}"
    );
}

// ----- the fake target: SCSI conditions -----

fn fake(config: TargetConfig) -> FakeTarget {
    FakeTarget::start(TargetConfig {
        iqn: IQN.to_owned(),
        block_count: 8192,
        ..config
    })
}

async fn open(target: &FakeTarget, options: DiskOptions) -> ScsiDisk {
    open_as(target, options, 0).await
}

/// [`open`] as session `n`: sessions with different `n` are different I_T nexuses.
async fn open_as(target: &FakeTarget, options: DiskOptions, n: u32) -> ScsiDisk {
    let portal = Portal {
        host: "127.0.0.1".into(),
        port: target.port(),
    };
    let isid = Isid::random_qualifier(u32::from(target.port()) + (n << 16));
    let login = LoginConfig::normal("iqn.2026-12.test.sanshim:initiator", IQN, isid);
    let options = DiskOptions { lun: 1, ..options };
    ScsiDisk::open(portal, login, LoginPolicy::default(), options)
        .await
        .unwrap()
}

const READ16: u8 = 0x88;
const SYNC16: u8 = 0x91;

/// BUSY, TASK SET FULL and a UNIT ATTENTION on a read are retried by the session; the read
/// returns the right bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_task_set_full_and_unit_attention_are_retried() {
    let target = fake(TargetConfig::default());
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    target.fill(16, &data);
    let disk = open(&target, DiskOptions::default()).await;
    let before = target.counters().commands_of(READ16);
    target.script(Rule::status(Some(READ16), 3, ScsiStatus::BUSY));
    target.script(Rule::status(Some(READ16), 2, ScsiStatus::TASK_SET_FULL));
    target.script(Rule::check_condition(
        Some(READ16),
        1,
        SenseCode::POWER_ON_RESET,
    ));
    let got = disk.read(16, BytesMut::zeroed(4096)).await.unwrap();
    assert_eq!(&got[..], &data[..]);
    let sent = target.counters().commands_of(READ16) - before;
    assert_eq!(sent, 7, "1 + 3 BUSY + 2 TASK SET FULL + 1 UNIT ATTENTION");
    assert_eq!(target.counters().faults_fired, 6);
    disk.close().await.unwrap();
}

/// A target that stays busy: the retries are bounded and the caller gets an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_stays_busy_fails_the_read() {
    let target = fake(TargetConfig::default());
    let disk = open(&target, DiskOptions::default()).await;
    target.script(Rule::status(Some(READ16), 1000, ScsiStatus::BUSY));
    let started = Instant::now();
    let e = disk.read(0, BytesMut::zeroed(512)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PathFailure, "{e}");
    assert!(started.elapsed() < Duration::from_secs(20));
    target.clear_rules();
    disk.close().await.unwrap();
}

/// SYNCHRONIZE CACHE that meets a power-on/reset unit attention reports an error: the
/// target's volatile cache may have lost acknowledged writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_meeting_a_reset_fails() {
    let target = fake(TargetConfig::default());
    let disk = open(&target, DiskOptions::default()).await;
    disk.write(0, Bytes::from(vec![1u8; 512]), false)
        .await
        .unwrap();
    target.script(Rule::check_condition(
        Some(SYNC16),
        1,
        SenseCode::POWER_ON_RESET,
    ));
    let e = disk.flush().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TargetFailure, "{e}");
    assert!(e.context().contains("may be lost"), "{e}");
    disk.flush().await.unwrap();
    disk.close().await.unwrap();
}

/// A LOGICAL UNIT RESET sent by our own side (multipath's ghost-write barrier, through
/// another session) leaves a reset unit attention on this session's I_T nexus: a flush that
/// meets it knows it is ours and goes out again, once; one that meets a reset nobody
/// announced, or a power-on, still fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_meeting_our_own_reset_is_sent_again() {
    use sanshim_initiator::session::TaskManagement;
    use sanshim_initiator::wire::{TmFunction, TmResponse};
    let target = fake(TargetConfig::default());
    let disk = open(&target, DiskOptions::default()).await;
    let other = open_as(&target, DiskOptions::default(), 7).await;
    let reset = || async {
        let tm = TaskManagement {
            function: TmFunction::LOGICAL_UNIT_RESET,
            lun: other.lun(),
            task: None,
        };
        let answer = other.session().task_management(tm).await.unwrap();
        assert_eq!(answer, TmResponse::FUNCTION_COMPLETE);
    };
    disk.write(0, Bytes::from(vec![1u8; 512]), false)
        .await
        .unwrap();

    disk.expect_reset_attention(Duration::from_secs(60));
    reset().await;
    assert_eq!(target.counters().reset_attentions_set, 1);
    disk.flush().await.unwrap();
    assert_eq!(target.counters().reset_attentions_reported, 1);

    // The expectation is used up: the next reset's attention is a failure again.
    reset().await;
    let e = disk.flush().await.unwrap_err();
    assert!(e.context().contains("may be lost"), "{e}");

    // An announced reset does not hide a power loss (29h/01h).
    disk.expect_reset_attention(Duration::from_secs(60));
    target.script(Rule::check_condition(
        Some(SYNC16),
        1,
        SenseCode::new(
            sanshim_initiator::scsi::SenseKey::UNIT_ATTENTION,
            0x29,
            0x01,
        ),
    ));
    let e = disk.flush().await.unwrap_err();
    assert!(e.context().contains("may be lost"), "{e}");
    disk.flush().await.unwrap();
    other.close().await.unwrap();
    disk.close().await.unwrap();
}

/// A command the target never answers: ABORT TASK after the command timeout, then the
/// command runs again and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_command_is_aborted_and_reissued() {
    let target = fake(TargetConfig::default());
    let options = DiskOptions {
        command_timeout: Duration::from_secs(1),
        ..DiskOptions::default()
    };
    let disk = open(&target, options).await;
    target.fill(0, &[5u8; 512]);
    target.script(Rule::Hold {
        opcode: READ16,
        count: 1,
    });
    let got = tokio::time::timeout(Duration::from_secs(20), disk.read(0, BytesMut::zeroed(512)))
        .await
        .expect("the held read ends")
        .unwrap();
    assert_eq!(&got[..], &[5u8; 512]);
    assert_eq!(target.counters().task_mgmt_of(1), 1, "one ABORT TASK");
    disk.close().await.unwrap();
}

/// A target that stops granting CmdSNs while it answers pings: once the granted ones are
/// used the window is closed, and the commands waiting behind it fail after the command
/// timeout instead of waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_closed_for_good_fails_commands_after_the_timeout() {
    let target = fake(TargetConfig::default());
    let options = DiskOptions {
        command_timeout: Duration::from_secs(2),
        noop_interval: Duration::from_millis(500),
        ..DiskOptions::default()
    };
    let disk = std::sync::Arc::new(open(&target, options).await);
    target.set_window(0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let reads: Vec<_> = (0..48u64)
        .map(|i| {
            let disk = disk.clone();
            tokio::spawn(async move { disk.read(i, BytesMut::zeroed(512)).await })
        })
        .collect();
    let (mut ok, mut timed_out) = (0, 0);
    for r in reads {
        match r.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::PathFailure, "{e}");
                timed_out += 1;
            }
        }
    }
    let waited = started.elapsed();
    assert!(
        ok > 0 && timed_out > 0,
        "{ok} completed, {timed_out} timed out"
    );
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    assert_eq!(disk.reconnects(), 0, "the connection itself stayed up");
    assert_eq!(
        target.counters().out_of_window,
        0,
        "nothing sent past MaxCmdSN"
    );
    target.set_window(32);
    tokio::time::sleep(Duration::from_millis(300)).await;
    disk.read(0, BytesMut::zeroed(512)).await.unwrap();
    std::sync::Arc::into_inner(disk)
        .unwrap()
        .close()
        .await
        .unwrap();
}

/// An asynchronous renegotiation request is answered with a Text Request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renegotiation_request_gets_a_text_request() {
    let target = fake(TargetConfig::default());
    let disk = open(&target, DiskOptions::default()).await;
    let texts = target.counters().text_requests;
    target.script(Rule::async_event(
        sanshim_initiator::wire::AsyncEvent::NEGOTIATION_REQUEST,
    ));
    assert!(target.wait_for(Duration::from_secs(5), |c| c.text_requests > texts));
    disk.read(0, BytesMut::zeroed(512)).await.unwrap();
    disk.close().await.unwrap();
}

/// `close()` while the target has asked for a logout ends within its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_during_a_target_logout_request_ends() {
    let target = fake(TargetConfig::default());
    let disk = open(&target, DiskOptions::default()).await;
    target.script(Rule::Async {
        event: sanshim_initiator::wire::AsyncEvent::LOGOUT_REQUEST,
        parameter1: 0,
        parameter2: 0,
        parameter3: 30,
        sense: None,
    });
    assert!(target.wait_for(Duration::from_secs(5), |c| c.async_messages > 0));
    tokio::time::timeout(Duration::from_secs(30), disk.close())
        .await
        .expect("close ends")
        .unwrap();
}

const WRITE16: u8 = 0x8a;
const WRITE_SAME16: u8 = 0x93;

/// Fast zeroing (NBD's FAST_ZERO) is WRITE SAME or nothing: with it the range is zeroed by
/// the target; a target that turns out to lack it gets an `Unsupported` answer at once, the
/// range untouched and no WRITE sent — then and for every later fast request, which sends no
/// command at all. Plain write-zeroes still zeroes, with zero buffers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_zeroing_is_write_same_or_nothing() {
    let target = fake(TargetConfig::default());
    let ones = vec![0xa5u8; 8192];
    target.fill(32, &ones);
    target.fill(64, &ones);
    let disk = open(&target, DiskOptions::default()).await;
    disk.write_zeroes_fast(32, 16, false).await.unwrap();
    assert_eq!(target.read_back(32, 8192), vec![0; 8192]);
    assert_eq!(target.counters().commands_of(WRITE_SAME16), 1);

    let invalid_opcode = SenseCode::new(SenseKey::ILLEGAL_REQUEST, 0x20, 0x00);
    target.script(Rule::check_condition(Some(WRITE_SAME16), 1, invalid_opcode));
    let writes = target.counters().commands_of(WRITE16);
    let e = disk.write_zeroes_fast(64, 16, false).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert_eq!(target.read_back(64, 8192), ones, "untouched");
    assert_eq!(
        target.counters().commands_of(WRITE16),
        writes,
        "no zero buffers"
    );
    let same = target.counters().commands_of(WRITE_SAME16);
    let e = disk.write_zeroes_fast(64, 16, false).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert_eq!(
        target.counters().commands_of(WRITE_SAME16),
        same,
        "known now: nothing sent"
    );
    disk.write_zeroes(64, 16, false).await.unwrap();
    assert_eq!(target.read_back(64, 8192), vec![0; 8192]);
    assert!(
        target.counters().commands_of(WRITE16) > writes,
        "zero buffers"
    );
    disk.close().await.unwrap();
}

/// Small Data-In PDUs are read ahead, several to a system call, their data copied once from
/// the read-ahead buffer; after a large Data-In the link reads exactly again, and large
/// segments land straight from the socket in the caller's buffer. Every read returns the
/// right bytes either way, also when small and large reads are mixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_reads_are_read_ahead_and_large_ones_land_without_a_copy() {
    let target = fake(TargetConfig::default());
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    target.fill(0, &data);
    let disk = std::sync::Arc::new(open(&target, DiskOptions::default()).await);
    let session = disk.session().clone();
    let read = |lba: u64, len: usize| {
        let disk = std::sync::Arc::clone(&disk);
        let want = data[lba as usize * 512..lba as usize * 512 + len].to_vec();
        async move {
            let got = disk.read(lba, BytesMut::zeroed(len)).await.unwrap();
            assert!(got[..] == want[..], "wrong bytes at LBA {lba}, {len} bytes");
        }
    };
    let batch = |ops: Vec<(u64, usize)>| {
        let futures: Vec<_> = ops.into_iter().map(|(lba, len)| read(lba, len)).collect();
        futures_join(futures)
    };

    // 4 KiB reads, 16 at a time: read ahead, so their data is copied once.
    let s0 = session.stats();
    for round in 0..16u64 {
        batch(
            (0..16u64)
                .map(|i| ((round * 16 + i) * 8 % 8184, 4096))
                .collect(),
        )
        .await;
    }
    let s1 = session.stats();
    assert!(
        s1.copied_bytes - s0.copied_bytes > 0,
        "4 KiB reads were not read ahead"
    );

    // 128 KiB reads: once the link has seen one, the rest land with no copy.
    for i in 0..4u64 {
        read(i * 256, 128 << 10).await;
    }
    let s2 = session.stats();
    for round in 0..8u64 {
        batch(
            (0..4u64)
                .map(|i| (((round * 4 + i) * 256) % 7936, 128 << 10))
                .collect(),
        )
        .await;
    }
    let s3 = session.stats();
    assert_eq!(
        s3.copied_bytes, s2.copied_bytes,
        "a large Data-In was copied"
    );
    assert_eq!(s3.landed_bytes - s2.landed_bytes, 32 * (128 << 10));

    // Mixed: small ones among large ones, all right.
    for round in 0..8u64 {
        let mut ops: Vec<(u64, usize)> = (0..6u64)
            .map(|i| ((round * 97 + i * 13) % 8000, 4096))
            .collect();
        ops.push(((round * 256) % 7936, 128 << 10));
        ops.push(((round * 311) % 8000, 512));
        batch(ops).await;
    }
    match std::sync::Arc::try_unwrap(disk) {
        Ok(disk) => disk.close().await.unwrap(),
        Err(_) => panic!("the disk is still shared"),
    }
}

/// Runs the futures concurrently to their ends.
async fn futures_join<F: std::future::Future<Output = ()> + Send + 'static>(futures: Vec<F>) {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    for h in handles {
        h.await.unwrap();
    }
}
