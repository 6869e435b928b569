//! Exit codes (shared/DESIGN.md) and the error type commands return.
// Every code of the contract is defined here, also those no command returns yet.
#![allow(dead_code)]

use std::fmt;
use std::process::ExitCode;

/// Everything went well.
pub const OK: u8 = 0;
/// Any failure without a code of its own.
pub const OTHER: u8 = 1;
/// The command line was wrong.
pub const USAGE: u8 = 2;
/// No path or portal could be reached.
pub const UNREACHABLE: u8 = 3;
/// The target refused the login or authentication failed.
pub const LOGIN_REFUSED: u8 = 4;
/// A SCSI command failed.
pub const SCSI: u8 = 5;
/// Data read back did not match what was written.
pub const VERIFY_MISMATCH: u8 = 6;

/// A command's failure: the exit code and the error chain to print.
pub struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl Failure {
    /// A failure with exit code `code`.
    pub fn new(code: u8, error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code,
            error: error.into(),
        }
    }

    /// The exit code.
    pub fn code(&self) -> u8 {
        self.code
    }

    /// Prints the error chain to stderr and turns the failure into the process exit code.
    pub fn report(self) -> ExitCode {
        eprintln!("sanshim: error: {}", self.message());
        ExitCode::from(self.code)
    }

    /// The error chain on one line; a cause its outer error already quotes is not repeated.
    pub fn message(&self) -> String {
        let mut message = String::new();
        for cause in self.error.chain() {
            let text = cause.to_string();
            if !message.contains(&text) {
                if !message.is_empty() {
                    message.push_str(": ");
                }
                message.push_str(&text);
            }
        }
        message
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit {}: {}", self.code, self.message())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure { code: OTHER, error }
    }
}
