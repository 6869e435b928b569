//! Logging in over every path of a boot plan: patiently, as SAN heads that boot with the
//! server need (minutes, not seconds), then asking each target for the portals the table did
//! not record, then keeping the paths to one logical unit.
//!
//! ```text
//!  table paths ──login, retried with backoff──► sessions ──SendTargets=<name>──► portals
//!  portals on a table NIC's subnet, not yet known ──login (a few tries)──► more sessions
//!  sessions ──grouped by LU identity (VPD 0x83)──► the boot LU's paths; others logged out
//! ```
//!
//! A login the target refuses for our credentials is not retried: a wrong CHAP secret does
//! not get better with time, and the operator should hear about it at once.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use sanshim_initiator::discovery::send_targets as send_targets_all;
use sanshim_initiator::disk::{DiskOptions, OpenError, ScsiDisk};
use sanshim_initiator::portal::Portal;
use tracing::{info, warn};

use super::plan::{BootPlan, Origin, TargetEntry};
use crate::cmd::session::{Context, DiscoveryError, open_failure};
use crate::exit::{self, Failure};

/// How patient logins are.
#[derive(Clone, Copy, Debug)]
pub struct Patience {
    /// Attempts per table path (the first included).
    pub attempts: u32,
    /// Attempts per discovered path.
    pub discovered_attempts: u32,
    /// The first pause; it doubles up to `max_pause`.
    pub first_pause: Duration,
    /// The longest pause.
    pub max_pause: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Patience {
            attempts: 60,
            discovered_attempts: 3,
            first_pause: Duration::from_secs(1),
            max_pause: Duration::from_secs(10),
        }
    }
}

/// A path logged in.
pub struct Opened {
    /// Index into the plan's paths.
    pub path: usize,
    /// Its disk.
    pub disk: ScsiDisk,
}

