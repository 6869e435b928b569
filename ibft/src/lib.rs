//! iSCSI Boot Firmware Table (iBFT) reader.
//!
//! Parses the table that BIOS/UEFI firmware of a SAN-booted machine leaves for the OS (iBFT
//! specification 1.03; the Linux `iscsi_ibft` driver and iPXE's writer as references): the
//! control structure, the initiator, NIC and target structures, with every offset
//! bounds-checked. Sources: the ACPI table, a low-memory scan, the kernel's sysfs view or a
//! file. No I/O beyond reading those sources.
//!
//! ```text
//!  source::read ──► bytes ──► TableView::new_checked ──► Ibft::parse ──► Parsed { Ibft, warnings }
//!  (acpi | mem | file)         (header, length)           (offsets, strings)        │
//!  source::read_sysfs ─────────────────────────────────────────────────────────────►│
//!                                                       lint::check ◄───────────────┤
//!                                          render::{text, env, url} ◄───────────────┘
//!  writer::emit(Ibft, Layout) ──► bytes   (tests, proptest, fuzz round trip)
//! ```
//!
//! Parsing never panics, never loops on a length field and never allocates in proportion to
//! one; a malformed table is an [`IbftError`], a bad checksum only a [`Warning`].
#![forbid(unsafe_code)]

pub mod code;
mod error;
pub mod lint;
mod model;
mod parse;
#[cfg(test)]
mod proptests;
pub mod raw;
pub mod render;
pub mod source;
#[cfg(test)]
mod testdata;
pub mod view;
mod warning;
pub mod writer;

#[cfg(any(fuzzing, test))]
pub mod fuzzing;

pub use code::{ChapType, Origin, StructureId, flags};
pub use error::IbftError;
pub use model::{Header, Ibft, Initiator, Lun, MacAddr, Nic, PciBdf, Secret, Target};
pub use model::{decode_addr, encode_addr, in_subnet};
pub use parse::Parsed;
pub use warning::{Code, Severity, Warning};
