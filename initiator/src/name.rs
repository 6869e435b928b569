//! iSCSI names (RFC 7143 §4.2.7, formerly RFC 3720 §3.2.6; the stringprep profile of
//! RFC 3722) and the default initiator name.
//!
//! A name has one of three forms: `iqn.YYYY-MM.reversed.domain[:anything]`, `eui.` and 16 hex
//! digits, `naa.` and 16 or 32 hex digits. Names compare case-insensitively because RFC 3722
//! maps them to lower case; [`IscsiName::parse`] does the same and reports whether that
//! changed anything, so the caller can warn (a target configured with an upper-case name may
//! not accept the lower-cased one).

use std::fmt;
use std::io;
use std::path::Path;

/// A valid, lower-case iSCSI name.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct IscsiName(String);

/// The form of an iSCSI name (RFC 7143 §4.2.7.2).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum NameFormat {
    /// `iqn.`: iSCSI qualified name, built from a domain its owner held at a date.
    Iqn,
    /// `eui.`: an IEEE EUI-64 in hex.
    Eui,
    /// `naa.`: a T11 Network Address Authority identifier in hex.
    Naa,
}

/// A name after validation, and whether lower-casing changed it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Normalized {
    /// The lower-case name.
    pub name: IscsiName,
    /// The input had upper-case letters; the caller should warn.
    pub lowercased: bool,
}

/// Why a string is not an iSCSI name.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The empty string.
    #[error("the iSCSI name is empty")]
    Empty,
    /// Longer than the 223 bytes RFC 7143 allows.
    #[error("the iSCSI name is {0} bytes long; at most 223 are allowed")]
    TooLong(usize),
    /// Does not start with `iqn.`, `eui.` or `naa.`.
    #[error("an iSCSI name starts with \"iqn.\", \"eui.\" or \"naa.\"")]
    UnknownFormat,
    /// An `iqn.` name without a valid `YYYY-MM` date after the prefix.
    #[error("an iqn. name continues with a date YYYY-MM (month 01-12), as iqn.2026-11.")]
    BadDate,
    /// An `iqn.` name without a naming authority after the date.
    #[error("an iqn. name needs a reversed domain name after the date, as iqn.2026-11.org.example")]
    NoNamingAuthority,
    /// An `eui.` or `naa.` name whose hex part is wrong.
    #[error("{prefix} must be followed by {digits} hexadecimal digits")]
    BadHex {
        /// `eui.` or `naa.`.
        prefix: &'static str,
        /// What is expected, in words.
        digits: &'static str,
    },
    /// A character RFC 3722 does not allow (only letters, digits, `-`, `.` and `:`).
    #[error(
        "character {ch:?} at byte {at} is not allowed in an iSCSI name \
         (only letters, digits, '-', '.', ':')"
    )]
    BadChar {
        /// The character.
        ch: char,
        /// Its byte offset in the lower-cased name.
        at: usize,
    },
}

impl IscsiName {
    /// Longest name in bytes (RFC 7143 §4.2.7.1).
    pub const MAX_LEN: usize = 223;

    /// Validates `s` and lower-cases it.
    ///
    /// # Errors
    /// A [`NameError`] naming what is wrong.
    pub fn parse(s: &str) -> Result<Normalized, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        let lower = s.to_lowercase();
        if lower.len() > Self::MAX_LEN {
            return Err(NameError::TooLong(lower.len()));
        }
        if let Some((at, ch)) = lower.char_indices().find(|&(_, c)| !allowed(c)) {
            return Err(NameError::BadChar { ch, at });
        }
        check_form(&lower)?;
        let lowercased = lower != s;
        Ok(Normalized {
            name: IscsiName(lower),
            lowercased,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Which form the name has.
    pub fn format(&self) -> NameFormat {
        if self.0.starts_with("eui.") {
            NameFormat::Eui
        } else if self.0.starts_with("naa.") {
            NameFormat::Naa
        } else {
            NameFormat::Iqn
        }
    }
}

impl fmt::Display for IscsiName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for IscsiName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Where the default initiator name came from.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum NameSource {
    /// The `InitiatorName=` line of /etc/iscsi/initiatorname.iscsi.
    File,
    /// Made from the host name: `iqn.2026-11.local:<hostname>`.
    Hostname,
}

/// The default initiator name and where it came from.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct DefaultName {
    /// The name, lower case.
    pub name: IscsiName,
    /// Where it came from.
    pub source: NameSource,
    /// The file's name had upper-case letters; the caller should warn.
    pub lowercased: bool,
}

/// Why no default initiator name could be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DefaultNameError {
    /// The `InitiatorName=` line of the file holds an invalid name.
    #[error("InitiatorName in the initiator name file: {0}")]
    InvalidInFile(NameError),
    /// The file could not be read (other than not existing).
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: io::Error,
    },
    /// No usable host name (empty, or nothing left after replacing invalid characters).
    #[error("no InitiatorName configured and the host name is empty; give --initiator-name")]
    NoHostname,
}

