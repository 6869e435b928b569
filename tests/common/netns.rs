//! A network-namespace test bed for multipath: an initiator and a target joined by one switched
//! link per path, each of which a test can cut visibly, cut silently or turn into a jumbo-frame
//! black hole.
//!
//! ```text
//!   ini (sanshim)            swI (one per path)               tgt (tgtd)
//!   pI 10.K.I.1 ──veth── to-ini ═ br0 ═ to-tgt ──veth── pI 10.K.I.2:PORT
//!      │                                   │
//!      └ cut_visible: link down            └ cut_silent: nomaster; black_hole: MTU 1500
//! ```
//!
//! Everything a [`Topology`] creates — its namespaces, the links and bridges in them, its tgtd
//! and any process a test left running inside — goes away when it is dropped, also while a test
//! unwinds from a panic. Namespace names carry the process id and a sequence number, so tests
//! run in parallel; interface names (`pI`, `to-ini`, `to-tgt`, `br0`) are short and the same in
//! every topology because each lives in a namespace of its own. IPv6 is off in every namespace,
//! so the byte counters count only what a test sends. Every command has a deadline and panics
//! with its stderr when it fails.
//!
//! Paths are numbered from 1, as `sanshim` numbers them in its messages.

use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::RunResult;
use super::tgtd::Tgtd;
pub use super::tgtd::try_output_within;

/// Builds a [`Topology`] of `$paths` paths (and [`Options`]), or returns from the test with
/// `SKIPPED: reason` when the machine cannot (outside CI; under CI=true that panics).
#[macro_export]
macro_rules! topology_or_skip {
    ($paths:expr) => {
        $crate::topology_or_skip!($paths, $crate::common::netns::Options::default())
    };
    ($paths:expr, $options:expr) => {
        match $crate::common::netns::Topology::try_build($paths, $options) {
            Ok(t) => t,
            Err(reason) => {
                eprintln!("SKIPPED: {reason}");
                return;
            }
        }
    };
}

/// How a [`Topology`] is built.
#[derive(Clone, Debug)]
pub struct Options {
    /// MTU of every interface, veths and bridges alike (default 9000).
    pub mtu: u32,
    /// The target's TCP port on every path (default 3260).
    pub port: u16,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mtu: 9000,
            port: 3260,
        }
    }
}

/// An initiator namespace, a target namespace with a running tgtd, and one switch namespace
/// with a bridge per path. Dropping it deletes all of it.
pub struct Topology {
    id: String,
    net: u8,
    paths: usize,
    options: Options,
    tgtd: Option<Tgtd>,
    /// Namespaces created so far, deleted on drop.
    namespaces: Vec<String>,
}

impl Topology {
    /// Builds `paths` paths and starts tgtd listening on each path's target address, or
    /// returns why this machine cannot: not root, `ip`, `ss`, `ethtool`, `tgtd` or `tgtadm`
    /// missing, or no network namespaces to be had. Under CI=true those panic instead.
    ///
    /// # Panics
    /// When a step fails on a machine that has what it needs, with the command's stderr.
    pub fn try_build(paths: usize, options: Options) -> Result<Topology, String> {
        assert!((1..=250).contains(&paths), "{paths} paths");
        require_root()?;
        for tool in ["ip", "ss", "ethtool", "tgtd", "tgtadm"] {
            super::require_tool(tool)?;
        }
        let seq = NEXT_TOPOLOGY.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() as usize;
        let mut t = Topology {
            id: format!("sanshim-{pid}-{seq}"),
            // Addresses need only be unique inside a topology; K varies so logs tell apart
            // the topologies of parallel tests.
            net: (20 + (pid * 7 + seq) % 230) as u8,
            paths,
            options,
            tgtd: None,
            namespaces: Vec::new(),
        };
        t.add_namespace(&t.ini_ns()).map_err(|e| {
            let reason = format!("cannot create network namespaces: {e}");
            if super::in_ci() {
                panic!("CI=true and {reason}");
            }
            reason
        })?;
        t.add_namespace(&t.tgt_ns())
            .unwrap_or_else(|e| panic!("{e}"));
        for path in 1..=paths {
            t.add_namespace(&t.switch_ns(path))
                .unwrap_or_else(|e| panic!("{e}"));
            t.wire(path);
        }
        t.start_tgtd();
        for path in 1..=paths {
            t.wait_reachable(path);
        }
        Ok(t)
    }

