//! READ CAPACITY(10) and (16) parameter data (SBC-4 §5.19.2, §5.20.2) and MODE SENSE(10)
//! data (SPC-5 §7.5.5 header, SBC-4 §6.5.2 block descriptors, §6.5.5 Caching mode page).

use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::{ParseError, require};

/// READ CAPACITY(10) parameter data.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ReadCapacity10 {
    /// RETURNED LOGICAL BLOCK ADDRESS: the last block.
    pub last_lba: u32,
    /// LOGICAL BLOCK LENGTH IN BYTES.
    pub block_length: u32,
}

impl ReadCapacity10 {
    /// Parses the 8 bytes of READ CAPACITY(10) data.
    ///
    /// # Errors
    /// [`ParseError::TooShort`] below 8 bytes.
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        let (raw, _) =
            ReadCapacity10Data::ref_from_prefix(buf).map_err(|_| ParseError::TooShort {
                what: "READ CAPACITY(10) data",
                need: 8,
                have: buf.len(),
            })?;
        Ok(ReadCapacity10 {
            last_lba: raw.last_lba.get(),
            block_length: raw.block_length.get(),
        })
    }

    /// The device is too large for this command (last LBA 0xFFFF_FFFF): use READ
    /// CAPACITY(16).
    pub fn needs_16(&self) -> bool {
        self.last_lba == u32::MAX
    }

    /// Number of logical blocks (last LBA + 1); meaningless when [`Self::needs_16`].
    pub fn blocks(&self) -> u64 {
        u64::from(self.last_lba) + 1
    }
}

/// READ CAPACITY(16) parameter data.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ReadCapacity16 {
    /// Number of logical blocks (RETURNED LOGICAL BLOCK ADDRESS + 1).
    pub blocks: u64,
    /// LOGICAL BLOCK LENGTH IN BYTES.
    pub block_length: u32,
    /// P_TYPE, when PROT_EN is set: protection type 1..=3 is this value + 1.
    pub protection_type: Option<u8>,
    /// LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT: 2^this logical blocks per physical one.
    pub logical_per_physical_exponent: u8,
    /// LBPME: logical block provisioning (thin provisioning, UNMAP) is enabled.
    pub lbpme: bool,
    /// LBPRZ: unmapped blocks read as zero.
    pub lbprz: bool,
    /// LOWEST ALIGNED LOGICAL BLOCK ADDRESS.
    pub lowest_aligned_lba: u16,
}

impl ReadCapacity16 {
    /// Parses READ CAPACITY(16) data; the first 16 of its 32 bytes are required.
    ///
    /// # Errors
    /// [`ParseError::TooShort`] below 16 bytes; [`ParseError::Invalid`] when the last LBA is
    /// 2^64 - 1 (the block count would not fit).
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        const WHAT: &str = "READ CAPACITY(16) data";
        let (raw, _) =
            ReadCapacity16Data::ref_from_prefix(buf).map_err(|_| ParseError::TooShort {
                what: WHAT,
                need: 16,
                have: buf.len(),
            })?;
        let blocks = raw
            .last_lba
            .get()
            .checked_add(1)
            .ok_or(ParseError::Invalid {
                what: WHAT,
                reason: "RETURNED LOGICAL BLOCK ADDRESS is 2^64-1",
            })?;
        let lbp = raw.lbp_aligned.get();
        Ok(ReadCapacity16 {
            blocks,
            block_length: raw.block_length.get(),
            protection_type: (raw.protection & 0x01 != 0).then_some((raw.protection >> 1) & 0x07),
            logical_per_physical_exponent: raw.exponents & 0x0f,
            lbpme: lbp & 0x8000 != 0,
            lbprz: lbp & 0x4000 != 0,
            lowest_aligned_lba: lbp & 0x3fff,
        })
    }

    /// Physical block size in bytes, when it fits in a `u32`.
    pub fn physical_block_length(&self) -> Option<u32> {
        self.block_length
            .checked_shl(u32::from(self.logical_per_physical_exponent))
    }
}

/// MODE SENSE(10) data: header, block descriptors and the mode pages returned whole.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ModeSense10 {
    /// MEDIUM TYPE (0 for SBC devices).
    pub medium_type: u8,
    /// WP in the DEVICE-SPECIFIC PARAMETER: the medium is write-protected (SBC-4 §6.5.1).
    pub write_protected: bool,
    /// DPOFUA in the DEVICE-SPECIFIC PARAMETER: the DPO and FUA bits are supported.
    pub dpofua: bool,
    /// The block descriptors, each complete one returned.
    pub block_descriptors: Vec<BlockDescriptor>,
    /// The mode pages, each complete one returned.
    pub pages: Vec<ModePage>,
    /// MODE DATA LENGTH said more than was returned: later descriptors or pages are missing.
    pub truncated: bool,
}

