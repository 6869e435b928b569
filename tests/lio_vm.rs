//! Interoperability with LIO, the Linux kernel's iSCSI target (issue 12), in a QEMU VM set up
//! by the `lio` test bed; one VM per test:
//!
//! - `login_matrix_and_send_targets`: demo mode without authentication, one-way and mutual
//!   CHAP through a node ACL, a wrong secret and a target that proves the wrong secret (exit 4,
//!   at once), CRC32C digests required by the TPG, offered and declined; SendTargets (LIO lists
//!   the guest's own address, which is unreachable from the initiator: exit 3 within seconds).
//! - `discovery_credentials`: session credentials against a portal that does not enforce
//!   discovery authentication (sanshim falls back to none), discovery credentials when it does,
//!   none or wrong ones refused (exit 4).
//! - `verified_io_and_discovered_luns`: random images written and read back through `sanshim
//!   export` and nbdcopy, compared on the host and in the guest (sha256 of the backing file):
//!   LIO's defaults without digests, and a TPG with 4096-byte data segments both ways,
//!   ImmediateData=No, InitialR2T=Yes and digests required (R2T-driven writes, many small
//!   Data-In PDUs); `discover --luns` through the forwarded portal in bounded time.
//! - `alua_paths_follow_state_changes`: one LUN through two TPGs in two target port groups;
//!   only the active/optimized path carries reads, and after the states are swapped in
//!   configfs mid-run the other path does; when the path in use goes to standby, reads go
//!   on through the other one without an error.
//!
//! Needs root, QEMU, busybox-static and Debian's kernel (`scripts/vm/fetch-kernel`), nbdcopy;
//! skipped without them, a failure under CI=true.
#![allow(clippy::unwrap_used)]

mod common;
mod lio;
mod vm;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::RunResult;
use common::data::{random_bytes, sha256_file, sha256_hex};
use common::netns::{run_within, wait_until};
use lio::{Access, Chap, DiscoveryAuth, Lio, Spec, Target, Tpg};
use serde_json::Value;

const INITIATOR: &str = "iqn.2026-12.test.sanshim:lio-initiator";
const OPEN: &str = "iqn.2026-12.test.sanshim:lio-open";
const CHAP: &str = "iqn.2026-12.test.sanshim:lio-chap";
const DIGEST: &str = "iqn.2026-12.test.sanshim:lio-digest";
const IO: &str = "iqn.2026-12.test.sanshim:lio-io";
const SMALL: &str = "iqn.2026-12.test.sanshim:lio-small";
const ALUA: &str = "iqn.2026-12.test.sanshim:lio-alua";
const MIB: u64 = 1 << 20;
/// The LUNs of the verified I/O: big enough for thousands of 4 KiB PDUs, small for TCG.
const SIZE: u64 = 32 * MIB;
const LIMIT: Duration = Duration::from_secs(120);
const USER: (&str, &str) = ("alice", "alice-secret-1234");
const TARGET_USER: (&str, &str) = ("lio-target", "target-secret-5678");
const DISCOVERY_USER: (&str, &str) = ("disc-user", "disc-secret-9876");

