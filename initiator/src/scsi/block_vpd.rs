//! The block-device VPD pages of SBC-4: Block Limits (0xB0, §6.6.4), Block Device
//! Characteristics (0xB1, §6.6.2) and Logical Block Provisioning (0xB2, §6.6.6).

use sanshim_blockdev::Limits;
use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::ParseError;
use super::inquiry::{VpdPage, vpd_body};

/// The Block Limits page (0xB0). Every count is in logical blocks; zero means the device
/// states no value (for the unmap fields: does not support UNMAP) unless noted.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct BlockLimits {
    /// WSNZ: WRITE SAME with a NUMBER OF LOGICAL BLOCKS of zero is refused.
    pub write_same_non_zero: bool,
    /// MAXIMUM COMPARE AND WRITE LENGTH.
    pub max_compare_and_write: u8,
    /// OPTIMAL TRANSFER LENGTH GRANULARITY.
    pub optimal_transfer_granularity: u16,
    /// MAXIMUM TRANSFER LENGTH (0: no limit stated).
    pub max_transfer_length: u32,
    /// OPTIMAL TRANSFER LENGTH.
    pub optimal_transfer_length: u32,
    /// MAXIMUM PREFETCH LENGTH.
    pub max_prefetch_length: u32,
    /// MAXIMUM UNMAP LBA COUNT (0xFFFF_FFFF: no limit).
    pub max_unmap_lba_count: u32,
    /// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT (0xFFFF_FFFF: no limit).
    pub max_unmap_descriptor_count: u32,
    /// OPTIMAL UNMAP GRANULARITY.
    pub unmap_granularity: u32,
    /// UNMAP GRANULARITY ALIGNMENT, when UGAVALID is set.
    pub unmap_granularity_alignment: Option<u32>,
    /// MAXIMUM WRITE SAME LENGTH.
    pub max_write_same_length: u64,
    /// The page was the short SBC-2 form (length 0x0C): every field after OPTIMAL TRANSFER
    /// LENGTH is absent and reads as zero.
    pub short_form: bool,
}

impl BlockLimits {
    /// Parses page 0xB0, in its full (SBC-3 on, length 0x3C) or short (SBC-2) form.
    ///
    /// # Errors
    /// As for every VPD page, and [`ParseError::TooShort`] below the 12 bytes of the SBC-2
    /// form.
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        const WHAT: &str = "Block Limits page";
        let body = vpd_body(WHAT, VpdPage::BLOCK_LIMITS, buf)?;
        if body.len() < SHORT_FORM_LEN {
            return Err(ParseError::TooShort {
                what: WHAT,
                need: SHORT_FORM_LEN + 4,
                have: body.len() + 4,
            });
        }
        // A short page is read as the full layout with the missing fields zero.
        let mut raw = BlockLimitsBody::new_zeroed();
        let n = body.len().min(size_of::<BlockLimitsBody>());
        if let (Some(dst), Some(src)) = (raw.as_mut_bytes().get_mut(..n), body.get(..n)) {
            dst.copy_from_slice(src);
        }
        let alignment = raw.unmap_granularity_alignment.get();
        Ok(BlockLimits {
            write_same_non_zero: raw.wsnz & 0x01 != 0,
            max_compare_and_write: raw.max_compare_and_write,
            optimal_transfer_granularity: raw.optimal_transfer_granularity.get(),
            max_transfer_length: raw.max_transfer_length.get(),
            optimal_transfer_length: raw.optimal_transfer_length.get(),
            max_prefetch_length: raw.max_prefetch_length.get(),
            max_unmap_lba_count: raw.max_unmap_lba_count.get(),
            max_unmap_descriptor_count: raw.max_unmap_descriptor_count.get(),
            unmap_granularity: raw.unmap_granularity.get(),
            unmap_granularity_alignment: (alignment & UGAVALID != 0)
                .then_some(alignment & !UGAVALID),
            max_write_same_length: raw.max_write_same_length.get(),
            short_form: body.len() < size_of::<BlockLimitsBody>(),
        })
    }

    /// The limits in the block layer's terms: zero (and, for discard, "no limit") become
    /// `None`.
    pub fn limits(&self) -> Limits {
        let nonzero32 = |v: u32| (v != 0).then_some(v);
        Limits {
            max_transfer_blocks: nonzero32(self.max_transfer_length),
            optimal_granularity_blocks: u32::from(self.optimal_transfer_granularity),
            max_discard_blocks: nonzero32(self.max_unmap_lba_count).filter(|&v| v != u32::MAX),
            max_write_zeroes_blocks: (self.max_write_same_length != 0)
                .then_some(self.max_write_same_length),
        }
    }
}

