//! The data a SCSI target returns, built from zerocopy layouts of the standards' tables:
//! standard INQUIRY (SPC-5 §6.7.2), VPD pages 0x00, 0x80, 0x83 (SPC-5 §7.7), 0xB0, 0xB1,
//! 0xB2 (SBC-4 §6.6), READ CAPACITY(10)/(16) data (SBC-4 §5.19-5.20), MODE SENSE(10) header
//! and caching page (SPC-5 §7.5, SBC-4 §6.5.5), REPORT LUNS data (SPC-5 §6.33) and
//! fixed-format sense data (SPC-5 §4.4.3).

use bytes::{BufMut, Bytes, BytesMut};
use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::{FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::config::TargetConfig;
use super::rules::SenseCode;

/// Peripheral device type of LUN 1: direct-access block device.
pub(crate) const DISK: u8 = 0x00;
/// Peripheral device type of LUN 0: storage array controller.
pub(crate) const CONTROLLER: u8 = 0x0c;
/// Qualifier 3, type 0x1f: no logical unit at this LUN (SPC-5 §6.7.2).
pub(crate) const NO_LUN: u8 = 0x7f;

/// VPD pages of the disk, in ascending order as page 0x00 lists them.
const DISK_PAGES: [u8; 6] = [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2];
/// VPD pages of the controller.
const CONTROLLER_PAGES: [u8; 3] = [0x00, 0x80, 0x83];

#[derive(FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct StandardInquiry {
    peripheral: u8,
    rmb: u8,
    version: u8,
    /// NORMACA (5), HISUP (4), RESPONSE DATA FORMAT (3:0).
    format: u8,
    additional_length: u8,
    flags5: u8,
    flags6: u8,
    /// CMDQUE (1).
    flags7: u8,
    vendor: [u8; 8],
    product: [u8; 16],
    revision: [u8; 4],
}

#[derive(FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct VpdHeader {
    peripheral: u8,
    page: u8,
    length: U16,
}

#[derive(FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct DesignatorHeader {
    /// PROTOCOL IDENTIFIER (7:4), CODE SET (3:0).
    code_set: u8,
    /// PIV (7), ASSOCIATION (5:4), DESIGNATOR TYPE (3:0).
    kind: u8,
    reserved: u8,
    length: u8,
}

#[derive(FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
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
    unmap_granularity_alignment: U32,
    max_write_same_length: U64,
    reserved: [u8; 20],
}

#[derive(FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct ReadCapacity16Data {
    last_lba: U64,
    block_length: U32,
    protection: u8,
    exponents: u8,
    /// LBPME (15), LBPRZ (14), LOWEST ALIGNED LOGICAL BLOCK ADDRESS (13:0).
    lbp_aligned: U16,
    reserved: [u8; 16],
}

#[derive(FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct ModeHeader10 {
    mode_data_length: U16,
    medium_type: u8,
    /// WP (7), DPOFUA (4).
    device_specific: u8,
    longlba: u8,
    reserved: u8,
    block_descriptor_length: U16,
}

#[derive(FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct FixedSense {
    response_code: u8,
    obsolete: u8,
    key: u8,
    information: U32,
    additional_length: u8,
    command_specific: U32,
    asc: u8,
    ascq: u8,
    fru: u8,
    sense_key_specific: [u8; 3],
}

/// Standard INQUIRY data (36 bytes) for a LUN of peripheral byte `peripheral`.
pub(crate) fn standard_inquiry(peripheral: u8) -> Bytes {
    let mut data = StandardInquiry::new_zeroed();
    data.peripheral = peripheral;
    data.version = 0x06; // SPC-4
    data.format = 0x12; // HISUP, response data format 2
    data.additional_length = (size_of::<StandardInquiry>() - 5) as u8;
    data.flags7 = 0x02; // CMDQUE
    data.vendor = pad(b"SANSHIM");
    data.product = pad(b"FAKE-TARGET");
    data.revision = pad(b"0001");
    Bytes::copy_from_slice(data.as_bytes())
}

/// A VPD page of LUN `lun` (0: controller, 1: disk), or `None` when it has no such page.
pub(crate) fn vpd(config: &TargetConfig, lun: u64, page: u8) -> Option<Bytes> {
    let (peripheral, pages): (u8, &[u8]) = if lun == 0 {
        (CONTROLLER, &CONTROLLER_PAGES)
    } else {
        (DISK, &DISK_PAGES)
    };
    if !pages.contains(&page) {
        return None;
    }
    let body = match page {
        0x00 => Bytes::copy_from_slice(pages),
        0x80 => Bytes::copy_from_slice(config.serial.as_bytes()),
        0x83 => device_identification(config, lun),
        0xb0 => block_limits(config),
        0xb1 => block_device_characteristics(),
        _ => provisioning(config),
    };
    let mut out = BytesMut::with_capacity(4 + body.len());
    let header = VpdHeader {
        peripheral,
        page,
        length: U16::new(u16::try_from(body.len()).unwrap_or(u16::MAX)),
    };
    out.put_slice(header.as_bytes());
    out.put_slice(&body);
    Some(out.freeze())
}

