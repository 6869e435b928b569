//! A LIO test bed: the Linux kernel's iSCSI target (Debian's 6.1 kernel) in a QEMU VM under TCG,
//! configured through configfs alone from a declarative [`Spec`], reachable from a network
//! namespace of its own.
//!
//! ```text
//!   namespace sanshim-lio-PID-N                         guest (busybox + LIO)
//!   lo 127.0.0.1:PORT ── QEMU user net (hostfwd) ──────► 10.0.2.15:PORT  one per portal
//!   lo 127.0.0.1:5555 ──────────────────────────────────► nc -ll -e /bin/sh (control)
//!   veth lio-a 10.0.2.1/24 ── lio-b (up, no address): 10.0.2.15 is "on link" and unanswered
//! ```
//!
//! sanshim and the NBD clients run in the namespace ([`Lio::sanshim`], [`Lio::command`]); NBD
//! goes through unix sockets, which work across namespaces. The veth pair makes the guest's own
//! address, which LIO lists in its SendTargets answers, fail the way an unreachable portal does
//! in the field (a connect fails with "no route to host" after ~3 s of unanswered ARP) without
//! a packet leaving the machine.
//!
//! The guest's payload makes the backstores (zero-filled fileio files in its tmpfs), targets,
//! TPGs with their portals and parameters, ACLs or demo mode, CHAP secrets, discovery
//! authentication and ALUA target port groups, prints [`READY`] and serves a shell on the
//! control port: [`Lio::exec`] runs commands in the guest mid-run (change an ALUA state, read
//! a configfs file) and returns their output.
//!
//! One [`Lio`] serves a test group (a boot costs seconds under TCG); dropping it kills QEMU's
//! process group and every process left in the namespace, then deletes the namespace. Missing
//! prerequisites (QEMU and the kernel: [`crate::vm::kit`]; root and `ip` for the namespace)
//! skip the test with [`lio_or_skip!`], and panic under `CI=true`.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::netns::{in_netns, require_root, run_within, try_output_within, wait_until};
use crate::common::{RunResult, in_ci, require_tool};
use crate::vm::{self, Initramfs, Net, RunningVm, Vm};

/// Starts a [`Lio`] for `$spec` or returns from the test with `SKIPPED: reason`.
#[macro_export]
macro_rules! lio_or_skip {
    ($spec:expr) => {
        match $crate::lio::Lio::try_start($spec) {
            Ok(lio) => lio,
            Err(reason) => {
                eprintln!("SKIPPED: {reason}");
                return;
            }
        }
    };
}

/// The console line the payload prints once LIO is configured.
pub const READY: &str = "LIO-READY";
/// The guest's address on QEMU's user network (also the address LIO's portals listen on).
pub const GUEST_ADDR: &str = "10.0.2.15";
/// The guest port of the control shell, forwarded from the same port in the namespace.
pub const CONTROL_PORT: u16 = 5555;

/// What the guest's LIO is configured with.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    targets: Vec<Target>,
    discovery: Option<DiscoveryAuth>,
}

/// One iSCSI target: its LUNs (every TPG exports all of them, LUN numbers from 0 in order),
/// its TPGs, and ALUA target port groups made on each LUN's device.
#[derive(Clone, Debug)]
pub struct Target {
    iqn: String,
    luns: Vec<Lun>,
    tpgs: Vec<Tpg>,
    alua: Vec<AluaGroup>,
}

