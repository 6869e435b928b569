//! The `iscsi://` URL: `iscsi://[USER[%SECRET]@]HOST[:PORT]/TARGET-IQN/LUN`, the form libiscsi
//! and QEMU accept (libiscsi `iscsi_parse_full_url`).
//!
//! - HOST is a host name, an IPv4 address or an IPv6 address in brackets; PORT defaults to
//!   3260.
//! - USER is taken as written up to the first `%` (so it cannot itself contain `%`); SECRET is
//!   the rest, percent-decoded (`%25` for `%`). USER and SECRET end at the last `@` of the URL,
//!   so a secret may hold `@` and `/`.
//! - TARGET-IQN is percent-decoded, validated as an iSCSI name and lower-cased, with a flag
//!   saying whether that changed it; LUN is decimal.
//!
//! The secret is kept in a [`Zeroizing`] string, never printed by `Debug` or `Display` and
//! never part of an error.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use zeroize::{Zeroize, Zeroizing};

use crate::name::{IscsiName, NameError};
use crate::portal::Portal;
use crate::wire::Lun;

/// A parsed `iscsi://` URL naming one LUN through one portal.
#[derive(Clone, Eq, PartialEq)]
pub struct IscsiUrl {
    user: Option<String>,
    secret: Option<Zeroizing<String>>,
    host: Host,
    port: u16,
    target: IscsiName,
    target_lowercased: bool,
    lun: u64,
}

/// The host part of a URL.
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub enum Host {
    /// A DNS name, as written.
    Name(String),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address (written in brackets).
    Ipv6(Ipv6Addr),
}

