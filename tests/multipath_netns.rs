//! Multipath acceptance through `sanshim export` with two URLs on two subnets (network
//! namespaces, MTU 9000, one tgtd listening on both): a read burst splits across both links;
//! a verified write load runs while each link in turn is cut visibly (link down on our side)
//! and silently (the target's switch port unplugged) and restored, with zero failed requests
//! and zero mismatches; both links down for less than no-path-retry makes requests wait, for
//! longer makes them fail, and the export recovers; `sanshim status --json` shows both paths
//! used and the failovers. Needs root and iproute2 (skipped locally without them, a failure
//! under CI=true); the NBD client is python3-libnbd (`/usr/bin/python3`).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::netns::{Topology, run_within, wait_until};
use serde_json::Value;

const IQN: &str = "iqn.2026-12.test.sanshim:mpath";
const MIB: u64 = 1 << 20;
const LIMIT: Duration = Duration::from_secs(60);

/// A running `sanshim export` of both paths, its socket, name and log file.
struct Export {
    child: Child,
    name: String,
    sock: PathBuf,
    control: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Export {
    fn start(t: &Topology, extra: &[&str]) -> Export {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("mp{}", std::process::id());
        let sock = dir.path().join("nbd.sock");
        let control = dir.path().join("export.ctl");
        let log = dir.path().join("export.log");
        let listen = format!("unix:{}", sock.display());
        let child = t
            .sanshim()
            .args(["-v", "export", &t.url(1, IQN, 1), &t.url(2, IQN, 1)])
            .args(["--listen", &listen, "--name", &name])
            .arg("--control")
            .arg(&control)
            .args(["--noop-interval", "1", "--noop-timeout", "1"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let e = Export {
            child,
            name,
            sock,
            control,
            log,
            _dir: dir,
        };
        assert!(
            wait_until(Duration::from_secs(30), || e.sock.exists()
                && e.control.exists()),
            "export did not come up:\n{}",
            e.log()
        );
        e
    }

    fn uri(&self) -> String {
        format!("nbd+unix:///{}?socket={}", self.name, self.sock.display())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn status(&self, t: &Topology) -> Value {
        let out = run_within(
            t.sanshim().args(["status", "--json"]).arg(&self.control),
            LIMIT,
        );
        out.expect_code(0);
        serde_json::from_str(&out.stdout).unwrap()
    }

    fn stop(mut self) {
        // SIGTERM: drain, flush, log out.
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "export exit {status}:\n{}", self.log());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("export did not stop on SIGTERM:\n{}", self.log());
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> PathBuf {
    PathBuf::from("/usr/bin/python3")
}

fn tool(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tools")
        .join(name)
}

/// Runs the verified write load for `seconds` in the background.
fn load(uri: &str, seconds: u32) -> Child {
    std::process::Command::new(python())
        .arg(tool("nbd_load.py"))
        .args([uri, &seconds.to_string(), "4", "64"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn load_result(child: Child) -> Value {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "load failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

fn rx(t: &Topology, path: usize) -> u64 {
    t.bytes(path).0
}

#[test]
fn reads_split_and_cuts_fail_over_without_a_failed_request() {
    let mut t = topology_or_skip!(2);
    t.add_target(1, IQN, 256 * MIB);
    let e = Export::start(&t, &[]);

    // A read burst splits across both links.
    let before = [rx(&t, 1), rx(&t, 2)];
    let copy = run_within(
        std::process::Command::new("nbdcopy").args([&e.uri(), "null:"]),
        LIMIT,
    );
    copy.expect_code(0);
    let moved = [rx(&t, 1) - before[0], rx(&t, 2) - before[1]];
    eprintln!(
        "read burst: path 1 received {} bytes, path 2 {}",
        moved[0], moved[1]
    );
    for (i, m) in moved.iter().enumerate() {
        assert!(
            *m > 64 * MIB,
            "path {} carried {m} of a 256 MiB read",
            i + 1
        );
    }

    // A verified write load while each link in turn is cut and restored.
    let started = Instant::now();
    let runner = load(&e.uri(), 44);
    type Cut = fn(&Topology, usize);
    let cuts: [(&str, Cut, Cut); 2] = [
        ("visible", Topology::cut_visible, Topology::restore_visible),
        ("silent", Topology::cut_silent, Topology::restore_silent),
    ];
    let mut events = Vec::new();
    for (kind, cut, restore) in cuts {
        for path in 1..=2 {
            std::thread::sleep(Duration::from_secs(2));
            events.push(format!(
                "{kind} cut of path {path} at {:?}",
                started.elapsed()
            ));
            cut(&t, path);
            std::thread::sleep(Duration::from_secs(3));
            restore(&t, path);
            // Let the path come back before the next cut.
            let back = wait_until(Duration::from_secs(20), || {
                e.status(&t)["paths"]
                    .as_array()
                    .is_some_and(|p| p.iter().all(|p| p["state"] == "active"))
            });
            assert!(back, "path {path} back after the {kind} cut:\n{}", e.log());
        }
    }
    let result = load_result(runner);
    eprintln!("{}\nload: {result}", events.join("\n"));
    assert_eq!(
        result["failed"],
        0,
        "failed requests: {result}\n{}",
        e.log()
    );
    assert_eq!(result["mismatches"], 0, "{result}");
    assert!(result["checked"].as_u64().unwrap() > 0);
    let stall = result["max_latency_s"].as_f64().unwrap();
    eprintln!("longest single-request stall: {stall} s");
    assert!(stall < 5.0, "a request stalled {stall} s");

    let status = e.status(&t);
    eprintln!("status: {status}");
    for p in status["paths"].as_array().unwrap() {
        assert!(p["ops"].as_u64().unwrap() > 100, "{p}");
        assert!(
            p["state_changes"].as_u64().unwrap() >= 2,
            "each path failed and came back: {p}"
        );
    }
    let log = e.log();
    assert!(
        log.contains("path out of service") && log.contains("path active"),
        "{log}"
    );
    e.stop();
}

#[test]
fn no_path_left_waits_then_fails_and_the_export_recovers() {
    let mut t = topology_or_skip!(2);
    t.add_target(1, IQN, 64 * MIB);
    let e = Export::start(&t, &["--no-path-retry", "6"]);
    let write = |label: &str| {
        let started = Instant::now();
        let out = run_within(
            std::process::Command::new(python()).args([
                "-c",
                "import nbd,sys; h=nbd.NBD(); h.connect_uri(sys.argv[1]); h.pwrite(b'x'*4096, 0); h.flush(); print('ok')",
                &e.uri(),
            ]),
            LIMIT,
        );
        eprintln!("{label}: exit {} after {:?}", out.code, started.elapsed());
        (out.code, started.elapsed())
    };
    assert_eq!(write("both up").0, 0);

    // Both links down for less than no-path-retry: the request waits and completes.
    t.cut_visible(1);
    t.cut_visible(2);
    let restorer = {
        let (a, b) = (t.ini_ns(), t.dev(1));
        let c = t.dev(2);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(3));
            for dev in [b, c] {
                let _ = std::process::Command::new("ip")
                    .args(["-n", &a, "link", "set", &dev, "up"])
                    .status();
            }
        })
    };
    let (code, took) = write("both down 3 s");
    restorer.join().unwrap();
    assert_eq!(code, 0, "{}", e.log());
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(wait_until(Duration::from_secs(20), || {
        e.status(&t)["paths"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["state"] == "active"))
    }));

    // Longer than no-path-retry: the request fails with an error; the NBD connection and the
    // export stay up, and serve again once a link returns.
    t.cut_visible(1);
    t.cut_visible(2);
    let (code, took) = write("both down for good");
    assert_ne!(code, 0);
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(30),
        "{took:?}"
    );
    t.restore_visible(1);
    t.restore_visible(2);
    assert!(wait_until(Duration::from_secs(30), || {
        e.status(&t)["paths"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["state"] == "active"))
    }));
    assert_eq!(write("after recovery").0, 0, "{}", e.log());
    e.stop();
}
