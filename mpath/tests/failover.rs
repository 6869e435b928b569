//! Multipath against the test bed's fake target, each path through a fault proxy: both paths
//! carry I/O, a cut or silent path fails over without a failed request, a write stalled at
//! the target cannot land after its failover (the ghost-write barrier), no path left waits
//! for no-path-retry, and paths to different LUs are refused.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sanshim_blockdev::BlockDevice;
use sanshim_initiator::disk::{DiskOptions, ScsiDisk};
use sanshim_initiator::login::LoginConfig;
use sanshim_initiator::portal::Portal;
use sanshim_initiator::scsi::SenseKey;
use sanshim_initiator::transport::LoginPolicy;
use sanshim_initiator::wire::ScsiStatus;
use sanshim_initiator::wire::{Isid, LoginStatus};
use sanshim_mpath::{Config, GroupError, Multipath, NoPathRetry, Policy, State};
use sanshim_testbed::{FakeTarget, FaultProxy, ProxyFault, Rule, SenseCode, TargetConfig};

const IQN: &str = "iqn.2026-12.test.sanshim:mpath";
const BLOCKS: u64 = 16384;

fn target() -> FakeTarget {
    FakeTarget::start(TargetConfig {
        iqn: IQN.to_owned(),
        block_count: BLOCKS,
        ..TargetConfig::default()
    })
}

fn options() -> DiskOptions {
    DiskOptions {
        lun: 1,
        fail_fast: true,
        noop_interval: Duration::from_secs(1),
        noop_timeout: Duration::from_secs(1),
        ..DiskOptions::default()
    }
}

async fn disk(port: u16, path: u32) -> ScsiDisk {
    disk_with(port, path, options()).await
}

async fn disk_with(port: u16, path: u32, options: DiskOptions) -> ScsiDisk {
    let portal = Portal {
        host: "127.0.0.1".into(),
        port,
    };
    let isid = Isid::random_qualifier(0x5a5a_0000 ^ path ^ u32::from(port));
    let login = LoginConfig::normal("iqn.2026-12.test.sanshim:host", IQN, isid);
    ScsiDisk::open(portal, login, LoginPolicy::default(), options)
        .await
        .unwrap()
}

/// A device over two paths, each through its own proxy to `target`.
async fn two_paths(target: &FakeTarget, config: Config) -> (Multipath, [FaultProxy; 2]) {
    let proxies = [
        FaultProxy::start(target.addr()),
        FaultProxy::start(target.addr()),
    ];
    let mut paths = Vec::new();
    for (i, p) in proxies.iter().enumerate() {
        paths.push((format!("path{}", i + 1), disk(p.port(), i as u32).await));
    }
    let device = Multipath::new(paths, config).await.unwrap();
    (device, proxies)
}

fn pattern(lba: u64, len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (lba as u8).wrapping_mul(31) ^ (i as u8).wrapping_mul(7) ^ seed)
        .collect()
}

