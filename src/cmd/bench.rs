//! `sanshim bench URL... [--rw read|write|randread|randwrite] [--bs SIZE] [--qd N]
//! [--time SECS | --size BYTES] [--verify] [--json]` (shared/DESIGN.md "Command line
//! contract"): drive a LUN through the same `ScsiDisk` that `export` serves, and report
//! throughput, IOPS, latency percentiles and CPU time.
//!
//! ```text
//!  URL 1 ── open_disk ──► ScsiDisk ──► sanshim_bench::run (qd tasks) ──► Report ──► stdout
//!  URL 2.. ── open_disk ─► identity checked against path 1, then logged out (no multipath yet)
//!                                         └─► progress line on stderr once a second
//! ```
//!
//! With `--verify` the run writes stamped blocks, reads every one back and exits 6 naming the
//! lowest LBA that came back wrong; with `--time` it repeats such passes (each with a new tag)
//! until the time is up. Without it a read benchmark opens the LUN read-only.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, ValueEnum};
use sanshim_bench::{
    BenchError, BenchOptions, Bound, PhaseReport, ReadWrite, Report, format_size, parse_size,
};
use sanshim_initiator::disk::explain;
use sanshim_initiator::url::IscsiUrl;
use sanshim_mpath::{Multipath, PathStats};

use serde_json::{Value, json};
use tracing::warn;

use super::session::{Context, DiskArgs, PathArgs, parse_url, redact};
use crate::cli::Global;
use crate::exit::{self, Failure};

/// Arguments of `sanshim bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// `iscsi://[USER[%SECRET]@]HOST[:PORT]/TARGET-IQN/LUN`; several URLs are paths to the same
    /// LU (checked by identity), driven together as one multipath device.
    #[arg(required = true, value_name = "URL")]
    pub urls: Vec<String>,
    /// Access pattern. Writes destroy the LUN's contents.
    #[arg(long, value_enum, default_value_t = RwArg::Read)]
    pub rw: RwArg,
    /// Bytes per request: 512, 4k, 128K, 1m, 8MiB (a multiple of the LUN's block size).
    #[arg(long, value_name = "SIZE", default_value = "4k", value_parser = size_arg)]
    pub bs: u64,
    /// Requests kept in flight.
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub qd: u32,
    /// Run for this many seconds (default 10).
    #[arg(long, value_name = "SECS", value_parser = secs_arg, conflicts_with = "size")]
    pub time: Option<Duration>,
    /// Transfer this many bytes (rounded up to whole requests) instead of running for a time.
    #[arg(long, value_name = "BYTES", value_parser = size_arg)]
    pub size: Option<u64>,
    /// Write blocks carrying their LBA and a run tag, read every one back and check it;
    /// exit 6 naming the first bad LBA. Makes any --rw a write-then-read run; with --time,
    /// passes over the LUN repeat (each with a new tag) until the time is up.
    #[arg(long)]
    pub verify: bool,
    /// Print one JSON document on stdout instead of the summary line.
    #[arg(long)]
    pub json: bool,
    /// Multipath settings.
    #[command(flatten)]
    pub paths: PathArgs,
    /// Session and command settings.
    #[command(flatten)]
    pub disk: DiskArgs,
}

/// `--rw` values.
#[derive(Clone, Copy, Debug, Eq, PartialEq, ValueEnum)]
pub enum RwArg {
    /// Sequential reads.
    #[value(name = "read")]
    Read,
    /// Sequential writes.
    #[value(name = "write")]
    Write,
    /// Random reads.
    #[value(name = "randread")]
    RandRead,
    /// Random writes.
    #[value(name = "randwrite")]
    RandWrite,
}

impl From<RwArg> for ReadWrite {
    fn from(rw: RwArg) -> ReadWrite {
        match rw {
            RwArg::Read => ReadWrite::Read,
            RwArg::Write => ReadWrite::Write,
            RwArg::RandRead => ReadWrite::RandRead,
            RwArg::RandWrite => ReadWrite::RandWrite,
        }
    }
}

