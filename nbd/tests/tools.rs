//! Interoperability with real NBD clients (libnbd's nbdinfo and nbdcopy, QEMU's qemu-img and
//! qemu-io) against a server running in this process on a MemDisk. A missing tool skips the
//! test locally and fails it when CI=true.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use sanshim_blockdev::{BlockDevice, MemDisk};
use sanshim_nbd::Config;
use tokio::process::Command;

use common::{TestServer, export, get, mem_disk, put, random_bytes, tool};

const SIZE: u64 = 16 << 20;

async fn run(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}\nstdout: {stdout}\nstderr: {}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn disk_bytes(disk: &MemDisk) -> Vec<u8> {
    get(disk, 0, disk.geometry().size_bytes() as usize).await
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_nbdinfo_json_reports_size_flags_and_block_sizes() {
    let Some(nbdinfo) = tool("nbdinfo") else {
        return;
    };
    let disk = mem_disk(4096, SIZE);
    let ro = Arc::new(
        MemDisk::builder(512, 2048)
            .can_discard(false)
            .build()
            .unwrap(),
    );
    let exports = vec![export("disk", disk, false), export("ro", ro, true)];
    let srv = TestServer::start(Config::default(), exports).await;
    let json: serde_json::Value =
        serde_json::from_str(&run(&nbdinfo, &["--json", &srv.uri("disk")]).await).unwrap();
    let e = &json["exports"][0];
    assert_eq!(json["protocol"], "newstyle-fixed", "{json}");
    assert_eq!(e["export-size"], SIZE);
    assert_eq!(e["description"], "test export disk");
    for (key, want) in [
        ("is_read_only", false),
        ("can_flush", true),
        ("can_fua", true),
        ("can_trim", true),
        ("can_zero", true),
        ("can_fast_zero", true),
        ("can_multi_conn", true),
        ("can_df", true),
        ("can_cache", false),
    ] {
        assert_eq!(e[key], want, "{key} in {e}");
    }
    assert_eq!(e["block_size_minimum"], 4096);
    assert_eq!(e["block_size_preferred"], 4096);
    assert_eq!(e["block_size_maximum"], 32 << 20);

    let json: serde_json::Value =
        serde_json::from_str(&run(&nbdinfo, &["--json", &srv.uri("ro")]).await).unwrap();
    let e = &json["exports"][0];
    assert_eq!(
        (e["is_read_only"].clone(), e["can_trim"].clone()),
        (true.into(), false.into())
    );
    assert_eq!(e["block_size_minimum"], 512);
    let list = run(&nbdinfo, &["--list", "--json", &srv.uri("")]).await;
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let names: Vec<_> = list["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["export-name"])
        .collect();
    assert_eq!(names, ["disk", "ro"]);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_nbdcopy_both_directions_with_checksums() {
    let Some(nbdcopy) = tool("nbdcopy") else {
        return;
    };
    let disk = mem_disk(512, SIZE);
    let srv = TestServer::with_disk(disk.clone()).await;
    let input = srv.dir.path().join("in.img");
    let output = srv.dir.path().join("out.img");
    let data = random_bytes(SIZE as usize, 7);
    std::fs::write(&input, &data).unwrap();

    run(&nbdcopy, &[input.to_str().unwrap(), &srv.uri("disk")]).await;
    assert_eq!(sha256_hex(&disk_bytes(&disk).await), sha256_hex(&data));
    assert!(disk.stats().writes > 0);

    run(&nbdcopy, &[&srv.uri("disk"), output.to_str().unwrap()]).await;
    assert_eq!(
        sha256_hex(&std::fs::read(&output).unwrap()),
        sha256_hex(&data)
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_several_nbdcopy_with_multi_conn_at_once() {
    let Some(nbdcopy) = tool("nbdcopy") else {
        return;
    };
    let disk = mem_disk(512, SIZE);
    let data = random_bytes(SIZE as usize, 99);
    put(&*disk, 0, &data).await;
    let srv = TestServer::with_disk(disk.clone()).await;
    let uri = srv.uri("disk");
    let outs: Vec<_> = (0..3)
        .map(|i| srv.dir.path().join(format!("out{i}.img")))
        .collect();
    let copies = outs.iter().map(|out| {
        let (nbdcopy, uri) = (nbdcopy.clone(), uri.clone());
        let out = out.to_str().unwrap().to_owned();
        tokio::spawn(async move { run(&nbdcopy, &["--connections=4", &uri, &out]).await })
    });
    for c in copies.collect::<Vec<_>>() {
        c.await.unwrap();
    }
    let want = sha256_hex(&data);
    for out in &outs {
        assert_eq!(sha256_hex(&std::fs::read(out).unwrap()), want);
    }
    // Several connections writing at once, then flushing (multi-conn semantics).
    let input = srv.dir.path().join("in.img");
    let new = random_bytes(SIZE as usize, 5);
    std::fs::write(&input, &new).unwrap();
    run(
        &nbdcopy,
        &["--connections=4", "--flush", input.to_str().unwrap(), &uri],
    )
    .await;
    assert_eq!(sha256_hex(&disk_bytes(&disk).await), sha256_hex(&new));
    assert!(disk.stats().flushes > 0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_qemu_img_compare() {
    let Some(qemu_img) = tool("qemu-img") else {
        return;
    };
    let disk = mem_disk(512, SIZE);
    let data = random_bytes(SIZE as usize, 3);
    put(&*disk, 0, &data).await;
    let srv = TestServer::with_disk(disk.clone()).await;
    let file = srv.dir.path().join("same.img");
    std::fs::write(&file, &data).unwrap();
    let file = file.to_str().unwrap();
    run(
        &qemu_img,
        &["compare", "-f", "raw", "-F", "raw", file, &srv.uri("disk")],
    )
    .await;
    // One changed byte must be found.
    put(&*disk, 8, &[0x5a; 512]).await;
    let out = Command::new(&qemu_img)
        .args(["compare", "-f", "raw", "-F", "raw", file, &srv.uri("disk")])
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Content mismatch at offset 4096"),
        "{stdout}"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_qemu_io_patterns_write_zeroes_discard_fua() {
    let Some(qemu_io) = tool("qemu-io") else {
        return;
    };
    let disk = Arc::new(
        MemDisk::builder(512, SIZE / 512)
            .sparse(true)
            .build()
            .unwrap(),
    );
    let srv = TestServer::with_disk(disk.clone()).await;
    let uri = srv.uri("disk");
    let script = [
        "write -P 0xab 0 1M",
        "read -P 0xab 0 1M",
        "write -f -P 0xcd 1M 64k",
        "read -P 0xcd 1M 64k",
        "write -z 64k 64k",
        "read -P 0 64k 64k",
        "write -z -u 256k 256k",
        "read -P 0 256k 256k",
        "read -P 0xab 128k 128k",
        "discard 512k 128k",
        "flush",
        "aio_write -P 0x11 2M 64k",
        "aio_write -P 0x22 3M 64k",
        "aio_flush",
        "read -P 0x11 2M 64k",
        "read -P 0x22 3M 64k",
    ];
    let mut args = vec!["-f", "raw"];
    for cmd in &script {
        args.extend(["-c", cmd]);
    }
    args.push(&uri);
    let out = run(&qemu_io, &args).await;
    assert!(!out.contains("failed") && !out.contains("error"), "{out}");
    assert_eq!(out.matches("wrote ").count(), 6, "{out}");
    let s = disk.stats();
    assert!(s.fua_writes >= 1, "{s:?}");
    assert!(s.flushes >= 1, "{s:?}");
    assert!(s.discards >= 1, "{s:?}");
    // `write -z` sends NO_HOLE (no unmap), `write -z -u` lets the device unmap.
    assert_eq!((s.write_zeroes, s.unmapping_write_zeroes), (2, 1), "{s:?}");
    // The unmapped 256 KiB are whole 64 KiB chunks: four of the 1 MiB written are freed again,
    // and the discard frees two more.
    assert_eq!(disk.allocated_bytes(), (16 + 1 + 2 - 4 - 2) * 64 * 1024);
    let ab = disk_bytes(&disk).await;
    assert!(ab[..64 << 10].iter().all(|&b| b == 0xab));
    assert!(
        ab[1 << 20..(1 << 20) + (64 << 10)]
            .iter()
            .all(|&b| b == 0xcd)
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_tcp_listener_with_nbdcopy_and_qemu_img() {
    let (Some(nbdcopy), Some(qemu_img)) = (tool("nbdcopy"), tool("qemu-img")) else {
        return;
    };
    let disk = mem_disk(512, 4 << 20);
    let data = random_bytes(4 << 20, 11);
    put(&*disk, 0, &data).await;
    let server =
        sanshim_nbd::Server::new(Config::default(), vec![export("disk", disk, true)]).unwrap();
    let listener = "tcp::0"
        .parse::<sanshim_nbd::ListenAddr>()
        .unwrap()
        .bind()
        .await
        .unwrap();
    let uri = listener.uri("disk");
    assert!(uri.starts_with("nbd://127.0.0.1:"), "{uri}");
    let task = tokio::spawn({
        let server = server.clone();
        async move { server.serve(listener).await }
    });
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.img");
    run(&nbdcopy, &[&uri, out.to_str().unwrap()]).await;
    assert_eq!(sha256_hex(&std::fs::read(&out).unwrap()), sha256_hex(&data));
    let info = run(&qemu_img, &["info", "--output=json", &uri]).await;
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["virtual-size"], 4 << 20);
    server.shutdown();
    task.await.unwrap();
}

/// Runs a script with /usr/bin/python3 and libnbd (`import nbd`); `None` (skipped) when the
/// module is missing, unless under CI.
async fn python_libnbd(script: &str, args: &[&str]) -> Option<String> {
    // The distribution's python3, where python3-libnbd is installed (not a pyenv shim).
    let python = std::path::PathBuf::from("/usr/bin/python3");
    let probe = Command::new(&python)
        .args(["-c", "import nbd"])
        .output()
        .await
        .unwrap();
    if !probe.status.success() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
            "python3-libnbd is required under CI"
        );
        eprintln!("skipping: python3-libnbd not installed");
        return None;
    }
    let mut all = vec!["-c", script];
    all.extend_from_slice(args);
    Some(run(&python, &all).await)
}

/// libnbd with `set_request_block_size(False)` (a client that does not agree to the block
/// sizes) writes, zeroes, trims and reads at byte granularity; the script keeps a model of
/// the export, checks each read against it and prints its SHA-256, which the device's content
/// must match.
const NBD_BYTES: &str = include_str!("../../tests/tools/nbd_bytes.py");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_libnbd_without_block_sizes_writes_bytes_on_a_4k_export() {
    let disk = mem_disk(4096, 1 << 20);
    let srv = TestServer::with_disk(disk.clone()).await;
    let Some(out) = python_libnbd(NBD_BYTES, &[&srv.uri("disk")]).await else {
        return;
    };
    assert_eq!(out.trim(), sha256_hex(&disk_bytes(&disk).await));
    let s = srv.server.stats();
    assert!(s.read_modify_writes >= 8 && s.unaligned_reads >= 7, "{s:?}");
    srv.stop().await;
}

/// qemu-io and nbdcopy at 512-byte granularity on a 4 KiB-block export: QEMU asks for the
/// block sizes and aligns its requests itself; nbdcopy copies a whole image. The device holds
/// exactly what was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_qemu_io_and_nbdcopy_at_512_bytes_on_a_4k_export() {
    let (Some(qemu_io), Some(nbdcopy)) = (tool("qemu-io"), tool("nbdcopy")) else {
        return;
    };
    let disk = mem_disk(4096, 4 << 20);
    let srv = TestServer::with_disk(disk.clone()).await;
    let input = srv.dir.path().join("in.img");
    let mut image = random_bytes(4 << 20, 21);
    std::fs::write(&input, &image).unwrap();
    run(&nbdcopy, &[input.to_str().unwrap(), &srv.uri("disk")]).await;
    let script = [
        "write -P 0x11 512 512",
        "write -P 0x22 1536 2560",
        "write -z 4608 1024",
        "read -P 0x11 512 512",
        "read -P 0x22 1536 2560",
        "read -P 0 4608 1024",
    ];
    let mut args = vec!["-f", "raw"];
    for cmd in &script {
        args.extend(["-c", cmd]);
    }
    let uri = srv.uri("disk");
    args.push(&uri);
    let out = run(&qemu_io, &args).await;
    assert!(!out.contains("failed") && !out.contains("error"), "{out}");
    image[512..1024].fill(0x11);
    image[1536..4096].fill(0x22);
    image[4608..5632].fill(0);
    assert_eq!(sha256_hex(&disk_bytes(&disk).await), sha256_hex(&image));
    let output = srv.dir.path().join("out.img");
    run(&nbdcopy, &[&uri, output.to_str().unwrap()]).await;
    assert_eq!(
        sha256_hex(&std::fs::read(&output).unwrap()),
        sha256_hex(&image)
    );
    srv.stop().await;
}

/// A read-only export seen by real clients: nbdinfo reports it read-only, and a write from
/// libnbd (its own read-only check turned off, so the request goes on the wire) fails with
/// EPERM; the device never sees a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_read_only_export_refuses_libnbd_writes_with_eperm() {
    let Some(nbdinfo) = tool("nbdinfo") else {
        return;
    };
    let disk = mem_disk(512, 1 << 20);
    let srv = TestServer::start(Config::default(), vec![export("disk", disk.clone(), true)]).await;
    let json: serde_json::Value =
        serde_json::from_str(&run(&nbdinfo, &["--json", &srv.uri("disk")]).await).unwrap();
    assert_eq!(json["exports"][0]["is_read_only"], true, "{json}");
    let script = r#"
import errno, sys, nbd
h = nbd.NBD()
h.set_strict_mode(0)
h.connect_uri(sys.argv[1])
assert h.is_read_only()
for name, op in [("write", lambda: h.pwrite(b"x" * 512, 0)),
                 ("zero", lambda: h.zero(512, 0)),
                 ("trim", lambda: h.trim(512, 0))]:
    try:
        op()
        print(name, "succeeded")
    except nbd.Error as e:
        # libnbd 1.14 gives the number as the second argument (its .errno is the name).
        print(name, "EPERM" if e.args[1:] == (errno.EPERM,) else e.args)
h.shutdown()
"#;
    let Some(out) = python_libnbd(script, &[&srv.uri("disk")]).await else {
        return;
    };
    assert_eq!(out, "write EPERM\nzero EPERM\ntrim EPERM\n");
    let s = disk.stats();
    assert_eq!((s.writes, s.write_zeroes, s.discards), (0, 0, 0), "{s:?}");
    srv.stop().await;
}

/// At the connection limit, real clients are refused: QEMU shows the server's words
/// (libnbd reports only the error code).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_clients_over_the_connection_limit_are_told_why() {
    let (Some(nbdinfo), Some(qemu_img)) = (tool("nbdinfo"), tool("qemu-img")) else {
        return;
    };
    let config = Config {
        max_connections: 1,
        ..Config::default()
    };
    let srv = TestServer::start(config, vec![export("disk", mem_disk(512, 1 << 20), false)]).await;
    let held = common::Client::go(common::connect(&srv.sock).await, "disk", false).await;
    let out = Command::new(&qemu_img)
        .args(["info", &srv.uri("disk")])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "qemu-img succeeded over the limit");
    assert!(stderr.contains("too many connections"), "{stderr}");
    let out = Command::new(&nbdinfo)
        .arg(srv.uri("disk"))
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "nbdinfo succeeded over the limit");
    assert_eq!(srv.server.stats().refused_connections, 2);
    drop(held);
    srv.stop().await;
}