/// Page 0x83: an NAA IEEE Registered Extended designator (type 3, binary) and a T10
/// vendor id designator (type 1, ASCII "SANSHIM " + serial), both of the logical unit.
fn device_identification(config: &TargetConfig, lun: u64) -> Bytes {
    let mut naa = config.naa;
    if lun == 0 {
        naa[15] ^= 0xff;
    }
    let mut t10 = pad::<8>(b"SANSHIM").to_vec();
    t10.extend_from_slice(config.serial.as_bytes());
    if lun == 0 {
        t10.extend_from_slice(b"-CTL");
    }
    let mut out = BytesMut::new();
    for (code_set, kind, value) in [(0x01, 0x03, &naa[..]), (0x02, 0x01, &t10[..])] {
        let header = DesignatorHeader {
            code_set,
            kind,
            reserved: 0,
            length: u8::try_from(value.len()).unwrap_or(u8::MAX),
        };
        out.put_slice(header.as_bytes());
        out.put_slice(value.get(..usize::from(header.length)).unwrap_or(value));
    }
    out.freeze()
}

fn block_limits(config: &TargetConfig) -> Bytes {
    let mut body = BlockLimitsBody::new_zeroed();
    body.optimal_transfer_granularity = U16::new(1);
    body.max_transfer_length = U32::new(config.max_transfer_blocks);
    if config.lbpu {
        body.max_unmap_lba_count = U32::new(u32::MAX);
        body.max_unmap_descriptor_count = U32::new(256);
        body.unmap_granularity = U32::new(1);
    }
    if config.lbpws {
        body.max_write_same_length = U64::new(u64::from(u16::MAX));
    }
    Bytes::copy_from_slice(body.as_bytes())
}

/// Page 0xB1: MEDIUM ROTATION RATE 1 (non-rotating), the rest not reported.
fn block_device_characteristics() -> Bytes {
    let mut body = [0u8; 0x3c];
    body[1] = 0x01;
    Bytes::copy_from_slice(&body)
}

/// Page 0xB2: LBPU, LBPWS, LBPRZ (value 1) and provisioning type thin when either unmap
/// method is on.
fn provisioning(config: &TargetConfig) -> Bytes {
    let flags = flag(config.lbpu, 0x80) | flag(config.lbpws, 0x40) | flag(config.lbprz, 0x04);
    let thin = if config.lbpu || config.lbpws { 0x02 } else { 0 };
    Bytes::copy_from_slice(&[0, flags, thin, 0])
}

/// READ CAPACITY(10) data: the last LBA (0xFFFFFFFF when it does not fit) and block length.
pub(crate) fn read_capacity10(config: &TargetConfig) -> Bytes {
    let last = u32::try_from(config.block_count.saturating_sub(1)).unwrap_or(u32::MAX);
    let mut out = BytesMut::with_capacity(8);
    out.put_u32(last);
    out.put_u32(config.block_size);
    out.freeze()
}

/// READ CAPACITY(16) data (32 bytes) with LBPME when an unmap method is on, and LBPRZ.
pub(crate) fn read_capacity16(config: &TargetConfig) -> Bytes {
    let mut data = ReadCapacity16Data::new_zeroed();
    data.last_lba = U64::new(config.block_count.saturating_sub(1));
    data.block_length = U32::new(config.block_size);
    let lbpme = config.lbpu || config.lbpws;
    data.lbp_aligned =
        U16::new(u16::from(flag(lbpme, 0x80)) << 8 | u16::from(flag(config.lbprz, 0x40)) << 8);
    Bytes::copy_from_slice(data.as_bytes())
}

/// MODE SENSE(10) data for page `page` (0x3f: all): the header with WP and DPOFUA, no block
/// descriptors, and the caching page when configured and asked for. `None` when a page was
/// asked for that the target does not have.
pub(crate) fn mode_sense10(config: &TargetConfig, page: u8) -> Option<Bytes> {
    let caching = match (page, config.caching_page) {
        (0x08 | 0x3f, Some(wce)) => Some(wce),
        (0x3f, None) => None,
        _ => return None,
    };
    let mut pages = BytesMut::new();
    if let Some(wce) = caching {
        let mut page = [0u8; 20];
        page[0] = 0x08;
        page[1] = 0x12;
        page[2] = flag(wce, 0x04);
        pages.put_slice(&page);
    }
    let mut header = ModeHeader10::new_zeroed();
    header.mode_data_length = U16::new((size_of::<ModeHeader10>() - 2 + pages.len()) as u16);
    header.device_specific = flag(config.write_protect, 0x80) | flag(config.dpofua, 0x10);
    let mut out = BytesMut::with_capacity(8 + pages.len());
    out.put_slice(header.as_bytes());
    out.put_slice(&pages);
    Some(out.freeze())
}