/// Why a string is not a usable `iscsi://` URL. No variant carries the secret.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The scheme is not `iscsi://`.
    #[error(
        "an iSCSI URL starts with iscsi:// (iscsi://[USER[%SECRET]@]HOST[:PORT]/TARGET-IQN/LUN)"
    )]
    NotIscsi,
    /// Nothing where the host should be.
    #[error("the URL has no host")]
    EmptyHost,
    /// The host is neither a host name nor an IPv4 address.
    #[error("host {0:?} is not a host name or IPv4 address (write IPv6 addresses in brackets)")]
    BadHost(String),
    /// The bracketed host is not an IPv6 address.
    #[error("[{0}] is not an IPv6 address")]
    BadIpv6(String),
    /// The port is not a number from 1 to 65535.
    #[error("port {0:?} is not a number from 1 to 65535")]
    BadPort(String),
    /// `@` with nothing before it, or a `%` with nothing before it.
    #[error("the URL has an empty user name before '%' or '@'")]
    EmptyUser,
    /// `USER%@`: a `%` with no secret after it.
    #[error("the URL has an empty secret after '%'")]
    EmptySecret,
    /// A `%` not followed by two hex digits, or escapes that decode to invalid UTF-8.
    #[error("{0}: '%' must be followed by two hex digits encoding UTF-8 (write %25 for '%')")]
    BadEscape(&'static str),
    /// A user name with a character the URL cannot carry.
    #[error("the user name contains '%' or a control character")]
    BadUser,
    /// No `/TARGET-IQN` after the portal.
    #[error("the URL has no target name: expected iscsi://HOST[:PORT]/TARGET-IQN/LUN")]
    MissingTarget,
    /// The target name is not a valid iSCSI name.
    #[error("target name: {0}")]
    BadTarget(#[from] NameError),
    /// No `/LUN` after the target name.
    #[error("the URL has no LUN: expected iscsi://HOST[:PORT]/TARGET-IQN/LUN")]
    MissingLun,
    /// The LUN is not a decimal number below 2^40.
    #[error("LUN {0:?} is not a decimal number below 2^40")]
    BadLun(String),
    /// Something after the LUN (another `/`, or `?` options, which are not supported).
    #[error("unexpected {0:?} after the LUN")]
    Trailing(String),
}

impl IscsiUrl {
    /// The port used when the URL names none.
    pub const DEFAULT_PORT: u16 = 3260;
    /// Largest LUN a URL may name: single-level LUNs go up to 2^40 - 1 (SAM-5 §4.7).
    pub const MAX_LUN: u64 = (1 << 40) - 1;

    /// Parses `iscsi://[USER[%SECRET]@]HOST[:PORT]/TARGET-IQN/LUN`.
    ///
    /// # Errors
    /// A [`UrlError`] naming the part that is wrong.
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let rest = strip_scheme(s).ok_or(UrlError::NotIscsi)?;
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (Some(userinfo), rest),
            None => (None, rest),
        };
        let (user, secret) = userinfo
            .map(parse_userinfo)
            .transpose()?
            .unwrap_or((None, None));
        let (authority, path) = rest.split_once('/').ok_or(UrlError::MissingTarget)?;
        let (host, port) = parse_authority(authority)?;
        let (target, lun) = path.split_once('/').ok_or(UrlError::MissingLun)?;
        if target.is_empty() {
            return Err(UrlError::MissingTarget);
        }
        let target = String::from_utf8(percent_decode(target, "target name")?)
            .map_err(|_| UrlError::BadEscape("target name"))?;
        let target = IscsiName::parse(&target)?;
        Ok(IscsiUrl {
            user,
            secret,
            host,
            port,
            target: target.name,
            target_lowercased: target.lowercased,
            lun: parse_lun(lun)?,
        })
    }

    /// A URL without credentials.
    ///
    /// # Errors
    /// [`UrlError::BadLun`] above [`IscsiUrl::MAX_LUN`], [`UrlError::BadPort`] for port 0.
    pub fn new(host: Host, port: u16, target: IscsiName, lun: u64) -> Result<Self, UrlError> {
        if lun > Self::MAX_LUN {
            return Err(UrlError::BadLun(lun.to_string()));
        }
        if port == 0 {
            return Err(UrlError::BadPort(port.to_string()));
        }
        Ok(IscsiUrl {
            user: None,
            secret: None,
            host,
            port,
            target,
            target_lowercased: false,
            lun,
        })
    }

    /// This URL with CHAP credentials.
    ///
    /// # Errors
    /// [`UrlError::EmptyUser`], [`UrlError::BadUser`] for a user name the URL cannot carry,
    /// [`UrlError::EmptySecret`].
    pub fn with_credentials(
        mut self,
        user: &str,
        secret: Option<Zeroizing<String>>,
    ) -> Result<Self, UrlError> {
        check_user(user)?;
        if secret.as_ref().is_some_and(|s| s.is_empty()) {
            return Err(UrlError::EmptySecret);
        }
        self.user = Some(user.to_owned());
        self.secret = secret;
        Ok(self)
    }

    /// The CHAP user name, if the URL has one.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The CHAP secret, if the URL has one. The caller should warn: it is visible in `ps`.
    pub fn secret(&self) -> Option<&str> {
        self.secret.as_deref().map(String::as_str)
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The portal the URL names (its `Display` is `host:port`, `[v6]:port` for IPv6).
    pub fn portal(&self) -> Portal {
        let host = match &self.host {
            Host::Name(n) => n.clone(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
        };
        Portal {
            host,
            port: self.port,
        }
    }

    /// The target name, lower case.
    pub fn target(&self) -> &IscsiName {
        &self.target
    }

    /// The target name in the URL had upper-case letters; the caller should warn.
    pub fn target_lowercased(&self) -> bool {
        self.target_lowercased
    }

    /// The LUN number.
    pub fn lun(&self) -> u64 {
        self.lun
    }

    /// The LUN as SCSI commands address it.
    pub fn wire_lun(&self) -> Lun {
        Lun::from_number(self.lun)
    }
}

impl FromStr for IscsiUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IscsiUrl::parse(s)
    }
}

/// `iscsi://[USER@]HOST:PORT/TARGET/LUN`: the port always, the secret never.
impl fmt::Display for IscsiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("iscsi://")?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        write!(f, "{}/", self.portal())?;
        for c in self.target.as_str().chars() {
            if c.is_ascii() {
                write!(f, "{c}")?;
            } else {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    write!(f, "%{b:02X}")?;
                }
            }
        }
        write!(f, "/{}", self.lun)
    }
}

impl fmt::Debug for IscsiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IscsiUrl")
            .field("user", &self.user)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("target", &self.target.as_str())
            .field("target_lowercased", &self.target_lowercased)
            .field("lun", &self.lun)
            .finish()
    }
}

/// The host as written in a URL: IPv6 in brackets.
impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ipv4(ip) => write!(f, "{ip}"),
            Host::Ipv6(ip) => write!(f, "[{ip}]"),
        }
    }
}

fn strip_scheme(s: &str) -> Option<&str> {
    let (scheme, rest) = s.split_at_checked(8)?;
    scheme.eq_ignore_ascii_case("iscsi://").then_some(rest)
}

type Credentials = (Option<String>, Option<Zeroizing<String>>);