/// A fileio backstore on a zero-filled file in the guest's tmpfs.
#[derive(Clone, Debug)]
pub struct Lun {
    /// Backstore name (`core/fileio_0/NAME`), unique in the VM.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// One target portal group with one network portal `10.0.2.15:port`.
#[derive(Clone, Debug)]
pub struct Tpg {
    tag: u16,
    port: u16,
    params: Vec<(String, String)>,
    access: Access,
    alua_group: Option<String>,
}

/// Who may log in to a TPG.
#[derive(Clone, Debug)]
pub enum Access {
    /// Demo mode (`generate_node_acls=1`, writable), with TPG-wide CHAP when given.
    Demo(Option<Chap>),
    /// Only `initiator`, through a node ACL, with CHAP when given.
    Acl {
        /// The initiator's iSCSI name.
        initiator: String,
        /// Its CHAP credentials.
        chap: Option<Chap>,
    },
}

/// CHAP credentials: what the initiator proves, and what the target proves back (mutual).
#[derive(Clone, Debug)]
pub struct Chap {
    /// The initiator's CHAP name and secret.
    pub user: (String, String),
    /// The target's CHAP name and secret, for mutual CHAP.
    pub mutual: Option<(String, String)>,
}

/// Discovery authentication (`iscsi/discovery_auth`).
#[derive(Clone, Debug)]
pub struct DiscoveryAuth {
    /// `enforce_discovery_auth`.
    pub enforce: bool,
    /// The credentials.
    pub chap: Chap,
}

/// An ALUA target port group on the target's devices.
#[derive(Clone, Debug)]
pub struct AluaGroup {
    /// Its configfs name.
    pub name: String,
    /// `tg_pt_gp_id`.
    pub id: u16,
    /// `alua_access_state` (0 active/optimized, 1 active/non-optimized, 2 standby, ...).
    pub state: u8,
}

/// A running LIO VM and its namespace.
pub struct Lio {
    ns: String,
    vm: Option<RunningVm>,
    ports: Vec<u16>,
    dir: tempfile::TempDir,
}

impl Spec {
    /// An empty configuration.
    pub fn new() -> Spec {
        Spec::default()
    }

    /// Adds a target.
    pub fn target(mut self, target: Target) -> Spec {
        self.targets.push(target);
        self
    }

    /// Sets discovery authentication.
    pub fn discovery_auth(mut self, auth: DiscoveryAuth) -> Spec {
        self.discovery = Some(auth);
        self
    }

    /// Every guest port a portal listens on, without repeats.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .targets
            .iter()
            .flat_map(|t| t.tpgs.iter().map(|g| g.port))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The busybox sh payload that configures LIO, prints [`READY`] and serves the control
    /// shell until the VM is killed.
    pub fn payload(&self) -> String {
        let mut s = String::from(PAYLOAD_HEAD);
        for target in &self.targets {
            target.emit(&mut s);
        }
        if let Some(d) = &self.discovery {
            let dir = "$T/iscsi/discovery_auth";
            let (user, secret) = &d.chap.user;
            let _ = writeln!(s, "w {dir}/userid {user}\nw {dir}/password {secret}");
            if let Some((user, secret)) = &d.chap.mutual {
                let _ = writeln!(s, "w {dir}/userid_mutual {user}");
                let _ = writeln!(s, "w {dir}/password_mutual {secret}");
            }
            let _ = writeln!(s, "w {dir}/enforce_discovery_auth {}", u8::from(d.enforce));
        }
        let _ = writeln!(s, "echo {READY}\nexec nc -ll -p {CONTROL_PORT} -e /bin/sh");
        s
    }
}

impl Target {
    /// A target named `iqn` (lower case, as LIO keeps it).
    pub fn new(iqn: &str) -> Target {
        Target {
            iqn: iqn.to_owned(),
            luns: Vec::new(),
            tpgs: Vec::new(),
            alua: Vec::new(),
        }
    }

    /// Adds a zero-filled LUN of `size` bytes backed by `core/fileio_0/NAME`.
    pub fn lun(mut self, name: &str, size: u64) -> Target {
        self.luns.push(Lun {
            name: name.to_owned(),
            size,
        });
        self
    }

    /// Adds a TPG.
    pub fn tpg(mut self, tpg: Tpg) -> Target {
        self.tpgs.push(tpg);
        self
    }

    /// Adds an ALUA target port group (implicit ALUA) to every LUN's device.
    pub fn alua_group(mut self, name: &str, id: u16, state: u8) -> Target {
        self.alua.push(AluaGroup {
            name: name.to_owned(),
            id,
            state,
        });
        self
    }

