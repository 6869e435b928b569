//! An isolated tgtd (Linux SCSI target framework daemon) per test.
//!
//! Each instance has its own control port (`tgtd -C N`), its own portal on loopback — or, with
//! [`Tgtd::start_in`], on an address inside a network namespace — and its backing files in a
//! temporary directory. tgtd ignores SIGTERM, so it is stopped with SIGKILL by the pid we
//! started; the backing files keep what was written, which [`Tgtd::restart`] relies on.
//!
//! In a namespace, tgtd and every tgtadm call run under `ip netns exec NS`: tgtd's control
//! socket is a file in /var/run/tgtd on this Debian, but builds that use an abstract socket
//! make it per namespace, and the prefix costs nothing.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

static NEXT_CONTROL: AtomicU32 = AtomicU32::new(0);

/// A running tgtd and the configuration applied to it (replayed on restart).
pub struct Tgtd {
    control: u32,
    /// The network namespace tgtd runs in; `None` for the test's own (loopback portal).
    netns: Option<String>,
    host: String,
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    extra_portals: Vec<String>,
    /// Every successful tgtadm configuration call, replayed by `restart`.
    config: Vec<Vec<String>>,
}

impl Tgtd {
    /// Starts tgtd on a free loopback port, or returns why it cannot (outside CI only; under
    /// CI=true a missing tgtd panics).
    pub fn try_start() -> Result<Tgtd, String> {
        Tgtd::try_start_with(None, "127.0.0.1".to_string(), free_port())
    }

    /// Starts tgtd inside network namespace `netns`, listening on `portal` (an address of
    /// that namespace); further portals come with [`Tgtd::add_portal`]. Returns why it cannot
    /// start when tgtd is not installed (outside CI only).
    pub fn try_start_in(netns: &str, portal: SocketAddr) -> Result<Tgtd, String> {
        let host = portal.ip().to_string();
        Tgtd::try_start_with(Some(netns.to_string()), host, portal.port())
    }

