//! `sanshim ibft [--source auto|acpi|mem|sysfs|FILE] [--format text|json|env|url]
//! [--show-secrets]`: read and check the firmware's iSCSI Boot Firmware Table.
//!
//! Sources (`--source`): `auto` tries the ACPI table `/sys/firmware/acpi/tables/iBFT`, then a
//! scan of physical memory 0x80000–0xFFFFF through `/dev/mem`, then the kernel's view under
//! `/sys/firmware/ibft`; `acpi`, `mem`, `sysfs` pick one; anything else is a file holding a
//! table (write `./acpi` for a file of that name). When nothing is found the command fails
//! (exit 1) naming each source tried and why.
//!
//! Formats (`--format`), all on stdout:
//! - `text`: for people, with warnings and infos (lints) at the end;
//! - `json`: one document in the schema of shared/DESIGN.md (`sanshim ibft --format json`);
//!   `warnings` lists parse warnings and lints of severity warning (infos such as multipath
//!   are logged at info level);
//! - `env`: shell assignments, safe to `.` in busybox sh whatever the table holds (every value
//!   single-quoted, `'` as `'\''`, absent values empty, NICs and targets numbered by position):
//!   `IBFT_SOURCE`, `IBFT_SIGNATURE`, `IBFT_OEM_ID`, `IBFT_OEM_TABLE_ID`, `IBFT_CHECKSUM_OK`,
//!   `IBFT_INITIATOR_NAME`, `IBFT_INITIATOR_FLAGS`, `IBFT_INITIATOR_ISNS`,
//!   `IBFT_INITIATOR_SLP`, `IBFT_INITIATOR_PRIMARY_RADIUS`, `IBFT_INITIATOR_SECONDARY_RADIUS`,
//!   `IBFT_NIC_COUNT`, and per NIC n `IBFT_NIC<n>_INDEX`, `_FLAGS`, `_IP`, `_PREFIX`,
//!   `_ORIGIN`, `_GATEWAY`, `_PRIMARY_DNS`, `_SECONDARY_DNS`, `_DHCP`, `_VLAN`, `_MAC`,
//!   `_PCI_BDF`, `_HOSTNAME`; `IBFT_TARGET_COUNT`, and per target n `IBFT_TARGET<n>_INDEX`,
//!   `_FLAGS`, `_IP`, `_PORT`, `_LUN`, `_LUN_RAW`, `_CHAP_TYPE`, `_NIC`, `_NAME`,
//!   `_CHAP_USER`, `_CHAP_SECRET`, `_REVERSE_CHAP_USER`, `_REVERSE_CHAP_SECRET`, `_URL`;
//! - `url`: one `iscsi://[USER@]HOST:PORT/TARGET/LUN` line per target (never the secret).
//!
//! With `env` and `url` the warnings go to the log on stderr. CHAP secrets print as `***`
//! unless `--show-secrets`.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, ValueEnum};
use sanshim_ibft::render::{self, Options};
use sanshim_ibft::source::{self, Found, Roots};
use sanshim_ibft::{Ibft, Nic, Secret, Severity, Target, Warning, lint};
use serde::Serialize;

use crate::cli::Global;
use crate::exit::{self, Failure};

/// Arguments of `sanshim ibft`.
#[derive(Args, Debug)]
pub struct IbftArgs {
    /// Where to read the table: auto (ACPI table, low memory, kernel sysfs view, in that
    /// order), acpi, mem, sysfs, or the path of a file holding a table.
    #[arg(long, default_value = "auto", value_name = "auto|acpi|mem|sysfs|FILE")]
    pub source: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Print CHAP secrets instead of `***`.
    #[arg(long)]
    pub show_secrets: bool,
}

/// Output formats of `sanshim ibft`.
#[derive(Clone, Copy, Debug, Eq, PartialEq, ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// One JSON document (shared/DESIGN.md schema).
    Json,
    /// Shell variable assignments.
    Env,
    /// One iscsi:// URL per target.
    Url,
}

