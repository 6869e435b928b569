//! INQUIRY data (SPC-5 §6.7.2), the VPD page header (SPC-5 §7.7.1), the Supported VPD Pages
//! page (§7.7.16) and the Unit Serial Number page (§7.7.18).

use zerocopy::network_endian::U16;
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::{ParseError, PeripheralDeviceType, PeripheralQualifier, ascii_text, require};

sanshim_codepoint::code_point! {
    /// A vital product data page code (SPC-5 §7.7.1, table 479; SBC-4 §6.6).
    pub struct VpdPage(u8) as "{:#04x}" {
        /// Supported VPD Pages.
        SUPPORTED_PAGES = 0x00 => "Supported VPD Pages",
        /// Unit Serial Number.
        UNIT_SERIAL_NUMBER = 0x80 => "Unit Serial Number",
        /// Device Identification.
        DEVICE_IDENTIFICATION = 0x83 => "Device Identification",
        /// Extended INQUIRY Data.
        EXTENDED_INQUIRY = 0x86 => "Extended INQUIRY Data",
        /// Mode Page Policy.
        MODE_PAGE_POLICY = 0x87 => "Mode Page Policy",
        /// SCSI Ports.
        SCSI_PORTS = 0x88 => "SCSI Ports",
        /// ATA Information.
        ATA_INFORMATION = 0x89 => "ATA Information",
        /// Power Condition.
        POWER_CONDITION = 0x8a => "Power Condition",
        /// Third-party Copy.
        THIRD_PARTY_COPY = 0x8f => "Third-party Copy",
        /// Block Limits (SBC).
        BLOCK_LIMITS = 0xb0 => "Block Limits",
        /// Block Device Characteristics (SBC).
        BLOCK_DEVICE_CHARACTERISTICS = 0xb1 => "Block Device Characteristics",
        /// Logical Block Provisioning (SBC).
        LOGICAL_BLOCK_PROVISIONING = 0xb2 => "Logical Block Provisioning",
        /// Referrals (SBC).
        REFERRALS = 0xb3 => "Referrals",
    }
}

/// Standard INQUIRY data (SPC-5 §6.7.2, table 145).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct StandardInquiry {
    /// PERIPHERAL QUALIFIER: whether a device is connected at this LUN.
    pub qualifier: PeripheralQualifier,
    /// PERIPHERAL DEVICE TYPE.
    pub device_type: PeripheralDeviceType,
    /// RMB: the medium is removable.
    pub removable: bool,
    /// VERSION: the SPC standard claimed (5 = SPC-3, 6 = SPC-4, 7 = SPC-5).
    pub version: u8,
    /// RESPONSE DATA FORMAT (2 for every current device).
    pub response_data_format: u8,
    /// HISUP: LUNs use the hierarchical addressing of SAM.
    pub hierarchical_luns: bool,
    /// TPGS: asymmetric logical unit access (ALUA) support.
    pub tpgs: Tpgs,
    /// 3PC: third-party copy commands are supported.
    pub third_party_copy: bool,
    /// PROTECT: protection information is supported.
    pub protect: bool,
    /// MULTIP: the device has more than one port.
    pub multi_port: bool,
    /// CMDQUE: command queuing is supported.
    pub command_queuing: bool,
    /// T10 VENDOR IDENTIFICATION, trimmed.
    pub vendor: String,
    /// PRODUCT IDENTIFICATION, trimmed.
    pub product: String,
    /// PRODUCT REVISION LEVEL, trimmed.
    pub revision: String,
    /// VERSION DESCRIPTORs that were returned and are not zero.
    pub version_descriptors: Vec<u16>,
}