/// REPORT LUNS data listing LUN 0 and LUN 1 (single-level peripheral addressing).
pub(crate) fn report_luns() -> Bytes {
    let mut out = BytesMut::with_capacity(24);
    out.put_u32(16);
    out.put_u32(0);
    out.put_u64(0);
    out.put_u64(0x0001_0000_0000_0000);
    out.freeze()
}

/// The data segment of a SCSI Response carrying sense (RFC 7143 §11.4.7.2): SenseLength,
/// then 18 bytes of fixed-format sense data (response code 0x70, current error).
pub(crate) fn sense_segment(sense: SenseCode) -> Bytes {
    let mut data = FixedSense::new_zeroed();
    data.response_code = 0x70;
    data.key = sense.key.0 & 0x0f;
    data.additional_length = (size_of::<FixedSense>() - 8) as u8;
    data.asc = sense.asc;
    data.ascq = sense.ascq;
    let mut out = BytesMut::with_capacity(2 + size_of::<FixedSense>());
    out.put_u16(size_of::<FixedSense>() as u16);
    out.put_slice(data.as_bytes());
    out.freeze()
}

/// `text` padded with spaces to `N` bytes (SPC-5 ASCII fields), cut if longer.
fn pad<const N: usize>(text: &[u8]) -> [u8; N] {
    let mut out = [b' '; N];
    for (dst, src) in out.iter_mut().zip(text) {
        *dst = *src;
    }
    out
}

fn flag(on: bool, bit: u8) -> u8 {
    if on { bit } else { 0 }
}

#[cfg(test)]
mod tests {
    use sanshim_initiator::scsi::{
        BlockLimits, DeviceIdentification, LogicalBlockProvisioning, ModeSense10, ReadCapacity16,
        ReportLuns, Sense, SenseKey, StandardInquiry as Inquiry, SupportedVpdPages,
        UnitSerialNumber,
    };

    use super::*;

    #[test]
    fn pages_parse_with_the_initiator_parsers() {
        let c = TargetConfig {
            max_transfer_blocks: 128,
            ..TargetConfig::default()
        };
        let inq = Inquiry::parse(&standard_inquiry(DISK)).unwrap();
        assert_eq!(
            (inq.vendor.as_str(), inq.product.as_str()),
            ("SANSHIM", "FAKE-TARGET")
        );
        assert!(inq.command_queuing);
        let pages = SupportedVpdPages::parse(&vpd(&c, 1, 0).unwrap()).unwrap();
        assert_eq!(pages.pages.len(), 6);
        let serial = UnitSerialNumber::parse(&vpd(&c, 1, 0x80).unwrap()).unwrap();
        assert_eq!(serial.serial, "SANSHIM0001");
        let id = DeviceIdentification::parse(&vpd(&c, 1, 0x83).unwrap()).unwrap();
        assert_eq!(id.designators.len(), 2);
        assert_eq!(id.lu_identity().unwrap().value, c.naa.to_vec());
        let bl = BlockLimits::parse(&vpd(&c, 1, 0xb0).unwrap()).unwrap();
        assert_eq!(bl.max_transfer_length, 128);
        assert!(!bl.short_form);
        let lbp = LogicalBlockProvisioning::parse(&vpd(&c, 1, 0xb2).unwrap()).unwrap();
        assert!(lbp.lbpu && lbp.lbpws && lbp.reads_zeroes_after_unmap());
        assert!(vpd(&c, 0, 0xb0).is_none());
        let rc = ReadCapacity16::parse(&read_capacity16(&c)).unwrap();
        assert_eq!(
            (rc.blocks, rc.block_length, rc.lbpme, rc.lbprz),
            (32_768, 512, true, true)
        );
        let ms = ModeSense10::parse(&mode_sense10(&c, 0x3f).unwrap()).unwrap();
        assert!(ms.dpofua && !ms.write_protected);
        assert!(ms.caching().unwrap().write_cache_enabled);
        let luns = ReportLuns::parse(&report_luns()).unwrap();
        let numbers: Vec<_> = luns.luns.iter().map(|l| l.number()).collect();
        assert_eq!(numbers, vec![Some(0), Some(1)]);
        let sense = Sense::from_response_data(&sense_segment(SenseCode::POWER_ON_RESET));
        let sense = sense.unwrap().unwrap();
        assert_eq!(
            (sense.key, sense.asc, sense.ascq),
            (SenseKey::UNIT_ATTENTION, 0x29, 0)
        );
    }

    #[test]
    fn mode_sense_without_caching_page() {
        let c = TargetConfig {
            caching_page: None,
            write_protect: true,
            ..TargetConfig::default()
        };
        assert!(mode_sense10(&c, 0x08).is_none());
        let ms = ModeSense10::parse(&mode_sense10(&c, 0x3f).unwrap()).unwrap();
        assert!(ms.write_protected && ms.pages.is_empty());
    }
}