/// Runs `sanshim ibft`.
pub fn run(_global: &Global, args: IbftArgs) -> Result<ExitCode, Failure> {
    let found = read(&args.source)?;
    let ibft = &found.parsed.ibft;
    let mut warnings = found.parsed.warnings.clone();
    warnings.extend(lint::check(ibft));
    let options = Options {
        show_secrets: args.show_secrets,
    };
    match args.format {
        Format::Text => {
            let source = format!("{} ({})", found.kind.as_str(), found.location);
            print!("{}", render::text(ibft, &source, &warnings, options));
        }
        Format::Json => {
            let document = document(&found, &warnings, options);
            let text = serde_json::to_string_pretty(&document)
                .map_err(|e| Failure::new(exit::OTHER, anyhow!("cannot render JSON: {e}")))?;
            println!("{text}");
            log(warnings.iter().filter(|w| w.severity == Severity::Info));
        }
        Format::Env => {
            print!("{}", render::env(ibft, found.kind.as_str(), options));
            log(&warnings);
        }
        Format::Url => {
            for target in &ibft.targets {
                match render::url(target) {
                    Some(url) => println!("{url}"),
                    None => tracing::warn!(
                        "target {} has no address, no name, or a LUN or CHAP name a URL \
                         cannot carry; no URL",
                        target.index
                    ),
                }
            }
            log(&warnings);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the table from the source the user named.
pub fn read(source: &str) -> Result<Found, Failure> {
    let roots = Roots::default();
    let failure = |e: &dyn std::fmt::Display| Failure::new(exit::OTHER, anyhow!("{e}"));
    match source {
        "auto" => source::read_auto(&roots).map_err(|e| failure(&e)),
        "acpi" => source::read_acpi(&roots.acpi_tables).map_err(|e| failure(&e)),
        "mem" => source::scan_mem(&roots.mem).map_err(|e| failure(&e)),
        "sysfs" => source::read_sysfs(&roots.sysfs).map_err(|e| failure(&e)),
        path => source::read_file(path.as_ref()).map_err(|e| failure(&e)),
    }
}

fn log<'a>(warnings: impl IntoIterator<Item = &'a Warning>) {
    for warning in warnings {
        match warning.severity {
            Severity::Info => tracing::info!("{} [{}]", warning.message, warning.code),
            _ => tracing::warn!("{} [{}]", warning.message, warning.code),
        }
    }
}

/// The JSON document (shared/DESIGN.md, `sanshim ibft --format json`); field order as there.
#[derive(Serialize)]
struct Document {
    source: &'static str,
    header: HeaderJson,
    initiator: Option<InitiatorJson>,
    nics: Vec<NicJson>,
    targets: Vec<TargetJson>,
    warnings: Vec<WarningJson>,
}

#[derive(Serialize)]
struct HeaderJson {
    oem_id: String,
    oem_table_id: String,
    revision: Option<u8>,
    length: Option<u32>,
    checksum_ok: Option<bool>,
}

#[derive(Serialize)]
struct InitiatorJson {
    name: Option<String>,
    flags: u8,
    isns: Option<String>,
    slp: Option<String>,
    primary_radius: Option<String>,
    secondary_radius: Option<String>,
}

#[derive(Serialize)]
struct NicJson {
    index: u8,
    flags: u8,
    ip: Option<String>,
    prefix: u8,
    origin: u8,
    gateway: Option<String>,
    primary_dns: Option<String>,
    secondary_dns: Option<String>,
    dhcp: Option<String>,
    vlan: u16,
    mac: String,
    pci_bdf: Option<String>,
    hostname: Option<String>,
}

#[derive(Serialize)]
struct TargetJson {
    index: u8,
    flags: u8,
    ip: Option<String>,
    port: u16,
    lun: Option<u16>,
    lun_raw: String,
    chap_type: u8,
    nic: u8,
    name: Option<String>,
    chap_user: Option<String>,
    chap_secret: Option<String>,
    reverse_chap_user: Option<String>,
    reverse_chap_secret: Option<String>,
    url: Option<String>,
}

#[derive(Serialize)]
struct WarningJson {
    code: &'static str,
    message: String,
}

fn document(found: &Found, warnings: &[Warning], options: Options) -> Document {
    let Ibft {
        header,
        initiator,
        nics,
        targets,
        ..
    } = &found.parsed.ibft;
    Document {
        source: found.kind.as_str(),
        header: HeaderJson {
            oem_id: header.oem_id.clone(),
            oem_table_id: header.oem_table_id.clone(),
            revision: header.revision,
            length: header.length,
            checksum_ok: header.checksum_ok,
        },
        initiator: initiator.as_ref().map(|i| InitiatorJson {
            name: i.name.clone(),
            flags: i.flags,
            isns: addr(i.isns),
            slp: addr(i.slp),
            primary_radius: addr(i.primary_radius),
            secondary_radius: addr(i.secondary_radius),
        }),
        nics: nics.iter().map(nic).collect(),
        targets: targets.iter().map(|t| target(t, options)).collect(),
        warnings: warnings
            .iter()
            .filter(|w| w.severity == Severity::Warning)
            .map(|w| WarningJson {
                code: w.code.as_str(),
                message: w.message.clone(),
            })
            .collect(),
    }
}

fn nic(nic: &Nic) -> NicJson {
    NicJson {
        index: nic.index,
        flags: nic.flags,
        ip: addr(nic.ip),
        prefix: nic.prefix,
        origin: nic.origin.0,
        gateway: addr(nic.gateway),
        primary_dns: addr(nic.primary_dns),
        secondary_dns: addr(nic.secondary_dns),
        dhcp: addr(nic.dhcp),
        vlan: nic.vlan,
        mac: nic.mac.to_string(),
        pci_bdf: nic.pci_bdf.map(|b| b.to_string()),
        hostname: nic.hostname.clone(),
    }
}

fn target(t: &Target, options: Options) -> TargetJson {
    let secret = |s: &Option<Secret>| s.as_ref().map(|s| options.secret(s).to_owned());
    TargetJson {
        index: t.index,
        flags: t.flags,
        ip: addr(t.ip),
        port: t.port,
        lun: t.lun.number(),
        lun_raw: t.lun.to_hex(),
        chap_type: t.chap_type.0,
        nic: t.nic,
        name: t.name.clone(),
        chap_user: t.chap_user.clone(),
        chap_secret: secret(&t.chap_secret),
        reverse_chap_user: t.reverse_chap_user.clone(),
        reverse_chap_secret: secret(&t.reverse_chap_secret),
        url: render::url(t),
    }
}

/// An address as DESIGN.md prints it: IPv4-mapped as IPv4 (the model holds them so), absent
/// as `null`.
fn addr(ip: Option<IpAddr>) -> Option<String> {
    ip.map(|ip| ip.to_string())
}