impl ModeSense10 {
    /// Parses MODE SENSE(10) data. The 8-byte header is required; block descriptors and pages
    /// are taken as far as they were returned whole, since asking for only the header (to
    /// read WP) is common.
    ///
    /// # Errors
    /// [`ParseError::TooShort`] below 8 bytes; [`ParseError::Invalid`] for a MODE DATA LENGTH
    /// shorter than the header or a BLOCK DESCRIPTOR LENGTH that is not whole descriptors.
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        const WHAT: &str = "MODE SENSE(10) data";
        let (header, _) = ModeHeader10::ref_from_prefix(require(WHAT, buf, 8)?).map_err(|_| {
            ParseError::TooShort {
                what: WHAT,
                need: 8,
                have: buf.len(),
            }
        })?;
        let declared = usize::from(header.mode_data_length.get()) + 2;
        if declared < size_of::<ModeHeader10>() {
            return Err(ParseError::Invalid {
                what: WHAT,
                reason: "MODE DATA LENGTH below 6",
            });
        }
        let data = buf.get(..declared.min(buf.len())).unwrap_or(buf);
        let long_lba = header.longlba & 0x01 != 0;
        let bd_len = usize::from(header.block_descriptor_length.get());
        let bd_size = if long_lba { 16 } else { 8 };
        if bd_len % bd_size != 0 {
            return Err(ParseError::Invalid {
                what: WHAT,
                reason: "BLOCK DESCRIPTOR LENGTH is not a whole number of descriptors",
            });
        }
        let after_header = data.get(8..).unwrap_or_default();
        let descriptors = after_header.get(..bd_len).unwrap_or(after_header);
        let pages = after_header.get(bd_len..).unwrap_or_default();
        Ok(ModeSense10 {
            medium_type: header.medium_type,
            write_protected: header.device_specific & 0x80 != 0,
            dpofua: header.device_specific & 0x10 != 0,
            block_descriptors: descriptors
                .chunks_exact(bd_size)
                .filter_map(|d| BlockDescriptor::parse(d, long_lba))
                .collect(),
            pages: ModePage::parse_all(pages),
            truncated: buf.len() < declared,
        })
    }

    /// The Caching mode page (0x08), if it was returned.
    pub fn caching(&self) -> Option<CachingPage> {
        let page = self
            .pages
            .iter()
            .find(|p| p.code == 0x08 && p.subpage == 0)?;
        let flags = *page.data.first()?;
        Some(CachingPage {
            write_cache_enabled: flags & 0x04 != 0,
            read_cache_disabled: flags & 0x01 != 0,
        })
    }
}

/// A mode parameter block descriptor (SBC-4 §6.5.2).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct BlockDescriptor {
    /// NUMBER OF LOGICAL BLOCKS (0xFFFF_FFFF in a short descriptor: too many to say).
    pub blocks: u64,
    /// LOGICAL BLOCK LENGTH.
    pub block_length: u32,
}

impl BlockDescriptor {
    fn parse(d: &[u8], long_lba: bool) -> Option<Self> {
        if long_lba {
            let (raw, _) = LongBlockDescriptor::ref_from_prefix(d).ok()?;
            Some(BlockDescriptor {
                blocks: raw.blocks.get(),
                block_length: raw.block_length.get(),
            })
        } else {
            let (raw, _) = ShortBlockDescriptor::ref_from_prefix(d).ok()?;
            let [a, b, c] = raw.block_length;
            Some(BlockDescriptor {
                blocks: u64::from(raw.blocks.get()),
                block_length: u32::from_be_bytes([0, a, b, c]),
            })
        }
    }
}

/// One mode page (SPC-5 §7.5.7): its codes and the bytes after its 2- or 4-byte header.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ModePage {
    /// PAGE CODE.
    pub code: u8,
    /// SUBPAGE CODE (0 for a page in page_0 format).
    pub subpage: u8,
    /// PS: the page can be saved.
    pub saveable: bool,
    /// The page parameters, after the header.
    pub data: Vec<u8>,
}

