//! [`NetError`]: what failed, on which NIC and interface, and what to try.

use std::io;
use std::net::IpAddr;

use sanshim_ibft::MacAddr;

use super::action::Change;

/// A failure of network bring-up. Each says what failed where, and what to try.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// No tokio runtime to drive the netlink socket on.
    #[error("network bring-up must run inside a tokio runtime (a bug in the caller)")]
    NoRuntime,
    /// The netlink socket could not be opened.
    #[error(
        "cannot open a netlink (rtnetlink) socket: {source}; this needs Linux, and root or \
         CAP_NET_ADMIN to change anything"
    )]
    Open {
        /// Why.
        source: io::Error,
    },
    /// A read of the kernel's state (links, addresses, routes) failed.
    #[error("reading the kernel's {what} failed: {source}{}", hint(None, .source))]
    Query {
        /// What was read: "links", "addresses", "routes".
        what: &'static str,
        /// Why.
        source: io::Error,
    },
    /// The table describes a NIC sanshim cannot configure as described.
    #[error("NIC {nic}: {reason}; fix the boot table or bring the network up yourself (--no-net)")]
    InvalidPlan {
        /// The table's NIC index.
        nic: u8,
        /// What is wrong with it.
        reason: String,
    },
    /// No interface has the NIC's MAC address.
    #[error(
        "NIC {nic}: no interface has MAC {mac} (interfaces: {}); is its driver loaded, or is \
         it in another network namespace?",
        list(.seen)
    )]
    NoInterface {
        /// The table's NIC index.
        nic: u8,
        /// The table's MAC.
        mac: MacAddr,
        /// Every interface seen, as `name mac`.
        seen: Vec<String>,
    },
    /// Several interfaces (a bond or bridge and its ports) have the NIC's MAC.
    #[error(
        "NIC {nic}: MAC {mac} is on several interfaces ({}) and the table cannot say which \
         one should hold its address (a bond or bridge?); configure the network yourself and \
         run with --no-net",
        list(.interfaces)
    )]
    AmbiguousMac {
        /// The table's NIC index.
        nic: u8,
        /// The table's MAC.
        mac: MacAddr,
        /// The interfaces with that MAC.
        interfaces: Vec<String>,
    },
    /// The kernel refused a change.
    #[error("NIC {nic}: {interface}: {change} failed: {source}{}", hint(Some(.change), .source))]
    Step {
        /// The table's NIC index.
        nic: u8,
        /// The interface.
        interface: String,
        /// The change refused.
        change: Change,
        /// The kernel's answer.
        source: io::Error,
    },
    /// An interface named in a step vanished between planning and doing it.
    #[error("NIC {nic}: interface {interface} disappeared while being configured; run again")]
    Vanished {
        /// The table's NIC index.
        nic: u8,
        /// The interface.
        interface: String,
    },
    /// The kernel has no route to a target.
    #[error("no route to {target}: {reason}")]
    Unreachable {
        /// The target.
        target: IpAddr,
        /// The kernel's answer and what to check.
        reason: String,
    },
}

impl NetError {
    /// The table's index of the NIC the error is about, if it is about one.
    pub fn nic(&self) -> Option<u8> {
        match self {
            NetError::InvalidPlan { nic, .. }
            | NetError::NoInterface { nic, .. }
            | NetError::AmbiguousMac { nic, .. }
            | NetError::Step { nic, .. }
            | NetError::Vanished { nic, .. } => Some(*nic),
            _ => None,
        }
    }
}

/// Turns an rtnetlink error into the `io::Error` of the kernel's errno when there is one.
pub(crate) fn kernel_error(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

/// What to try after `source`, for `change` (or a read, with `None`), starting with "; ".
fn hint(change: Option<&Change>, source: &io::Error) -> String {
    let errno = source.raw_os_error().unwrap_or(0);
    let advice = match (errno, change) {
        (libc::EPERM | libc::EACCES, _) => {
            "sanshim needs root (CAP_NET_ADMIN) to configure the network"
        }
        (libc::EEXIST, Some(Change::CreateVlan { .. })) => {
            "an interface of that name exists but is not this VLAN: remove or rename it"
        }
        (libc::EOPNOTSUPP, Some(Change::CreateVlan { .. })) => {
            "the kernel has no 802.1Q VLAN support (load module 8021q)"
        }
        (libc::EINVAL | libc::ERANGE, Some(Change::SetMtu { .. })) => {
            "the NIC (or the VLAN's parent) cannot take this MTU: see maxmtu in `ip -d link show`"
        }
        (libc::EEXIST, Some(Change::AddRoute { .. })) => {
            "a different route to that destination exists: see `ip route`"
        }
        (libc::ENETUNREACH, Some(Change::AddRoute { .. })) => {
            "the gateway is not reachable from this interface: check the table's gateway and \
             prefix"
        }
        (libc::ENODEV, _) => "the interface went away: run again",
        _ => return String::new(),
    };
    format!("; {advice}")
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_where_and_what_to_try() {
        let e = NetError::Step {
            nic: 1,
            interface: "eth1".into(),
            change: Change::LinkUp,
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        let text = e.to_string();
        assert!(text.starts_with("NIC 1: eth1: link up failed: "), "{text}");
        assert!(text.ends_with("sanshim needs root (CAP_NET_ADMIN) to configure the network"));
        assert_eq!(e.nic(), Some(1));

        let e = NetError::Step {
            nic: 0,
            interface: "eth0.100".into(),
            change: Change::CreateVlan {
                parent: "eth0".into(),
                id: 100,
            },
            source: io::Error::from_raw_os_error(libc::EOPNOTSUPP),
        };
        assert!(e.to_string().contains("802.1Q"), "{e}");

        let e = NetError::Step {
            nic: 0,
            interface: "eth0".into(),
            change: Change::SetMtu {
                from: 1500,
                to: 9000,
            },
            source: io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert!(e.to_string().contains("maxmtu"), "{e}");

        let e = NetError::Step {
            nic: 0,
            interface: "eth0".into(),
            change: Change::LinkUp,
            source: io::Error::from_raw_os_error(libc::EBUSY),
        };
        assert!(
            e.to_string().ends_with("(os error 16)"),
            "no hint for the unknown: {e}"
        );
    }

    #[test]
    fn missing_mac_lists_what_is_there() {
        let e = NetError::NoInterface {
            nic: 2,
            mac: MacAddr([2, 0, 0, 0, 0, 9]),
            seen: vec![
                "lo 00:00:00:00:00:00".into(),
                "eth0 52:54:00:12:34:56".into(),
            ],
        };
        assert_eq!(
            e.to_string(),
            "NIC 2: no interface has MAC 02:00:00:00:00:09 (interfaces: lo 00:00:00:00:00:00, \
             eth0 52:54:00:12:34:56); is its driver loaded, or is it in another network \
             namespace?"
        );
    }
}