/// Logs in over path `index` of `plan`, retrying per `patience`; logs each failed attempt
/// with what comes next.
///
/// # Errors
/// The last attempt's failure, or the first authentication failure.
pub async fn login_patiently(
    ctx: &Context<'_>,
    plan: &BootPlan,
    index: usize,
    options: DiskOptions,
    attempts: u32,
    patience: &Patience,
) -> Result<ScsiDisk, Failure> {
    let path = &plan.paths[index];
    let target = &plan.targets[path.target];
    let url = plan.url(path);
    let options = DiskOptions {
        lun: target.lun,
        fail_fast: true,
        ..options
    };
    let started = Instant::now();
    let mut pause = patience.first_pause;
    let mut attempt = 1;
    loop {
        let chap = target.chap.as_ref().map(|c| c.config());
        let result = ctx
            .open_disk_as(
                path.portal.clone(),
                &target.name,
                chap,
                index as u32,
                options,
            )
            .await;
        let e = match result {
            Ok(disk) => {
                info!(
                    path = index + 1,
                    url = %url,
                    attempts = attempt,
                    took_ms = started.elapsed().as_millis() as u64,
                    "logged in"
                );
                crate::cmd::session::warn_other_luns(&url.to_string(), &disk).await;
                return Ok(disk);
            }
            Err(e) => e,
        };
        let auth = matches!(&e, OpenError::Session(s) if s.is_authentication_failure());
        if auth || attempt >= attempts {
            let failure = open_failure(e);
            let why = if auth {
                "the target refused our credentials (check the CHAP names and secrets in the firmware's iSCSI set-up)".to_owned()
            } else {
                format!(
                    "gave up after {attempt} attempts in {:.0?}",
                    started.elapsed()
                )
            };
            return Err(Failure::new(
                failure.code(),
                anyhow!("path {} {url}: {}; {why}", index + 1, failure.message()),
            ));
        }
        warn!(
            path = index + 1,
            url = %url,
            attempt,
            of = attempts,
            error = %e,
            retry_in_s = pause.as_secs_f32(),
            "login failed; the target may still be coming up"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(patience.max_pause);
        attempt += 1;
    }
}

/// Asks the portal of each of `paths` for the portals of its target (a discovery session,
/// `SendTargets=All`, as open-iscsi does: some targets drop a normal session that asks) and
/// adds to `plan` each one on the subnet of a table NIC and not known yet. The discovery
/// login offers the target's CHAP credentials, then none (discovery authentication is set up
/// apart from the target's). Returns how many were added; failures are logged: discovery is
/// a bonus.
pub async fn discover(ctx: &Context<'_>, plan: &mut BootPlan, paths: &[usize]) -> usize {
    let mut added = 0;
    let mut asked: Vec<Portal> = Vec::new();
    for &index in paths {
        let path = plan.paths[index].clone();
        if asked.contains(&path.portal) {
            continue;
        }
        asked.push(path.portal.clone());
        let target = plan.targets[path.target].clone();
        let started = Instant::now();
        let Some(found) = send_targets(ctx, &path.portal, &target, index).await else {
            continue;
        };
        let portals: Vec<Portal> = found
            .into_iter()
            .filter(|t| t.name.eq_ignore_ascii_case(&target.name))
            .flat_map(|t| t.portals)
            .map(|a| a.portal)
            .collect();
        info!(
            portal = %path.portal,
            target = %target.name,
            portals = ?portals.iter().map(ToString::to_string).collect::<Vec<_>>(),
            took_ms = started.elapsed().as_millis() as u64,
            "SendTargets answered"
        );
        for portal in portals {
            let Ok(ip) = portal.host.parse::<std::net::IpAddr>() else {
                warn!(portal = %portal, "discovered portal is not an IP address; skipped (address targets by IP)");
                continue;
            };
            if plan.nic_on_subnet(ip).is_none() {
                info!(portal = %portal, "discovered portal is on no table NIC's subnet; not used (iSCSI traffic is not routed)");
                continue;
            }
            if plan.add_discovered(path.target, portal.clone(), path.portal.clone()) {
                info!(portal = %portal, target = %target.name, "new path from discovery");
                added += 1;
            }
        }
    }
    added
}

/// `SendTargets=All` on a discovery session at `portal`; `None` (logged) when it fails.
async fn send_targets(
    ctx: &Context<'_>,
    portal: &Portal,
    target: &TargetEntry,
    path: usize,
) -> Option<Vec<sanshim_initiator::discovery::DiscoveredTarget>> {
    let mut offers = vec![("table-chap", target.chap.as_ref().map(|c| c.config()))];
    match offers[0].1 {
        Some(_) => offers.push(("none", None)),
        None => offers[0].0 = "none",
    }
    let last = match ctx
        .discovery_login(portal, offers, 1000 + path as u32, DISCOVERY_TIMEOUT)
        .await
    {
        Ok(session) => {
            let answer = tokio::time::timeout(DISCOVERY_TIMEOUT, send_targets_all(&session)).await;
            session.close().await;
            match answer {
                Ok(Ok(found)) => return Some(found),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer".into(),
            }
        }
        Err(refused) => match refused.error {
            DiscoveryError::Session(e) if !e.is_refusal() => {
                info!(portal = %portal, error = %e, "no SendTargets: the portal does not answer");
                return None;
            }
            other => other.to_string(),
        },
    };
    warn!(
        portal = %portal,
        target = %target.name,
        error = %last,
        "SendTargets failed; only the table's paths are used"
    );
    None
}

/// How long a discovery login or exchange may take.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// Keeps the paths to the boot LU: the LU of the first boot-selected target that logged in,
/// else of the first table path that did. Paths to other LUs are logged out with a warning
/// naming their identity: they are not exported, since nobody asked for them.
pub async fn keep_boot_lu(plan: &BootPlan, opened: Vec<Opened>) -> Vec<Opened> {
    let identity = |o: &Opened| sanshim_mpath::identity::identity(o.disk.report());
    let chosen = opened
        .iter()
        .find(|o| {
            matches!(plan.paths[o.path].origin, Origin::Table(_))
                && plan.targets[plan.paths[o.path].target].boot_selected
        })
        .or_else(|| opened.first())
        .map(identity);
    let Some(chosen) = chosen else {
        return opened;
    };
    let mut kept = Vec::new();
    for o in opened {
        if identity(&o) == chosen {
            kept.push(o);
        } else {
            warn!(
                url = %plan.url(&plan.paths[o.path]),
                identity = ?identity(&o),
                boot_lu = ?chosen,
                "a different logical unit than the boot LU: not exported (use sanshim export for it); logging out"
            );
            if let Err(e) = o.disk.close().await {
                warn!(error = %e, "logout failed");
            }
        }
    }
    kept
}

/// The exit code of a failure to log in over every path.
pub fn no_path(failures: Vec<Failure>) -> Failure {
    let code = failures
        .iter()
        .map(Failure::code)
        .find(|c| *c == exit::LOGIN_REFUSED)
        .unwrap_or(exit::UNREACHABLE);
    let messages: Vec<String> = failures.iter().map(|f| f.message()).collect();
    Failure::new(
        code,
        anyhow!(
            "no path to the boot LU logged in:\n  {}",
            messages.join("\n  ")
        ),
    )
}
