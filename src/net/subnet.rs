//! Subnet arithmetic and the one check `boot` warns with: is a target on the subnet of the NIC
//! the table says reaches it, and does the kernel agree on the interface?
//!
//! The field rule behind it: iSCSI traffic is not routed. A target off its NIC's subnet works
//! (through the gateway) but pays a router's latency and its failure modes, so it is worth a
//! warning, not a refusal.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sanshim_ibft::in_subnet;

use super::{NicPlan, RouteInfo};

/// An address with its prefix length, as on an interface: `10.0.2.15/24`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Subnet {
    /// The interface's address (not masked).
    pub address: IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

impl Subnet {
    /// `address/prefix`, or `None` when the prefix is longer than the family's address.
    pub fn new(address: IpAddr, prefix: u8) -> Option<Subnet> {
        (prefix <= max_prefix(address)).then_some(Subnet { address, prefix })
    }

    /// Whether `other` lies in this subnet; never for an address of the other family.
    pub fn contains(&self, other: IpAddr) -> bool {
        in_subnet(other, self.address, self.prefix) == Some(true)
    }

    /// The network address: the address with the host bits cleared.
    pub fn network(&self) -> IpAddr {
        match self.address {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        }
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// The longest prefix of `address`'s family: 32 or 128.
pub fn max_prefix(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Why the way to a target deserves a warning.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum TargetWarning {
    /// The target is not on the NIC's subnet, so its traffic is routed.
    OffSubnet {
        /// The target portal's address.
        target: IpAddr,
        /// The table's index of the NIC.
        nic: u8,
        /// The NIC's address and prefix.
        subnet: Subnet,
        /// The next hop, when the kernel's route is known and has one.
        via: Option<IpAddr>,
        /// The interface the kernel sends it out of, when known.
        interface: Option<String>,
    },
    /// The target is on the NIC's subnet, but the kernel reaches it over another interface
    /// (another interface on the same subnet, or a more specific route).
    OtherInterface {
        /// The target portal's address.
        target: IpAddr,
        /// The table's index of the NIC.
        nic: u8,
        /// The NIC's interface.
        expected: String,
        /// The interface the kernel chose.
        actual: String,
    },
}

impl fmt::Display for TargetWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetWarning::OffSubnet {
                target,
                nic,
                subnet,
                via,
                interface,
            } => {
                write!(
                    f,
                    "target {target} is not on the subnet of NIC {nic} ({subnet})"
                )?;
                match (via, interface) {
                    (Some(via), Some(dev)) => write!(f, " (routed via {via} on {dev})"),
                    (Some(via), None) => write!(f, " (routed via {via})"),
                    (None, Some(dev)) => write!(f, " (the kernel sends it out of {dev})"),
                    (None, None) => write!(f, " (no route to it)"),
                }
            }
            TargetWarning::OtherInterface {
                target,
                nic,
                expected,
                actual,
            } => write!(
                f,
                "target {target} is on the subnet of NIC {nic} ({expected}) but the kernel \
                 reaches it over {actual}"
            ),
        }
    }
}

