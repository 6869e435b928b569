//! Global options, logging set-up and the command enum (shared/DESIGN.md "Command line
//! contract").

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

/// Userspace iSCSI initiator and iBFT boot shim: one SAN LUN, every path, one NBD device.
#[derive(Debug, Parser)]
#[command(name = "sanshim", version, about)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args, Debug)]
pub struct Global {
    /// Our iSCSI name (default: InitiatorName= from /etc/iscsi/initiatorname.iscsi, else
    /// iqn.2026-11.local:<hostname>); always lower-cased.
    #[arg(long, global = true, value_name = "IQN")]
    pub initiator_name: Option<String>,
    /// CHAP name; the secret comes from $SANSHIM_CHAP_SECRET or --chap-secret-file.
    #[arg(long, global = true, value_name = "USER")]
    pub chap_user: Option<String>,
    /// File holding the CHAP secret (first line).
    #[arg(long, global = true, value_name = "FILE")]
    pub chap_secret_file: Option<PathBuf>,
    /// Name the target must prove (mutual CHAP); the secret comes from $SANSHIM_MUTUAL_SECRET
    /// or --mutual-secret-file.
    #[arg(long, global = true, value_name = "USER")]
    pub mutual_user: Option<String>,
    /// File holding the mutual CHAP secret (first line).
    #[arg(long, global = true, value_name = "FILE")]
    pub mutual_secret_file: Option<PathBuf>,
    /// CHAP name for discovery sessions (SendTargets), for portals whose discovery
    /// credentials differ from the targets'; the secret comes from
    /// $SANSHIM_DISCOVERY_CHAP_SECRET or --discovery-chap-secret-file. Without it, discovery
    /// offers --chap-user's credentials, then none.
    #[arg(long, global = true, value_name = "USER")]
    pub discovery_chap_user: Option<String>,
    /// File holding the discovery CHAP secret (first line).
    #[arg(long, global = true, value_name = "FILE")]
    pub discovery_chap_secret_file: Option<PathBuf>,
    /// Name the portal must prove in discovery sessions (mutual CHAP); the secret comes from
    /// $SANSHIM_DISCOVERY_MUTUAL_SECRET or --discovery-mutual-secret-file.
    #[arg(long, global = true, value_name = "USER")]
    pub discovery_mutual_user: Option<String>,
    /// File holding the discovery mutual CHAP secret (first line).
    #[arg(long, global = true, value_name = "FILE")]
    pub discovery_mutual_secret_file: Option<PathBuf>,
    /// Header digest to negotiate.
    #[arg(long, global = true, value_enum, default_value_t = DigestChoice::PreferCrc32c)]
    pub header_digest: DigestChoice,
    /// Data digest to negotiate.
    #[arg(long, global = true, value_enum, default_value_t = DigestChoice::PreferCrc32c)]
    pub data_digest: DigestChoice,
    /// Seconds to wait for each answer during a login before giving up on the portal (a
    /// portal that accepts connections and never answers: exit 3).
    #[arg(long, global = true, value_name = "SECS", default_value = "15",
          value_parser = crate::cmd::session::parse_login_timeout)]
    pub login_timeout: std::time::Duration,
    /// Threads that drive sessions and NBD connections. 1 (the default) runs everything on
    /// one thread, which is the cheapest per byte: each path's socket is served by one
    /// driver anyway, and wake-ups stay on one CPU. More spreads the paths of a multipath
    /// device and the NBD connections over that many threads, for many fast paths.
    #[arg(long, global = true, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More logging (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less logging (errors only).
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// A digest choice for `--header-digest` / `--data-digest`.
#[derive(Clone, Copy, Debug, Eq, PartialEq, ValueEnum)]
pub enum DigestChoice {
    /// Require CRC32C.
    Crc32c,
    /// Offer no digest.
    None,
    /// Offer "CRC32C,None".
    PreferCrc32c,
}

/// Log output format.
#[derive(Clone, Copy, Debug, Eq, PartialEq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask portals which targets they offer (SendTargets), optionally with their LUNs.
    Discover(crate::cmd::discover::DiscoverArgs),
    /// Describe the LUNs that iscsi:// URLs name.
    Ls(crate::cmd::ls::LsArgs),
    /// Read and check the firmware's iSCSI Boot Firmware Table.
    Ibft(crate::cmd::ibft::IbftArgs),
    /// Serve a LUN over NBD (unix socket, TCP, or the kernel's /dev/nbdN) until SIGINT/SIGTERM.
    Export(crate::cmd::export::ExportArgs),
    /// Measure a LUN: throughput, IOPS and latency of reads or writes, optionally verified.
    Bench(crate::cmd::bench::BenchArgs),
    /// Boot from the firmware's iSCSI Boot Firmware Table: bring up its NICs, log in to its
    /// targets over every path, and serve the boot LU as /dev/nbd0 until SIGTERM.
    Boot(crate::cmd::boot::BootArgs),
    /// Per-path state, counters and latency of a running export.
    Status(crate::cmd::status::StatusArgs),
}

/// Sends logs to stderr at the level `-v`/`-q` ask for, at least info for `boot` (an operator
/// watches each step of it); `RUST_LOG` overrides.
pub fn init_logging(global: &Global, command: &Command) {
    let floor = u8::from(matches!(command, Command::Boot(_)));
    let level = if global.quiet {
        "error"
    } else {
        match global.verbose.max(floor) {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // Colours only for a person at a terminal: logs that go to a file stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match global.log_format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}
