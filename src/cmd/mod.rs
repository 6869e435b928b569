//! One module per command; [`run`] dispatches.

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::exit::Failure;

/// Runs the command the user chose.
pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let Cli { global, command } = cli;
    let _ = &global;
    match command {}
}