    fn emit(&self, s: &mut String) {
        let iqn = &self.iqn;
        for lun in &self.luns {
            let dev = format!("$T/core/fileio_0/{}", lun.name);
            let file = format!("/tmp/{}.img", lun.name);
            let _ = writeln!(s, "truncate -s {} {file}\nmkdir -p {dev}", lun.size);
            let _ = writeln!(
                s,
                "w {dev}/control fd_dev_name={file},fd_dev_size={}\nw {dev}/enable 1",
                lun.size
            );
            // As targetcli does: without a unit serial LIO lists no VPD pages at all, so an
            // initiator sees no LU identity and no target port group of its path.
            let _ = writeln!(s, "w {dev}/wwn/vpd_unit_serial {}", lun.serial());
            for g in &self.alua {
                let gp = format!("{dev}/alua/{}", g.name);
                let _ = writeln!(s, "mkdir {gp}\nw {gp}/tg_pt_gp_id {}", g.id);
                // Implicit ALUA: the only kind a configfs write may change.
                let _ = writeln!(s, "w {gp}/alua_access_type 1");
                let _ = writeln!(s, "w {gp}/alua_access_state {}", g.state);
            }
        }
        for tpg in &self.tpgs {
            let dir = format!("$T/iscsi/{iqn}/tpgt_{}", tpg.tag);
            let _ = writeln!(s, "mkdir -p {dir}");
            for (i, lun) in self.luns.iter().enumerate() {
                let _ = writeln!(s, "mkdir {dir}/lun/lun_{i}");
                let dev = format!("$T/core/fileio_0/{}", lun.name);
                let _ = writeln!(s, "ln -s {dev} {dir}/lun/lun_{i}/{}", lun.name);
                if let Some(group) = &tpg.alua_group {
                    let _ = writeln!(s, "w {dir}/lun/lun_{i}/alua_tg_pt_gp {group}");
                }
            }
            let _ = writeln!(s, "mkdir {dir}/np/{GUEST_ADDR}:{}", tpg.port);
            for (key, value) in &tpg.params {
                let _ = writeln!(s, "w {dir}/param/{key} {value}");
            }
            tpg.emit_access(s, &dir, self.luns.len());
            let _ = writeln!(s, "w {dir}/enable 1");
        }
    }
}

impl Lun {
    /// The unit serial LIO reports (VPD 0x80) and derives its NAA designator from: a UUID made
    /// from the backstore name, so it is the same on every boot.
    pub fn serial(&self) -> String {
        // FNV-1a over the name.
        let hash = self.name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!(
            "{:08x}-{:04x}-4{:03x}-8000-{:012x}",
            hash >> 32,
            (hash >> 16) & 0xffff,
            hash & 0xfff,
            hash & 0xffff_ffff_ffff
        )
    }
}

impl Tpg {
    /// TPG `tag` with its portal on guest port `port`, in demo mode without authentication.
    pub fn new(tag: u16, port: u16) -> Tpg {
        Tpg {
            tag,
            port,
            params: Vec::new(),
            access: Access::Demo(None),
            alua_group: None,
        }
    }

    /// Sets a TPG parameter (`param/KEY`), e.g. `HeaderDigest`, `InitialR2T`.
    pub fn param(mut self, key: &str, value: &str) -> Tpg {
        self.params.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets who may log in.
    pub fn access(mut self, access: Access) -> Tpg {
        self.access = access;
        self
    }

    /// Joins the TPG's LUNs to ALUA target port group `name`.
    pub fn alua_group(mut self, name: &str) -> Tpg {
        self.alua_group = Some(name.to_owned());
        self
    }

    fn emit_access(&self, s: &mut String, dir: &str, luns: usize) {
        let chap = match &self.access {
            Access::Demo(chap) => {
                let _ = writeln!(s, "w {dir}/attrib/generate_node_acls 1");
                let _ = writeln!(s, "w {dir}/attrib/cache_dynamic_acls 1");
                let _ = writeln!(s, "w {dir}/attrib/demo_mode_write_protect 0");
                if let Some(chap) = chap {
                    emit_chap(s, &format!("{dir}/auth"), chap);
                }
                chap
            }
            Access::Acl { initiator, chap } => {
                let acl = format!("{dir}/acls/{initiator}");
                let _ = writeln!(s, "w {dir}/attrib/generate_node_acls 0");
                let _ = writeln!(s, "mkdir -p {acl}");
                for i in 0..luns {
                    let _ = writeln!(s, "mkdir {acl}/lun_{i}");
                    let _ = writeln!(s, "ln -s {dir}/lun/lun_{i} {acl}/lun_{i}/lun");
                }
                if let Some(chap) = chap {
                    emit_chap(s, &format!("{acl}/auth"), chap);
                }
                chap
            }
        };
        let _ = writeln!(
            s,
            "w {dir}/attrib/authentication {}",
            u8::from(chap.is_some())
        );
    }
}

fn emit_chap(s: &mut String, auth: &str, chap: &Chap) {
    let (user, secret) = &chap.user;
    let _ = writeln!(s, "w {auth}/userid {user}\nw {auth}/password {secret}");
    if let Some((user, secret)) = &chap.mutual {
        let _ = writeln!(s, "w {auth}/userid_mutual {user}");
        let _ = writeln!(s, "w {auth}/password_mutual {secret}");
    }
}

impl Chap {
    /// One-way CHAP: the initiator proves `user`/`secret`.
    pub fn one_way(user: &str, secret: &str) -> Chap {
        Chap {
            user: (user.to_owned(), secret.to_owned()),
            mutual: None,
        }
    }

