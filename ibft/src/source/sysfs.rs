//! The kernel's parsed view, `/sys/firmware/ibft` (Linux `drivers/firmware/iscsi_ibft.c` and
//! `drivers/scsi/iscsi_boot_sysfs.c`), reconstructed into the same owned types.
//!
//! Layout: `acpi_header/{signature,oem_id,oem_table_id}`, `initiator/`, `ethernet<N>/`,
//! `target<N>/`, one attribute per file, each ending in a newline. The kernel hides attributes
//! whose value is absent (null addresses, empty strings, a zero prefix), and shows no table
//! length, revision or checksum (it refused the table if they were wrong). The reverse CHAP
//! secret's attribute is `rev-chap-name-secret`. A NIC's PCI location is only the target of
//! its `device` link. The `lun` attribute prints each byte with `%x`, without padding, which
//! [`decode_sysfs_lun`] undoes where it can.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::{Found, SourceError, SourceKind, io_error};
use crate::code::{ChapType, Origin, flags};
use crate::model::{Header, Ibft, Initiator, Lun, MacAddr, Nic, PciBdf, Secret, Target};
use crate::parse::Parsed;
use crate::warning::{Code, Warning};

/// Reads the kernel's view under `dir`.
///
/// # Errors
/// [`SourceError::Absent`] when `dir` does not exist, [`SourceError::Permission`] when the
/// attributes are unreadable (they need `CAP_SYS_ADMIN`), [`SourceError::Malformed`] when an
/// attribute holds something unexpected.
pub fn read_sysfs(dir: &Path) -> Result<Found, SourceError> {
    let entries = fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
    let mut ethernet = Vec::new();
    let mut target = Vec::new();
    for entry in entries {
        let name = entry.map_err(|e| io_error(dir, e))?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("ethernet")
            .and_then(|n| n.parse::<u32>().ok())
        {
            ethernet.push(n);
        } else if let Some(n) = name
            .strip_prefix("target")
            .and_then(|n| n.parse::<u32>().ok())
        {
            target.push(n);
        }
    }
    ethernet.sort_unstable();
    target.sort_unstable();
    let mut warnings = Vec::new();
    let header = header(&dir.join("acpi_header"))?;
    let initiator_dir = dir.join("initiator");
    let initiator = if initiator_dir.is_dir() {
        initiator(&Attrs(initiator_dir))?
    } else {
        None
    };
    let mut nics = Vec::new();
    for n in ethernet {
        nics.extend(nic(&Attrs(dir.join(format!("ethernet{n}"))))?);
    }
    let mut targets = Vec::new();
    for n in target {
        targets.extend(self::target(
            &Attrs(dir.join(format!("target{n}"))),
            &mut warnings,
        )?);
    }
    let ibft = Ibft {
        header,
        control_flags: 0,
        initiator,
        nics,
        targets,
    };
    let location = dir.display().to_string();
    Ok(Found {
        kind: SourceKind::Sysfs,
        location,
        parsed: Parsed { ibft, warnings },
    })
}

/// Undoes the kernel's `%x`-per-byte LUN format. Returns the LUN and whether it had to guess:
/// 8 or 16 digits decode exactly; in between, a byte of two digits cannot be told from two of
/// one, so the first split whose last six bytes are zero (a single-level LUN) is taken, else
/// the first split at all. `None` when no split fits.
pub fn decode_sysfs_lun(text: &str) -> Option<(Lun, bool)> {
    let digits = text
        .chars()
        .map(|c| c.to_digit(16).and_then(|d| u8::try_from(d).ok()))
        .collect::<Option<Vec<u8>>>()?;
    if !(8..=16).contains(&digits.len()) {
        return None;
    }
    let mut splits = Vec::new();
    split_lun(&digits, &mut Vec::new(), &mut splits);
    let ambiguous = splits.len() > 1;
    let best = splits
        .iter()
        .find(|b| b[2..] == [0; 6])
        .or(splits.first())?;
    let mut lun = [0u8; 8];
    lun.copy_from_slice(best);
    Some((Lun(lun), ambiguous))
}

/// Every way to cut `digits` into 8 bytes of one digit or two (the first non-zero).
fn split_lun(digits: &[u8], prefix: &mut Vec<u8>, out: &mut Vec<Vec<u8>>) {
    let left = 8 - prefix.len();
    if left == 0 {
        if digits.is_empty() {
            out.push(prefix.clone());
        }
        return;
    }
    if digits.len() < left || digits.len() > 2 * left {
        return;
    }
    if let [d, rest @ ..] = digits {
        prefix.push(*d);
        split_lun(rest, prefix, out);
        prefix.pop();
    }
    if let [hi, lo, rest @ ..] = digits
        && *hi != 0
    {
        prefix.push(hi << 4 | lo);
        split_lun(rest, prefix, out);
        prefix.pop();
    }
}

/// One kernel object directory.
struct Attrs(PathBuf);

