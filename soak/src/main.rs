//! `soak`: the bounded soak of sanshim (run through `scripts/soak`).
//!
//! ```text
//!                   ┌► FaultProxy 1 ─┐
//!  workers ─► NBD ─► sanshim export ─┤                ├► tgtd ─► LUN file on tmpfs
//!  (model)          └► FaultProxy 2 ─┘   SIGKILL + restart about once a minute
//!                       ▲ cuts, freezes, bit flips, delays (the fault scheduler)
//! ```
//!
//! It starts its own tgtd (a thin-provisioned file LUN in a directory on /dev/shm, CRC32C
//! header and data digests required), two fault proxies in front of it as the two paths, and
//! `sanshim export` over both; then worker threads drive random I/O through two NBD
//! connections while the scheduler injects faults. Every read is checked against the model of
//! the device; at the end the whole device is read back over NBD, the export is stopped with
//! SIGTERM, and the backing file itself is checked. Exit status 1 when a write was lost, a
//! wrong byte was read, the export failed, or the run proved nothing (no ops, no faults).
#![forbid(unsafe_code)]

mod client;
mod export;
mod faults;
mod model;
mod report;
mod rng;
mod tgtd;
mod workload;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use sanshim_testbed::{FaultProxy, ProxyConfig};

use crate::client::Client;
use crate::export::Export;
use crate::model::BLOCK;
use crate::report::Report;
use crate::rng::Rng;
use crate::tgtd::Tgtd;
use crate::workload::Workload;

