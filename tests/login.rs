//! `sanshim ls` / `sanshim discover` against a real tgtd: authentication, digests, segment
//! lengths, discovery and the exit codes of the command-line contract (shared/DESIGN.md).
#![allow(clippy::unwrap_used)]

mod common;

use common::tgtd::{Tgtd, free_port};
use common::{run, sanshim};
use serde_json::Value;

const IQN: &str = "iqn.2026-11.test.sanshim:disk1";
const MIB: u64 = 1 << 20;

/// A tgtd with one target and one 64 MiB file LUN; `None` when tgtd is missing outside CI.
fn target() -> Option<Tgtd> {
    let mut t = match Tgtd::try_start() {
        Ok(t) => t,
        Err(reason) => {
            eprintln!("SKIPPED: {reason}");
            return None;
        }
    };
    t.add_target(1, IQN);
    t.add_file_lun(1, 1, 64 * MIB);
    Some(t)
}

fn url(t: &Tgtd, lun: u32) -> String {
    format!("iscsi://{}/{IQN}/{lun}", t.portal())
}

fn ls_json(t: &Tgtd, extra: &[&str], env: &[(&str, &str)]) -> Value {
    let mut cmd = sanshim();
    cmd.args(["ls", "--json", &url(t, 1)]).args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    out.expect_code(0);
    let doc = out.json();
    assert_eq!(
        doc["luns"].as_array().map(Vec::len),
        Some(1),
        "one LUN reported: {doc}"
    );
    doc["luns"][0].clone()
}

#[test]
fn ls_reports_what_tgtd_was_configured_with() {
    let Some(mut t) = target() else { return };
    t.set_lun_params(
        1,
        1,
        "vendor_id=SANSHIM,product_id=TESTDISK,product_rev=0042,scsi_sn=SN-12345,\
         scsi_id=my-lun-id",
    );
    let lun = ls_json(&t, &[], &[]);
    assert_eq!(lun["lun"], 1);
    assert_eq!(lun["target"], IQN);
    assert_eq!(lun["device_type"], 0);
    assert_eq!(lun["device_type_name"], "direct-access block device");
    assert_eq!(lun["vendor"], "SANSHIM");
    assert_eq!(lun["product"], "TESTDISK");
    assert_eq!(lun["revision"], "0042");
    assert_eq!(lun["serial"], "SN-12345");
    assert_eq!(lun["capacity_bytes"], 64 * MIB);
    assert_eq!(lun["block_size"], 512);
    assert_eq!(lun["blocks"], 64 * MIB / 512);
    assert_eq!(lun["write_protected"], false);
    assert_eq!(lun["thin_provisioning"], false);
    // tgtd reports an NAA designator for the LU and the scsi_id as a T10 vendor ID.
    let identity = lun["identity"]["value"].as_str().unwrap();
    assert!(identity.starts_with("naa."), "identity {identity}");
    let designators = lun["designators"].as_array().unwrap();
    assert!(
        designators
            .iter()
            .any(|d| d["value"].as_str().unwrap_or("").contains("my-lun-id")),
        "scsi_id among the designators: {designators:?}"
    );
    let limits = &lun["block_limits"];
    assert!(
        limits.is_object(),
        "tgtd answers the Block Limits VPD page: {lun}"
    );
    assert!(limits["max_transfer_blocks"].is_u64());
    assert!(limits["optimal_granularity_blocks"].is_u64());
    assert!(limits["max_unmap_blocks"].is_u64());
}

/// tgtd has no ALUA (standard INQUIRY TPGS 0): `"alua"` is there, as `null`, and the human
/// output has no alua line.
#[test]
fn ls_reports_no_alua_for_tgtd() {
    let Some(t) = target() else { return };
    let lun = ls_json(&t, &[], &[]);
    assert!(
        lun.as_object().unwrap().contains_key("alua"),
        "alua in the schema: {lun}"
    );
    assert_eq!(lun["alua"], Value::Null);
    let out = run(sanshim().args(["ls", &url(&t, 1)]));
    out.expect_code(0);
    assert!(!out.stdout.contains("alua"), "{}", out.stdout);
}

