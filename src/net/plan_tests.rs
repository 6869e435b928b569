//! Plan diffing on made-up kernel states: what is present decides which actions remain.

use std::net::IpAddr;

use sanshim_ibft::{ChapType, Lun, Nic, Origin, Target};

use super::*;

const ETH0: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x10];
const ETH1: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x11];
const ETH2: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x12];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn subnet(s: &str) -> Subnet {
    let (address, prefix) = s.split_once('/').unwrap();
    Subnet::new(ip(address), prefix.parse().unwrap()).unwrap()
}

fn link(index: u32, name: &str, mac: [u8; 6]) -> LinkView {
    LinkView {
        index,
        name: name.to_string(),
        mac: Some(MacAddr(mac)),
        permanent_mac: None,
        up: false,
        carrier: false,
        mtu: 1500,
        kind: LinkKind::Plain,
    }
}

fn route(destination: &str, gateway: Option<&str>, oif: u32) -> RouteView {
    RouteView {
        destination: subnet(destination),
        gateway: gateway.map(ip),
        oif: Some(oif),
        priority: 0,
    }
}

/// lo; eth0 up on 192.168.1.10/24 with the host's default route; eth1 and eth2 down and bare.
fn host() -> Observed {
    let mut lo = link(1, "lo", [0; 6]);
    lo.up = true;
    let mut eth0 = link(2, "eth0", ETH0);
    eth0.up = true;
    eth0.carrier = true;
    Observed {
        links: vec![lo, eth0, link(3, "eth1", ETH1), link(4, "eth2", ETH2)],
        addresses: vec![
            AddrView {
                index: 1,
                subnet: subnet("127.0.0.1/8"),
            },
            AddrView {
                index: 2,
                subnet: subnet("192.168.1.10/24"),
            },
        ],
        routes: vec![
            route("0.0.0.0/0", Some("192.168.1.1"), 2),
            route("192.168.1.0/24", None, 2),
        ],
    }
}

/// NIC 0 on eth1: 10.9.1.1/24, gateway 10.9.1.254, one target on its subnet.
fn nic() -> NicPlan {
    NicPlan {
        index: 0,
        mac: MacAddr(ETH1),
        address: Some((ip("10.9.1.1"), 24)),
        gateway: Some(ip("10.9.1.254")),
        vlan: 0,
        mtu: None,
        targets: vec![ip("10.9.1.2")],
    }
}

fn plan_one(nic: &NicPlan, options: &NetOptions, observed: &Observed) -> NicPlanned {
    let mut all = plan(std::slice::from_ref(nic), options, observed);
    all.remove(0).unwrap()
}

fn texts(planned: &NicPlanned) -> Vec<String> {
    planned.actions.iter().map(ToString::to_string).collect()
}

/// `observed` after `planned` is done: the links, addresses and routes it adds.
fn after(observed: &Observed, nics: &[NicPlan], options: &NetOptions) -> Observed {
    let mut sim = observed.clone();
    let mut fake = 1000;
    let mut planned: Vec<_> = (nics.iter())
        .map(|n| plan_links(n, &mut sim, &mut fake).unwrap())
        .collect();
    for (n, (p, oif)) in nics.iter().zip(planned.iter_mut()) {
        plan_routes(n, *oif, &p.interface, options, &mut sim);
    }
    sim
}

#[test]
fn bare_nic_gets_link_up_and_address_and_nothing_else() {
    let planned = plan_one(&nic(), &NetOptions::default(), &host());
    assert_eq!(planned.index, 0);
    assert_eq!(planned.interface, "eth1");
    assert_eq!(
        texts(&planned),
        ["eth1: link up: to do", "eth1: address 10.9.1.1/24: to do"],
        "no MTU, no route for an on-subnet target, no default route"
    );
}

