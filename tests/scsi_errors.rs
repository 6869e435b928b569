//! SCSI errors a user must act on at the array, against the test bed's fake target (a real
//! target cannot be made to run out of thin-pool space on demand) and against tgtd (a LUN
//! deleted under a running export):
//!
//! - out of space (DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT): `bench` fails with one
//!   line naming the LUN, target and portal and saying to free space, exit 5, the write not
//!   retried; over NBD the write gets ENOSPC; the soft-threshold unit attention is a warning;
//! - a LUN that vanished (REPORTED LUNS DATA HAS CHANGED, then LOGICAL UNIT NOT SUPPORTED):
//!   one line saying the LUN is no longer presented, exit 5, and with two paths no failover;
//!   the same when tgtd deletes the LUN under a running `bench`.
#![allow(clippy::unwrap_used)]

mod common;

use common::nbd_client::{CMD_WRITE, NbdClient};
use common::{run, sanshim};
use sanshim_initiator::scsi::SenseKey;
use sanshim_testbed::{FakeTarget, Rule, SenseCode, TargetConfig};

const IQN: &str = "iqn.2026-12.test.sanshim:errors";
const WRITE16: u8 = 0x8a;
const NO_SPACE: SenseCode = SenseCode::new(SenseKey::DATA_PROTECT, 0x27, 0x07);
const LUN_GONE: SenseCode = SenseCode::new(SenseKey::ILLEGAL_REQUEST, 0x25, 0x00);
const SOFT_THRESHOLD: SenseCode = SenseCode::new(SenseKey::UNIT_ATTENTION, 0x38, 0x07);

fn target() -> FakeTarget {
    FakeTarget::start(TargetConfig {
        iqn: IQN.into(),
        block_count: 8192,
        ..TargetConfig::default()
    })
}

fn url(target: &FakeTarget) -> String {
    format!("iscsi://{}/{IQN}/1", target.portal())
}

/// `sanshim bench --rw write` of one 4 KiB request over `urls`.
fn bench_one_write(urls: &[String]) -> common::RunResult {
    run(sanshim()
        .args(["bench", "--rw", "write", "--qd", "1", "--size", "4k"])
        .args(urls))
}

fn lines_naming(stderr: &str, what: &str) -> usize {
    stderr.lines().filter(|l| l.contains(what)).count()
}

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("sanshim: error:"))
        .collect()
}

#[test]
fn out_of_space_is_one_line_and_exit_5_without_retries() {
    let target = target();
    target.script(Rule::check_condition(Some(WRITE16), u32::MAX, NO_SPACE));
    let out = bench_one_write(&[url(&target)]);
    out.expect_code(5);
    let errors = error_lines(&out.stderr);
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert_eq!(
        lines_naming(&out.stderr, "LUN 1 of target"),
        1,
        "{}",
        out.stderr
    );
    let expected = format!(
        "the target is out of space (thin pool exhausted) for LUN 1 of target {IQN} (portal {})",
        target.portal()
    );
    assert!(errors[0].contains(&expected), "{}", out.stderr);
    assert!(
        errors[0].contains("free space on the array"),
        "{}",
        out.stderr
    );
    assert_eq!(
        target.counters().commands_of(WRITE16),
        1,
        "an out-of-space write is not retried"
    );
    assert_eq!(target.counters().logouts, 1, "logged out after the failure");
}