/// The Block Device Characteristics page (0xB1).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct BlockDeviceCharacteristics {
    /// MEDIUM ROTATION RATE: 0 not reported, 1 non-rotating (solid state), 0x0401..=0xFFFE
    /// revolutions per minute.
    pub rotation_rate: u16,
    /// PRODUCT TYPE.
    pub product_type: u8,
    /// NOMINAL FORM FACTOR (0 not reported, 1 = 5.25", 2 = 3.5", 3 = 2.5", 4 = 1.8",
    /// 5 = below 1.8").
    pub nominal_form_factor: u8,
}

impl BlockDeviceCharacteristics {
    /// Parses page 0xB1; the first four bytes of the body are required.
    ///
    /// # Errors
    /// As for every VPD page, and [`ParseError::TooShort`] for a body below four bytes.
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        const WHAT: &str = "Block Device Characteristics page";
        let body = vpd_body(WHAT, VpdPage::BLOCK_DEVICE_CHARACTERISTICS, buf)?;
        let (raw, _) =
            CharacteristicsBody::ref_from_prefix(body).map_err(|_| ParseError::TooShort {
                what: WHAT,
                need: 8,
                have: body.len() + 4,
            })?;
        Ok(BlockDeviceCharacteristics {
            rotation_rate: raw.rotation_rate.get(),
            product_type: raw.product_type,
            nominal_form_factor: raw.form_factor & 0x0f,
        })
    }

    /// The medium does not rotate (an SSD or a virtual disk that says so).
    pub fn is_non_rotating(&self) -> bool {
        self.rotation_rate == 1
    }
}

sanshim_codepoint::code_point! {
    /// The PROVISIONING TYPE of the Logical Block Provisioning page (SBC-4 §6.6.6, table 263).
    pub struct ProvisioningType(u8) as "{:#04x}" {
        /// Fully provisioned, or not reported.
        FULL = 0 => "fully provisioned",
        /// Resource provisioned.
        RESOURCE = 1 => "resource provisioned",
        /// Thin provisioned.
        THIN = 2 => "thin provisioned",
    }
}

/// The Logical Block Provisioning page (0xB2).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct LogicalBlockProvisioning {
    /// THRESHOLD EXPONENT.
    pub threshold_exponent: u8,
    /// LBPU: UNMAP is supported.
    pub lbpu: bool,
    /// LBPWS: WRITE SAME(16) with UNMAP set is supported.
    pub lbpws: bool,
    /// LBPWS10: WRITE SAME(10) with UNMAP set is supported.
    pub lbpws10: bool,
    /// LBPRZ: what an unmapped block reads as (0: unspecified, 1: zeroes, 2: the provisioning
    /// initialization pattern).
    pub lbprz: u8,
    /// ANC_SUP: the ANCHOR bit of UNMAP is supported.
    pub anchor_supported: bool,
    /// DP: a Provisioning Group descriptor follows.
    pub descriptor_present: bool,
    /// PROVISIONING TYPE.
    pub provisioning_type: ProvisioningType,
}

impl LogicalBlockProvisioning {
    /// Parses page 0xB2; the first four bytes of the body are required.
    ///
    /// # Errors
    /// As for every VPD page, and [`ParseError::TooShort`] for a body below four bytes.
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        const WHAT: &str = "Logical Block Provisioning page";
        let body = vpd_body(WHAT, VpdPage::LOGICAL_BLOCK_PROVISIONING, buf)?;
        let (raw, _) =
            ProvisioningBody::ref_from_prefix(body).map_err(|_| ParseError::TooShort {
                what: WHAT,
                need: 8,
                have: body.len() + 4,
            })?;
        Ok(LogicalBlockProvisioning {
            threshold_exponent: raw.threshold_exponent,
            lbpu: raw.flags & 0x80 != 0,
            lbpws: raw.flags & 0x40 != 0,
            lbpws10: raw.flags & 0x20 != 0,
            lbprz: (raw.flags >> 2) & 0x07,
            anchor_supported: raw.flags & 0x02 != 0,
            descriptor_present: raw.flags & 0x01 != 0,
            provisioning_type: ProvisioningType(raw.provisioning & 0x07),
        })
    }

    /// Unmapped blocks read back as zeroes.
    pub fn reads_zeroes_after_unmap(&self) -> bool {
        self.lbprz == 1
    }
}