    /// [`Topology::try_build`], panicking when the machine cannot.
    pub fn build(paths: usize, options: Options) -> Topology {
        Topology::try_build(paths, options).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The number of paths.
    pub fn paths(&self) -> usize {
        self.paths
    }

    /// The initiator's namespace, where `sanshim` and NBD clients run.
    pub fn ini_ns(&self) -> String {
        format!("{}-ini", self.id)
    }

    /// The target's namespace, where tgtd runs.
    pub fn tgt_ns(&self) -> String {
        format!("{}-tgt", self.id)
    }

    /// The switch namespace of `path`, holding bridge `br0` with ports `to-ini` and `to-tgt`.
    pub fn switch_ns(&self, path: usize) -> String {
        self.check(path);
        format!("{}-sw{path}", self.id)
    }

    /// The interface of `path` in the initiator's (and the target's) namespace.
    pub fn dev(&self, path: usize) -> String {
        self.check(path);
        format!("p{path}")
    }

    /// The initiator's address on `path`, `10.K.PATH.1`.
    pub fn initiator_addr(&self, path: usize) -> Ipv4Addr {
        self.check(path);
        Ipv4Addr::new(10, self.net, path as u8, 1)
    }

    /// The target's address on `path`, `10.K.PATH.2`.
    pub fn target_addr(&self, path: usize) -> Ipv4Addr {
        self.check(path);
        Ipv4Addr::new(10, self.net, path as u8, 2)
    }

    /// The target portal on `path`, `10.K.PATH.2:PORT`.
    pub fn portal(&self, path: usize) -> String {
        format!("{}:{}", self.target_addr(path), self.options.port)
    }

    /// `iscsi://10.K.PATH.2:PORT/IQN/LUN`.
    pub fn url(&self, path: usize, iqn: &str, lun: u32) -> String {
        format!("iscsi://{}/{iqn}/{lun}", self.portal(path))
    }

    /// The tgtd in the target namespace, for any configuration [`Tgtd`] offers.
    pub fn tgtd(&mut self) -> &mut Tgtd {
        self.tgtd
            .as_mut()
            .expect("tgtd runs while the topology lives")
    }

    /// Creates target `tid` named `iqn` with LUN 1 on a new sparse file of `size` bytes
    /// (`tN-lun1.img`, so each target has its own backing file and LU identity); returns the
    /// file's path.
    pub fn add_target(&mut self, tid: u32, iqn: &str, size: u64) -> PathBuf {
        self.tgtd().add_target(tid, iqn);
        self.tgtd().add_file_lun(tid, 1, size)
    }

    /// A command running `program` in the initiator's namespace (`ip netns exec`, which execs
    /// it in place: the child's pid is the program's, so `kill` and `wait` reach it).
    pub fn ini(&self, program: impl AsRef<OsStr>) -> Command {
        in_netns(&self.ini_ns(), program)
    }

    /// [`super::sanshim`] in the initiator's namespace, with the same environment.
    pub fn sanshim(&self) -> Command {
        let base = super::sanshim();
        let mut cmd = self.ini(base.get_program());
        for (key, value) in base.get_envs() {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        cmd
    }

    /// Takes `path`'s initiator-side link down: the initiator's route to the path goes away
    /// (new connects fail with "Network is unreachable" at once), while a connected socket's
    /// sends are accepted and only time out.
    pub fn cut_visible(&self, path: usize) {
        self.ip(
            &self.ini_ns(),
            &["link", "set", "dev", &self.dev(path), "down"],
        );
    }

    /// Brings `path`'s initiator-side link up again and waits until it is operational.
    pub fn restore_visible(&self, path: usize) {
        let dev = self.dev(path);
        self.ip(&self.ini_ns(), &["link", "set", "dev", &dev, "up"]);
        let operstate = format!("/sys/class/net/{dev}/operstate");
        let ns = self.ini_ns();
        let up = wait_until(CMD_TIMEOUT, || {
            exec(&ns, &["cat", &operstate]).trim() == "up"
        });
        assert!(up, "{dev} in {ns} did not come up");
    }

    /// Unplugs the target's port from `path`'s switch: carriers stay up and every packet in
    /// either direction vanishes without an error.
    pub fn cut_silent(&self, path: usize) {
        self.ip(
            &self.switch_ns(path),
            &["link", "set", "dev", "to-tgt", "nomaster"],
        );
    }

    /// Plugs the target's port back into `path`'s switch (forwarding at once: no STP).
    pub fn restore_silent(&self, path: usize) {
        self.ip(
            &self.switch_ns(path),
            &["link", "set", "dev", "to-tgt", "master", "br0"],
        );
    }

    /// With `on`, turns `path` into a jumbo-frame black hole: the switch port toward the
    /// target drops to MTU 1500 while both ends keep [`Options::mtu`], so frames over 1500
    /// bytes vanish in both directions without ICMP and small ones pass. Segmentation offloads
    /// go off on every interface of the path first, so that the hole sees the frames TCP
    /// sends (with GSO/GRO a veth or bridge may carry frames above its MTU). Without `on`, the
    /// port gets the path's MTU back; the offloads stay off.
    ///
    /// # Panics
    /// When [`Options::mtu`] is not above 1500: there is no hole to make.
    pub fn black_hole(&self, path: usize, on: bool) {
        assert!(self.options.mtu > 1500, "a black hole needs jumbo frames");
        let (ini, sw, tgt) = (self.ini_ns(), self.switch_ns(path), self.tgt_ns());
        let dev = self.dev(path);
        let mtu = if on {
            let devs = [
                (&ini, dev.as_str()),
                (&sw, "to-ini"),
                (&sw, "br0"),
                (&sw, "to-tgt"),
                (&tgt, dev.as_str()),
            ];
            for (ns, dev) in devs {
                let off = ["tso", "off", "gso", "off", "gro", "off"];
                exec(ns, &[&["ethtool", "-K", dev][..], &off].concat());
            }
            1500
        } else {
            self.options.mtu
        };
        let mtu = mtu.to_string();
        self.ip(&sw, &["link", "set", "dev", "to-tgt", "mtu", &mtu]);
        // The bridge follows its smallest port down but need not come back up on its own.
        let br_mtu = self.options.mtu.to_string();
        self.ip(&sw, &["link", "set", "dev", "br0", "mtu", &br_mtu]);
    }

    /// Bytes received and sent so far by the initiator's interface on `path`.
    pub fn bytes(&self, path: usize) -> (u64, u64) {
        let dir = format!("/sys/class/net/{}/statistics", self.dev(path));
        let (rx, tx) = (format!("{dir}/rx_bytes"), format!("{dir}/tx_bytes"));
        let out = exec(&self.ini_ns(), &["cat", &rx, &tx]);
        let mut counts = out.lines().map(|l| {
            l.trim()
                .parse::<u64>()
                .unwrap_or_else(|e| panic!("byte counter {l:?} of {dir}: {e}"))
        });
        match (counts.next(), counts.next()) {
            (Some(rx), Some(tx)) => (rx, tx),
            _ => panic!("no byte counters in {dir}: {out:?}"),
        }
    }

    /// Creates namespace `ns` with `lo` up and IPv6 off; `Err` only when it cannot be created.
    fn add_namespace(&mut self, ns: &str) -> Result<(), String> {
        let out = output_within(Command::new("ip").args(["netns", "add", ns]), CMD_TIMEOUT);
        if !out.status.success() {
            return Err(format!(
                "ip netns add {ns}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        self.namespaces.push(ns.to_string());
        // -e: a kernel without IPv6 has no such keys, and nothing to turn off.
        let v6 = [
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ];
        exec(ns, &[&["sysctl", "-e", "-q", "-w"][..], &v6].concat());
        self.ip(ns, &["link", "set", "dev", "lo", "up"]);
        Ok(())
    }

    /// Creates `path`'s switch, its two veth pairs and addresses, all up at the path's MTU.
    fn wire(&self, path: usize) {
        let (ini, sw, tgt) = (self.ini_ns(), self.switch_ns(path), self.tgt_ns());
        let dev = self.dev(path);
        let mtu = self.options.mtu.to_string();
        let mtu = mtu.as_str();
        self.ip(
            &sw,
            &["link", "add", "name", "br0", "mtu", mtu, "type", "bridge"],
        );
        let veth = |ns: &str, name: &str, peer_ns: &str, peer: &str| {
            let args = ["link", "add", "name", name, "mtu", mtu, "type", "veth"];
            let peer = ["peer", "name", peer, "mtu", mtu, "netns", peer_ns];
            self.ip(ns, &[&args[..], &peer].concat());
        };
        veth(&ini, &dev, &sw, "to-ini");
        veth(&sw, "to-tgt", &tgt, &dev);
        for port in ["to-ini", "to-tgt"] {
            self.ip(&sw, &["link", "set", "dev", port, "master", "br0", "up"]);
        }
        self.ip(&sw, &["link", "set", "dev", "br0", "mtu", mtu, "up"]);
        for (ns, addr) in [
            (&ini, self.initiator_addr(path)),
            (&tgt, self.target_addr(path)),
        ] {
            self.ip(ns, &["addr", "add", &format!("{addr}/24"), "dev", &dev]);
            self.ip(ns, &["link", "set", "dev", &dev, "up"]);
        }
    }

    /// Starts tgtd in the target namespace with one portal per path.
    fn start_tgtd(&mut self) {
        let first = SocketAddr::from((self.target_addr(1), self.options.port));
        let mut tgtd = Tgtd::start_in(&self.tgt_ns(), first);
        for path in 2..=self.paths {
            tgtd.add_portal(&self.portal(path));
        }
        self.tgtd = Some(tgtd);
    }

    /// Waits until a TCP connection from the initiator reaches tgtd over `path` (there is
    /// no `ping` here; bash's /dev/tcp is enough).
    fn wait_reachable(&self, path: usize) {
        let probe = format!(
            "exec 3<>/dev/tcp/{}/{}",
            self.target_addr(path),
            self.options.port
        );
        let mut last = String::new();
        let ok = wait_until(CMD_TIMEOUT, || {
            let out = output_within(self.ini("bash").args(["-c", &probe]), CMD_TIMEOUT);
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            out.status.success()
        });
        assert!(ok, "tgtd unreachable over path {path}: {last}");
    }

    /// `ip -n NS ARGS`, panicking with its stderr when it fails.
    fn ip(&self, ns: &str, args: &[&str]) {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", ns]).args(args);
        checked(&mut cmd);
    }

    fn check(&self, path: usize) {
        assert!(
            (1..=self.paths).contains(&path),
            "path {path} of a topology with paths 1..={}",
            self.paths
        );
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        drop(self.tgtd.take());
        for ns in self.namespaces.drain(..).rev() {
            // A process a test left behind (a spawned export after a panic) would keep the
            // namespace, and its links, alive after the name is gone.
            if let Ok(out) =
                try_output_within(Command::new("ip").args(["netns", "pids", &ns]), CMD_TIMEOUT)
            {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ =
                        try_output_within(Command::new("kill").args(["-KILL", pid]), CMD_TIMEOUT);
                }
            }
            let del =
                try_output_within(Command::new("ip").args(["netns", "del", &ns]), CMD_TIMEOUT);
            match del {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "warning: ip netns del {ns}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                Err(e) => eprintln!("warning: {e}"),
            }
        }
    }
}

/// A command running `program` in namespace `ns`.
pub fn in_netns(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// Runs `cmd` to its end and returns its exit code and output, like [`super::run`] but killed
/// with a panic (naming it, with its stderr so far) when it takes longer than `limit`.
pub fn run_within(cmd: &mut Command, limit: Duration) -> RunResult {
    RunResult::from(output_within(cmd, limit))
}

/// [`try_output_within`], panicking when the command cannot run or times out.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    try_output_within(cmd, limit).unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until `f` holds, checking every 20 ms, up to `limit`; whether it did.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ip netns exec NS ARGS`, panicking with its stderr when it fails; returns stdout.
fn exec(ns: &str, args: &[&str]) -> String {
    let mut cmd = in_netns(ns, args[0]);
    cmd.args(&args[1..]);
    checked(&mut cmd)
}

/// Runs `cmd` within [`CMD_TIMEOUT`], panicking with its stderr unless it succeeds.
fn checked(cmd: &mut Command) -> String {
    let out = output_within(cmd, CMD_TIMEOUT);
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Network namespaces, links and bridges need root (CAP_NET_ADMIN and CAP_SYS_ADMIN).
/// Whether we run as root (network namespaces need it); under CI=true, not being root is
/// a failure.
pub fn require_root() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    if euid == Some("0") {
        return Ok(());
    }
    let reason = "network namespaces need root".to_string();
    if super::in_ci() {
        panic!("CI=true and {reason}");
    }
    Err(reason)
}

static NEXT_TOPOLOGY: AtomicUsize = AtomicUsize::new(0);

/// How long one setup or control command may take.
const CMD_TIMEOUT: Duration = Duration::from_secs(10);
