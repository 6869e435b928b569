//! The pure half of bring-up: from the kernel's state ([`Observed`]) and the table's NICs, the
//! list of [`Action`]s — what to change, what is already so, what to leave alone and why.
//!
//! Planning runs on a copy of the state that it updates as if each planned action were done,
//! so a later NIC sees what an earlier one will add (one default route, not two; a target on
//! another NIC's subnet). Links and addresses of every NIC are planned before any route, since
//! a route's decision depends on every subnet the host will have.

use std::net::IpAddr;

use sanshim_ibft::MacAddr;

use super::action::{Action, Change, RouteTo, Status};
use super::error::NetError;
use super::subnet::{Subnet, max_prefix};
use super::{NetOptions, NicPlan, NicPlanned};

/// The kernel's network state as far as bring-up cares: links, addresses, main-table routes.
#[derive(Clone, Debug, Default)]
pub(crate) struct Observed {
    pub links: Vec<LinkView>,
    pub addresses: Vec<AddrView>,
    /// Unicast routes of the main table.
    pub routes: Vec<RouteView>,
}

/// One link.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct LinkView {
    pub index: u32,
    pub name: String,
    pub mac: Option<MacAddr>,
    /// The hardware's own MAC (IFLA_PERM_ADDRESS), when the driver reports one.
    pub permanent_mac: Option<MacAddr>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Carrier (IFF_LOWER_UP).
    pub carrier: bool,
    pub mtu: u32,
    pub kind: LinkKind,
}

/// What sort of link, as far as finding a NIC by MAC goes.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum LinkKind {
    /// A NIC, veth, bridge, bond...: may be the table's NIC.
    Plain,
    /// VLAN `id` on link `parent`.
    Vlan { parent: u32, id: u16 },
    /// A link sharing its parent's MAC by construction (macvlan, macvtap, ipvlan): never the
    /// table's NIC.
    Stacked,
}

/// One address on a link.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct AddrView {
    pub index: u32,
    pub subnet: Subnet,
}

/// One main-table unicast route. The default route has prefix 0.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct RouteView {
    /// Destination network and prefix length.
    pub destination: Subnet,
    pub gateway: Option<IpAddr>,
    /// Output interface; `None` for a multipath route.
    pub oif: Option<u32>,
    pub priority: u32,
}

impl Observed {
    fn link(&self, index: u32) -> Option<&LinkView> {
        self.links.iter().find(|l| l.index == index)
    }

    fn link_mut(&mut self, index: u32) -> Option<&mut LinkView> {
        self.links.iter_mut().find(|l| l.index == index)
    }

    fn name(&self, index: Option<u32>) -> String {
        match index.and_then(|i| self.link(i)) {
            Some(link) => link.name.clone(),
            None => "several interfaces".to_string(),
        }
    }

    /// The route the kernel's main table picks for `target`: longest prefix, then lowest
    /// priority (policy rules are not modelled; [`super::route_to`] asks the kernel itself).
    fn lookup(&self, target: IpAddr) -> Option<&RouteView> {
        self.routes
            .iter()
            .filter(|r| r.destination.contains(target))
            .max_by_key(|r| (r.destination.prefix, std::cmp::Reverse(r.priority)))
    }

    fn describe(&self, route: &RouteView) -> String {
        match (route.gateway, route.oif) {
            (Some(gateway), oif) => format!("via {gateway} on {}", self.name(oif)),
            (None, oif) => format!("on {}", self.name(oif)),
        }
    }
}

/// Plans every NIC against `observed`: one entry per NIC, in order.
pub(crate) fn plan(
    nics: &[NicPlan],
    options: &NetOptions,
    observed: &Observed,
) -> Vec<Result<NicPlanned, NetError>> {
    let mut sim = observed.clone();
    let mut fake_index = u32::MAX;
    let mut planned: Vec<_> = nics
        .iter()
        .map(|nic| plan_links(nic, &mut sim, &mut fake_index))
        .collect();
    for (nic, entry) in nics.iter().zip(planned.iter_mut()) {
        if let Ok((planned, oif)) = entry {
            let routes = plan_routes(nic, *oif, &planned.interface, options, &mut sim);
            planned.actions.extend(routes);
        }
    }
    planned
        .into_iter()
        .map(|entry| entry.map(|(planned, _)| planned))
        .collect()
}

