//! The error of [`Ibft::parse`](crate::Ibft::parse): the table is malformed and cannot be used.
//!
//! Messages name offsets and fields, never string contents (a string may be a CHAP secret).

use crate::raw::MIN_TABLE_LEN;

/// Why a table could not be parsed.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum IbftError {
    /// Fewer bytes than the header or the declared length need.
    #[error("table truncated: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes there.
        available: usize,
    },
    /// The signature is none of `iBFT`, `IBFT`, `BIFT`.
    #[error("not an iBFT: signature is \"{}\"", .found.escape_ascii())]
    BadSignature {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The length field cannot even cover the control structure.
    #[error("table length {length} is below the minimum of {MIN_TABLE_LEN} bytes")]
    LengthTooSmall {
        /// The length field.
        length: u32,
    },
    /// The control structure at offset 48 is malformed.
    #[error("control structure: {reason}")]
    BadControl {
        /// What is wrong.
        reason: &'static str,
    },
    /// A structure reached through the control structure lies (partly) outside the table.
    #[error(
        "{kind} structure at offset {offset} extends past the end of the {table_len}-byte table"
    )]
    StructureOutOfBounds {
        /// Initiator, NIC or target.
        kind: &'static str,
        /// Its offset.
        offset: u16,
        /// Length of the table.
        table_len: usize,
    },
    /// A slot of the control structure points at a structure of another kind.
    #[error("{kind} slot points at offset {offset}, which holds structure id {found}")]
    WrongStructureId {
        /// The kind the slot expects.
        kind: &'static str,
        /// Its offset.
        offset: u16,
        /// The id found there.
        found: u8,
    },
    /// A structure's length field is below the size of its fields.
    #[error(
        "{kind} structure at offset {offset} claims {length} bytes, \
         fewer than its {needed} fields need"
    )]
    StructureTooShort {
        /// Initiator, NIC or target.
        kind: &'static str,
        /// Its offset.
        offset: u16,
        /// Its length field.
        length: u16,
        /// The size of the structure's fields.
        needed: usize,
    },
    /// A string reference lies (partly) outside the table.
    #[error(
        "{field} (offset {offset}, length {length}) extends past the end of the \
         {table_len}-byte table"
    )]
    StringOutOfBounds {
        /// Which string, e.g. "target 0 name".
        field: String,
        /// Its offset.
        offset: u16,
        /// Its length.
        length: u16,
        /// Length of the table.
        table_len: usize,
    },
}
