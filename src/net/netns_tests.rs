//! Bring-up against the real kernel, in network namespaces each test creates and deletes.
//!
//! ```text
//!   host namespace (code under test)          peer namespace
//!   n0 02:5a:00:00:00:01 ───── veth ───── t0 10.9.1.2/24
//!   n1 02:5a:00:00:00:03 ───── veth ───── t1 10.9.3.2/24
//!   o0 192.168.77.1/24 ─────── veth ───── o1           (not in any plan: must stay as it is)
//! ```
//!
//! rtnetlink acts in the namespace of the calling thread, so the code under test runs on a
//! thread of its own that first enters the host namespace (`setns`), with a current-thread
//! tokio runtime. IPv6 is off in both namespaces, so the kernel's state holds only what the
//! tests make and comparisons of it before and after are exact. Without root or `ip` the tests
//! print `SKIPPED: reason` and pass, except under CI=true, where they fail.

use std::fs::File;
use std::future::Future;
use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use sanshim_ibft::MacAddr;
use serde_json::Value;

use super::{
    Change, NetError, NetOptions, NicOutcome, NicPlan, RouteTo, Status, Subnet, TargetWarning,
    check_target, configure, plan_actions, route_to,
};

/// A [`Bed`], or a return from the test with `SKIPPED: reason` (a panic under CI=true).
macro_rules! bed {
    () => {
        match Bed::new() {
            Ok(bed) => bed,
            Err(reason) if in_ci() => panic!("CI=true and {reason}"),
            Err(reason) => {
                eprintln!("SKIPPED: {reason}");
                return;
            }
        }
    };
}

const N0: [u8; 6] = [0x02, 0x5a, 0, 0, 0, 0x01];
const N1: [u8; 6] = [0x02, 0x5a, 0, 0, 0, 0x03];

#[test]
fn configures_a_nic_and_a_second_run_changes_nothing() {
    let bed = bed!();
    let n0_mtu = bed.mtu("n0");
    let untouched = bed.show_link("o0");
    let before = bed.state();

    let plans = vec![nic0()];
    let dry = bed.run(|| async move { plan_actions(&plans, &NetOptions::default()).await });
    let dry = dry.unwrap().remove(0).unwrap();
    assert_eq!(dry.interface, "n0");
    let statuses: Vec<_> = dry.actions.iter().map(|a| a.status.clone()).collect();
    assert_eq!(
        statuses,
        [Status::Planned, Status::Planned, Status::Planned]
    );
    assert_eq!(bed.state(), before, "a dry run changes nothing");

    let first = bed.configure(vec![nic0()], NetOptions::default());
    let first = first[0].as_ref().unwrap();
    assert_eq!(first.interface, "n0");
    assert!(first.carrier, "the peer is up: carrier");
    assert!(first.changed());
    let done: Vec<_> = first.actions.iter().map(|a| &a.change).collect();
    assert_eq!(
        done,
        [
            &Change::LinkUp,
            &Change::AddAddress {
                address: ip("10.9.1.1"),
                prefix: 24
            },
            &Change::AddRoute {
                to: RouteTo::Host(ip("10.7.0.9")),
                gateway: Some(ip("10.9.1.254"))
            },
        ]
    );
    assert!(
        first
            .actions
            .iter()
            .all(|a| matches!(a.status, Status::Done(_)))
    );
    assert_eq!(bed.addresses("n0"), ["10.9.1.1/24"]);
    assert_eq!(
        bed.ip(&bed.host, &["route", "show", "10.7.0.9"]).trim(),
        "10.7.0.9 via 10.9.1.254 dev n0 proto static"
    );
    assert_eq!(bed.ip(&bed.host, &["route", "show", "default"]), "");
    assert_eq!(bed.mtu("n0"), n0_mtu, "MTU left alone");
    assert_eq!(
        bed.show_link("o0"),
        untouched,
        "an interface the table does not name"
    );

    let after_first = bed.state();
    let second = bed.configure(vec![nic0()], NetOptions::default());
    let second = second[0].as_ref().unwrap();
    assert!(!second.changed());
    assert!(
        second.actions.iter().all(|a| a.is_already()),
        "{:#?}",
        second.actions
    );
    assert_eq!(bed.state(), after_first, "a second run changes nothing");
}

