//! Command descriptor blocks (SPC-5 §4.2; the commands themselves in SPC-5 §6 and SBC-4 §5).
//!
//! Each builder fills a zerocopy struct laid out as the standard's table and returns a [`Cdb`]:
//! up to 16 bytes plus their length, ready for the CDB field of an iSCSI SCSI Command PDU
//! (RFC 7143 §11.3.5), which always carries 16 bytes with the rest zero.

use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::ScsiOp;

/// A built CDB: its bytes and length (6, 10, 12 or 16).
#[derive(Clone, Copy, Eq, PartialEq)]
pub struct Cdb {
    bytes: [u8; 16],
    len: u8,
}

impl Cdb {
    /// TEST UNIT READY (SPC-5 §6.47).
    pub fn test_unit_ready() -> Cdb {
        Cdb::from_struct(&Cdb6::op(ScsiOp::TEST_UNIT_READY))
    }

    /// Standard INQUIRY data, `allocation_length` bytes at most (SPC-5 §6.7).
    pub fn inquiry(allocation_length: u16) -> Cdb {
        Cdb::from_struct(&InquiryCdb::new(false, 0, allocation_length))
    }

    /// INQUIRY with EVPD set: the vital product data page `page` (SPC-5 §6.7, §7.7).
    pub fn inquiry_vpd(page: u8, allocation_length: u16) -> Cdb {
        Cdb::from_struct(&InquiryCdb::new(true, page, allocation_length))
    }

    /// REPORT LUNS with SELECT REPORT 0 (SPC-5 §6.33).
    pub fn report_luns(allocation_length: u32) -> Cdb {
        let mut cdb = ReportLunsCdb::new_zeroed();
        cdb.op = ScsiOp::REPORT_LUNS.0;
        cdb.allocation_length.set(allocation_length);
        Cdb::from_struct(&cdb)
    }

    /// REPORT TARGET PORT GROUPS: MAINTENANCE IN with service action 0x0a, asking for the
    /// length-only header (PARAMETER DATA FORMAT 000b; SPC-5 §6.37). Every target counts
    /// RETURN DATA LENGTH the same way for this format; see [`super::TargetPortGroups`] for
    /// why the extended one is not the default.
    pub fn report_target_port_groups(allocation_length: u32) -> Cdb {
        Cdb::from_struct(&MaintenanceInCdb::report_target_port_groups(
            RTPG_LENGTH_ONLY,
            allocation_length,
        ))
    }

    /// REPORT TARGET PORT GROUPS asking for the extended header (PARAMETER DATA FORMAT 001b),
    /// which adds the IMPLICIT TRANSITION TIME. A target may answer with the length-only
    /// header anyway; [`super::TargetPortGroups::parse`] reads both.
    pub fn report_target_port_groups_extended(allocation_length: u32) -> Cdb {
        Cdb::from_struct(&MaintenanceInCdb::report_target_port_groups(
            RTPG_EXTENDED,
            allocation_length,
        ))
    }

    /// READ CAPACITY(10) (SBC-4 §5.19).
    pub fn read_capacity10() -> Cdb {
        Cdb::from_struct(&Cdb10::op(ScsiOp::READ_CAPACITY_10))
    }

    /// READ CAPACITY(16): SERVICE ACTION IN(16) with service action 0x10 (SBC-4 §5.20).
    pub fn read_capacity16(allocation_length: u32) -> Cdb {
        let mut cdb = Cdb16::op(ScsiOp::SERVICE_ACTION_IN_16);
        cdb.flags = SA_READ_CAPACITY_16;
        cdb.length.set(allocation_length);
        Cdb::from_struct(&cdb)
    }

    /// MODE SENSE(10) for the current values of `page_code` (0x3f: all pages) with subpage 0
    /// (SPC-5 §6.14); `dbd` asks the target to leave out block descriptors.
    pub fn mode_sense10(page_code: u8, dbd: bool, allocation_length: u16) -> Cdb {
        let mut cdb = ModeSense10Cdb::new_zeroed();
        cdb.op = ScsiOp::MODE_SENSE_10.0;
        cdb.flags = if dbd { MODE_SENSE_DBD } else { 0 };
        cdb.page = page_code & 0x3f;
        cdb.allocation_length.set(allocation_length);
        Cdb::from_struct(&cdb)
    }

    /// READ(10) of `blocks` blocks at `lba` (SBC-4 §5.15).
    pub fn read10(lba: u32, blocks: u16) -> Cdb {
        Cdb::from_struct(&Cdb10::rw(ScsiOp::READ_10, 0, lba, blocks))
    }