/// Checks the way to `target`, which the table says NIC `nic` reaches: `None` when the target
/// is on the NIC's subnet and (when `route` and `interface` are known) the kernel sends it out
/// of that NIC's interface. `route` is [`super::route_to`]'s answer; `interface` the NIC's
/// interface from [`super::configure`] (for a NIC with a VLAN, the VLAN interface). A NIC
/// without an address in the table is not checked.
pub fn check_target(
    nic: &NicPlan,
    interface: Option<&str>,
    target: IpAddr,
    route: Option<&RouteInfo>,
) -> Option<TargetWarning> {
    let (address, prefix) = nic.address?;
    let subnet = Subnet::new(address, prefix)?;
    if !subnet.contains(target) {
        return Some(TargetWarning::OffSubnet {
            target,
            nic: nic.index,
            subnet,
            via: route.and_then(|r| r.gateway),
            interface: route.map(|r| r.interface.clone()),
        });
    }
    match (interface, route) {
        (Some(expected), Some(route)) if route.interface != expected => {
            Some(TargetWarning::OtherInterface {
                target,
                nic: nic.index,
                expected: expected.to_string(),
                actual: route.interface.clone(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use sanshim_ibft::MacAddr;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nic(address: &str, prefix: u8) -> NicPlan {
        NicPlan {
            index: 1,
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            address: Some((ip(address), prefix)),
            gateway: None,
            vlan: 0,
            mtu: None,
            targets: Vec::new(),
        }
    }

    fn route(interface: &str, gateway: Option<&str>) -> RouteInfo {
        RouteInfo {
            interface: interface.to_string(),
            gateway: gateway.map(ip),
            source: None,
        }
    }

    #[test]
    fn subnet_contains_and_network() {
        let s = Subnet::new(ip("10.0.2.15"), 24).unwrap();
        assert!(s.contains(ip("10.0.2.2")));
        assert!(!s.contains(ip("10.0.3.2")));
        assert!(!s.contains(ip("::ffff:10.0.2.2")), "no mixing of families");
        assert_eq!(s.network(), ip("10.0.2.0"));
        assert_eq!(s.to_string(), "10.0.2.15/24");
        let all = Subnet::new(ip("10.0.2.15"), 0).unwrap();
        assert!(all.contains(ip("192.0.2.1")));
        assert_eq!(all.network(), ip("0.0.0.0"));
        let host = Subnet::new(ip("10.0.2.15"), 32).unwrap();
        assert!(host.contains(ip("10.0.2.15")) && !host.contains(ip("10.0.2.14")));
        assert_eq!(host.network(), ip("10.0.2.15"));
        let p2p = Subnet::new(ip("10.0.0.1"), 31).unwrap();
        assert!(p2p.contains(ip("10.0.0.0")) && !p2p.contains(ip("10.0.0.2")));
        assert_eq!(Subnet::new(ip("10.0.0.1"), 33), None);
    }

    #[test]
    fn subnet_v6() {
        let s = Subnet::new(ip("fd00:1:2:3::10"), 64).unwrap();
        assert!(s.contains(ip("fd00:1:2:3::1")));
        assert!(!s.contains(ip("fd00:1:2:4::1")));
        assert!(!s.contains(ip("10.0.0.1")));
        assert_eq!(s.network(), ip("fd00:1:2:3::"));
        assert_eq!(Subnet::new(ip("::1"), 129), None);
        assert_eq!(Subnet::new(ip("::1"), 128).unwrap().network(), ip("::1"));
    }

    #[test]
    fn on_subnet_target_over_the_nic_is_fine() {
        let n = nic("10.0.2.15", 24);
        let r = route("eth1", None);
        assert_eq!(
            check_target(&n, Some("eth1"), ip("10.0.2.2"), Some(&r)),
            None
        );
        assert_eq!(check_target(&n, None, ip("10.0.2.2"), None), None);
    }

    #[test]
    fn off_subnet_target_is_named_with_its_route() {
        let n = nic("10.0.2.15", 24);
        let r = route("eth1", Some("10.0.2.1"));
        let w = check_target(&n, Some("eth1"), ip("10.7.0.9"), Some(&r)).unwrap();
        assert_eq!(
            w.to_string(),
            "target 10.7.0.9 is not on the subnet of NIC 1 (10.0.2.15/24) \
             (routed via 10.0.2.1 on eth1)"
        );
        let w = check_target(&n, None, ip("10.7.0.9"), None).unwrap();
        assert!(w.to_string().ends_with("(no route to it)"), "{w}");
    }

    #[test]
    fn on_subnet_target_over_another_interface_is_named() {
        let n = nic("10.0.2.15", 24);
        let r = route("eth0", None);
        let w = check_target(&n, Some("eth1"), ip("10.0.2.2"), Some(&r)).unwrap();
        assert_eq!(
            w.to_string(),
            "target 10.0.2.2 is on the subnet of NIC 1 (eth1) but the kernel reaches it over eth0"
        );
    }

    #[test]
    fn nic_without_address_is_not_checked() {
        let mut n = nic("10.0.2.15", 24);
        n.address = None;
        assert_eq!(check_target(&n, None, ip("10.7.0.9"), None), None);
    }
}
