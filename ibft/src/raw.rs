//! Wire layout of the iBFT (iBFT specification 1.03 §3): the ACPI table header, the common
//! structure header, and the control, initiator, NIC and target structures.
//!
//! Everything is little-endian and unaligned; offsets inside structures are `u16` counted from
//! the first byte of the table. These are the only places where field offsets are spelled out:
//! the parser reads these structs with `read_from_prefix`, the writer emits them with
//! `as_bytes`.

use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The ACPI description header (36 bytes) plus the 12 reserved bytes before the control
/// structure (§3.3).
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
pub struct TableHeader {
    /// `iBFT` (also `IBFT`, `BIFT` in the field).
    pub signature: [u8; 4],
    /// Length of the whole table in bytes, header included.
    pub length: U32,
    /// Table revision, 1.
    pub revision: u8,
    /// Makes the byte sum of the whole table 0 (mod 256).
    pub checksum: u8,
    /// OEM id, NUL padded.
    pub oem_id: [u8; 6],
    /// OEM table id, NUL padded.
    pub oem_table_id: [u8; 8],
    /// OEM revision.
    pub oem_revision: U32,
    /// ASL compiler vendor id.
    pub creator_id: U32,
    /// ASL compiler revision.
    pub creator_revision: U32,
    /// Reserved, zero.
    pub reserved: [u8; 12],
}

/// The header every structure starts with (§3.2).
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
pub struct StructHeader {
    /// A [`StructureId`](crate::StructureId).
    pub id: u8,
    /// Structure version, 1.
    pub version: u8,
    /// Length of the structure, header included.
    pub length: U16,
    /// Number of this NIC or target.
    pub index: u8,
    /// [`flags`](crate::flags) bits.
    pub flags: u8,
}

/// A NIC and target offset pair of the control structure.
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
pub struct OffsetPair {
    /// Offset of the NIC structure, 0 when absent.
    pub nic: U16,
    /// Offset of the target structure, 0 when absent.
    pub target: U16,
}

/// The fixed part of the control structure (§3.4). A longer control structure carries
/// further [`OffsetPair`]s after these two.
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
pub struct Control {
    /// Common header; id 1, index 0.
    pub header: StructHeader,
    /// Offset of the extensions structure, 0 when absent.
    pub extensions: U16,
    /// Offset of the initiator structure, 0 when absent.
    pub initiator: U16,
    /// NIC 0/target 0 and NIC 1/target 1.
    pub pairs: [OffsetPair; 2],
}

/// An IPv6 address; IPv4 is mapped as `::ffff:a.b.c.d`.
pub type Addr = [u8; 16];

/// A string reference: length (without NUL) and offset from the start of the table.
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
pub struct StringRef {
    /// Length in bytes; 0 means absent.
    pub length: U16,
    /// Offset from the start of the table.
    pub offset: U16,
}

/// The initiator structure (§3.5.1).
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
pub struct Initiator {
    /// Common header; id 2.
    pub header: StructHeader,
    /// iSNS server.
    pub isns: Addr,
    /// SLP server.
    pub slp: Addr,
    /// Primary RADIUS server.
    pub primary_radius: Addr,
    /// Secondary RADIUS server.
    pub secondary_radius: Addr,
    /// Initiator name (IQN).
    pub name: StringRef,
}

/// The NIC structure (§3.5.2).
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
pub struct Nic {
    /// Common header; id 3.
    pub header: StructHeader,
    /// Our address.
    pub ip: Addr,
    /// Subnet prefix length in bits.
    pub prefix: u8,
    /// An [`Origin`](crate::Origin).
    pub origin: u8,
    /// Default gateway.
    pub gateway: Addr,
    /// Primary DNS server.
    pub primary_dns: Addr,
    /// Secondary DNS server.
    pub secondary_dns: Addr,
    /// DHCP server.
    pub dhcp: Addr,
    /// VLAN tag, 0 for none.
    pub vlan: U16,
    /// MAC address.
    pub mac: [u8; 6],
    /// PCI bus (high byte), device (bits 7..3) and function (bits 2..0).
    pub pci_bdf: U16,
    /// Host name.
    pub hostname: StringRef,
}

/// The target structure (§3.5.3).
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
pub struct Target {
    /// Common header; id 4.
    pub header: StructHeader,
    /// Target portal address.
    pub ip: Addr,
    /// Target portal TCP port.
    pub port: U16,
    /// Boot LUN, 8 bytes in SAM format.
    pub lun: [u8; 8],
    /// A [`ChapType`](crate::ChapType).
    pub chap_type: u8,
    /// Index of the NIC used to reach the target.
    pub nic: u8,
    /// Target name (IQN).
    pub name: StringRef,
    /// CHAP name.
    pub chap_name: StringRef,
    /// CHAP secret.
    pub chap_secret: StringRef,
    /// Reverse (mutual) CHAP name.
    pub reverse_chap_name: StringRef,
    /// Reverse (mutual) CHAP secret.
    pub reverse_chap_secret: StringRef,
}

/// Offset of the control structure from the start of the table.
pub const CONTROL_OFFSET: usize = size_of::<TableHeader>();
/// Size of the control structure with its two standard offset pairs.
pub const CONTROL_LEN: usize = size_of::<Control>();
/// Offset, inside the control structure, of the first NIC offset.
pub const CONTROL_PAIRS_OFFSET: usize = size_of::<StructHeader>() + 4;
/// The smallest table that can hold a control structure.
pub const MIN_TABLE_LEN: usize = CONTROL_OFFSET + CONTROL_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_specification() {
        assert_eq!(size_of::<TableHeader>(), 48);
        assert_eq!(size_of::<StructHeader>(), 6);
        assert_eq!(size_of::<Control>(), 18);
        assert_eq!(size_of::<Initiator>(), 74);
        assert_eq!(size_of::<Nic>(), 102);
        assert_eq!(size_of::<Target>(), 54);
        assert_eq!(CONTROL_PAIRS_OFFSET, 10);
        assert_eq!(MIN_TABLE_LEN, 66);
    }
}
