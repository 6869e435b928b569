//! The session engine and `ScsiDisk` against a real tgtd: the blockdev conformance suite, a
//! verified-I/O matrix over digests, ImmediateData, InitialR2T, the target's
//! MaxRecvDataSegmentLength, block sizes and queue depths, and a target restart (SIGKILL)
//! in the middle of a verified write run.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::tgtd::Tgtd;
use sanshim_blockdev::{BlockDevice, split};
use sanshim_initiator::disk::{DiskOptions, ScsiDisk};
use sanshim_initiator::login::LoginConfig;
use sanshim_initiator::portal::Portal;
use sanshim_initiator::transport::LoginPolicy;
use sanshim_initiator::wire::Isid;

const IQN: &str = "iqn.2026-11.test.sanshim:io";
const INITIATOR: &str = "iqn.2026-11.test.sanshim:initiator";
const MIB: u64 = 1 << 20;

fn target(size: u64, params: &[(&str, &str)]) -> Option<Tgtd> {
    let mut t = match Tgtd::try_start() {
        Ok(t) => t,
        Err(reason) => {
            eprintln!("SKIPPED: {reason}");
            return None;
        }
    };
    t.add_target(1, IQN);
    t.add_file_lun(1, 1, size);
    for (k, v) in params {
        t.set_param(1, k, v);
    }
    Some(t)
}

async fn open(t: &Tgtd, options: DiskOptions) -> ScsiDisk {
    let portal = Portal {
        host: "127.0.0.1".into(),
        port: t.port(),
    };
    let isid = Isid::random_qualifier(std::process::id() ^ u32::from(t.port()));
    let login = LoginConfig::normal(INITIATOR, IQN, isid);
    let options = DiskOptions { lun: 1, ..options };
    ScsiDisk::open(portal, login, LoginPolicy::default(), options)
        .await
        .unwrap()
}