#[test]
fn out_of_space_over_nbd_is_enospc_and_said_once_in_the_log() {
    let target = target();
    let dir = tempfile::tempdir().unwrap();
    let (socket, log) = (dir.path().join("nbd.sock"), dir.path().join("export.log"));
    let mut child = sanshim()
        .args(["export", "--name", "full", &url(&target), "--listen"])
        .arg(format!("unix:{}", socket.display()))
        .arg("--control")
        .arg(dir.path().join("export.ctl"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut uri = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut uri,
    )
    .unwrap();
    assert!(uri.starts_with("nbd+unix"), "{uri}");
    let mut client = NbdClient::connect(&socket, "full");
    target.script(Rule::check_condition(Some(WRITE16), 2, NO_SPACE));
    for cookie in 1..=3u64 {
        client.send(CMD_WRITE, 0, cookie, cookie * 4096, &[0xee; 4096]);
        let reply = client.reply();
        let want = if cookie < 3 { 28 } else { 0 };
        assert_eq!(
            (reply.cookie, reply.error),
            (cookie, want),
            "ENOSPC twice, then the space is back"
        );
    }
    drop(client);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert_eq!(
        log.matches("the target is out of space (thin pool exhausted) for LUN 1")
            .count(),
        1,
        "one line for the episode: {log}"
    );
}

#[test]
fn the_soft_threshold_is_a_warning_and_the_write_goes_through() {
    let target = target();
    target.script(Rule::check_condition(Some(WRITE16), 1, SOFT_THRESHOLD));
    let out = bench_one_write(&[url(&target)]);
    out.expect_code(0);
    assert!(
        out.stderr.contains("passed its soft threshold")
            && out.stderr.contains("free space on the array"),
        "{}",
        out.stderr
    );
    assert_eq!(target.counters().lun1_bytes_written(), 4096);
}

/// The target reports that its LUN inventory changed, then no longer knows the LUN: one line,
/// exit 5, and with two paths the write does not go round them (one WRITE, and its retry
/// after the unit attention, on one path).
#[test]
fn a_vanished_lun_is_named_and_not_a_path_failure() {
    let target = target();
    target.script(Rule::check_condition(
        Some(WRITE16),
        1,
        SenseCode::LUNS_CHANGED,
    ));
    // Only writes meet it: the paths log in and inspect the LUN first.
    target.script(Rule::check_condition(Some(WRITE16), u32::MAX, LUN_GONE));
    let out = bench_one_write(&[url(&target), url(&target)]);
    out.expect_code(5);
    let errors = error_lines(&out.stderr);
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert_eq!(
        lines_naming(&out.stderr, "no longer presented"),
        1,
        "{}",
        out.stderr
    );
    let expected = format!(
        "LUN 1 of target {IQN} (portal {}) is no longer presented",
        target.portal()
    );
    assert!(errors[0].contains(&expected), "{}", out.stderr);
    assert!(errors[0].contains("unmapped"), "{}", out.stderr);
    assert!(
        out.stderr.contains("LUN inventory changed"),
        "the unit attention is logged: {}",
        out.stderr
    );
    assert_eq!(
        target.counters().commands_of(WRITE16),
        2,
        "the write and its retry after the unit attention, on one path only"
    );
    assert_eq!(target.counters().logouts, 2, "both paths logged out");
}

/// tgtd deletes the LUN while `bench` writes to it: the run ends with the one line saying
/// the LUN is no longer presented, exit 5.
#[test]
fn a_lun_deleted_on_tgtd_under_a_running_bench() {
    let mut t = match common::tgtd::Tgtd::try_start() {
        Ok(t) => t,
        Err(reason) => {
            eprintln!("SKIPPED: {reason}");
            return;
        }
    };
    t.add_target(1, IQN);
    t.add_file_lun(1, 1, 16 << 20);
    let dir = tempfile::tempdir().unwrap();
    let err = dir.path().join("bench.err");
    let mut child = sanshim()
        .args(["bench", "--rw", "write", "--qd", "1", "--time", "600"])
        .arg(format!("iscsi://{}/{IQN}/1", t.portal()))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let read_err = || std::fs::read_to_string(&err).unwrap_or_default();
    let writing = common::netns::wait_until(std::time::Duration::from_secs(30), || {
        read_err().contains("IOPS")
    });
    assert!(writing, "bench runs: {}", read_err());
    // tgtd refuses to delete a LU with a command in flight: try until it takes it.
    let delete = [
        "--op",
        "delete",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "1",
    ];
    let deleted = common::netns::wait_until(std::time::Duration::from_secs(30), || {
        t.try_tgtadm(&delete).is_ok()
    });
    assert!(deleted, "tgtd deleted the LUN");
    let exited = common::netns::wait_until(std::time::Duration::from_secs(60), || {
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        child.kill().ok();
    }
    let status = child.wait().unwrap();
    let stderr = read_err();
    assert_eq!(status.code(), Some(5), "{stderr}");
    let expected = format!(
        "sanshim: error: LUN 1 of target {IQN} (portal {}) is no longer presented",
        t.portal()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(error_lines(&stderr).len(), 1, "{stderr}");
}
