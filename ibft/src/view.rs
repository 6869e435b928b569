//! The validated view over table bytes (iBFT specification 1.03 §3.3–§3.4).
//!
//! [`TableView::new_checked`] checks the header once: enough bytes, a known signature, a length
//! field that covers the control structure and the bytes given. Every later access — the
//! control structure, a structure behind an offset, a string behind a (length, offset) pair —
//! is bounds-checked against that length and returns an error, never panics. The owned
//! [`Ibft`](crate::Ibft) is built from a view in `parse`.

use zerocopy::{FromBytes, Immutable, KnownLayout};

use crate::code::{StructureId, flags};
use crate::error::IbftError;
use crate::raw::{self, CONTROL_OFFSET, CONTROL_PAIRS_OFFSET, MIN_TABLE_LEN, StringRef};

/// Signatures accepted: the specification's and two seen from real firmware.
pub const SIGNATURES: [[u8; 4]; 3] = [*b"iBFT", *b"IBFT", *b"BIFT"];

/// A table whose header has been checked; borrows exactly `length` bytes.
#[derive(Clone, Copy, Debug)]
pub struct TableView<'a> {
    table: &'a [u8],
    header: raw::TableHeader,
}

/// The kind of structure a control-structure slot refers to.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Kind {
    /// The initiator slot.
    Initiator,
    /// A NIC slot.
    Nic,
    /// A target slot.
    Target,
}

impl Kind {
    /// The structure id a structure in this slot must carry.
    pub fn id(self) -> StructureId {
        match self {
            Kind::Initiator => StructureId::INITIATOR,
            Kind::Nic => StructureId::NIC,
            Kind::Target => StructureId::TARGET,
        }
    }

    /// A lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Initiator => "initiator",
            Kind::Nic => "NIC",
            Kind::Target => "target",
        }
    }
}

/// The control structure: its header and the offsets it holds.
#[derive(Clone, Debug)]
pub struct ControlView {
    /// The fixed part.
    pub fixed: raw::Control,
    /// The NIC/target offsets in order: NIC 0, target 0, NIC 1, target 1, …
    pub slots: Vec<u16>,
}

impl ControlView {
    /// The slots with their kind and pair number; zero offsets (absent) are skipped.
    pub fn structures(&self) -> impl Iterator<Item = (Kind, usize, u16)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, off)| **off != 0)
            .map(|(i, off)| {
                let kind = if i % 2 == 0 { Kind::Nic } else { Kind::Target };
                (kind, i / 2, *off)
            })
    }
}

impl<'a> TableView<'a> {
    /// Checks the header of `bytes` and borrows the `length` bytes it declares; bytes beyond
    /// are ignored (a memory window holds more than the table).
    ///
    /// # Errors
    /// [`IbftError::Truncated`], [`IbftError::BadSignature`], [`IbftError::LengthTooSmall`].
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, IbftError> {
        let truncated = |needed| IbftError::Truncated {
            needed,
            available: bytes.len(),
        };
        let (header, _) = raw::TableHeader::read_from_prefix(bytes)
            .map_err(|_| truncated(size_of::<raw::TableHeader>()))?;
        if !SIGNATURES.contains(&header.signature) {
            return Err(IbftError::BadSignature {
                found: header.signature,
            });
        }
        let length = header.length.get();
        let len = usize::try_from(length).unwrap_or(usize::MAX);
        if len < MIN_TABLE_LEN {
            return Err(IbftError::LengthTooSmall { length });
        }
        let table = bytes.get(..len).ok_or_else(|| truncated(len))?;
        Ok(TableView { table, header })
    }

    /// The header.
    pub fn header(&self) -> &raw::TableHeader {
        &self.header
    }

