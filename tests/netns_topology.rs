//! The multipath test bed (`common::netns`) proven with today's single-path `sanshim`: two
//! paths through network namespaces to one tgtd, each reaching the same LU and carrying only
//! its own traffic; a path cut visibly or silently fails its I/O in bounded time while the
//! other keeps working, and works again once restored; a jumbo-frame black hole is found by
//! the MTU probe and clamped; two targets with different backing files are refused as paths
//! to one LU. Not root, or `ip`/`tgtd` missing: skipped locally, a failure under CI=true.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::RunResult;
use common::netns::{Topology, run_within, wait_until};

const IQN: &str = "iqn.2026-12.test.sanshim:netns";
const MIB: u64 = 1 << 20;
/// Keep-alive and replacement settings that make a dead path fail within seconds.
const SHORT: [&str; 6] = [
    "--noop-interval",
    "1",
    "--noop-timeout",
    "1",
    "--replacement-timeout",
    "3",
];
/// The most any single command of these tests may take.
const LIMIT: Duration = Duration::from_secs(40);

/// `ls --json` and `discover` work through either path and name one LU; a verified write
/// through path 1 moves its bytes over path 1's link and (nearly) none over path 2's.
#[test]
fn each_path_reaches_the_lu_and_carries_only_its_own_traffic() {
    let mut t = topology_or_skip!(2);
    t.add_target(1, IQN, 64 * MIB);
    let ids: Vec<String> = (1..=2).map(|path| identity(&t, path, IQN)).collect();
    assert_eq!(ids[0], ids[1], "two paths to one LU");
    for path in 1..=2 {
        let out = run_within(t.sanshim().args(["discover", &t.portal(path)]), LIMIT);
        out.expect_code(0);
        assert!(
            out.stdout.contains(IQN) && out.stdout.contains(&t.portal(path)),
            "discover on path {path}:\n{}",
            out.stdout
        );
    }

    let before = [t.bytes(1), t.bytes(2)];
    let args = ["--verify", "--rw", "write", "--bs", "64k", "--size", "32M"];
    let out = run_within(&mut bench(&t, 1, &args), LIMIT);
    out.expect_code(0);
    assert!(out.stdout.contains("verified"), "{}", out.stdout);
    let (rx1, tx1) = delta(before[0], t.bytes(1));
    let (rx2, tx2) = delta(before[1], t.bytes(2));
    eprintln!("path 1 moved rx {rx1} tx {tx1} bytes, path 2 rx {rx2} tx {tx2}");
    assert!(
        tx1 >= 32 * MIB && rx1 >= 32 * MIB,
        "path 1 carried the write and the verifying read"
    );
    assert!(rx2 + tx2 < 64 * 1024, "path 2 stays (nearly) idle");
}

/// A link taken down on the initiator's side fails a running bench on that path within
/// noop + replacement timeouts; path 2 serves meanwhile; path 1 works once it is up again.
#[test]
fn visible_cut_fails_only_its_path_until_restored() {
    let mut t = topology_or_skip!(2);
    t.add_target(1, IQN, 64 * MIB);
    cut_fails_only_its_path(&t, Topology::cut_visible, Topology::restore_visible);
}

/// The same with the target's switch port unplugged: no carrier change, packets vanish.
#[test]
fn silent_cut_fails_only_its_path_until_restored() {
    let mut t = topology_or_skip!(2);
    t.add_target(1, IQN, 64 * MIB);
    cut_fails_only_its_path(&t, Topology::cut_silent, Topology::restore_silent);
}

