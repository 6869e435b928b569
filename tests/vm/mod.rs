//! QEMU VM test harness: Debian's own kernel under TCG, booting a busybox initramfs that runs one
//! payload script, with results back on the host. A thin wrapper over `scripts/vm/`:
//!
//! ```text
//!  kit() ── fetch-kernel ──► kernel dir (vmlinux, vmlinuz, modules/)
//!  Initramfs::new(payload).module(..).file(..).build(kit, path) ── mkinitramfs ──► cpio
//!  Vm::kernel(cpio) | Vm::firmware() .arg(..).out_dir(..).run(kit) ── run ──► VmRun
//!                                                         { status, console, out_dir }
//!                                     .spawn(kit, netns) ── run --same-group ──► RunningVm
//! ```
//!
//! [`Vm::run`] blocks until the VM stops; [`Vm::spawn`] returns at once with a [`RunningVm`]
//! whose console can be watched while the guest serves the host (a target, say), and which
//! kills the VM's process group when dropped.
//!
//! Results leave the guest two ways: lines the payload prints on the console (pick a tag and
//! read them with [`VmRun::records`]; the kernel is quiet, and `echo 1 >
//! /proc/sys/kernel/printk` in the payload silences it further), or files it writes to `$OUT`
//! when the VM has an [`Vm::out_dir`] (a 9p share; costs ~1 s of boot).
//!
//! Prerequisites missing (QEMU, busybox-static, cpio, the kernel package): [`kit`] returns why,
//! and the test skips with [`vm_kit_or_skip!`]; under `CI=true` it panics instead, so CI never
//! passes by skipping. Boots run at most `available_parallelism` at a time per test process.
#![allow(dead_code)]

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What a test needs to boot VMs: the scripts and an unpacked kernel.
#[derive(Debug)]
pub struct Kit {
    scripts: PathBuf,
    kernel: PathBuf,
}

/// Network set-up of the guest's eth0 by its init.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Net {
    /// Leave the network down.
    None,
    /// udhcpc on eth0.
    Dhcp,
    /// 10.0.2.15/24, gateway 10.0.2.2 (QEMU user networking).
    Static,
}

/// An initramfs to build: busybox, the named modules, one payload, extra files.
#[derive(Clone, Debug)]
pub struct Initramfs {
    payload: String,
    modules: Vec<String>,
    shipped: Vec<String>,
    net: Net,
    files: Vec<(PathBuf, String)>,
    share: bool,
}

/// One VM boot to run.
#[derive(Clone, Debug)]
pub struct Vm {
    initrd: Option<PathBuf>,
    append: String,
    timeout: Duration,
    memory: String,
    args: Vec<OsString>,
    out_dir: Option<PathBuf>,
    log: Option<PathBuf>,
}

/// The outcome of a boot.
#[derive(Debug)]
pub struct VmRun {
    /// The payload's exit status; 124 when the VM timed out, 125 when it stopped without the
    /// end marker (init failed, kernel panic, the firmware flow never reached the kernel).
    pub status: i32,
    /// The console log, `\r` removed.
    pub console: String,
    /// Wall time of the boot.
    pub elapsed: Duration,
    /// The host directory the guest saw as `/out`, when one was given.
    pub out_dir: Option<PathBuf>,
}

/// The kit, set up once per test process: prerequisites checked and the kernel fetched.
///
/// # Errors
/// Why VMs cannot run here (outside CI only).
///
/// # Panics
/// Under `CI=true` when a prerequisite is missing.
pub fn kit() -> Result<&'static Kit, String> {
    static KIT: OnceLock<Result<Kit, String>> = OnceLock::new();
    let kit = KIT.get_or_init(Kit::find);
    match kit {
        Ok(kit) => Ok(kit),
        Err(reason) if in_ci() => panic!("CI=true and the VM tests cannot run: {reason}"),
        Err(reason) => Err(reason.clone()),
    }
}

/// Returns the [`Kit`] or skips the calling test (returns from it) with the reason printed.
#[macro_export]
macro_rules! vm_kit_or_skip {
    () => {
        match $crate::vm::kit() {
            Ok(kit) => kit,
            Err(reason) => {
                eprintln!("SKIPPED: {reason}");
                return;
            }
        }
    };
}

