//! A running `sanshim export`, for the tests that serve a LUN over NBD from a child process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the export may take to print its URI line, or to exit once told to.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// `sanshim -v export ARGS...`, its stderr in a log file, killed when dropped.
pub struct Export {
    child: Child,
    /// The first line the export printed: its NBD URI.
    pub uri: String,
    log: PathBuf,
}

impl Export {
    /// Starts `sanshim -v export` with `args` (URLs, `--listen`, ...), stderr to `log`, and
    /// waits for its URI line; panics with the log when none comes within [`PATIENCE`].
    pub fn start<I, S>(args: I, log: &Path) -> Export
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut child = super::sanshim()
            .args(["-v", "export"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let _ = tx.send(line);
            }
        });
        let export = |uri| Export {
            child,
            uri,
            log: log.to_owned(),
        };
        match rx.recv_timeout(PATIENCE) {
            Ok(Ok(line)) => export(line),
            other => {
                let export = export(String::new());
                panic!(
                    "no URI line from sanshim export ({other:?}); its log:\n{}",
                    export.log()
                );
            }
        }
    }

    /// What the export logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (as `kill` takes it: `-TERM`, `-USR1`).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(sent.success(), "kill {signal} {pid}");
    }

    /// Waits for the exit status; panics with the log after [`PATIENCE`].
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "sanshim export did not exit in {PATIENCE:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then the exit status; prints the log (to the test's output).
    pub fn stop(mut self) -> ExitStatus {
        self.signal("-TERM");
        let status = self.wait();
        eprintln!("sanshim export log:\n{}", self.log());
        status
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
