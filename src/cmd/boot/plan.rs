//! The boot plan: what a boot table asks for, checked and in the terms the rest of `boot`
//! works with — the NICs to bring up, the targets to log in to with their credentials, and
//! (once discovery has run) every path to them.
//!
//! Everything here is pure: it is built from a parsed [`Ibft`] and rendered as text for
//! `--dry-run`. Targets the plan cannot use (no address, no name, a LUN beyond the flat
//! addressing `ScsiDisk` takes, CHAP without a secret) are left out with a reason, never
//! guessed at.

use std::fmt::Write as _;
use std::net::IpAddr;

use sanshim_ibft::{ChapType, Ibft, MacAddr, Nic, Target, flags, in_subnet};
use sanshim_initiator::login::{ChapConfig, Secret};
use sanshim_initiator::portal::Portal;

/// One NIC the table describes.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct NicEntry {
    /// Its index in the table (targets name their NIC by it).
    pub index: u8,
    /// The MAC address the interface is found by.
    pub mac: MacAddr,
    /// Address and prefix length.
    pub address: Option<(IpAddr, u8)>,
    /// The gateway the table records.
    pub gateway: Option<IpAddr>,
    /// VLAN id (0: untagged).
    pub vlan: u16,
    /// Whether the firmware booted through it.
    pub boot_selected: bool,
}

/// Credentials for one target, from the table.
#[derive(Clone)]
pub struct Chap {
    /// Our CHAP name.
    pub user: String,
    /// Our secret.
    pub secret: Secret,
    /// Mutual CHAP: the name and secret the target proves itself with.
    pub mutual: Option<(String, Secret)>,
}

impl std::fmt::Debug for Chap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chap")
            .field("user", &self.user)
            .field("secret", &"***")
            .field("mutual", &self.mutual.as_ref().map(|(u, _)| (u, "***")))
            .finish()
    }
}

impl Chap {
    /// The login's CHAP configuration.
    pub fn config(&self) -> ChapConfig {
        let mut c = ChapConfig::new(self.user.clone(), self.secret.clone());
        c.mutual = self.mutual.clone();
        c
    }

    fn describe(&self) -> String {
        match &self.mutual {
            None => format!("CHAP as {:?}", self.user),
            Some((u, _)) => format!("mutual CHAP as {:?}, target proves {u:?}", self.user),
        }
    }
}

/// One target the table names, usable.
#[derive(Clone, Debug)]
pub struct TargetEntry {
    /// Its index in the table.
    pub index: u8,
    /// The target's iSCSI name, lower-cased.
    pub name: String,
    /// Where the table says it listens.
    pub portal: Portal,
    /// Its address.
    pub ip: IpAddr,
    /// The LUN.
    pub lun: u64,
    /// The NIC the table reaches it through, when that NIC is in the table.
    pub nic: Option<u8>,
    /// CHAP, when the table asks for it.
    pub chap: Option<Chap>,
    /// Whether the firmware booted from it.
    pub boot_selected: bool,
}

/// Where a path came from.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Origin {
    /// The boot table's target of this index.
    Table(u8),
    /// A SendTargets answer of the target on this portal.
    Discovered {
        /// The portal that answered.
        via: Portal,
    },
}

/// One path to log in over.
#[derive(Clone, Debug)]
pub struct PathEntry {
    /// The portal.
    pub portal: Portal,
    /// The table target it belongs to (name, LUN and credentials come from there).
    pub target: usize,
    /// Where it came from.
    pub origin: Origin,
}

/// The whole plan.
#[derive(Clone, Debug)]
pub struct BootPlan {
    /// The initiator name the table gives (as found; lower-cased where used).
    pub initiator: Option<String>,
    /// The NICs.
    pub nics: Vec<NicEntry>,
    /// The usable targets.
    pub targets: Vec<TargetEntry>,
    /// Targets left out, with why.
    pub skipped: Vec<String>,
    /// Paths: the table's first, then discovered ones.
    pub paths: Vec<PathEntry>,
}

