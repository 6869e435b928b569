//! Findings about a table that do not stop it from being used: parse warnings (bad checksum,
//! field variants of the format) and lints (the field wisdom of [`crate::lint`]).

use std::fmt;

/// How much a finding matters.
#[derive(Clone, Copy, Debug, Eq, Ord, PartialEq, PartialOrd)]
pub enum Severity {
    /// Worth knowing, nothing wrong (e.g. multipath).
    Info,
    /// Likely to break or surprise something.
    Warning,
}

/// What a finding is about; [`Code::as_str`] is the stable name used in JSON output.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub enum Code {
    /// The byte sum of the table is not 0.
    BadChecksum,
    /// The signature is `IBFT` or `BIFT` rather than `iBFT`.
    SignatureVariant,
    /// The table revision is not 1.
    Revision,
    /// A structure version is not 1.
    StructureVersion,
    /// The Linux `iscsi_ibft` driver would ignore this structure or the whole table.
    KernelIgnores,
    /// A structure has "boot selected" but not "block valid".
    BootSelectedOnly,
    /// A string is not UTF-8; shown with replacement characters.
    NonUtf8,
    /// A string has a length but no offset.
    BadString,
    /// Two control-structure slots point at the same structure.
    DuplicateStructure,
    /// An IQN contains upper-case characters.
    UppercaseIqn,
    /// A target lies outside its NIC's subnet, so iSCSI traffic is routed.
    TargetRouted,
    /// A target has no IP address (the firmware was given a host name).
    TargetByHostname,
    /// A target is reached without CHAP.
    NoChap,
    /// The CHAP type asks for names or secrets the target structure lacks.
    ChapIncomplete,
    /// A target's NIC association names a NIC that is not in the table.
    NicMissing,
    /// A NIC's address came from DHCP but no DHCP server is recorded.
    DhcpNoServer,
    /// The same target name and LUN appear on several portals.
    Multipath,
    /// The kernel's sysfs `lun` attribute could not be decoded without guessing.
    SysfsLunAmbiguous,
}

impl Code {
    /// The stable kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadChecksum => "bad-checksum",
            Code::SignatureVariant => "signature-variant",
            Code::Revision => "revision",
            Code::StructureVersion => "structure-version",
            Code::KernelIgnores => "kernel-ignores",
            Code::BootSelectedOnly => "boot-selected-only",
            Code::NonUtf8 => "non-utf8",
            Code::BadString => "bad-string",
            Code::DuplicateStructure => "duplicate-structure",
            Code::UppercaseIqn => "uppercase-iqn",
            Code::TargetRouted => "target-routed",
            Code::TargetByHostname => "target-by-hostname",
            Code::NoChap => "no-chap",
            Code::ChapIncomplete => "chap-incomplete",
            Code::NicMissing => "nic-missing",
            Code::DhcpNoServer => "dhcp-no-server",
            Code::Multipath => "multipath",
            Code::SysfsLunAmbiguous => "sysfs-lun-ambiguous",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding. Messages never contain secrets.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Warning {
    /// How much it matters.
    pub severity: Severity,
    /// What it is about.
    pub code: Code,
    /// A sentence for humans.
    pub message: String,
}

impl Warning {
    /// A finding of severity [`Severity::Warning`].
    pub fn warn(code: Code, message: impl Into<String>) -> Warning {
        Warning {
            severity: Severity::Warning,
            code,
            message: message.into(),
        }
    }

    /// A finding of severity [`Severity::Info`].
    pub fn info(code: Code, message: impl Into<String>) -> Warning {
        Warning {
            severity: Severity::Info,
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Info => "info",
            Severity::Warning => "warning",
        };
        write!(f, "{level}: {} [{}]", self.message, self.code)
    }
}
