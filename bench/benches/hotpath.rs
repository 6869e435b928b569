//! The steady-state cost of one NBD read through the whole stack, counted rather than timed:
//! NBD client ─► `nbd::Server` ─► `ScsiDisk` ─► session driver ─► TCP ─► fake iSCSI target.
//!
//! A counting global allocator (dhat's, in testing mode) counts the allocations of this
//! process while a client reads the LUN in 128 KiB requests, 8 in flight. The target runs in
//! a child process, so that only sanshim's allocations count; the client on the main thread
//! allocates nothing once connected. The server and the session report the payload bytes they
//! copied in userspace (outside the kernel's socket read). Prints per request: allocations,
//! bytes allocated, payload bytes copied; exits 1 when a goal of the session engine is missed
//! (no payload copy with digests off, at most 2 allocations).
//!
//! `cargo bench -p sanshim-bench --bench hotpath [-- REQUESTS] [--digests]`

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use sanshim_initiator::disk::{DiskOptions, ScsiDisk};
use sanshim_initiator::login::{DigestPref, LoginConfig};
use sanshim_initiator::portal::Portal;
use sanshim_initiator::transport::LoginPolicy;
use sanshim_initiator::wire::Isid;
use sanshim_nbd::{Config, Export, ListenAddr, Server};
use sanshim_testbed::{Digest, FakeTarget, TargetConfig};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const IQN: &str = "iqn.2026-12.bench.sanshim:hotpath";
const REQUEST: usize = 128 << 10;
const DEPTH: usize = 8;
const WARMUP: usize = 2000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let digests = args.iter().any(|a| a == "--digests");
    if args.iter().any(|a| a == "--serve-target") {
        return serve_target(digests);
    }
    let requests = args
        .iter()
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(20_000);
    let (mut child, port) = start_target(digests);
    let _profiler = dhat::Profiler::builder().testing().build();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile_dir();
    let sock = dir.join("hotpath.sock");
    let (server, disk_stats) = rt.block_on(async {
        let pref = if digests {
            DigestPref::Crc32c
        } else {
            DigestPref::None
        };
        let mut login = LoginConfig::normal(
            "iqn.2026-12.bench.sanshim:i",
            IQN,
            Isid::random_qualifier(7),
        );
        login.proposal.header_digest = pref;
        login.proposal.data_digest = pref;
        let portal = Portal {
            host: "127.0.0.1".into(),
            port,
        };
        let options = DiskOptions {
            lun: 1,
            ..DiskOptions::default()
        };
        let disk = ScsiDisk::open(portal, login, LoginPolicy::default(), options)
            .await
            .expect("open the LUN");
        let session = disk.session().clone();
        let export = Export {
            name: "lun".into(),
            description: String::new(),
            device: Arc::new(disk),
            read_only: true,
        };
        let server = Server::new(Config::default(), vec![export]).expect("server");
        let listener = ListenAddr::Unix(sock.clone()).bind().await.expect("bind");
        let serving = server.clone();
        tokio::spawn(async move { serving.serve(listener).await });
        (server, session)
    });
    let mut client = Client::connect(&sock);
    client.run(WARMUP);
    let before = dhat::HeapStats::get();
    let (nbd0, disk0) = (server.stats(), disk_stats.stats());
    let start = Instant::now();
    client.run(requests);
    let elapsed = start.elapsed();
    let n = requests as f64;
    let after = dhat::HeapStats::get();
    let allocs = (after.total_blocks - before.total_blocks) as f64 / n;
    let alloc_bytes = (after.total_bytes - before.total_bytes) as f64 / n;
    let (nbd1, disk1) = (server.stats(), disk_stats.stats());
    let nbd_copied = (nbd1.copied_bytes - nbd0.copied_bytes) as f64 / n;
    let iscsi_copied = (disk1.copied_bytes - disk0.copied_bytes) as f64 / n;
    let landed = (disk1.landed_bytes - disk0.landed_bytes) as f64 / n;
    println!(
        "hotpath: {requests} NBD reads of 128 KiB, {DEPTH} in flight, digests {}",
        if digests { "CRC32C" } else { "off" }
    );
    println!("  allocations per request      {allocs:.3} ({alloc_bytes:.0} bytes)");
    println!(
        "  payload copied per request   {:.0} bytes (NBD {nbd_copied:.0}, iSCSI {iscsi_copied:.0})",
        nbd_copied + iscsi_copied
    );
    println!("  landed by the kernel         {landed:.0} bytes per request");
    println!(
        "  tasks per request            1 (the NBD request task; the session driver is shared)"
    );
    println!(
        "  channel hops per request     3 (to the driver, back through a pooled reply slot, to the NBD writer)"
    );
    println!(
        "  throughput                   {:.0} MiB/s over {:.2} s",
        n * REQUEST as f64 / f64::from(1 << 20) / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    let mut failed = false;
    if nbd_copied + iscsi_copied > 0.0 {
        println!("  GOAL MISSED: payload bytes were copied in userspace");
        failed = true;
    }
    if (landed as usize) < REQUEST {
        println!("  GOAL MISSED: the payload did not land straight in the request's buffer");
        failed = true;
    }
    // Amortised growth of the runtime's own queues may add one allocation in thousands.
    if allocs > 2.01 {
        println!("  GOAL MISSED: more than 2 allocations per request");
        failed = true;
    }
    drop(client);
    rt.block_on(async { server.shutdown() });
    drop(rt);
    std::fs::remove_dir_all(&dir).ok();
    child.kill().ok();
    child.wait().ok();
    if failed {
        std::process::exit(1);
    }
}