    /// Mutual CHAP: the target also proves `user`/`secret`.
    pub fn mutual(mut self, user: &str, secret: &str) -> Chap {
        self.mutual = Some((user.to_owned(), secret.to_owned()));
        self
    }
}

impl Lio {
    /// Creates the namespace, boots the VM in it and waits until LIO is configured and the
    /// control shell answers; `Err` (outside CI) when this machine cannot.
    ///
    /// # Panics
    /// Under `CI=true` when a prerequisite is missing; when the guest fails to configure
    /// LIO (with the console's tail).
    pub fn try_start(spec: Spec) -> Result<Lio, String> {
        let kit = vm::kit()?;
        require_root()?;
        require_tool("ip")?;
        let seq = NEXT.fetch_add(1, Ordering::Relaxed);
        let ns = format!("sanshim-lio-{}-{seq}", std::process::id());
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        if let Err(e) = make_namespace(&ns) {
            let reason = format!("cannot create network namespace {ns}: {e}");
            assert!(!in_ci(), "CI=true and {reason}");
            return Err(reason);
        }
        let mut lio = Lio {
            ns,
            vm: None,
            ports: spec.ports(),
            dir,
        };
        let initrd = lio.dir.path().join("lio.cpio");
        Initramfs::new(&spec.payload())
            .module("configfs")
            .module("target_core_mod")
            .module("target_core_file")
            .module("iscsi_target_mod")
            // Digests ask the crypto API for "crc32c", which a guest without modprobe cannot load
            // on demand.
            .module("crc32c_generic")
            .module("virtio_net")
            .module("virtio_pci")
            .net(Net::Static)
            .no_share()
            .build(kit, &initrd);
        let mut user = String::from("user,id=n0");
        for port in lio.ports.iter().chain([&CONTROL_PORT]) {
            let _ = write!(user, ",hostfwd=tcp:127.0.0.1:{port}-:{port}");
        }
        let vm = Vm::kernel(&initrd)
            .args(["-netdev", &user, "-device", "virtio-net-pci,netdev=n0"])
            .timeout(VM_LIFETIME)
            .spawn(kit, Some(&lio.ns));
        let vm = lio.vm.insert(vm);
        let booted = vm
            .wait_for_line(READY, BOOT_LIMIT)
            .unwrap_or_else(|e| panic!("LIO did not come up: {e}"));
        // The ready line comes just before the control shell listens.
        let answered = wait_until(EXEC_LIMIT, || lio.exec_once("true").is_some());
        assert!(
            answered,
            "the guest's control shell never answered; console tail:\n{}",
            lio.console_tail(30)
        );
        eprintln!("LIO VM {} ready after {booted:?}", lio.ns);
        Ok(lio)
    }

    /// The namespace sanshim runs in.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The portal forwarded to guest port `port`, as seen from the namespace.
    pub fn portal(&self, port: u16) -> String {
        format!("127.0.0.1:{port}")
    }

    /// `iscsi://127.0.0.1:PORT/IQN/LUN`.
    pub fn url(&self, port: u16, iqn: &str, lun: u32) -> String {
        format!("iscsi://{}/{iqn}/{lun}", self.portal(port))
    }

    /// A command running `program` in the namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        in_netns(&self.ns, program)
    }