/// With jumbo frames end to end and a 1500-byte hop in the middle (offloads off, so frames
/// over 1500 bytes vanish without ICMP), logins and `ls` (small PDUs) work, and the path's
/// MTU probe finds the black hole, clamps the TCP MSS and logs in again: a verified run of
/// 1 MiB writes completes, and the log names the black hole.
#[test]
fn jumbo_black_hole_is_found_and_clamped() {
    let mut t = topology_or_skip!(1);
    t.add_target(1, IQN, 64 * MIB);
    t.black_hole(1, true);
    run_within(t.sanshim().args(["ls", &t.url(1, IQN, 1)]), LIMIT).expect_code(0);
    let args = [
        "--verify",
        "--rw",
        "write",
        "--bs",
        "1m",
        "--size",
        "16M",
        "--noop-interval",
        "1",
        "--noop-timeout",
        "1",
    ];
    let started = Instant::now();
    let out = run_within(&mut bench(&t, 1, &args), LIMIT);
    eprintln!(
        "black hole: bench exit {} after {:?}",
        out.code,
        started.elapsed()
    );
    out.expect_code(0);
    assert!(
        out.stdout.contains("verified 32768 blocks"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("MTU black hole"),
        "the log names it:\n{}",
        out.stderr
    );
}

/// Two targets with different backing files behind the two paths are not one LU: `export`
/// refuses them, naming both identities, and serves nothing.
#[test]
fn export_refuses_paths_to_different_lus() {
    let mut t = topology_or_skip!(2);
    let (a, b) = (format!("{IQN}-a"), format!("{IQN}-b"));
    t.add_target(1, &a, 8 * MIB);
    t.add_target(2, &b, 8 * MIB);
    let (id_a, id_b) = (identity(&t, 1, &a), identity(&t, 2, &b));
    assert_ne!(id_a, id_b);
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("unix:{}", dir.path().join("nbd.sock").display());
    let out = run_within(
        t.sanshim()
            .args(["export", &t.url(1, &a, 1), &t.url(2, &b, 1)])
            .args(["--listen", &listen]),
        LIMIT,
    );
    out.expect_code(1);
    for needle in ["path 1", "path 2", &id_a, &id_b] {
        assert!(out.stderr.contains(needle), "{needle}:\n{}", out.stderr);
    }
    assert!(out.stdout.is_empty(), "nothing served: {}", out.stdout);
}

/// Starts an endless read on path 1, cuts path 1 once data flows, and checks: the read fails
/// within [`LIMIT`], a verified write on path 2 passes meanwhile, and after `restore` path 1
/// passes one too.
fn cut_fails_only_its_path(t: &Topology, cut: fn(&Topology, usize), restore: fn(&Topology, usize)) {
    let (rx0, _) = t.bytes(1);
    let running = spawn(bench(
        t,
        1,
        &["--rw", "read", "--bs", "64k", "--time", "60"],
    ));
    let flowing = wait_until(Duration::from_secs(15), || t.bytes(1).0 > rx0 + 4 * MIB);
    assert!(flowing, "no reads flowed over path 1");
    cut(t, 1);
    let cut_at = Instant::now();

    let verify = ["--verify", "--rw", "write", "--bs", "64k", "--size", "8M"];
    run_within(&mut bench(t, 2, &verify), LIMIT).expect_code(0);
    let (out, ended) = running.join().unwrap();
    let took = ended - cut_at;
    eprintln!(
        "path 1 failed {took:?} after the cut, exit {}:\n{}",
        out.code, out.stderr
    );
    assert!(
        out.code != 0,
        "I/O over a cut path succeeded:\n{}",
        out.stdout
    );
    assert!(took < Duration::from_secs(20), "failing took {took:?}");

    restore(t, 1);
    run_within(&mut bench(t, 1, &verify), LIMIT).expect_code(0);
}

/// `sanshim bench ARGS URL(path)` in the initiator's namespace, with the short timeouts
/// unless `args` set them.
fn bench(t: &Topology, path: usize, args: &[&str]) -> Command {
    let mut cmd = t.sanshim();
    cmd.arg("bench").args(args);
    if !args.contains(&"--noop-interval") {
        cmd.args(SHORT);
    }
    cmd.arg(t.url(path, IQN, 1));
    cmd
}

/// Runs `cmd` on a thread; joins to its result and the instant it ended.
fn spawn(mut cmd: Command) -> JoinHandle<(RunResult, Instant)> {
    std::thread::spawn(move || (run_within(&mut cmd, LIMIT), Instant::now()))
}

/// The LU identity `ls --json` reports for LUN 1 of `iqn` through `path`.
fn identity(t: &Topology, path: usize, iqn: &str) -> String {
    let out = run_within(
        t.sanshim().args(["ls", "--json", &t.url(path, iqn, 1)]),
        LIMIT,
    );
    out.expect_code(0);
    let lun = &out.json()["luns"][0];
    assert_eq!(lun["portal"], t.portal(path), "{lun}");
    lun["identity"]["value"].as_str().unwrap().to_string()
}

fn delta(before: (u64, u64), after: (u64, u64)) -> (u64, u64) {
    (after.0 - before.0, after.1 - before.1)
}