#[test]
fn configured_nic_is_already_so_throughout() {
    let options = NetOptions {
        default_route: true,
        ..NetOptions::default()
    };
    let mut n = nic();
    n.targets.push(ip("10.7.0.9"));
    n.mtu = Some(9000);
    let mut observed = host();
    observed.routes.retain(|r| r.destination.prefix != 0);
    let done = after(&observed, std::slice::from_ref(&n), &options);
    let planned = plan_one(&n, &options, &done);
    assert!(
        planned.actions.iter().all(Action::is_already),
        "{:#?}",
        texts(&planned)
    );
    assert_eq!(planned.actions.len(), 5, "{:#?}", texts(&planned));
}

#[test]
fn address_with_another_prefix_is_left_alone() {
    let mut observed = host();
    observed.addresses.push(AddrView {
        index: 3,
        subnet: subnet("10.9.1.1/16"),
    });
    let planned = plan_one(&nic(), &NetOptions::default(), &observed);
    assert_eq!(
        texts(&planned)[1],
        "eth1: address 10.9.1.1/24: skipped: eth1 has 10.9.1.1/16, not /24 as the table says: \
         left as it is"
    );
}

#[test]
fn address_on_another_interface_is_not_added_twice() {
    let mut observed = host();
    observed.addresses.push(AddrView {
        index: 2,
        subnet: subnet("10.9.1.1/24"),
    });
    let planned = plan_one(&nic(), &NetOptions::default(), &observed);
    assert_eq!(
        texts(&planned)[1],
        "eth1: address 10.9.1.1/24: skipped: 10.9.1.1 is already on eth0: left there, not \
         added twice"
    );
}

#[test]
fn mtu_only_when_asked() {
    let mut n = nic();
    n.mtu = Some(9000);
    let planned = plan_one(&n, &NetOptions::default(), &host());
    assert_eq!(texts(&planned)[0], "eth1: MTU 1500 -> 9000: to do");
    n.mtu = Some(1500);
    let planned = plan_one(&n, &NetOptions::default(), &host());
    assert_eq!(texts(&planned)[0], "eth1: MTU 1500 -> 1500: already so");
}

#[test]
fn vlan_is_created_on_the_nic_and_carries_the_address() {
    let mut n = nic();
    n.vlan = 100;
    let planned = plan_one(&n, &NetOptions::default(), &host());
    assert_eq!(planned.interface, "eth1.100");
    assert_eq!(
        texts(&planned),
        [
            "eth1: link up: to do",
            "eth1.100: VLAN 100 on eth1: to do",
            "eth1.100: link up: to do",
            "eth1.100: address 10.9.1.1/24: to do",
        ]
    );
}

#[test]
fn vlan_mtu_raises_the_parent_first() {
    let mut n = nic();
    n.vlan = 100;
    n.mtu = Some(9000);
    let planned = plan_one(&n, &NetOptions::default(), &host());
    assert_eq!(texts(&planned)[0], "eth1: MTU 1500 -> 9000: to do");
    // A new VLAN link starts with its parent's MTU.
    assert_eq!(texts(&planned)[3], "eth1.100: MTU 9000 -> 9000: already so");

    let mut observed = host();
    observed.links[2].mtu = 9000;
    n.mtu = Some(1400);
    let planned = plan_one(&n, &NetOptions::default(), &observed);
    assert_eq!(
        texts(&planned)[..3],
        [
            "eth1: link up: to do",
            "eth1.100: VLAN 100 on eth1: to do",
            "eth1.100: MTU 9000 -> 1400: to do",
        ],
        "the parent is never lowered"
    );
}

#[test]
fn existing_vlan_link_is_reused_whatever_its_name() {
    let mut observed = host();
    observed.links[2].up = true;
    let mut vlan = link(9, "storage", ETH1);
    vlan.kind = LinkKind::Vlan { parent: 3, id: 100 };
    vlan.up = true;
    observed.links.push(vlan);
    observed.addresses.push(AddrView {
        index: 9,
        subnet: subnet("10.9.1.1/24"),
    });
    let mut n = nic();
    n.vlan = 100;
    let planned = plan_one(&n, &NetOptions::default(), &observed);
    assert_eq!(planned.interface, "storage");
    assert!(planned.actions.iter().all(Action::is_already));
    assert_eq!(texts(&planned)[1], "storage: VLAN 100 on eth1: already so");
}