    /// [`crate::common::sanshim`] in the namespace, with the same environment.
    pub fn sanshim(&self) -> Command {
        let base = crate::common::sanshim();
        let mut cmd = self.command(base.get_program());
        for (key, value) in base.get_envs() {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        cmd
    }

    /// Runs `script` in the guest's shell (stderr joined to stdout) and returns its output.
    ///
    /// # Panics
    /// When the control shell does not answer or `script` exits non-zero.
    pub fn exec(&self, script: &str) -> String {
        let out = self.try_exec(script);
        assert!(
            out.code == 0,
            "guest command {script:?} failed ({}): {}{}",
            out.code,
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    /// Runs `script` in the guest's shell; its exit status is the [`RunResult::code`].
    ///
    /// # Panics
    /// When the control shell does not answer.
    pub fn try_exec(&self, script: &str) -> RunResult {
        self.exec_once(script).unwrap_or_else(|| {
            panic!(
                "the guest's control shell did not answer {script:?}; console tail:\n{}",
                self.console_tail(30)
            )
        })
    }

    /// Runs `script` in the guest's shell; `None` when the shell did not answer.
    fn exec_once(&self, script: &str) -> Option<RunResult> {
        // The guest shell reads the script, then `exit`: its status ends the output.
        let wire = format!("exec 2>&1\n{script}\necho \"{RC_TAG}$?\"\nexit\n");
        let probe = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{CONTROL_PORT} && printf '%s' \"$1\" >&3 && cat <&3"
        );
        let mut cmd = self.command("bash");
        cmd.args(["-c", &probe, "lio-exec", &wire]);
        let out = run_within(&mut cmd, EXEC_LIMIT);
        let (output, rc) = out.stdout.rsplit_once(RC_TAG)?;
        Some(RunResult {
            code: rc.trim().parse().unwrap_or(-1),
            stdout: output.to_owned(),
            stderr: out.stderr,
        })
    }

    /// The guest's console so far.
    pub fn console(&self) -> String {
        self.vm.as_ref().map(RunningVm::console).unwrap_or_default()
    }

    /// The last `n` lines of the guest's console.
    pub fn console_tail(&self, n: usize) -> String {
        self.vm
            .as_ref()
            .map(|vm| vm.console_tail(n))
            .unwrap_or_default()
    }
}

impl Drop for Lio {
    fn drop(&mut self) {
        drop(self.vm.take());
        // Whatever a test left running in the namespace (an export after a panic) would keep
        // it alive after its name is gone.
        let limit = Duration::from_secs(10);
        let ip = |args: &[&str]| try_output_within(Command::new("ip").args(args), limit);
        if let Ok(out) = ip(&["netns", "pids", &self.ns]) {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        match ip(&["netns", "del", &self.ns]) {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "warning: ip netns del {}: {}",
                self.ns,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("warning: {e}"),
        }
    }
}

/// Creates `ns` with `lo` up and the veth pair that makes 10.0.2.15 on-link and silent.
fn make_namespace(ns: &str) -> Result<(), String> {
    let steps: [&[&str]; 6] = [
        &["netns", "add", ns],
        &["-n", ns, "link", "set", "lo", "up"],
        &[
            "-n", ns, "link", "add", "lio-a", "type", "veth", "peer", "name", "lio-b",
        ],
        &["-n", ns, "addr", "add", "10.0.2.1/24", "dev", "lio-a"],
        &["-n", ns, "link", "set", "lio-a", "up"],
        &["-n", ns, "link", "set", "lio-b", "up"],
    ];
    for step in steps {
        let out = run_within(Command::new("ip").args(step), Duration::from_secs(10));
        if out.code != 0 {
            if step[0] != "netns" {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
            return Err(format!("ip {}: {}", step.join(" "), out.stderr.trim()));
        }
    }
    Ok(())
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// How long a VM may live at most (a safety net for a test that hangs).
const VM_LIFETIME: Duration = Duration::from_secs(600);
/// How long the boot and LIO's configuration may take.
const BOOT_LIMIT: Duration = Duration::from_secs(90);
/// How long one control command may take.
const EXEC_LIMIT: Duration = Duration::from_secs(30);
/// Marks the exit status at the end of a control command's output.
const RC_TAG: &str = "@@lio-rc=";

/// The payload's start: configfs, the fabric, and `w FILE VALUE`, which fails loudly.
/// LIO's errors (printk level 3) stay on the console: they say why a login was refused.
/// `w` writes without a newline: LIO keeps one written to a CHAP name or secret as part of it.
const PAYLOAD_HEAD: &str = r#"set -e
w() {
    f=$1
    shift
    printf '%s' "$*" >"$f" || { echo "LIO-SETUP-FAILED: $* > $f"; exit 1; }
}
mount -t configfs configfs /sys/kernel/config 2>/dev/null || true
T=/sys/kernel/config/target
mkdir -p $T/iscsi
"#;
