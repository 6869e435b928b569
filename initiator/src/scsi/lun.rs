//! REPORT LUNS parameter data (SPC-5 §6.33.2); the LUNs are [`Lun`]s as iSCSI PDUs carry
//! them (SAM-5 §4.7).

use zerocopy::network_endian::U32;
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::ParseError;
use crate::wire::Lun;

/// REPORT LUNS parameter data.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ReportLuns {
    /// The LUNs, in the target's order.
    pub luns: Vec<Lun>,
}

impl ReportLuns {
    /// Parses REPORT LUNS data.
    ///
    /// # Errors
    /// [`ParseError::TooShort`] below the 8-byte header; [`ParseError::Invalid`] when the LUN
    /// LIST LENGTH is not a multiple of 8; [`ParseError::Truncated`] when the list is longer
    /// than what was returned (ask again with the allocation length it names).
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        const WHAT: &str = "REPORT LUNS data";
        let (header, list) =
            ReportLunsHeader::ref_from_prefix(buf).map_err(|_| ParseError::TooShort {
                what: WHAT,
                need: 8,
                have: buf.len(),
            })?;
        let len = usize::try_from(header.list_length.get()).unwrap_or(usize::MAX);
        if len % 8 != 0 {
            return Err(ParseError::Invalid {
                what: WHAT,
                reason: "LUN LIST LENGTH is not a multiple of 8",
            });
        }
        let list = list.get(..len).ok_or(ParseError::Truncated {
            what: WHAT,
            need: len.saturating_add(8),
            have: buf.len(),
        })?;
        let luns = list
            .chunks_exact(8)
            .filter_map(|c| <[u8; 8]>::try_from(c).ok())
            .map(Lun)
            .collect();
        Ok(ReportLuns { luns })
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, KnownLayout, Unaligned)]
struct ReportLunsHeader {
    list_length: U32,
    reserved: [u8; 4],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::tests_util::bytes;

    #[test]
    fn test_parse_tgt_report_luns() {
        let raw = bytes(concat!(
            "00000018",         // LUN LIST LENGTH 24: three LUNs
            "00000000",         // reserved
            "0000000000000000", // LUN 0 (tgt's controller)
            "0001000000000000", // LUN 1, peripheral addressing
            "0002000000000000", // LUN 2
        ));
        let rl = ReportLuns::parse(&raw).unwrap();
        let numbers: Vec<_> = rl.luns.iter().map(Lun::number).collect();
        assert_eq!(numbers, [Some(0), Some(1), Some(2)]);
        // Asked with allocation length 16: the header names the length to ask for.
        assert_eq!(
            ReportLuns::parse(&raw[..16]),
            Err(ParseError::Truncated {
                what: "REPORT LUNS data",
                need: 32,
                have: 16
            })
        );
        assert!(matches!(
            ReportLuns::parse(&raw[..7]),
            Err(ParseError::TooShort { .. })
        ));
        assert!(matches!(
            ReportLuns::parse(&bytes("0000000400000000aabbccdd")),
            Err(ParseError::Invalid { .. })
        ));
        assert_eq!(
            ReportLuns::parse(&bytes("0000000000000000")).unwrap().luns,
            []
        );
        // Flat space addressing (01b) for LUN 300, and a two-level LUN with no single number.
        let raw = bytes("0000001000000000412c0000000000000001000200000000");
        let numbers: Vec<_> = ReportLuns::parse(&raw)
            .unwrap()
            .luns
            .iter()
            .map(Lun::number)
            .collect();
        assert_eq!(numbers, [Some(300), None]);
    }
}