#[test]
fn route_to_names_the_interface_and_the_routed_targets() {
    let bed = bed!();
    bed.configure(vec![nic0()], NetOptions::default());
    bed.ip(&bed.host, &["route", "add", "blackhole", "10.66.0.0/16"]);
    let asked = [
        "10.9.1.2",
        "10.7.0.9",
        "192.168.77.5",
        "192.0.2.1",
        "10.66.0.1",
    ];
    let routes = bed.run(move || async move {
        let mut routes = Vec::new();
        for target in asked {
            routes.push(route_to(ip(target)).await);
        }
        routes
    });
    let plan = nic0();

    let direct = routes[0].as_ref().unwrap();
    assert_eq!(direct.interface, "n0");
    assert_eq!(
        (direct.gateway, direct.source),
        (None, Some(ip("10.9.1.1")))
    );
    assert!(!direct.is_routed());
    assert_eq!(
        check_target(&plan, Some("n0"), ip("10.9.1.2"), Some(direct)),
        None
    );

    let routed = routes[1].as_ref().unwrap();
    assert_eq!(routed.interface, "n0");
    assert_eq!(routed.gateway, Some(ip("10.9.1.254")));
    assert!(routed.is_routed());
    let warning = check_target(&plan, Some("n0"), ip("10.7.0.9"), Some(routed)).unwrap();
    assert_eq!(
        warning.to_string(),
        "target 10.7.0.9 is not on the subnet of NIC 0 (10.9.1.1/24) (routed via 10.9.1.254 on n0)"
    );

    let elsewhere = routes[2].as_ref().unwrap();
    assert_eq!(elsewhere.interface, "o0");
    let warning = check_target(&plan, Some("n0"), ip("192.168.77.5"), Some(elsewhere));
    let subnet = Subnet::new(ip("10.9.1.1"), 24);
    assert!(
        matches!(&warning, Some(TargetWarning::OffSubnet { interface: Some(i), via: None, subnet: s, .. })
            if i == "o0" && Some(*s) == subnet),
        "{warning:?}"
    );

    let nowhere = routes[3].as_ref().unwrap_err();
    assert!(matches!(nowhere, NetError::Unreachable { .. }), "{nowhere}");
    assert!(
        nowhere
            .to_string()
            .starts_with("no route to 192.0.2.1: no interface has an address"),
        "{nowhere}"
    );
    let blackhole = routes[4].as_ref().unwrap_err();
    assert_eq!(
        blackhole.to_string(),
        "no route to 10.66.0.1: a blackhole route covers it (see `ip route`)"
    );
}

#[test]
fn mtu_is_set_only_when_asked() {
    let bed = bed!();
    let mut plan = nic0();
    plan.mtu = Some(9000);
    let outcome = bed.configure(vec![plan.clone()], NetOptions::default());
    let outcome = outcome[0].as_ref().unwrap();
    let from = bed_mtu_default();
    assert_eq!(outcome.actions[0].change, Change::SetMtu { from, to: 9000 });
    assert!(matches!(outcome.actions[0].status, Status::Done(_)));
    assert_eq!(bed.mtu("n0"), 9000);
    let again = bed.configure(vec![plan], NetOptions::default());
    assert!(!again[0].as_ref().unwrap().changed());
}

#[test]
fn missing_or_ambiguous_mac_fails_that_nic_only() {
    let bed = bed!();
    let mut lost = nic1();
    lost.mac = MacAddr([0x02, 0x5a, 0, 0, 0, 0x99]);
    let outcomes = bed.configure(vec![lost, nic0()], NetOptions::default());
    let e = outcomes[0].as_ref().unwrap_err();
    assert!(matches!(e, NetError::NoInterface { nic: 1, .. }), "{e}");
    assert!(e.to_string().contains("n0 02:5a:00:00:00:01"), "{e}");
    assert_eq!(outcomes[1].as_ref().unwrap().interface, "n0");

    // A bridge given n1's MAC: which of the two should hold the address?
    bed.ip(
        &bed.host,
        &[
            "link",
            "add",
            "name",
            "br0",
            "address",
            &MacAddr(N1).to_string(),
            "type",
            "bridge",
        ],
    );
    let before = bed.state();
    let outcomes = bed.configure(vec![nic1()], NetOptions::default());
    let e = outcomes[0].as_ref().unwrap_err();
    assert!(
        matches!(e, NetError::AmbiguousMac { interfaces, .. } if interfaces.len() == 2),
        "{e}"
    );
    assert_eq!(bed.state(), before, "nothing touched");
}

