//! The soak's tgtd: one target with one file-backed LUN, CRC32C header and data digests
//! required (unless the soak runs without), thin provisioning on (so UNMAP punches holes and the export offers trim); killed
//! with SIGKILL and started again with the same configuration and backing file.
//!
//! tgtd ignores SIGTERM, so it is stopped with SIGKILL by the pid we started. Its control
//! socket is `/var/run/tgtd/socket.N` for `-C N`; N is picked among those not in use, and the
//! socket (which a killed tgtd leaves) is removed at the end.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The target name.
pub const IQN: &str = "iqn.2026-12.test.sanshim:soak";

/// A running tgtd; see the module documentation.
pub struct Tgtd {
    control: u32,
    digests: bool,
    portal: SocketAddr,
    backing: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Tgtd {
    /// Creates a sparse backing file of `size` bytes at `backing`, starts tgtd on `portal`
    /// (logging to `log`) and configures it, requiring CRC32C digests when `digests`.
    ///
    /// # Errors
    /// What went wrong, with tgtd's log when it did not come up.
    pub fn start(
        digests: bool,
        portal: SocketAddr,
        backing: &Path,
        size: u64,
        log: &Path,
    ) -> Result<Tgtd, String> {
        let file = File::create(backing).map_err(|e| format!("{}: {e}", backing.display()))?;
        file.set_len(size)
            .map_err(|e| format!("{}: {e}", backing.display()))?;
        let mut t = Tgtd {
            control: free_control()?,
            digests,
            portal,
            backing: backing.to_owned(),
            log: log.to_owned(),
            child: None,
        };
        t.spawn()?;
        Ok(t)
    }

    /// Kills tgtd with SIGKILL (a crashed target) and starts it again, same port, same
    /// configuration, same backing file; returns how long it was gone.
    ///
    /// # Errors
    /// tgtd did not come back.
    pub fn restart(&mut self, down: Duration) -> Result<Duration, String> {
        let killed = Instant::now();
        self.kill();
        std::thread::sleep(down);
        self.spawn()?;
        Ok(killed.elapsed())
    }

    /// Kills tgtd with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let child = Command::new("tgtd")
            .args(["-f", "-C", &self.control.to_string(), "--iscsi"])
            .arg(format!("portal={}", self.portal))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run tgtd: {e}"))?;
        self.child = Some(child);
        self.wait_ready()?;
        self.configure()
    }

    fn configure(&self) -> Result<(), String> {
        let backing = self.backing.to_string_lossy();
        let (target, lu) = (
            "--mode target --tid 1",
            "--mode logicalunit --tid 1 --lun 1",
        );
        let mut calls = vec![
            format!("--op new {target} -T {IQN}"),
            format!("--op bind {target} -I ALL"),
            format!("--op new {lu} -b {backing}"),
            format!("--op update {lu} --params thin_provisioning=1"),
        ];
        if self.digests {
            for key in ["HeaderDigest", "DataDigest"] {
                calls.push(format!("--op update {target} -n {key} -v CRC32C"));
            }
        }
        for call in calls {
            // Arguments are split at spaces: the backing file's path has none (a tempdir).
            self.tgtadm(&call.split(' ').collect::<Vec<_>>())?;
        }
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let control = self.tgtadm(&["--op", "show", "--mode", "sys"]).is_ok();
            let listening =
                TcpStream::connect_timeout(&self.portal, Duration::from_millis(200)).is_ok();
            if control && listening {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "tgtd exited early ({status}); log: {}",
                    self.log.display()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("tgtd did not come up; log: {}", self.log.display()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn tgtadm(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("tgtadm")
            .args(["-C", &self.control.to_string(), "--lld", "iscsi"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run tgtadm: {e}"))?;
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
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        self.kill();
        // A killed tgtd leaves its control socket behind.
        for suffix in ["", ".lock"] {
            let _ = std::fs::remove_file(format!("/var/run/tgtd/socket.{}{suffix}", self.control));
        }
    }
}

/// A tgtd control port (`-C N`, at most 32767) whose socket does not exist.
fn free_control() -> Result<u32, String> {
    let start = 32_000 + std::process::id() % 700;
    (0..700)
        .map(|i| 32_000 + (start - 32_000 + i) % 700)
        .find(|n| !Path::new(&format!("/var/run/tgtd/socket.{n}")).exists())
        .ok_or_else(|| "no free tgtd control port in 32000..32700".to_owned())
}
