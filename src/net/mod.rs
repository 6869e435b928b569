//! Network bring-up for `sanshim boot`: give each NIC the boot table (iBFT specification 1.03
//! §3.5.6, the NIC structure) describes the address, VLAN and routes it needs to reach its
//! targets, through rtnetlink, and tell what was done.
//!
//! ```text
//!  NicPlan (one per iBFT NIC) ─► plan: Observed (links, addresses, main routes) ─► Actions
//!                                                                                   │
//!   kernel ◄── links, MTU, up, addresses (every NIC) ◄──────────────────────────────┤
//!   kernel ◄── carrier wait (every NIC at once, with a timeout)                     │
//!   kernel ◄── routes (every NIC) ◄─────────────────────────────────────────────────┘
//! ```
//!
//! [`configure`] changes the kernel, [`plan_actions`] (for `--dry-run`) only reads it, and
//! [`route_to`] asks the kernel which interface and next hop reach a target, so that `boot`
//! can warn, with [`check_target`], when iSCSI traffic would be routed or leave by another
//! interface than the table's NIC.
//!
//! # Rules
//! - A NIC is **found by MAC**: the link whose MAC is the table's, not counting VLAN, macvlan
//!   and ipvlan links, which copy their parent's MAC; failing that, the link whose hardware
//!   (permanent) MAC it is. Two links with that MAC (a bond or bridge and its port) are
//!   refused ([`NetError::AmbiguousMac`]): the table cannot say which should hold the address.
//! - **Only what the table names is touched**: the NIC's link, its VLAN link, their addresses
//!   and the routes below. Nothing is ever removed or replaced: an address the NIC holds with
//!   another prefix, an address already on another interface, another default route, another
//!   route to a target are all left as they are and reported as [`Status::Skipped`] with the
//!   reason. What is already as the table says is reported as [`Status::Already`], so a second
//!   run changes nothing.
//! - A NIC with a VLAN id gets a VLAN link on top of it, named `PARENT.ID` (`vlanID` when that
//!   is over 15 bytes or taken), or reuses the VLAN link with that id the parent has. The
//!   address goes on the VLAN link; both links are set up.
//! - **The MTU is left alone** unless [`NicPlan::mtu`] asks for one (the table has none). On a
//!   VLAN, the parent is raised to it first when smaller (a VLAN cannot exceed its parent).
//! - After the links are up, bring-up **waits for carrier** on every NIC at once, up to
//!   [`NetOptions::carrier_timeout`] (in VMs it comes 0.1–1.8 s after link up). No carrier is
//!   reported ([`NicOutcome::carrier`]), not an error: another path may still work.
//!
//! # Routes: what a storage network expects
//! iSCSI traffic is not routed: a target belongs on the subnet of the NIC that reaches it,
//! where the address alone gives the kernel its route. The table's gateway therefore matters
//! only for a target that is off every subnet of the host, and then it should carry that
//! target's traffic and nothing else. So:
//! - For each target off the NIC's subnet (and off every other subnet of the host, which would
//!   reach it directly), a **host route** (`/32`, `/128`) to the target through the table's
//!   gateway on the NIC's interface — as open-iscsi's `iscsistart` does. It pins the target to
//!   the NIC the table names, rather than to whatever default route the host has (often a
//!   management NIC). Skipped when the gateway is not on the NIC's subnet (IPv6: nor
//!   link-local), when the main table already sends the target through that gateway on that
//!   interface (reported as already so), or when another host route to it exists.
//!   [`check_target`] makes the warning `boot` prints for such a target.
//! - **No default route** unless [`NetOptions::default_route`] asks for one. A boot shim's job
//!   is the path to the LUN; a default route through a SAN NIC would send all the host's other
//!   traffic over the storage network, and the booted system owns its default route. When
//!   asked, it is added only if the gateway is on the NIC's subnet and the main table has no
//!   default route of that family yet (so with two NICs, the first with a gateway gets it).
//!
//! # Where it acts
//! In the network namespace of the thread that calls (netlink sockets belong to the namespace
//! they are opened in), driven by the caller's tokio runtime, which must have time enabled.
//! Every step is logged through `tracing` (info; skips as warnings) with what it did and how
//! long it took.
//!
//! # Limits
//! - The table's address is used as a static address even when its origin is DHCP: there is
//!   no DHCP client here, and the lease is not renewed.
//! - An IPv6 address goes through duplicate address detection (about a second of `tentative`)
//!   before connections can use it; bring-up does not wait for it.
//! - Planning models the main routing table only; [`route_to`] asks the kernel, rules and all.