    /// READ(16) of `blocks` blocks at `lba` (SBC-4 §5.17).
    pub fn read16(lba: u64, blocks: u32) -> Cdb {
        Cdb::from_struct(&Cdb16::rw(ScsiOp::READ_16, 0, lba, blocks))
    }

    /// WRITE(10) of `blocks` blocks at `lba`; `fua` forces them to the medium (SBC-4 §5.39).
    pub fn write10(lba: u32, blocks: u16, fua: bool) -> Cdb {
        Cdb::from_struct(&Cdb10::rw(ScsiOp::WRITE_10, fua_flag(fua), lba, blocks))
    }

    /// WRITE(16) of `blocks` blocks at `lba`; `fua` forces them to the medium (SBC-4 §5.41).
    pub fn write16(lba: u64, blocks: u32, fua: bool) -> Cdb {
        Cdb::from_struct(&Cdb16::rw(ScsiOp::WRITE_16, fua_flag(fua), lba, blocks))
    }

    /// SYNCHRONIZE CACHE(10) of `blocks` blocks at `lba`; 0 blocks means to the end of the
    /// medium, so `(0, 0)` flushes everything (SBC-4 §5.26).
    pub fn synchronize_cache10(lba: u32, blocks: u16) -> Cdb {
        Cdb::from_struct(&Cdb10::rw(ScsiOp::SYNCHRONIZE_CACHE_10, 0, lba, blocks))
    }

    /// SYNCHRONIZE CACHE(16); `(0, 0)` flushes everything (SBC-4 §5.27).
    pub fn synchronize_cache16(lba: u64, blocks: u32) -> Cdb {
        Cdb::from_struct(&Cdb16::rw(ScsiOp::SYNCHRONIZE_CACHE_16, 0, lba, blocks))
    }

    /// UNMAP, followed by a parameter list of `parameter_list_length` bytes as built by
    /// [`unmap_parameter_list`] (SBC-4 §5.32).
    pub fn unmap(parameter_list_length: u16) -> Cdb {
        let mut cdb = Cdb10::op(ScsiOp::UNMAP);
        cdb.length.set(parameter_list_length);
        Cdb::from_struct(&cdb)
    }

    /// WRITE SAME(16) of one block of data-out repeated over `blocks` blocks at `lba`; with
    /// `unmap` the device may deallocate them instead (SBC-4 §5.46).
    pub fn write_same16(lba: u64, blocks: u32, unmap: bool) -> Cdb {
        let flags = if unmap { WRITE_SAME_UNMAP } else { 0 };
        Cdb::from_struct(&Cdb16::rw(ScsiOp::WRITE_SAME_16, flags, lba, blocks))
    }

    /// The CDB bytes, exactly as long as the command's CDB.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes
            .get(..usize::from(self.len))
            .unwrap_or(&self.bytes)
    }

    /// The CDB zero-padded to 16 bytes, as the SCSI Command PDU carries it.
    pub fn padded(&self) -> [u8; 16] {
        self.bytes
    }

    /// The operation code.
    pub fn op(&self) -> ScsiOp {
        ScsiOp(self.bytes[0])
    }

    fn from_struct<T: IntoBytes + Immutable>(cdb: &T) -> Cdb {
        let src = cdb.as_bytes();
        let mut bytes = [0u8; 16];
        // Every CDB struct in this file is 16 bytes or shorter (checked by a test).
        let len = src.len().min(16);
        if let (Some(dst), Some(src)) = (bytes.get_mut(..len), src.get(..len)) {
            dst.copy_from_slice(src);
        }
        // len <= 16 fits in a u8.
        Cdb {
            bytes,
            len: len as u8,
        }
    }
}

impl std::fmt::Debug for Cdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cdb({:?} {})", self.op(), super::hex(self.as_bytes()))
    }
}

/// One range of an UNMAP parameter list: `blocks` blocks starting at `lba`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct UnmapRange {
    /// First block.
    pub lba: u64,
    /// Number of blocks.
    pub blocks: u32,
}

/// Why a command could not be built.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// More UNMAP ranges than one parameter list can carry.
    #[error("UNMAP: {count} ranges, at most {max} fit in one parameter list")]
    TooManyRanges {
        /// Ranges given.
        count: usize,
        /// Ranges that fit.
        max: usize,
    },
    /// An UNMAP with no range at all.
    #[error("UNMAP: no range given")]
    NoRanges,
}

/// Most UNMAP block descriptors one parameter list can carry: its length is a 16-bit field.
pub const MAX_UNMAP_RANGES: usize = (u16::MAX as usize - UNMAP_HEADER_LEN) / UNMAP_DESCRIPTOR_LEN;