impl StandardInquiry {
    /// Parses standard INQUIRY data; the first 36 bytes are required, version descriptors are
    /// read when present.
    ///
    /// # Errors
    /// [`ParseError::TooShort`] below 36 bytes, [`ParseError::Invalid`] when the ADDITIONAL
    /// LENGTH declares less than that.
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        const WHAT: &str = "standard INQUIRY data";
        let (raw, _) = InquiryData::ref_from_prefix(buf).map_err(|_| ParseError::TooShort {
            what: WHAT,
            need: 36,
            have: buf.len(),
        })?;
        let declared = usize::from(raw.additional_length) + 5;
        if declared < size_of::<InquiryData>() {
            return Err(ParseError::Invalid {
                what: WHAT,
                reason: "ADDITIONAL LENGTH is below the 31 bytes SPC requires",
            });
        }
        let valid = buf.get(..declared.min(buf.len())).unwrap_or(buf);
        Ok(StandardInquiry {
            qualifier: PeripheralQualifier(raw.peripheral >> 5),
            device_type: PeripheralDeviceType(raw.peripheral & 0x1f),
            removable: raw.rmb & 0x80 != 0,
            version: raw.version,
            response_data_format: raw.format & 0x0f,
            hierarchical_luns: raw.format & 0x10 != 0,
            tpgs: Tpgs((raw.flags5 >> 4) & 0x03),
            third_party_copy: raw.flags5 & 0x08 != 0,
            protect: raw.flags5 & 0x01 != 0,
            multi_port: raw.flags6 & 0x10 != 0,
            command_queuing: raw.flags7 & 0x02 != 0,
            vendor: ascii_text(&raw.vendor),
            product: ascii_text(&raw.product),
            revision: ascii_text(&raw.revision),
            version_descriptors: version_descriptors(valid),
        })
    }
}

/// The TPGS field of INQUIRY data: how the device supports ALUA (SPC-5 §6.7.2, table 149).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Tpgs(pub u8);

impl Tpgs {
    /// The target changes access states itself (implicit ALUA).
    pub fn implicit(self) -> bool {
        self.0 & 0x01 != 0
    }

    /// The initiator may change access states with SET TARGET PORT GROUPS (explicit ALUA).
    pub fn explicit(self) -> bool {
        self.0 & 0x02 != 0
    }

    /// Asymmetric access is supported at all; REPORT TARGET PORT GROUPS works.
    pub fn supported(self) -> bool {
        self.0 != 0
    }
}

/// The Supported VPD Pages page (0x00, SPC-5 §7.7.16).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SupportedVpdPages {
    /// The page codes the device lists, in its order.
    pub pages: Vec<VpdPage>,
}

impl SupportedVpdPages {
    /// Parses page 0x00.
    ///
    /// # Errors
    /// [`ParseError::TooShort`] without the 4-byte header, [`ParseError::WrongPage`],
    /// [`ParseError::Truncated`] when PAGE LENGTH reaches past the returned bytes.
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        let body = vpd_body("Supported VPD Pages page", VpdPage::SUPPORTED_PAGES, buf)?;
        Ok(SupportedVpdPages {
            pages: body.iter().copied().map(VpdPage).collect(),
        })
    }

    /// Whether the device lists `page`.
    pub fn contains(&self, page: VpdPage) -> bool {
        self.pages.contains(&page)
    }
}

/// The Unit Serial Number page (0x80, SPC-5 §7.7.18).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct UnitSerialNumber {
    /// PRODUCT SERIAL NUMBER, with padding spaces removed and non-printable bytes escaped.
    pub serial: String,
}

impl UnitSerialNumber {
    /// Parses page 0x80.
    ///
    /// # Errors
    /// [`ParseError::TooShort`] without the 4-byte header, [`ParseError::WrongPage`],
    /// [`ParseError::Truncated`] when PAGE LENGTH reaches past the returned bytes.
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        let body = vpd_body("Unit Serial Number page", VpdPage::UNIT_SERIAL_NUMBER, buf)?;
        Ok(UnitSerialNumber {
            serial: ascii_text(body),
        })
    }
}

/// Checks the 4-byte VPD page header (SPC-5 §7.7.1, table 478) and returns the page body,
/// exactly PAGE LENGTH bytes.
///
/// # Errors
/// [`ParseError::TooShort`] without a whole header, [`ParseError::WrongPage`] when another
/// page came back, [`ParseError::Truncated`] when PAGE LENGTH reaches past `buf`.
pub(super) fn vpd_body<'a>(
    what: &'static str,
    page: VpdPage,
    buf: &'a [u8],
) -> Result<&'a [u8], ParseError> {
    let (header, rest) =
        VpdHeader::ref_from_prefix(require(what, buf, 4)?).map_err(|_| ParseError::TooShort {
            what,
            need: 4,
            have: buf.len(),
        })?;
    if header.page_code != page.0 {
        return Err(ParseError::WrongPage {
            expected: page.0,
            found: header.page_code,
        });
    }
    let len = usize::from(header.page_length.get());
    rest.get(..len).ok_or(ParseError::Truncated {
        what,
        need: len + 4,
        have: buf.len(),
    })
}