mod action;
mod error;
mod kernel;
mod plan;
mod subnet;

#[cfg(test)]
mod netns_tests;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use sanshim_ibft::{MacAddr, Nic, Target};
use tracing::{info, warn};

pub use action::{Action, Status};
#[cfg(test)]
pub use action::{Change, RouteTo};
pub use error::NetError;
pub use subnet::check_target;
#[cfg(test)]
pub use subnet::{Subnet, TargetWarning};

use kernel::Kernel;

/// One NIC as the boot table describes it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct NicPlan {
    /// The table's NIC index (targets name their NIC by it).
    pub index: u8,
    /// The NIC's MAC: how its interface is found.
    pub mac: MacAddr,
    /// Address and prefix length; `None` leaves addresses alone.
    pub address: Option<(IpAddr, u8)>,
    /// The table's gateway, used only for routes (see the module doc).
    pub gateway: Option<IpAddr>,
    /// VLAN id, 0 for none.
    pub vlan: u16,
    /// MTU to set; only when the user asks (the table has none).
    pub mtu: Option<u32>,
    /// Addresses of the target portals the table reaches over this NIC.
    pub targets: Vec<IpAddr>,
}

impl NicPlan {
    /// The plan for table NIC `nic`, reaching the `targets` that name it; no MTU.
    pub fn from_ibft(nic: &Nic, targets: &[Target]) -> NicPlan {
        NicPlan {
            index: nic.index,
            mac: nic.mac,
            address: nic.ip.map(|ip| (ip, nic.prefix)),
            gateway: nic.gateway,
            vlan: nic.vlan,
            mtu: None,
            targets: (targets.iter())
                .filter(|t| t.nic == nic.index)
                .filter_map(|t| t.ip)
                .collect(),
        }
    }
}

/// How bring-up behaves.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct NetOptions {
    /// How long to wait for carrier after link up (all NICs wait at once).
    pub carrier_timeout: Duration,
    /// Add a default route through a NIC's gateway (see the module doc); off by default.
    pub default_route: bool,
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            carrier_timeout: Duration::from_secs(10),
            default_route: false,
        }
    }
}

/// What bringing one NIC up did.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct NicOutcome {
    /// The table's NIC index.
    pub index: u8,
    /// The interface holding the NIC's address: `eth1`, or `eth1.100` with a VLAN.
    pub interface: String,
    /// Every action, done, already so or skipped, in the order they ran.
    pub actions: Vec<Action>,
    /// Whether the interface had carrier by the end of the wait.
    pub carrier: bool,
    /// The time this NIC took: its own steps plus its own wait for carrier.
    pub took: Duration,
}

impl NicOutcome {
    /// Whether anything was changed (false on a second, identical run).
    pub fn changed(&self) -> bool {
        self.actions.iter().any(Action::is_change)
    }
}

/// What [`configure`] would do for one NIC.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct NicPlanned {
    /// The table's NIC index.
    pub index: u8,
    /// The interface that would hold the NIC's address.
    pub interface: String,
    /// Every action, planned, already so or skipped.
    pub actions: Vec<Action>,
}

/// How the kernel reaches a target.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RouteInfo {
    /// The outgoing interface.
    pub interface: String,
    /// The next hop, when the target is not on a subnet of the host.
    pub gateway: Option<IpAddr>,
    /// The source address the kernel would use.
    pub source: Option<IpAddr>,
}

impl RouteInfo {
    /// Whether traffic to the target goes through a router.
    pub fn is_routed(&self) -> bool {
        self.gateway.is_some()
    }
}