/// Builds the UNMAP parameter list (SBC-4 §5.32.2): an 8-byte header then one 16-byte block
/// descriptor per range. Send it as data-out after [`Cdb::unmap`] with its length.
///
/// # Errors
/// [`BuildError::NoRanges`] for an empty slice, [`BuildError::TooManyRanges`] past
/// [`MAX_UNMAP_RANGES`] (also keep under the target's MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT).
pub fn unmap_parameter_list(ranges: &[UnmapRange]) -> Result<Vec<u8>, BuildError> {
    if ranges.is_empty() {
        return Err(BuildError::NoRanges);
    }
    if ranges.len() > MAX_UNMAP_RANGES {
        return Err(BuildError::TooManyRanges {
            count: ranges.len(),
            max: MAX_UNMAP_RANGES,
        });
    }
    let descriptors_len = ranges.len() * UNMAP_DESCRIPTOR_LEN;
    let mut header = UnmapHeader::new_zeroed();
    // Both lengths are below u16::MAX by the MAX_UNMAP_RANGES check above.
    header
        .data_length
        .set((UNMAP_HEADER_LEN - 2 + descriptors_len) as u16);
    header.descriptor_data_length.set(descriptors_len as u16);
    let mut out = Vec::with_capacity(UNMAP_HEADER_LEN + descriptors_len);
    out.extend_from_slice(header.as_bytes());
    for range in ranges {
        let mut d = UnmapDescriptor::new_zeroed();
        d.lba.set(range.lba);
        d.blocks.set(range.blocks);
        out.extend_from_slice(d.as_bytes());
    }
    Ok(out)
}

const SA_READ_CAPACITY_16: u8 = 0x10;
const SA_REPORT_TARGET_PORT_GROUPS: u8 = 0x0a;
/// PARAMETER DATA FORMAT (bits 7:5 of byte 1) 000b and 001b.
const RTPG_LENGTH_ONLY: u8 = 0x00;
const RTPG_EXTENDED: u8 = 0x20;
const MODE_SENSE_DBD: u8 = 0x08;
const RW_FUA: u8 = 0x08;
const WRITE_SAME_UNMAP: u8 = 0x08;
const INQUIRY_EVPD: u8 = 0x01;
const UNMAP_HEADER_LEN: usize = 8;
const UNMAP_DESCRIPTOR_LEN: usize = 16;

fn fua_flag(fua: bool) -> u8 {
    if fua { RW_FUA } else { 0 }
}

/// A 6-byte CDB with no parameters (TEST UNIT READY).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
struct Cdb6 {
    op: u8,
    reserved: [u8; 4],
    control: u8,
}

impl Cdb6 {
    fn op(op: ScsiOp) -> Self {
        let mut cdb = Cdb6::new_zeroed();
        cdb.op = op.0;
        cdb
    }
}

/// INQUIRY (SPC-5 §6.7.1, table 146).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
struct InquiryCdb {
    op: u8,
    /// Bit 0: EVPD.
    flags: u8,
    page_code: u8,
    allocation_length: U16,
    control: u8,
}

impl InquiryCdb {
    fn new(evpd: bool, page_code: u8, allocation_length: u16) -> Self {
        let mut cdb = InquiryCdb::new_zeroed();
        cdb.op = ScsiOp::INQUIRY.0;
        cdb.flags = if evpd { INQUIRY_EVPD } else { 0 };
        cdb.page_code = page_code;
        cdb.allocation_length.set(allocation_length);
        cdb
    }
}

/// The 10-byte READ/WRITE/SYNCHRONIZE CACHE layout (SBC-4 §5.15, table 59); READ CAPACITY(10)
/// and UNMAP share its shape (UNMAP's length field is the parameter list length).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
struct Cdb10 {
    op: u8,
    /// RDPROTECT/WRPROTECT (7:5), DPO (4), FUA (3).
    flags: u8,
    lba: U32,
    group: u8,
    length: U16,
    control: u8,
}

impl Cdb10 {
    fn op(op: ScsiOp) -> Self {
        let mut cdb = Cdb10::new_zeroed();
        cdb.op = op.0;
        cdb
    }

    fn rw(op: ScsiOp, flags: u8, lba: u32, blocks: u16) -> Self {
        let mut cdb = Cdb10::op(op);
        cdb.flags = flags;
        cdb.lba.set(lba);
        cdb.length.set(blocks);
        cdb
    }
}

