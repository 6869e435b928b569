//! `sanshim`: log in to an iSCSI LUN over every path the firmware or the user names and hand
//! it to the system as one NBD block device.
//!
//! The command-line contract lives in shared/DESIGN.md ("Command line contract"); each command
//! is a module under `cmd/`.
#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod creds;
mod exit;
mod net;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout with success, usage errors to stderr.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    cli::init_logging(&cli.global, &cli.command);
    match cmd::run(cli) {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}
