//! The test bed shared by the integration tests: real peers started per test.
//!
//! Each test binary includes this with `mod common;`; not every binary uses every helper.
#![allow(dead_code)]

pub mod data;
pub mod export;
pub mod mock_portal;
pub mod nbd_client;
pub mod netns;
pub mod tgtd;

use std::path::PathBuf;
use std::process::{Command, Output};

/// Whether we run under CI, where a missing peer fails the test instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Finds `tool` on PATH (and in /usr/sbin, /sbin, where Debian puts daemons). Under CI a
/// missing tool is a test failure; elsewhere the caller skips with the returned reason.
pub fn require_tool(tool: &str) -> Result<PathBuf, String> {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path.split(':').chain(["/usr/sbin", "/sbin", "/usr/bin"]);
    for dir in dirs {
        let candidate = PathBuf::from(dir).join(tool);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let reason = format!("{tool} is not installed (scripts/test installs it with apt-get)");
    if in_ci() {
        panic!("CI=true and {reason}");
    }
    Err(reason)
}

/// Skips the current test (returns from it) when a tool is missing outside CI.
#[macro_export]
macro_rules! require_tool_or_skip {
    ($tool:expr) => {
        match $crate::common::require_tool($tool) {
            Ok(path) => path,
            Err(reason) => {
                eprintln!("SKIPPED: {reason}");
                return;
            }
        }
    };
}

/// The `sanshim` binary built for this test run.
pub fn sanshim() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sanshim"));
    // Tests must not pick up the machine's own initiator name or secrets by accident.
    cmd.env_remove("SANSHIM_CHAP_SECRET")
        .env_remove("SANSHIM_MUTUAL_SECRET")
        .env_remove("SANSHIM_DISCOVERY_CHAP_SECRET")
        .env_remove("SANSHIM_DISCOVERY_MUTUAL_SECRET");
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Runs a command and returns its output, with both streams as text for assertions.
pub fn run(cmd: &mut Command) -> RunResult {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    RunResult::from(output)
}

/// The outcome of a finished command.
#[derive(Debug)]
pub struct RunResult {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for RunResult {
    fn from(o: Output) -> Self {
        RunResult {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl RunResult {
    /// Panics with both streams unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Parses stdout as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}):\n{}\n--- stderr\n{}",
                self.stdout, self.stderr
            )
        })
    }
}