const SHORT_FORM_LEN: usize = 12;
const UGAVALID: u32 = 0x8000_0000;

/// The body of the Block Limits page (SBC-4 §6.6.4, table 257), from byte 4.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
struct BlockLimitsBody {
    wsnz: u8,
    max_compare_and_write: u8,
    optimal_transfer_granularity: U16,
    max_transfer_length: U32,
    optimal_transfer_length: U32,
    max_prefetch_length: U32,
    max_unmap_lba_count: U32,
    max_unmap_descriptor_count: U32,
    unmap_granularity: U32,
    /// UGAVALID (31), UNMAP GRANULARITY ALIGNMENT (30:0).
    unmap_granularity_alignment: U32,
    max_write_same_length: U64,
    max_atomic_transfer_length: U32,
    atomic_alignment: U32,
    atomic_transfer_length_granularity: U32,
    max_atomic_transfer_length_with_boundary: U32,
    max_atomic_boundary_size: U32,
}

/// The first bytes of the Block Device Characteristics body (SBC-4 §6.6.2, table 251).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, KnownLayout, Unaligned)]
struct CharacteristicsBody {
    rotation_rate: U16,
    product_type: u8,
    /// WABEREQ (7:6), WACEREQ (5:4), NOMINAL FORM FACTOR (3:0).
    form_factor: u8,
}

/// The first bytes of the Logical Block Provisioning body (SBC-4 §6.6.6, table 262).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, KnownLayout, Unaligned)]
struct ProvisioningBody {
    threshold_exponent: u8,
    /// LBPU (7), LBPWS (6), LBPWS10 (5), LBPRZ (4:2), ANC_SUP (1), DP (0).
    flags: u8,
    /// MINIMUM PERCENTAGE (7:3), PROVISIONING TYPE (2:0).
    provisioning: u8,
    threshold_percentage: u8,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::tests_util::bytes;

    /// tgtd 1.0.85, LUN 2 with thin_provisioning=1: page 0xB0.
    const TGT_BLOCK_LIMITS_THIN: &str = concat!(
        "00b0003c",                                 // PQ/PDT | page b0 | page length 0x3c
        "00",                                       // WSNZ 0
        "80",                                       // MAXIMUM COMPARE AND WRITE LENGTH 128
        "0000",                                     // OPTIMAL TRANSFER LENGTH GRANULARITY
        "00000000",                                 // MAXIMUM TRANSFER LENGTH: none stated
        "00000000",                                 // OPTIMAL TRANSFER LENGTH
        "00000000",                                 // MAXIMUM PREFETCH LENGTH
        "ffffffff",                                 // MAXIMUM UNMAP LBA COUNT: no limit
        "ffffffff",         // MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT: no limit
        "00000000",         // OPTIMAL UNMAP GRANULARITY
        "00000000",         // UGAVALID 0
        "0000000000000000", // MAXIMUM WRITE SAME LENGTH
        "0000000000000000000000000000000000000000", // atomic fields, reserved
    );

    #[test]
    fn test_parse_block_limits_tgt() {
        let bl = BlockLimits::parse(&bytes(TGT_BLOCK_LIMITS_THIN)).unwrap();
        assert_eq!(bl.max_compare_and_write, 0x80);
        assert_eq!(bl.max_transfer_length, 0);
        assert_eq!(bl.max_unmap_lba_count, u32::MAX);
        assert_eq!(bl.max_unmap_descriptor_count, u32::MAX);
        assert_eq!(bl.unmap_granularity_alignment, None);
        assert!(!bl.short_form);
        assert_eq!(bl.limits(), Limits::default());
    }