    /// The table bytes, exactly `length` of them.
    pub fn bytes(&self) -> &'a [u8] {
        self.table
    }

    /// Whether the byte sum of the table is 0.
    pub fn checksum_ok(&self) -> bool {
        self.table.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)) == 0
    }

    /// The control structure and its offsets.
    ///
    /// # Errors
    /// [`IbftError::BadControl`] when its id is not 1, its length is below 18 or it extends
    /// past the table.
    pub fn control(&self) -> Result<ControlView, IbftError> {
        let bad = |reason| IbftError::BadControl { reason };
        let at = self.table.get(CONTROL_OFFSET..).unwrap_or_default();
        let (fixed, _) =
            raw::Control::read_from_prefix(at).map_err(|_| bad("truncated by the table end"))?;
        if StructureId(fixed.header.id) != StructureId::CONTROL {
            return Err(bad("structure id is not 1"));
        }
        let length = usize::from(fixed.header.length.get());
        if length < raw::CONTROL_LEN {
            return Err(bad("length is below 18 bytes"));
        }
        let body = at
            .get(..length)
            .ok_or(bad("extends past the end of the table"))?;
        let offsets = body.get(CONTROL_PAIRS_OFFSET..).unwrap_or_default();
        let slots = offsets
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        Ok(ControlView { fixed, slots })
    }

    /// The structure of `kind` at `offset`, or `None` when neither "block valid" nor "boot
    /// selected" is set (such structures are ignored unread).
    ///
    /// # Errors
    /// [`IbftError::StructureOutOfBounds`], [`IbftError::WrongStructureId`],
    /// [`IbftError::StructureTooShort`].
    pub fn structure<T>(&self, kind: Kind, offset: u16) -> Result<Option<T>, IbftError>
    where
        T: FromBytes + KnownLayout + Immutable,
    {
        let table_len = self.table.len();
        let out_of_bounds = IbftError::StructureOutOfBounds {
            kind: kind.name(),
            offset,
            table_len,
        };
        let at = self
            .table
            .get(usize::from(offset)..)
            .ok_or(out_of_bounds.clone())?;
        let (header, _) =
            raw::StructHeader::read_from_prefix(at).map_err(|_| out_of_bounds.clone())?;
        if header.flags & flags::IN_USE == 0 {
            return Ok(None);
        }
        if StructureId(header.id) != kind.id() {
            return Err(IbftError::WrongStructureId {
                kind: kind.name(),
                offset,
                found: header.id,
            });
        }
        let length = header.length.get();
        if usize::from(length) < size_of::<T>() {
            let needed = size_of::<T>();
            return Err(IbftError::StructureTooShort {
                kind: kind.name(),
                offset,
                length,
                needed,
            });
        }
        let body = at.get(..usize::from(length)).ok_or(out_of_bounds.clone())?;
        let (structure, _) = T::read_from_prefix(body).map_err(|_| out_of_bounds)?;
        Ok(Some(structure))
    }

    /// The bytes of a string up to its first NUL; `None` when its length is 0 or it is empty
    /// before the NUL.
    ///
    /// # Errors
    /// [`StringError::OutOfBounds`] when it extends past the table, [`StringError::NoOffset`]
    /// when it has a length but offset 0.
    pub fn string(&self, string: StringRef) -> Result<Option<&'a [u8]>, StringError> {
        let (length, offset) = (string.length.get(), string.offset.get());
        if length == 0 {
            return Ok(None);
        }
        if offset == 0 {
            return Err(StringError::NoOffset);
        }
        let start = usize::from(offset);
        let bytes = self
            .table
            .get(start..start + usize::from(length))
            .ok_or(StringError::OutOfBounds { offset, length })?;
        let bytes = bytes.split(|b| *b == 0).next().unwrap_or_default();
        Ok((!bytes.is_empty()).then_some(bytes))
    }
}

/// Why a string reference could not be followed.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum StringError {
    /// It extends past the table: the table is malformed.
    OutOfBounds {
        /// Its offset.
        offset: u16,
        /// Its length.
        length: u16,
    },
    /// It has a length but offset 0: treated as absent, with a warning.
    NoOffset,
}