fn version_descriptors(valid: &[u8]) -> Vec<u16> {
    valid
        .get(VERSION_DESCRIPTORS)
        .or_else(|| valid.get(VERSION_DESCRIPTORS.start..))
        .unwrap_or_default()
        .chunks_exact(2)
        .filter_map(|pair| <[u8; 2]>::try_from(pair).ok().map(u16::from_be_bytes))
        .filter(|&d| d != 0)
        .collect()
}

/// Bytes 58..74 of standard INQUIRY data hold eight VERSION DESCRIPTORs.
const VERSION_DESCRIPTORS: std::ops::Range<usize> = 58..74;

/// The fixed first 36 bytes of standard INQUIRY data.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, KnownLayout, Unaligned)]
struct InquiryData {
    /// PERIPHERAL QUALIFIER (7:5), PERIPHERAL DEVICE TYPE (4:0).
    peripheral: u8,
    /// RMB (7), LU_CONG (6).
    rmb: u8,
    version: u8,
    /// NORMACA (5), HISUP (4), RESPONSE DATA FORMAT (3:0).
    format: u8,
    additional_length: u8,
    /// SCCS (7), ACC (6), TPGS (5:4), 3PC (3), PROTECT (0).
    flags5: u8,
    /// ENCSERV (6), VS (5), MULTIP (4).
    flags6: u8,
    /// CMDQUE (1).
    flags7: u8,
    vendor: [u8; 8],
    product: [u8; 16],
    revision: [u8; 4],
}

/// The VPD page header (SPC-5 §7.7.1, table 478).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, KnownLayout, Unaligned)]
struct VpdHeader {
    peripheral: u8,
    page_code: u8,
    page_length: U16,
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::scsi::tests_util::bytes;

    /// tgtd 1.0.85, LUN 1 (a disk backed by a file): INQUIRY, allocation length 0x60.
    pub(crate) const TGT_INQUIRY_DISK: &str = concat!(
        "00",                                       // PQ 0 (connected) | PDT 0 (direct access)
        "00",                                       // RMB 0
        "05",                                       // VERSION: SPC-3
        "12",                                       // HISUP 1 | RESPONSE DATA FORMAT 2
        "3d",                                       // ADDITIONAL LENGTH: 61 -> 66 bytes
        "00",                                       // SCCS ACC TPGS=0 3PC PROTECT
        "00",                                       // ENCSERV MULTIP
        "02",                                       // CMDQUE
        "4945542020202020",                         // "IET     "
        "5649525455414c2d4449534b20202020",         // "VIRTUAL-DISK    "
        "30303031",                                 // "0001"
        "0000000000000000000000000000000000000000", // vendor specific, reserved
        "000004c0",                                 // reserved | VERSION DESCRIPTOR 1: SBC-3
        "09600300",                                 // 2: iSCSI, 3: SPC-3
        "0000",
    );

    /// The same target's LUN 0, its "controller" LU.
    const TGT_INQUIRY_CONTROLLER: &str = concat!(
        "0c",                               // PQ 0 | PDT 0x0c (storage array controller)
        "0005123d000002",                   // as for the disk
        "4945542020202020",                 // "IET     "
        "436f6e74726f6c6c6572202020202020", // "Controller      "
        "30303031",                         // "0001"
        "0000000000000000000000000000000000000000",
        "000004c0", // SBC-3
        "096001fb", // iSCSI, 0x01fb (SCC-2)
        "0000",
    );

    #[test]
    fn test_parse_tgt_disk() {
        let inq = StandardInquiry::parse(&bytes(TGT_INQUIRY_DISK)).unwrap();
        assert_eq!(inq.qualifier, PeripheralQualifier::CONNECTED);
        assert_eq!(inq.device_type, PeripheralDeviceType::DIRECT_ACCESS);
        assert!(!inq.removable);
        assert_eq!(inq.version, 5);
        assert_eq!(inq.response_data_format, 2);
        assert!(inq.hierarchical_luns);
        assert!(!inq.tpgs.supported());
        assert!(inq.command_queuing);
        assert!(!inq.multi_port && !inq.protect && !inq.third_party_copy);
        assert_eq!(inq.vendor, "IET");
        assert_eq!(inq.product, "VIRTUAL-DISK");
        assert_eq!(inq.revision, "0001");
        assert_eq!(inq.version_descriptors, vec![0x04c0, 0x0960, 0x0300]);
    }