/// A statically linked `sanshim` for the guest, built once per test process by
/// `scripts/vm/build-static` into `target/static` (cargo decides whether anything changed).
///
/// # Panics
/// When the build fails: that is a broken tree, not a missing prerequisite.
pub fn static_sanshim() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = repo_root().join("scripts/vm/build-static");
        let out = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed ({})",
            script.display(),
            out.status
        );
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        PathBuf::from(path)
    })
}

/// Whether we run under CI, where missing prerequisites fail instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

impl Kit {
    fn find() -> Result<Kit, String> {
        for tool in ["qemu-system-x86_64", "cpio", "dpkg", "flock", "timeout"] {
            if which(tool).is_none() {
                return Err(format!("{tool} is not installed"));
            }
        }
        if !Path::new("/bin/busybox").is_file() {
            return Err("busybox-static (/bin/busybox) is not installed".to_owned());
        }
        let scripts = repo_root().join("scripts/vm");
        let out = Command::new(scripts.join("fetch-kernel"))
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run scripts/vm/fetch-kernel: {e}"))?;
        if !out.status.success() {
            return Err(format!("scripts/vm/fetch-kernel failed ({})", out.status));
        }
        let kernel = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if !kernel.join("vmlinux").is_file() {
            return Err(format!("{} holds no vmlinux", kernel.display()));
        }
        Ok(Kit { scripts, kernel })
    }

    /// The unpacked kernel directory (`vmlinuz`, `vmlinux`, `modules/`, `config`).
    pub fn kernel_dir(&self) -> &Path {
        &self.kernel
    }

    /// The compressed kernel image, for boot flows that load it themselves (iPXE).
    pub fn vmlinuz(&self) -> PathBuf {
        self.kernel.join("vmlinuz")
    }

    fn script(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.scripts.join(name));
        cmd.stdin(Stdio::null());
        cmd
    }
}

impl Initramfs {
    /// An initramfs whose `/payload` is `script` (busybox sh; `$OUT` is the output directory,
    /// arguments after `--` on the kernel command line are its `$@`).
    pub fn new(script: &str) -> Initramfs {
        Initramfs {
            payload: script.to_owned(),
            modules: Vec::new(),
            shipped: Vec::new(),
            net: Net::None,
            files: Vec::new(),
            share: true,
        }
    }

    /// Loads `name` (and what it depends on) at boot.
    pub fn module(mut self, name: &str) -> Initramfs {
        self.modules.push(name.to_owned());
        self
    }

    /// Ships `name` as `/lib/modules/NAME.ko` and loads only its dependencies at boot: the
    /// payload `insmod`s it, for a module whose load may fail on purpose.
    pub fn ship_module(mut self, name: &str) -> Initramfs {
        self.shipped.push(name.to_owned());
        self
    }

    /// Brings eth0 up this way before the payload (needs the NIC's driver module).
    pub fn net(mut self, net: Net) -> Initramfs {
        self.net = net;
        self
    }

    /// Copies the host file `src` to `dest` in the image.
    pub fn file(mut self, src: impl AsRef<Path>, dest: &str) -> Initramfs {
        self.files.push((src.as_ref().to_owned(), dest.to_owned()));
        self
    }

    /// Adds the static `sanshim` as `/bin/sanshim` (building it if needed).
    pub fn with_sanshim(self) -> Initramfs {
        let bin = static_sanshim().to_owned();
        self.file(bin, "/bin/sanshim")
    }

    /// Leaves out the 9p modules: the boot is ~1 s shorter, and `/out` is a tmpfs only the
    /// guest sees.
    pub fn no_share(mut self) -> Initramfs {
        self.share = false;
        self
    }

    /// Writes the image to `path`.
    ///
    /// # Panics
    /// When `scripts/vm/mkinitramfs` fails (its stderr is shown).
    pub fn build(&self, kit: &Kit, path: &Path) {
        let payload = path.with_extension("payload.sh");
        std::fs::write(&payload, &self.payload).expect("write the payload script");
        let mut cmd = kit.script("mkinitramfs");
        cmd.arg("-o")
            .arg(path)
            .arg("-k")
            .arg(&kit.kernel)
            .arg("-p")
            .arg(&payload);
        cmd.arg("-n").arg(match self.net {
            Net::None => "none",
            Net::Dhcp => "dhcp",
            Net::Static => "static",
        });
        for module in &self.modules {
            cmd.arg("-m").arg(module);
        }
        for module in &self.shipped {
            cmd.arg("-M").arg(module);
        }
        for (src, dest) in &self.files {
            let mut spec = src.clone().into_os_string();
            spec.push(":");
            spec.push(dest);
            cmd.arg("-f").arg(spec);
        }
        if !self.share {
            cmd.arg("--no-share");
        }
        let status = cmd.status().expect("run scripts/vm/mkinitramfs");
        assert!(status.success(), "scripts/vm/mkinitramfs failed ({status})");
    }
}

