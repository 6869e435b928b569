//! `sanshim export` against a real tgtd LUN, read and written by real NBD clients: libnbd's
//! `nbdinfo` and `nbdcopy` (also several at once, each with several connections), QEMU's
//! `qemu-img compare` and `qemu-io` (patterns, `write -z`, `discard`). The target's backing
//! file is the reference: after SIGTERM (exit 0) it must hold exactly what was written.
//! A missing tool skips the test locally and fails it under CI=true.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Instant;

use common::data::{random_bytes, sha256_file, sha256_hex};
use common::export::Export;
use common::tgtd::Tgtd;

const IQN: &str = "iqn.2026-11.test.sanshim:export";
const SIZE: usize = 64 << 20;
const MIB: usize = 1 << 20;

#[test]
fn export_serves_nbd_clients_and_flushes_on_sigterm() {
    let nbdinfo = require_tool_or_skip!("nbdinfo");
    let nbdcopy = require_tool_or_skip!("nbdcopy");
    let qemu_img = require_tool_or_skip!("qemu-img");
    let qemu_io = require_tool_or_skip!("qemu-io");
    let Some((tgtd, backing)) = target(false) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let export = start_export(&url(&tgtd, 1), dir.path(), &[]);
    let uri = export.uri.clone();
    assert_eq!(
        uri,
        format!(
            "nbd+unix:///export-lun1?socket={}",
            dir.path().join("nbd.sock").display()
        )
    );

    let info = output(Command::new(&nbdinfo).args(["--json", &uri]));
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    let e = &info["exports"][0];
    assert_eq!(e["export-size"], SIZE as u64, "{info}");
    assert_eq!(e["is_read_only"], false, "{e}");
    assert_eq!(e["can_flush"], true, "{e}");
    assert_eq!(e["can_multi_conn"], true, "{e}");
    assert_eq!(e["block_size_minimum"], 512, "{e}");
    let preferred = e["block_size_preferred"].as_u64().unwrap();
    let maximum = e["block_size_maximum"].as_u64().unwrap();
    assert!(
        preferred.is_power_of_two() && (512..=maximum).contains(&preferred),
        "{e}"
    );

    // Write the whole LU, read it back, compare it three ways.
    let mut image = random_bytes(SIZE, 7);
    let src = dir.path().join("src.img");
    std::fs::write(&src, &image).unwrap();
    let started = Instant::now();
    output(Command::new(&nbdcopy).arg(&src).arg(&uri));
    eprintln!("nbdcopy write of 64 MiB took {:?}", started.elapsed());
    let back = dir.path().join("back.img");
    output(Command::new(&nbdcopy).arg(&uri).arg(&back));
    assert_eq!(sha256_file(&back), sha256_hex(&image), "nbdcopy read");
    output(
        Command::new(&qemu_img)
            .args(["compare", "-f", "raw", "-F", "raw"])
            .arg(&src)
            .arg(&uri),
    );

    // Multi-conn: two nbdcopy processes at once, four connections each.
    let copies: Vec<(PathBuf, Child)> = (0..2)
        .map(|i| {
            let out = dir.path().join(format!("multi{i}.img"));
            let child = Command::new(&nbdcopy)
                .args(["--connections=4", "--requests=16", &uri])
                .arg(&out)
                .spawn()
                .unwrap();
            (out, child)
        })
        .collect();
    for (out, mut child) in copies {
        assert!(child.wait().unwrap().success(), "concurrent nbdcopy");
        assert_eq!(sha256_file(&out), sha256_hex(&image), "{}", out.display());
    }

    // qemu-io patterns, write-zeroes and discard; the model follows along.
    let script = [
        "write -P 0xab 1M 1M",
        "write -f -P 0xcd 5M 64k",
        "write -z 2M 1M",
        "write -z -u 3M 512k",
        "discard 10M 1M",
        "flush",
        "read -P 0xab 1M 1M",
        "read -P 0xcd 5M 64k",
        "read -P 0 2M 1M",
        "read -P 0 3M 512k",
    ];
    let mut args = vec!["-f", "raw"];
    for c in &script {
        args.extend(["-c", c]);
    }
    args.push(&uri);
    let out = output(Command::new(&qemu_io).args(&args));
    assert!(!out.contains("failed") && !out.contains("error"), "{out}");
    assert_eq!(out.matches("wrote ").count(), 4, "{out}");
    image[MIB..2 * MIB].fill(0xab);
    image[5 * MIB..5 * MIB + 64 * 1024].fill(0xcd);
    image[2 * MIB..3 * MIB + MIB / 2].fill(0);

    let status = export.stop();
    assert_eq!(status.code(), Some(0), "sanshim export exit status");
    assert!(!dir.path().join("nbd.sock").exists(), "socket left behind");
    let mut on_disk = std::fs::read(&backing).unwrap();
    // What a discard leaves is up to the target: take the model's bytes for that range.
    on_disk[10 * MIB..11 * MIB].copy_from_slice(&image[10 * MIB..11 * MIB]);
    assert!(
        on_disk == image,
        "the backing file differs from what was written"
    );
}