    #[test]
    fn test_parse_tgt_controller_lun() {
        let inq = StandardInquiry::parse(&bytes(TGT_INQUIRY_CONTROLLER)).unwrap();
        assert_eq!(
            inq.device_type,
            PeripheralDeviceType::STORAGE_ARRAY_CONTROLLER
        );
        assert_eq!(inq.product, "Controller");
        assert_eq!(inq.version_descriptors, vec![0x04c0, 0x0960, 0x01fb]);
    }

    #[test]
    fn test_parse_flags_and_short_data() {
        let mut raw = bytes(TGT_INQUIRY_DISK);
        raw[0] = 0x7f; // PQ 3 (not supported) | PDT 0x1f
        raw[1] = 0x80; // RMB
        raw[5] = 0x39; // TPGS 3 (implicit + explicit) | 3PC | PROTECT
        raw[6] = 0x10; // MULTIP
        raw[8] = 0xff; // a non-ASCII vendor byte is escaped
        let inq = StandardInquiry::parse(&raw[..36]).unwrap();
        assert_eq!(inq.qualifier, PeripheralQualifier::NOT_SUPPORTED);
        assert_eq!(inq.device_type, PeripheralDeviceType::UNKNOWN);
        assert!(inq.removable && inq.multi_port && inq.protect && inq.third_party_copy);
        assert!(inq.tpgs.implicit() && inq.tpgs.explicit());
        assert_eq!(inq.vendor, "\\xffET");
        assert!(inq.version_descriptors.is_empty());
        assert_eq!(
            StandardInquiry::parse(&raw[..35]),
            Err(ParseError::TooShort {
                what: "standard INQUIRY data",
                need: 36,
                have: 35
            })
        );
        raw[4] = 20;
        assert!(matches!(
            StandardInquiry::parse(&raw),
            Err(ParseError::Invalid { .. })
        ));
    }

    #[test]
    fn test_parse_supported_pages_tgt() {
        // PQ/PDT | page 00 | length 0006 | 00 80 83 b0 b1 b2
        let pages = SupportedVpdPages::parse(&bytes("00000006008083b0b1b2")).unwrap();
        assert_eq!(pages.pages.len(), 6);
        assert!(pages.contains(VpdPage::BLOCK_LIMITS));
        assert!(pages.contains(VpdPage::DEVICE_IDENTIFICATION));
        assert!(!pages.contains(VpdPage::REFERRALS));
    }

    #[test]
    fn test_parse_unit_serial_tgt() {
        // tgtd LUN 1: page 80, length 0x24, 30 spaces then "beaf11"
        let raw = bytes(concat!(
            "00800024",
            "202020202020202020202020202020202020202020202020202020202020",
            "626561663131"
        ));
        assert_eq!(UnitSerialNumber::parse(&raw).unwrap().serial, "beaf11");
    }

    #[test]
    fn test_vpd_header_errors() {
        let raw = bytes("00800024202020");
        assert_eq!(
            UnitSerialNumber::parse(&raw),
            Err(ParseError::Truncated {
                what: "Unit Serial Number page",
                need: 40,
                have: 7
            })
        );
        assert_eq!(
            UnitSerialNumber::parse(&bytes("00830000")),
            Err(ParseError::WrongPage {
                expected: 0x80,
                found: 0x83
            })
        );
        assert!(matches!(
            SupportedVpdPages::parse(&bytes("0000")),
            Err(ParseError::TooShort {
                need: 4,
                have: 2,
                ..
            })
        ));
        // Bytes past PAGE LENGTH (allocation length larger than the page) are ignored.
        let pages = SupportedVpdPages::parse(&bytes("0000000100ffff")).unwrap();
        assert_eq!(pages.pages, vec![VpdPage::SUPPORTED_PAGES]);
    }
}