/// Where open-iscsi keeps the initiator name.
pub const INITIATOR_NAME_FILE: &str = "/etc/iscsi/initiatorname.iscsi";
/// Where Linux shows the host name.
pub const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";
/// The naming authority of names made from a host name.
pub const HOSTNAME_PREFIX: &str = "iqn.2026-11.local:";

/// Chooses the default initiator name: the `InitiatorName=` line of `file_contents` (the
/// contents of /etc/iscsi/initiatorname.iscsi, `None` when there is no such file), else
/// `iqn.2026-11.local:<hostname>` with `hostname` called only then.
///
/// # Errors
/// [`DefaultNameError::InvalidInFile`] for a bad name in the file, whatever `hostname`
/// returns, and [`DefaultNameError::NoHostname`] for an empty host name.
pub fn default_initiator_name<F>(
    hostname: F,
    file_contents: Option<&str>,
) -> Result<DefaultName, DefaultNameError>
where
    F: FnOnce() -> Result<String, DefaultNameError>,
{
    if let Some(configured) = file_contents.and_then(initiator_name_line) {
        let n = IscsiName::parse(configured).map_err(DefaultNameError::InvalidInFile)?;
        return Ok(DefaultName {
            name: n.name,
            source: NameSource::File,
            lowercased: n.lowercased,
        });
    }
    let name = name_from_hostname(&hostname()?).ok_or(DefaultNameError::NoHostname)?;
    Ok(DefaultName {
        name,
        source: NameSource::Hostname,
        lowercased: false,
    })
}

/// [`default_initiator_name`] with [`INITIATOR_NAME_FILE`] and [`HOSTNAME_FILE`].
///
/// # Errors
/// As [`read_default_initiator_name_from`].
pub fn read_default_initiator_name() -> Result<DefaultName, DefaultNameError> {
    read_default_initiator_name_from(Path::new(INITIATOR_NAME_FILE), Path::new(HOSTNAME_FILE))
}

/// [`default_initiator_name`] reading the two files given; a missing initiator name file is
/// not an error.
///
/// # Errors
/// [`DefaultNameError::Io`] when a file cannot be read, and as [`default_initiator_name`].
pub fn read_default_initiator_name_from(
    initiator_file: &Path,
    hostname_file: &Path,
) -> Result<DefaultName, DefaultNameError> {
    let io_error = |path: &Path, source| DefaultNameError::Io {
        path: path.display().to_string(),
        source,
    };
    let contents = match std::fs::read_to_string(initiator_file) {
        Ok(contents) => Some(contents),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error(initiator_file, e)),
    };
    default_initiator_name(
        || std::fs::read_to_string(hostname_file).map_err(|e| io_error(hostname_file, e)),
        contents.as_deref(),
    )
}

/// The value of the first `InitiatorName=` line, ignoring blank lines, `#` comments and
/// whitespace around key and value (the open-iscsi file format).
pub fn initiator_name_line(contents: &str) -> Option<&str> {
    contents
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case("InitiatorName"))
        .map(|(_, value)| value.trim())
}

/// `iqn.2026-11.local:<hostname>`, the host name lower-cased, characters outside `a-z 0-9 - .`
/// replaced by `-` and cut to fit; `None` when the host name is blank.
pub fn name_from_hostname(hostname: &str) -> Option<IscsiName> {
    let host: String = hostname
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(IscsiName::MAX_LEN - HOSTNAME_PREFIX.len())
        .collect();
    if host.is_empty() {
        return None;
    }
    // Every character is ASCII from the allowed set and the prefix is a valid iqn.
    Some(IscsiName(format!("{HOSTNAME_PREFIX}{host}")))
}

/// RFC 3722 §6 leaves ASCII letters, digits, `-`, `.` and `:`; beyond ASCII, nameprep keeps
/// letters and digits, which is what is accepted here.
fn allowed(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':')
    } else {
        c.is_alphanumeric()
    }
}