impl Vm {
    /// Boots Debian's kernel (the uncompressed ELF, entered through PVH) on `initrd`.
    pub fn kernel(initrd: &Path) -> Vm {
        Vm {
            initrd: Some(initrd.to_owned()),
            ..Vm::firmware()
        }
    }

    /// Boots from the firmware (SeaBIOS and option ROMs); [`Vm::arg`] describes the flow, and
    /// whatever the firmware boots must print the end marker.
    pub fn firmware() -> Vm {
        Vm {
            initrd: None,
            append: String::new(),
            timeout: Duration::from_secs(120),
            memory: "512M".to_owned(),
            args: Vec::new(),
            out_dir: None,
            log: None,
        }
    }

    /// Appends to the kernel command line.
    pub fn append(mut self, text: &str) -> Vm {
        if !self.append.is_empty() {
            self.append.push(' ');
        }
        self.append.push_str(text);
        self
    }

    /// Kills the VM after `timeout` (default 120 s).
    pub fn timeout(mut self, timeout: Duration) -> Vm {
        self.timeout = timeout;
        self
    }

    /// Guest memory in QEMU's syntax (default `512M`).
    pub fn memory(mut self, memory: &str) -> Vm {
        self.memory = memory.to_owned();
        self
    }

    /// Passes one argument to qemu-system-x86_64.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Vm {
        self.args.push(arg.into());
        self
    }

    /// Passes arguments to qemu-system-x86_64.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Vm {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Shares `dir` with the guest as `/out` (9p); the initramfs must keep its share modules.
    pub fn out_dir(mut self, dir: &Path) -> Vm {
        self.out_dir = Some(dir.to_owned());
        self
    }

    /// Keeps the console log at `path` (default: a temporary file).
    pub fn log(mut self, path: &Path) -> Vm {
        self.log = Some(path.to_owned());
        self
    }

    /// Boots and waits for the VM to stop.
    ///
    /// # Panics
    /// When the run script cannot be started or the log cannot be read.
    pub fn run(&self, kit: &Kit) -> VmRun {
        let _slot = Slot::acquire();
        let tmp = tempfile::NamedTempFile::new().expect("temporary console log");
        let log = self.log.clone().unwrap_or_else(|| tmp.path().to_owned());
        let start = Instant::now();
        let output = self
            .command(kit, &log, None)
            .arg("--")
            .args(&self.args)
            .stdout(Stdio::null())
            .output()
            .expect("run scripts/vm/run");
        // Through eprint! so the test harness captures it (shown when the test fails).
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        let status = output.status;
        let raw = std::fs::read(&log).expect("read the console log");
        VmRun {
            status: status.code().unwrap_or(-1),
            console: String::from_utf8_lossy(&raw).replace('\r', ""),
            elapsed: start.elapsed(),
            out_dir: self.out_dir.clone(),
        }
    }

    /// Boots in the background, inside network namespace `netns` when one is given (QEMU's
    /// user-network port forwards then listen on that namespace's loopback), and returns at
    /// once. The VM runs in a process group of its own, which [`RunningVm`] kills when dropped;
    /// it holds one of the per-process VM slots until then.
    ///
    /// # Panics
    /// When the run script cannot be started.
    pub fn spawn(&self, kit: &Kit, netns: Option<&str>) -> RunningVm {
        let slot = Slot::acquire();
        let log = tempfile::NamedTempFile::new().expect("temporary console log");
        let mut cmd = self.command(kit, log.path(), netns);
        cmd.arg("--same-group").arg("--").args(&self.args);
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("run scripts/vm/run");
        RunningVm {
            child,
            log,
            started: Instant::now(),
            _slot: slot,
        }
    }

    /// The `scripts/vm/run` command line of this boot without the QEMU arguments, in `netns`
    /// when given.
    fn command(&self, kit: &Kit, log: &Path, netns: Option<&str>) -> Command {
        let mut cmd = match netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(kit.scripts.join("run"));
                cmd.stdin(Stdio::null());
                cmd
            }
            None => kit.script("run"),
        };
        cmd.arg("-k").arg(&kit.kernel).arg("-l").arg(log);
        cmd.arg("-t").arg(self.timeout.as_secs().max(1).to_string());
        cmd.arg("-M").arg(&self.memory);
        match &self.initrd {
            Some(initrd) => cmd.arg("-i").arg(initrd).arg("-a").arg(&self.append),
            None => cmd.arg("--firmware"),
        };
        if let Some(dir) = &self.out_dir {
            cmd.arg("-o").arg(dir);
        }
        cmd
    }
}

