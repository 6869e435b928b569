//! `sanshim discover PORTAL... [--luns] [--json]`: SendTargets discovery (RFC 7143 §12.3) on
//! each portal; with `--luns`, log in to every target found and list its LUNs.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use sanshim_initiator::discovery::{self, DiscoveredTarget};
use sanshim_initiator::inspect;
use sanshim_initiator::portal::Portal;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tracing::info;

use super::ls::{human, inspect_failure, lun_json};
use super::session::Context;
use crate::cli::Global;
use crate::creds::UrlCredentials;
use crate::exit::{self, Failure};

/// Arguments of `sanshim discover`.
#[derive(Args, Debug)]
pub struct DiscoverArgs {
    /// Portals to ask: `HOST[:PORT]` (IPv6 in brackets), port 3260 by default.
    #[arg(required = true, value_name = "PORTAL")]
    pub portals: Vec<String>,
    /// Also log in to each target and list its LUNs.
    #[arg(long)]
    pub luns: bool,
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs `sanshim discover`.
pub fn run(global: &Global, args: DiscoverArgs) -> Result<ExitCode, Failure> {
    let ctx = Context::new(global)?;
    let rt = super::runtime(global)?;
    let mut portals = Vec::new();
    let mut path = 0u32;
    for p in &args.portals {
        let portal = parse_portal(p)?;
        let session = rt.block_on(ctx.open_discovery(&portal, path))?;
        path += 1;
        let targets = rt.block_on(async {
            let targets = discovery::send_targets(&session).await;
            session.close().await;
            targets
        });
        let targets = targets
            .map_err(|e| Failure::new(exit::OTHER, anyhow!("discovery at {portal}: {e}")))?;
        let mut list = Vec::new();
        for target in &targets {
            let mut t = target_json(target);
            if args.luns {
                let reachable = rt.block_on(probe_portals(&portal, target));
                if let Some(listed) = t["portals"].as_array_mut() {
                    for (entry, result) in listed.iter_mut().zip(&reachable) {
                        entry["reachable"] = json!(result.is_ok());
                        if let Err(why) = result {
                            entry["error"] = json!(why);
                        }
                    }
                }
                let candidates = login_candidates(&portal, target, &reachable);
                t["luns"] = Value::Array(rt.block_on(luns_of(&ctx, &candidates, target, path))?);
                path += 1;
            }
            list.push(t);
        }
        portals.push(json!({ "portal": portal.to_string(), "targets": list }));
    }
    if args.json {
        println!("{}", json!({ "portals": portals }));
    } else {
        print!("{}", render(&portals));
    }
    Ok(ExitCode::SUCCESS)
}

/// How long a listed portal gets to accept a TCP connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Tries a TCP connection to each portal `target` lists, all at once, each bounded by
/// [`PROBE_TIMEOUT`]. Targets behind NAT or port forwarding (LIO lists the addresses it
/// listens on, which may be a VM's or a container's own) list portals that cannot be reached
/// from here; those are reported and passed over. The portal asked answered already.
async fn probe_portals(asked: &Portal, target: &DiscoveredTarget) -> Vec<Result<(), String>> {
    let probes = target.portals.iter().map(|a| async move {
        if a.portal == *asked {
            return Ok(());
        }
        let address = (a.portal.host.as_str(), a.portal.port);
        let result = match tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer in {PROBE_TIMEOUT:?}")),
        };
        if let Err(why) = &result {
            info!(
                portal = %a.portal,
                target = %target.name,
                error = %why,
                "listed portal not reachable from here; passed over (a target behind NAT lists its own addresses)"
            );
        }
        result
    });
    futures_util::future::join_all(probes).await
}

/// Where to log in to `target` to list its LUNs: the portal asked first (it answered), then
/// each listed portal that accepted a connection.
fn login_candidates(
    asked: &Portal,
    target: &DiscoveredTarget,
    reachable: &[Result<(), String>],
) -> Vec<Portal> {
    let mut candidates = vec![asked.clone()];
    for (a, result) in target.portals.iter().zip(reachable) {
        if result.is_ok() && !candidates.contains(&a.portal) {
            candidates.push(a.portal.clone());
        }
    }
    candidates
}

