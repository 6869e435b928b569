//! `sanshim boot` on the host, without a VM:
//!
//! - `--dry-run` on every fixture table (the writer cases the VM tests hand to the kernel, and
//!   hostile bytes) prints a plan or a clear error, and changes nothing in the network
//!   namespace it runs in;
//! - discovery: a target whose SendTargets answer names a further portal gets a path through
//!   it, shown as "from discovery" (fake target: tgtd only ever names the portal asked);
//! - the whole boot in a two-path network-namespace topology whose initiator side starts
//!   unconfigured: sanshim configures both NICs from the table (found by MAC), logs in over
//!   both paths, serves the LU over NBD (read with nbdcopy, checked), reports two active
//!   paths, and on SIGTERM logs out and exits 0.
#![allow(clippy::unwrap_used)]

mod common;

#[path = "ibft_vm/tables.rs"]
#[allow(dead_code)]
mod tables;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::{Options, in_netns, output_within, wait_until};
use common::sanshim;
use common::tgtd::try_output_within;
use sanshim_ibft::writer::{self, Layout};
use sanshim_ibft::{ChapType, Header, Ibft, Initiator, Lun, MacAddr, Nic, Origin, Target, flags};
use sanshim_testbed::{FakeTarget, FaultProxy, TargetConfig};
use serde_json::Value;

const IQN: &str = "iqn.2026-12.test.sanshim:boot";
const MIB: u64 = 1 << 20;

/// A namespace with only `lo`, deleted on drop: where a dry run can touch nothing real.
struct Scratch(String);