#[test]
fn one_default_route_and_only_when_asked() {
    let bed = bed!();
    let options = NetOptions {
        default_route: true,
        ..NetOptions::default()
    };
    let outcomes = bed.configure(vec![nic0(), nic1()], options);
    let first = outcomes[0].as_ref().unwrap();
    let second = outcomes[1].as_ref().unwrap();
    let default = |o: &NicOutcome| {
        (o.actions.iter())
            .find(|a| {
                matches!(
                    a.change,
                    Change::AddRoute {
                        to: RouteTo::Default,
                        ..
                    }
                )
            })
            .map(|a| a.status.clone())
            .unwrap()
    };
    assert!(matches!(default(first), Status::Done(_)));
    assert!(matches!(default(second), Status::Skipped(r) if r.contains("via 10.9.1.254 on n0")));
    assert_eq!(
        bed.ip(&bed.host, &["route", "show", "default"]).trim(),
        "default via 10.9.1.254 dev n0 proto static"
    );
    // The default route already sends the off-subnet target through the same gateway.
    let host_route = first.actions.last().unwrap();
    assert_eq!(host_route.status, Status::Already, "{host_route}");
}

#[test]
fn no_carrier_is_reported_not_fatal() {
    let bed = bed!();
    bed.ip(&bed.peer, &["link", "set", "dev", "t0", "down"]);
    let options = NetOptions {
        carrier_timeout: Duration::from_millis(300),
        ..NetOptions::default()
    };
    let outcomes = bed.configure(vec![nic0()], options);
    let outcome = outcomes[0].as_ref().unwrap();
    assert!(!outcome.carrier);
    assert!(
        outcome.took >= Duration::from_millis(300),
        "{:?}",
        outcome.took
    );
    assert_eq!(bed.addresses("n0"), ["10.9.1.1/24"]);
}

