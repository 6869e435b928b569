//! The I/O half of bring-up: the kernel's state read into an [`Observed`], [`Action`]s carried
//! out, carriers waited for and routes looked up, all over one rtnetlink socket.
//!
//! The socket belongs to the network namespace of the thread that opens it ([`Kernel::open`]);
//! the connection's driver runs as a task of the caller's tokio runtime and stops with the
//! [`Kernel`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};
use rtnetlink::{Handle, LinkUnspec, LinkVlan, RouteMessageBuilder};
use sanshim_ibft::MacAddr;

use super::RouteInfo;
use super::action::{Action, Change, RouteTo};
use super::error::{NetError, kernel_error};
use super::plan::{AddrView, LinkKind, LinkView, Observed, RouteView};
use super::subnet::{Subnet, max_prefix};

/// One rtnetlink connection.
pub(crate) struct Kernel {
    handle: Handle,
    driver: tokio::task::JoinHandle<()>,
}

impl Kernel {
    /// Opens a socket in the calling thread's network namespace and spawns its driver on the
    /// current tokio runtime.
    pub fn open() -> Result<Kernel, NetError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NetError::NoRuntime)?;
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|source| NetError::Open { source })?;
        let driver = runtime.spawn(connection);
        Ok(Kernel { handle, driver })
    }

    /// Links, addresses and main-table routes as they are now.
    pub async fn observe(&self) -> Result<Observed, NetError> {
        Ok(Observed {
            links: self.links().await?,
            addresses: self.addresses().await?,
            routes: self.routes().await?,
        })
    }

    /// Every link.
    pub async fn links(&self) -> Result<Vec<LinkView>, NetError> {
        let failed = |e| query("links", e);
        let mut replies = self.handle.link().get().execute();
        let mut links = Vec::new();
        while let Some(message) = replies.try_next().await.map_err(failed)? {
            links.push(link_view(&message));
        }
        Ok(links)
    }

    async fn addresses(&self) -> Result<Vec<AddrView>, NetError> {
        let failed = |e| query("addresses", e);
        let mut replies = self.handle.address().get().execute();
        let mut addresses = Vec::new();
        while let Some(message) = replies.try_next().await.map_err(failed)? {
            addresses.extend(addr_view(&message));
        }
        Ok(addresses)
    }

    async fn routes(&self) -> Result<Vec<RouteView>, NetError> {
        let mut routes = Vec::new();
        let families = [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ];
        for (i, request) in families.into_iter().enumerate() {
            let mut replies = self.handle.route().get(request).execute();
            loop {
                match replies.try_next().await {
                    Ok(Some(message)) => routes.extend(route_view(&message)),
                    Ok(None) => break,
                    // A kernel without IPv6 has no IPv6 routes to list.
                    Err(e) if i == 1 && errno(&e) == Some(libc::EAFNOSUPPORT) => break,
                    Err(e) => return Err(query("routes", e)),
                }
            }
        }
        Ok(routes)
    }

    /// Carries out `action` (a planned one) for NIC `nic`; returns how long the kernel took.
    ///
    /// # Errors
    /// [`NetError::Step`] with the kernel's answer, or [`NetError::Vanished`] when an
    /// interface it names is gone.
    pub async fn apply(&self, nic: u8, action: &Action) -> Result<Duration, NetError> {
        let started = Instant::now();
        let link = self.handle.link();
        let result = match &action.change {
            Change::CreateVlan { parent, id } => {
                let parent = self.index(nic, parent).await?;
                let message = LinkVlan::new(&action.interface, parent, *id).build();
                link.add(message).execute().await
            }
            Change::SetMtu { to, .. } => {
                let index = self.index(nic, &action.interface).await?;
                let message = LinkUnspec::new_with_index(index).mtu(*to).build();
                link.set(message).execute().await
            }
            Change::LinkUp => {
                let index = self.index(nic, &action.interface).await?;
                let message = LinkUnspec::new_with_index(index).up().build();
                link.set(message).execute().await
            }
            Change::AddAddress { address, prefix } => {
                let index = self.index(nic, &action.interface).await?;
                let request = self.handle.address().add(index, *address, *prefix);
                request.execute().await
            }
            Change::AddRoute { to, gateway } => {
                let index = self.index(nic, &action.interface).await?;
                match route_message(*to, *gateway, index) {
                    Some(message) => self.handle.route().add(message).execute().await,
                    None => Err(rtnetlink::Error::InvalidNla(format!(
                        "no usable gateway for {}",
                        action.change
                    ))),
                }
            }
        };
        result.map_err(|e| NetError::Step {
            nic,
            interface: action.interface.clone(),
            change: action.change.clone(),
            source: kernel_error(e),
        })?;
        Ok(started.elapsed())
    }

    /// Polls until each of `interfaces` has carrier or `timeout` passes; returns, per
    /// interface, when its carrier was first seen.
    pub async fn wait_carrier(
        &self,
        interfaces: &[String],
        timeout: Duration,
    ) -> Result<Vec<Option<Instant>>, NetError> {
        let started = Instant::now();
        let mut seen = vec![None; interfaces.len()];
        loop {
            let links = self.links().await?;
            let now = Instant::now();
            for (name, seen) in interfaces.iter().zip(seen.iter_mut()) {
                let up = links.iter().any(|l| &l.name == name && l.carrier);
                if seen.is_none() && up {
                    *seen = Some(now);
                }
            }
            if seen.iter().all(Option::is_some) || now - started >= timeout {
                return Ok(seen);
            }
            tokio::time::sleep(CARRIER_POLL).await;
        }
    }

    /// The kernel's answer to "how do I reach `target`" (RTM_GETROUTE, as `ip route get`).
    pub async fn route_to(&self, target: IpAddr) -> Result<RouteInfo, NetError> {
        let mut request = RouteMessage::default();
        request.header.address_family = family(target);
        request.header.destination_prefix_length = max_prefix(target);
        (request.attributes).push(RouteAttribute::Destination(target.into()));
        let mut replies = self.handle.route().get(request).execute();
        let reply = match replies.try_next().await {
            Ok(Some(reply)) => reply,
            Ok(None) => return Err(unreachable(target, "the kernel did not answer")),
            Err(e) => {
                let reason = match errno(&e) {
                    Some(libc::ENETUNREACH | libc::EHOSTUNREACH) => {
                        "no interface has an address on its subnet and no route leads there; \
                         check the NIC's address and the table's gateway"
                    }
                    Some(libc::EINVAL) => "a blackhole route covers it (see `ip route`)",
                    Some(libc::EACCES) => "a prohibit route covers it (see `ip route`)",
                    _ => return Err(query("routes", e)),
                };
                return Err(unreachable(target, reason));
            }
        };
        let mut info = RouteInfo {
            interface: String::new(),
            gateway: None,
            source: None,
        };
        let mut oif = None;
        for attribute in &reply.attributes {
            match attribute {
                RouteAttribute::Oif(index) => oif = Some(*index),
                RouteAttribute::Gateway(a) => info.gateway = ip(a),
                RouteAttribute::PrefSource(a) => info.source = ip(a),
                _ => {}
            }
        }
        // Without an interface there is no way out (other route types answer with an errno).
        let Some(index) = oif else {
            let kind = reply.header.kind;
            let reason = format!("the kernel's route (of type {kind:?}) has no interface");
            return Err(unreachable(target, &reason));
        };
        let links = self.links().await?;
        let link = links.into_iter().find(|l| l.index == index);
        info.interface = link.map_or_else(|| format!("#{index}"), |l| l.name);
        Ok(info)
    }

    /// The index of interface `name`.
    async fn index(&self, nic: u8, name: &str) -> Result<u32, NetError> {
        let request = self.handle.link().get().match_name(name);
        match request.execute().try_next().await {
            Ok(Some(message)) => Ok(message.header.index),
            Ok(None) => Err(vanished(nic, name)),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Err(vanished(nic, name)),
            Err(e) => Err(query("links", e)),
        }
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The route message adding `to` through `gateway` out of link `index`; `None` without a
/// gateway or across families. (The family-generic builder of rtnetlink 0.24 neither takes its
/// family from the gateway nor refuses an IPv6 gateway for an IPv4 route: it sends RTA_VIA.)
fn route_message(to: RouteTo, gateway: Option<IpAddr>, index: u32) -> Option<RouteMessage> {
    let host = match to {
        RouteTo::Default => None,
        RouteTo::Host(host) => Some(host),
    };
    match (host, gateway?) {
        (None | Some(IpAddr::V4(_)), IpAddr::V4(gateway)) => {
            let mut builder = RouteMessageBuilder::<Ipv4Addr>::new();
            if let Some(IpAddr::V4(host)) = host {
                builder = builder.destination_prefix(host, 32);
            }
            Some(builder.gateway(gateway).output_interface(index).build())
        }
        (None | Some(IpAddr::V6(_)), IpAddr::V6(gateway)) => {
            let mut builder = RouteMessageBuilder::<Ipv6Addr>::new();
            if let Some(IpAddr::V6(host)) = host {
                builder = builder.destination_prefix(host, 128);
            }
            Some(builder.gateway(gateway).output_interface(index).build())
        }
        _ => None,
    }
}

/// What bring-up needs of a link message.
pub(crate) fn link_view(message: &LinkMessage) -> LinkView {
    let mut link = LinkView {
        index: message.header.index,
        name: String::new(),
        mac: None,
        permanent_mac: None,
        up: message.header.flags.contains(LinkFlags::Up),
        carrier: message.header.flags.contains(LinkFlags::LowerUp),
        mtu: 0,
        kind: LinkKind::Plain,
    };
    let mut parent = None;
    let mut vlan_id = None;
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Address(a) => link.mac = mac(a),
            LinkAttribute::PermAddress(a) => link.permanent_mac = mac(a),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::Link(index) => parent = Some(*index),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(kind) if is_stacked(kind) => link.kind = LinkKind::Stacked,
                        LinkInfo::Data(InfoData::Vlan(data)) => {
                            vlan_id = data.iter().find_map(|d| match d {
                                InfoVlan::Id(id) => Some(*id),
                                _ => None,
                            });
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if let (Some(parent), Some(id)) = (parent, vlan_id) {
        link.kind = LinkKind::Vlan { parent, id };
    }
    link
}

/// The address of an address message, when it has one.
pub(crate) fn addr_view(message: &AddressMessage) -> Option<AddrView> {
    // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer's on point-to-point
    // links); IPv6 sends only IFA_ADDRESS.
    let local = message.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = local.or_else(|| {
        message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })?;
    Some(AddrView {
        index: message.header.index,
        subnet: Subnet::new(address, message.header.prefix_len)?,
    })
}

/// A unicast route of the main table, when the message is one.
pub(crate) fn route_view(message: &RouteMessage) -> Option<RouteView> {
    let header = &message.header;
    let mut table = u32::from(header.table);
    let mut destination = None;
    let mut route = RouteView {
        destination: Subnet::new(unspecified(header.address_family)?, 0)?,
        gateway: None,
        oif: None,
        priority: 0,
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => destination = ip(a),
            RouteAttribute::Gateway(a) => route.gateway = ip(a),
            RouteAttribute::Oif(index) => route.oif = Some(*index),
            RouteAttribute::Priority(p) => route.priority = *p,
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) || header.kind != RouteType::Unicast {
        return None;
    }
    if let Some(destination) = destination {
        let prefix = header.destination_prefix_length;
        route.destination = Subnet::new(Subnet::new(destination, prefix)?.network(), prefix)?;
    }
    Some(route)
}

fn is_stacked(kind: &InfoKind) -> bool {
    matches!(
        kind,
        InfoKind::MacVlan | InfoKind::MacVtap | InfoKind::IpVlan | InfoKind::IpVtap
    )
}

fn mac(bytes: &[u8]) -> Option<MacAddr> {
    <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
}

fn ip(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

fn family(address: IpAddr) -> AddressFamily {
    match address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn unspecified(family: AddressFamily) -> Option<IpAddr> {
    match family {
        AddressFamily::Inet => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        AddressFamily::Inet6 => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        _ => None,
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(message) => Some(message.raw_code().abs()),
        _ => None,
    }
}

fn query(what: &'static str, e: rtnetlink::Error) -> NetError {
    NetError::Query {
        what,
        source: kernel_error(e),
    }
}

fn unreachable(target: IpAddr, reason: &str) -> NetError {
    NetError::Unreachable {
        target,
        reason: reason.to_string(),
    }
}

fn vanished(nic: u8, interface: &str) -> NetError {
    NetError::Vanished {
        nic,
        interface: interface.to_string(),
    }
}

/// How often the carrier wait looks at the links: fine enough to report VM carriers
/// (0.1–1.8 s after link up) to the tenth of a second.
const CARRIER_POLL: Duration = Duration::from_millis(25);

#[cfg(test)]
mod tests {
    use rtnetlink::packet_route::route::RouteProtocol;

    use super::*;

    #[test]
    fn link_messages_give_name_mac_flags_and_vlan() {
        let mut message = LinkMessage::default();
        message.header.index = 7;
        message.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
        message.attributes = vec![
            LinkAttribute::IfName("eth1.100".into()),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]),
            LinkAttribute::Mtu(1500),
            LinkAttribute::Link(3),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Vlan),
                LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(100)])),
            ]),
        ];
        let link = link_view(&message);
        assert_eq!(link.name, "eth1.100");
        assert_eq!(link.mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert!(link.up && link.carrier);
        assert_eq!(link.mtu, 1500);
        assert_eq!(link.kind, LinkKind::Vlan { parent: 3, id: 100 });

        // A veth names its peer with IFLA_LINK too; without VLAN data it stays plain.
        message.attributes = vec![
            LinkAttribute::IfName("veth0".into()),
            LinkAttribute::Link(9),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
        ];
        message.header.flags = LinkFlags::empty();
        let link = link_view(&message);
        assert_eq!(link.kind, LinkKind::Plain);
        assert!(!link.up && !link.carrier);
        assert_eq!(link.mac, None);

        message.attributes = vec![LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::MacVlan,
        )])];
        assert_eq!(link_view(&message).kind, LinkKind::Stacked);
    }

    #[test]
    fn vlan_create_message_names_parent_and_id() {
        let message = LinkVlan::new("eth1.100", 3, 100).build();
        assert!(
            message
                .attributes
                .contains(&LinkAttribute::IfName("eth1.100".into()))
        );
        assert!(message.attributes.contains(&LinkAttribute::Link(3)));
        let infos = message.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => Some(infos.clone()),
            _ => None,
        });
        let infos = infos.unwrap();
        assert!(infos.contains(&LinkInfo::Kind(InfoKind::Vlan)));
        assert!(infos.contains(&LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(100)]))));
    }

    #[test]
    fn address_messages_prefer_local() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut message = AddressMessage::default();
        message.header.index = 4;
        message.header.prefix_len = 24;
        message.attributes = vec![
            AddressAttribute::Address(ip("10.0.0.2")),
            AddressAttribute::Local(ip("10.0.0.1")),
        ];
        let view = addr_view(&message).unwrap();
        assert_eq!(view.index, 4);
        assert_eq!(view.subnet.to_string(), "10.0.0.1/24");
        message.attributes = vec![AddressAttribute::Address(ip("fd00::1"))];
        message.header.prefix_len = 64;
        assert_eq!(
            addr_view(&message).unwrap().subnet.to_string(),
            "fd00::1/64"
        );
        message.header.prefix_len = 200;
        assert_eq!(addr_view(&message), None);
    }

    #[test]
    fn route_messages_keep_main_table_unicast() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let default = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway("10.0.0.254".parse().unwrap())
            .output_interface(4)
            .priority(100)
            .build();
        let view = route_view(&default).unwrap();
        assert_eq!(view.destination.to_string(), "0.0.0.0/0");
        assert_eq!(view.gateway, Some(ip("10.0.0.254")));
        assert_eq!((view.oif, view.priority), (Some(4), 100));

        let mut connected = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(ip("10.0.0.0"), 24)
            .unwrap()
            .output_interface(4)
            .protocol(RouteProtocol::Kernel)
            .build();
        assert_eq!(
            route_view(&connected).unwrap().destination.to_string(),
            "10.0.0.0/24"
        );
        connected.header.table = 255;
        assert_eq!(route_view(&connected), None, "local table");
        connected.header.table = RouteHeader::RT_TABLE_MAIN;
        connected.header.kind = RouteType::Broadcast;
        assert_eq!(route_view(&connected), None, "not unicast");
    }

    #[test]
    fn route_messages_to_add() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let host = route_message(RouteTo::Host(ip("10.7.0.9")), Some(ip("10.0.0.254")), 4);
        let host = route_view(&host.unwrap()).unwrap();
        assert_eq!(host.destination.to_string(), "10.7.0.9/32");
        assert_eq!((host.gateway, host.oif), (Some(ip("10.0.0.254")), Some(4)));
        let default = route_message(RouteTo::Default, Some(ip("fd00::1")), 4).unwrap();
        assert_eq!(default.header.address_family, AddressFamily::Inet6);
        assert_eq!(route_message(RouteTo::Default, None, 4), None);
        let mixed = route_message(RouteTo::Host(ip("10.7.0.9")), Some(ip("fd00::1")), 4);
        assert_eq!(mixed, None);
    }
}