impl ModePage {
    /// Splits the page list, stopping at the first page that was not returned whole.
    fn parse_all(mut rest: &[u8]) -> Vec<ModePage> {
        let mut pages = Vec::new();
        while let [first, second, tail @ ..] = rest {
            let spf = first & 0x40 != 0;
            let (subpage, len, body) = if spf {
                let [hi, lo, body @ ..] = tail else { break };
                (*second, usize::from(u16::from_be_bytes([*hi, *lo])), body)
            } else {
                (0, usize::from(*second), tail)
            };
            let Some(data) = body.get(..len) else { break };
            pages.push(ModePage {
                code: first & 0x3f,
                subpage,
                saveable: first & 0x80 != 0,
                data: data.to_vec(),
            });
            rest = body.get(len..).unwrap_or_default();
        }
        pages
    }
}

/// What the Caching mode page says (SBC-4 §6.5.5).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct CachingPage {
    /// WCE: a volatile write cache is on, so SYNCHRONIZE CACHE matters.
    pub write_cache_enabled: bool,
    /// RCD: the read cache is off.
    pub read_cache_disabled: bool,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, KnownLayout, Unaligned)]
struct ReadCapacity10Data {
    last_lba: U32,
    block_length: U32,
}

/// The first 16 bytes of READ CAPACITY(16) data (SBC-4 §5.20.2, table 79).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, KnownLayout, Unaligned)]
struct ReadCapacity16Data {
    last_lba: U64,
    block_length: U32,
    /// RC BASIS (5:4), P_TYPE (3:1), PROT_EN (0).
    protection: u8,
    /// P_I_EXPONENT (7:4), LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (3:0).
    exponents: u8,
    /// LBPME (15), LBPRZ (14), LOWEST ALIGNED LOGICAL BLOCK ADDRESS (13:0).
    lbp_aligned: U16,
}

/// Mode parameter header(10) (SPC-5 §7.5.5, table 454).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, KnownLayout, Unaligned)]
struct ModeHeader10 {
    mode_data_length: U16,
    medium_type: u8,
    /// For SBC: WP (7), DPOFUA (4).
    device_specific: u8,
    /// LONGLBA (0).
    longlba: u8,
    reserved: u8,
    block_descriptor_length: U16,
}

/// Short LBA mode parameter block descriptor (SBC-4 §6.5.2.2).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, KnownLayout, Unaligned)]
struct ShortBlockDescriptor {
    blocks: U32,
    reserved: u8,
    block_length: [u8; 3],
}

/// Long LBA mode parameter block descriptor (SBC-4 §6.5.2.3).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, KnownLayout, Unaligned)]
struct LongBlockDescriptor {
    blocks: U64,
    reserved: [u8; 4],
    block_length: U32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::tests_util::bytes;

    #[test]
    fn test_parse_read_capacity10_tgt() {
        // tgtd LUN 2 (32 MiB file): last LBA 0x0000ffff | block length 0x200
        let rc = ReadCapacity10::parse(&bytes("0000ffff00000200")).unwrap();
        assert_eq!((rc.blocks(), rc.block_length), (0x1_0000, 512));
        assert!(!rc.needs_16());
        assert!(
            ReadCapacity10::parse(&bytes("ffffffff00000200"))
                .unwrap()
                .needs_16()
        );
        assert_eq!(
            ReadCapacity10::parse(&bytes("0000ffff0000")),
            Err(ParseError::TooShort {
                what: "READ CAPACITY(10) data",
                need: 8,
                have: 6
            })
        );
    }

    #[test]
    fn test_parse_read_capacity16_tgt() {
        let raw = bytes(concat!(
            "000000000000ffff", // RETURNED LOGICAL BLOCK ADDRESS
            "00000200",         // LOGICAL BLOCK LENGTH 512
            "00",               // PROT_EN 0
            "03",               // 2^3 logical blocks per physical block (4 KiB)
            "c000",             // LBPME | LBPRZ (tgtd thin_provisioning=1), aligned LBA 0
            "0000000000000000000000000000000000",
        ));
        let rc = ReadCapacity16::parse(&raw[..32]).unwrap();
        assert_eq!(rc.blocks, 0x1_0000);
        assert_eq!(rc.block_length, 512);
        assert_eq!(rc.physical_block_length(), Some(4096));
        assert_eq!(rc.protection_type, None);
        assert!(rc.lbpme && rc.lbprz);
        assert_eq!(rc.lowest_aligned_lba, 0);
    }