#[test]
fn vlan_link_carries_the_address() {
    let bed = bed!();
    let mut plan = nic0();
    plan.vlan = 100;
    plan.address = Some((ip("10.9.100.1"), 24));
    plan.targets = vec![ip("10.9.100.2")];
    if !bed.vlans_work() {
        // This kernel has no 802.1Q: check the error says so, then stop.
        let outcomes = bed.configure(vec![plan], NetOptions::default());
        let e = outcomes[0].as_ref().unwrap_err();
        assert!(
            matches!(
                e,
                NetError::Step {
                    change: Change::CreateVlan { .. },
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("802.1Q"), "{e}");
        // CI cannot install a kernel feature, so this is a skip even under CI=true.
        eprintln!("SKIPPED (in part): this kernel has no 802.1Q VLANs (CONFIG_VLAN_8021Q)");
        return;
    }
    bed.ip(
        &bed.peer,
        &[
            "link", "add", "link", "t0", "name", "t0.100", "type", "vlan", "id", "100",
        ],
    );
    bed.ip(
        &bed.peer,
        &["addr", "add", "10.9.100.2/24", "dev", "t0.100"],
    );
    bed.ip(&bed.peer, &["link", "set", "dev", "t0.100", "up"]);
    let outcomes = bed.configure(vec![plan.clone()], NetOptions::default());
    let outcome = outcomes[0].as_ref().unwrap();
    assert_eq!(outcome.interface, "n0.100");
    assert!(outcome.carrier);
    assert_eq!(bed.addresses("n0.100"), ["10.9.100.1/24"]);
    assert_eq!(bed.addresses("n0"), Vec::<String>::new());
    let again = bed.configure(vec![plan], NetOptions::default());
    assert!(
        again[0]
            .as_ref()
            .unwrap()
            .actions
            .iter()
            .all(|a| a.is_already())
    );
    let route = bed
        .run(|| async { route_to(ip("10.9.100.2")).await })
        .unwrap();
    assert_eq!(route.interface, "n0.100");
}

/// NIC 0 on n0: 10.9.1.1/24 through gateway 10.9.1.254, a target on its subnet and one off it.
fn nic0() -> NicPlan {
    NicPlan {
        index: 0,
        mac: MacAddr(N0),
        address: Some((ip("10.9.1.1"), 24)),
        gateway: Some(ip("10.9.1.254")),
        vlan: 0,
        mtu: None,
        targets: vec![ip("10.9.1.2"), ip("10.7.0.9")],
    }
}

/// NIC 1 on n1: 10.9.3.1/24 through gateway 10.9.3.254.
fn nic1() -> NicPlan {
    NicPlan {
        index: 1,
        mac: MacAddr(N1),
        address: Some((ip("10.9.3.1"), 24)),
        gateway: Some(ip("10.9.3.254")),
        vlan: 0,
        mtu: None,
        targets: vec![ip("10.9.3.2")],
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// n0's MTU as the bed makes it.
fn bed_mtu_default() -> u32 {
    1450
}

/// The host and peer namespaces of one test, wired as the module doc draws; deleted on drop,
/// also while a failed test unwinds.
struct Bed {
    host: String,
    peer: String,
}

impl Bed {
    fn new() -> Result<Bed, String> {
        if !is_root() {
            return Err("network namespaces need root".into());
        }
        if Command::new("ip").arg("-V").output().is_err() {
            return Err("ip (iproute2) is not installed".into());
        }
        let seq = NEXT_BED.fetch_add(1, Ordering::Relaxed);
        let id = format!("sanshim-net-{}-{seq}", std::process::id());
        let bed = Bed {
            host: format!("{id}-h"),
            peer: format!("{id}-p"),
        };
        let created = Command::new("ip")
            .args(["netns", "add", &bed.host])
            .output();
        match created {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return Err(format!(
                    "ip netns add: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Err(e) => return Err(format!("ip netns add: {e}")),
        }
        bed.ip("", &["netns", "add", &bed.peer]);
        for ns in [&bed.host, &bed.peer] {
            let off = "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; \
                       echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; true";
            run(Command::new("ip").args(["netns", "exec", ns, "sh", "-c", off]));
            bed.ip(ns, &["link", "set", "dev", "lo", "up"]);
        }
        bed.wire("n0", Some(N0), "t0", Some("10.9.1.2/24"));
        bed.wire("n1", Some(N1), "t1", Some("10.9.3.2/24"));
        bed.wire("o0", None, "o1", None);
        bed.ip(&bed.host, &["addr", "add", "192.168.77.1/24", "dev", "o0"]);
        bed.ip(&bed.host, &["link", "set", "dev", "o0", "up"]);
        bed.wait_operstate("o0", "UP");
        Ok(bed)
    }

    /// Waits until `dev` (in the host namespace) reports `state`: a carrier comes a moment
    /// after `ip link set up`, and a comparison of states must not catch it on the way.
    fn wait_operstate(&self, dev: &str, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let link = json(&self.ip(&self.host, &["-j", "link", "show", "dev", dev]));
            if link[0]["operstate"] == state {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{dev} never became {state}: {link}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A veth pair: `name` (MTU 1450, MAC `mac` when given) down in the host namespace, `peer`
    /// up in the peer namespace with `peer_address`.
    fn wire(&self, name: &str, mac: Option<[u8; 6]>, peer: &str, peer_address: Option<&str>) {
        let mtu = bed_mtu_default().to_string();
        let mut args = vec!["link", "add", "name", name, "mtu", &mtu];
        let mac = mac.map(|m| MacAddr(m).to_string());
        if let Some(mac) = &mac {
            args.extend(["address", mac]);
        }
        args.extend(["type", "veth", "peer", "name", peer, "netns", &self.peer]);
        self.ip(&self.host, &args);
        if let Some(address) = peer_address {
            self.ip(&self.peer, &["addr", "add", address, "dev", peer]);
        }
        self.ip(&self.peer, &["link", "set", "dev", peer, "up"]);
    }

    /// Runs `f` on a thread in the host namespace with a current-thread tokio runtime, logging
    /// to the test's output.
    fn run<T, F, Fut>(&self, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
    {
        let path = format!("/run/netns/{}", self.host);
        let thread = std::thread::spawn(move || {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            nix::sched::setns(ns, CloneFlags::CLONE_NEWNET).expect("setns");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            // The code's log, shown with a failing test's output (or with --nocapture).
            let log = tracing_subscriber::fmt()
                .with_test_writer()
                .with_max_level(tracing::Level::DEBUG)
                .finish();
            tracing::subscriber::with_default(log, || runtime.block_on(f()))
        });
        thread
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    /// [`configure`] in the host namespace.
    fn configure(
        &self,
        nics: Vec<NicPlan>,
        options: NetOptions,
    ) -> Vec<Result<NicOutcome, NetError>> {
        let outcomes = self.run(move || async move { configure(&nics, &options).await });
        outcomes.unwrap_or_else(|e| panic!("configure: {e}"))
    }

    /// Whether this kernel can make VLAN links (tried on a scratch veth in the host
    /// namespace).
    fn vlans_work(&self) -> bool {
        self.ip(
            &self.host,
            &[
                "link", "add", "name", "probe", "type", "veth", "peer", "name", "probe-p",
            ],
        );
        let made = Command::new("ip")
            .args([
                "-n", &self.host, "link", "add", "link", "probe", "name", "probe.1",
            ])
            .args(["type", "vlan", "id", "1"])
            .output()
            .is_ok_and(|out| out.status.success());
        self.ip(&self.host, &["link", "del", "dev", "probe"]);
        made
    }

    /// The host namespace's links, addresses and routes (all tables), as `ip -j` prints them.
    fn state(&self) -> Vec<Value> {
        [
            &["-d", "link", "show"][..],
            &["addr", "show"],
            &["route", "show", "table", "all"],
        ]
        .iter()
        .map(|args| json(&self.ip(&self.host, &[&["-j"][..], args].concat())))
        .collect()
    }

    /// `ip -j -d link show` and `ip -j addr show` of one interface.
    fn show_link(&self, dev: &str) -> (Value, Value) {
        let link = self.ip(&self.host, &["-j", "-d", "link", "show", "dev", dev]);
        let addr = self.ip(&self.host, &["-j", "addr", "show", "dev", dev]);
        (json(&link), json(&addr))
    }

    fn mtu(&self, dev: &str) -> u32 {
        let link = json(&self.ip(&self.host, &["-j", "link", "show", "dev", dev]));
        link[0]["mtu"].as_u64().expect("an MTU") as u32
    }

    /// The `address/prefix`es on `dev`.
    fn addresses(&self, dev: &str) -> Vec<String> {
        let addr = json(&self.ip(&self.host, &["-j", "addr", "show", "dev", dev]));
        let infos = addr[0]["addr_info"].as_array().cloned().unwrap_or_default();
        (infos.iter())
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
            .collect()
    }

    /// `ip -n NS ARGS` (plain `ip ARGS` for an empty `ns`); panics with stderr on failure.
    fn ip(&self, ns: &str, args: &[&str]) -> String {
        let mut cmd = Command::new("ip");
        if !ns.is_empty() {
            cmd.args(["-n", ns]);
        }
        run(cmd.args(args))
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for ns in [&self.peer, &self.host] {
            let out = Command::new("ip").args(["netns", "del", ns]).output();
            match out {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "warning: ip netns del {ns}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                Err(e) => eprintln!("warning: ip netns del {ns}: {e}"),
            }
        }
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = (status.lines())
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    euid == Some("0")
}

/// Whether we run under CI, where a machine that cannot run these tests fails them (the
/// convention of tests/common `in_ci`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

static NEXT_BED: AtomicUsize = AtomicUsize::new(0);
