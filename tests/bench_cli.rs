//! `sanshim bench` against a real tgtd: verified runs that land on the target's backing file,
//! the `--json` fields of the command-line contract, exit 6 on a mismatch (a `--bstype null`
//! LUN keeps no data), path identity checks and usage errors (shared/DESIGN.md).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Seek, SeekFrom};

use common::tgtd::Tgtd;
use common::{run, sanshim};
use serde_json::Value;

const IQN: &str = "iqn.2026-11.test.sanshim:bench";
const MIB: u64 = 1 << 20;
/// LUN 1: a 32 MiB file; LUN 2: `--bstype null` (1 TB, keeps nothing).
const FILE_LUN: u32 = 1;
const NULL_LUN: u32 = 2;

struct Target {
    tgtd: Tgtd,
    file: std::path::PathBuf,
}

/// A tgtd with one target holding a file LUN and a null LUN; `None` when tgtd is missing
/// outside CI.
fn target() -> Option<Target> {
    let mut tgtd = match Tgtd::try_start() {
        Ok(t) => t,
        Err(reason) => {
            eprintln!("SKIPPED: {reason}");
            return None;
        }
    };
    tgtd.add_target(1, IQN);
    let file = tgtd.add_file_lun(1, FILE_LUN, 32 * MIB);
    tgtd.add_null_lun(1, NULL_LUN);
    Some(Target { tgtd, file })
}

fn url(t: &Target, lun: u32) -> String {
    format!("iscsi://{}/{IQN}/{lun}", t.tgtd.portal())
}

fn bench(args: &[&str]) -> common::RunResult {
    let mut cmd = sanshim();
    cmd.args([
        "--initiator-name",
        "iqn.2026-11.test.sanshim:bench-cli",
        "bench",
    ])
    .args(args);
    run(&mut cmd)
}