impl BootPlan {
    /// The plan for `ibft`.
    pub fn from_ibft(ibft: &Ibft) -> BootPlan {
        let nics: Vec<NicEntry> = ibft.nics.iter().map(nic_entry).collect();
        let mut targets = Vec::new();
        let mut skipped = Vec::new();
        for t in &ibft.targets {
            match target_entry(t, &nics) {
                Ok(entry) => targets.push(entry),
                Err(why) => skipped.push(format!("target {}: {why}", t.index)),
            }
        }
        let paths = targets
            .iter()
            .enumerate()
            .map(|(i, t)| PathEntry {
                portal: t.portal.clone(),
                target: i,
                origin: Origin::Table(t.index),
            })
            .collect();
        BootPlan {
            initiator: ibft.initiator.as_ref().and_then(|i| i.name.clone()),
            nics,
            targets,
            skipped,
            paths,
        }
    }

    /// The NIC of table index `index`.
    pub fn nic(&self, index: u8) -> Option<&NicEntry> {
        self.nics.iter().find(|n| n.index == index)
    }

    /// The NIC whose subnet holds `ip`, if any.
    pub fn nic_on_subnet(&self, ip: IpAddr) -> Option<&NicEntry> {
        self.nics.iter().find(|n| match n.address {
            Some((addr, prefix)) => in_subnet(ip, addr, prefix) == Some(true),
            None => false,
        })
    }

    /// Adds a discovered path unless the plan has that portal for that target already;
    /// returns whether it was new.
    pub fn add_discovered(&mut self, target: usize, portal: Portal, via: Portal) -> bool {
        let Some(wanted) = self.targets.get(target) else {
            return false;
        };
        let known = self.paths.iter().any(|p| {
            let t = &self.targets[p.target];
            t.name == wanted.name && t.lun == wanted.lun && p.portal == portal
        });
        if known {
            return false;
        }
        self.paths.push(PathEntry {
            portal,
            target,
            origin: Origin::Discovered { via },
        });
        true
    }

    /// The iscsi:// URL of a path (never with a secret).
    pub fn url(&self, path: &PathEntry) -> String {
        let t = &self.targets[path.target];
        format!("iscsi://{}/{}/{}", path.portal, t.name, t.lun)
    }

    /// Warnings about the plan: targets off every NIC's subnet (iSCSI traffic is never
    /// routed), targets without a NIC, NICs without an address.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for n in &self.nics {
            if n.address.is_none() {
                out.push(format!(
                    "NIC {} ({}) has no address in the table: it is left alone",
                    n.index, n.mac
                ));
            }
        }
        for t in &self.targets {
            if self.nic_on_subnet(t.ip).is_none() {
                let via = t
                    .nic
                    .and_then(|i| self.nic(i))
                    .and_then(|n| n.gateway)
                    .map(|g| format!(" (the table's gateway {g} would route it)"))
                    .unwrap_or_default();
                out.push(format!(
                    "target {} at {} is on no NIC's subnet{via}: iSCSI traffic should not be routed; expect latency and a gateway as a single point of failure",
                    t.index, t.portal
                ));
            }
        }
        out
    }

    /// The plan as text for `--dry-run`; `network` holds one line per NIC saying what the
    /// network step would do (or `None` when it is not run).
    pub fn render(&self, network: Option<&[(u8, String)]>, source: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "boot plan from the iBFT ({source})");
        let _ = writeln!(
            out,
            "initiator {}",
            self.initiator
                .as_deref()
                .map(str::to_ascii_lowercase)
                .unwrap_or_else(|| "(none in the table: the default name is used)".into())
        );
        for n in &self.nics {
            let address = n
                .address
                .map(|(a, p)| format!("{a}/{p}"))
                .unwrap_or_else(|| "no address".into());
            let gateway = n
                .gateway
                .map(|g| format!(", gateway {g}"))
                .unwrap_or_default();
            let vlan = if n.vlan == 0 {
                String::new()
            } else {
                format!(", VLAN {}", n.vlan)
            };
            let boot = if n.boot_selected {
                ", boot-selected"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "NIC {} {}: {address}{gateway}{vlan}{boot}",
                n.index, n.mac
            );
            if let Some(lines) = network {
                for (_, line) in lines.iter().filter(|(i, _)| *i == n.index) {
                    let _ = writeln!(out, "  network: {line}");
                }
            }
        }
        for t in &self.targets {
            let auth = t
                .chap
                .as_ref()
                .map(Chap::describe)
                .unwrap_or_else(|| "no authentication".into());
            let nic = match (t.nic, self.nic_on_subnet(t.ip)) {
                (_, Some(n)) => format!("NIC {} (on its subnet)", n.index),
                (Some(i), None) => format!("NIC {i} (routed!)"),
                (None, None) => "no NIC of the table (routed!)".into(),
            };
            let boot = if t.boot_selected {
                ", boot-selected"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "target {} {} LUN {} at {} via {nic}, {auth}{boot}",
                t.index, t.name, t.lun, t.portal
            );
        }
        for s in &self.skipped {
            let _ = writeln!(out, "skipped {s}");
        }
        let _ = writeln!(out, "paths:");
        for (i, p) in self.paths.iter().enumerate() {
            let origin = match &p.origin {
                Origin::Table(index) => format!("from the table (target {index})"),
                Origin::Discovered { via } => format!("from discovery (SendTargets at {via})"),
            };
            let _ = writeln!(out, "  {} {} {origin}", i + 1, self.url(p));
        }
        for w in self.warnings() {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}

