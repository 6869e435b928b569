//! The Device Identification VPD page (0x83, SPC-5 §7.7.6): designators naming the logical
//! unit, its target ports and the target device. Multipath groups paths by the logical unit's
//! designator ([`DeviceIdentification::lu_identity`]).
//!
//! Values are rendered as Linux renders them in `/sys/block/*/device/wwid` (from which udev's
//! `/dev/disk/by-id/wwn-*` names come): `naa.` or `eui.` and lower-case hex for binary
//! designators, `t10.` and the text for a T10 vendor ID, the SCSI name string as it stands.

use std::fmt;

use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::inquiry::{VpdPage, vpd_body};
use super::{ParseError, ascii_text, hex, trim_ascii};

sanshim_codepoint::code_point! {
    /// The CODE SET of a designator (SPC-5 §7.7.6.1, table 486).
    pub struct CodeSet(u8) as "{:#04x}" {
        /// Binary values.
        BINARY = 1 => "binary",
        /// Printable ASCII.
        ASCII = 2 => "ASCII",
        /// UTF-8.
        UTF8 = 3 => "UTF-8",
    }
}

sanshim_codepoint::code_point! {
    /// What a designator names: its ASSOCIATION (SPC-5 §7.7.6.1, table 487).
    pub struct Association(u8) as "{:#04x}" {
        /// The logical unit.
        LOGICAL_UNIT = 0 => "logical unit",
        /// The target port the command came through.
        TARGET_PORT = 1 => "target port",
        /// The SCSI target device containing the logical unit.
        TARGET_DEVICE = 2 => "target device",
    }
}

sanshim_codepoint::code_point! {
    /// The DESIGNATOR TYPE (SPC-5 §7.7.6.1, table 488).
    pub struct DesignatorType(u8) as "{:#04x}" {
        /// Vendor specific.
        VENDOR_SPECIFIC = 0x0 => "vendor specific",
        /// T10 vendor ID based.
        T10_VENDOR_ID = 0x1 => "T10 vendor ID",
        /// EUI-64 based.
        EUI64 = 0x2 => "EUI-64",
        /// NAA (Network Address Authority).
        NAA = 0x3 => "NAA",
        /// Relative target port identifier.
        RELATIVE_TARGET_PORT = 0x4 => "relative target port",
        /// Target port group.
        TARGET_PORT_GROUP = 0x5 => "target port group",
        /// Logical unit group.
        LOGICAL_UNIT_GROUP = 0x6 => "logical unit group",
        /// MD5 logical unit identifier.
        MD5_LU_ID = 0x7 => "MD5 logical unit identifier",
        /// SCSI name string (for iSCSI: the iSCSI name, with `,t,0x..` for a port).
        SCSI_NAME_STRING = 0x8 => "SCSI name string",
        /// Protocol specific port identifier.
        PROTOCOL_SPECIFIC_PORT = 0x9 => "protocol specific port identifier",
        /// UUID identifier.
        UUID = 0xa => "UUID",
    }
}

/// One designator of the Device Identification page.
#[derive(Clone, Eq, PartialEq)]
pub struct Designator {
    /// PROTOCOL IDENTIFIER (5 is iSCSI), present when PIV is set for a port or device
    /// designator.
    pub protocol: Option<u8>,
    /// How the value is encoded.
    pub code_set: CodeSet,
    /// What the designator names.
    pub association: Association,
    /// The kind of designator.
    pub designator_type: DesignatorType,
    /// The DESIGNATOR bytes as returned.
    pub value: Vec<u8>,
}

impl Designator {
    /// The value as Linux writes it in `wwid` (see the module documentation); relative port,
    /// port group and LU group numbers in decimal, other binary values as hex.
    pub fn render(&self) -> String {
        let v = self.value.as_slice();
        if self.is_text() {
            return match self.designator_type {
                DesignatorType::T10_VENDOR_ID => format!("t10.{}", ascii_text(v)),
                _ => text(v),
            };
        }
        match (self.designator_type, v) {
            (DesignatorType::NAA, _) => format!("naa.{}", hex(v)),
            (DesignatorType::EUI64, _) => format!("eui.{}", hex(v)),
            (
                DesignatorType::RELATIVE_TARGET_PORT
                | DesignatorType::TARGET_PORT_GROUP
                | DesignatorType::LOGICAL_UNIT_GROUP,
                [_, _, hi, lo],
            ) => u16::from_be_bytes([*hi, *lo]).to_string(),
            (DesignatorType::UUID, [_, _, id @ ..]) if id.len() == 16 => uuid(id),
            _ => format!("0x{}", hex(v)),
        }
    }

    fn is_text(&self) -> bool {
        matches!(self.code_set, CodeSet::ASCII | CodeSet::UTF8)
    }

