//! Per-path state, counters, latency and the effective timeouts of a running `export`: the
//! document its control socket answers with, `sanshim status [--json] [NAME|SOCKET]` which
//! reads it, and the SIGUSR1 log lines.
//!
//! The control socket is a unix socket (mode 0600) next to the export's default listener,
//! `/run/sanshim/NAME.ctl`: a client connects and reads one JSON document; nothing is read
//! from it.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use sanshim_initiator::disk::DiskOptions;
use sanshim_mpath::{Multipath, NoPathRetry, PathStats, policy_name};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, warn};

use crate::cli::Global;
use crate::exit::{self, Failure};

/// Arguments of `sanshim status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The export's name (its control socket is /run/sanshim/NAME.ctl) or a control socket's
    /// path; default: the only export running.
    #[arg(value_name = "NAME|SOCKET")]
    pub target: Option<String>,
    /// Print the JSON document.
    #[arg(long)]
    pub json: bool,
}

/// Where the control sockets live.
pub const RUN_DIR: &str = "/run/sanshim";

/// What a running export reports about itself.
pub struct Status<'a> {
    /// The export's name.
    pub name: &'a str,
    /// The device.
    pub device: &'a Multipath,
    /// The session settings of its paths.
    pub options: &'a DiskOptions,
}

/// Runs `sanshim status`.
pub fn run(global: &Global, args: StatusArgs) -> Result<ExitCode, Failure> {
    let socket = resolve(args.target.as_deref())?;
    let rt = super::runtime(global)?;
    let doc = rt.block_on(fetch(&socket))?;
    if args.json {
        println!("{doc}");
    } else {
        print!("{}", human(&doc));
    }
    Ok(ExitCode::SUCCESS)
}

/// The control socket of export `name` (or the only one running).
pub fn control_path(name: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{}.ctl", name.replace('/', "_")))
}

fn resolve(target: Option<&str>) -> Result<PathBuf, Failure> {
    match target {
        Some(t) if t.contains('/') => Ok(PathBuf::from(t)),
        Some(name) => Ok(control_path(name)),
        None => {
            let found: Vec<PathBuf> = std::fs::read_dir(RUN_DIR)
                .map_err(|e| anyhow!("no export is running ({RUN_DIR}: {e})"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "ctl"))
                .collect();
            match &found[..] {
                [one] => Ok(one.clone()),
                [] => Err(Failure::new(
                    exit::UNREACHABLE,
                    anyhow!("no export is running"),
                )),
                _ => Err(Failure::new(
                    exit::USAGE,
                    anyhow!("several exports are running: name one ({})", names(&found)),
                )),
            }
        }
    }
}

fn names(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn fetch(socket: &Path) -> Result<Value, Failure> {
    let unreachable = |e: std::io::Error| {
        Failure::new(
            exit::UNREACHABLE,
            anyhow!(
                "cannot reach the export at {}: {e} (is it running?)",
                socket.display()
            ),
        )
    };
    let mut stream = tokio::time::timeout(Duration::from_secs(5), UnixStream::connect(socket))
        .await
        .map_err(|_| unreachable(std::io::ErrorKind::TimedOut.into()))?
        .map_err(unreachable)?;
    let mut text = String::new();
    let read = stream.read_to_string(&mut text);
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| unreachable(std::io::ErrorKind::TimedOut.into()))?
        .map_err(unreachable)?;
    serde_json::from_str(&text).map_err(|e| Failure::from(anyhow!("bad status document: {e}")))
}

/// Serves the control socket at `path` until the task is dropped.
///
/// # Errors
/// The socket cannot be created.
pub fn serve(
    path: PathBuf,
    report: Arc<dyn Fn() -> Value + Send + Sync>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let mut text = report().to_string();
            text.push('\n');
            let write = stream.write_all(text.as_bytes());
            if tokio::time::timeout(Duration::from_secs(5), write)
                .await
                .is_err()
            {
                debug!("status client did not read its answer");
            }
        }
    }))
}

/// The status document.
pub fn document(s: &Status<'_>) -> Value {
    let cfg = s.device.config();
    let no_path = match cfg.no_path_retry {
        NoPathRetry::Fail => json!("fail"),
        NoPathRetry::Queue => json!("queue"),
        NoPathRetry::For(d) => json!(d.as_secs_f64()),
    };
    let o = s.options;
    json!({
        "name": s.name,
        "policy": policy_name(cfg.policy),
        "timeouts": {
            "noop_interval_s": o.noop_interval.as_secs_f64(),
            "noop_timeout_s": o.noop_timeout.as_secs_f64(),
            "command_timeout_s": o.command_timeout.as_secs_f64(),
            "no_path_retry_s": no_path,
            "stall_s": cfg.stall.as_secs_f64(),
            "stall_probe_timeout_s": cfg.probe_timeout.as_secs_f64(),
        },
        "paths": s.device.stats().iter().map(path_json).collect::<Vec<_>>(),
    })
}

fn path_json(p: &PathStats) -> Value {
    json!({
        "path": p.number,
        "name": p.name,
        "state": p.state.name(),
        "reason": p.reason,
        "for_s": (p.for_secs * 10.0).round() / 10.0,
        "connected": p.connected,
        "ops": p.ops,
        "bytes": p.bytes,
        "errors": p.errors,
        "failovers": p.failovers,
        "state_changes": p.state_changes,
        "in_flight": p.in_flight,
        "reconnects": p.reconnects,
        "syncs": p.syncs,
        "latency_us": {"p50": p.latency_us[0], "p90": p.latency_us[1], "p99": p.latency_us[2], "max": p.latency_us[3]},
        "max_segment": p.max_segment,
        "alua_rank": p.alua_rank,
    })
}

/// The human rendering of the status document.
pub fn human(doc: &Value) -> String {
    let mut out = String::new();
    let s = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    };
    let _ = writeln!(out, "{} (policy {})", s(&doc["name"]), s(&doc["policy"]));
    for p in doc["paths"].as_array().into_iter().flatten() {
        let l = &p["latency_us"];
        let _ = writeln!(
            out,
            "  path {} {}: {} ({}, {} s) ops {} bytes {} errors {} failovers {} syncs {} \
             in-flight {} latency p50 {} p99 {} us",
            p["path"],
            s(&p["name"]),
            s(&p["state"]),
            s(&p["reason"]),
            p["for_s"],
            p["ops"],
            p["bytes"],
            p["errors"],
            p["failovers"],
            p["syncs"],
            p["in_flight"],
            l["p50"],
            l["p99"],
        );
    }
    let t = &doc["timeouts"];
    let _ = writeln!(
        out,
        "  timeouts: noop {}+{} s, command {} s, no-path-retry {}, stall {}+{} s",
        t["noop_interval_s"],
        t["noop_timeout_s"],
        t["command_timeout_s"],
        match &t["no_path_retry_s"] {
            Value::Number(n) => format!("{n} s"),
            other => s(other),
        },
        t["stall_s"],
        t["stall_probe_timeout_s"],
    );
    out
}

/// The SIGUSR1 log lines.
pub fn log(doc: &Value) {
    for line in human(doc).lines() {
        warn!("{line}");
    }
}