/// Brings up every NIC of `nics` as the module doc describes: links and addresses of every
/// NIC, then one wait for all carriers, then routes. Returns one entry per NIC, in order: a
/// NIC that cannot be found or whose step the kernel refused is an `Err` (its later steps are
/// not tried; the others go on).
///
/// # Errors
/// The outer `Err` when the kernel cannot be asked at all: no tokio runtime, no netlink
/// socket, or a failed read of links, addresses or routes.
pub async fn configure(
    nics: &[NicPlan],
    options: &NetOptions,
) -> Result<Vec<Result<NicOutcome, NetError>>, NetError> {
    let kernel = Kernel::open()?;
    let observed = kernel.observe().await?;
    let mut runs: Vec<Result<Run, NetError>> = plan::plan(nics, options, &observed)
        .into_iter()
        .map(|planned| planned.map(Run::new))
        .collect();
    for (nic, run) in nics.iter().zip(runs.iter_mut()) {
        if let Ok(run) = run {
            info!(
                nic = nic.index,
                "configuring {} (MAC {})", run.planned.interface, nic.mac
            );
        }
        run_phase(&kernel, run, false).await;
    }
    wait_carriers(&kernel, &mut runs, options.carrier_timeout).await?;
    for run in runs.iter_mut() {
        run_phase(&kernel, run, true).await;
    }
    Ok(runs.into_iter().map(|run| run.map(Run::finish)).collect())
}

/// What [`configure`] would do with `nics` now, without changing anything (`--dry-run`):
/// one entry per NIC, in order; a NIC that cannot be found is an `Err`.
///
/// # Errors
/// The outer `Err` when the kernel's state cannot be read.
pub async fn plan_actions(
    nics: &[NicPlan],
    options: &NetOptions,
) -> Result<Vec<Result<NicPlanned, NetError>>, NetError> {
    let kernel = Kernel::open()?;
    let observed = kernel.observe().await?;
    Ok(plan::plan(nics, options, &observed))
}

/// Which interface and next hop the kernel would use to reach `target` (RTM_GETROUTE, the
/// question `ip route get` asks), policy rules included.
///
/// # Errors
/// [`NetError::Unreachable`] when the kernel has no route; otherwise when it cannot be asked.
pub async fn route_to(target: IpAddr) -> Result<RouteInfo, NetError> {
    Kernel::open()?.route_to(target).await
}

/// One NIC's bring-up in progress.
struct Run {
    planned: NicPlanned,
    /// Time spent in this NIC's steps and its own carrier wait.
    took: Duration,
    carrier: bool,
}

impl Run {
    fn new(planned: NicPlanned) -> Run {
        Run {
            planned,
            took: Duration::ZERO,
            carrier: false,
        }
    }

    fn finish(self) -> NicOutcome {
        NicOutcome {
            index: self.planned.index,
            interface: self.planned.interface,
            actions: self.planned.actions,
            carrier: self.carrier,
            took: self.took,
        }
    }
}

/// Carries out the planned route (or non-route) actions of one NIC; on a failure the NIC's
/// entry becomes the error.
async fn run_phase(kernel: &Kernel, entry: &mut Result<Run, NetError>, routes: bool) {
    let Ok(run) = entry else { return };
    let started = Instant::now();
    let nic = run.planned.index;
    let mut failed = None;
    for action in (run.planned.actions.iter_mut()).filter(|a| a.is_route() == routes) {
        if action.status == Status::Planned {
            match kernel.apply(nic, action).await {
                Ok(took) => action.status = Status::Done(took),
                Err(e) => {
                    warn!(nic, "{e}");
                    failed = Some(e);
                    break;
                }
            }
        }
        match action.status {
            Status::Skipped(_) => warn!(nic, "{action}"),
            _ => info!(nic, "{action}"),
        }
    }
    run.took += started.elapsed();
    if let Some(e) = failed {
        *entry = Err(e);
    }
}

/// Waits for the carrier of every NIC still in the running, all at once.
async fn wait_carriers(
    kernel: &Kernel,
    runs: &mut [Result<Run, NetError>],
    timeout: Duration,
) -> Result<(), NetError> {
    let interfaces: Vec<String> = (runs.iter().flatten())
        .map(|run| run.planned.interface.clone())
        .collect();
    if interfaces.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let seen = kernel.wait_carrier(&interfaces, timeout).await?;
    let waited = started.elapsed();
    for (run, seen) in runs.iter_mut().flatten().zip(seen) {
        let nic = run.planned.index;
        let interface = &run.planned.interface;
        let own_wait = seen.map_or(waited, |at| at - started);
        run.took += own_wait;
        run.carrier = seen.is_some();
        if run.carrier {
            info!(nic, "{interface}: carrier (waited {own_wait:.1?})");
        } else {
            warn!(
                nic,
                "{interface}: no carrier after waiting {own_wait:.1?}; check the cable and the \
                 switch port, or raise the carrier timeout"
            );
        }
    }
    Ok(())
}