    #[test]
    fn test_parse_read_capacity16_fields() {
        // 2^40 blocks | 4096 | P_TYPE 1, PROT_EN | exponent 0 | LBPME, aligned LBA 7
        let rc = ReadCapacity16::parse(&bytes("000000ffffffffff0000100003008007")).unwrap();
        assert_eq!(rc.blocks, 1 << 40);
        assert_eq!(rc.protection_type, Some(1));
        assert!(rc.lbpme && !rc.lbprz);
        assert_eq!(rc.lowest_aligned_lba, 7);
        assert!(matches!(
            ReadCapacity16::parse(&bytes("ffffffffffffffff0000020000000000")),
            Err(ParseError::Invalid { .. })
        ));
        assert!(matches!(
            ReadCapacity16::parse(&bytes("000000000000ffff00000200")),
            Err(ParseError::TooShort {
                need: 16,
                have: 12,
                ..
            })
        ));
    }

    #[test]
    fn test_parse_mode_sense_caching_tgt() {
        // tgtd LUN 2: MODE SENSE(10), page 0x08, DBD 0, allocation length 0xff.
        let raw = bytes(concat!(
            "0022", // MODE DATA LENGTH 34 -> 36 bytes
            "00",   // MEDIUM TYPE
            "10",   // WP 0 | DPOFUA 1
            "00",   // LONGLBA 0
            "00",
            "0008",     // BLOCK DESCRIPTOR LENGTH 8
            "00000000", // NUMBER OF LOGICAL BLOCKS (tgtd leaves 0)
            "00",
            "000200", // LOGICAL BLOCK LENGTH 512
            "08",     // PS 0 | SPF 0 | page 0x08 (Caching)
            "12",     // PAGE LENGTH 18
            "14",     // DISC | WCE, RCD 0
            "00ffff0000ffffffff8014000000000000",
        ));
        let ms = ModeSense10::parse(&raw).unwrap();
        assert!(!ms.write_protected && ms.dpofua && !ms.truncated);
        assert_eq!(
            ms.block_descriptors,
            vec![BlockDescriptor {
                blocks: 0,
                block_length: 512
            }]
        );
        assert_eq!(ms.pages.len(), 1);
        assert_eq!(ms.pages[0].data.len(), 18);
        let caching = ms.caching().unwrap();
        assert!(caching.write_cache_enabled && !caching.read_cache_disabled);
    }

    #[test]
    fn test_parse_mode_sense_all_pages_truncated_tgt() {
        // tgtd LUN 3 (readonly=1): MODE SENSE(10), all pages, DBD, allocation length 32.
        let raw = bytes(concat!(
            "0064", // MODE DATA LENGTH 100: 102 bytes exist
            "00",
            "90", // WP | DPOFUA
            "0000",
            "0000", // no block descriptors
            "020e", // page 0x02 (Disconnect-Reconnect), length 14
            "8080000a0000000000000000",
            "0000",
            "0812", // page 0x08, length 18: cut off below
            "1400ffff",
        ));
        let ms = ModeSense10::parse(&raw).unwrap();
        assert!(ms.write_protected && ms.dpofua && ms.truncated);
        assert!(ms.block_descriptors.is_empty());
        assert_eq!(ms.pages.len(), 1);
        assert_eq!(ms.pages[0].code, 0x02);
        assert_eq!(ms.caching(), None);
        // The header alone is enough for WP.
        let header = ModeSense10::parse(&raw[..8]).unwrap();
        assert!(header.write_protected && header.truncated && header.pages.is_empty());
    }

    #[test]
    fn test_parse_mode_sense_long_lba_and_subpages() {
        let raw = bytes(concat!(
            "0022",
            "00",
            "00",
            "01",
            "00",
            "0010", // LONGLBA | one 16-byte descriptor
            "0000000100000000",
            "00000000",
            "00001000",
            "4a01",
            "0004",
            "deadbeef", // SPF page 0x0a subpage 1, length 4
            "88",
            "02",
            "0400", // PS | page 8, length 2, WCE
        ));
        let ms = ModeSense10::parse(&raw).unwrap();
        assert_eq!(
            ms.block_descriptors,
            vec![BlockDescriptor {
                blocks: 1 << 32,
                block_length: 4096
            }]
        );
        assert_eq!(ms.pages[0].code, 0x0a);
        assert_eq!(ms.pages[0].subpage, 1);
        assert_eq!(ms.pages[0].data, bytes("deadbeef"));
        assert!(ms.pages[1].saveable);
        assert!(ms.caching().unwrap().write_cache_enabled);
        assert!(!ms.truncated);
        let bad = bytes("0006000000000005");
        assert!(matches!(
            ModeSense10::parse(&bad),
            Err(ParseError::Invalid { .. })
        ));
        assert!(matches!(
            ModeSense10::parse(&bytes("0004")),
            Err(ParseError::TooShort { .. })
        ));
        assert!(matches!(
            ModeSense10::parse(&bytes("0002000000000000")),
            Err(ParseError::Invalid { .. })
        ));
    }
}