#[test]
fn vlan_names_fit_and_do_not_collide() {
    assert_eq!(vlan_name("eth1", 100, |_| false), "eth1.100");
    assert_eq!(vlan_name("enx0123456789ab", 100, |_| false), "vlan100");
    assert_eq!(vlan_name("eth1", 7, |n| n == "eth1.7"), "vlan7");
    let taken = |n: &str| ["eth1.7", "vlan7", "vlan7-1"].contains(&n);
    assert_eq!(vlan_name("eth1", 7, taken), "vlan7-2");
}

#[test]
fn nic_is_found_by_its_own_mac_not_its_vlans() {
    let mut observed = host();
    let mut vlan = link(9, "eth1.5", ETH1);
    vlan.kind = LinkKind::Vlan { parent: 3, id: 5 };
    observed.links.push(vlan);
    let mut macvlan = link(10, "mv0", ETH1);
    macvlan.kind = LinkKind::Stacked;
    observed.links.push(macvlan);
    assert_eq!(find_link(&observed, &nic()).unwrap().name, "eth1");
}

#[test]
fn nic_with_a_changed_mac_is_found_by_its_hardware_mac() {
    let mut observed = host();
    observed.links[2].mac = Some(MacAddr([2, 0, 0, 0, 0, 0x77]));
    observed.links[2].permanent_mac = Some(MacAddr(ETH1));
    assert_eq!(find_link(&observed, &nic()).unwrap().name, "eth1");
}

#[test]
fn mac_on_a_bridge_and_its_port_is_refused() {
    let mut observed = host();
    observed.links.push(link(9, "br0", ETH1));
    let e = find_link(&observed, &nic()).unwrap_err();
    assert!(
        matches!(&e, NetError::AmbiguousMac { interfaces, .. } if interfaces == &["eth1", "br0"])
    );
    assert!(e.to_string().contains("--no-net"), "{e}");
}

#[test]
fn missing_mac_is_an_error_for_that_nic_only() {
    let mut lost = nic();
    lost.index = 1;
    lost.mac = MacAddr([2, 0, 0, 0, 0, 0x99]);
    let all = plan(&[lost, nic()], &NetOptions::default(), &host());
    let e = all[0].as_ref().unwrap_err();
    assert!(matches!(e, NetError::NoInterface { nic: 1, .. }));
    assert!(e.to_string().contains("eth1 52:54:00:00:00:11"), "{e}");
    assert_eq!(e.nic(), Some(1));
    assert!(all[1].is_ok());
}

#[test]
fn invalid_plans_are_refused_with_the_reason() {
    type Spoil = fn(&mut NicPlan);
    let cases: [(Spoil, &str); 6] = [
        (
            |n| n.mac = MacAddr([0; 6]),
            "MAC 00:00:00:00:00:00 is not a NIC's address",
        ),
        (
            |n| n.mac = MacAddr([1, 0, 0x5e, 0, 0, 1]),
            "is not a NIC's address",
        ),
        (|n| n.vlan = 4095, "VLAN 4095 is out of range 1-4094"),
        (
            |n| n.address = Some((ip("10.9.1.1"), 33)),
            "address 10.9.1.1/33 is not usable",
        ),
        (
            |n| n.gateway = Some(ip("fd00::1")),
            "gateway fd00::1 is of another family",
        ),
        (|n| n.mtu = Some(40), "MTU 40 is below 68"),
    ];
    for (change, reason) in cases {
        let mut n = nic();
        change(&mut n);
        let all = plan(&[n], &NetOptions::default(), &host());
        let e = all[0].as_ref().unwrap_err().to_string();
        assert!(e.starts_with("NIC 0: ") && e.contains(reason), "{e}");
    }
}