    /// Rank as a logical unit identity: lower is better, `None` when unsuitable.
    fn identity_rank(&self) -> Option<u8> {
        if self.association != Association::LOGICAL_UNIT || self.value.is_empty() {
            return None;
        }
        let naa = self.value.first().map_or(0, |b| b >> 4);
        Some(match (self.designator_type, naa) {
            (DesignatorType::NAA, 6) => 0,
            (DesignatorType::NAA, 5) => 1,
            (DesignatorType::NAA, _) => 2,
            (DesignatorType::EUI64, _) if self.value.len() >= 16 => 3,
            (DesignatorType::EUI64, _) if self.value.len() >= 12 => 4,
            (DesignatorType::EUI64, _) => 5,
            (DesignatorType::SCSI_NAME_STRING, _) => 6,
            (DesignatorType::UUID, _) => 7,
            (DesignatorType::T10_VENDOR_ID, _) => 8,
            (DesignatorType::MD5_LU_ID, _) => 9,
            _ => return None,
        })
    }
}

impl fmt::Debug for Designator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Designator")
            .field("protocol", &self.protocol)
            .field("code_set", &self.code_set)
            .field("association", &self.association)
            .field("designator_type", &self.designator_type)
            .field("value", &self.render())
            .finish()
    }
}

/// `TYPE (ASSOCIATION): VALUE`, e.g. `NAA (logical unit): naa.60000000000000000e00000000010001`.
impl fmt::Display for Designator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.designator_type,
            self.association,
            self.render()
        )
    }
}

/// The Device Identification page (0x83).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct DeviceIdentification {
    /// Every designator, in the device's order.
    pub designators: Vec<Designator>,
}

impl DeviceIdentification {
    /// Parses page 0x83.
    ///
    /// # Errors
    /// As for every VPD page (short header, wrong page, page cut short by the allocation
    /// length), and [`ParseError::Invalid`] when a designator reaches past the page end.
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        const WHAT: &str = "Device Identification page";
        let mut rest = vpd_body(WHAT, VpdPage::DEVICE_IDENTIFICATION, buf)?;
        let mut designators = Vec::new();
        while !rest.is_empty() {
            let (header, tail) =
                DesignatorHeader::ref_from_prefix(rest).map_err(|_| ParseError::Invalid {
                    what: WHAT,
                    reason: "designator header past the page end",
                })?;
            let len = usize::from(header.length);
            let value = tail.get(..len).ok_or(ParseError::Invalid {
                what: WHAT,
                reason: "designator reaches past the page end",
            })?;
            designators.push(header.designator(value));
            rest = tail.get(len..).unwrap_or_default();
        }
        Ok(DeviceIdentification { designators })
    }

    /// The designator that best identifies the logical unit across paths: one with logical
    /// unit association, preferring NAA (IEEE Registered Extended, then Registered, then
    /// others), then EUI-64 (longest first), SCSI name string, UUID, T10 vendor ID, MD5.
    /// Among equals the first listed wins.
    pub fn lu_identity(&self) -> Option<&Designator> {
        self.designators
            .iter()
            .filter_map(|d| d.identity_rank().map(|rank| (rank, d)))
            .min_by_key(|&(rank, _)| rank)
            .map(|(_, d)| d)
    }

    /// The RELATIVE TARGET PORT IDENTIFIER of the target port the page was read through
    /// (designator type 0x4 with target port association): with several sessions to one
    /// logical unit, it says which port each path uses. Found by
    /// [`TargetPortGroups::group_of_port`](super::TargetPortGroups::group_of_port).
    pub fn relative_target_port(&self) -> Option<u16> {
        self.port_number(DesignatorType::RELATIVE_TARGET_PORT)
    }

    /// The TARGET PORT GROUP of the target port the page was read through (designator type
    /// 0x5 with target port association): the group whose ALUA state applies to this path,
    /// as [`TargetPortGroups::group`](super::TargetPortGroups::group) looks it up.
    pub fn target_port_group(&self) -> Option<u16> {
        self.port_number(DesignatorType::TARGET_PORT_GROUP)
    }

    /// The SCSI name string of the target port the page was read through (designator type
    /// 0x8 with target port association); for iSCSI the target name with `,t,0x` and the
    /// target portal group tag, e.g. `iqn.2003-01.org.linux-iscsi:t1,t,0x0001`.
    pub fn target_port_name(&self) -> Option<String> {
        self.port_designators(DesignatorType::SCSI_NAME_STRING)
            .find(|d| !d.value.is_empty())
            .map(Designator::render)
    }

    /// The designators of `designator_type` naming the target port, in the page's order.
    fn port_designators(
        &self,
        designator_type: DesignatorType,
    ) -> impl Iterator<Item = &Designator> {
        self.designators.iter().filter(move |d| {
            d.association == Association::TARGET_PORT && d.designator_type == designator_type
        })
    }

    /// The 16-bit number in bytes 2..4 of the first well-formed (4-byte) target port
    /// designator of `designator_type`; bytes 0..2 are reserved or obsolete.
    fn port_number(&self, designator_type: DesignatorType) -> Option<u16> {
        self.port_designators(designator_type)
            .find_map(|d| match d.value.as_slice() {
                [_, _, hi, lo] => Some(u16::from_be_bytes([*hi, *lo])),
                _ => None,
            })
    }
}