fn number(doc: &Value, path: &[&str]) -> f64 {
    let mut v = doc;
    for key in path {
        v = &v[key];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{path:?} is not a number in {doc}"))
}

#[test]
fn verified_runs_are_clean_for_every_pattern() {
    let Some(t) = target() else { return };
    for rw in ["write", "randwrite", "read", "randread"] {
        let out = bench(&[
            "--rw",
            rw,
            "--bs",
            "64k",
            "--qd",
            "8",
            "--size",
            "4m",
            "--verify",
            "--json",
            &url(&t, FILE_LUN),
        ]);
        out.expect_code(0);
        let doc = out.json();
        assert_eq!(doc["rw"], rw);
        assert_eq!(doc["bs"], 65536);
        assert_eq!(doc["ops"], 64, "{rw}: 4 MiB in 64 KiB requests");
        assert_eq!(doc["bytes"], 4 * MIB);
        assert_eq!(doc["verify"]["blocks_checked"], 4 * MIB / 512, "{rw}");
        assert_eq!(doc["verify"]["passes"], 1, "{rw}: --size makes one pass");
        assert_eq!(doc["verify"]["write"]["ops"], 64);
        assert_eq!(doc["verify"]["read"]["ops"], 64);
    }
}

#[test]
fn timed_verify_repeats_passes_over_the_lun() {
    let Some(t) = target() else { return };
    // 32 MiB in 1 MiB requests: 32 per pass. How many passes fit depends on the machine; the
    // figures must agree with each other whatever their number.
    let out = bench(&[
        "--rw",
        "write",
        "--bs",
        "1m",
        "--qd",
        "8",
        "--time",
        "1.5",
        "--verify",
        "--json",
        &url(&t, FILE_LUN),
    ]);
    out.expect_code(0);
    let doc = out.json();
    let passes = number(&doc, &["verify", "passes"]);
    let written = number(&doc, &["verify", "write", "ops"]);
    assert!(passes >= 1.0, "{doc}");
    assert!(
        (passes - 1.0) * 32.0 < written && written <= passes * 32.0,
        "only the last pass may be partial: {doc}"
    );
    assert_eq!(number(&doc, &["verify", "read", "ops"]), written, "{doc}");
    assert_eq!(
        number(&doc, &["verify", "blocks_checked"]),
        written * 2048.0,
        "{doc}"
    );
    assert_eq!(number(&doc, &["ops"]), written, "the writes are measured");
}

#[test]
fn sequential_verify_writes_stamped_blocks_where_they_belong() {
    let Some(t) = target() else { return };
    let out = bench(&[
        "--rw",
        "write",
        "--bs",
        "128k",
        "--qd",
        "4",
        "--size",
        "1m",
        "--verify",
        "--json",
        &url(&t, FILE_LUN),
    ]);
    out.expect_code(0);
    let tag = out.json()["verify"]["tag"].as_str().unwrap().to_string();
    let tag = u64::from_str_radix(tag.trim_start_matches("0x"), 16).unwrap();
    // The target's backing file holds, at every 512-byte block, its own LBA and the run tag.
    let mut file = std::fs::File::open(&t.file).unwrap();
    for lba in [0u64, 1, 255, 2047] {
        let mut block = [0u8; 512];
        file.seek(SeekFrom::Start(lba * 512)).unwrap();
        file.read_exact(&mut block).unwrap();
        assert_eq!(&block[..8], b"SANSHIMV", "block {lba}");
        assert_eq!(block[8..16], lba.to_le_bytes(), "block {lba}");
        assert_eq!(block[16..24], tag.to_le_bytes(), "block {lba}");
    }
    let mut next = [0u8; 512];
    file.seek(SeekFrom::Start(2048 * 512)).unwrap();
    file.read_exact(&mut next).unwrap();
    assert!(
        next.iter().all(|&b| b == 0),
        "nothing past the 1 MiB written"
    );
}

#[test]
fn writes_touch_only_the_named_lun_and_the_others_are_listed() {
    let Some(mut t) = target() else { return };
    let other = t.tgtd.add_file_lun(1, 3, 4 * MIB);
    let out = bench(&[
        "--rw",
        "randwrite",
        "--bs",
        "64k",
        "--size",
        "8m",
        "--verify",
        &url(&t, FILE_LUN),
    ]);
    out.expect_code(0);
    // LUN masking mistakes destroy data: the other LUNs are named before anything is written.
    assert!(
        out.stderr
            .contains("the target also presents LUN 2, 3 besides LUN 1"),
        "warns about the LUNs not named:\n{}",
        out.stderr
    );
    let untouched = std::fs::read(&other).unwrap();
    assert!(
        untouched.iter().all(|&b| b == 0),
        "a LUN that was not named stays untouched"
    );
}

#[test]
fn json_reports_the_contract_fields_and_progress_goes_to_stderr() {
    let Some(t) = target() else { return };
    let started = std::time::Instant::now();
    let out = bench(&[
        "--rw",
        "read",
        "--bs",
        "128k",
        "--qd",
        "32",
        "--time",
        "2.5",
        "--json",
        &url(&t, NULL_LUN),
    ]);
    // What the figures are checked against: the process's own lifetime, not a threshold
    // that a loaded machine could miss.
    let lifetime = started.elapsed().as_secs_f64();
    out.expect_code(0);
    let doc = out.json();
    assert_eq!(doc["rw"], "read");
    assert_eq!(doc["bs"], 131072);
    assert_eq!(doc["qd"], 32);
    assert_eq!(doc["verify"], Value::Null);
    let seconds = number(&doc, &["seconds"]);
    assert!(
        (2.5..=lifetime).contains(&seconds),
        "measured {seconds} s: at least the 2.5 s asked for, within the process's {lifetime} s"
    );
    let (ops, bytes) = (number(&doc, &["ops"]), number(&doc, &["bytes"]));
    assert!(ops > 0.0);
    assert_eq!(bytes, ops * 131072.0);
    let iops = number(&doc, &["iops"]);
    assert!(
        (iops - ops / seconds).abs() <= iops * 0.01 + 1.0,
        "iops {iops}"
    );
    let mib = number(&doc, &["mib_per_s"]);
    assert!(
        (mib - iops / 8.0).abs() <= mib * 0.01 + 0.1,
        "MiB/s {mib} vs iops {iops}"
    );
    let (p50, p99, max) = (
        number(&doc, &["lat_us", "p50"]),
        number(&doc, &["lat_us", "p99"]),
        number(&doc, &["lat_us", "max"]),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{p50} {p99} {max}");
    let (user, sys) = (
        number(&doc, &["cpu_s", "user"]),
        number(&doc, &["cpu_s", "sys"]),
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    assert!(
        user >= 0.0 && sys >= 0.0 && user + sys <= lifetime * cores,
        "CPU {user} + {sys} s cannot exceed {cores} cores × {lifetime} s"
    );
    let progress: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("MiB/s") && l.contains("IOPS") && l.contains("p99"))
        .collect();
    assert!(
        progress.len() >= 2,
        "a progress line a second:\n{}",
        out.stderr
    );
    assert!(!out.stdout.contains("IOPS"), "progress stays off stdout");
}

#[test]
fn a_lun_that_keeps_nothing_fails_verification_with_exit_6() {
    let Some(t) = target() else { return };
    let out = bench(&[
        "--rw",
        "write",
        "--bs",
        "64k",
        "--size",
        "1m",
        "--verify",
        &url(&t, NULL_LUN),
    ]);
    out.expect_code(6);
    assert!(
        out.stderr.contains("verification failed: block at LBA "),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.is_empty(),
        "no report on a failed run: {}",
        out.stdout
    );
}

#[test]
fn paths_must_lead_to_one_lu() {
    let Some(t) = target() else { return };
    let (file, null) = (url(&t, FILE_LUN), url(&t, NULL_LUN));
    let out = bench(&["--size", "256k", &file, &null]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("naa."),
        "both identities named: {}",
        out.stderr
    );
    assert_eq!(out.stderr.matches("naa.").count(), 2, "{}", out.stderr);
    bench(&["--size", "256k", &file, &file]).expect_code(0);
}

#[test]
fn usage_errors_exit_2() {
    let Some(mut t) = target() else { return };
    let lun = url(&t, FILE_LUN);
    let out = bench(&["--bs", "1000", "--size", "1m", &lun]);
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("multiple of the device's block size 512"),
        "{}",
        out.stderr
    );
    bench(&["--bs", "4q", &lun]).expect_code(2);
    bench(&["--time", "1", "--size", "1m", &lun]).expect_code(2);
    bench(&["--rw", "sideways", &lun]).expect_code(2);
    t.tgtd.set_lun_params(1, FILE_LUN, "readonly=1");
    let out = bench(&["--rw", "write", "--size", "1m", &lun]);
    out.expect_code(2);
    assert!(out.stderr.contains("read-only"), "{}", out.stderr);
    bench(&["--rw", "randread", "--size", "1m", &lun]).expect_code(0);
}