/// Runs `sanshim bench`.
///
/// # Errors
/// Exit 2 for options the LUN cannot take, 3/4 when no login succeeds, 5 when a request
/// fails, 6 on a verification mismatch.
pub fn run(global: &Global, args: BenchArgs) -> Result<ExitCode, Failure> {
    let ctx = Context::new(global)?;
    let mut urls = Vec::new();
    for s in &args.urls {
        urls.push(parse_url(s, false)?.0);
    }
    let rw = ReadWrite::from(args.rw);
    let mut options = BenchOptions::new(
        rw,
        args.bs,
        args.qd as usize,
        match (args.size, args.time) {
            (Some(bytes), _) => Bound::Bytes(bytes),
            (None, time) => Bound::Time(time.unwrap_or(DEFAULT_TIME)),
        },
    );
    options.verify = args.verify;
    let mut disk_options = args.disk.options(!rw.is_write() && !args.verify);
    // A failure to act on at the array ends the run and is said by its exit line.
    disk_options.log_conditions = false;
    // The session's window need not limit --qd; requests beyond it wait in the disk's queue.
    if args.disk.queue_depth.is_none() {
        disk_options.queue_depth = disk_options.queue_depth.max(args.qd).min(MAX_SESSION_DEPTH);
    }
    let quiet = global.quiet;
    let rt = super::runtime(global)?;
    rt.block_on(async {
        let disk = Arc::new(
            ctx.open_paths(
                &args.urls,
                &urls,
                &disk_options,
                args.paths.config(args.disk.replacement_timeout),
                "benchmark",
            )
            .await?,
        );
        let before = disk.stats();
        let started = std::time::Instant::now();
        let result = sanshim_bench::run(Arc::clone(&disk), &options, |p| {
            if !quiet {
                eprintln!("{p}");
            }
        })
        .await;
        let paths = path_shares(&before, &disk.stats(), started.elapsed());
        let closed = close(disk).await;
        let report = result.map_err(|e| bench_failure(e, &urls))?;
        closed?;
        if args.json {
            let mut doc = to_json(&report, &args.urls);
            doc["paths"] = Value::Array(paths.iter().map(|p| p.json()).collect());
            println!("{doc}");
        } else {
            println!("{}", summary(&report));
            if paths.len() > 1 {
                for p in &paths {
                    println!("  {}", p.line());
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// What one path carried during the run.
struct PathShare {
    stats: PathStats,
    ops: u64,
    bytes: u64,
    mib_per_s: f64,
}

/// Each path's share of the run: its counters' growth over `elapsed`.
fn path_shares(before: &[PathStats], after: &[PathStats], elapsed: Duration) -> Vec<PathShare> {
    let secs = elapsed.as_secs_f64().max(1e-9);
    after
        .iter()
        .map(|a| {
            let b = before.iter().find(|b| b.number == a.number);
            let ops = a.ops - b.map_or(0, |b| b.ops);
            let bytes = a.bytes - b.map_or(0, |b| b.bytes);
            PathShare {
                stats: a.clone(),
                ops,
                bytes,
                mib_per_s: bytes as f64 / f64::from(1 << 20) / secs,
            }
        })
        .collect()
}

impl PathShare {
    fn line(&self) -> String {
        let s = &self.stats;
        format!(
            "path {} {}: {:.1} MiB/s, {} ops, {} errors, {} failovers, {}",
            s.number,
            s.name,
            self.mib_per_s,
            self.ops,
            s.errors,
            s.failovers,
            s.state.name()
        )
    }

    fn json(&self) -> Value {
        let s = &self.stats;
        json!({
            "path": s.number,
            "name": s.name,
            "state": s.state.name(),
            "ops": self.ops,
            "bytes": self.bytes,
            "mib_per_s": round(self.mib_per_s),
            "errors": s.errors,
            "failovers": s.failovers,
            "reconnects": s.reconnects,
            "syncs": s.syncs,
            "state_changes": s.state_changes,
            "reason": s.reason,
        })
    }
}

/// Default `--time`.
const DEFAULT_TIME: Duration = Duration::from_secs(10);
/// The largest [`DiskOptions::queue_depth`] a session takes.
const MAX_SESSION_DEPTH: u32 = 512;

/// Logs out; [`Multipath::close`] first flushes the cache of a writable disk (after the
/// measurement, not part of it).
async fn close(disk: Arc<Multipath>) -> Result<(), Failure> {
    match Arc::try_unwrap(disk) {
        Ok(disk) => disk.close().await.map_err(|e| {
            Failure::new(
                exit::SCSI,
                anyhow!("SYNCHRONIZE CACHE or logout after the run failed: {e}"),
            )
        }),
        Err(_) => {
            warn!("the device is still in use: exiting without a logout");
            Ok(())
        }
    }
}

/// Maps a failed run to the exit codes of the contract; a failure the user must act on at
/// the array (LU gone, out of space) is said first, naming the LU of `urls`.
fn bench_failure(e: BenchError, urls: &[IscsiUrl]) -> Failure {
    let code = match &e {
        BenchError::Options(_) => exit::USAGE,
        BenchError::Mismatch { .. } => exit::VERIFY_MISMATCH,
        BenchError::Io { error, .. } if error.is_path_failure() => exit::UNREACHABLE,
        BenchError::Io { .. } => exit::SCSI,
        _ => exit::OTHER,
    };
    let explained = match (&e, urls.first()) {
        (BenchError::Io { error, .. }, Some(url)) => {
            let mut portals: Vec<String> = Vec::new();
            for portal in urls.iter().map(|u| u.portal().to_string()) {
                if !portals.contains(&portal) {
                    portals.push(portal);
                }
            }
            explain(
                error.kind(),
                url.lun(),
                url.target().as_str(),
                &portals.join(", "),
            )
        }
        _ => None,
    };
    match explained {
        Some(line) => Failure::new(code, anyhow!("{line} ({e})")),
        None => Failure::new(code, e),
    }
}

/// The `--json` document.
fn to_json(report: &Report, urls: &[String]) -> Value {
    let m = &report.measured;
    let mut doc = json!({
        "rw": report.rw.name(),
        "bs": report.bs,
        "qd": report.qd,
        "block_size": report.block_size,
        "urls": urls.iter().map(|u| redact(u)).collect::<Vec<_>>(),
        "lat_us": {
            "p50": round(m.latency_us(50.0)),
            "p99": round(m.latency_us(99.0)),
            "max": round(m.max_latency_us()),
        },
        "cpu_s": {
            "user": m.cpu.map(|c| c.user.as_secs_f64()),
            "sys": m.cpu.map(|c| c.sys.as_secs_f64()),
        },
        "verify": report.verify.as_ref().map(|v| json!({
            "tag": format!("{:#018x}", v.tag),
            "passes": v.passes,
            "blocks_checked": v.blocks_checked,
            "write": phase_json(&v.write),
            "read": phase_json(&v.read),
        })),
    });
    if let (Value::Object(doc), Value::Object(figures)) = (&mut doc, phase_json(m)) {
        doc.extend(figures);
    }
    doc
}

fn phase_json(p: &PhaseReport) -> Value {
    json!({
        "seconds": round(p.elapsed.as_secs_f64()),
        "bytes": p.bytes,
        "ops": p.ops,
        "mib_per_s": round(p.mib_per_s()),
        "iops": round(p.iops()),
    })
}

/// The human summary line.
fn summary(report: &Report) -> String {
    let m = &report.measured;
    let mut line = format!(
        "{} bs={} qd={}: {:.1} MiB/s, {:.0} IOPS over {:.1} s ({} ops); latency p50 {:.1} us, \
         p99 {:.1} us, max {:.1} us",
        report.rw,
        format_size(report.bs),
        report.qd,
        m.mib_per_s(),
        m.iops(),
        m.elapsed.as_secs_f64(),
        m.ops,
        m.latency_us(50.0),
        m.latency_us(99.0),
        m.max_latency_us(),
    );
    if let Some(cpu) = m.cpu {
        let (user, sys) = (cpu.user.as_secs_f64(), cpu.sys.as_secs_f64());
        line.push_str(&format!("; cpu user {user:.2} s, sys {sys:.2} s"));
    }
    if let Some(v) = &report.verify {
        let passes = if v.passes == 1 { "pass" } else { "passes" };
        line.push_str(&format!(
            "; verified {} blocks in {} {passes}",
            v.blocks_checked, v.passes
        ));
    }
    line
}

/// Three decimals are plenty and keep the JSON readable.
fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

fn secs_arg(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 1e9) {
        return Err(format!("{s:?}: seconds must be above 0"));
    }
    Ok(Duration::from_secs_f64(secs))
}