/// The one interface with `nic`'s MAC: VLAN and stacked links (which copy their parent's MAC)
/// do not count; when no link has the MAC now, one whose hardware MAC it is will do.
pub(crate) fn find_link<'a>(
    observed: &'a Observed,
    nic: &NicPlan,
) -> Result<&'a LinkView, NetError> {
    let own = |l: &&LinkView| l.kind == LinkKind::Plain;
    let mut found: Vec<&LinkView> = (observed.links.iter().filter(own))
        .filter(|l| l.mac == Some(nic.mac))
        .collect();
    if found.is_empty() {
        found = (observed.links.iter().filter(own))
            .filter(|l| l.permanent_mac == Some(nic.mac))
            .collect();
    }
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(NetError::NoInterface {
            nic: nic.index,
            mac: nic.mac,
            seen: (observed.links.iter())
                .map(|l| match l.mac {
                    Some(mac) => format!("{} {mac}", l.name),
                    None => l.name.clone(),
                })
                .collect(),
        }),
        several => Err(NetError::AmbiguousMac {
            nic: nic.index,
            mac: nic.mac,
            interfaces: several.iter().map(|l| l.name.clone()).collect(),
        }),
    }
}

/// The name for VLAN `id` on `parent`: `parent.id` as `ip link` users expect, else (past the
/// kernel's 15 bytes, or taken) `vlanID`, then `vlanID-N`.
pub(crate) fn vlan_name(parent: &str, id: u16, taken: impl Fn(&str) -> bool) -> String {
    let usable = |name: &String| name.len() <= IFNAME_MAX && !taken(name);
    let preferred = [format!("{parent}.{id}"), format!("vlan{id}")];
    if let Some(name) = preferred.into_iter().find(usable) {
        return name;
    }
    // Terminates: there are finitely many links to be taken.
    (1u32..)
        .map(|n| format!("vlan{id}-{n}"))
        .find(usable)
        .unwrap_or_default()
}

fn validate(nic: &NicPlan) -> Result<(), NetError> {
    let invalid = |reason: String| NetError::InvalidPlan {
        nic: nic.index,
        reason,
    };
    let MacAddr(octets) = nic.mac;
    if octets == [0; 6] || octets[0] & 1 == 1 {
        return Err(invalid(format!("MAC {} is not a NIC's address", nic.mac)));
    }
    if nic.vlan > 4094 {
        return Err(invalid(format!("VLAN {} is out of range 1-4094", nic.vlan)));
    }
    if let Some((address, prefix)) = nic.address {
        if prefix > max_prefix(address) || address.is_multicast() || address.is_unspecified() {
            return Err(invalid(format!("address {address}/{prefix} is not usable")));
        }
        if let Some(gateway) = nic.gateway.filter(|g| g.is_ipv4() != address.is_ipv4()) {
            return Err(invalid(format!(
                "gateway {gateway} is of another family than address {address}"
            )));
        }
    }
    match nic.mtu {
        Some(mtu) if mtu < MIN_MTU => Err(invalid(format!("MTU {mtu} is below {MIN_MTU}"))),
        _ => Ok(()),
    }
}

/// Plans links (VLAN, MTU, up) and the address of one NIC; returns the plan so far and the
/// index of the interface that carries the address (a made-up one for a VLAN to create).
fn plan_links(
    nic: &NicPlan,
    sim: &mut Observed,
    fake_index: &mut u32,
) -> Result<(NicPlanned, u32), NetError> {
    validate(nic)?;
    let base = find_link(sim, nic)?.clone();
    let mut actions = Vec::new();
    let interface = if nic.vlan == 0 {
        if let Some(mtu) = nic.mtu {
            actions.push(set_mtu(sim, base.index, mtu));
        }
        actions.push(link_up(sim, base.index));
        base
    } else {
        // A VLAN's MTU cannot exceed its parent's: raise the parent when asked for more.
        if let Some(mtu) = nic.mtu.filter(|&mtu| mtu > base.mtu) {
            actions.push(set_mtu(sim, base.index, mtu));
        }
        actions.push(link_up(sim, base.index));
        let vlan = vlan_link(sim, &base, nic.vlan, fake_index, &mut actions);
        if let Some(mtu) = nic.mtu {
            actions.push(set_mtu(sim, vlan.index, mtu));
        }
        actions.push(link_up(sim, vlan.index));
        vlan
    };
    if let Some((address, prefix)) = nic.address {
        actions.push(add_address(sim, &interface, address, prefix));
    }
    let planned = NicPlanned {
        index: nic.index,
        interface: interface.name,
        actions,
    };
    Ok((planned, interface.index))
}