#[test]
fn login_matrix_and_send_targets() {
    let chap = Chap::one_way(USER.0, USER.1).mutual(TARGET_USER.0, TARGET_USER.1);
    let spec = Spec::new()
        .target(
            Target::new(OPEN)
                .lun("open0", 8 * MIB)
                .tpg(Tpg::new(1, 3260)),
        )
        .target(
            Target::new(CHAP)
                .lun("chap0", 8 * MIB)
                .tpg(Tpg::new(1, 3260).access(Access::Acl {
                    initiator: INITIATOR.to_owned(),
                    chap: Some(chap),
                })),
        )
        .target(
            Target::new(DIGEST).lun("digest0", 8 * MIB).tpg(
                Tpg::new(1, 3260)
                    .param("HeaderDigest", "CRC32C")
                    .param("DataDigest", "CRC32C"),
            ),
        );
    let lio = lio_or_skip!(spec);

    // No authentication; what LIO negotiates with our defaults, and without digests.
    let lun = ls_json(&lio, OPEN, &[], &[]);
    eprintln!("LIO session with sanshim's defaults: {}", lun["session"]);
    assert_eq!(lun["capacity_bytes"], 8 * MIB);
    assert_eq!(lun["vendor"], "LIO-ORG", "{lun}");
    assert!(lun["session"]["chap"].is_null(), "{lun}");
    assert_eq!(
        lun["session"]["header_digest"], "CRC32C",
        "LIO takes our first"
    );
    assert_eq!(lun["session"]["data_digest"], "CRC32C");
    let none = ["--header-digest", "none", "--data-digest", "none"];
    let lun = ls_json(&lio, OPEN, &none, &[]);
    assert_eq!(lun["session"]["header_digest"], "None");
    assert_eq!(lun["session"]["data_digest"], "None");

    // Digests required by the TPG: taken when offered; declining them cannot log in.
    let lun = ls_json(&lio, DIGEST, &["--header-digest", "crc32c"], &[]);
    assert_eq!(lun["session"]["header_digest"], "CRC32C");
    assert_eq!(lun["session"]["data_digest"], "CRC32C");
    assert_eq!(lun["capacity_bytes"], 8 * MIB, "data read through digests");
    // LIO fails the login with "initiator error" and no keys; only its console says why
    // ("Proposer's value list "None" contains no valid values from Acceptor's value list
    // "CRC32C"). sanshim names the operational stage and the digest options (exit 1, as
    // against tgt, which answers the key and is told its value is not acceptable).
    let out = ls(&lio, DIGEST, &none, &[]);
    eprintln!("digests declined: exit {}\n{}", out.code, out.stderr);
    out.expect_code(1);
    assert!(
        out.stderr.contains("negotiating operational parameters")
            && out.stderr.contains("--header-digest"),
        "{}",
        out.stderr
    );

    // One-way and mutual CHAP through the node ACL.
    let user = ["--chap-user", USER.0];
    let secret = [("SANSHIM_CHAP_SECRET", USER.1)];
    let lun = ls_json(&lio, CHAP, &user, &secret);
    eprintln!("CHAP session: {}", lun["session"]);
    assert!(lun["session"]["chap"].is_string(), "CHAP used: {lun}");
    assert_eq!(lun["session"]["mutual_chap"], false);
    let mutual = ["--chap-user", USER.0, "--mutual-user", TARGET_USER.0];
    let both = [
        ("SANSHIM_CHAP_SECRET", USER.1),
        ("SANSHIM_MUTUAL_SECRET", TARGET_USER.1),
    ];
    let lun = ls_json(&lio, CHAP, &mutual, &both);
    assert_eq!(lun["session"]["mutual_chap"], true, "{lun}");

    // Refusals: no CHAP offered to a portal group that requires it (LIO closes the
    // connection without a login response: retried twice, then exit 4 saying what to give),
    // a wrong secret, a target proving the wrong secret.
    let started = Instant::now();
    let out = ls(&lio, CHAP, &[], &[]);
    eprintln!(
        "no CHAP to a CHAP TPG: exit {} after {:?}: {}",
        out.code,
        started.elapsed(),
        out.stderr.trim()
    );
    out.expect_code(4);
    assert!(out.stderr.contains("--chap-user"), "{}", out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let refused = |extra: &[&str], env: &[(&str, &str)], what: &str| {
        let started = Instant::now();
        let out = ls(&lio, CHAP, extra, env);
        eprintln!(
            "{what}: exit {} after {:?}: {}",
            out.code,
            started.elapsed(),
            out.stderr.trim()
        );
        out.expect_code(4);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: not at once"
        );
        assert!(
            out.stderr.contains(CHAP),
            "{what} names the target: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("authentication"),
            "{what}: {}",
            out.stderr
        );
        for secret in [USER.1, TARGET_USER.1, "wrong-secret-0000"] {
            assert!(!out.stderr.contains(secret), "{what}: a secret in the log");
        }
    };
    refused(
        &user,
        &[("SANSHIM_CHAP_SECRET", "wrong-secret-0000")],
        "wrong secret",
    );
    refused(
        &mutual,
        &[
            ("SANSHIM_CHAP_SECRET", USER.1),
            ("SANSHIM_MUTUAL_SECRET", "wrong-secret-0000"),
        ],
        "wrong target secret",
    );

    // SendTargets: every target, at the guest's own address.
    let doc = discover(&lio, &[], &[]).json();
    let targets = doc["portals"][0]["targets"].as_array().unwrap();
    let mut names: Vec<&str> = targets
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, [CHAP, DIGEST, OPEN], "{doc}");
    for t in targets {
        let portals = t["portals"].as_array().unwrap();
        assert_eq!(portals.len(), 1, "{t}");
        assert_eq!(portals[0]["host"], lio::GUEST_ADDR, "{t}");
        assert_eq!(portals[0]["port"], 3260, "{t}");
        assert_eq!(portals[0]["tpgt"], 1, "{t}");
    }

    // The portal LIO lists is the guest's own address, unreachable from here: a user who
    // copies it gets "unreachable" (exit 3) in bounded time.
    let started = Instant::now();
    let url = format!("iscsi://{}:3260/{OPEN}/0", lio::GUEST_ADDR);
    let mut cmd = lio.sanshim();
    cmd.args(["--initiator-name", INITIATOR, "ls", &url]);
    let out = run_within(&mut cmd, LIMIT);
    eprintln!(
        "ls of the listed portal: exit {} after {:?}",
        out.code,
        started.elapsed()
    );
    out.expect_code(3);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn discovery_credentials() {
    let spec = Spec::new()
        .target(
            Target::new(OPEN)
                .lun("open0", 8 * MIB)
                .tpg(Tpg::new(1, 3260)),
        )
        .discovery_auth(DiscoveryAuth {
            enforce: false,
            chap: Chap::one_way(DISCOVERY_USER.0, DISCOVERY_USER.1),
        });
    let lio = lio_or_skip!(spec);
    let user = ["--chap-user", USER.0];
    let secret = [("SANSHIM_CHAP_SECRET", USER.1)];

    // Session credentials, discovery authentication not enforced: LIO refuses them (it has
    // discovery credentials of its own), and sanshim carries on without authentication.
    let out = discover(&lio, &user, &secret);
    eprintln!("{}", out.stderr.trim());
    out.expect_code(0);
    assert!(
        out.stderr
            .contains("refused our CHAP credentials for discovery; trying without authentication"),
        "{}",
        out.stderr
    );
    assert_logged_in(&out, "none");
    assert_eq!(
        out.json()["portals"][0]["targets"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Enforced discovery authentication: discovery credentials, none, wrong ones.
    lio.exec("echo 1 >/sys/kernel/config/target/iscsi/discovery_auth/enforce_discovery_auth");
    let disc_user = ["--discovery-chap-user", DISCOVERY_USER.0];
    let out = discover(
        &lio,
        &disc_user,
        &[("SANSHIM_DISCOVERY_CHAP_SECRET", DISCOVERY_USER.1)],
    );
    out.expect_code(0);
    assert_logged_in(&out, "discovery-chap");
    assert_eq!(
        out.json()["portals"][0]["targets"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    for (extra, env) in [
        (&[][..], &[][..]),
        (
            &disc_user[..],
            &[("SANSHIM_DISCOVERY_CHAP_SECRET", "wrong-secret-0000")][..],
        ),
    ] {
        let out = discover(&lio, extra, env);
        eprintln!("{}", out.stderr.trim());
        out.expect_code(4);
        assert!(
            !out.stderr.contains("wrong-secret-0000"),
            "a secret in the log"
        );
    }
}

#[test]
fn verified_io_and_discovered_luns() {
    let nbdcopy = require_tool_or_skip!("nbdcopy");
    let spec = Spec::new()
        .target(Target::new(IO).lun("io0", SIZE).tpg(Tpg::new(1, 3260)))
        .target(
            Target::new(SMALL).lun("small0", SIZE).tpg(
                Tpg::new(1, 3260)
                    .param("MaxRecvDataSegmentLength", "4096")
                    // LIO declares this one as its MaxRecvDataSegmentLength, and sends Data-In
                    // segments of at most this size.
                    .param("MaxXmitDataSegmentLength", "4096")
                    .param("ImmediateData", "No")
                    .param("InitialR2T", "Yes")
                    .param("HeaderDigest", "CRC32C")
                    .param("DataDigest", "CRC32C"),
            ),
        );
    let lio = lio_or_skip!(spec);

    let lun = ls_json(&lio, SMALL, &[], &[]);
    let session = &lun["session"];
    eprintln!("small-segment session: {session}");
    assert_eq!(session["max_xmit_data_segment_length"], 4096, "{session}");
    assert_eq!(session["immediate_data"], false, "{session}");
    assert_eq!(session["initial_r2t"], true, "{session}");
    assert_eq!(session["header_digest"], "CRC32C");
    assert_eq!(session["data_digest"], "CRC32C");

    let none = ["--header-digest", "none", "--data-digest", "none"];
    for (iqn, backing, extra, seed) in [(IO, "io0", &none[..], 1), (SMALL, "small0", &[][..], 2)] {
        let image = random_bytes(SIZE as usize, seed);
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.img");
        std::fs::write(&src, &image).unwrap();
        let e = Export::start(&lio, &[&lio.url(3260, iqn, 0)], extra);
        let started = Instant::now();
        run_within(Command::new(&nbdcopy).arg(&src).arg(e.uri()), LIMIT).expect_code(0);
        let wrote = started.elapsed();
        let back = dir.path().join("back.img");
        run_within(Command::new(&nbdcopy).arg(e.uri()).arg(&back), LIMIT).expect_code(0);
        eprintln!(
            "{iqn}: {} MiB written in {wrote:?}, read in {:?}",
            SIZE / MIB,
            started.elapsed() - wrote
        );
        assert_eq!(sha256_file(&back), sha256_hex(&image), "{iqn}: read back");
        e.stop();
        let guest = lio.exec(&format!("sha256sum /tmp/{backing}.img"));
        assert!(
            guest.starts_with(&sha256_hex(&image)),
            "{iqn}: the backing file in the guest: {guest}"
        );
    }

    // --luns logs in through the portal asked, not the unreachable one LIO lists.
    let started = Instant::now();
    let out = discover(&lio, &["--luns"], &[]);
    let took = started.elapsed();
    out.expect_code(0);
    assert!(
        took < Duration::from_secs(20),
        "discover --luns took {took:?}"
    );
    let doc = out.json();
    let targets = doc["portals"][0]["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2, "{doc}");
    for t in targets {
        let luns = t["luns"]
            .as_array()
            .unwrap_or_else(|| panic!("no LUNs: {t}"));
        assert_eq!(luns.len(), 1, "{t}");
        assert_eq!(luns[0]["lun"], 0, "{t}");
        assert_eq!(luns[0]["capacity_bytes"], SIZE, "{t}");
    }
}

#[test]
fn alua_paths_follow_state_changes() {
    let nbdcopy = require_tool_or_skip!("nbdcopy");
    let spec = Spec::new().target(
        Target::new(ALUA)
            .lun("alua0", 16 * MIB)
            .alua_group("A", 1, 0)
            .alua_group("B", 2, 1)
            .tpg(Tpg::new(1, 3260).alua_group("A"))
            .tpg(Tpg::new(2, 3261).alua_group("B")),
    );
    let lio = lio_or_skip!(spec);
    let urls = [lio.url(3260, ALUA, 0), lio.url(3261, ALUA, 0)];

    let out = run_within(
        lio.sanshim()
            .args(["--initiator-name", INITIATOR, "ls", "--json"])
            .args(&urls),
        LIMIT,
    );
    out.expect_code(0);
    let doc = out.json();
    eprintln!("ALUA as LIO reports it: {}", doc["luns"][0]["alua"]);
    for (i, state) in ["active/optimized", "active/non-optimized"]
        .iter()
        .enumerate()
    {
        let alua = &doc["luns"][i]["alua"];
        assert_eq!(alua["implicit"], true, "{alua}");
        assert_eq!(alua["path_group"], i + 1, "{alua}");
        assert_eq!(alua["state"], *state, "{alua}");
    }

    let e = Export::start(&lio, &[&urls[0], &urls[1]], &[]);
    let read_all = || {
        let out = run_within(Command::new(&nbdcopy).args([&e.uri(), "null:"]), LIMIT);
        out.expect_code(0);
    };
    let ops =
        |doc: &Value| -> [u64; 2] { [0, 1].map(|i| doc["paths"][i]["ops"].as_u64().unwrap()) };
    let before = ops(&e.status(&lio));
    read_all();
    let after = ops(&e.status(&lio));
    let moved = [after[0] - before[0], after[1] - before[1]];
    assert!(
        moved[0] > 0 && moved[1] == 0,
        "only path 1 reads: {moved:?}"
    );

    // Swap the groups in configfs: LIO queues ASYMMETRIC ACCESS STATE CHANGED on each nexus
    // of the LUN, the next command on path 1 gets it, and sanshim reads the groups again.
    let alua = "/sys/kernel/config/target/core/fileio_0/alua0/alua";
    lio.exec(&format!(
        "echo 1 >{alua}/A/alua_access_state && echo 0 >{alua}/B/alua_access_state"
    ));
    let swapped = Instant::now();
    let followed = wait_until(Duration::from_secs(20), || {
        let before = ops(&e.status(&lio));
        read_all();
        ops(&e.status(&lio))[1] > before[1]
    });
    let status = e.status(&lio);
    assert!(
        followed,
        "path 2 never carried I/O after the swap; status {status}\nexport log:\n{}",
        e.log()
    );
    eprintln!("followed after {:?}", swapped.elapsed());
    let before = ops(&status);
    read_all();
    let after = ops(&e.status(&lio));
    let moved = [after[0] - before[0], after[1] - before[1]];
    assert!(
        moved[0] == 0 && moved[1] > 0,
        "only path 2 reads: {moved:?}"
    );
    let ranks = [0, 1].map(|i| e.status(&lio)["paths"][i]["alua_rank"].as_u64());
    assert_eq!(ranks, [Some(1), Some(0)], "ranks after the swap");
    assert!(e.log().contains("ALUA state read"), "{}", e.log());

    // The path in use goes to standby (A back to optimized): reads go on through path 1
    // without an error reaching the client, and path 2 goes to standby. Its reads that met
    // LIO's NOT READY, TARGET PORT IN STANDBY STATE (04/0B) were refused unexecuted: they
    // move to path 1 without counting as path errors, and path 2 keeps its connection.
    let reconnects_before = e.status(&lio)["paths"][1]["reconnects"].as_u64();
    lio.exec(&format!(
        "echo 0 >{alua}/A/alua_access_state && echo 2 >{alua}/B/alua_access_state"
    ));
    let standby = wait_until(Duration::from_secs(20), || {
        read_all();
        e.status(&lio)["paths"][1]["state"] == "standby"
    });
    let status = e.status(&lio);
    assert!(standby, "path 2 not in standby: {status}\n{}", e.log());
    let before = ops(&status);
    read_all();
    let after = e.status(&lio);
    let moved = [ops(&after)[0] - before[0], ops(&after)[1] - before[1]];
    assert!(
        moved[0] > 0 && moved[1] == 0,
        "only path 1 reads: {moved:?}"
    );
    assert_eq!(after["paths"][0]["errors"], 0, "{after}");
    assert_eq!(after["paths"][1]["errors"], 0, "{after}");
    assert_eq!(
        after["paths"][1]["reconnects"].as_u64(),
        reconnects_before,
        "the standby path kept its connection: {after}"
    );
    assert!(
        e.log().contains("refused the command for its ALUA state")
            || e.log().contains("ALUA state changed"),
        "{}",
        e.log()
    );
    eprintln!(
        "path 2 after its group went to standby: {}",
        after["paths"][1]
    );
    e.stop();
}

/// `sanshim ls --json` of LUN 0 of `iqn` on portal 3260, which must succeed.
fn ls_json(lio: &Lio, iqn: &str, extra: &[&str], env: &[(&str, &str)]) -> Value {
    let out = ls(lio, iqn, extra, env);
    out.expect_code(0);
    let doc = out.json();
    assert_eq!(doc["luns"].as_array().map(Vec::len), Some(1), "{doc}");
    doc["luns"][0].clone()
}

fn ls(lio: &Lio, iqn: &str, extra: &[&str], env: &[(&str, &str)]) -> RunResult {
    let mut cmd = lio.sanshim();
    cmd.args(["-v", "--initiator-name", INITIATOR, "ls", "--json"])
        .arg(lio.url(3260, iqn, 0))
        .args(extra)
        .envs(env.iter().copied());
    run_within(&mut cmd, LIMIT)
}

/// `sanshim -v discover --json 127.0.0.1:3260`, which must finish well within 30 s.
fn discover(lio: &Lio, extra: &[&str], env: &[(&str, &str)]) -> RunResult {
    let mut cmd = lio.sanshim();
    cmd.args(["-v", "--initiator-name", INITIATOR, "discover", "--json"])
        .arg(lio.portal(3260))
        .args(extra)
        .envs(env.iter().copied());
    let started = Instant::now();
    let out = run_within(&mut cmd, Duration::from_secs(30));
    eprintln!(
        "discover {extra:?}: exit {} after {:?}",
        out.code,
        started.elapsed()
    );
    out
}

/// The discovery login was logged with field `auth` = `auth` (quoted or not).
fn assert_logged_in(out: &RunResult, auth: &str) {
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("discovery session logged in"))
        .unwrap_or_else(|| panic!("no discovery login logged:\n{}", out.stderr));
    let logged = [format!("auth={auth}"), format!("auth=\"{auth}\"")];
    assert!(
        logged.iter().any(|field| line.contains(field.as_str())),
        "auth={auth} expected: {line}"
    );
}

/// A running `sanshim export` in the namespace, served on a unix socket.
struct Export {
    child: Child,
    sock: PathBuf,
    control: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Export {
    fn start(lio: &Lio, urls: &[&str], extra: &[&str]) -> Export {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("nbd.sock");
        let control = dir.path().join("export.ctl");
        let log = dir.path().join("export.log");
        let child = lio
            .sanshim()
            .args(["-v", "--initiator-name", INITIATOR, "export"])
            .args(urls)
            .arg("--listen")
            .arg(format!("unix:{}", sock.display()))
            .args(["--name", "lio"])
            .arg("--control")
            .arg(&control)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let e = Export {
            child,
            sock,
            control,
            log,
            _dir: dir,
        };
        let up = wait_until(Duration::from_secs(60), || {
            e.sock.exists() && e.control.exists()
        });
        assert!(up, "export did not come up:\n{}", e.log());
        e
    }

    fn uri(&self) -> String {
        format!("nbd+unix:///lio?socket={}", self.sock.display())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn status(&self, lio: &Lio) -> Value {
        let out = run_within(
            lio.sanshim().args(["status", "--json"]).arg(&self.control),
            LIMIT,
        );
        out.expect_code(0);
        out.json()
    }

    /// SIGTERM (drain, flush, log out) and a clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "export exit {status}:\n{}", self.log());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("export did not stop on SIGTERM:\n{}", self.log());
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