    #[test]
    fn test_parse_block_limits_fields() {
        let raw = bytes(concat!(
            "00b0003c",
            "01", // WSNZ
            "00",
            "0008",     // granularity 8 blocks (4 KiB of 512)
            "00002000", // max transfer 8192 blocks
            "00000800", // optimal transfer 2048
            "00000000",
            "00400000",         // max unmap 4 Mi blocks
            "00000100",         // 256 descriptors
            "00000008",         // unmap granularity 8
            "80000001",         // UGAVALID | alignment 1
            "0000000000010000", // max write same 64 Ki blocks
            "0000000000000000000000000000000000000000",
        ));
        let bl = BlockLimits::parse(&raw).unwrap();
        assert!(bl.write_same_non_zero);
        assert_eq!(bl.optimal_transfer_granularity, 8);
        assert_eq!(bl.max_transfer_length, 0x2000);
        assert_eq!(bl.optimal_transfer_length, 0x800);
        assert_eq!(bl.max_unmap_lba_count, 0x40_0000);
        assert_eq!(bl.max_unmap_descriptor_count, 0x100);
        assert_eq!(bl.unmap_granularity, 8);
        assert_eq!(bl.unmap_granularity_alignment, Some(1));
        assert_eq!(bl.max_write_same_length, 0x1_0000);
        assert_eq!(
            bl.limits(),
            Limits {
                max_transfer_blocks: Some(0x2000),
                optimal_granularity_blocks: 8,
                max_discard_blocks: Some(0x40_0000),
                max_write_zeroes_blocks: Some(0x1_0000),
            }
        );
    }

    #[test]
    fn test_parse_block_limits_short_forms() {
        // SBC-2 page: length 0x0c, ends after OPTIMAL TRANSFER LENGTH.
        let raw = bytes("00b0000c000000080000010000000200");
        let bl = BlockLimits::parse(&raw).unwrap();
        assert!(bl.short_form);
        assert_eq!(
            (bl.max_transfer_length, bl.optimal_transfer_length),
            (0x100, 0x200)
        );
        assert_eq!(bl.max_unmap_lba_count, 0);
        assert!(matches!(
            BlockLimits::parse(&bytes("00b000080000000800000100")),
            Err(ParseError::TooShort {
                need: 16,
                have: 12,
                ..
            })
        ));
        // The full page asked for with a 32-byte allocation length.
        let cut = &bytes(TGT_BLOCK_LIMITS_THIN)[..32];
        assert_eq!(
            BlockLimits::parse(cut),
            Err(ParseError::Truncated {
                what: "Block Limits page",
                need: 64,
                have: 32
            })
        );
    }

    #[test]
    fn test_parse_characteristics_tgt() {
        // tgtd: page b1, length 0x40, everything zero (rotation rate not reported).
        let mut raw = bytes("00b10040");
        raw.resize(0x44, 0);
        let bdc = BlockDeviceCharacteristics::parse(&raw).unwrap();
        assert_eq!(bdc.rotation_rate, 0);
        assert!(!bdc.is_non_rotating());
        // rotation rate 0001 (non-rotating) | product type 00 | form factor 3 (2.5")
        let bdc = BlockDeviceCharacteristics::parse(&bytes("00b10004000100c3")).unwrap();
        assert!(bdc.is_non_rotating());
        assert_eq!(bdc.nominal_form_factor, 3);
        let bdc = BlockDeviceCharacteristics::parse(&bytes("00b100041c200000")).unwrap();
        assert_eq!(bdc.rotation_rate, 7200);
        assert!(matches!(
            BlockDeviceCharacteristics::parse(&bytes("00b100020001")),
            Err(ParseError::TooShort { .. })
        ));
    }

    #[test]
    fn test_parse_provisioning_tgt() {
        // tgtd, LUN 2 thin: threshold exponent 0 | e4 = LBPU LBPWS LBPWS10, LBPRZ 1 |
        // 02 = thin | threshold percentage 0
        let lbp = LogicalBlockProvisioning::parse(&bytes("00b2000400e40200")).unwrap();
        assert!(lbp.lbpu && lbp.lbpws && lbp.lbpws10);
        assert_eq!(lbp.lbprz, 1);
        assert!(lbp.reads_zeroes_after_unmap());
        assert!(!lbp.anchor_supported && !lbp.descriptor_present);
        assert_eq!(lbp.provisioning_type, ProvisioningType::THIN);
        // tgtd, LUN 1 (not thin): all zero.
        let lbp = LogicalBlockProvisioning::parse(&bytes("00b2000400000000")).unwrap();
        assert!(!lbp.lbpu && !lbp.lbpws);
        assert_eq!(lbp.provisioning_type, ProvisioningType::FULL);
        // ANC_SUP | DP, LBPRZ 2; resource provisioned.
        let lbp = LogicalBlockProvisioning::parse(&bytes("00b20004000b0100")).unwrap();
        assert!(lbp.anchor_supported && lbp.descriptor_present);
        assert_eq!(lbp.lbprz, 2);
        assert_eq!(lbp.provisioning_type, ProvisioningType::RESOURCE);
    }
}