/// The 16-byte READ/WRITE/SYNCHRONIZE CACHE/WRITE SAME layout (SBC-4 §5.17, table 63); READ
/// CAPACITY(16) shares its shape (service action in `flags`, allocation length in `length`).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
struct Cdb16 {
    op: u8,
    /// RDPROTECT/WRPROTECT (7:5), DPO (4), FUA (3); WRITE SAME: UNMAP (3), NDOB (0).
    flags: u8,
    lba: U64,
    length: U32,
    group: u8,
    control: u8,
}

impl Cdb16 {
    fn op(op: ScsiOp) -> Self {
        let mut cdb = Cdb16::new_zeroed();
        cdb.op = op.0;
        cdb
    }

    fn rw(op: ScsiOp, flags: u8, lba: u64, blocks: u32) -> Self {
        let mut cdb = Cdb16::op(op);
        cdb.flags = flags;
        cdb.lba.set(lba);
        cdb.length.set(blocks);
        cdb
    }
}

/// MODE SENSE(10) (SPC-5 §6.14.1, table 168).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
struct ModeSense10Cdb {
    op: u8,
    /// LLBAA (4), DBD (3).
    flags: u8,
    /// PC (7:6), PAGE CODE (5:0).
    page: u8,
    subpage: u8,
    reserved: [u8; 3],
    allocation_length: U16,
    control: u8,
}

/// REPORT LUNS (SPC-5 §6.33, table 257).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
struct ReportLunsCdb {
    op: u8,
    reserved1: u8,
    select_report: u8,
    reserved2: [u8; 3],
    allocation_length: U32,
    reserved3: u8,
    control: u8,
}

/// MAINTENANCE IN: REPORT TARGET PORT GROUPS (SPC-5 §6.37).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
struct MaintenanceInCdb {
    op: u8,
    /// PARAMETER DATA FORMAT (7:5), SERVICE ACTION (4:0).
    service_action: u8,
    reserved1: [u8; 4],
    allocation_length: U32,
    reserved2: u8,
    control: u8,
}

impl MaintenanceInCdb {
    fn report_target_port_groups(format: u8, allocation_length: u32) -> Self {
        let mut cdb = MaintenanceInCdb::new_zeroed();
        cdb.op = ScsiOp::MAINTENANCE_IN.0;
        cdb.service_action = format | SA_REPORT_TARGET_PORT_GROUPS;
        cdb.allocation_length.set(allocation_length);
        cdb
    }
}

/// UNMAP parameter list header (SBC-4 §5.32.2, table 102).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
struct UnmapHeader {
    data_length: U16,
    descriptor_data_length: U16,
    reserved: [u8; 4],
}

/// UNMAP block descriptor (SBC-4 §5.32.2, table 103).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
struct UnmapDescriptor {
    lba: U64,
    blocks: U32,
    reserved: [u8; 4],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::tests_util::bytes;

    #[test]
    fn struct_sizes_match_the_standard() {
        assert_eq!(size_of::<Cdb6>(), 6);
        assert_eq!(size_of::<InquiryCdb>(), 6);
        assert_eq!(size_of::<Cdb10>(), 10);
        assert_eq!(size_of::<ModeSense10Cdb>(), 10);
        assert_eq!(size_of::<ReportLunsCdb>(), 12);
        assert_eq!(size_of::<MaintenanceInCdb>(), 12);
        assert_eq!(size_of::<Cdb16>(), 16);
        assert_eq!(size_of::<UnmapHeader>(), UNMAP_HEADER_LEN);
        assert_eq!(size_of::<UnmapDescriptor>(), UNMAP_DESCRIPTOR_LEN);
    }

    /// These are the CDBs that fetched the tgtd responses used in the parser tests.
    #[test]
    fn test_emit_matches_captured_cdbs() {
        let cases: &[(Cdb, &str)] = &[
            (Cdb::test_unit_ready(), "000000000000"),
            // op 12 | EVPD 0 | page 00 | alloc 0060 | control 00
            (Cdb::inquiry(0x60), "120000006000"),
            // op 12 | EVPD 1 | page 83 | alloc 00ff | control
            (Cdb::inquiry_vpd(0x83, 0xff), "12018300ff00"),
            // op a0 | rsvd | select 00 | rsvd x3 | alloc 00000100 | rsvd | control
            (Cdb::report_luns(256), "a00000000000000001000000"),
            (Cdb::read_capacity10(), "25000000000000000000"),
            // op 9e | SA 10 | lba x8 | alloc 00000020 | flags | control
            (Cdb::read_capacity16(32), "9e100000000000000000000000200000"),
            // op 5a | DBD 08 | page 3f | subpage | rsvd x3 | alloc 0020 | control
            (Cdb::mode_sense10(0x3f, true, 32), "5a083f00000000002000"),
            (Cdb::mode_sense10(0x08, false, 0xff), "5a00080000000000ff00"),
        ];
        for (cdb, hex) in cases {
            assert_eq!(cdb.as_bytes(), bytes(hex), "{cdb:?}");
        }
    }

