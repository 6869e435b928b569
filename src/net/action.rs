//! What bringing a NIC up consists of: one [`Action`] per change, each with what became of it.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// One change to one interface and what became of it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Action {
    /// The interface changed (for a VLAN to create: its name-to-be).
    pub interface: String,
    /// The change.
    pub change: Change,
    /// Whether it is planned, done, was already so, or was left out (and why).
    pub status: Status,
}

/// A change to an interface.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Change {
    /// Create the interface as VLAN `id` on top of `parent`.
    CreateVlan {
        /// The interface the VLAN rides on (the one with the table's MAC).
        parent: String,
        /// The VLAN id, 1–4094.
        id: u16,
    },
    /// Set the MTU (only when the caller asked for one).
    SetMtu {
        /// The MTU before.
        from: u32,
        /// The MTU asked for.
        to: u32,
    },
    /// Set the link administratively up.
    LinkUp,
    /// Add an address with its prefix (which also gives the kernel's route to the subnet).
    AddAddress {
        /// The address.
        address: IpAddr,
        /// Prefix length.
        prefix: u8,
    },
    /// Add a route through the table's gateway.
    AddRoute {
        /// Where to.
        to: RouteTo,
        /// The next hop; `None` when the table has no gateway (then the action is skipped).
        gateway: Option<IpAddr>,
    },
}

/// The destination of a route [`Change::AddRoute`] adds.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum RouteTo {
    /// The default route of the gateway's family.
    Default,
    /// A host route to one target portal (`/32` or `/128`).
    Host(IpAddr),
}

/// What became of an [`Action`].
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Status {
    /// To be done (a dry run's answer, or a step not reached).
    Planned,
    /// Done, in this time.
    Done(Duration),
    /// The kernel already had it: nothing to do.
    Already,
    /// Left out on purpose; the reason says why and what the kernel has instead.
    Skipped(String),
}

impl Action {
    pub(crate) fn new(interface: &str, change: Change, status: Status) -> Action {
        Action {
            interface: interface.to_string(),
            change,
            status,
        }
    }

    /// Whether the action is (or was) a change to the kernel's state.
    pub fn is_change(&self) -> bool {
        matches!(self.status, Status::Planned | Status::Done(_))
    }

    /// Whether the kernel already had what the action describes.
    #[cfg(test)]
    pub fn is_already(&self) -> bool {
        self.status == Status::Already
    }

    /// Whether the action belongs to the route phase, which runs once every NIC's links and
    /// addresses are in place and their carriers came (or the wait gave up).
    pub(crate) fn is_route(&self) -> bool {
        matches!(self.change, Change::AddRoute { .. })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.interface, self.change, self.status)
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::CreateVlan { parent, id } => write!(f, "VLAN {id} on {parent}"),
            Change::SetMtu { from, to } => write!(f, "MTU {from} -> {to}"),
            Change::LinkUp => write!(f, "link up"),
            Change::AddAddress { address, prefix } => write!(f, "address {address}/{prefix}"),
            Change::AddRoute { to, gateway } => {
                match to {
                    RouteTo::Default => write!(f, "default route")?,
                    RouteTo::Host(host) => write!(f, "route to {host}")?,
                }
                match gateway {
                    Some(gateway) => write!(f, " via {gateway}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Planned => write!(f, "to do"),
            Status::Done(took) => write!(f, "done in {took:.1?}"),
            Status::Already => write!(f, "already so"),
            Status::Skipped(reason) => write!(f, "skipped: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_read_as_sentences() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases = [
            (
                Action::new(
                    "eth1.100",
                    Change::CreateVlan {
                        parent: "eth1".into(),
                        id: 100,
                    },
                    Status::Planned,
                ),
                "eth1.100: VLAN 100 on eth1: to do",
            ),
            (
                Action::new("eth1", Change::LinkUp, Status::Already),
                "eth1: link up: already so",
            ),
            (
                Action::new(
                    "eth1",
                    Change::SetMtu {
                        from: 1500,
                        to: 9000,
                    },
                    Status::Done(Duration::from_micros(1500)),
                ),
                "eth1: MTU 1500 -> 9000: done in 1.5ms",
            ),
            (
                Action::new(
                    "eth1",
                    Change::AddAddress {
                        address: ip("10.0.2.15"),
                        prefix: 24,
                    },
                    Status::Already,
                ),
                "eth1: address 10.0.2.15/24: already so",
            ),
            (
                Action::new(
                    "eth1",
                    Change::AddRoute {
                        to: RouteTo::Host(ip("10.7.0.9")),
                        gateway: None,
                    },
                    Status::Skipped("no gateway".into()),
                ),
                "eth1: route to 10.7.0.9: skipped: no gateway",
            ),
            (
                Action::new(
                    "eth1",
                    Change::AddRoute {
                        to: RouteTo::Default,
                        gateway: Some(ip("10.0.2.2")),
                    },
                    Status::Planned,
                ),
                "eth1: default route via 10.0.2.2: to do",
            ),
        ];
        for (action, text) in cases {
            assert_eq!(action.to_string(), text);
        }
    }
}
