//! Where a table comes from, tried in this order by [`read_auto`]:
//!
//! 1. the ACPI table the kernel exports, `/sys/firmware/acpi/tables/iBFT` (UEFI, and BIOS
//!    firmware that registers it; `IBFT` and `BIFT` are tried too);
//! 2. a scan of physical memory 0x80000–0xFFFFF in 16-byte steps through `/dev/mem`, skipping
//!    the VGA hole 0xA0000–0xBFFFF (legacy BIOS: iPXE and NIC option ROMs put it there);
//! 3. the kernel's parsed view under `/sys/firmware/ibft` (`iscsi_ibft.ko`);
//!
//! or a file, on request. Each source says why it found nothing: absent, permission, a bad
//! checksum, a malformed table. Every path is a parameter ([`Roots`]) so tests can point the
//! sources at temporary trees and files.

mod mem;
mod sysfs;

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::IbftError;
use crate::model::Ibft;
use crate::parse::Parsed;

pub use mem::{MEM_WINDOWS, scan_mem};
pub use sysfs::{decode_sysfs_lun, read_sysfs};

/// The largest table file read; offsets are 16-bit, so real tables are far smaller.
pub const MAX_TABLE_FILE: u64 = 1 << 20;

/// Which kind of source a table came from.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SourceKind {
    /// The ACPI table in sysfs.
    Acpi,
    /// The low-memory scan.
    Mem,
    /// The kernel's parsed view.
    Sysfs,
    /// A file named by the user.
    File,
}

impl SourceKind {
    /// `acpi`, `mem`, `sysfs` or `file`, as in the JSON `source` field.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Acpi => "acpi",
            SourceKind::Mem => "mem",
            SourceKind::Sysfs => "sysfs",
            SourceKind::File => "file",
        }
    }
}

/// The places the automatic sources read.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Roots {
    /// The directory of ACPI tables.
    pub acpi_tables: PathBuf,
    /// Physical memory (`/dev/mem`), or a file whose offsets stand for physical addresses.
    pub mem: PathBuf,
    /// The kernel's iBFT directory.
    pub sysfs: PathBuf,
}

impl Default for Roots {
    fn default() -> Roots {
        Roots {
            acpi_tables: PathBuf::from("/sys/firmware/acpi/tables"),
            mem: PathBuf::from("/dev/mem"),
            sysfs: PathBuf::from("/sys/firmware/ibft"),
        }
    }
}

/// A table found by a source.
#[derive(Clone, Debug)]
pub struct Found {
    /// The kind of source.
    pub kind: SourceKind,
    /// Where exactly, e.g. `/dev/mem at 0x9f000`.
    pub location: String,
    /// The table and its parse warnings.
    pub parsed: Parsed,
}

/// Why a source produced no table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The file or directory does not exist.
    #[error("{}: absent", .path.display())]
    Absent {
        /// What was looked for.
        path: PathBuf,
    },
    /// Reading needs privileges we lack.
    #[error("{}: permission denied (needs root / CAP_SYS_ADMIN)", .path.display())]
    Permission {
        /// What could not be read.
        path: PathBuf,
    },
    /// Another I/O error.
    #[error("{}: {source}", .path.display())]
    Io {
        /// What could not be read.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A file larger than any table.
    #[error("{}: larger than {MAX_TABLE_FILE} bytes, not a table", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The table is malformed.
    #[error("{}: {error}", .path.display())]
    Invalid {
        /// Where the table is.
        path: PathBuf,
        /// What is wrong.
        error: IbftError,
    },
    /// The memory scan found no signature.
    #[error("{}: no iBFT signature between 0x80000 and 0xFFFFF", .path.display())]
    NoSignature {
        /// The memory device.
        path: PathBuf,
    },
    /// The memory scan found signatures, but no valid table behind them.
    #[error("{}: signature found but rejected: {}", .path.display(), .reasons.join("; "))]
    Rejected {
        /// The memory device.
        path: PathBuf,
        /// Per candidate address, why (e.g. "0x9f000: bad checksum").
        reasons: Vec<String>,
    },
    /// A sysfs attribute holds something we cannot read.
    #[error("{}: {what}", .path.display())]
    Malformed {
        /// The attribute.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// Every automatic source failed; each says why.
#[derive(Debug)]
pub struct NotFound {
    /// The sources tried, in order, with their failure.
    pub attempts: Vec<(SourceKind, SourceError)>,
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no iBFT found")?;
        for (kind, error) in &self.attempts {
            write!(f, "; {}: {error}", kind.as_str())?;
        }
        Ok(())
    }
}

impl std::error::Error for NotFound {}

/// Tries the ACPI table, the memory scan and the kernel's sysfs view, in that order.
///
/// # Errors
/// [`NotFound`] with each source's reason when none yields a table.
pub fn read_auto(roots: &Roots) -> Result<Found, NotFound> {
    let mut attempts = Vec::new();
    for kind in [SourceKind::Acpi, SourceKind::Mem, SourceKind::Sysfs] {
        let result = match kind {
            SourceKind::Acpi => read_acpi(&roots.acpi_tables),
            SourceKind::Mem => scan_mem(&roots.mem),
            _ => read_sysfs(&roots.sysfs),
        };
        match result {
            Ok(found) => return Ok(found),
            Err(error) => attempts.push((kind, error)),
        }
    }
    Err(NotFound { attempts })
}

/// Reads the ACPI table from `dir` (`iBFT` or `iBFT1`, else the same for `IBFT`, `BIFT`).
///
/// # Errors
/// [`SourceError::Absent`] when none of the files exists; else as [`read_file`].
pub fn read_acpi(dir: &Path) -> Result<Found, SourceError> {
    // Linux names the tables of one signature `SIG1`, `SIG2`, ... when there are several;
    // firmware hands the OS one iBFT, the first.
    let names = ["iBFT", "iBFT1", "IBFT", "IBFT1", "BIFT", "BIFT1"];
    for name in names {
        match read_table(&dir.join(name), SourceKind::Acpi) {
            Err(SourceError::Absent { .. }) => continue,
            other => return other,
        }
    }
    Err(SourceError::Absent {
        path: dir.join("iBFT"),
    })
}

/// Reads a table from a file.
///
/// # Errors
/// [`SourceError::Absent`], [`SourceError::Permission`], [`SourceError::Io`],
/// [`SourceError::TooLarge`], [`SourceError::Invalid`].
pub fn read_file(path: &Path) -> Result<Found, SourceError> {
    read_table(path, SourceKind::File)
}

fn read_table(path: &Path, kind: SourceKind) -> Result<Found, SourceError> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_TABLE_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    if bytes.len() as u64 > MAX_TABLE_FILE {
        return Err(SourceError::TooLarge {
            path: path.to_owned(),
        });
    }
    let parsed = Ibft::parse(&bytes).map_err(|error| SourceError::Invalid {
        path: path.to_owned(),
        error,
    })?;
    Ok(Found {
        kind,
        location: path.display().to_string(),
        parsed,
    })
}

/// Classifies an I/O error as absent, permission or other.
fn io_error(path: &Path, error: io::Error) -> SourceError {
    let path = path.to_owned();
    match error.kind() {
        io::ErrorKind::NotFound => SourceError::Absent { path },
        io::ErrorKind::PermissionDenied => SourceError::Permission { path },
        _ => SourceError::Io {
            path,
            source: error,
        },
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