/// Command line of the soak.
#[derive(Debug, Parser)]
#[command(about = "Random I/O through `sanshim export` over two faulty paths to tgtd")]
struct Args {
    /// How long to run the workload.
    #[arg(long, default_value_t = 300)]
    seconds: u64,
    /// Seed of every random choice (default: from the clock; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The sanshim binary to export with.
    #[arg(long, default_value = "target/debug/sanshim")]
    sanshim: PathBuf,
    /// Size of the LUN in MiB.
    #[arg(long, default_value_t = 256)]
    size_mib: u64,
    /// Worker threads (requests in flight), spread over two NBD connections.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Seconds between SIGKILLs of tgtd, on average.
    #[arg(long, default_value_t = 60)]
    tgtd_kill_every: u64,
    /// Run without header and data digests (a control: a flipped bit then reaches the
    /// client, and the soak must fail).
    #[arg(long)]
    no_digests: bool,
    /// Keep the working directory (logs, backing file) even when the soak passes.
    #[arg(long)]
    keep: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(clock_seed);
    eprintln!("soak: seed {seed} ({} s)", args.seconds);
    let dir = match tempfile::Builder::new()
        .prefix("sanshim-soak.")
        .tempdir_in("/dev/shm")
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("soak: cannot create a directory in /dev/shm: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut report = Report::new(seed, args.seconds);
    if let Err(e) = soak(&args, seed, dir.path(), &mut report) {
        report.fatal.get_or_insert(e);
    }
    report.print(args.json);
    let passed = report.passed();
    if !passed {
        for log in ["faults.log", "sanshim.log", "tgtd.log"] {
            tail(&dir.path().join(log), 60);
        }
    }
    if !passed || args.keep {
        let kept = dir.keep();
        eprintln!("soak: logs and backing file kept in {}", kept.display());
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        eprintln!("soak: FAILED ({})", report.verdict());
        ExitCode::FAILURE
    }
}

/// Sets everything up, runs the workload and the faults, checks the end state.
fn soak(args: &Args, seed: u64, dir: &std::path::Path, report: &mut Report) -> Result<(), String> {
    let size = args.size_mib << 20;
    let backing = dir.join("lun1.img");
    let portal = free_portal()?;
    let digests = !args.no_digests;
    let mut tgtd = Tgtd::start(digests, portal, &backing, size, &dir.join("tgtd.log"))?;
    let forced = ProxyConfig {
        header_digest: Some(digests),
        data_digest: Some(digests),
    };
    let [Ok(p1), Ok(p2)] = [0, 1].map(|_| FaultProxy::try_start(portal, forced)) else {
        return Err("cannot start the fault proxies".into());
    };
    let proxies = [p1, p2];
    let urls: Vec<String> = proxies
        .iter()
        .map(|p| format!("iscsi://{}/{}/1", p.portal(), tgtd::IQN))
        .collect();
    let export = Export::start(&args.sanshim, &urls, digests, dir)?;
    let [Ok(c1), Ok(c2)] = [0, 1].map(|_| Client::connect(&export.sock, export::NAME)) else {
        return Err("cannot connect to the export over NBD".into());
    };
    if c1.size != size {
        return Err(format!("export size {} is not the LUN's {size}", c1.size));
    }
    report.flags = c1.flags;
    let workload = Workload::new(size / BLOCK as u64);
    let scheduler = faults::Scheduler::new(&proxies, &mut tgtd, &dir.join("faults.log"));
    run(args, seed, [&c1, &c2], &workload, scheduler, report)?;
    read_back(c1, c2, &workload, report)?;
    report.export_exit = stop(export);
    let data = std::fs::read(&backing).map_err(|e| format!("{}: {e}", backing.display()))?;
    report.backing = Some(workload.check_all(&data));
    Ok(())
}

/// Runs the workers and the fault scheduler for `args.seconds`, then takes their figures.
fn run(
    args: &Args,
    seed: u64,
    clients: [&Client; 2],
    workload: &Workload,
    mut scheduler: faults::Scheduler<'_>,
    report: &mut Report,
) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let kill_every = Duration::from_secs(args.tgtd_kill_every.max(1));
    let faults_rng = rng.fork();
    let scheduled = std::thread::scope(|s| {
        for i in 0..args.workers.max(1) {
            let (client, r) = (clients[i % 2], rng.fork());
            s.spawn(move || workload.worker(client, r, deadline));
        }
        let stopped = || workload.fatal().is_some();
        let result = scheduler.run(faults_rng, deadline, kill_every, stopped);
        if let Err(e) = &result {
            workload.fail(e.clone());
        }
        result
    });
    report.run_time = started.elapsed();
    report.faults = scheduler.injected();
    report.unfired = scheduler.unfired.clone();
    report.outages = scheduler.outages.clone();
    report.take_stats(&mut workload.stats());
    match workload.fatal() {
        Some(e) => Err(e),
        None => scheduled,
    }
}

/// Reads the whole device back over NBD and disconnects.
fn read_back(
    c1: Client,
    c2: Client,
    workload: &Workload,
    report: &mut Report,
) -> Result<(), String> {
    let started = Instant::now();
    let findings = workload.read_back(&c1, 8)?;
    report.read_back = Some((findings, started.elapsed()));
    c1.disconnect();
    c2.disconnect();
    Ok(())
}

/// Stops the export with SIGTERM (drain, flush, log out, exit 0); what went wrong, if anything.
fn stop(mut export: Export) -> Option<String> {
    if !export.is_running() {
        return Some("exited during the soak".into());
    }
    match export.stop(Duration::from_secs(60)) {
        None => Some("did not stop within 60 s of SIGTERM".into()),
        Some(s) if s.success() => None,
        Some(s) => Some(format!("exit status {s}")),
    }
}

/// Prints the last `lines` lines of the log at `path` to stderr (CI keeps nothing else).
fn tail(path: &std::path::Path, lines: usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    eprintln!("soak: the last {lines} lines of {}:", path.display());
    for l in all.iter().skip(all.len().saturating_sub(lines)) {
        eprintln!("  {l}");
    }
}

/// A free loopback port for tgtd.
fn free_portal() -> Result<SocketAddr, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr().map_err(|e| format!("bind: {e}"))
}

fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}