/// Writes and reads back `count` 64 KiB requests, 8 at a time; returns the longest request.
async fn verified_load(device: &Arc<Multipath>, count: u64, seed: u8) -> Duration {
    const BLOCKS_PER: u64 = 128;
    let mut longest = Duration::ZERO;
    for phase in 0..2 {
        for batch in (0..count).collect::<Vec<_>>().chunks(8) {
            let tasks: Vec<_> = batch
                .iter()
                .map(|&i| {
                    let device = device.clone();
                    tokio::spawn(async move {
                        let lba = (i * BLOCKS_PER) % (BLOCKS - BLOCKS_PER);
                        let data = pattern(lba, (BLOCKS_PER * 512) as usize, seed);
                        let started = Instant::now();
                        if phase == 0 {
                            device.write(lba, Bytes::from(data), false).await.unwrap();
                        } else {
                            let got = device
                                .read(lba, BytesMut::zeroed(data.len()))
                                .await
                                .unwrap();
                            assert!(got[..] == data[..], "LBA {lba} reads back wrong");
                        }
                        started.elapsed()
                    })
                })
                .collect();
            for t in tasks {
                longest = longest.max(t.await.unwrap());
            }
        }
    }
    longest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_carry_io_in_turn() {
    let target = target();
    let config = Config {
        policy: Policy::RoundRobin { min_io: 1 },
        ..Config::default()
    };
    let (device, _proxies) = two_paths(&target, config).await;
    let device = Arc::new(device);
    verified_load(&device, 64, 1).await;
    let stats = device.stats();
    assert_eq!(stats.len(), 2);
    for s in &stats {
        assert!(s.ops >= 50, "path {} carried {} requests", s.number, s.ops);
        assert_eq!((s.errors, s.failovers), (0, 0));
    }
    Arc::into_inner(device).unwrap().close().await.unwrap();
}

/// A target port that refuses commands for its ALUA state (NOT READY, TARGET PORT IN STANDBY
/// STATE, as LIO answers on a standby port) did not execute them: the requests go to the
/// other path, the refusing path goes to standby with its connection kept — no path error,
/// no reconnection, no reset — and returns once its port serves again (this fake has no
/// ALUA, so its next check finds it fit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_standby_passes_its_requests_on_without_a_path_error() {
    let target = target();
    let (device, _proxies) = two_paths(&target, Config::default()).await;
    let device = Arc::new(device);
    verified_load(&device, 16, 3).await;
    target.script(Rule::Answer {
        opcode: None,
        count: 3,
        status: ScsiStatus::CHECK_CONDITION,
        sense: Some(SenseCode::new(SenseKey::NOT_READY, 0x04, 0x0b)),
    });
    verified_load(&device, 64, 4).await;
    let stats = device.stats();
    let refused: Vec<_> = stats.iter().filter(|s| s.failovers > 0).collect();
    assert!(!refused.is_empty(), "a path met the refusal: {stats:?}");
    for s in &stats {
        assert_eq!(s.errors, 0, "a refusal is no path error: {s:?}");
        assert_eq!(s.reconnects, 0, "the connection stays: {s:?}");
    }
    assert!(
        stats.iter().any(|s| s.state_changes >= 1),
        "the refusing path went to standby: {stats:?}"
    );
    let back = wait_for(Duration::from_secs(15), || {
        device.paths().iter().all(|p| p.state() == State::Active)
    })
    .await;
    assert!(back, "the path returned: {:?}", device.stats());
    Arc::into_inner(device).unwrap().close().await.unwrap();
}