#[test]
fn off_subnet_target_gets_a_host_route_through_the_gateway() {
    let mut n = nic();
    n.targets = vec![
        ip("10.9.1.2"),
        ip("10.7.0.9"),
        ip("10.7.0.9"),
        ip("fd00::9"),
    ];
    let planned = plan_one(&n, &NetOptions::default(), &host());
    assert_eq!(
        texts(&planned)[2..],
        ["eth1: route to 10.7.0.9 via 10.9.1.254: to do"],
        "one route, none for the on-subnet target or the other family"
    );
}

#[test]
fn host_route_is_skipped_when_it_cannot_or_need_not_be() {
    let mut n = nic();
    n.targets = vec![ip("10.7.0.9")];
    n.gateway = None;
    let planned = plan_one(&n, &NetOptions::default(), &host());
    assert_eq!(
        texts(&planned)[2],
        "eth1: route to 10.7.0.9: skipped: 10.7.0.9 is not on the subnet of eth1 \
         (10.9.1.1/24) and the table gives NIC 0 no gateway"
    );

    n.gateway = Some(ip("10.9.2.254"));
    let planned = plan_one(&n, &NetOptions::default(), &host());
    assert!(
        texts(&planned)[2]
            .ends_with("skipped: gateway 10.9.2.254 is not on the subnet of eth1 (10.9.1.1/24)"),
        "{:?}",
        texts(&planned)
    );

    n.gateway = Some(ip("10.9.1.254"));
    let mut observed = host();
    observed
        .routes
        .push(route("10.7.0.9/32", Some("192.168.1.1"), 2));
    let planned = plan_one(&n, &NetOptions::default(), &observed);
    assert!(
        texts(&planned)[2].ends_with(
            "skipped: a route to 10.7.0.9 exists (via 192.168.1.1 on eth0): left as it is"
        ),
        "{:?}",
        texts(&planned)
    );

    // A route through the same gateway and interface already covers it.
    let mut observed = host();
    observed
        .routes
        .push(route("10.7.0.0/16", Some("10.9.1.254"), 3));
    let planned = plan_one(&n, &NetOptions::default(), &observed);
    assert_eq!(
        texts(&planned)[2],
        "eth1: route to 10.7.0.9 via 10.9.1.254: already so"
    );
}

#[test]
fn target_on_another_nics_subnet_is_reached_directly() {
    let mut first = nic();
    first.targets = vec![ip("10.9.2.2")];
    let second = NicPlan {
        index: 1,
        mac: MacAddr(ETH2),
        address: Some((ip("10.9.2.1"), 24)),
        gateway: None,
        vlan: 0,
        mtu: None,
        targets: vec![ip("10.9.2.2")],
    };
    let all = plan(&[first, second], &NetOptions::default(), &host());
    let first = all[0].as_ref().unwrap();
    assert_eq!(
        texts(first)[2],
        "eth1: route to 10.9.2.2 via 10.9.1.254: skipped: 10.9.2.2 is on the subnet of eth2 \
         (10.9.2.1/24): reached there without a gateway",
        "the second NIC's address counts although it is planned later"
    );
    assert_eq!(all[1].as_ref().unwrap().actions.len(), 2);
}

