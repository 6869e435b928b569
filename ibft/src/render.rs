//! Renderings of a table for people and shells: `text`, `env` and `url` (the `json` rendering
//! lives in the binary, which owns serde). The CLI contract is in shared/DESIGN.md
//! (`sanshim ibft`).
//!
//! Secrets print as `***` unless [`Options::show_secrets`]; an `iscsi://` URL carries the CHAP
//! name, never the secret.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::code::flags;
use crate::model::{Ibft, Nic, Secret, Target};
use crate::warning::Warning;

/// What the renderings show.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Options {
    /// Print CHAP secrets instead of `***`.
    pub show_secrets: bool,
}

/// The mask printed in place of a secret.
pub const MASK: &str = "***";

impl Options {
    /// A secret as it should be shown: itself, or [`MASK`].
    pub fn secret<'a>(&self, secret: &'a Secret) -> &'a str {
        if self.show_secrets {
            secret.expose()
        } else {
            MASK
        }
    }
}

/// The `iscsi://[USER@]HOST:PORT/TARGET/LUN` URL of a target, in the form libiscsi and
/// `sanshim_initiator::url` parse: IPv6 host in brackets, the CHAP name as written (never the
/// secret), the target name percent-encoded except for unreserved characters and `:`.
///
/// `None` when the target has no IP address or name, a LUN a URL cannot express, or a CHAP
/// name holding `%` or control characters (the URL parsers read `%` as the start of a secret
/// and do not decode the name).
pub fn url(target: &Target) -> Option<String> {
    let host = match target.ip? {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let name = percent_encode(target.name.as_deref()?, ":");
    let lun = target.lun.number()?;
    let user = match target.chap_user.as_deref() {
        Some(user) if user.chars().any(|c| c == '%' || c.is_control()) => return None,
        Some(user) => format!("{user}@"),
        None => String::new(),
    };
    Some(format!("iscsi://{user}{host}:{}/{name}/{lun}", target.port))
}

/// Shell assignments of every field, one per line, safe to `.` in any POSIX sh (busybox
/// included) whatever the table holds: names are `IBFT_[A-Z0-9_]+`, every value is
/// single-quoted with `'` written as `'\''`, NUL bytes (which no shell variable can hold) are
/// dropped. Absent values are empty. NICs and targets are numbered by position (0, 1, …); the
/// structure's own index is in `…_INDEX`.
///
/// Variables: `IBFT_SOURCE`, `IBFT_SIGNATURE`, `IBFT_OEM_ID`, `IBFT_OEM_TABLE_ID`,
/// `IBFT_CHECKSUM_OK` (`1`, `0`, or empty when unknown), `IBFT_INITIATOR_{NAME, FLAGS, ISNS,
/// SLP, PRIMARY_RADIUS, SECONDARY_RADIUS}`, `IBFT_NIC_COUNT`, `IBFT_NIC<n>_{INDEX, FLAGS, IP,
/// PREFIX, ORIGIN, GATEWAY, PRIMARY_DNS, SECONDARY_DNS, DHCP, VLAN, MAC, PCI_BDF, HOSTNAME}`,
/// `IBFT_TARGET_COUNT`, `IBFT_TARGET<n>_{INDEX, FLAGS, IP, PORT, LUN, LUN_RAW, CHAP_TYPE, NIC,
/// NAME, CHAP_USER, CHAP_SECRET, REVERSE_CHAP_USER, REVERSE_CHAP_SECRET, URL}`.
pub fn env(ibft: &Ibft, source: &str, options: Options) -> String {
    let mut out = Env(String::new());
    let header = &ibft.header;
    out.set("SOURCE", source);
    out.set("SIGNATURE", &String::from_utf8_lossy(&header.signature));
    out.set("OEM_ID", &header.oem_id);
    out.set("OEM_TABLE_ID", &header.oem_table_id);
    out.set(
        "CHECKSUM_OK",
        header
            .checksum_ok
            .map_or("", |ok| if ok { "1" } else { "0" }),
    );
    let initiator = ibft.initiator.as_ref();
    out.set(
        "INITIATOR_NAME",
        initiator.and_then(|i| i.name.as_deref()).unwrap_or(""),
    );
    out.set(
        "INITIATOR_FLAGS",
        &initiator.map_or(String::new(), |i| i.flags.to_string()),
    );
    out.set("INITIATOR_ISNS", &addr(initiator.and_then(|i| i.isns)));
    out.set("INITIATOR_SLP", &addr(initiator.and_then(|i| i.slp)));
    out.set(
        "INITIATOR_PRIMARY_RADIUS",
        &addr(initiator.and_then(|i| i.primary_radius)),
    );
    out.set(
        "INITIATOR_SECONDARY_RADIUS",
        &addr(initiator.and_then(|i| i.secondary_radius)),
    );
    out.set("NIC_COUNT", &ibft.nics.len().to_string());
    for (n, nic) in ibft.nics.iter().enumerate() {
        env_nic(&mut out, &format!("NIC{n}_"), nic);
    }
    out.set("TARGET_COUNT", &ibft.targets.len().to_string());
    for (n, target) in ibft.targets.iter().enumerate() {
        env_target(&mut out, &format!("TARGET{n}_"), target, options);
    }
    out.0
}

fn env_nic(out: &mut Env, p: &str, nic: &Nic) {
    out.set(&format!("{p}INDEX"), &nic.index.to_string());
    out.set(&format!("{p}FLAGS"), &nic.flags.to_string());
    out.set(&format!("{p}IP"), &addr(nic.ip));
    out.set(&format!("{p}PREFIX"), &nic.prefix.to_string());
    out.set(&format!("{p}ORIGIN"), &nic.origin.0.to_string());
    out.set(&format!("{p}GATEWAY"), &addr(nic.gateway));
    out.set(&format!("{p}PRIMARY_DNS"), &addr(nic.primary_dns));
    out.set(&format!("{p}SECONDARY_DNS"), &addr(nic.secondary_dns));
    out.set(&format!("{p}DHCP"), &addr(nic.dhcp));
    out.set(&format!("{p}VLAN"), &nic.vlan.to_string());
    out.set(&format!("{p}MAC"), &nic.mac.to_string());
    out.set(
        &format!("{p}PCI_BDF"),
        &nic.pci_bdf.map_or(String::new(), |b| b.to_string()),
    );
    out.set(
        &format!("{p}HOSTNAME"),
        nic.hostname.as_deref().unwrap_or(""),
    );
}

fn env_target(out: &mut Env, p: &str, target: &Target, options: Options) {
    let secret = |s: &Option<Secret>| s.as_ref().map_or("", |s| options.secret(s)).to_owned();
    let lun = target.lun.number().map_or(String::new(), |n| n.to_string());
    out.set(&format!("{p}INDEX"), &target.index.to_string());
    out.set(&format!("{p}FLAGS"), &target.flags.to_string());
    out.set(&format!("{p}IP"), &addr(target.ip));
    out.set(&format!("{p}PORT"), &target.port.to_string());
    out.set(&format!("{p}LUN"), &lun);
    out.set(&format!("{p}LUN_RAW"), &target.lun.to_hex());
    out.set(&format!("{p}CHAP_TYPE"), &target.chap_type.0.to_string());
    out.set(&format!("{p}NIC"), &target.nic.to_string());
    out.set(&format!("{p}NAME"), target.name.as_deref().unwrap_or(""));
    out.set(
        &format!("{p}CHAP_USER"),
        target.chap_user.as_deref().unwrap_or(""),
    );
    out.set(&format!("{p}CHAP_SECRET"), &secret(&target.chap_secret));
    let reverse_user = target.reverse_chap_user.as_deref().unwrap_or("");
    out.set(&format!("{p}REVERSE_CHAP_USER"), reverse_user);
    out.set(
        &format!("{p}REVERSE_CHAP_SECRET"),
        &secret(&target.reverse_chap_secret),
    );
    out.set(&format!("{p}URL"), &url(target).unwrap_or_default());
}

/// Accumulates `IBFT_NAME='value'` lines.
struct Env(String);

impl Env {
    fn set(&mut self, name: &str, value: &str) {
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        let _ = writeln!(self.0, "IBFT_{name}={}", sh_quote(value));
    }
}

/// `value` single-quoted for a POSIX shell.
pub fn sh_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars().filter(|c| *c != '\0') {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// A human-readable report: the table, each URL, and the warnings and infos. Strings from the
/// table are shown with control characters escaped.
pub fn text(ibft: &Ibft, source: &str, warnings: &[Warning], options: Options) -> String {
    let mut out = String::new();
    let h = &ibft.header;
    let _ = writeln!(out, "iBFT from {}", show(source));
    let checksum = match h.checksum_ok {
        Some(true) => "ok",
        Some(false) => "WRONG",
        None => "checked by the kernel",
    };
    let _ = writeln!(
        out,
        "  header: signature {}, OEM {:?}/{:?}, revision {}, length {}, checksum {checksum}",
        h.signature.escape_ascii(),
        h.oem_id,
        h.oem_table_id,
        opt(h.revision),
        opt(h.length),
    );
    match &ibft.initiator {
        Some(i) => {
            let name = i.name.as_deref().map_or("(none)".to_owned(), show);
            let _ = writeln!(out, "  initiator: {name} ({})", flag_text(i.flags));
            let servers = [
                ("iSNS", i.isns),
                ("SLP", i.slp),
                ("primary RADIUS", i.primary_radius),
                ("secondary RADIUS", i.secondary_radius),
            ];
            for (what, ip) in servers.iter().filter_map(|(w, ip)| Some((w, (*ip)?))) {
                let _ = writeln!(out, "    {what} server {ip}");
            }
        }
        None => out.push_str("  initiator: (none)\n"),
    }
    for nic in &ibft.nics {
        text_nic(&mut out, nic);
    }
    for target in &ibft.targets {
        text_target(&mut out, target, options);
    }
    if ibft.nics.is_empty() && ibft.targets.is_empty() {
        out.push_str("  no NIC or target in use\n");
    }
    for warning in warnings {
        let _ = writeln!(out, "{}", show(&warning.to_string()));
    }
    out
}

fn text_nic(out: &mut String, nic: &Nic) {
    let origin = nic
        .origin
        .name()
        .map_or_else(|| nic.origin.0.to_string(), str::to_lowercase);
    let _ = writeln!(
        out,
        "  NIC {} ({}): {}/{} ({origin}), MAC {}, PCI {}, VLAN {}",
        nic.index,
        flag_text(nic.flags),
        opt(nic.ip),
        nic.prefix,
        nic.mac,
        opt(nic.pci_bdf),
        nic.vlan
    );
    let dns: Vec<String> = [nic.primary_dns, nic.secondary_dns]
        .iter()
        .flatten()
        .map(|ip| ip.to_string())
        .collect();
    let dns = if dns.is_empty() {
        "-".to_owned()
    } else {
        dns.join(" ")
    };
    let _ = writeln!(
        out,
        "    gateway {}, DNS {dns}, DHCP server {}, host name {}",
        opt(nic.gateway),
        opt(nic.dhcp),
        nic.hostname.as_deref().map_or("-".to_owned(), show)
    );
}

fn text_target(out: &mut String, t: &Target, options: Options) {
    let lun = t
        .lun
        .number()
        .map_or_else(|| format!("raw {}", t.lun.to_hex()), |n| n.to_string());
    let name = t.name.as_deref().map_or("(no name)".to_owned(), show);
    let _ = writeln!(
        out,
        "  target {} ({}): {name} at {}:{} LUN {lun} via NIC {}",
        t.index,
        flag_text(t.flags),
        opt(t.ip),
        t.port,
        t.nic
    );
    let chap = t
        .chap_type
        .name()
        .map_or_else(|| t.chap_type.0.to_string(), str::to_lowercase);
    let secret = |s: &Option<Secret>| {
        s.as_ref()
            .map_or("-".to_owned(), |s| show(options.secret(s)))
    };
    let user = |u: &Option<String>| u.as_deref().map_or("-".to_owned(), show);
    let _ = writeln!(
        out,
        "    CHAP {chap}: user {} secret {}, reverse user {} secret {}",
        user(&t.chap_user),
        secret(&t.chap_secret),
        user(&t.reverse_chap_user),
        secret(&t.reverse_chap_secret)
    );
    if let Some(url) = url(t) {
        let _ = writeln!(out, "    {}", show(&url));
    }
}

/// `flags 0x03: valid, boot selected`.
fn flag_text(bits: u8) -> String {
    let names = [
        (flags::BLOCK_VALID, "valid"),
        (flags::BOOT_SELECTED, "boot selected"),
    ];
    let set: Vec<&str> = names
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if set.is_empty() {
        format!("flags {bits:#04x}")
    } else {
        format!("flags {bits:#04x}: {}", set.join(", "))
    }
}

fn addr(ip: Option<IpAddr>) -> String {
    ip.map_or(String::new(), |ip| ip.to_string())
}

fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or("-".to_owned(), |v| v.to_string())
}

/// A table string with control characters escaped, safe to print on a terminal.
fn show(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Percent-encodes all but unreserved characters (RFC 3986 §2.3) and those in `keep`.
fn percent_encode(s: &str, keep: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let c = char::from(b);
        if c.is_ascii_alphanumeric() || "-._~".contains(c) || keep.contains(c) {
            out.push(c);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
