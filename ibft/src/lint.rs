//! Lints: what a table that parses cleanly can still get wrong, learned in the field.
//!
//! - upper-case characters in an IQN (RFC 3722 §6: names are compared after lower-casing; many
//!   targets compare bytes and refuse the login);
//! - a target outside its NIC's subnet (the iSCSI traffic is routed);
//! - a target without an IP address (configured by host name, which the OS cannot resolve this
//!   early);
//! - no CHAP, or a CHAP type whose names/secrets are missing;
//! - a target whose NIC association names a NIC that is not in the table;
//! - DHCP as the address origin without a DHCP server;
//! - the same target name and LUN on several portals: multipath, an info, not a warning.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::code::{ChapType, Origin};
use crate::model::{Ibft, Nic, Target, in_subnet};
use crate::warning::{Code, Warning};

/// Runs every lint over `ibft`. Messages never contain secrets.
pub fn check(ibft: &Ibft) -> Vec<Warning> {
    let mut out = Vec::new();
    if let Some(name) = ibft.initiator.as_ref().and_then(|i| i.name.as_deref()) {
        uppercase_iqn("initiator name", name, &mut out);
    }
    for nic in &ibft.nics {
        dhcp_without_server(nic, &mut out);
    }
    for (pos, target) in ibft.targets.iter().enumerate() {
        let label = format!("target {}", target.index);
        if let Some(name) = target.name.as_deref() {
            uppercase_iqn(&format!("{label} name"), name, &mut out);
        }
        chap(&label, target, &mut out);
        match (target.ip, ibft.nics.iter().find(|n| n.index == target.nic)) {
            (None, _) => out.push(Warning::warn(
                Code::TargetByHostname,
                format!(
                    "{label} has no IP address: the firmware was given a host name (or nothing); \
                     the OS cannot reach it without DNS"
                ),
            )),
            (Some(_), None) => out.push(Warning::warn(
                Code::NicMissing,
                format!(
                    "{label} is associated with NIC {}, which is not in the table",
                    target.nic
                ),
            )),
            (Some(ip), Some(nic)) => routed(&label, ip, nic, &mut out),
        }
        multipath(pos, ibft, &mut out);
    }
    out
}

fn uppercase_iqn(what: &str, name: &str, out: &mut Vec<Warning>) {
    let is_iqn = name
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("iqn."));
    if is_iqn && name.chars().any(char::is_uppercase) {
        let message = format!(
            "{what} {name:?} has upper-case characters; IQNs are compared lower-cased and some \
             targets refuse the login"
        );
        out.push(Warning::warn(Code::UppercaseIqn, message));
    }
}

fn dhcp_without_server(nic: &Nic, out: &mut Vec<Warning>) {
    if nic.origin == Origin::DHCP && nic.dhcp.is_none() {
        let message = format!(
            "NIC {} got its address from DHCP but records no DHCP server",
            nic.index
        );
        out.push(Warning::warn(Code::DhcpNoServer, message));
    }
}

fn chap(label: &str, target: &Target, out: &mut Vec<Warning>) {
    let forward = target.chap_user.is_some() && target.chap_secret.is_some();
    let reverse = target.reverse_chap_user.is_some() && target.reverse_chap_secret.is_some();
    let missing = match target.chap_type {
        ChapType::NONE => {
            let message = format!("{label} is reached without CHAP: anyone on the path can log in");
            out.push(Warning::warn(Code::NoChap, message));
            return;
        }
        ChapType::ONE_WAY if !forward => "a CHAP name and secret",
        ChapType::MUTUAL if !forward || !reverse => "CHAP and reverse CHAP names and secrets",
        ChapType::ONE_WAY | ChapType::MUTUAL => return,
        _ => "a known CHAP type",
    };
    let message = format!(
        "{label} has CHAP type {:?} but lacks {missing}",
        target.chap_type
    );
    out.push(Warning::warn(Code::ChapIncomplete, message));
}

fn routed(label: &str, ip: IpAddr, nic: &Nic, out: &mut Vec<Warning>) {
    let Some(nic_ip) = nic.ip else { return };
    let outside = match in_subnet(ip, nic_ip, nic.prefix) {
        _ if ip.is_ipv4() != nic_ip.is_ipv4() => "in another address family than",
        Some(false) if nic.prefix > 0 => "outside",
        _ => return,
    };
    let via = match nic.gateway {
        Some(gateway) => format!("through gateway {gateway}"),
        None => "but the NIC has no gateway".to_owned(),
    };
    let message = format!(
        "{label} at {ip} is {outside} NIC {}'s subnet {nic_ip}/{}: iSCSI traffic is routed {via}",
        nic.index, nic.prefix
    );
    out.push(Warning::warn(Code::TargetRouted, message));
}

/// Reports multipath once, at the first target of a name+LUN group with several portals.
fn multipath(pos: usize, ibft: &Ibft, out: &mut Vec<Warning>) {
    let target = &ibft.targets[pos];
    let Some(name) = target.name.as_deref() else {
        return;
    };
    let same = |t: &&Target| t.name.as_deref() == Some(name) && t.lun == target.lun;
    if ibft.targets[..pos].iter().any(|t| same(&t)) {
        return;
    }
    let portals: BTreeMap<String, ()> = ibft
        .targets
        .iter()
        .filter(same)
        .map(|t| (portal(t), ()))
        .collect();
    if portals.len() > 1 {
        let list: Vec<&str> = portals.keys().map(String::as_str).collect();
        let message = format!(
            "{name} LUN {} is offered on {} portals ({}): multipath",
            target
                .lun
                .number()
                .map_or_else(|| target.lun.to_hex(), |n| n.to_string()),
            portals.len(),
            list.join(", ")
        );
        out.push(Warning::info(Code::Multipath, message));
    }
}

fn portal(target: &Target) -> String {
    match target.ip {
        Some(IpAddr::V6(ip)) => format!("[{ip}]:{}", target.port),
        Some(ip) => format!("{ip}:{}", target.port),
        None => format!("?:{}", target.port),
    }
}

#[cfg(test)]
#[path = "lint_tests.rs"]
mod tests;
