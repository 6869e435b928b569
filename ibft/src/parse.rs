//! Building the owned [`Ibft`] from a [`TableView`] (iBFT specification 1.03 §3.3–§3.5).
//!
//! Hard errors: anything that makes a structure or string unreadable (out of bounds, wrong id,
//! too short). Warnings: a bad checksum, field variants (signature, revision, versions,
//! over-long structures, "boot selected" without "block valid"), non-UTF-8 strings, and what
//! the Linux `iscsi_ibft` driver would reject, so the user learns the kernel's view differs.

use std::collections::HashSet;

use crate::code::{ChapType, Origin, flags};
use crate::error::IbftError;
use crate::model::decode_addr;
use crate::model::{Header, Ibft, Initiator, Lun, MacAddr, Nic, PciBdf, Secret, Target};
use crate::raw::{self, StringRef};
use crate::view::{Kind, StringError, TableView};
use crate::warning::{Code, Warning};

/// A parsed table and the warnings found on the way.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Parsed {
    /// The table.
    pub ibft: Ibft,
    /// Parse warnings (not lints).
    pub warnings: Vec<Warning>,
}

impl Ibft {
    /// Parses a table. `bytes` may extend beyond the table's length field; the rest is ignored.
    ///
    /// Never panics and never allocates in proportion to a length field.
    ///
    /// # Errors
    /// An [`IbftError`] when the table is malformed; a bad checksum is only a warning.
    pub fn parse(bytes: &[u8]) -> Result<Parsed, IbftError> {
        let view = TableView::new_checked(bytes)?;
        let mut parser = Parser {
            view,
            warnings: Vec::new(),
        };
        let ibft = parser.table()?;
        Ok(Parsed {
            ibft,
            warnings: parser.warnings,
        })
    }
}

struct Parser<'a> {
    view: TableView<'a>,
    warnings: Vec<Warning>,
}