#[test]
fn export_read_only_refuses_writes() {
    let nbdinfo = require_tool_or_skip!("nbdinfo");
    let qemu_io = require_tool_or_skip!("qemu-io");
    let Some((mut tgtd, backing)) = target(true) else {
        return;
    };
    tgtd.set_lun_params(1, 2, "readonly=1");
    let dir = tempfile::tempdir().unwrap();
    // LUN 1 read-only by request, LUN 2 because the target write-protects it.
    for (lun, flags) in [(1, &["--read-only"][..]), (2, &[][..])] {
        let sub = dir.path().join(format!("lun{lun}"));
        let export = start_export(&url(&tgtd, lun), &sub, flags);
        let info = output(Command::new(&nbdinfo).args(["--json", &export.uri]));
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(
            info["exports"][0]["is_read_only"], true,
            "LUN {lun}: {info}"
        );
        let out = Command::new(&qemu_io)
            .args(["-f", "raw", "-c", "write -P 0x55 0 4k", &export.uri])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && ["Operation not permitted", "Permission denied", "read-only"]
                    .iter()
                    .any(|m| text.contains(m)),
            "LUN {lun}: qemu-io write on a read-only export: {text}"
        );
        assert_eq!(export.stop().code(), Some(0));
    }
    let data = std::fs::read(&backing).unwrap();
    assert!(
        data[..4096].iter().all(|&b| b == 0),
        "a write reached LUN 1"
    );
}

