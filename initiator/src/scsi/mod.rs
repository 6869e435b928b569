//! SCSI commands and the data they return: SAM-5 (status, LUNs, sense), SPC-5 (INQUIRY and
//! VPD pages, MODE SENSE, REPORT LUNS, REPORT TARGET PORT GROUPS and the ALUA access states,
//! sense data) and SBC-4 (READ CAPACITY, READ/WRITE, SYNCHRONIZE CACHE, UNMAP, WRITE SAME,
//! the Block Limits, Block Device Characteristics and Logical Block Provisioning VPD pages).
//!
//! ```text
//!  cdb::Cdb::read16(..) ─► 16 CDB bytes ─► SCSI Command PDU
//!  Data-In bytes ──────► inquiry / vpd / capacity / lun parsers ─► plain Rust values
//!  SCSI Response data ─► sense::Sense::from_response_data ─► Sense ─► ErrorKind, retry?
//! ```
//!
//! Everything here is pure: builders fill fixed-size arrays, parsers read the bytes a target
//! returned. Wire layouts are zerocopy structs with network (big-endian) byte order.
//!
//! # Parser contract
//! Every parser takes the bytes the target actually returned (the Data-In length minus any
//! residual), never panics on any input and never reads past that slice. Input too short for
//! the fixed part, or a page cut short by the allocation length, is a [`ParseError`] that says
//! which and how many bytes are needed; fields a target leaves at zero are reported as it
//! stated them.
#![allow(clippy::module_name_repetitions)]

use std::fmt;

mod alua;
mod asc;
mod block_vpd;
mod capacity;
mod cdb;
mod codes;
mod devid;
mod inquiry;
mod lun;
mod retry;
mod sense;

pub use alua::{AccessState, SupportedStates, TargetPortGroup, TargetPortGroups};
pub use asc::AscAscq;
pub use block_vpd::ProvisioningType;
pub use block_vpd::{BlockDeviceCharacteristics, BlockLimits, LogicalBlockProvisioning};
pub use capacity::ReadCapacity16;
pub use capacity::{BlockDescriptor, CachingPage, ModePage, ModeSense10, ReadCapacity10};
pub use cdb::{BuildError, Cdb, MAX_UNMAP_RANGES, UnmapRange, unmap_parameter_list};
pub use codes::{PeripheralDeviceType, PeripheralQualifier, ScsiOp, SenseKey};
pub use devid::{Association, CodeSet, Designator, DesignatorType, DeviceIdentification};
pub use inquiry::{StandardInquiry, SupportedVpdPages, Tpgs, UnitSerialNumber, VpdPage};
pub use lun::ReportLuns;
pub use retry::{RetryCount, RetryPolicy, Verdict, is_reset};
pub use sense::Sense;

/// Why bytes returned by a target could not be decoded.
///
/// The target is at fault for every variant except [`ParseError::Truncated`], which usually
/// means the allocation length asked for was too small.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Fewer bytes than the fixed part of the structure.
    #[error("{what}: {have} bytes returned, at least {need} needed")]
    TooShort {
        /// The structure being parsed.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes returned.
        have: usize,
    },
    /// The structure says it is longer than what was returned.
    #[error(
        "{what}: the target has {need} bytes but {have} were returned; \
         retry with an allocation length of at least {need}"
    )]
    Truncated {
        /// The structure being parsed.
        what: &'static str,
        /// Length the structure declares.
        need: usize,
        /// Bytes returned.
        have: usize,
    },
    /// A VPD page other than the one asked for came back.
    #[error("VPD page {found:#04x} returned where page {expected:#04x} was asked for")]
    WrongPage {
        /// The page code asked for.
        expected: u8,
        /// The page code in the response.
        found: u8,
    },
    /// A field holds a value the standard does not allow.
    #[error("{what}: {reason}")]
    Invalid {
        /// The structure or field.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Sense data with a response code that is neither fixed (0x70/0x71) nor descriptor
    /// (0x72/0x73) format.
    #[error("sense data: unknown response code {0:#04x}")]
    UnknownSenseFormat(u8),
}

/// Runs every parser in this module over `buf`, discarding the results: the entry point for
/// a fuzz target (STYLE rule 12) and for the property test that no input panics a parser.
#[cfg(any(test, fuzzing))]
pub fn parse_all(buf: &[u8]) {
    let _ = StandardInquiry::parse(buf);
    let _ = SupportedVpdPages::parse(buf);
    let _ = UnitSerialNumber::parse(buf);
    let _ = DeviceIdentification::parse(buf).map(|p| p.lu_identity().map(Designator::render));
    let _ = BlockLimits::parse(buf).map(|b| b.limits());
    let _ = BlockDeviceCharacteristics::parse(buf);
    let _ = LogicalBlockProvisioning::parse(buf);
    let _ = ReadCapacity10::parse(buf);
    let _ = ReadCapacity16::parse(buf).map(|r| r.physical_block_length());
    let _ = ModeSense10::parse(buf).map(|m| m.caching());
    let _ = ReportLuns::parse(buf).map(|r| r.luns.iter().filter_map(|l| l.number()).count());
    let _ = TargetPortGroups::parse(buf).map(|t| t.group_of_port(1).map(|g| g.state.carries_io()));
    let _ = Sense::parse(buf).map(|s| (s.to_string(), s.to_block_error(), s.is_retryable()));
    let _ = Sense::from_response_data(buf);
}

/// Returns `buf` if it holds at least `need` bytes.
fn require<'a>(what: &'static str, buf: &'a [u8], need: usize) -> Result<&'a [u8], ParseError> {
    if buf.len() < need {
        Err(ParseError::TooShort {
            what,
            need,
            have: buf.len(),
        })
    } else {
        Ok(buf)
    }
}

/// Renders bytes as text the way sg_inq does: printable ASCII kept, anything else escaped as
/// `\xNN`, leading and trailing spaces and NULs dropped.
fn ascii_text(bytes: &[u8]) -> String {
    let trimmed = trim_ascii(bytes);
    let mut out = String::with_capacity(trimmed.len());
    for &b in trimmed {
        if b.is_ascii_graphic() || b == b' ' {
            out.push(char::from(b));
        } else {
            use fmt::Write as _;
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let is_pad = |b: &u8| *b == b' ' || *b == 0;
    let start = bytes.iter().position(|b| !is_pad(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_pad(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests_util {
    /// Decodes a hex string (test vectors are written as annotated hex).
    pub(crate) fn bytes(hex: &str) -> Vec<u8> {
        assert!(hex.len() % 2 == 0, "odd hex length");
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }
}