/// Runs the fake target in this process until stdin closes, after printing its port.
fn serve_target(digests: bool) {
    let digest = if digests {
        Digest::Crc32c
    } else {
        Digest::None
    };
    let target = FakeTarget::start(TargetConfig {
        iqn: IQN.to_owned(),
        block_count: (256 << 20) / 512,
        header_digest: digest,
        data_digest: digest,
        ..TargetConfig::default()
    });
    println!("{}", target.port());
    std::io::stdout().flush().ok();
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink).ok();
}

/// Starts this bench as the target in a child process; returns it and its port.
fn start_target(digests: bool) -> (std::process::Child, u16) {
    let exe = std::env::current_exe().expect("own path");
    let mut cmd = Command::new(exe);
    cmd.arg("--serve-target")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if digests {
        cmd.arg("--digests");
    }
    let mut child = cmd.spawn().expect("start the target");
    let stdout = child.stdout.take().expect("target stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("target port");
    let port = line.trim().parse().expect("a port number");
    (child, port)
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sanshim-hotpath-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A minimal blocking NBD client (fixed newstyle, NBD_OPT_EXPORT_NAME, simple replies).
struct Client {
    sock: UnixStream,
    size: u64,
    next: u64,
    buf: Vec<u8>,
}

impl Client {
    fn connect(path: &std::path::Path) -> Client {
        let mut sock = UnixStream::connect(path).expect("connect to the export");
        let mut greeting = [0u8; 18];
        sock.read_exact(&mut greeting).expect("greeting");
        assert_eq!(&greeting[..8], b"NBDMAGIC");
        // Client flags: FIXED_NEWSTYLE | NO_ZEROES.
        sock.write_all(&3u32.to_be_bytes()).expect("flags");
        let name = b"lun";
        let mut option = Vec::new();
        option.extend_from_slice(b"IHAVEOPT");
        option.extend_from_slice(&1u32.to_be_bytes());
        option.extend_from_slice(&(name.len() as u32).to_be_bytes());
        option.extend_from_slice(name);
        sock.write_all(&option).expect("EXPORT_NAME");
        let mut export = [0u8; 10];
        sock.read_exact(&mut export).expect("export data");
        let size = u64::from_be_bytes(export[..8].try_into().expect("8 bytes"));
        Client {
            sock,
            size,
            next: 0,
            buf: vec![0u8; REQUEST],
        }
    }

    /// Reads `count` requests, `DEPTH` in flight, sequentially through the LUN.
    fn run(&mut self, count: usize) {
        let mut sent = 0;
        let mut done = 0;
        while done < count {
            while sent < count && sent - done < DEPTH {
                self.send();
                sent += 1;
            }
            self.receive();
            done += 1;
        }
    }

    fn send(&mut self) {
        let offset = self.next % (self.size - REQUEST as u64);
        self.next += REQUEST as u64;
        let mut req = [0u8; 28];
        req[..4].copy_from_slice(&0x2560_9513u32.to_be_bytes());
        req[8..16].copy_from_slice(&offset.to_be_bytes());
        req[16..24].copy_from_slice(&offset.to_be_bytes());
        req[24..28].copy_from_slice(&(REQUEST as u32).to_be_bytes());
        self.sock.write_all(&req).expect("request");
    }

    fn receive(&mut self) {
        let mut reply = [0u8; 16];
        self.sock.read_exact(&mut reply).expect("reply");
        assert_eq!(&reply[..4], &0x6744_6698u32.to_be_bytes(), "simple reply");
        assert_eq!(&reply[4..8], &[0; 4], "read succeeded");
        self.sock.read_exact(&mut self.buf).expect("data");
    }
}
