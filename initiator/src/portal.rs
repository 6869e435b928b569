//! Network portals (RFC 7143 §4.4.1 "Network Portal", §13.9 TargetAddress): where a target
//! listens. One [`Portal`] type serves the command line, the `iscsi://` URL, login
//! redirections and SendTargets answers; [`TargetAddress`] adds the target portal group tag a
//! SendTargets answer or a redirection may carry.

use std::fmt;

use crate::login::parse_number;

/// The iSCSI port (RFC 7143 §13.9 default for TargetAddress).
pub const DEFAULT_PORT: u16 = 3260;

/// Where to connect: a host (IP address or name) and a TCP port.
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct Portal {
    /// IPv4 or IPv6 address (IPv6 without brackets) or host name.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// A `TargetAddress` value: a portal and, when given, its target portal group tag.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct TargetAddress {
    /// Host and port.
    pub portal: Portal,
    /// Target portal group tag, when given.
    pub tpgt: Option<u16>,
}

/// A portal address that does not parse.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("invalid portal address {value:?}: {reason}")]
pub struct AddressError {
    /// The value (clipped).
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Portal {
    /// Parses `host[:port]` with IPv6 hosts in brackets (`[fe80::1]:3260`); port 3260 when
    /// none is given. An unbracketed value with several colons is taken as a bare IPv6
    /// address on the default port.
    ///
    /// # Errors
    /// [`AddressError`] naming what is wrong (a portal group tag is not taken here).
    pub fn parse(value: &str) -> Result<Portal, AddressError> {
        let address = TargetAddress::parse(value)?;
        if address.tpgt.is_some() {
            return Err(invalid(
                value,
                "a portal group tag (,TPGT) is not taken here",
            ));
        }
        Ok(address.portal)
    }
}

impl fmt::Display for Portal {
    /// `host:port`, with an IPv6 host in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl TargetAddress {
    /// Parses a TargetAddress value: `host[:port][,tpgt]` with IPv6 hosts in brackets
    /// (RFC 7143 §13.9), e.g. `[fe80::1]:3260,1`, `10.0.0.1,1`, `disk.example`.
    ///
    /// # Errors
    /// [`AddressError`] naming what is wrong.
    pub fn parse(value: &str) -> Result<TargetAddress, AddressError> {
        let (address, tpgt) = match value.split_once(',') {
            Some((address, tag)) => {
                let tag = parse_number(tag, u16::MAX.into())
                    .ok()
                    .and_then(|t| u16::try_from(t).ok())
                    .ok_or_else(|| invalid(value, "bad portal group tag"))?;
                (address, Some(tag))
            }
            None => (value, None),
        };
        let (host, port) = split_host_port(address).map_err(|reason| invalid(value, reason))?;
        let port = match port {
            None => DEFAULT_PORT,
            Some(port) => port
                .parse()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid(value, "bad port"))?,
        };
        let bad_char = |c: char| c.is_whitespace() || c.is_control() || c == '[' || c == ']';
        if host.is_empty() || host.chars().any(bad_char) {
            return Err(invalid(value, "bad host"));
        }
        let portal = Portal {
            host: host.to_owned(),
            port,
        };
        Ok(TargetAddress { portal, tpgt })
    }
}

impl fmt::Display for TargetAddress {
    /// `host:port[,tpgt]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.portal)?;
        match self.tpgt {
            Some(t) => write!(f, ",{t}"),
            None => Ok(()),
        }
    }
}

/// Splits `host[:port]` / `[v6][:port]` / a bare IPv6 address.
fn split_host_port(address: &str) -> Result<(&str, Option<&str>), &'static str> {
    if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed '['")?;
        return match after {
            "" => Ok((host, None)),
            _ => Ok((host, Some(after.strip_prefix(':').ok_or("junk after ']'")?))),
        };
    }
    Ok(match address.split_once(':') {
        Some((host, port)) if !port.contains(':') => (host, Some(port)),
        _ => (address, None),
    })
}

fn invalid(value: &str, reason: &'static str) -> AddressError {
    AddressError {
        value: crate::login::clip(value),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(host: &str, port: u16, tpgt: Option<u16>) -> TargetAddress {
        TargetAddress {
            portal: Portal {
                host: host.into(),
                port,
            },
            tpgt,
        }
    }

    #[test]
    fn target_address_forms() {
        let cases = [
            ("[fe80::1]:3260,1", address("fe80::1", 3260, Some(1))),
            ("10.0.0.1,1", address("10.0.0.1", 3260, Some(1))),
            ("10.0.0.1:3261", address("10.0.0.1", 3261, None)),
            ("disk.example.com", address("disk.example.com", 3260, None)),
            ("[::1]", address("::1", 3260, None)),
            ("[::1],2", address("::1", 3260, Some(2))),
            ("fe80::1", address("fe80::1", 3260, None)),
            (
                "[fe80::1%eth0]:3260,0x10",
                address("fe80::1%eth0", 3260, Some(16)),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(TargetAddress::parse(value), Ok(expected), "{value}");
        }
        for bad in [
            "",
            ":3260",
            "[fe80::1",
            "[fe80::1]3260",
            "10.0.0.1:0",
            "10.0.0.1:99999",
            "10.0.0.1:",
            "10.0.0.1,x",
            "10.0.0.1,65536",
            "10.0.0.1,",
            "a b:1",
            "[]:3260",
        ] {
            assert!(TargetAddress::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn portal_refuses_a_group_tag() {
        assert_eq!(
            Portal::parse("10.0.0.1:3261"),
            Ok(address("10.0.0.1", 3261, None).portal)
        );
        let e = Portal::parse("10.0.0.1,1").unwrap_err();
        assert!(e.reason.contains("group tag"), "{e}");
    }

    #[test]
    fn display_brackets_ipv6() {
        assert_eq!(
            address("fe80::1", 3260, Some(2)).to_string(),
            "[fe80::1]:3260,2"
        );
        assert_eq!(address("10.0.0.1", 3261, None).to_string(), "10.0.0.1:3261");
    }
}