fn check_form(lower: &str) -> Result<(), NameError> {
    if let Some(rest) = lower.strip_prefix("iqn.") {
        check_iqn(rest)
    } else if let Some(hex) = lower.strip_prefix("eui.") {
        check_hex(hex, &[16]).ok_or(NameError::BadHex {
            prefix: "eui.",
            digits: "16",
        })
    } else if let Some(hex) = lower.strip_prefix("naa.") {
        check_hex(hex, &[16, 32]).ok_or(NameError::BadHex {
            prefix: "naa.",
            digits: "16 or 32",
        })
    } else {
        Err(NameError::UnknownFormat)
    }
}

/// `YYYY-MM.authority[:anything]`.
fn check_iqn(rest: &str) -> Result<(), NameError> {
    let (date, after) = rest.split_at_checked(7).ok_or(NameError::BadDate)?;
    let d = date.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| d.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let month = date.get(5..7).and_then(|m| m.parse::<u8>().ok());
    if !(digits(0..4) && d.get(4) == Some(&b'-') && digits(5..7) && matches!(month, Some(1..=12))) {
        return Err(NameError::BadDate);
    }
    let authority = after
        .strip_prefix('.')
        .ok_or(NameError::NoNamingAuthority)?;
    let authority = authority.split(':').next().unwrap_or_default();
    if authority.is_empty() || authority.split('.').any(str::is_empty) {
        return Err(NameError::NoNamingAuthority);
    }
    Ok(())
}

