//! Multipath through `sanshim bench` against a real tgtd, each path behind its own fault
//! proxy on loopback: round-robin uses both paths in turn, and a path whose link goes silent
//! (the proxy stops forwarding and keeps the connection open) is dropped for lack of progress
//! while the other path carries the verified run to the end without a failed request; a
//! running two-path export reports its paths through `sanshim status` and on SIGUSR1.
//! The two-link network-namespace topology, with cuts of real links, is
//! `tests/multipath_netns.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::sanshim;
use common::tgtd::{Tgtd, try_output_within};
use sanshim_testbed::{Direction, FaultProxy, ProxyFault};
use serde_json::Value;

const IQN: &str = "iqn.2026-12.test.sanshim:mpath";
const MIB: u64 = 1 << 20;

fn tgtd() -> Option<Tgtd> {
    let mut t = match Tgtd::try_start() {
        Ok(t) => t,
        Err(reason) => {
            eprintln!("SKIPPED: {reason}");
            return None;
        }
    };
    t.add_target(1, IQN);
    t.add_file_lun(1, 1, 128 * MIB);
    Some(t)
}

/// Two fault proxies in front of `t`, one per path.
fn proxies(t: &Tgtd) -> [FaultProxy; 2] {
    let upstream = t.portal().parse().unwrap();
    [FaultProxy::start(upstream), FaultProxy::start(upstream)]
}

fn urls(proxies: &[FaultProxy; 2]) -> Vec<String> {
    proxies
        .iter()
        .map(|p| format!("iscsi://{}/{IQN}/1", p.portal()))
        .collect()
}

/// The `--json` document of a successful run.
fn document(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

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

/// Round-robin with --rr-min-io 1 alternates: each path carries half the requests, and the
/// per-path counters of the `--json` report show it.
#[test]
fn round_robin_uses_both_paths_in_turn() {
    let Some(t) = tgtd() else { return };
    let proxies = proxies(&t);
    let mut cmd = sanshim();
    cmd.args(["bench", "--json", "--verify", "--policy", "round-robin"])
        .args(["--rw", "read", "--bs", "64k", "--qd", "8", "--size", "32M"])
        .args(urls(&proxies));
    let out = try_output_within(&mut cmd, Duration::from_secs(120)).unwrap();
    let doc = document(&out);
    assert!(doc["verify"]["blocks_checked"].as_u64() > Some(0), "{doc}");
    let paths = doc["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 2, "{doc}");
    let ops: Vec<u64> = paths.iter().map(|p| p["ops"].as_u64().unwrap()).collect();
    // 32 MiB of 64 KiB writes, then as many reads: 1024 requests, taken in turn.
    assert_eq!(ops.iter().sum::<u64>(), 1024, "{doc}");
    assert!(ops[0].abs_diff(ops[1]) <= 8, "round-robin split {ops:?}");
    for (p, proxy) in paths.iter().zip(&proxies) {
        assert_eq!(p["errors"], 0, "{p}");
        assert_eq!(p["failovers"], 0, "{p}");
        // The verified read's data came back through both proxies.
        assert!(proxy.forwarded(Direction::ToInitiator) >= 12 * MIB, "{p}");
    }
}

/// One path's link goes silent in the middle of a Data-In: no reset, no FIN, nothing. With
/// the default keep-alive (5 s + 5 s) the path is judged by the lack of progress on its own
/// commands while the other path progresses, failed, its commands re-driven on the other
/// path, and the verified run completes with no failed request.
#[test]
fn a_silent_path_is_dropped_and_io_goes_on() {
    let Some(t) = tgtd() else { return };
    let proxies = proxies(&t);
    let child = sanshim()
        .args(["-v", "bench", "--json", "--verify"])
        .args(["--rw", "read", "--bs", "256k", "--size", "96M"])
        .args(urls(&proxies))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The write pass goes out first; arm the freeze once the read pass is under way.
    assert!(
        wait_until(Duration::from_secs(60), || proxies[0]
            .forwarded(Direction::ToInitiator)
            >= 8 * MIB),
        "path 1 never carried 8 MiB of reads"
    );
    proxies[0].arm_any(ProxyFault::FreezeMidDataIn);
    let fired = proxies[0].wait_fired(Duration::from_secs(30));
    let out = child.wait_with_output().unwrap();
    assert!(fired.is_some(), "the freeze never fired");
    let doc = document(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(doc["verify"]["blocks_checked"].as_u64() > Some(0), "{doc}");
    let path1 = &doc["paths"][0];
    assert!(
        path1["failovers"].as_u64().unwrap() >= 1 && path1["state_changes"].as_u64().unwrap() >= 1,
        "path 1's counters show the failover: {path1}"
    );
    assert!(
        stderr.contains("path out of service") && stderr.contains("no progress"),
        "the log says which path failed and why:\n{stderr}"
    );
    let longest_ms = doc["lat_us"]["max"].as_f64().unwrap() / 1000.0;
    eprintln!("silent path: longest request {longest_ms:.0} ms; path 1 {path1}");
    // Within the keep-alive timeouts (5 s + 5 s); the progress check makes it ~1.5 s.
    assert!(longest_ms < 10_000.0, "longest request {longest_ms} ms");
    proxies[0].release();
}

/// A running two-path export reports itself: `sanshim status --json` over the control
/// socket (state, counters, timeouts), the human form, and the same lines in the log on
/// SIGUSR1.
#[test]
fn a_running_export_reports_its_paths() {
    let Some(t) = tgtd() else { return };
    let proxies = proxies(&t);
    let dir = tempfile::tempdir().unwrap();
    let (sock, control, log) = (
        dir.path().join("nbd.sock"),
        dir.path().join("export.ctl"),
        dir.path().join("export.log"),
    );
    let mut child = sanshim()
        .arg("export")
        .args(urls(&proxies))
        .arg("--listen")
        .arg(format!("unix:{}", sock.display()))
        .arg("--control")
        .arg(&control)
        .args(["--policy", "queue-length", "--no-path-retry", "queue"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let up = wait_until(Duration::from_secs(30), || {
        control.exists() && sock.exists()
    });
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    if !up {
        child.kill().ok();
        panic!("export did not come up:\n{}", read_log());
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&control).unwrap().permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o600,
        "the control socket is the owner's only"
    );

    let status = |json: bool| {
        let mut cmd = sanshim();
        cmd.arg("status");
        if json {
            cmd.arg("--json");
        }
        cmd.arg(&control);
        let out = try_output_within(&mut cmd, Duration::from_secs(10)).unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let doc: Value = serde_json::from_str(&status(true)).unwrap();
    assert_eq!(doc["policy"], "queue-length", "{doc}");
    assert_eq!(doc["timeouts"]["no_path_retry_s"], "queue", "{doc}");
    let paths = doc["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 2, "{doc}");
    for (i, p) in paths.iter().enumerate() {
        assert_eq!(p["path"], i + 1, "{p}");
        assert_eq!(p["state"], "active", "{p}");
        assert_eq!(p["connected"], true, "{p}");
        assert_eq!(p["name"], urls(&proxies)[i], "{p}");
    }
    let human = status(false);
    assert!(
        human.contains("path 1") && human.contains("path 2") && human.contains("active"),
        "{human}"
    );

    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-USR1", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(
        wait_until(Duration::from_secs(10), || {
            let l = read_log();
            l.contains("path 1") && l.contains("path 2") && l.contains("no-path-retry queue")
        }),
        "SIGUSR1 logs the status:\n{}",
        read_log()
    );
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit}:\n{}", read_log());
}
