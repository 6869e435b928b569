//! `sanshim boot`: from the firmware's iSCSI Boot Firmware Table to one /dev/nbd0 that
//! survives a cable pull.
//!
//! ```text
//!  iBFT (--ibft auto|acpi|mem|sysfs|FILE) ──► plan ──(--dry-run: print it, stop)
//!    ──► harden (argv[0] '@', oom_score_adj, IO_FLUSHER, mlockall, preallocated heap)
//!    ──► network: each table NIC found by MAC, address, VLAN, link up (net::configure)
//!    ──► logins over the table's paths, patiently (--login-attempts, backoff)
//!    ──► SendTargets on each session: more portals of the same target on a table NIC
//!    ──► the boot LU's paths ──► Multipath ──► NBD export (--listen) + /dev/nbd0 (--attach)
//!    ──► serve in the foreground; SIGTERM: detach, drain, flush, log out
//! ```
//!
//! Each step logs what it did and how long it took; the last line says how long it took
//! from start to a ready device. Nothing is changed with `--dry-run`: the plan is printed,
//! the network step says what it would do, and discovery runs only where a table portal is
//! reachable already.

mod harden;
mod paths;
mod plan;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::anyhow;
use clap::Args;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use sanshim_blockdev::BlockDevice;
use sanshim_ibft::{Severity, lint};
use sanshim_mpath::Multipath;
use sanshim_nbd::ListenAddr;
use tracing::{info, warn};

use self::paths::{Opened, Patience};
use self::plan::BootPlan;
use super::serve::{ServePlan, close, serve};
use super::session::{Context, DiskArgs, PathArgs};
use super::status;
use crate::cli::Global;
use crate::exit::{self, Failure};
use crate::net;

/// Arguments of `sanshim boot`.
#[derive(Args, Debug)]
pub struct BootArgs {
    /// Where to read the boot table: auto (ACPI table, low memory, kernel sysfs view, in that
    /// order), acpi, mem, sysfs, or the path of a file holding a table.
    #[arg(long, default_value = "auto", value_name = "auto|acpi|mem|sysfs|FILE")]
    pub ibft: String,
    /// Print the plan (NICs, addresses, targets, paths and where each came from) and stop,
    /// changing nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Leave the network alone: it is configured already.
    #[arg(long)]
    pub no_net: bool,
    /// Set this MTU on the table's NICs (default: leave the MTU as it is; use 9000 where the
    /// SAN has jumbo frames).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(576..=65535))]
    pub mtu: Option<u32>,
    /// Use only the paths the table names (no SendTargets for further portals).
    #[arg(long)]
    pub no_discovery: bool,
    /// Login attempts per table path before giving up on it (SAN heads come up slowly; the
    /// pause between attempts doubles from 1 s up to 10 s).
    #[arg(long, value_name = "N", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub login_attempts: u32,
    /// Once one path logged in, how long the other table paths may still take before the
    /// boot goes on without them (a dead cable at boot time must not hold the boot for the
    /// whole patience of its logins).
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = super::session::parse_secs)]
    pub path_grace: std::time::Duration,
    /// Where to serve the NBD export: `unix:PATH` or `tcp:[HOST:]PORT`; repeatable. Default:
    /// `unix:/run/sanshim/boot.sock`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<ListenAddr>,
    /// The kernel device to attach.
    #[arg(long, value_name = "/dev/nbdN", default_value = "/dev/nbd0")]
    pub attach: PathBuf,
    /// Serve over NBD only; attach no kernel device.
    #[arg(long)]
    pub no_attach: bool,
    /// Take over the device if it is still connected after its sanshim died (a crash, an
    /// upgrade): the I/O the kernel held resumes. Needed only when there is no record that
    /// the device was serving this same LU; with one, the same command reattaches on its own.
    #[arg(long)]
    pub reattach: bool,
    /// How long the kernel holds I/O after the connections die (a crash, a restart) before
    /// failing it; the time a restarted `sanshim boot` has to reattach.
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub dead_conn_timeout: u64,
    /// The export name.
    #[arg(long, value_name = "NAME", default_value = "boot")]
    pub name: String,
    /// Refuse writes.
    #[arg(long)]
    pub read_only: bool,
    /// The control socket `sanshim status` reads (default /run/sanshim/NAME.ctl).
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Multipath settings.
    #[command(flatten)]
    pub paths: PathArgs,
    /// Session and command settings.
    #[command(flatten)]
    pub disk: DiskArgs,
}