/// A LUN the target no longer presents (LOGICAL UNIT NOT SUPPORTED) is the caller's error at
/// once: no path is failed, nothing is re-driven on the other path, and once the LUN is back
/// the device works on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_lun_is_a_device_error_not_a_path_failure() {
    let target = target();
    let (device, _proxies) = two_paths(&target, Config::default()).await;
    let gone = SenseCode::new(SenseKey::ILLEGAL_REQUEST, 0x25, 0x00);
    target.script(Rule::check_condition(Some(0x8a), u32::MAX, gone));
    let before = target.counters().commands_of(0x8a);
    let data = Bytes::from(vec![0x11; 4096]);
    let e = device.write(8, data.clone(), false).await.unwrap_err();
    assert_eq!(e.kind(), sanshim_blockdev::ErrorKind::NotPresent, "{e}");
    assert_eq!(
        target.counters().commands_of(0x8a) - before,
        1,
        "sent once, not round the paths"
    );
    let stats = device.stats();
    for s in &stats {
        assert_eq!(s.failovers, 0, "{s:?}");
        assert_eq!(s.state, State::Active, "{s:?}");
    }
    assert_eq!(stats.iter().map(|s| s.errors).sum::<u64>(), 1, "{stats:?}");
    target.clear_rules();
    device.write(8, data, false).await.unwrap();
    device.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_path_fails_over_and_comes_back() {
    let target = target();
    let (device, proxies) = two_paths(&target, Config::default()).await;
    let device = Arc::new(device);
    let load = tokio::spawn({
        let device = device.clone();
        async move { verified_load(&device, 400, 2).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxies[0].cut_all();
    let longest = load.await.unwrap();
    let s = &device.stats()[0];
    assert!(s.failovers >= 1 || s.state_changes >= 1, "{s:?}");
    eprintln!("cut: longest request {longest:?}");
    assert!(longest < Duration::from_secs(2), "{longest:?}");
    // The proxy lets the session log in again: the path comes back.
    let back = wait_for(Duration::from_secs(15), || {
        device.paths()[0].state() == State::Active
    })
    .await;
    assert!(back, "path 1 reinstated: {:?}", device.stats()[0]);
    Arc::into_inner(device).unwrap().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_path_is_judged_by_its_lack_of_progress() {
    let target = target();
    let (device, proxies) = two_paths(&target, Config::default()).await;
    let device = Arc::new(device);
    proxies[0].arm_any(ProxyFault::FreezeMidDataIn);
    let longest = verified_load(&device, 400, 3).await;
    let s = &device.stats()[0];
    assert!(proxies[0].faults_fired() >= 1);
    assert!(
        s.reason.contains("no progress") || !s.connected || s.failovers > 0,
        "{s:?}"
    );
    eprintln!("silent: longest request {longest:?}");
    assert!(longest < Duration::from_secs(2), "{longest:?}");
    proxies[0].release();
    Arc::into_inner(device).unwrap().close().await.unwrap();
}

/// One command at a time (a `dd` through the device) and its path goes silent while the
/// other path sits idle: the idle path takes the command over within the stall check
/// (1 s + a 0.5 s ping), not the default 5 s + 5 s keep-alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_command_on_a_silent_path_fails_over() {
    let target = target();
    let proxies = [
        FaultProxy::start(target.addr()),
        FaultProxy::start(target.addr()),
    ];
    let keep_alive = DiskOptions {
        noop_interval: Duration::from_secs(5),
        noop_timeout: Duration::from_secs(5),
        ..options()
    };
    let mut paths = Vec::new();
    for (i, p) in proxies.iter().enumerate() {
        paths.push((
            format!("path{}", i + 1),
            disk_with(p.port(), i as u32, keep_alive).await,
        ));
    }
    let config = Config {
        policy: Policy::RoundRobin { min_io: 1 },
        ..Config::default()
    };
    let device = Multipath::new(paths, config).await.unwrap();
    proxies[0].arm_any(ProxyFault::FreezeMidDataIn);
    let mut longest = Duration::ZERO;
    for i in 0..8u64 {
        let started = Instant::now();
        device
            .read(i * 128, BytesMut::zeroed(64 << 10))
            .await
            .unwrap();
        longest = longest.max(started.elapsed());
    }
    assert!(proxies[0].faults_fired() >= 1, "the freeze fired");
    // The frozen command moved to path 2 (path 1 may be back in service already: a new
    // connection through the proxy logs in again at once, so its current reason says so),
    // and within the stall check — the keep-alive alone would take 10 s.
    let s = &device.stats()[0];
    assert!(s.failovers >= 1 && s.state_changes >= 1, "{s:?}");
    eprintln!("lone command: longest read {longest:?}");
    assert!(longest < Duration::from_secs(4), "{longest:?}");
    proxies[0].release();
    device.close().await.unwrap();
}

/// The fault model first: without the barrier, a write stalled at the target lands after a
/// newer write through another session (so the next test can fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_target_does_ghost_writes() {
    let target = target();
    let proxy = FaultProxy::start(target.addr());
    let (one, two) = (disk(proxy.port(), 10).await, disk(target.port(), 11).await);
    target.script(Rule::Defer {
        opcode: 0x8a,
        count: 1,
        delay: Duration::from_millis(1500),
    });
    let old =
        tokio::spawn(async move { one.write(100, Bytes::from(vec![0xaa; 4096]), false).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut_all();
    assert!(
        old.await.unwrap().is_err(),
        "the first session lost its connection"
    );
    two.write(100, Bytes::from(vec![0xbb; 4096]), false)
        .await
        .unwrap();
    assert!(target.wait_for(Duration::from_secs(5), |c| c.ghost_writes == 1));
    assert_eq!(
        target.read_back(100, 4096),
        vec![0xaa; 4096],
        "the ghost landed last"
    );
}

/// A write that failed over may not land after a newer write: the device resets the LU
/// through the surviving path before re-driving it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_over_write_cannot_land_late() {
    let target = target();
    let config = Config {
        policy: Policy::RoundRobin { min_io: 1 },
        ..Config::default()
    };
    let (device, proxies) = two_paths(&target, config).await;
    let device = Arc::new(device);
    target.script(Rule::Defer {
        opcode: 0x8a,
        count: 1,
        delay: Duration::from_millis(1500),
    });
    let old = tokio::spawn({
        let device = device.clone();
        async move {
            device
                .write(100, Bytes::from(vec![0xaa; 4096]), false)
                .await
        }
    });
    // Find the path the write went down and cut it while the target holds the write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy = device.stats().iter().position(|s| s.in_flight > 0).unwrap();
    proxies[busy].cut_all();
    old.await.unwrap().unwrap();
    device
        .write(100, Bytes::from(vec![0xbb; 4096]), false)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let c = target.counters();
    assert_eq!((c.ghost_writes, c.deferred_cancelled), (0, 1), "{c:?}");
    let got = device.read(100, BytesMut::zeroed(4096)).await.unwrap();
    assert_eq!(&got[..], &[0xbb; 4096][..], "the newer write stands");
    // The reset left a reset unit attention on the other nexus; flushes on either path do
    // not take it for a power loss.
    assert!(c.reset_attentions_set >= 1, "{c:?}");
    for _ in 0..4 {
        device.flush().await.unwrap();
    }
    Arc::into_inner(device).unwrap().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_path_left_waits_for_no_path_retry() {
    let target = target();
    let config = Config {
        no_path_retry: NoPathRetry::For(Duration::from_secs(3)),
        ..Config::default()
    };
    let (device, proxies) = two_paths(&target, config).await;
    let device = Arc::new(device);
    let refuse = Rule::FailLogin {
        status: LoginStatus::SERVICE_UNAVAILABLE,
        count: 10_000,
    };
    // Both paths down for less than no-path-retry: the request waits and completes.
    target.script(refuse.clone());
    proxies.iter().for_each(FaultProxy::cut_all);
    let started = Instant::now();
    let waiting = tokio::spawn({
        let device = device.clone();
        async move { device.read(0, BytesMut::zeroed(4096)).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    target.clear_rules();
    waiting.await.unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1400));
    // Longer than no-path-retry: it fails; and the device recovers when a path returns.
    assert!(
        wait_for(Duration::from_secs(15), || device
            .paths()
            .iter()
            .any(|p| p.is_active()))
        .await
    );
    target.script(refuse);
    proxies.iter().for_each(FaultProxy::cut_all);
    let started = Instant::now();
    let e = device.read(0, BytesMut::zeroed(4096)).await.unwrap_err();
    assert!(e.is_path_failure(), "{e}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    target.clear_rules();
    assert!(
        wait_for(Duration::from_secs(15), || device
            .paths()
            .iter()
            .any(|p| p.is_active()))
        .await
    );
    device.read(0, BytesMut::zeroed(4096)).await.unwrap();
    Arc::into_inner(device).unwrap().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_to_different_lus_are_refused() {
    let a = target();
    let mut naa = [0x60u8; 16];
    naa[15] = 0x99;
    let b = FakeTarget::start(TargetConfig {
        iqn: IQN.to_owned(),
        block_count: BLOCKS,
        naa,
        ..TargetConfig::default()
    });
    let paths = vec![
        ("a".to_owned(), disk(a.port(), 20).await),
        ("b".to_owned(), disk(b.port(), 21).await),
    ];
    let e = Multipath::new(paths, Config::default()).await.unwrap_err();
    assert!(matches!(e, GroupError::DifferentLu { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("naa.") && text.contains("path 2 (b)") && text.contains("path 1 (a)"),
        "{text}"
    );
}

async fn wait_for(timeout: Duration, f: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