    /// [`Tgtd::try_start_in`], panicking if it cannot.
    pub fn start_in(netns: &str, portal: SocketAddr) -> Tgtd {
        Tgtd::try_start_in(netns, portal).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start_with(netns: Option<String>, host: String, port: u16) -> Result<Tgtd, String> {
        super::require_tool("tgtd")?;
        super::require_tool("tgtadm")?;
        let seq = NEXT_CONTROL.fetch_add(1, Ordering::Relaxed);
        // tgtd takes control ports up to 32767.
        let control = 1000 + (std::process::id() % 300) * 100 + seq % 100;
        let mut t = Tgtd {
            control,
            netns,
            host,
            port,
            child: None,
            dir: tempfile::tempdir().map_err(|e| e.to_string())?,
            extra_portals: Vec::new(),
            config: Vec::new(),
        };
        t.spawn();
        Ok(t)
    }

    /// Starts tgtd; panics if it cannot.
    pub fn start() -> Tgtd {
        Tgtd::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The first portal's address, `127.0.0.1:PORT` unless started in a namespace.
    pub fn portal(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The portal port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding backing files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `tgtadm -C N --lld iscsi ARGS`, panicking with its output when it fails, and
    /// records the call for [`Tgtd::restart`].
    pub fn tgtadm(&mut self, args: &[&str]) -> String {
        let out = self.tgtadm_once(args);
        self.config
            .push(args.iter().map(|s| s.to_string()).collect());
        out
    }

    /// Runs a tgtadm query without recording it.
    pub fn query(&self, args: &[&str]) -> String {
        self.tgtadm_once(args)
    }

    /// Creates target `tid` named `iqn`, bound to every initiator address.
    pub fn add_target(&mut self, tid: u32, iqn: &str) -> &mut Self {
        let tid = tid.to_string();
        self.tgtadm(&["--op", "new", "--mode", "target", "--tid", &tid, "-T", iqn]);
        self.tgtadm(&[
            "--op", "bind", "--mode", "target", "--tid", &tid, "-I", "ALL",
        ]);
        self
    }

    /// Adds LUN `lun` to target `tid`, backed by a new sparse file of `size` bytes in the
    /// temp directory; returns the file's path.
    pub fn add_file_lun(&mut self, tid: u32, lun: u32, size: u64) -> PathBuf {
        self.add_file_lun_with_block_size(tid, lun, size, None)
    }

    /// [`Tgtd::add_file_lun`] with a logical block size other than tgtd's 512 bytes
    /// (`tgtadm --blocksize`, e.g. 4096 for a 4Kn LUN).
    pub fn add_file_lun_with_block_size(
        &mut self,
        tid: u32,
        lun: u32,
        size: u64,
        block_size: Option<u32>,
    ) -> PathBuf {
        let path = self.dir().join(format!("t{tid}-lun{lun}.img"));
        let file = std::fs::File::create(&path).expect("create backing file");
        file.set_len(size).expect("size backing file");
        let (tid, lun) = (tid.to_string(), lun.to_string());
        let p = path.to_string_lossy().into_owned();
        let block_size = block_size.map(|b| b.to_string());
        let mut args = vec![
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            &tid,
            "--lun",
            &lun,
            "-b",
            &p,
        ];
        if let Some(bs) = &block_size {
            args.extend(["--blocksize", bs]);
        }
        self.tgtadm(&args);
        path
    }

    /// Adds a `--bstype null` LUN (reports 1 TB, discards writes).
    pub fn add_null_lun(&mut self, tid: u32, lun: u32) -> &mut Self {
        let (tid, lun) = (tid.to_string(), lun.to_string());
        self.tgtadm(&[
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            &tid,
            "--lun",
            &lun,
            "--bstype",
            "null",
            "-b",
            "/dev/null",
        ]);
        self
    }

    /// Sets a logical-unit parameter (e.g. `readonly=1`, `vendor_id=...`).
    pub fn set_lun_params(&mut self, tid: u32, lun: u32, params: &str) -> &mut Self {
        let (tid, lun) = (tid.to_string(), lun.to_string());
        self.tgtadm(&[
            "--op",
            "update",
            "--mode",
            "logicalunit",
            "--tid",
            &tid,
            "--lun",
            &lun,
            "--params",
            params,
        ]);
        self
    }

    /// Sets an iSCSI target parameter such as HeaderDigest, MaxRecvDataSegmentLength.
    pub fn set_param(&mut self, tid: u32, name: &str, value: &str) -> &mut Self {
        let tid = tid.to_string();
        self.tgtadm(&[
            "--op", "update", "--mode", "target", "--tid", &tid, "-n", name, "-v", value,
        ]);
        self
    }

    /// Creates a CHAP account and binds it to `tid`; `outgoing` makes it the account the
    /// target proves itself with (mutual CHAP).
    pub fn add_chap(&mut self, tid: u32, user: &str, secret: &str, outgoing: bool) -> &mut Self {
        let tid = tid.to_string();
        self.tgtadm(&[
            "--op",
            "new",
            "--mode",
            "account",
            "--user",
            user,
            "--password",
            secret,
        ]);
        let mut args = vec![
            "--op", "bind", "--mode", "account", "--tid", &tid, "--user", user,
        ];
        if outgoing {
            args.push("--outgoing");
        }
        self.tgtadm(&args);
        self
    }

    /// Adds a further portal (tgtd honours only the last `--iscsi portal=` option).
    pub fn add_portal(&mut self, addr: &str) -> &mut Self {
        let param = format!("portal={addr}");
        self.tgtadm_once(&["--op", "new", "--mode", "portal", "--param", &param]);
        self.extra_portals.push(addr.to_string());
        self
    }

    /// Kills tgtd with SIGKILL (the way a crashed target disappears).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills tgtd and starts it again on the same port with the same configuration and
    /// backing files.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
        for args in self.config.clone() {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            self.tgtadm_once(&args);
        }
        for addr in self.extra_portals.clone() {
            let param = format!("portal={addr}");
            self.tgtadm_once(&["--op", "new", "--mode", "portal", "--param", &param]);
        }
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir().join("tgtd.log")).expect("tgtd log file");
        // `ip netns exec` execs tgtd in place, so the pid we hold is tgtd's own.
        let child = self
            .command("tgtd")
            .args(["-f", "-C", &self.control.to_string(), "--iscsi"])
            .arg(format!("portal={}", self.portal()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tgtd");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let control_ok = self.try_tgtadm(&["--op", "show", "--mode", "sys"]).is_ok();
            if control_ok && self.listening() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("tgtd exited early ({status}); log: {}", self.log());
            }
            if Instant::now() > deadline {
                panic!(
                    "tgtd did not come up on {}; log: {}",
                    self.portal(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn tgtadm_once(&self, args: &[&str]) -> String {
        self.try_tgtadm(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Whether the first portal accepts connections: a connect on loopback, or `ss` inside
    /// the namespace (the test process cannot reach a namespace's addresses).
    fn listening(&self) -> bool {
        let Some(ns) = &self.netns else {
            let addr: SocketAddr = self.portal().parse().expect("portal address");
            return TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        };
        let filter = format!("src {}", self.portal());
        let mut ss = Command::new("ip");
        ss.args(["netns", "exec", ns, "ss", "-Hltn", &filter]);
        try_output_within(&mut ss, TGTADM_TIMEOUT)
            .is_ok_and(|out| out.status.success() && !out.stdout.is_empty())
    }

    /// `program` run in tgtd's namespace.
    fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns, program]);
                cmd
            }
            None => Command::new(program),
        }
    }

    /// Runs `tgtadm -C N --lld iscsi ARGS` once, without recording it; its output, or why it
    /// failed (for a change tgtd may refuse for now, such as deleting an active LU).
    pub fn try_tgtadm(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = self.command("tgtadm");
        cmd.args(["-C", &self.control.to_string(), "--lld", "iscsi"])
            .args(args);
        let out = try_output_within(&mut cmd, TGTADM_TIMEOUT)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "tgtadm {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("tgtd.log")).unwrap_or_default()
    }
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `cmd` with stdin closed and its output captured; after `limit` it is killed and the
/// error says so, with its stderr so far. A non-zero exit is not an error here.
///
/// It lives here, not in `common`, because the testbed crate's tests include this file alone.
pub fn try_output_within(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let deadline = Instant::now() + limit;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run {cmd:?}: {e}"))?;
    let (tx, rx) = mpsc::channel();
    let pipes: [(usize, Box<dyn Read + Send>); 2] = [
        (0, Box::new(child.stdout.take().expect("stdout is piped"))),
        (1, Box::new(child.stderr.take().expect("stderr is piped"))),
    ];
    for (i, mut pipe) in pipes {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send((i, buf));
        });
    }
    // Both pipes reach end of file when the command exits (it starts no daemons).
    let mut streams = [None, None];
    let mut timed_out = false;
    while streams.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(if timed_out { KILL_GRACE } else { left }) {
            Ok((i, buf)) => streams[i] = Some(buf),
            Err(_) if timed_out => break,
            Err(_) => {
                timed_out = true;
                let _ = child.kill();
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("could not wait for {cmd:?}: {e}"))?;
    let [stdout, stderr] = streams.map(Option::unwrap_or_default);
    if timed_out {
        return Err(format!(
            "{cmd:?} did not finish within {limit:?}; killed. stderr:\n{}",
            String::from_utf8_lossy(&stderr)
        ));
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// A loopback TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// How long one tgtadm (or ss) call may take.
const TGTADM_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a killed command has to close its output.
const KILL_GRACE: Duration = Duration::from_secs(2);