fn nic_entry(n: &Nic) -> NicEntry {
    NicEntry {
        index: n.index,
        mac: n.mac,
        address: n.ip.map(|ip| (ip, n.prefix)),
        gateway: n.gateway,
        vlan: n.vlan,
        boot_selected: n.flags & flags::BOOT_SELECTED != 0,
    }
}

fn target_entry(t: &Target, nics: &[NicEntry]) -> Result<TargetEntry, String> {
    let ip = t.ip.ok_or("no address")?;
    let raw_name = t.name.as_deref().ok_or("no target name")?;
    let name = raw_name.to_ascii_lowercase();
    if name.is_empty() {
        return Err("empty target name".into());
    }
    let lun = t.lun.number().ok_or_else(|| {
        format!(
            "LUN {} is not a flat LUN number this initiator can address",
            t.lun.to_hex()
        )
    })?;
    let port = if t.port == 0 { 3260 } else { t.port };
    let chap = chap(t)?;
    Ok(TargetEntry {
        index: t.index,
        name,
        portal: Portal {
            host: ip.to_string(),
            port,
        },
        ip,
        lun: u64::from(lun),
        nic: nics.iter().any(|n| n.index == t.nic).then_some(t.nic),
        chap,
        boot_selected: t.flags & flags::BOOT_SELECTED != 0,
    })
}

fn chap(t: &Target) -> Result<Option<Chap>, String> {
    let copy = |s: &Option<sanshim_ibft::Secret>| {
        s.as_ref()
            .map(|s| Secret::new(s.expose().as_bytes().to_vec()))
    };
    match t.chap_type {
        ChapType::NONE => Ok(None),
        ChapType::ONE_WAY | ChapType::MUTUAL => {
            let user = t.chap_user.clone().ok_or("CHAP without a CHAP name")?;
            let secret = copy(&t.chap_secret).ok_or("CHAP without a CHAP secret")?;
            let mutual = if t.chap_type == ChapType::MUTUAL {
                let u = t
                    .reverse_chap_user
                    .clone()
                    .ok_or("mutual CHAP without a reverse CHAP name")?;
                let s = copy(&t.reverse_chap_secret)
                    .ok_or("mutual CHAP without a reverse CHAP secret")?;
                Some((u, s))
            } else {
                None
            };
            Ok(Some(Chap {
                user,
                secret,
                mutual,
            }))
        }
        other => Err(format!("unknown CHAP type {}", other.0)),
    }
}
