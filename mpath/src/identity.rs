//! Which LU a path reaches (SPC-5 §7.7.6 device identification VPD page): the key paths are
//! grouped by, and the refusal to treat paths to different LUs as one device — writing one
//! LU's data to another is the data loss LUN-masking mistakes cause in the field.
//!
//! Preference (`DeviceIdentification::lu_identity`): NAA IEEE Registered Extended, NAA
//! Registered, other NAA, EUI-64, SCSI name string, then the others; a T10 vendor ID
//! designator identifies a LU only together with the unit serial number (VPD 0x80).

use sanshim_initiator::inspect::LunReport;
use sanshim_initiator::scsi::DesignatorType;

/// Why paths cannot form one device.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// No path was given.
    #[error("no path given")]
    NoPaths,
    /// A path's LU has no usable identity (no VPD 0x83 designator, or a T10 vendor ID
    /// without a unit serial number).
    #[error(
        "path {path} ({name}) reports no LU identity (VPD 0x83): cannot tell it is the same LU"
    )]
    NoIdentity {
        /// 1-based path number.
        path: usize,
        /// The path's name.
        name: String,
    },
    /// Two paths reach different LUs.
    #[error(
        "path {path} ({name}) reports LU identity {identity} but path 1 ({first_name}) reports \
         {first}: not paths to one LU"
    )]
    DifferentLu {
        /// 1-based number of the path that differs.
        path: usize,
        /// Its name.
        name: String,
        /// Its identity.
        identity: String,
        /// The first path's name.
        first_name: String,
        /// The first path's identity.
        first: String,
    },
    /// Two paths report the same identity but a different size or block size.
    #[error(
        "path {path} ({name}) reports {blocks} blocks of {block_size} bytes, path 1 reports \
         {first_blocks} of {first_block_size}: refusing an LU whose shape depends on the path"
    )]
    DifferentShape {
        /// 1-based number of the path that differs.
        path: usize,
        /// Its name.
        name: String,
        /// Its block count.
        blocks: u64,
        /// Its block size.
        block_size: u32,
        /// The first path's block count.
        first_blocks: u64,
        /// The first path's block size.
        first_block_size: u32,
    },
}

/// The identity key of the LU a report describes, or `None` when it has none usable.
pub fn identity(report: &LunReport) -> Option<String> {
    let d = report.identity()?;
    let key = d.render();
    if d.designator_type == DesignatorType::T10_VENDOR_ID {
        let serial = report.serial.as_deref().filter(|s| !s.is_empty())?;
        return Some(format!("{key} serial {serial}"));
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use sanshim_initiator::scsi::{
        Association, CodeSet, Designator, DeviceIdentification, StandardInquiry,
    };

    use super::*;

    fn report(designators: Vec<Designator>, serial: Option<&str>) -> LunReport {
        LunReport {
            lun: 1,
            inquiry: StandardInquiry::parse(&inquiry()).unwrap(),
            serial: serial.map(str::to_owned),
            identification: Some(DeviceIdentification { designators }),
            capacity: None,
            write_protected: None,
            fua: None,
            characteristics: None,
            block_limits: None,
            provisioning: None,
            alua: None,
        }
    }

    /// Standard INQUIRY data of a direct-access device: type 0, ADDITIONAL LENGTH 31.
    fn inquiry() -> [u8; 36] {
        let mut data = [0u8; 36];
        data[4] = 31;
        data
    }

    fn designator(designator_type: DesignatorType, code_set: CodeSet, value: &[u8]) -> Designator {
        Designator {
            protocol: None,
            code_set,
            association: Association::LOGICAL_UNIT,
            designator_type,
            value: value.to_vec(),
        }
    }

    #[test]
    fn naa_registered_extended_wins() {
        let naa5 = designator(
            DesignatorType::NAA,
            CodeSet::BINARY,
            &[0x50, 1, 2, 3, 4, 5, 6, 7],
        );
        let mut naa6 = vec![0x60];
        naa6.extend_from_slice(&[0xab; 15]);
        let naa6 = designator(DesignatorType::NAA, CodeSet::BINARY, &naa6);
        let t10 = designator(
            DesignatorType::T10_VENDOR_ID,
            CodeSet::ASCII,
            b"IET     00010001",
        );
        let r = report(vec![t10, naa5, naa6], Some("beaf11"));
        assert_eq!(identity(&r).unwrap(), format!("naa.60{}", "ab".repeat(15)));
    }

    #[test]
    fn t10_vendor_id_needs_the_serial() {
        let t10 = designator(
            DesignatorType::T10_VENDOR_ID,
            CodeSet::ASCII,
            b"IET     00010001",
        );
        let with = report(vec![t10.clone()], Some("beaf11"));
        let other = report(vec![t10.clone()], Some("beaf12"));
        assert!(identity(&with).unwrap().ends_with("serial beaf11"));
        assert_ne!(identity(&with), identity(&other));
        assert_eq!(identity(&report(vec![t10], None)), None);
        assert_eq!(identity(&report(vec![], Some("x"))), None);
    }
}