#[test]
fn ls_reports_write_protect_and_thin_provisioning() {
    let Some(mut t) = target() else { return };
    t.add_file_lun(1, 2, 8 * MIB);
    t.set_lun_params(1, 2, "readonly=1");
    t.add_file_lun(1, 3, 8 * MIB);
    t.set_lun_params(1, 3, "thin_provisioning=1");
    let out = run(sanshim().args(["ls", "--json", &url(&t, 2), &url(&t, 3)]));
    out.expect_code(0);
    let doc = out.json();
    assert_eq!(doc["luns"][0]["lun"], 2);
    assert_eq!(doc["luns"][0]["write_protected"], true);
    assert_eq!(doc["luns"][1]["lun"], 3);
    assert_eq!(doc["luns"][1]["thin_provisioning"], true);
    assert_eq!(doc["luns"][1]["write_protected"], false);
}

#[test]
fn ls_without_lun_lists_every_lun() {
    let Some(mut t) = target() else { return };
    t.add_null_lun(1, 2);
    let out = run(sanshim().args(["ls", "--json", &format!("iscsi://{}/{IQN}", t.portal())]));
    out.expect_code(0);
    let luns: Vec<u64> = out.json()["luns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["lun"].as_u64().unwrap())
        .collect();
    assert_eq!(
        luns,
        [0, 1, 2],
        "tgtd's controller LUN 0, the file LUN and the null LUN"
    );
    let out = run(sanshim().args(["ls", &format!("iscsi://{}/{IQN}", t.portal())]));
    out.expect_code(0);
    assert!(
        out.stdout.contains("1099511627776"),
        "null LUN reports 1 TiB:\n{}",
        out.stdout
    );
}

#[test]
fn one_way_chap() {
    let Some(mut t) = target() else { return };
    t.add_chap(1, "alice", "alice-secret-1234", false);
    let lun = ls_json(
        &t,
        &["--chap-user", "alice"],
        &[("SANSHIM_CHAP_SECRET", "alice-secret-1234")],
    );
    assert!(lun["session"]["chap"].is_string(), "CHAP used: {lun}");
    assert_eq!(lun["session"]["mutual_chap"], false);
    // Without credentials the target refuses us.
    let out = run(sanshim().args(["ls", &url(&t, 1)]));
    out.expect_code(4);
}

#[test]
fn one_way_chap_secret_from_file() {
    let Some(mut t) = target() else { return };
    t.add_chap(1, "alice", "alice-secret-1234", false);
    let file = t.dir().join("secret");
    std::fs::write(&file, "alice-secret-1234\n").unwrap();
    let f = file.to_str().unwrap();
    ls_json(&t, &["--chap-user", "alice", "--chap-secret-file", f], &[]);
}

#[test]
fn mutual_chap() {
    let Some(mut t) = target() else { return };
    t.add_chap(1, "alice", "alice-secret-1234", false);
    t.add_chap(1, "target1", "target-secret-5678", true);
    let lun = ls_json(
        &t,
        &["--chap-user", "alice", "--mutual-user", "target1"],
        &[
            ("SANSHIM_CHAP_SECRET", "alice-secret-1234"),
            ("SANSHIM_MUTUAL_SECRET", "target-secret-5678"),
        ],
    );
    assert_eq!(lun["session"]["mutual_chap"], true);
}

#[test]
fn wrong_secret_is_refused_with_exit_4() {
    let Some(mut t) = target() else { return };
    t.add_chap(1, "alice", "alice-secret-1234", false);
    let out = run(sanshim()
        .args(["ls", &url(&t, 1), "--chap-user", "alice"])
        .env("SANSHIM_CHAP_SECRET", "wrong-secret-0000"));
    out.expect_code(4);
    assert!(out.stderr.contains(IQN), "names the target: {}", out.stderr);
    assert!(
        out.stderr.contains("authentication"),
        "says authentication: {}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("wrong-secret-0000"),
        "never prints the secret"
    );
}

#[test]
fn wrong_target_secret_in_mutual_chap_is_refused() {
    let Some(mut t) = target() else { return };
    t.add_chap(1, "alice", "alice-secret-1234", false);
    t.add_chap(1, "target1", "target-secret-5678", true);
    let out = run(sanshim()
        .args([
            "ls",
            &url(&t, 1),
            "--chap-user",
            "alice",
            "--mutual-user",
            "target1",
        ])
        .env("SANSHIM_CHAP_SECRET", "alice-secret-1234")
        .env("SANSHIM_MUTUAL_SECRET", "not-the-target-secret"));
    out.expect_code(4);
    assert!(out.stderr.contains("authentication"), "{}", out.stderr);
    assert!(out.stderr.contains(IQN), "{}", out.stderr);
}

/// Every form a secret could leak in: as typed, and as the hex and base64 encodings iSCSI
/// uses for binary values (RFC 7143 §6.1), in either case.
fn leaked_forms(secret: &str) -> Vec<String> {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    let mut base64 = String::new();
    for chunk in secret.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            base64.push(char::from(B64[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    vec![
        secret.to_owned(),
        hex.clone(),
        hex.to_uppercase(),
        // Long enough not to match by chance, short enough to catch a truncated dump.
        base64[..base64.len() - 2].to_owned(),
    ]
}

/// Runs `cmd` at the most verbose logging there is (`-vvv` and `RUST_LOG=trace`, which also
/// opens every dependency's trace) and fails if any form of any secret reaches its output.
fn assert_no_secret(what: &str, cmd: &mut std::process::Command, code: i32, secrets: &[&str]) {
    let out = run(cmd.env("RUST_LOG", "trace"));
    out.expect_code(code);
    assert!(
        out.stderr.contains("TRACE"),
        "{what}: trace logging is on:\n{}",
        out.stderr
    );
    for secret in secrets {
        for form in leaked_forms(secret) {
            assert!(!out.stdout.contains(&form), "{what}: {secret} on stdout");
            assert!(
                !out.stderr.contains(&form),
                "{what}: secret {secret} in the logs as {form:?}"
            );
        }
    }
}

#[test]
fn no_secret_in_trace_output() {
    let Some(mut t) = target() else { return };
    t.add_chap(1, "alice", "alice-secret-1234", false);
    t.add_chap(1, "target1", "target-secret-5678", true);
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("chap");
    std::fs::write(&secret_file, "alice-secret-1234\n").unwrap();
    let mutual_file = dir.path().join("mutual");
    std::fs::write(&mutual_file, "target-secret-5678\n").unwrap();
    let (secret_file, mutual_file) = (secret_file.to_str().unwrap(), mutual_file.to_str().unwrap());
    let all = [
        "alice-secret-1234",
        "target-secret-5678",
        "bad-target-secret-99",
        "wrong-secret-0000",
        "url-secret-4321",
    ];
    let cred = ["--chap-user", "alice", "--mutual-user", "target1"];
    // Mutual CHAP from the environment, good and wrong.
    for (mutual, code) in [("target-secret-5678", 0), ("bad-target-secret-99", 4)] {
        assert_no_secret(
            &format!("ls, mutual secret {code}"),
            sanshim()
                .args(["-vvv", "ls", &url(&t, 1)])
                .args(cred)
                .env("SANSHIM_CHAP_SECRET", "alice-secret-1234")
                .env("SANSHIM_MUTUAL_SECRET", mutual),
            code,
            &all,
        );
    }
    // A wrong initiator secret, from the environment.
    assert_no_secret(
        "ls, wrong secret",
        sanshim()
            .args(["-vvv", "ls", &url(&t, 1), "--chap-user", "alice"])
            .env("SANSHIM_CHAP_SECRET", "wrong-secret-0000"),
        4,
        &all,
    );
    // A secret in the URL (refused: it is the wrong one, so the error path is scanned too).
    let in_url = format!("iscsi://alice%url-secret-4321@{}/{IQN}/1", t.portal());
    assert_no_secret(
        "ls, secret in the URL",
        sanshim().args(["-vvv", "ls", &in_url]),
        4,
        &all,
    );
    // Secrets from files, through discovery, the LUN listing and I/O.
    assert_no_secret(
        "discover --luns",
        sanshim()
            .args(["-vvv", "discover", "--luns", &t.portal()])
            .args(cred)
            .args(["--chap-secret-file", secret_file])
            .args(["--mutual-secret-file", mutual_file]),
        0,
        &all,
    );
    assert_no_secret(
        "bench",
        sanshim()
            .args([
                "-vvv",
                "bench",
                "--rw",
                "randwrite",
                "--bs",
                "64k",
                "--size",
                "4m",
            ])
            .args(["--verify", &url(&t, 1)])
            .args(cred)
            .args(["--chap-secret-file", secret_file])
            .args(["--mutual-secret-file", mutual_file]),
        0,
        &all,
    );
}

#[test]
fn target_requiring_crc32c_digests() {
    let Some(mut t) = target() else { return };
    t.set_param(1, "HeaderDigest", "CRC32C")
        .set_param(1, "DataDigest", "CRC32C");
    let lun = ls_json(&t, &[], &[]);
    assert_eq!(lun["session"]["header_digest"], "CRC32C");
    assert_eq!(lun["session"]["data_digest"], "CRC32C");
    assert_eq!(lun["capacity_bytes"], 64 * MIB, "data read through digests");
}

#[test]
fn required_digest_against_a_target_without_digests_fails() {
    let Some(t) = target() else { return };
    // tgtd's default is HeaderDigest=None: insisting on CRC32C cannot log in.
    let out = run(sanshim().args(["ls", &url(&t, 1), "--header-digest", "crc32c"]));
    out.expect_code(1);
    assert!(
        out.stderr.contains("HeaderDigest"),
        "names the key: {}",
        out.stderr
    );
    assert_eq!(
        out.stderr.matches("HeaderDigest=None").count(),
        1,
        "said once: {}",
        out.stderr
    );
}

#[test]
fn digests_off_when_asked() {
    let Some(t) = target() else { return };
    let lun = ls_json(
        &t,
        &["--header-digest", "none", "--data-digest", "none"],
        &[],
    );
    assert_eq!(lun["session"]["header_digest"], "None");
    assert_eq!(lun["session"]["data_digest"], "None");
}

#[test]
fn target_max_recv_data_segment_lengths() {
    for mrdsl in [512u32, 4096, 262144] {
        let Some(mut t) = target() else { return };
        t.set_param(1, "MaxRecvDataSegmentLength", &mrdsl.to_string());
        t.set_param(1, "MaxXmitDataSegmentLength", &mrdsl.to_string());
        let lun = ls_json(&t, &[], &[]);
        assert_eq!(
            lun["session"]["max_xmit_data_segment_length"], mrdsl,
            "{lun}"
        );
        assert_eq!(lun["capacity_bytes"], 64 * MIB);
        assert!(
            lun["identity"]["value"].is_string(),
            "VPD pages read at {mrdsl}"
        );
    }
}

#[test]
fn first_burst_above_max_burst_is_clamped() {
    let Some(mut t) = target() else { return };
    // tgtd keeps its default FirstBurstLength 65536 and answers it beside MaxBurstLength.
    t.set_param(1, "MaxBurstLength", "16384");
    let lun = ls_json(&t, &[], &[]);
    let session = &lun["session"];
    let first = session["first_burst_length"].as_u64().unwrap();
    let max = session["max_burst_length"].as_u64().unwrap();
    assert_eq!(max, 16384, "{session}");
    assert!(first <= max, "FirstBurstLength clamped: {session}");
    assert_eq!(lun["capacity_bytes"], 64 * MIB);
}

#[test]
fn unknown_target_name_is_refused_with_exit_4() {
    let Some(t) = target() else { return };
    let bad = format!("iscsi://{}/iqn.2026-11.test.sanshim:nope/1", t.portal());
    let out = run(sanshim().args(["ls", &bad]));
    out.expect_code(4);
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
}

#[test]
fn closed_port_exits_3() {
    let port = free_port();
    let out = run(sanshim().args(["ls", &format!("iscsi://127.0.0.1:{port}/{IQN}/1")]));
    out.expect_code(3);
    let out = run(sanshim().args(["discover", &format!("127.0.0.1:{port}")]));
    out.expect_code(3);
}

#[test]
fn discovery_of_several_targets() {
    let Some(mut t) = target() else { return };
    t.add_target(2, "iqn.2026-11.test.sanshim:disk2");
    t.add_null_lun(2, 1);
    t.add_target(3, "iqn.2026-11.test.sanshim:disk3");
    t.add_null_lun(3, 1);
    t.add_null_lun(3, 2);
    let out = run(sanshim().args(["discover", "--json", &t.portal()]));
    out.expect_code(0);
    let doc = out.json();
    let targets = doc["portals"][0]["targets"].as_array().unwrap();
    let mut names: Vec<&str> = targets
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            IQN,
            "iqn.2026-11.test.sanshim:disk2",
            "iqn.2026-11.test.sanshim:disk3"
        ]
    );
    for target in targets {
        let portal = &target["portals"][0];
        assert_eq!(portal["port"], t.port());
        assert_eq!(portal["host"], "127.0.0.1");
        assert_eq!(portal["tpgt"], 1);
    }
    // With --luns every target is logged in to and its LUNs listed.
    let out = run(sanshim().args(["discover", "--luns", "--json", &t.portal()]));
    out.expect_code(0);
    let doc = out.json();
    let disk3 = doc["portals"][0]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "iqn.2026-11.test.sanshim:disk3")
        .unwrap()
        .clone();
    let luns: Vec<u64> = disk3["luns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["lun"].as_u64().unwrap())
        .collect();
    assert_eq!(luns, [0, 1, 2]);
    // Human output names each target.
    let out = run(sanshim().args(["discover", &t.portal()]));
    out.expect_code(0);
    assert!(
        out.stdout.contains("iqn.2026-11.test.sanshim:disk2"),
        "{}",
        out.stdout
    );
}

#[test]
fn upper_case_target_name_is_lowered_with_a_warning() {
    let Some(t) = target() else { return };
    let upper = format!("iscsi://{}/{}/1", t.portal(), IQN.to_uppercase());
    let out = run(sanshim().args(["ls", "--json", &upper]));
    out.expect_code(0);
    assert!(
        out.stderr.to_lowercase().contains("lower"),
        "warns: {}",
        out.stderr
    );
}

#[test]
fn initiator_name_acl_and_lower_casing() {
    let Some(mut t) = Tgtd::try_start()
        .map_err(|e| eprintln!("SKIPPED: {e}"))
        .ok()
    else {
        return;
    };
    let tid = "1";
    t.tgtadm(&["--op", "new", "--mode", "target", "--tid", tid, "-T", IQN]);
    t.add_file_lun(1, 1, MIB);
    let allowed = "iqn.2026-11.test.sanshim:host1";
    t.tgtadm(&[
        "--op",
        "bind",
        "--mode",
        "target",
        "--tid",
        tid,
        "--initiator-name",
        allowed,
    ]);
    // Upper case on the command line is lower-cased (with a warning) and then matches.
    let out = run(sanshim().args([
        "ls",
        "--json",
        "--initiator-name",
        "IQN.2026-11.TEST.SANSHIM:HOST1",
        &url(&t, 1),
    ]));
    out.expect_code(0);
    assert!(out.stderr.contains("lower-cased"), "warns: {}", out.stderr);
    // Another initiator name is refused by the target's ACL.
    let out = run(sanshim().args([
        "ls",
        "--initiator-name",
        "iqn.2026-11.test.sanshim:intruder",
        &url(&t, 1),
    ]));
    out.expect_code(4);
}

#[test]
fn invalid_initiator_name_is_a_usage_error() {
    let out = run(sanshim().args([
        "ls",
        "--initiator-name",
        "not an iqn",
        "iscsi://127.0.0.1/iqn.2026-11.x:y/1",
    ]));
    out.expect_code(2);
}

#[test]
fn discovery_and_login_over_ipv6() {
    let Some(mut t) = target() else { return };
    let port = free_port();
    t.add_portal(&format!("[::1]:{port}"));
    let out = run(sanshim().args(["discover", "--json", &format!("[::1]:{port}")]));
    out.expect_code(0);
    let doc = out.json();
    let portal = &doc["portals"][0]["targets"][0]["portals"][0];
    assert_eq!(
        portal["host"], "::1",
        "bracketed IPv6 TargetAddress parsed: {doc}"
    );
    assert_eq!(portal["port"], port);
    let lun = run(sanshim().args(["ls", "--json", &format!("iscsi://[::1]:{port}/{IQN}/1")]));
    lun.expect_code(0);
    assert_eq!(lun.json()["luns"][0]["capacity_bytes"], 64 * MIB);
}