#[test]
fn export_checks_that_paths_lead_to_one_lu() {
    let Some((tgtd, _)) = target(true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Two sessions to the same LU: accepted, the first path serves.
    let export = start_export(&url(&tgtd, 1), dir.path(), &[&url(&tgtd, 1)]);
    assert_eq!(export.stop().code(), Some(0));
    // Two different LUs: refused, naming both identities.
    let out = common::run(
        common::sanshim()
            .args(["export", &url(&tgtd, 1), &url(&tgtd, 2), "--listen"])
            .arg(format!("unix:{}", dir.path().join("x.sock").display())),
    );
    out.expect_code(1);
    assert!(
        out.stderr.contains("path 2") && out.stderr.contains("path 1"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.is_empty(),
        "nothing may be served: {}",
        out.stdout
    );
}

/// Clients at 512-byte and byte granularity on a 4 KiB-sector LUN (tgtd `--blocksize 4096`)
/// and on a 512-byte one: nbdcopy writes an image, qemu-io rewrites parts of it in 512-byte
/// requests (QEMU asks for the block sizes and aligns to them itself), then libnbd, not
/// asking for block sizes, writes, zeroes and reads single bytes and odd ranges
/// (`tests/tools/nbd_bytes.py`), which sanshim serves by read-modify-write. What nbdcopy reads
/// back and, after SIGTERM, the backing file must equal the model.
#[test]
fn export_serves_unaligned_clients_on_4k_and_512_byte_luns() {
    const LUN_SIZE: usize = 16 << 20;
    let nbdinfo = require_tool_or_skip!("nbdinfo");
    let nbdcopy = require_tool_or_skip!("nbdcopy");
    let qemu_io = require_tool_or_skip!("qemu-io");
    // The distribution's python3, where python3-libnbd is installed (not a pyenv shim).
    let python = PathBuf::from("/usr/bin/python3");
    if !Command::new(&python)
        .args(["-c", "import nbd"])
        .status()
        .unwrap()
        .success()
    {
        assert!(!common::in_ci(), "python3-libnbd is required under CI");
        eprintln!("SKIPPED: python3-libnbd is not installed");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/nbd_bytes.py");
    for block_size in [4096u32, 512] {
        let mut tgtd = match Tgtd::try_start() {
            Ok(t) => t,
            Err(reason) => {
                eprintln!("SKIPPED: {reason}");
                return;
            }
        };
        tgtd.add_target(1, IQN);
        let backing = tgtd.add_file_lun_with_block_size(1, 1, LUN_SIZE as u64, Some(block_size));
        let dir = tempfile::tempdir().unwrap();
        let export = start_export(&url(&tgtd, 1), dir.path(), &[]);
        let uri = export.uri.clone();
        let info = output(Command::new(&nbdinfo).args(["--json", &uri]));
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        let e = &info["exports"][0];
        assert_eq!(e["block_size_minimum"], block_size, "{e}");

        let mut image = random_bytes(LUN_SIZE, u64::from(block_size));
        let src = dir.path().join("src.img");
        std::fs::write(&src, &image).unwrap();
        output(Command::new(&nbdcopy).arg(&src).arg(&uri));
        let script_512 = [
            "write -P 0x11 512 512",
            "write -P 0x22 1536 2560",
            "write -f -P 0x33 8704 1024",
            "write -z 4608 1024",
            "read -P 0x11 512 512",
            "read -P 0x22 1536 2560",
            "read -P 0 4608 1024",
        ];
        let mut args = vec!["-f", "raw"];
        for c in &script_512 {
            args.extend(["-c", c]);
        }
        args.push(&uri);
        let out = output(Command::new(&qemu_io).args(&args));
        assert!(!out.contains("failed") && !out.contains("error"), "{out}");
        image[512..1024].fill(0x11);
        image[1536..4096].fill(0x22);
        image[8704..9728].fill(0x33);
        image[4608..5632].fill(0);
        let back = dir.path().join("back.img");
        output(Command::new(&nbdcopy).arg(&uri).arg(&back));
        assert_eq!(
            sha256_file(&back),
            sha256_hex(&image),
            "{block_size}: qemu-io"
        );

        // Trims are left out: what a trim leaves is up to the target.
        let model = output(Command::new(&python).arg(&script).args([&uri, "--no-trim"]));
        let model = model.trim().to_owned();
        std::fs::remove_file(&back).unwrap();
        output(Command::new(&nbdcopy).arg(&uri).arg(&back));
        assert_eq!(sha256_file(&back), model, "{block_size}: libnbd bytes");
        assert_eq!(export.stop().code(), Some(0));
        assert_eq!(sha256_file(&backing), model, "{block_size}: backing file");
    }
}

/// A tgtd with target [`IQN`]: LUN 1 of [`SIZE`] and, with `two`, a second LUN 2 of 1 MiB.
/// Returns LUN 1's backing file; `None` when tgtd is not installed (outside CI).
fn target(two: bool) -> Option<(Tgtd, PathBuf)> {
    let mut tgtd = match Tgtd::try_start() {
        Ok(t) => t,
        Err(reason) => {
            eprintln!("SKIPPED: {reason}");
            return None;
        }
    };
    tgtd.add_target(1, IQN);
    let backing = tgtd.add_file_lun(1, 1, SIZE as u64);
    if two {
        tgtd.add_file_lun(1, 2, MIB as u64);
    }
    Some((tgtd, backing))
}

fn url(tgtd: &Tgtd, lun: u32) -> String {
    format!("iscsi://{}/{IQN}/{lun}", tgtd.portal())
}

/// Starts the export of `url` (plus `extra` arguments) on a unix socket `DIR/nbd.sock` and
/// waits for its URI line.
fn start_export(url: &str, dir: &Path, extra: &[&str]) -> Export {
    std::fs::create_dir_all(dir).unwrap();
    let socket = format!("unix:{}", dir.join("nbd.sock").display());
    let args = [url]
        .into_iter()
        .chain(extra.iter().copied())
        .chain(["--listen", &socket]);
    Export::start(args, &dir.join("export.log"))
}

/// Runs a command, panicking with its output unless it succeeds; returns stdout.
fn output(cmd: &mut Command) -> String {
    let out = common::run(cmd);
    out.expect_code(0);
    out.stdout
}