/// Text designators are NUL-terminated and padded (SPC-5 §7.7.6.10); control characters are
/// escaped so a hostile target cannot inject them into logs.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(trim_ascii(bytes))
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn uuid(b: &[u8]) -> String {
    let (a, rest) = b.split_at(4.min(b.len()));
    let (bb, rest) = rest.split_at(2.min(rest.len()));
    let (c, rest) = rest.split_at(2.min(rest.len()));
    let (d, e) = rest.split_at(2.min(rest.len()));
    format!("{}-{}-{}-{}-{}", hex(a), hex(bb), hex(c), hex(d), hex(e))
}

/// The 4-byte designator header (SPC-5 §7.7.6.1, table 485).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, KnownLayout, Unaligned)]
struct DesignatorHeader {
    /// PROTOCOL IDENTIFIER (7:4), CODE SET (3:0).
    protocol_code_set: u8,
    /// PIV (7), ASSOCIATION (5:4), DESIGNATOR TYPE (3:0).
    piv_association_type: u8,
    reserved: u8,
    length: u8,
}

impl DesignatorHeader {
    fn designator(&self, value: &[u8]) -> Designator {
        let association = Association((self.piv_association_type >> 4) & 0x03);
        let piv = self.piv_association_type & 0x80 != 0;
        Designator {
            // PROTOCOL IDENTIFIER is defined only with PIV set and a port or device
            // association (SPC-5 §7.7.6.1).
            protocol: (piv && association != Association::LOGICAL_UNIT)
                .then_some(self.protocol_code_set >> 4),
            code_set: CodeSet(self.protocol_code_set & 0x0f),
            association,
            designator_type: DesignatorType(self.piv_association_type & 0x0f),
            value: value.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::tests_util::bytes;

    /// tgtd 1.0.85, LUN 1: INQUIRY EVPD page 0x83.
    const TGT_DEVID: &str = concat!(
        "00830048", // PQ/PDT 00 | page 83 | page length 0x48
        // ASCII | LU assoc, T10 vendor ID | length 0x24
        "02010024",
        "4945542020202020",                         // "IET     "
        "3030303130303031",                         // "00010001"
        "0000000000000000000000000000000000000000", // NUL padding
        // binary | LU assoc, NAA | length 8: NAA 3 (locally assigned)
        "01030008",
        "3000000100000001",
        // binary | LU assoc, NAA | length 16: NAA 6 (IEEE registered extended)
        "01030010",
        "60000000000000000e00000000010001",
    );

    #[test]
    fn test_parse_tgt_page() {
        let page = DeviceIdentification::parse(&bytes(TGT_DEVID)).unwrap();
        let rendered: Vec<String> = page.designators.iter().map(Designator::render).collect();
        assert_eq!(
            rendered,
            [
                "t10.IET     00010001",
                "naa.3000000100000001",
                "naa.60000000000000000e00000000010001"
            ]
        );
        assert_eq!(page.designators[0].code_set, CodeSet::ASCII);
        assert_eq!(
            page.designators[0].designator_type,
            DesignatorType::T10_VENDOR_ID
        );
        assert!(
            page.designators
                .iter()
                .all(|d| d.association == Association::LOGICAL_UNIT)
        );
        assert!(page.designators.iter().all(|d| d.protocol.is_none()));
        let id = page.lu_identity().unwrap();
        assert_eq!(id.render(), "naa.60000000000000000e00000000010001");
        assert_eq!(
            id.to_string(),
            "NAA (logical unit): naa.60000000000000000e00000000010001"
        );
    }

    /// A page as LIO writes it for an iSCSI LU (SPC-5 §7.7.6; built by hand to its layout).
    #[test]
    fn test_parse_port_designators_and_ranking() {
        let raw = bytes(concat!(
            "00830060",
            // binary | LU, EUI-64 | 8
            "01020008",
            "0011223344556677",
            // iSCSI (5) UTF-8 | PIV, target port, SCSI name | 24: "iqn.2003-01.org:t,t,0x1"
            "53980018",
            "69716e2e323030332d30312e6f72673a742c742c30783100",
            // iSCSI binary | PIV, target port, relative target port | 4
            "51940004",
            "00000002",
            // binary | target port, target port group | 4
            "01150004",
            "00000007",
            // binary | LU, LU group | 4
            "01060004",
            "00000003",
            // UTF-8 | LU, SCSI name string | 8
            "03080008",
            "6e61612e31320000",
            // binary | LU, MD5 | 16
            "01070010",
            "00112233445566778899aabbccddeeff",
        ));
        let page = DeviceIdentification::parse(&raw).unwrap();
        let d = &page.designators;
        assert_eq!(d.len(), 7);
        assert_eq!(d[1].protocol, Some(5));
        assert_eq!(d[1].association, Association::TARGET_PORT);
        assert_eq!(d[1].render(), "iqn.2003-01.org:t,t,0x1");
        assert_eq!(d[2].render(), "2");
        assert_eq!(d[3].render(), "7");
        assert_eq!(d[4].render(), "3");
        assert_eq!(d[6].render(), "0x00112233445566778899aabbccddeeff");
        // No NAA here: EUI-64 beats the SCSI name string, MD5 and the group.
        assert_eq!(page.lu_identity().unwrap().render(), "eui.0011223344556677");
        assert_eq!(page.relative_target_port(), Some(2));
        assert_eq!(page.target_port_group(), Some(7));
        assert_eq!(
            page.target_port_name().as_deref(),
            Some("iqn.2003-01.org:t,t,0x1")
        );
    }

    /// What identifies the port of a path: relative port, port group and port name are read
    /// only from target port designators, and only when well formed.
    #[test]
    fn test_port_accessors() {
        let raw = bytes(concat!(
            "00830047", // page length 71
            // binary | LU, relative target port | 4: a logical unit designator, not a port's
            "01040004",
            "00000009",
            // binary | target port, relative target port | 3: malformed, skipped
            "01140003",
            "000005",
            // iSCSI binary | PIV, target port, relative target port | 4: port 0x0102
            "51940004",
            "00000102",
            // binary | target device, target port group | 4: not the port's
            "01250004",
            "00000008",
            // binary | target port, target port group | 4: group 0x8001
            "01150004",
            "00008001",
            // UTF-8 | target device, SCSI name | 8: the target's name, not the port's
            "03280008",
            "69716e2e74000000",
            // iSCSI UTF-8 | PIV, target port, SCSI name | 16: "iqn.t,t,0x2" + NUL padding
            "53980010",
            "69716e2e742c742c3078320000000000",
        ));
        let page = DeviceIdentification::parse(&raw).unwrap();
        assert_eq!(page.relative_target_port(), Some(0x0102));
        assert_eq!(page.target_port_group(), Some(0x8001));
        assert_eq!(page.target_port_name().as_deref(), Some("iqn.t,t,0x2"));
        // tgtd's page names only the logical unit.
        let tgt = DeviceIdentification::parse(&bytes(TGT_DEVID)).unwrap();
        assert_eq!(tgt.relative_target_port(), None);
        assert_eq!(tgt.target_port_group(), None);
        assert_eq!(tgt.target_port_name(), None);
    }

    #[test]
    fn test_identity_needs_a_logical_unit_designator() {
        // Only a target-port SCSI name string: no LU identity.
        let raw = bytes("0083000c53980004616263");
        assert!(matches!(
            DeviceIdentification::parse(&raw),
            Err(ParseError::Truncated { .. })
        ));
        let page = DeviceIdentification::parse(&bytes("008300085398000461626300")).unwrap();
        assert_eq!(page.designators[0].render(), "abc");
        assert!(page.lu_identity().is_none());
    }

    #[test]
    fn test_malformed_designators() {
        // Designator length 8 but only 4 bytes left in the page.
        let raw = bytes("008300080103000830000001");
        assert!(matches!(
            DeviceIdentification::parse(&raw),
            Err(ParseError::Invalid { .. })
        ));
        // Two stray bytes after the last designator.
        let raw = bytes("0083000601030000aaaa");
        assert!(matches!(
            DeviceIdentification::parse(&raw),
            Err(ParseError::Invalid { .. })
        ));
        // Control characters in text are escaped, not passed through.
        let raw = bytes("0083000802080004610a6200");
        let page = DeviceIdentification::parse(&raw).unwrap();
        assert_eq!(page.designators[0].render(), "a\\nb");
        let uuid = Designator {
            protocol: None,
            code_set: CodeSet::BINARY,
            association: Association::LOGICAL_UNIT,
            designator_type: DesignatorType::UUID,
            value: bytes("10000123456789abcdef0123456789abcdef"),
        };
        assert_eq!(uuid.render(), "01234567-89ab-cdef-0123-456789abcdef");
    }
}