fn parse_userinfo(userinfo: &str) -> Result<Credentials, UrlError> {
    let (user, secret) = match userinfo.split_once('%') {
        Some((user, secret)) => (user, Some(secret)),
        None => (userinfo, None),
    };
    check_user(user)?;
    let secret = match secret {
        None => None,
        Some("") => return Err(UrlError::EmptySecret),
        Some(raw) => {
            let bytes = Zeroizing::new(percent_decode(raw, "secret")?);
            let text = std::str::from_utf8(&bytes).map_err(|_| UrlError::BadEscape("secret"))?;
            Some(Zeroizing::new(text.to_owned()))
        }
    };
    Ok((Some(user.to_owned()), secret))
}

fn check_user(user: &str) -> Result<(), UrlError> {
    if user.is_empty() {
        return Err(UrlError::EmptyUser);
    }
    if user.chars().any(|c| c == '%' || c.is_control()) {
        return Err(UrlError::BadUser);
    }
    Ok(())
}

fn parse_authority(authority: &str) -> Result<(Host, u16), UrlError> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| UrlError::BadIpv6(v6.to_owned()))?;
        let ip = addr
            .parse()
            .map_err(|_| UrlError::BadIpv6(addr.to_owned()))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| UrlError::BadPort(after.to_owned()))?,
            ),
        };
        (Host::Ipv6(ip), port)
    } else if authority.matches(':').count() > 1 {
        return Err(UrlError::BadHost(authority.to_owned()));
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        (parse_host(host)?, port)
    };
    let port = match port {
        None => IscsiUrl::DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&n| n != 0 && p.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| UrlError::BadPort(p.to_owned()))?,
    };
    Ok((host, port))
}

fn parse_host(host: &str) -> Result<Host, UrlError> {
    if host.is_empty() {
        return Err(UrlError::EmptyHost);
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Host::Ipv4(ip));
    }
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if host.chars().all(name_char) {
        Ok(Host::Name(host.to_owned()))
    } else {
        Err(UrlError::BadHost(host.to_owned()))
    }
}

fn parse_lun(lun: &str) -> Result<u64, UrlError> {
    if let Some(i) = lun.find(['/', '?', '#']) {
        return Err(UrlError::Trailing(
            lun.get(i..).unwrap_or_default().to_owned(),
        ));
    }
    lun.parse::<u64>()
        .ok()
        .filter(|&n| {
            n <= IscsiUrl::MAX_LUN && !lun.is_empty() && lun.bytes().all(|b| b.is_ascii_digit())
        })
        .ok_or_else(|| UrlError::BadLun(lun.to_owned()))
}