impl Scratch {
    fn new(tag: &str) -> Option<Scratch> {
        if let Err(why) = common::netns::require_root() {
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let name = format!("sanshim-boot-{tag}-{}", std::process::id());
        let out = output_within(
            Command::new("ip").args(["netns", "add", &name]),
            Duration::from_secs(10),
        );
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!common::in_ci(), "CI=true and ip netns add failed: {why}");
            eprintln!("SKIPPED: ip netns add: {why}");
            return None;
        }
        Some(Scratch(name))
    }

    /// Links, addresses and routes of the namespace, as JSON text.
    fn snapshot(&self) -> String {
        ["link", "addr", "route"]
            .iter()
            .map(|what| {
                let out = output_within(
                    Command::new("ip").args(["-n", &self.0, "-j", what]),
                    Duration::from_secs(10),
                );
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn write_table(dir: &Path, name: &str, ibft: &Ibft, layout: &Layout) -> String {
    let path = dir.join(format!("{name}.ibft"));
    std::fs::write(&path, writer::emit(ibft, layout).unwrap()).unwrap();
    path.display().to_string()
}

/// `sanshim boot --dry-run` in `ns` on `table`.
fn dry_run(ns: &str, table: &str, extra: &[&str]) -> std::process::Output {
    let mut cmd = in_netns(ns, env!("CARGO_BIN_EXE_sanshim"));
    cmd.args(["boot", "--dry-run", "--ibft", table])
        .args(extra)
        .env_remove("SANSHIM_CHAP_SECRET");
    try_output_within(&mut cmd, Duration::from_secs(60)).unwrap()
}

#[test]
fn dry_run_plans_every_fixture_table_and_changes_nothing() {
    let Some(ns) = Scratch::new("dry") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let before = ns.snapshot();
    for case in tables::cases() {
        let table = write_table(dir.path(), case.name, &case.ibft, &case.layout);
        let out = dry_run(&ns.0, &table, &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{}: exit {}\n{stdout}\n{stderr}",
            case.name,
            out.status
        );
        assert!(
            stdout.starts_with("boot plan from the iBFT"),
            "{}: {stdout}",
            case.name
        );
        for nic in case
            .ibft
            .nics
            .iter()
            .filter(|n| n.flags & flags::IN_USE != 0)
        {
            assert!(
                stdout.contains(&format!("NIC {} {}", nic.index, nic.mac)),
                "{}: NIC {} missing:\n{stdout}",
                case.name,
                nic.index
            );
        }
        let usable = case
            .ibft
            .targets
            .iter()
            .filter(|t| t.flags & flags::IN_USE != 0 && t.ip.is_some() && t.name.is_some())
            .count();
        assert_eq!(
            stdout.matches("from the table").count() + stdout.matches("\nskipped target ").count(),
            usable,
            "{}: one table path per target, or the reason it is skipped:\n{stdout}",
            case.name
        );
        assert!(
            !stdout.contains("from discovery"),
            "{}: {stdout}",
            case.name
        );
        // Secrets never reach the plan.
        for t in &case.ibft.targets {
            for s in [&t.chap_secret, &t.reverse_chap_secret]
                .into_iter()
                .flatten()
            {
                assert!(!stdout.contains(s.expose()), "{}: secret shown", case.name);
                assert!(!stderr.contains(s.expose()), "{}: secret logged", case.name);
            }
        }
    }
    assert_eq!(ns.snapshot(), before, "a dry run changed the namespace");

    // Hostile bytes: a clear error, exit 1, no panic.
    for (name, bytes) in [
        ("empty", Vec::new()),
        (
            "garbage",
            (0..4096u32).map(|i| (i * 131 % 251) as u8).collect(),
        ),
        ("truncated", {
            let mut b = writer::emit(&tables::cases()[0].ibft, &Layout::default()).unwrap();
            b.truncate(60);
            b
        }),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = dry_run(&ns.0, &path.display().to_string(), &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains("sanshim: error:"), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}

/// A one-NIC, one-target table for `127.0.0.1:port` (loopback stands in for the SAN NIC).
fn loopback_table(port: u16, chap: Option<(&str, &str)>) -> Ibft {
    let mut target = Target {
        index: 0,
        flags: flags::IN_USE,
        ip: Some(IpAddr::from([127, 0, 0, 1])),
        port,
        lun: Lun::from_number(1),
        chap_type: ChapType::NONE,
        nic: 0,
        name: Some(IQN.to_uppercase()),
        chap_user: None,
        chap_secret: None,
        reverse_chap_user: None,
        reverse_chap_secret: None,
    };
    if let Some((user, secret)) = chap {
        target.chap_type = ChapType::ONE_WAY;
        target.chap_user = Some(user.into());
        target.chap_secret = Some(sanshim_ibft::Secret::new(secret.into()));
    }
    Ibft {
        header: Header {
            signature: *b"iBFT",
            revision: Some(1),
            length: None,
            checksum_ok: None,
            oem_id: "SANSHM".into(),
            oem_table_id: "HOSTTEST".into(),
        },
        control_flags: 0,
        initiator: Some(Initiator {
            index: 0,
            flags: flags::IN_USE,
            isns: None,
            slp: None,
            primary_radius: None,
            secondary_radius: None,
            name: Some("iqn.2026-12.test.sanshim:host".into()),
        }),
        nics: vec![Nic {
            index: 0,
            flags: flags::IN_USE,
            ip: Some(IpAddr::from([127, 0, 0, 1])),
            prefix: 8,
            origin: Origin(1),
            gateway: None,
            primary_dns: None,
            secondary_dns: None,
            dhcp: None,
            vlan: 0,
            mac: MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            pci_bdf: None,
            hostname: None,
        }],
        targets: vec![target],
    }
}

/// The table names one portal; SendTargets names a second (a proxy in front of the same
/// target): the dry run lists it as a discovered path, and a real boot logs in over both.
#[test]
fn sendtargets_adds_the_portals_the_table_left_out() {
    let target = FakeTarget::start(TargetConfig {
        iqn: IQN.into(),
        block_count: 8192,
        ..TargetConfig::default()
    });
    let proxy = FaultProxy::start(target.addr());
    target.add_address(&format!("{},1", proxy.portal()));
    let dir = tempfile::tempdir().unwrap();
    let table = write_table(
        dir.path(),
        "one-portal",
        &loopback_table(target.port(), None),
        &Layout::default(),
    );

    let mut cmd = sanshim();
    cmd.args(["boot", "--dry-run", "--no-net", "--ibft", &table]);
    let out = try_output_within(&mut cmd, Duration::from_secs(60)).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = format!(
        "1 iscsi://127.0.0.1:{}/{IQN}/1 from the table (target 0)",
        target.port()
    );
    let second = format!(
        "2 iscsi://{}/{IQN}/1 from discovery (SendTargets at 127.0.0.1:{})",
        proxy.portal(),
        target.port()
    );
    assert!(stdout.contains(&first), "{stdout}");
    assert!(stdout.contains(&second), "{stdout}");
    assert!(
        stdout.contains(&format!("target 0 {IQN} LUN 1")),
        "the table's upper-case name is lower-cased: {stdout}"
    );

    // The real thing, without network set-up or a kernel device: two paths, one device.
    let (mut child, control, log) = serve_in(
        sanshim().args(["boot", "--no-net", "--no-attach", "--ibft", &table]),
        dir.path(),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    if !wait_until(Duration::from_secs(60), || control.exists()) {
        child.kill().ok();
        panic!("boot did not come up:\n{}", read_log());
    }
    let status = status_json(&control);
    let paths = status["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 2, "{status}\n{}", read_log());
    assert!(paths.iter().all(|p| p["state"] == "active"), "{status}");
    assert_eq!(status["name"], "boot");
    stop(child, &read_log);
    let log = read_log();
    assert!(log.contains("new path from discovery"), "{log}");
    assert!(log.contains("boot LU ready to serve"), "{log}");
}

/// A SAN that is still coming up: the target does not exist yet when boot starts. Boot keeps
/// logging in with backoff, says so, and comes up once the target appears.
#[test]
fn logins_wait_for_a_target_that_comes_up_late() {
    let mut t = common::tgtd::Tgtd::start();
    let dir = tempfile::tempdir().unwrap();
    let table = write_table(
        dir.path(),
        "late",
        &loopback_table(t.port(), None),
        &Layout::default(),
    );
    let started = Instant::now();
    let (mut child, control, log) = serve_in(
        sanshim().args(["boot", "--no-net", "--no-attach", "--ibft", &table]),
        dir.path(),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(20), || read_log()
            .contains("the target may still be coming up")),
        "boot reports the failed attempts:\n{}",
        read_log()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(!control.exists(), "no device before the target exists");
    assert!(
        child.try_wait().unwrap().is_none(),
        "boot gave up:\n{}",
        read_log()
    );
    t.add_target(1, IQN);
    t.add_file_lun(1, 1, 16 * MIB);
    if !wait_until(Duration::from_secs(30), || control.exists()) {
        child.kill().ok();
        panic!(
            "boot did not come up after the target appeared:\n{}",
            read_log()
        );
    }
    eprintln!("late target: boot up after {:?}", started.elapsed());
    stop(child, &read_log);
    assert!(read_log().contains("attempts="), "{}", read_log());
}

/// A portal that accepts connections and never answers the login (a target daemon that is
/// still starting, or hung): each attempt ends after `--login-timeout` saying so, and boot
/// keeps trying until the portal answers (here: by redirecting to the target).
#[test]
fn boot_retries_a_portal_that_does_not_answer_the_login() {
    use common::mock_portal::{MockPortal, Reply};
    let target = FakeTarget::start(TargetConfig {
        iqn: IQN.into(),
        block_count: 8192,
        ..TargetConfig::default()
    });
    let answer = Reply::Status(
        sanshim_initiator::wire::LoginStatus::TARGET_MOVED_TEMPORARILY,
        Some(format!("{},1", target.portal())),
    );
    let portal = MockPortal::start(vec![Reply::Silent, Reply::Silent, answer]);
    let dir = tempfile::tempdir().unwrap();
    let table = write_table(
        dir.path(),
        "silent",
        &loopback_table(portal.port(), None),
        &Layout::default(),
    );
    let (mut child, control, log) = serve_in(
        sanshim().args([
            "--login-timeout",
            "0.5",
            "boot",
            "--no-net",
            "--no-attach",
            "--ibft",
            &table,
        ]),
        dir.path(),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    if !wait_until(Duration::from_secs(60), || control.exists()) {
        child.kill().ok();
        panic!("boot did not come up:\n{}", read_log());
    }
    stop(child, &read_log);
    let log = read_log();
    let silent = format!(
        "portal 127.0.0.1:{} accepted the connection but sent no login response in 0.5 s",
        portal.port()
    );
    assert_eq!(log.matches(&silent).count(), 2, "{log}");
    assert!(log.contains("the target may still be coming up"), "{log}");
    assert!(log.contains("attempts=3"), "{log}");
}

/// Two table paths, one of them dead at boot time: boot serves over the live one after
/// `--path-grace`, instead of holding the boot for the dead path's whole login patience.
#[test]
fn a_dead_path_at_boot_does_not_hold_the_boot() {
    let mut t = common::tgtd::Tgtd::start();
    t.add_target(1, IQN);
    t.add_file_lun(1, 1, 16 * MIB);
    let dead = common::tgtd::free_port();
    let mut ibft = loopback_table(t.port(), None);
    let mut second = loopback_table(dead, None).targets[0].clone();
    second.index = 1;
    ibft.targets.push(second);
    let dir = tempfile::tempdir().unwrap();
    let table = write_table(dir.path(), "dead", &ibft, &Layout::default());
    let started = Instant::now();
    let (mut child, control, log) = serve_in(
        sanshim().args([
            "boot",
            "--no-net",
            "--no-attach",
            "--path-grace",
            "3",
            "--ibft",
            &table,
        ]),
        dir.path(),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    if !wait_until(Duration::from_secs(30), || control.exists()) {
        child.kill().ok();
        panic!("boot did not come up:\n{}", read_log());
    }
    let took = started.elapsed();
    eprintln!("one dead path: serving after {took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    let status = status_json(&control);
    assert_eq!(status["paths"].as_array().unwrap().len(), 1, "{status}");
    stop(child, &read_log);
    assert!(
        read_log().contains("booting without them"),
        "{}",
        read_log()
    );
}

/// A wrong CHAP secret in the table: no patient retrying, a clear error naming the path.
#[test]
fn a_wrong_secret_fails_at_once() {
    let mut t = common::tgtd::Tgtd::start();
    t.add_target(1, IQN);
    t.add_file_lun(1, 1, 16 * MIB);
    t.add_chap(1, "alice", "right-secret-12", false);
    let dir = tempfile::tempdir().unwrap();
    let table = write_table(
        dir.path(),
        "wrong",
        &loopback_table(t.port(), Some(("alice", "wrong-secret-34"))),
        &Layout::default(),
    );
    let started = Instant::now();
    let mut cmd = sanshim();
    cmd.args(["boot", "--no-net", "--no-attach", "--ibft", &table])
        .args([
            "--listen",
            &format!("unix:{}", dir.path().join("s").display()),
        ]);
    let out = try_output_within(&mut cmd, Duration::from_secs(60)).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("credentials"), "{stderr}");
    assert!(
        !stderr.contains("wrong-secret-34"),
        "the secret leaked: {stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// CHAP (target 0) and mutual CHAP (target 1) from the table against a tgtd with both
/// accounts: two paths, no secret in the log.
#[test]
fn chap_and_mutual_chap_from_the_table() {
    let mut t = common::tgtd::Tgtd::start();
    t.add_target(1, IQN);
    t.add_file_lun(1, 1, 16 * MIB);
    t.add_chap(1, "bootuser", "boot-secret-123", false);
    t.add_chap(1, "tgtuser", "target-secret-456", true);
    let second = common::tgtd::free_port();
    t.add_portal(&format!("127.0.0.1:{second}"));
    let mut ibft = loopback_table(t.port(), Some(("bootuser", "boot-secret-123")));
    let mut mutual =
        loopback_table(second, Some(("bootuser", "boot-secret-123"))).targets[0].clone();
    mutual.index = 1;
    mutual.chap_type = ChapType::MUTUAL;
    mutual.reverse_chap_user = Some("tgtuser".into());
    mutual.reverse_chap_secret = Some(sanshim_ibft::Secret::new("target-secret-456".into()));
    ibft.targets.push(mutual);
    let dir = tempfile::tempdir().unwrap();
    let table = write_table(dir.path(), "chap", &ibft, &Layout::default());
    let (mut child, control, log) = serve_in(
        sanshim().args(["boot", "--no-net", "--no-attach", "--ibft", &table]),
        dir.path(),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    if !wait_until(Duration::from_secs(60), || control.exists()) {
        child.kill().ok();
        panic!("boot did not come up:\n{}", read_log());
    }
    let status = status_json(&control);
    assert_eq!(status["paths"].as_array().unwrap().len(), 2, "{status}");
    stop(child, &read_log);
    let log = read_log();
    for secret in ["boot-secret-123", "target-secret-456"] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
}

/// The full boot in a two-path topology whose initiator side starts with no address and its
/// links down.
#[test]
fn boot_configures_the_network_and_serves_both_paths() {
    let mut t = topology_or_skip!(2, Options::default());
    let image = t.add_target(1, IQN, 32 * MIB);
    std::fs::write(
        &image,
        (0..32 * MIB)
            .map(|i| (i * 7 / 512) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let mut ibft = loopback_table(3260, None);
    ibft.nics.clear();
    ibft.targets.clear();
    for path in 1..=2 {
        let dev = t.dev(path);
        ibft.nics.push(Nic {
            index: (path - 1) as u8,
            ip: Some(IpAddr::V4(t.initiator_addr(path))),
            prefix: 24,
            mac: mac_of(&t.ini_ns(), &dev),
            ..loopback_table(0, None).nics[0].clone()
        });
        ibft.targets.push(Target {
            index: (path - 1) as u8,
            nic: (path - 1) as u8,
            ip: Some(IpAddr::V4(t.target_addr(path))),
            port: 3260,
            ..loopback_table(0, None).targets[0].clone()
        });
        // Unconfigure our side: boot must bring it up from the table.
        for args in [
            vec!["addr", "flush", "dev", dev.as_str()],
            vec!["link", "set", "dev", dev.as_str(), "down"],
        ] {
            let out = output_within(
                Command::new("ip").args(["-n", &t.ini_ns()]).args(&args),
                Duration::from_secs(10),
            );
            assert!(out.status.success(), "{args:?}: {out:?}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let table = write_table(dir.path(), "two", &ibft, &Layout::default());

    // The dry run says what it would do, and does not do it.
    let out = dry_run(&t.ini_ns(), &table, &["--no-discovery"]);
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{plan}");
    assert!(plan.contains(&format!("interface {}", t.dev(1))), "{plan}");
    assert!(plan.contains("link up: to do"), "{plan}");
    assert!(!addr_of(&t.ini_ns(), &t.dev(1)).contains(&t.initiator_addr(1).to_string()));

    let started = Instant::now();
    let (child, control, log) = serve_in(
        t.ini(env!("CARGO_BIN_EXE_sanshim"))
            .args(["boot", "--no-attach", "--ibft", &table]),
        dir.path(),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let up = wait_until(Duration::from_secs(60), || control.exists());
    assert!(up, "boot did not come up:\n{}", read_log());
    eprintln!("boot: serving {:?} after start", started.elapsed());
    for path in 1..=2 {
        let shown = addr_of(&t.ini_ns(), &t.dev(path));
        assert!(
            shown.contains(&format!("{}/24", t.initiator_addr(path))),
            "path {path}: {shown}\n{}",
            read_log()
        );
    }
    let status = status_json(&control);
    let paths = status["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 2, "{status}");
    assert!(paths.iter().all(|p| p["state"] == "active"), "{status}");

    let copy = dir.path().join("copy.img");
    let uri = format!(
        "nbd+unix:///boot?socket={}",
        dir.path().join("boot.sock").display()
    );
    let out = output_within(
        Command::new("nbdcopy").arg(&uri).arg(&copy),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "nbdcopy: {out:?}");
    assert!(
        std::fs::read(&copy).unwrap() == std::fs::read(&image).unwrap(),
        "the copy differs from the LU"
    );
    let status = status_json(&control);
    for p in status["paths"].as_array().unwrap() {
        assert!(
            p["ops"].as_u64().unwrap() > 0,
            "both paths carry reads: {status}"
        );
    }
    stop(child, &read_log);
    let log = read_log();
    for needle in [
        "NIC configured",
        "logged in",
        "network set up",
        "boot LU ready to serve",
    ] {
        assert!(log.contains(needle), "{needle}: {log}");
    }
}

/// Starts `cmd` (a `sanshim boot` command line) serving on a unix socket in `dir`, with its
/// control socket and its log there; returns the child and the control socket's and the
/// log's paths.
fn serve_in(cmd: &mut Command, dir: &Path) -> (std::process::Child, PathBuf, PathBuf) {
    let (control, log) = (dir.join("boot.ctl"), dir.join("boot.log"));
    let child = cmd
        .arg("--listen")
        .arg(format!("unix:{}", dir.join("boot.sock").display()))
        .arg("--control")
        .arg(&control)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (child, control, log)
}

fn status_json(control: &Path) -> Value {
    let mut cmd = sanshim();
    cmd.args(["status", "--json"]).arg(control);
    let out = try_output_within(&mut cmd, Duration::from_secs(10)).unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stop(mut child: std::process::Child, log: &dyn Fn() -> String) {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "boot exited with {status}:\n{}", log());
            return;
        }
        assert!(Instant::now() < deadline, "boot did not stop:\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mac_of(ns: &str, dev: &str) -> MacAddr {
    let out = output_within(
        Command::new("ip").args(["-n", ns, "-j", "link", "show", "dev", dev]),
        Duration::from_secs(10),
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = doc[0]["address"].as_str().unwrap();
    let mut mac = [0u8; 6];
    for (b, part) in mac.iter_mut().zip(text.split(':')) {
        *b = u8::from_str_radix(part, 16).unwrap();
    }
    MacAddr(mac)
}

fn addr_of(ns: &str, dev: &str) -> String {
    let out = output_within(
        Command::new("ip").args(["-n", ns, "-o", "addr", "show", "dev", dev]),
        Duration::from_secs(10),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