fn no_creds() -> UrlCredentials<'static> {
    UrlCredentials {
        user: None,
        secret: None,
    }
}

/// Parses `HOST[:PORT]` / `[V6]:PORT` into a portal, with the TargetAddress parser of
/// discovery; a command line takes neither a portal group tag nor an unbracketed IPv6 address.
fn parse_portal(s: &str) -> Result<Portal, Failure> {
    let usage =
        |why: &dyn std::fmt::Display| Failure::new(exit::USAGE, anyhow!("portal {s:?}: {why}"));
    if s.contains(',') {
        return Err(usage(&"a portal group tag (,TPGT) is not taken here"));
    }
    let portal = Portal::parse(s).map_err(|e| usage(&e))?;
    if portal.host.contains(':') && !s.starts_with('[') {
        return Err(usage(&"write IPv6 addresses in brackets: [ADDR]:PORT"));
    }
    Ok(portal)
}

fn target_json(t: &DiscoveredTarget) -> Value {
    let portals: Vec<Value> = t
        .portals
        .iter()
        .map(|a| json!({ "host": a.portal.host, "port": a.portal.port, "tpgt": a.tpgt }))
        .collect();
    json!({ "name": t.name, "portals": portals })
}

/// Logs in to `target` through the first of `portals` that takes the login and lists its
/// LUNs; the first failure is returned when none does.
async fn luns_of(
    ctx: &Context<'_>,
    portals: &[Portal],
    target: &DiscoveredTarget,
    path: u32,
) -> Result<Vec<Value>, Failure> {
    let mut first_failure = None;
    for portal in portals {
        let session = match ctx
            .open_session(portal, Some(&target.name), no_creds(), path)
            .await
        {
            Ok(session) => session,
            Err(failure) => {
                info!(portal = %portal, target = %target.name, error = %failure.message(), "cannot log in here to list the LUNs");
                first_failure.get_or_insert(failure);
                continue;
            }
        };
        let listed = async {
            let luns = inspect::report_luns(&session)
                .await
                .map_err(inspect_failure)?;
            let mut out = Vec::new();
            for lun in luns {
                let report = inspect::inspect(&session, lun)
                    .await
                    .map_err(inspect_failure)?;
                let number = lun.number().unwrap_or(lun.raw());
                let url = format!("iscsi://{portal}/{}/{number}", target.name);
                out.push(lun_json(&url, &session, &report));
            }
            Ok(out)
        }
        .await;
        session.close().await;
        return listed;
    }
    Err(first_failure.unwrap_or_else(|| {
        Failure::new(
            exit::OTHER,
            anyhow!("{}: no portal to log in to", target.name),
        )
    }))
}

fn render(portals: &[Value]) -> String {
    let mut out = String::new();
    for p in portals {
        out.push_str(&format!("portal {}\n", p["portal"].as_str().unwrap_or("-")));
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push_str(&format!("  {}\n", t["name"].as_str().unwrap_or("-")));
            for a in t["portals"].as_array().into_iter().flatten() {
                let host = a["host"].as_str().unwrap_or("-");
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.to_string()
                };
                let tpgt = a["tpgt"]
                    .as_u64()
                    .map(|t| format!(",{t}"))
                    .unwrap_or_default();
                let note = match a["reachable"].as_bool() {
                    Some(false) => format!(
                        "  (unreachable from here: {})",
                        a["error"].as_str().unwrap_or("-")
                    ),
                    _ => String::new(),
                };
                out.push_str(&format!("    {host}:{}{tpgt}{note}\n", a["port"]));
            }
            if let Some(luns) = t["luns"].as_array() {
                for line in human(luns).lines() {
                    out.push_str(&format!("    {line}\n"));
                }
            }
        }
    }
    out
}