/// Distinct bytes per run, block and position.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `count` I/Os of `bs` bytes, `qd` at a time, then reads them back and compares.
async fn verified_run(
    disk: &Arc<ScsiDisk>,
    base: u64,
    bs: usize,
    count: usize,
    qd: usize,
    seed: u64,
) {
    let block = disk.geometry().block_size as usize;
    let per_io = (bs / block) as u64;
    let lba = move |i: usize| base + i as u64 * per_io;
    for phase in 0..2 {
        let mut next = 0;
        while next < count {
            let batch: Vec<usize> = (next..count.min(next + qd)).collect();
            next += batch.len();
            let mut handles = Vec::new();
            for i in batch {
                let disk = disk.clone();
                let data = pattern(bs, seed * 10_000 + i as u64);
                handles.push(tokio::spawn(async move {
                    if phase == 0 {
                        split::write(&*disk, lba(i), Bytes::from(data), false)
                            .await
                            .unwrap();
                    } else {
                        let got = split::read(&*disk, lba(i), BytesMut::zeroed(bs))
                            .await
                            .unwrap();
                        assert!(
                            got[..] == data[..],
                            "I/O {i} of {bs} bytes at LBA {} differs",
                            lba(i)
                        );
                    }
                }));
            }
            for h in handles {
                h.await.unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_against_tgtd() {
    let Some(t) = target(64 * MIB, &[]) else {
        return;
    };
    let disk = open(&t, DiskOptions::default()).await;
    assert_eq!(disk.geometry().block_size, 512);
    assert_eq!(disk.geometry().blocks, 64 * MIB / 512);
    assert!(disk.identity().is_some(), "VPD 0x83 identity");
    sanshim_blockdev::conformance::run_all(&disk).await.unwrap();
    disk.close().await.unwrap();
}

/// One matrix cell group: a tgtd with these parameters, every block size at queue depths 1
/// and 64, each on its own window of the LUN.
async fn matrix(digests: bool, immediate: bool, initial_r2t: bool, mrdsl: u32) {
    matrix_with(digests, immediate, initial_r2t, mrdsl, &[]).await;
}

/// As [`matrix`], with more target parameters.
async fn matrix_with(
    digests: bool,
    immediate: bool,
    initial_r2t: bool,
    mrdsl: u32,
    extra: &[(&str, &str)],
) {
    let yes_no = |b: bool| if b { "Yes" } else { "No" };
    let digest = if digests { "CRC32C" } else { "None" };
    let mrdsl = mrdsl.to_string();
    let mut params = vec![
        ("HeaderDigest", digest),
        ("DataDigest", digest),
        ("ImmediateData", yes_no(immediate)),
        ("InitialR2T", yes_no(initial_r2t)),
        ("MaxRecvDataSegmentLength", mrdsl.as_str()),
    ];
    params.extend_from_slice(extra);
    let Some(t) = target(96 * MIB, &params) else {
        return;
    };
    let started = Instant::now();
    for (q, qd) in [1usize, 64].into_iter().enumerate() {
        let options = DiskOptions {
            queue_depth: qd as u32,
            ..DiskOptions::default()
        };
        let disk = Arc::new(open(&t, options).await);
        let sizes: [(usize, usize); 5] = [
            (512, 64),
            (4096, 64),
            (64 << 10, 16),
            (1 << 20, 4),
            (8 << 20, 1 + q),
        ];
        for (w, (bs, count)) in sizes.into_iter().enumerate() {
            // Windows of 16 MiB per block size and queue depth.
            let base = (q * 5 + w) as u64 * (8 * MIB / 512);
            let seed = (q * 10 + w) as u64;
            verified_run(&disk, base, bs, count, qd, seed).await;
        }
        Arc::into_inner(disk).unwrap().close().await.unwrap();
    }
    eprintln!(
        "matrix digests={digests} immediate={immediate} initial_r2t={initial_r2t} \
         mrdsl={mrdsl} {extra:?}: {:?}",
        started.elapsed()
    );
}

/// tgtd with `MaxBurstLength 16384` keeps its FirstBurstLength of 65536: the session must
/// use 16384 for both, with and without unsolicited data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_max_burst_16k_r2t() {
    matrix_with(false, true, true, 262_144, &[("MaxBurstLength", "16384")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_max_burst_16k_unsolicited_digests() {
    matrix_with(true, true, false, 8192, &[("MaxBurstLength", "16384")]).await;
}

macro_rules! matrix_cells {
    ($($name:ident: $d:expr, $i:expr, $r:expr, $m:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            matrix($d, $i, $r, $m).await;
        }
    )*};
}

matrix_cells! {
    matrix_plain_imm_r2t_4k: false, true, true, 4096;
    matrix_plain_imm_r2t_256k: false, true, true, 262_144;
    matrix_plain_imm_unsol_4k: false, true, false, 4096;
    matrix_plain_imm_unsol_256k: false, true, false, 262_144;
    matrix_plain_noimm_r2t_4k: false, false, true, 4096;
    matrix_plain_noimm_r2t_256k: false, false, true, 262_144;
    matrix_plain_noimm_unsol_4k: false, false, false, 4096;
    matrix_plain_noimm_unsol_256k: false, false, false, 262_144;
    matrix_digest_imm_r2t_4k: true, true, true, 4096;
    matrix_digest_imm_r2t_256k: true, true, true, 262_144;
    matrix_digest_imm_unsol_4k: true, true, false, 4096;
    matrix_digest_imm_unsol_256k: true, true, false, 262_144;
    matrix_digest_noimm_r2t_4k: true, false, true, 4096;
    matrix_digest_noimm_r2t_256k: true, false, true, 262_144;
    matrix_digest_noimm_unsol_4k: true, false, false, 4096;
    matrix_digest_noimm_unsol_256k: true, false, false, 262_144;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_restart_during_verified_writes() {
    let Some(t) = target(64 * MIB, &[]) else {
        return;
    };
    let options = DiskOptions {
        queue_depth: 16,
        ..DiskOptions::default()
    };
    let disk = Arc::new(open(&t, options).await);
    let t = Arc::new(Mutex::new(t));
    let killer = {
        let t = t.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            t.lock().unwrap().restart();
        })
    };
    const BS: usize = 64 << 10;
    const COUNT: usize = 400;
    let started = Instant::now();
    let mut next = 0;
    while next < COUNT {
        let mut handles = Vec::new();
        for i in next..COUNT.min(next + 16) {
            let disk = disk.clone();
            handles.push(tokio::spawn(async move {
                let data = Bytes::from(pattern(BS, 7_000 + i as u64));
                disk.write(i as u64 * (BS as u64 / 512), data, false).await
            }));
        }
        next += handles.len();
        for h in handles {
            h.await.unwrap().unwrap();
        }
        // Keep the run going until the restart happened.
        if next >= COUNT && !killer.is_finished() {
            next = 0;
        }
    }
    killer.join().unwrap();
    for i in 0..COUNT {
        let got = disk
            .read(i as u64 * (BS as u64 / 512), BytesMut::zeroed(BS))
            .await
            .unwrap();
        assert!(
            got[..] == pattern(BS, 7_000 + i as u64)[..],
            "I/O {i} differs after the restart"
        );
    }
    assert!(disk.reconnects() >= 1, "the session was re-established");
    eprintln!(
        "restart run: {:?}, {} reconnect(s)",
        started.elapsed(),
        disk.reconnects()
    );
    Arc::into_inner(disk).unwrap().close().await.unwrap();
}

/// tgtd killed (SIGKILL) and restarted while reads are in flight: every read completes with
/// the right data, through a re-established session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_restart_during_verified_reads() {
    let Some(t) = target(64 * MIB, &[]) else {
        return;
    };
    let options = DiskOptions {
        queue_depth: 16,
        ..DiskOptions::default()
    };
    let disk = Arc::new(open(&t, options).await);
    const BS: usize = 64 << 10;
    const COUNT: usize = 256;
    let lba = |i: usize| i as u64 * (BS as u64 / 512);
    for i in 0..COUNT {
        let data = Bytes::from(pattern(BS, 9_000 + i as u64));
        disk.write(lba(i), data, false).await.unwrap();
    }
    disk.flush().await.unwrap();
    let t = Arc::new(Mutex::new(t));
    let killer = {
        let t = t.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            t.lock().unwrap().restart();
        })
    };
    let mut rounds = 0;
    while rounds == 0 || !killer.is_finished() {
        rounds += 1;
        let mut handles = Vec::new();
        for i in 0..COUNT {
            let disk = disk.clone();
            handles.push(tokio::spawn(async move {
                let got = disk.read(lba(i), BytesMut::zeroed(BS)).await.unwrap();
                assert!(
                    got[..] == pattern(BS, 9_000 + i as u64)[..],
                    "read {i} differs around the restart"
                );
            }));
            if handles.len() == 16 {
                for h in handles.drain(..) {
                    h.await.unwrap();
                }
            }
        }
        for h in handles {
            h.await.unwrap();
        }
    }
    killer.join().unwrap();
    assert!(disk.reconnects() >= 1, "the session was re-established");
    eprintln!(
        "read restart: {rounds} rounds, {} reconnect(s)",
        disk.reconnects()
    );
    Arc::into_inner(disk).unwrap().close().await.unwrap();
}