#[test]
fn default_route_only_when_asked_and_none_exists() {
    let asked = NetOptions {
        default_route: true,
        ..NetOptions::default()
    };
    let planned = plan_one(&nic(), &NetOptions::default(), &host());
    assert!(!texts(&planned).iter().any(|t| t.contains("default")));

    let planned = plan_one(&nic(), &asked, &host());
    assert_eq!(
        texts(&planned)[2],
        "eth1: default route via 10.9.1.254: skipped: a default route exists (via 192.168.1.1 \
         on eth0): left as it is"
    );

    let mut observed = host();
    observed.routes.retain(|r| r.destination.prefix != 0);
    let mut first = nic();
    first.targets = vec![ip("10.7.0.9")];
    let second = NicPlan {
        index: 1,
        mac: MacAddr(ETH2),
        address: Some((ip("10.9.2.1"), 24)),
        gateway: Some(ip("10.9.2.254")),
        vlan: 0,
        mtu: None,
        targets: Vec::new(),
    };
    let all = plan(&[first, second], &asked, &observed);
    assert_eq!(
        texts(all[0].as_ref().unwrap())[2..],
        [
            "eth1: default route via 10.9.1.254: to do",
            "eth1: route to 10.7.0.9 via 10.9.1.254: already so",
        ],
        "the new default route covers the target"
    );
    assert_eq!(
        texts(all[1].as_ref().unwrap())[2],
        "eth2: default route via 10.9.2.254: skipped: a default route exists (via 10.9.1.254 \
         on eth1): left as it is",
        "one default route, not two"
    );
}

#[test]
fn ipv6_link_local_gateway_is_usable() {
    let mut n = nic();
    n.address = Some((ip("fd00:9:1::1"), 64));
    n.gateway = Some(ip("fe80::1"));
    n.targets = vec![ip("fd00:7::9")];
    let planned = plan_one(&n, &NetOptions::default(), &host());
    assert_eq!(
        texts(&planned)[2],
        "eth1: route to fd00:7::9 via fe80::1: to do"
    );
}

#[test]
fn lookup_takes_the_longest_prefix_then_the_lowest_priority() {
    let mut observed = host();
    observed
        .routes
        .push(route("10.7.0.0/16", Some("192.168.1.2"), 2));
    let mut worse = route("10.7.0.0/24", Some("192.168.1.3"), 2);
    worse.priority = 200;
    let mut better = route("10.7.0.0/24", Some("192.168.1.4"), 2);
    better.priority = 100;
    observed.routes.extend([worse, better]);
    assert_eq!(
        observed.lookup(ip("10.7.0.9")).unwrap().gateway,
        Some(ip("192.168.1.4"))
    );
    assert_eq!(
        observed.lookup(ip("10.7.1.9")).unwrap().gateway,
        Some(ip("192.168.1.2"))
    );
    assert_eq!(
        observed.lookup(ip("172.16.0.1")).unwrap().gateway,
        Some(ip("192.168.1.1"))
    );
    assert_eq!(observed.lookup(ip("fd00::1")), None);
}

#[test]
fn plan_from_the_table() {
    let table_nic = Nic {
        index: 1,
        flags: 3,
        ip: Some(ip("10.9.1.1")),
        prefix: 24,
        origin: Origin::DHCP,
        gateway: Some(ip("10.9.1.254")),
        primary_dns: None,
        secondary_dns: None,
        dhcp: None,
        vlan: 100,
        mac: MacAddr(ETH1),
        pci_bdf: None,
        hostname: None,
    };
    let target = |nic: u8, address: Option<&str>| Target {
        index: 0,
        flags: 3,
        ip: address.map(ip),
        port: 3260,
        lun: Lun::from_number(1),
        chap_type: ChapType::NONE,
        nic,
        name: Some("iqn.2026-11.test:t".into()),
        chap_user: None,
        chap_secret: None,
        reverse_chap_user: None,
        reverse_chap_secret: None,
    };
    let targets = [
        target(1, Some("10.9.1.2")),
        target(0, Some("10.9.0.2")),
        target(1, None),
        target(1, Some("10.7.0.9")),
    ];
    let plan = NicPlan::from_ibft(&table_nic, &targets);
    assert_eq!(
        plan,
        NicPlan {
            index: 1,
            mac: MacAddr(ETH1),
            address: Some((ip("10.9.1.1"), 24)),
            gateway: Some(ip("10.9.1.254")),
            vlan: 100,
            mtu: None,
            targets: vec![ip("10.9.1.2"), ip("10.7.0.9")],
        }
    );
}
