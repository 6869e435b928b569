//! `sanshim export` over the two proxied paths, serving NBD on a unix socket; stopped with
//! SIGTERM, which must drain, flush and exit 0.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// The export name the soak asks for.
pub const NAME: &str = "soak";

/// A running `sanshim export`.
pub struct Export {
    child: Option<Child>,
    /// The NBD socket.
    pub sock: PathBuf,
    /// Its log (stderr).
    pub log: PathBuf,
}

impl Export {
    /// Starts `sanshim` exporting every URL in `urls` as one device on `dir/nbd.sock`
    /// (requiring CRC32C digests, or refusing them), and waits for its URI line on stdout.
    ///
    /// # Errors
    /// It could not start, or exited or stayed silent for 60 s before serving.
    pub fn start(
        sanshim: &Path,
        urls: &[String],
        digests: bool,
        dir: &Path,
    ) -> Result<Export, String> {
        let digest = if digests { "crc32c" } else { "none" };
        let sock = dir.join("nbd.sock");
        let log = dir.join("sanshim.log");
        let stderr = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut child = Command::new(sanshim)
            .args([
                "-v",
                "--header-digest",
                digest,
                "--data-digest",
                digest,
                "export",
            ])
            .args(urls)
            .arg("--listen")
            .arg(format!("unix:{}", sock.display()))
            .arg("--control")
            .arg(dir.join("sanshim.ctl"))
            .args(["--name", NAME])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", sanshim.display()))?;
        let stdout = child.stdout.take().ok_or("sanshim stdout not piped")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let export = Export {
            child: Some(child),
            sock,
            log,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.starts_with("nbd+unix://") => Ok(export),
            Ok(line) => Err(format!("unexpected output from sanshim: {line}")),
            Err(_) => Err(format!(
                "sanshim export did not start serving; log: {}",
                export.log.display()
            )),
        }
    }

    /// Sends SIGTERM and waits up to `limit` for the exit; `None` when it had to be killed.
    pub fn stop(mut self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = i32::try_from(child.id()).ok().and_then(Pid::from_raw);
        if let Some(pid) = pid {
            let _ = kill_process(pid, Signal::TERM);
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