/// Runs `sanshim boot`.
pub fn run(global: &Global, args: BootArgs) -> Result<ExitCode, Failure> {
    let started = Instant::now();
    if !args.dry_run {
        // Before any thread exists: the process becomes `@sanshim` (see `harden`).
        harden::reexec_as_root_storage_daemon();
    }
    let found = super::ibft::read(&args.ibft)?;
    let ibft = &found.parsed.ibft;
    for w in found.parsed.warnings.iter().chain(&lint::check(ibft)) {
        match w.severity {
            Severity::Info => info!("boot table: {} [{}]", w.message, w.code),
            _ => warn!("boot table: {} [{}]", w.message, w.code),
        }
    }
    let source = format!("{} ({})", found.kind.as_str(), found.location);
    let mut plan = BootPlan::from_ibft(ibft);
    let nics: Vec<net::NicPlan> = ibft
        .nics
        .iter()
        .map(|n| net::NicPlan {
            mtu: args.mtu,
            ..net::NicPlan::from_ibft(n, &ibft.targets)
        })
        .collect();
    info!(
        source = %source,
        nics = plan.nics.len(),
        targets = plan.targets.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "boot table read"
    );
    let mut ctx = Context::with_initiator_name(global, plan.initiator.as_deref())?;
    // Boot's own patience loop (`--login-attempts`, with backoff) is the one retry loop: each
    // attempt is a single login, so every failure is reported as it happens (a target that
    // does not exist yet closes the connection, which the login layer would otherwise retry
    // quietly for a minute).
    ctx.policy.busy_retries = 0;
    let rt = super::runtime(global)?;
    if args.dry_run {
        return rt.block_on(dry_run(&ctx, &args, plan, &nics, &source));
    }
    if plan.targets.is_empty() {
        return Err(Failure::new(
            exit::OTHER,
            anyhow!(
                "the boot table names no usable target{}",
                skipped_note(&plan)
            ),
        ));
    }
    harden::harden();
    warn_if_unseeded(&plan);
    rt.block_on(async {
        let interfaces = if args.no_net {
            Vec::new()
        } else {
            network(&nics).await?
        };
        check_routes(&plan, &nics, &interfaces).await;
        let disk = Arc::new(open(&ctx, &args, &mut plan).await?);
        let read_only = disk.geometry().read_only;
        if read_only && !args.read_only {
            warn!("the LUN is write-protected: exporting it read-only");
        }
        let listen = if args.listen.is_empty() {
            vec![super::serve::default_listener(&args.name)?]
        } else {
            args.listen.clone()
        };
        let identity = disk.identity().to_owned();
        let was = super::serve::recorded(&args.attach);
        let reattach = args.reattach || was.as_deref() == Some(identity.as_str());
        if reattach && !args.reattach && !args.no_attach {
            info!(device = %args.attach.display(), "the device was serving this LU: reattaching if it is still connected");
        }
        let serve_plan = ServePlan {
            name: args.name.clone(),
            description: format!("sanshim boot LU {identity}"),
            listen,
            read_only: read_only || args.read_only,
            attach: (!args.no_attach).then(|| args.attach.clone()),
            attach_options: sanshim_nbd::kernel::AttachOptions {
                dead_conn_timeout: std::time::Duration::from_secs(args.dead_conn_timeout),
                ..sanshim_nbd::kernel::AttachOptions::default()
            },
            reattach,
            identity,
            control: args
                .control
                .clone()
                .unwrap_or_else(|| status::control_path(&args.name)),
            options: args.disk.options(args.read_only),
        };
        info!(
            took_ms = started.elapsed().as_millis() as u64,
            "boot LU ready to serve"
        );
        let served = serve(&serve_plan, &disk).await;
        let closed = close(disk).await;
        served.and(closed)
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the plan; changes nothing.
async fn dry_run(
    ctx: &Context<'_>,
    args: &BootArgs,
    mut plan: BootPlan,
    nics: &[net::NicPlan],
    source: &str,
) -> Result<ExitCode, Failure> {
    let network: Option<Vec<(u8, String)>> = if args.no_net {
        None
    } else {
        match net::plan_actions(nics, &net::NetOptions::default()).await {
            Ok(planned) => Some(
                planned
                    .into_iter()
                    .zip(nics)
                    .flat_map(|(p, nic)| match p {
                        Ok(p) => {
                            let head = (p.index, format!("interface {}", p.interface));
                            let lines =
                                p.actions.into_iter().map(move |a| (p.index, a.to_string()));
                            std::iter::once(head).chain(lines).collect::<Vec<_>>()
                        }
                        Err(e) => vec![(nic.index, format!("cannot be set up: {e}"))],
                    })
                    .collect(),
            ),
            Err(e) => {
                warn!(error = %e, "cannot read the network configuration");
                None
            }
        }
    };
    if !args.no_discovery {
        // Discovery sessions only, where a table portal answers already: nothing is set up
        // for a dry run and no normal session is opened.
        let table: Vec<usize> = (0..plan.paths.len()).collect();
        paths::discover(ctx, &mut plan, &table).await;
    }
    print!("{}", plan.render(network.as_deref(), source));
    Ok(ExitCode::SUCCESS)
}

/// Brings up the table's NICs; returns each NIC's interface (`None` where it failed). A NIC
/// that cannot be set up is a warning as long as another one comes up: its paths fail and
/// the others carry the disk.
async fn network(nics: &[net::NicPlan]) -> Result<Vec<(u8, Option<String>)>, Failure> {
    let started = Instant::now();
    let outcomes = net::configure(nics, &net::NetOptions::default())
        .await
        .map_err(|e| {
            Failure::new(
                exit::UNREACHABLE,
                anyhow!("network set-up failed: {e} (or configure it yourself and give --no-net)"),
            )
        })?;
    let mut interfaces = Vec::new();
    let mut failures = Vec::new();
    for (o, nic) in outcomes.into_iter().zip(nics) {
        match o {
            Ok(o) => {
                let what = if o.changed() {
                    "NIC configured"
                } else {
                    "NIC configured (already as the table says: nothing changed)"
                };
                info!(
                    nic = o.index,
                    interface = %o.interface,
                    actions = %o.actions.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
                    carrier = o.carrier,
                    took_ms = o.took.as_millis() as u64,
                    "{what}"
                );
                if !o.carrier {
                    warn!(nic = o.index, interface = %o.interface, "no carrier: check the cable; logins will keep trying");
                }
                interfaces.push((o.index, Some(o.interface)));
            }
            Err(e) => {
                let index = e.nic().unwrap_or(nic.index);
                warn!(nic = index, mac = %nic.mac, error = %e, "NIC not set up; its paths will fail");
                failures.push(e.to_string());
                interfaces.push((nic.index, None));
            }
        }
    }
    if !nics.is_empty() && failures.len() == nics.len() {
        return Err(Failure::new(
            exit::UNREACHABLE,
            anyhow!(
                "no NIC of the boot table could be set up: {} (or configure the network yourself and give --no-net)",
                failures.join("; ")
            ),
        ));
    }
    info!(
        took_ms = started.elapsed().as_millis() as u64,
        "network set up"
    );
    Ok(interfaces)
}

/// Warns about targets whose traffic the kernel would route (field rule: never) or send out
/// of another interface than their NIC's.
async fn check_routes(plan: &BootPlan, nics: &[net::NicPlan], interfaces: &[(u8, Option<String>)]) {
    for t in &plan.targets {
        let route = match net::route_to(t.ip).await {
            Ok(route) => route,
            Err(e) => {
                warn!(target = %t.name, portal = %t.portal, error = %e, "no route to the target");
                continue;
            }
        };
        let nic = t.nic.and_then(|i| nics.iter().find(|n| n.index == i));
        let interface = t.nic.and_then(|i| {
            interfaces
                .iter()
                .find(|(n, _)| *n == i)
                .and_then(|(_, name)| name.as_deref())
        });
        match nic.and_then(|n| net::check_target(n, interface, t.ip, Some(&route))) {
            Some(w) => warn!(target = %t.name, portal = %t.portal, "{w}"),
            None if route.is_routed() => warn!(
                target = %t.name,
                portal = %t.portal,
                interface = %route.interface,
                "iSCSI traffic to this target is routed: put the target on a NIC's subnet"
            ),
            None => {
                info!(target = %t.name, portal = %t.portal, interface = %route.interface, "target reached directly")
            }
        }
    }
}

/// Logs in over every path, discovers more, and groups the boot LU's paths.
async fn open(
    ctx: &Context<'_>,
    args: &BootArgs,
    plan: &mut BootPlan,
) -> Result<Multipath, Failure> {
    let started = Instant::now();
    let options = args.disk.options(args.read_only);
    let patience = Patience {
        attempts: args.login_attempts,
        ..Patience::default()
    };
    let mut opened = Vec::new();
    let mut failures = Vec::new();
    let plan_now: &BootPlan = plan;
    let mut logins: FuturesUnordered<_> = (0..plan_now.paths.len())
        .map(|i| async move {
            let login =
                paths::login_patiently(ctx, plan_now, i, options, patience.attempts, &patience);
            (i, login.await)
        })
        .collect();
    // Every login runs until it succeeds or runs out of attempts; once one path is in, the
    // others get --path-grace more.
    let mut grace: Option<tokio::time::Instant> = None;
    loop {
        let next = match grace {
            None => logins.next().await,
            Some(deadline) => match tokio::time::timeout_at(deadline, logins.next()).await {
                Ok(next) => next,
                Err(_) => {
                    let waiting = logins.len();
                    warn!(
                        paths = waiting,
                        grace_s = args.path_grace.as_secs_f32(),
                        "paths still not logged in; booting without them (run the same \
                         `sanshim boot` again once they work: it takes the device over)"
                    );
                    break;
                }
            },
        };
        let Some((i, result)) = next else {
            break;
        };
        match result {
            Ok(disk) => {
                opened.push(Opened { path: i, disk });
                grace.get_or_insert_with(|| tokio::time::Instant::now() + args.path_grace);
            }
            Err(e) => {
                warn!(error = %e.message(), "path left out");
                failures.push(e);
            }
        }
    }
    drop(logins);
    if opened.is_empty() {
        return Err(paths::no_path(failures));
    }
    info!(
        paths = opened.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "table paths logged in"
    );
    if !args.no_discovery {
        let before = plan.paths.len();
        let answered: Vec<usize> = opened.iter().map(|o| o.path).collect();
        let added = paths::discover(ctx, plan, &answered).await;
        if added > 0 {
            let plan_now: &BootPlan = plan;
            let results = sanshim_blockdev::split::join_all(
                (before..plan_now.paths.len())
                    .map(|i| async move {
                        (
                            i,
                            paths::login_patiently(
                                ctx,
                                plan_now,
                                i,
                                options,
                                patience.discovered_attempts,
                                &patience,
                            )
                            .await,
                        )
                    })
                    .collect(),
            )
            .await;
            for (i, r) in results {
                match r {
                    Ok(disk) => opened.push(Opened { path: i, disk }),
                    Err(e) => warn!(error = %e.message(), "discovered path left out"),
                }
            }
        }
    }
    // Path numbers follow the plan (the table's paths first, in its order), not the order in
    // which the logins happened to finish.
    opened.sort_by_key(|o| o.path);
    let kept = paths::keep_boot_lu(plan, opened).await;
    let disks: Vec<(String, _)> = kept
        .into_iter()
        .map(|o| (plan.url(&plan.paths[o.path]), o.disk))
        .collect();
    for (i, (url, _)) in disks.iter().enumerate() {
        info!(path = i + 1, url = %url, "path of the boot LU");
    }
    let config = args.paths.config(args.disk.replacement_timeout);
    let device = Multipath::new(disks, config)
        .await
        .map_err(|e| Failure::new(exit::OTHER, anyhow!("{e}; refusing to boot from it")))?;
    info!(
        took_ms = started.elapsed().as_millis() as u64,
        "multipath device ready"
    );
    Ok(device)
}

/// Mutual CHAP needs a random challenge, and the kernel's generator blocks until it is seeded:
/// early in boot, on a VM without a hardware RNG, that can take minutes. Say so up front.
fn warn_if_unseeded(plan: &BootPlan) {
    let mutual = plan
        .targets
        .iter()
        .any(|t| t.chap.as_ref().is_some_and(|c| c.mutual.is_some()));
    let mut probe = [0u8; 1];
    let flags = rustix::rand::GetRandomFlags::NONBLOCK;
    if mutual && rustix::rand::getrandom(&mut probe, flags) == Err(rustix::io::Errno::AGAIN) {
        warn!(
            "the kernel's random number generator is not seeded yet: mutual CHAP logins wait for it \
             (on a VM give it a virtio-rng device or a CPU with RDRAND)"
        );
    }
}

fn skipped_note(plan: &BootPlan) -> String {
    if plan.skipped.is_empty() {
        String::new()
    } else {
        format!(" ({})", plan.skipped.join("; "))
    }
}