/// The VLAN link `id` on `base`: the existing one, or one planned under a free name.
fn vlan_link(
    sim: &mut Observed,
    base: &LinkView,
    id: u16,
    fake_index: &mut u32,
    actions: &mut Vec<Action>,
) -> LinkView {
    let change = Change::CreateVlan {
        parent: base.name.clone(),
        id,
    };
    let wanted = LinkKind::Vlan {
        parent: base.index,
        id,
    };
    if let Some(existing) = sim.links.iter().find(|l| l.kind == wanted) {
        actions.push(Action::new(&existing.name, change, Status::Already));
        return existing.clone();
    }
    let name = vlan_name(&base.name, id, |n| sim.links.iter().any(|l| l.name == n));
    actions.push(Action::new(&name, change, Status::Planned));
    let mtu = sim.link(base.index).map_or(base.mtu, |l| l.mtu);
    let link = LinkView {
        index: *fake_index,
        name,
        mac: base.mac,
        permanent_mac: None,
        up: false,
        carrier: false,
        mtu,
        kind: wanted,
    };
    *fake_index -= 1;
    sim.links.push(link.clone());
    link
}

fn set_mtu(sim: &mut Observed, index: u32, mtu: u32) -> Action {
    let Some(link) = sim.link_mut(index) else {
        return Action::new("?", Change::SetMtu { from: 0, to: mtu }, Status::Planned);
    };
    let change = Change::SetMtu {
        from: link.mtu,
        to: mtu,
    };
    let status = if link.mtu == mtu {
        Status::Already
    } else {
        Status::Planned
    };
    link.mtu = mtu;
    Action::new(&link.name, change, status)
}

fn link_up(sim: &mut Observed, index: u32) -> Action {
    let Some(link) = sim.link_mut(index) else {
        return Action::new("?", Change::LinkUp, Status::Planned);
    };
    let status = if link.up {
        Status::Already
    } else {
        Status::Planned
    };
    link.up = true;
    Action::new(&link.name, Change::LinkUp, status)
}

fn add_address(sim: &mut Observed, link: &LinkView, address: IpAddr, prefix: u8) -> Action {
    let change = Change::AddAddress { address, prefix };
    let wanted = Subnet { address, prefix };
    let same_address = sim.addresses.iter().find(|a| a.subnet.address == address);
    let status = match same_address {
        Some(a) if a.index == link.index && a.subnet == wanted => Status::Already,
        Some(a) if a.index == link.index => Status::Skipped(format!(
            "{} has {}, not /{prefix} as the table says: left as it is",
            link.name, a.subnet
        )),
        Some(a) => Status::Skipped(format!(
            "{address} is already on {}: left there, not added twice",
            sim.name(Some(a.index))
        )),
        None => {
            sim.addresses.push(AddrView {
                index: link.index,
                subnet: wanted,
            });
            let network = Subnet {
                address: wanted.network(),
                prefix,
            };
            sim.routes.push(RouteView {
                destination: network,
                gateway: None,
                oif: Some(link.index),
                priority: 0,
            });
            Status::Planned
        }
    };
    Action::new(&link.name, change, status)
}