/// A VM booted by [`Vm::spawn`]: its console can be read while it runs; dropping it kills
/// the VM's process group (the run script, `timeout` and QEMU).
pub struct RunningVm {
    child: std::process::Child,
    log: tempfile::NamedTempFile,
    started: Instant,
    _slot: Slot,
}

impl RunningVm {
    /// The console log so far, `\r` removed.
    pub fn console(&self) -> String {
        let raw = std::fs::read(self.log.path()).unwrap_or_default();
        String::from_utf8_lossy(&raw).replace('\r', "")
    }

    /// Waits until a console line equals `line`, up to `limit`.
    ///
    /// # Errors
    /// The console's tail, when the VM stopped or `limit` passed first.
    pub fn wait_for_line(&mut self, line: &str, limit: Duration) -> Result<Duration, String> {
        let deadline = Instant::now() + limit;
        loop {
            if self.console().lines().any(|l| l == line) {
                return Ok(self.started.elapsed());
            }
            let stopped = matches!(self.child.try_wait(), Ok(Some(_)));
            if stopped || Instant::now() >= deadline {
                let why = if stopped {
                    "the VM stopped"
                } else {
                    "timed out"
                };
                return Err(format!(
                    "{why} after {:?} before printing {line:?}; console tail:\n{}",
                    self.started.elapsed(),
                    self.console_tail(60)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last `n` console lines.
    pub fn console_tail(&self, n: usize) -> String {
        let console = self.console();
        let lines: Vec<&str> = console.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The file the console is written to.
    pub fn log_path(&self) -> &Path {
        self.log.path()
    }

    /// How long ago the VM was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        // The child leads its process group (process_group(0)): its pid is the group id.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

impl VmRun {
    /// Panics, showing the console's tail, unless the payload exited 0.
    pub fn expect_success(&self) -> &VmRun {
        assert!(
            self.status == 0,
            "VM payload failed with status {} after {:?}; console tail:\n{}",
            self.status,
            self.elapsed,
            self.console_tail(60)
        );
        self
    }

    /// The text after `tag ` of every console line that starts with `tag `, in order.
    pub fn records(&self, tag: &str) -> Vec<&str> {
        self.console
            .lines()
            .filter_map(|line| line.strip_prefix(tag)?.strip_prefix(' '))
            .collect()
    }

    /// The last `n` console lines.
    pub fn console_tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.console.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The contents of `name` in the output directory.
    ///
    /// # Panics
    /// When the VM had no output directory or the payload did not write `name`.
    pub fn out_file(&self, name: &str) -> Vec<u8> {
        let dir = self.out_dir.as_ref().expect("the VM had no out_dir");
        std::fs::read(dir.join(name)).unwrap_or_else(|e| {
            panic!(
                "the guest left no {name} ({e}); console tail:\n{}",
                self.console_tail(40)
            )
        })
    }
}

/// The repository root (the `sanshim` package's manifest directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// A counting semaphore: at most `available_parallelism` VMs per process, whatever
/// `--test-threads` says, since each TCG guest keeps a core busy.
struct Slot;

static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

impl Slot {
    fn acquire() -> Slot {
        let max = std::thread::available_parallelism().map_or(1, usize::from);
        let (lock, cvar) = &SLOTS;
        let mut busy = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *busy >= max {
            busy = cvar.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (lock, cvar) = &SLOTS;
        let mut busy = lock.lock().unwrap_or_else(|e| e.into_inner());
        *busy -= 1;
        cvar.notify_one();
    }
}