/// Decodes `%XX` escapes. The partial output is wiped if an escape is bad, since `part` may
/// be the secret.
fn percent_decode(s: &str, part: &'static str) -> Result<Vec<u8>, UrlError> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hi = bytes.next().and_then(hex_value);
        let lo = bytes.next().and_then(hex_value);
        match (hi, lo) {
            (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
            _ => {
                out.zeroize();
                return Err(UrlError::BadEscape(part));
            }
        }
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn url(s: &str) -> IscsiUrl {
        IscsiUrl::parse(s).unwrap()
    }

    #[test]
    fn test_parse_minimal_and_full() {
        let u = url("iscsi://127.0.0.1/iqn.2026-11.test:scsi/1");
        assert_eq!(u.host(), &Host::Ipv4(Ipv4Addr::LOCALHOST));
        assert_eq!(u.port(), 3260);
        assert_eq!(u.target().as_str(), "iqn.2026-11.test:scsi");
        assert_eq!((u.lun(), u.user(), u.secret()), (1, None, None));
        assert!(!u.target_lowercased());
        assert_eq!(u.wire_lun().0, [0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            u.to_string(),
            "iscsi://127.0.0.1:3260/iqn.2026-11.test:scsi/1"
        );

        let u =
            url("iscsi://iqn.2026-11.test:init%s3cr%25t@[fe80::1]:3270/IQN.2026-11.Test:Disk/0");
        assert_eq!(u.user(), Some("iqn.2026-11.test:init"));
        assert_eq!(u.secret(), Some("s3cr%t"));
        assert_eq!(u.host(), &Host::Ipv6("fe80::1".parse().unwrap()));
        assert_eq!((u.port(), u.lun()), (3270, 0));
        assert_eq!(u.target().as_str(), "iqn.2026-11.test:disk");
        assert!(u.target_lowercased());
        assert_eq!(u.portal().to_string(), "[fe80::1]:3270");
        assert_eq!(
            u.to_string(),
            "iscsi://iqn.2026-11.test:init@[fe80::1]:3270/iqn.2026-11.test:disk/0"
        );
    }

    #[test]
    fn secret_never_shows() {
        let u = url("iscsi://user%hunter2@san.example:3261/iqn.2026-11.test:scsi/16383");
        assert_eq!(u.secret(), Some("hunter2"));
        assert_eq!(u.host(), &Host::Name("san.example".into()));
        let debug = format!("{u:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("secret: Some(\"***\")"), "{debug}");
        assert!(!u.to_string().contains("hunter2"));
        // A secret holding '@', '/' and '?' written raw still parses: the last '@' ends it.
        let u = url("iscsi://user%p@ss/w?rd@host/iqn.2026-11.test:scsi/2");
        assert_eq!(u.secret(), Some("p@ss/w?rd"));
        // Errors never quote the secret.
        let err = IscsiUrl::parse("iscsi://user%hunt%zz2@host/iqn.2026-11.test:scsi/1");
        assert_eq!(err, Err(UrlError::BadEscape("secret")));
        assert!(!err.unwrap_err().to_string().contains("hunt"));
    }

    #[test]
    fn test_parse_errors() {
        let cases: &[(&str, UrlError)] = &[
            ("http://h/iqn.2026-11.t:x/1", UrlError::NotIscsi),
            ("iscsi:/", UrlError::NotIscsi),
            ("iscsi://host", UrlError::MissingTarget),
            ("iscsi://host//1", UrlError::MissingTarget),
            ("iscsi://host/iqn.2026-11.t:x", UrlError::MissingLun),
            ("iscsi:///iqn.2026-11.t:x/1", UrlError::EmptyHost),
            ("iscsi://:3260/iqn.2026-11.t:x/1", UrlError::EmptyHost),
            (
                "iscsi://ho st/iqn.2026-11.t:x/1",
                UrlError::BadHost("ho st".into()),
            ),
            (
                "iscsi://fe80::1/iqn.2026-11.t:x/1",
                UrlError::BadHost("fe80::1".into()),
            ),
            (
                "iscsi://[fe80::g]/iqn.2026-11.t:x/1",
                UrlError::BadIpv6("fe80::g".into()),
            ),
            (
                "iscsi://[::1/iqn.2026-11.t:x/1",
                UrlError::BadIpv6("::1".into()),
            ),
            (
                "iscsi://[::1]3260/iqn.2026-11.t:x/1",
                UrlError::BadPort("3260".into()),
            ),
            (
                "iscsi://h:0/iqn.2026-11.t:x/1",
                UrlError::BadPort("0".into()),
            ),
            ("iscsi://h:/iqn.2026-11.t:x/1", UrlError::BadPort("".into())),
            (
                "iscsi://h:+80/iqn.2026-11.t:x/1",
                UrlError::BadPort("+80".into()),
            ),
            (
                "iscsi://h:65536/iqn.2026-11.t:x/1",
                UrlError::BadPort("65536".into()),
            ),
            ("iscsi://@h/iqn.2026-11.t:x/1", UrlError::EmptyUser),
            ("iscsi://%s@h/iqn.2026-11.t:x/1", UrlError::EmptyUser),
            ("iscsi://u%@h/iqn.2026-11.t:x/1", UrlError::EmptySecret),
            (
                "iscsi://u%%ff@h/iqn.2026-11.t:x/1",
                UrlError::BadEscape("secret"),
            ),
            (
                "iscsi://h/iqn.2026-11.t:x%4/1",
                UrlError::BadEscape("target name"),
            ),
            (
                "iscsi://h/target/1",
                UrlError::BadTarget(NameError::UnknownFormat),
            ),
            ("iscsi://h/iqn.2026-11.t:x/", UrlError::BadLun("".into())),
            (
                "iscsi://h/iqn.2026-11.t:x/-1",
                UrlError::BadLun("-1".into()),
            ),
            (
                "iscsi://h/iqn.2026-11.t:x/+1",
                UrlError::BadLun("+1".into()),
            ),
            (
                "iscsi://h/iqn.2026-11.t:x/0x1",
                UrlError::BadLun("0x1".into()),
            ),
            (
                "iscsi://h/iqn.2026-11.t:x/1099511627776",
                UrlError::BadLun("1099511627776".into()),
            ),
            (
                "iscsi://h/iqn.2026-11.t:x/1/",
                UrlError::Trailing("/".into()),
            ),
            (
                "iscsi://h/iqn.2026-11.t:x/1?header_digest=crc32c",
                UrlError::Trailing("?header_digest=crc32c".into()),
            ),
        ];
        for (input, err) in cases {
            assert_eq!(&IscsiUrl::parse(input).unwrap_err(), err, "{input}");
        }
        // Every message names the problem.
        assert!(UrlError::MissingLun.to_string().contains("LUN"));
        assert!(
            UrlError::BadTarget(NameError::BadDate)
                .to_string()
                .starts_with("target name")
        );
    }

    #[test]
    fn test_percent_encoded_target_and_scheme_case() {
        let u = url("ISCSI://h/iqn.2026-11.test%3Abücher/1099511627775");
        assert_eq!(u.target().as_str(), "iqn.2026-11.test:bücher");
        assert_eq!(u.lun(), IscsiUrl::MAX_LUN);
        assert_eq!(
            u.to_string(),
            "iscsi://h:3260/iqn.2026-11.test:b%C3%BCcher/1099511627775"
        );
        assert_eq!(url(&u.to_string()), u);
    }

    #[test]
    fn test_construct() {
        let target = IscsiName::parse("iqn.2026-11.test:scsi").unwrap().name;
        let u = IscsiUrl::new(Host::Name("h".into()), 3260, target.clone(), 3).unwrap();
        assert_eq!(u.to_string(), "iscsi://h:3260/iqn.2026-11.test:scsi/3");
        let u = u
            .with_credentials("me", Some(Zeroizing::new("pw".into())))
            .unwrap();
        assert_eq!(u.to_string(), "iscsi://me@h:3260/iqn.2026-11.test:scsi/3");
        assert_eq!(u.secret(), Some("pw"));
        assert!(u.clone().with_credentials("a%b", None).is_err());
        assert!(
            u.clone()
                .with_credentials("ab", Some(Zeroizing::new(String::new())))
                .is_err()
        );
        assert!(IscsiUrl::new(Host::Name("h".into()), 0, target.clone(), 3).is_err());
        assert!(IscsiUrl::new(Host::Name("h".into()), 1, target, 1 << 40).is_err());
    }

    fn encode_all(s: &str) -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02x}")
                }
            })
            .collect()
    }

    fn host() -> impl Strategy<Value = Host> {
        prop_oneof![
            "[a-z][a-z0-9-]{0,10}(\\.[a-z0-9-]{1,10}){0,3}".prop_map(Host::Name),
            any::<[u8; 4]>().prop_map(|o| Host::Ipv4(o.into())),
            any::<[u16; 8]>().prop_map(|s| Host::Ipv6(s.into())),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(
            user in proptest::option::of("[a-zA-Z0-9.:@_-]{1,20}"),
            secret in "[ -~]{1,24}",
            host in host(),
            port in proptest::option::of(1u16..),
            target in "iqn\\.20[0-9]{2}-(0[1-9]|1[0-2])\\.[a-z0-9]{1,8}(:[a-zA-Z0-9.:-]{1,20})?",
            lun in 0..=IscsiUrl::MAX_LUN,
        ) {
            let mut s = String::from("iscsi://");
            if let Some(user) = &user {
                s += &format!("{user}%{}@", encode_all(&secret));
            }
            s += &host.to_string();
            if let Some(port) = port {
                s += &format!(":{port}");
            }
            s += &format!("/{target}/{lun}");
            let u = IscsiUrl::parse(&s).unwrap();
            prop_assert_eq!(u.user(), user.as_deref());
            prop_assert_eq!(u.secret(), user.as_ref().map(|_| secret.as_str()));
            prop_assert_eq!(u.host(), &host);
            prop_assert_eq!(u.port(), port.unwrap_or(3260));
            prop_assert_eq!(u.target().as_str(), target.to_lowercase());
            prop_assert_eq!(u.lun(), lun);
            // Display drops only the secret.
            let again = IscsiUrl::parse(&u.to_string()).unwrap();
            prop_assert_eq!(again.secret(), None);
            prop_assert_eq!(again.to_string(), u.to_string());
            prop_assert_eq!(again.user(), u.user());
            prop_assert_eq!(again.target(), u.target());
        }

        #[test]
        fn parse_never_panics(s in "(iscsi://)?.{0,80}") {
            let _ = IscsiUrl::parse(&s);
        }
    }
}