impl Attrs {
    /// An attribute without its trailing newline; `None` when the kernel hides it.
    fn text(&self, name: &str) -> Result<Option<String>, SourceError> {
        let path = self.0.join(name);
        match fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let text = text.strip_suffix('\n').unwrap_or(&text);
                Ok((!text.is_empty()).then(|| text.to_owned()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    /// A parsed attribute; `None` when hidden.
    fn parse<T: FromStr>(&self, name: &str) -> Result<Option<T>, SourceError> {
        let Some(text) = self.text(name)? else {
            return Ok(None);
        };
        let value = text.trim().parse().map_err(|_| SourceError::Malformed {
            path: self.0.join(name),
            what: format!("cannot parse {text:?}"),
        })?;
        Ok(Some(value))
    }

    fn number<T: FromStr + Default>(&self, name: &str) -> Result<T, SourceError> {
        Ok(self.parse(name)?.unwrap_or_default())
    }

    /// An address; the kernel prints a null address as `0.0.0.0` or `::` when it shows one.
    fn addr(&self, name: &str) -> Result<Option<IpAddr>, SourceError> {
        Ok(self
            .parse::<IpAddr>(name)?
            .filter(|ip| !ip.is_unspecified()))
    }

    /// Whether the structure is in use; the parser ignores the others, so must this.
    fn in_use(&self) -> Result<Option<u8>, SourceError> {
        let flags: u8 = self.number("flags")?;
        Ok((flags & flags::IN_USE != 0).then_some(flags))
    }
}

fn header(dir: &Path) -> Result<Header, SourceError> {
    let attrs = Attrs(dir.to_owned());
    let signature = attrs
        .text("signature")?
        .unwrap_or_else(|| "iBFT".to_owned());
    let mut sig = [0u8; 4];
    for (dst, src) in sig.iter_mut().zip(signature.bytes()) {
        *dst = src;
    }
    Ok(Header {
        signature: sig,
        revision: None,
        length: None,
        checksum_ok: None,
        oem_id: attrs.text("oem_id")?.unwrap_or_default(),
        oem_table_id: attrs.text("oem_table_id")?.unwrap_or_default(),
    })
}

fn initiator(a: &Attrs) -> Result<Option<Initiator>, SourceError> {
    let Some(flags) = a.in_use()? else {
        return Ok(None);
    };
    Ok(Some(Initiator {
        index: a.number("index")?,
        flags,
        isns: a.addr("isns-server")?,
        slp: a.addr("slp-server")?,
        primary_radius: a.addr("pri-radius-server")?,
        secondary_radius: a.addr("sec-radius-server")?,
        name: a.text("initiator-name")?,
    }))
}

fn nic(a: &Attrs) -> Result<Option<Nic>, SourceError> {
    let Some(flags) = a.in_use()? else {
        return Ok(None);
    };
    let mac = match a.text("mac")? {
        Some(text) => parse_mac(&text).ok_or_else(|| SourceError::Malformed {
            path: a.0.join("mac"),
            what: format!("not a MAC address: {text:?}"),
        })?,
        None => MacAddr::default(),
    };
    Ok(Some(Nic {
        index: a.number("index")?,
        flags,
        ip: a.addr("ip-addr")?,
        prefix: a.number("prefix-len")?,
        origin: Origin(a.number("origin")?),
        gateway: a.addr("gateway")?,
        primary_dns: a.addr("primary-dns")?,
        secondary_dns: a.addr("secondary-dns")?,
        dhcp: a.addr("dhcp")?,
        vlan: a.number("vlan")?,
        mac,
        pci_bdf: pci_bdf(&a.0.join("device")),
        hostname: a.text("hostname")?,
    }))
}

fn target(a: &Attrs, warnings: &mut Vec<Warning>) -> Result<Option<Target>, SourceError> {
    let Some(flags) = a.in_use()? else {
        return Ok(None);
    };
    let index = a.number("index")?;
    let lun = match a.text("lun")? {
        None => Lun::default(),
        Some(text) => {
            let (lun, ambiguous) =
                decode_sysfs_lun(&text).ok_or_else(|| SourceError::Malformed {
                    path: a.0.join("lun"),
                    what: format!("bad LUN {text:?}"),
                })?;
            if ambiguous {
                let message = format!(
                    "target {index} LUN {text:?} from sysfs is ambiguous (the kernel drops \
                     leading zeros per byte); read as {}",
                    lun.to_hex()
                );
                warnings.push(Warning::warn(Code::SysfsLunAmbiguous, message));
            }
            lun
        }
    };
    Ok(Some(Target {
        index,
        flags,
        ip: a.addr("ip-addr")?,
        port: a.number("port")?,
        lun,
        chap_type: ChapType(a.number("chap-type")?),
        nic: a.number("nic-assoc")?,
        name: a.text("target-name")?,
        chap_user: a.text("chap-name")?,
        chap_secret: a.text("chap-secret")?.map(Secret::new),
        reverse_chap_user: a.text("rev-chap-name")?,
        reverse_chap_secret: a.text("rev-chap-name-secret")?.map(Secret::new),
    }))
}

fn parse_mac(text: &str) -> Option<MacAddr> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(MacAddr(mac))
}

/// The PCI location from the `device` link's target, `…/0000:00:03.0`.
fn pci_bdf(link: &Path) -> Option<PciBdf> {
    let target = fs::read_link(link).ok()?;
    let name = target.file_name()?.to_str()?;
    let (_domain, rest) = name.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (device, function) = rest.split_once('.')?;
    let hex = |s: &str| u8::from_str_radix(s, 16).ok();
    Some(PciBdf::new(hex(bus)?, hex(device)?, hex(function)?))
}
