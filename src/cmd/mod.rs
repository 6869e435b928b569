//! One module per command; [`run`] dispatches.

pub mod bench;
pub mod boot;
pub mod discover;
pub mod export;
pub mod ibft;
pub mod ls;
pub mod serve;
pub mod session;
pub mod status;

use std::process::ExitCode;

use anyhow::anyhow;

use crate::cli::{Cli, Command, Global};
use crate::exit::Failure;

/// Runs the command the user chose.
pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let Cli { global, command } = cli;
    match command {
        Command::Bench(args) => bench::run(&global, args),
        Command::Boot(args) => boot::run(&global, args),
        Command::Discover(args) => discover::run(&global, args),
        Command::Export(args) => export::run(&global, args),
        Command::Ibft(args) => ibft::run(&global, args),
        Command::Ls(args) => ls::run(&global, args),
        Command::Status(args) => status::run(&global, args),
    }
}

/// The tokio runtime commands drive sessions on: one thread unless `--threads` asks for
/// more (blocking work, such as the kernel's NBD_DO_IT, runs on tokio's blocking pool
/// either way).
pub fn runtime(global: &Global) -> Result<tokio::runtime::Runtime, Failure> {
    let mut builder = match global.threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(usize::from(n));
            b
        }
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| Failure::from(anyhow!("cannot start the async runtime: {e}")))
}