    #[test]
    fn test_emit_report_target_port_groups() {
        let cdb = Cdb::report_target_port_groups(0x1000);
        assert_eq!(
            cdb.as_bytes(),
            bytes(concat!(
                "a3",       // MAINTENANCE IN
                "0a",       // PARAMETER DATA FORMAT 000b | SERVICE ACTION 0a
                "00000000", // reserved
                "00001000", // ALLOCATION LENGTH 4096
                "00",       // reserved
                "00",       // CONTROL
            ))
        );
        assert_eq!(cdb.op(), ScsiOp::MAINTENANCE_IN);
        // PARAMETER DATA FORMAT 001b | SERVICE ACTION 0a; the largest allocation length.
        assert_eq!(
            Cdb::report_target_port_groups_extended(u32::MAX).as_bytes(),
            bytes("a32a00000000ffffffff0000")
        );
    }

    #[test]
    fn test_emit_read_write() {
        // op 28 | flags | lba 00000100 | group | blocks 0008 | control
        assert_eq!(
            Cdb::read10(0x100, 8).as_bytes(),
            bytes("28000000010000000800")
        );
        // op 2a | FUA 08 | ...
        assert_eq!(
            Cdb::write10(1, 2, true).as_bytes(),
            bytes("2a080000000100000200")
        );
        // op 88 | flags | lba 0000000123456789 | blocks 00010000 | group | control
        let read16 = Cdb::read16(0x1_2345_6789, 0x1_0000);
        assert_eq!(read16.as_bytes(), bytes("88000000000123456789000100000000"));
        assert_eq!(
            read16.padded(),
            <[u8; 16]>::try_from(read16.as_bytes()).unwrap()
        );
        let write16 = Cdb::write16(u64::MAX, 1, true);
        assert_eq!(
            write16.as_bytes(),
            bytes("8a08ffffffffffffffff000000010000")
        );
        assert_eq!(write16.op(), ScsiOp::WRITE_16);
        assert_eq!(Cdb::write16(0, 1, false).as_bytes()[1], 0);
    }

    #[test]
    fn test_emit_cache_unmap_write_same() {
        assert_eq!(
            Cdb::synchronize_cache10(0, 0).as_bytes(),
            bytes("35000000000000000000")
        );
        assert_eq!(
            Cdb::synchronize_cache16(0, 0).as_bytes(),
            bytes("91000000000000000000000000000000")
        );
        // op 42 | anchor | rsvd x4 | group | param list length 0018 | control
        assert_eq!(Cdb::unmap(24).as_bytes(), bytes("42000000000000001800"));
        // op 93 | UNMAP 08 | lba 10 | blocks 00000800 | group | control
        assert_eq!(
            Cdb::write_same16(0x10, 0x800, true).as_bytes(),
            bytes("93080000000000000010000008000000")
        );
        assert_eq!(Cdb::write_same16(0, 1, false).as_bytes()[1], 0);
        let padded = Cdb::test_unit_ready().padded();
        assert_eq!(padded, [0u8; 16]);
        assert_eq!(Cdb::test_unit_ready().as_bytes().len(), 6);
    }

    #[test]
    fn test_unmap_parameter_list() {
        let list = unmap_parameter_list(&[
            UnmapRange {
                lba: 0x10,
                blocks: 8,
            },
            UnmapRange {
                lba: 0x1_0000_0000,
                blocks: 0xffff_ffff,
            },
        ])
        .unwrap();
        let expected = concat!(
            "0026",             // UNMAP DATA LENGTH: 38 bytes follow this field
            "0020",             // BLOCK DESCRIPTOR DATA LENGTH: 2 x 16
            "00000000",         // reserved
            "0000000000000010", // LBA
            "00000008",         // NUMBER OF LOGICAL BLOCKS
            "00000000",         // reserved
            "0000000100000000",
            "ffffffff",
            "00000000",
        );
        assert_eq!(list, bytes(expected));
        assert_eq!(unmap_parameter_list(&[]), Err(BuildError::NoRanges));
        let many = vec![UnmapRange { lba: 0, blocks: 1 }; MAX_UNMAP_RANGES + 1];
        assert!(matches!(
            unmap_parameter_list(&many),
            Err(BuildError::TooManyRanges {
                max: MAX_UNMAP_RANGES,
                ..
            })
        ));
        let most = unmap_parameter_list(&many[1..]).unwrap();
        assert!(most.len() <= usize::from(u16::MAX));
    }
}