impl Parser<'_> {
    fn table(&mut self) -> Result<Ibft, IbftError> {
        let header = self.header();
        let control = self.view.control()?;
        if control.fixed.header.index != 0 || control.fixed.header.length.get() != 18 {
            let message = format!(
                "control structure is {} bytes with index {}; Linux iscsi_ibft versions differ \
                 here (some list only two NICs and targets, some reject the table)",
                control.fixed.header.length, control.fixed.header.index
            );
            self.warnings
                .push(Warning::warn(Code::KernelIgnores, message));
        }
        let initiator = match control.fixed.initiator.get() {
            0 => None,
            offset => self.initiator(offset)?,
        };
        // A control structure may hold ~32k slots: a set keeps the duplicate check linear.
        let mut seen = HashSet::new();
        let mut repeats = 0usize;
        let (mut nics, mut targets) = (Vec::new(), Vec::new());
        for (kind, _, offset) in control.structures() {
            if !seen.insert(offset) {
                repeats += 1;
                continue;
            }
            match kind {
                Kind::Nic => nics.extend(self.nic(offset)?),
                _ => targets.extend(self.target(offset)?),
            }
        }
        if repeats > 0 {
            let message = format!("{repeats} control-structure slot(s) repeat an offset; skipped");
            self.warnings
                .push(Warning::warn(Code::DuplicateStructure, message));
        }
        let control_flags = control.fixed.header.flags;
        Ok(Ibft {
            header,
            control_flags,
            initiator,
            nics,
            targets,
        })
    }

    fn header(&mut self) -> Header {
        let raw = *self.view.header();
        if raw.signature != *b"iBFT" {
            let message = format!(
                "signature is \"{}\", not \"iBFT\" (seen from real firmware; accepted)",
                raw.signature.escape_ascii()
            );
            self.warnings
                .push(Warning::warn(Code::SignatureVariant, message));
        }
        if raw.revision != 1 {
            let message = format!(
                "table revision is {}, not 1; Linux iscsi_ibft rejects it",
                raw.revision
            );
            self.warnings.push(Warning::warn(Code::Revision, message));
        }
        let checksum_ok = self.view.checksum_ok();
        if !checksum_ok {
            let message = "table checksum is wrong (byte sum not 0); Linux iscsi_ibft rejects it";
            self.warnings
                .push(Warning::warn(Code::BadChecksum, message));
        }
        Header {
            signature: raw.signature,
            revision: Some(raw.revision),
            length: Some(raw.length.get()),
            checksum_ok: Some(checksum_ok),
            oem_id: oem_text(&raw.oem_id),
            oem_table_id: oem_text(&raw.oem_table_id),
        }
    }

    /// Reads the structure behind `offset` and warns about its header's oddities.
    fn structure<T>(&mut self, kind: Kind, offset: u16) -> Result<Option<T>, IbftError>
    where
        T: zerocopy::FromBytes + zerocopy::KnownLayout + zerocopy::Immutable + HasHeader,
    {
        let Some(structure) = self.view.structure::<T>(kind, offset)? else {
            return Ok(None);
        };
        let header = structure.header();
        let name = format!("{} {} (offset {offset})", kind.name(), header.index);
        if header.version != 1 {
            let message = format!("{name} has version {}, not 1", header.version);
            self.warnings
                .push(Warning::warn(Code::StructureVersion, message));
        }
        if usize::from(header.length.get()) != size_of::<T>() {
            let message = format!(
                "{name} is {} bytes, not {}; Linux iscsi_ibft ignores it",
                header.length,
                size_of::<T>()
            );
            self.warnings
                .push(Warning::warn(Code::KernelIgnores, message));
        }
        if header.flags & flags::BLOCK_VALID == 0 {
            let message = format!("{name} has \"boot selected\" without \"block valid\"; used");
            self.warnings
                .push(Warning::warn(Code::BootSelectedOnly, message));
        }
        Ok(Some(structure))
    }

    fn initiator(&mut self, offset: u16) -> Result<Option<Initiator>, IbftError> {
        let Some(raw) = self.structure::<raw::Initiator>(Kind::Initiator, offset)? else {
            return Ok(None);
        };
        Ok(Some(Initiator {
            index: raw.header.index,
            flags: raw.header.flags,
            isns: decode_addr(raw.isns),
            slp: decode_addr(raw.slp),
            primary_radius: decode_addr(raw.primary_radius),
            secondary_radius: decode_addr(raw.secondary_radius),
            name: self.text("initiator name", raw.name)?,
        }))
    }

    fn nic(&mut self, offset: u16) -> Result<Option<Nic>, IbftError> {
        let Some(raw) = self.structure::<raw::Nic>(Kind::Nic, offset)? else {
            return Ok(None);
        };
        let label = format!("NIC {} host name", raw.header.index);
        Ok(Some(Nic {
            index: raw.header.index,
            flags: raw.header.flags,
            ip: decode_addr(raw.ip),
            prefix: raw.prefix,
            origin: Origin(raw.origin),
            gateway: decode_addr(raw.gateway),
            primary_dns: decode_addr(raw.primary_dns),
            secondary_dns: decode_addr(raw.secondary_dns),
            dhcp: decode_addr(raw.dhcp),
            vlan: raw.vlan.get(),
            mac: MacAddr(raw.mac),
            pci_bdf: Some(PciBdf(raw.pci_bdf.get())),
            hostname: self.text(&label, raw.hostname)?,
        }))
    }

    fn target(&mut self, offset: u16) -> Result<Option<Target>, IbftError> {
        let Some(raw) = self.structure::<raw::Target>(Kind::Target, offset)? else {
            return Ok(None);
        };
        let label = |field: &str| format!("target {} {field}", raw.header.index);
        Ok(Some(Target {
            index: raw.header.index,
            flags: raw.header.flags,
            ip: decode_addr(raw.ip),
            port: raw.port.get(),
            lun: Lun(raw.lun),
            chap_type: ChapType(raw.chap_type),
            nic: raw.nic,
            name: self.text(&label("name"), raw.name)?,
            chap_user: self.text(&label("CHAP name"), raw.chap_name)?,
            chap_secret: self
                .text(&label("CHAP secret"), raw.chap_secret)?
                .map(Secret::new),
            reverse_chap_user: self.text(&label("reverse CHAP name"), raw.reverse_chap_name)?,
            reverse_chap_secret: self
                .text(&label("reverse CHAP secret"), raw.reverse_chap_secret)?
                .map(Secret::new),
        }))
    }

    /// Follows a string reference; a non-UTF-8 string is decoded lossily with a warning that
    /// names the field only (it may be a secret).
    fn text(&mut self, field: &str, string: StringRef) -> Result<Option<String>, IbftError> {
        let bytes = match self.view.string(string) {
            Ok(bytes) => bytes,
            Err(StringError::NoOffset) => {
                let message = format!("{field} has length {} but offset 0; ignored", string.length);
                self.warnings.push(Warning::warn(Code::BadString, message));
                None
            }
            Err(StringError::OutOfBounds { offset, length }) => {
                let table_len = self.view.bytes().len();
                let field = field.to_owned();
                return Err(IbftError::StringOutOfBounds {
                    field,
                    offset,
                    length,
                    table_len,
                });
            }
        };
        Ok(bytes.map(|bytes| match std::str::from_utf8(bytes) {
            Ok(text) => text.to_owned(),
            Err(_) => {
                let message = format!("{field} is not UTF-8; shown with replacement characters");
                self.warnings.push(Warning::warn(Code::NonUtf8, message));
                String::from_utf8_lossy(bytes).into_owned()
            }
        }))
    }
}

/// Structures that start with the common header.
trait HasHeader {
    fn header(&self) -> &raw::StructHeader;
}

macro_rules! has_header {
    ($($t:ty),+) => {
        $(impl HasHeader for $t {
            fn header(&self) -> &raw::StructHeader {
                &self.header
            }
        })+
    };
}

has_header!(raw::Initiator, raw::Nic, raw::Target);

/// An OEM field up to its first NUL.
fn oem_text(bytes: &[u8]) -> String {
    let bytes = bytes.split(|b| *b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