fn check_hex(hex: &str, lengths: &[usize]) -> Option<()> {
    (lengths.contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn valid_names() {
        for name in [
            "iqn.2026-11.test:scsi",
            "iqn.1993-08.org.debian:01:abcdef",
            "iqn.2001-04.com.example",
            "iqn.2003-01.org.linux-iscsi.host.x8664:sn.1234",
            "eui.02004567a425678d",
            "naa.52004567ba64678d",
            "naa.60014050123456789abcdef012345678",
            "iqn.2026-11.example:bücher",
        ] {
            let n = IscsiName::parse(name).unwrap();
            assert_eq!(n.name.as_str(), name);
            assert!(!n.lowercased);
        }
        assert_eq!(
            IscsiName::parse("eui.0123456789abcdef")
                .unwrap()
                .name
                .format(),
            NameFormat::Eui
        );
        assert_eq!(
            IscsiName::parse("naa.0123456789abcdef")
                .unwrap()
                .name
                .format(),
            NameFormat::Naa
        );
        assert_eq!(
            IscsiName::parse("iqn.2001-04.com.x").unwrap().name.format(),
            NameFormat::Iqn
        );
    }

    #[test]
    fn lower_casing_is_reported() {
        let n = IscsiName::parse("IQN.2000-01.com.Synology:NAS.Target-1").unwrap();
        assert_eq!(n.name.as_str(), "iqn.2000-01.com.synology:nas.target-1");
        assert!(n.lowercased);
        let n = IscsiName::parse("eui.02004567A425678D").unwrap();
        assert_eq!(n.name.to_string(), "eui.02004567a425678d");
        assert!(n.lowercased);
    }

    #[test]
    fn invalid_names() {
        let cases: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            (
                "iqn.2026-11.test:a_b",
                NameError::BadChar { ch: '_', at: 18 },
            ),
            (
                "iqn.2026-11.test:a b",
                NameError::BadChar { ch: ' ', at: 18 },
            ),
            ("iqn.2026-11.test/x", NameError::BadChar { ch: '/', at: 16 }),
            ("target1", NameError::UnknownFormat),
            ("iqn.26-11.test", NameError::BadDate),
            ("iqn.2026-13.test", NameError::BadDate),
            ("iqn.2026-00.test", NameError::BadDate),
            ("iqn.2026", NameError::BadDate),
            ("iqn.2026-11", NameError::NoNamingAuthority),
            ("iqn.2026-11:foo", NameError::NoNamingAuthority),
            ("iqn.2026-11.:foo", NameError::NoNamingAuthority),
            ("iqn.2026-11.com..x", NameError::NoNamingAuthority),
            (
                "eui.0123",
                NameError::BadHex {
                    prefix: "eui.",
                    digits: "16",
                },
            ),
            (
                "eui.0123456789abcdeg",
                NameError::BadHex {
                    prefix: "eui.",
                    digits: "16",
                },
            ),
            (
                "naa.0123456789abcdef01",
                NameError::BadHex {
                    prefix: "naa.",
                    digits: "16 or 32",
                },
            ),
        ];
        for (input, err) in cases {
            assert_eq!(&IscsiName::parse(input).unwrap_err(), err, "{input}");
        }
        let long = format!("iqn.2026-11.test:{}", "a".repeat(210));
        assert_eq!(IscsiName::parse(&long), Err(NameError::TooLong(227)));
        let max = format!("iqn.2026-11.test:{}", "a".repeat(206));
        assert!(IscsiName::parse(&max).is_ok());
    }

    #[test]
    fn file_line_parsing() {
        let file = "## DO NOT EDIT OR REMOVE THIS FILE!\n\
                    # InitiatorName=iqn.commented:out\n\
                    \n\
                    \tInitiatorName = iqn.1993-08.org.debian:01:2b3c4d  \n\
                    InitiatorName=iqn.second:ignored\n";
        assert_eq!(
            initiator_name_line(file),
            Some("iqn.1993-08.org.debian:01:2b3c4d")
        );
        assert_eq!(initiator_name_line("InitiatorAlias=foo\n"), None);
        assert_eq!(initiator_name_line(""), None);
    }

    #[test]
    fn default_name_from_file_then_hostname() {
        let no_host = || -> Result<String, DefaultNameError> { panic!("host name not needed") };
        let from_file = default_initiator_name(
            no_host,
            Some("InitiatorName=IQN.1993-08.org.debian:01:ABC\n"),
        )
        .unwrap();
        assert_eq!(from_file.name.as_str(), "iqn.1993-08.org.debian:01:abc");
        assert_eq!(from_file.source, NameSource::File);
        assert!(from_file.lowercased);

        let host = || Ok(String::from("Build_Box.Example\n"));
        let from_host = default_initiator_name(host, Some("# nothing\n")).unwrap();
        assert_eq!(
            from_host.name.as_str(),
            "iqn.2026-11.local:build-box.example"
        );
        assert_eq!(from_host.source, NameSource::Hostname);
        assert!(IscsiName::parse(from_host.name.as_str()).is_ok());

        let from_host = default_initiator_name(|| Ok("höst".into()), None).unwrap();
        assert_eq!(from_host.name.as_str(), "iqn.2026-11.local:h-st");

        assert!(matches!(
            default_initiator_name(|| Ok(" \n".into()), None),
            Err(DefaultNameError::NoHostname)
        ));
        assert!(matches!(
            default_initiator_name(no_host, Some("InitiatorName=bogus")),
            Err(DefaultNameError::InvalidInFile(NameError::UnknownFormat))
        ));
        let io = || Err(DefaultNameError::NoHostname);
        assert!(matches!(
            default_initiator_name(io, None),
            Err(DefaultNameError::NoHostname)
        ));
    }

    #[test]
    fn reading_the_files() {
        let dir = std::env::temp_dir().join(format!("sanshim-name-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (name_file, host_file) = (dir.join("initiatorname.iscsi"), dir.join("hostname"));
        std::fs::write(&host_file, "node7\n").unwrap();
        let got = read_default_initiator_name_from(&name_file, &host_file).unwrap();
        assert_eq!(got.name.as_str(), "iqn.2026-11.local:node7");
        std::fs::write(&name_file, "InitiatorName=iqn.2026-11.test:init\n").unwrap();
        let got = read_default_initiator_name_from(&name_file, &host_file).unwrap();
        assert_eq!(
            (got.name.as_str(), got.source),
            ("iqn.2026-11.test:init", NameSource::File)
        );
        std::fs::remove_file(&name_file).unwrap();
        let err = read_default_initiator_name_from(&name_file, &dir.join("missing")).unwrap_err();
        assert!(matches!(err, DefaultNameError::Io { .. }));
        assert!(err.to_string().contains("missing"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    const NAME_REGEX: &str = concat!(
        "(iqn\\.20[0-9]{2}-(0[1-9]|1[0-2])\\.[a-zA-Z0-9]{1,8}(\\.[a-z0-9-]{1,8}){0,3}",
        "(:[a-zA-Z0-9.:-]{0,20})?",
        "|eui\\.[0-9a-fA-F]{16}|naa\\.[0-9a-fA-F]{32})",
    );

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,240}") {
            let _ = IscsiName::parse(&s);
        }

        #[test]
        fn hostname_names_are_valid(h in ".{0,300}") {
            if let Some(name) = name_from_hostname(&h) {
                let n = IscsiName::parse(name.as_str()).unwrap();
                prop_assert!(!n.lowercased);
                prop_assert_eq!(n.name, name);
            }
        }

        #[test]
        fn parsed_names_are_fixed_points(s in NAME_REGEX) {
            let n = IscsiName::parse(&s).unwrap();
            let again = IscsiName::parse(n.name.as_str()).unwrap();
            prop_assert!(!again.lowercased);
            prop_assert_eq!(again.name, n.name.clone());
            prop_assert_eq!(n.lowercased, s.chars().any(|c| c.is_ascii_uppercase()));
        }
    }
}