/// Plans the routes of one NIC: the default route when asked, then a host route through the
/// gateway to each target off every subnet of the host.
fn plan_routes(
    nic: &NicPlan,
    oif: u32,
    interface: &str,
    options: &NetOptions,
    sim: &mut Observed,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let Some((address, prefix)) = nic.address else {
        return actions;
    };
    let subnet = Subnet { address, prefix };
    let way = Way {
        nic: nic.index,
        interface,
        oif,
        subnet,
        gateway: nic.gateway,
    };
    if let (true, Some(gateway)) = (options.default_route, nic.gateway) {
        let status = default_route(sim, &way, gateway);
        let change = Change::AddRoute {
            to: RouteTo::Default,
            gateway: Some(gateway),
        };
        actions.push(Action::new(interface, change, status));
    }
    let mut targets: Vec<IpAddr> = (nic.targets.iter().copied())
        .filter(|t| t.is_ipv4() == address.is_ipv4() && !subnet.contains(*t))
        .collect();
    targets.dedup();
    for target in targets {
        let status = host_route(sim, &way, target);
        let change = Change::AddRoute {
            to: RouteTo::Host(target),
            gateway: nic.gateway,
        };
        actions.push(Action::new(interface, change, status));
    }
    actions
}

/// The NIC a route goes out of, for route planning.
struct Way<'a> {
    nic: u8,
    interface: &'a str,
    oif: u32,
    subnet: Subnet,
    gateway: Option<IpAddr>,
}

impl Way<'_> {
    /// Why `gateway` cannot be a next hop on this interface, if it cannot: it must be on the
    /// subnet, or (IPv6) link-local.
    fn unusable(&self, gateway: IpAddr) -> Option<String> {
        let link_local = matches!(gateway, IpAddr::V6(g) if g.segments()[0] & 0xffc0 == 0xfe80);
        (!self.subnet.contains(gateway) && !link_local).then(|| {
            format!(
                "gateway {gateway} is not on the subnet of {} ({})",
                self.interface, self.subnet
            )
        })
    }

    fn route(&self, destination: Subnet, gateway: IpAddr) -> RouteView {
        RouteView {
            destination,
            gateway: Some(gateway),
            oif: Some(self.oif),
            priority: 0,
        }
    }
}

fn default_route(sim: &mut Observed, way: &Way, gateway: IpAddr) -> Status {
    if let Some(reason) = way.unusable(gateway) {
        return Status::Skipped(reason);
    }
    // The network of any address with prefix 0 is the family's unspecified address.
    let any = Subnet {
        address: Subnet {
            address: gateway,
            prefix: 0,
        }
        .network(),
        prefix: 0,
    };
    let existing = sim.routes.iter().find(|r| r.destination == any);
    match existing {
        Some(r) if r.gateway == Some(gateway) && r.oif == Some(way.oif) => Status::Already,
        Some(r) => Status::Skipped(format!(
            "a default route exists ({}): left as it is",
            sim.describe(r)
        )),
        None => {
            sim.routes.push(way.route(any, gateway));
            Status::Planned
        }
    }
}

fn host_route(sim: &mut Observed, way: &Way, target: IpAddr) -> Status {
    if let Some(other) = sim.addresses.iter().find(|a| a.subnet.contains(target)) {
        return Status::Skipped(format!(
            "{target} is on the subnet of {} ({}): reached there without a gateway",
            sim.name(Some(other.index)),
            other.subnet
        ));
    }
    let Some(gateway) = way.gateway else {
        return Status::Skipped(format!(
            "{target} is not on the subnet of {} ({}) and the table gives NIC {} no gateway",
            way.interface, way.subnet, way.nic
        ));
    };
    if let Some(reason) = way.unusable(gateway) {
        return Status::Skipped(reason);
    }
    match sim.lookup(target) {
        Some(r) if r.gateway == Some(gateway) && r.oif == Some(way.oif) => return Status::Already,
        Some(r) if r.destination.prefix == max_prefix(target) => {
            return Status::Skipped(format!(
                "a route to {target} exists ({}): left as it is",
                sim.describe(r)
            ));
        }
        _ => {}
    }
    let host = Subnet {
        address: target,
        prefix: max_prefix(target),
    };
    sim.routes.push(way.route(host, gateway));
    Status::Planned
}

/// The longest interface name the kernel takes (IFNAMSIZ less the NUL).
const IFNAME_MAX: usize = 15;

/// The smallest MTU IPv4 allows (RFC 791).
const MIN_MTU: u32 = 68;

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
