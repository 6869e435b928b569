//! Sense data (SPC-5 §4.4: fixed format §4.4.3, descriptor format §4.4.2), the sense carried
//! in an iSCSI SCSI Response (RFC 7143 §11.4.7.2), and what a sense means to the block layer.

use std::fmt;

use sanshim_blockdev::{BlockError, ErrorKind};
use zerocopy::network_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{AscAscq, ParseError, SenseKey};

/// Decoded sense data: what a CHECK CONDITION reports.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Sense {
    /// SENSE KEY: the class of the condition.
    pub key: SenseKey,
    /// ADDITIONAL SENSE CODE.
    pub asc: u8,
    /// ADDITIONAL SENSE CODE QUALIFIER.
    pub ascq: u8,
    /// INFORMATION (for a medium error: usually the first failing LBA), when stated valid.
    pub info: Option<u64>,
    /// The sense reports an earlier command (response code 0x71 or 0x73), not this one.
    pub deferred: bool,
}

impl Sense {
    /// Parses sense data in fixed (0x70/0x71) or descriptor (0x72/0x73) format. Fields past
    /// the ADDITIONAL SENSE LENGTH, or past the returned bytes, read as zero; a malformed
    /// descriptor ends the walk through descriptors without failing the whole sense.
    ///
    /// # Errors
    /// [`ParseError::TooShort`] without the sense key (and, for descriptor format, ASC and
    /// ASCQ); [`ParseError::UnknownSenseFormat`] for any other response code.
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        let Some(&first) = buf.first() else {
            return Err(ParseError::TooShort {
                what: "sense data",
                need: 1,
                have: 0,
            });
        };
        match first & 0x7f {
            0x70 | 0x71 => parse_fixed(buf),
            0x72 | 0x73 => parse_descriptor(buf),
            code => Err(ParseError::UnknownSenseFormat(code)),
        }
    }

    /// Extracts the sense from the data segment of an iSCSI SCSI Response: a 2-byte
    /// big-endian SenseLength, then that many bytes of sense data (RFC 7143 §11.4.7.2).
    /// `Ok(None)` when the segment is empty or SenseLength is zero.
    ///
    /// # Errors
    /// [`ParseError::TooShort`] for a 1-byte segment, [`ParseError::Truncated`] when
    /// SenseLength reaches past the segment, and anything [`Sense::parse`] returns.
    pub fn from_response_data(segment: &[u8]) -> Result<Option<Self>, ParseError> {
        const WHAT: &str = "SCSI Response sense data";
        let (len, sense) = match segment {
            [] => return Ok(None),
            [hi, lo, rest @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
            [_] => {
                return Err(ParseError::TooShort {
                    what: WHAT,
                    need: 2,
                    have: 1,
                });
            }
        };
        if len == 0 {
            return Ok(None);
        }
        let sense = sense.get(..len).ok_or(ParseError::Truncated {
            what: WHAT,
            need: len + 2,
            have: segment.len(),
        })?;
        Sense::parse(sense).map(Some)
    }

    /// ASC and ASCQ as one value.
    pub fn additional(&self) -> AscAscq {
        AscAscq::new(self.asc, self.ascq)
    }

    /// RECOVERED ERROR: the command completed; the sense is for information.
    pub fn is_recovered(&self) -> bool {
        self.key == SenseKey::RECOVERED_ERROR
    }

    /// Whether the same command may succeed if sent again on the same path: any UNIT
    /// ATTENTION (reset, parameters or capacity changed — the caller may want to re-read
    /// what changed), NOT READY while the unit becomes ready or an ALUA transition is under
    /// way, and ABORTED COMMAND other than protection information failures.
    pub fn is_retryable(&self) -> bool {
        match self.key {
            SenseKey::UNIT_ATTENTION => true,
            SenseKey::NOT_READY => {
                self.asc == 0x04
                    && matches!(self.ascq, 0x01 | 0x04..=0x0a | 0x13 | 0x14 | 0x1a | 0x1b)
            }
            SenseKey::ABORTED_COMMAND => self.asc != 0x10,
            _ => false,
        }
    }

    /// NOT READY because of the target port's ALUA state: transitioning (0x04/0x0a), standby
    /// (0x04/0x0b) or unavailable (0x04/0x0c).
    pub fn is_port_unavailable(&self) -> bool {
        self.key == SenseKey::NOT_READY && self.asc == 0x04 && matches!(self.ascq, 0x0a..=0x0c)
    }

    /// What the condition means to the block layer:
    ///
    /// - `Medium`: MEDIUM ERROR; ABORTED COMMAND with ASC 0x10 (a protection information
    ///   check failed).
    /// - `NoSpace`: DATA PROTECT with SPACE ALLOCATION FAILED WRITE PROTECT (0x27/0x07).
    /// - `ReadOnly`: any other DATA PROTECT (WRITE PROTECTED ...).
    /// - `OutOfRange`: ILLEGAL REQUEST with LOGICAL BLOCK ADDRESS OUT OF RANGE (0x21/xx).
    /// - `Unsupported`: ILLEGAL REQUEST with INVALID COMMAND OPERATION CODE (0x20/0x00) or
    ///   INVALID FIELD IN CDB (0x24/0x00) — the CDBs built here are valid, so the target
    ///   lacks an option such as FUA or UNMAP.
    /// - `InvalidRequest`: any other ILLEGAL REQUEST.
    /// - `NotPresent`: ILLEGAL REQUEST with LOGICAL UNIT NOT SUPPORTED (0x25: the LUN was
    ///   unmapped or masked). A device error, as Linux's `BLK_STS_TARGET` for it: an array
    ///   that stops presenting a LUN does so on all of its ports, and failing over on it
    ///   would go round the paths for ever.
    /// - `PathFailure`: UNIT ATTENTION; other ABORTED COMMAND (transport trouble). Another
    ///   path may do better.
    /// - `PortUnavailable`: NOT READY for an ALUA transition or a standby or unavailable port
    ///   (0x04/0x0a..=0x0c): the port did not execute the command; another path may.
    /// - `TargetFailure`: HARDWARE ERROR, other NOT READY, and everything else.
    ///
    /// RECOVERED ERROR is not an error (see [`Sense::is_recovered`]); it maps to
    /// `TargetFailure` only because every sense must map to something.
    pub fn error_kind(&self) -> ErrorKind {
        match self.key {
            SenseKey::MEDIUM_ERROR => ErrorKind::Medium,
            SenseKey::DATA_PROTECT if self.additional() == NO_SPACE => ErrorKind::NoSpace,
            SenseKey::DATA_PROTECT => ErrorKind::ReadOnly,
            SenseKey::ILLEGAL_REQUEST => match (self.asc, self.ascq) {
                (0x21, _) => ErrorKind::OutOfRange,
                (0x20, 0x00) | (0x24, 0x00) => ErrorKind::Unsupported,
                (0x25, _) => ErrorKind::NotPresent,
                _ => ErrorKind::InvalidRequest,
            },
            SenseKey::NOT_READY if self.is_port_unavailable() => ErrorKind::PortUnavailable,
            SenseKey::ABORTED_COMMAND if self.asc == 0x10 => ErrorKind::Medium,
            SenseKey::UNIT_ATTENTION | SenseKey::ABORTED_COMMAND => ErrorKind::PathFailure,
            _ => ErrorKind::TargetFailure,
        }
    }

    /// A [`BlockError`] of [`Sense::error_kind`], its context the ASC/ASCQ name (or the sense
    /// key name when the pair is unknown).
    pub fn to_block_error(&self) -> BlockError {
        let context = self
            .additional()
            .name()
            .filter(|_| self.additional() != AscAscq::NO_ADDITIONAL_SENSE)
            .or_else(|| self.key.name())
            .unwrap_or("unrecognised SCSI sense");
        BlockError::new(self.error_kind(), context)
    }
}

/// `KEY: ASC NAME (0xAA/0xQQ)`, e.g.
/// `ILLEGAL REQUEST: LOGICAL BLOCK ADDRESS OUT OF RANGE (0x21/0x00)`; `(deferred)` appended
/// for a deferred error.
impl fmt::Display for Sense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.additional())?;
        if self.deferred {
            f.write_str(" (deferred)")?;
        }
        Ok(())
    }
}

const NO_SPACE: AscAscq = AscAscq::SPACE_ALLOCATION_FAILED_WRITE_PROTECT;
const INFORMATION_DESCRIPTOR: u8 = 0x00;

fn parse_fixed(buf: &[u8]) -> Result<Sense, ParseError> {
    if buf.len() < 3 {
        return Err(ParseError::TooShort {
            what: "fixed format sense data",
            need: 3,
            have: buf.len(),
        });
    }
    let raw = zero_extended::<FixedSense>(buf, 7);
    let valid_info = raw.response_code & 0x80 != 0 && buf.len() >= 7;
    Ok(Sense {
        key: SenseKey(raw.flags & 0x0f),
        asc: raw.asc,
        ascq: raw.ascq,
        info: valid_info.then(|| u64::from(raw.information.get())),
        deferred: raw.response_code & 0x7f == 0x71,
    })
}

fn parse_descriptor(buf: &[u8]) -> Result<Sense, ParseError> {
    if buf.len() < 4 {
        return Err(ParseError::TooShort {
            what: "descriptor format sense data",
            need: 4,
            have: buf.len(),
        });
    }
    let raw = zero_extended::<DescriptorSenseHeader>(buf, 7);
    let end = (8 + usize::from(raw.additional_length)).min(buf.len());
    let mut rest = buf.get(8..end).unwrap_or_default();
    let mut info = None;
    while let [kind, len, tail @ ..] = rest {
        let Some(body) = tail.get(..usize::from(*len)) else {
            break;
        };
        if *kind == INFORMATION_DESCRIPTOR {
            if let Ok((d, _)) = InformationDescriptor::ref_from_prefix(body) {
                info = (d.valid & 0x80 != 0).then(|| d.information.get());
            }
        }
        rest = tail.get(usize::from(*len)..).unwrap_or_default();
    }
    Ok(Sense {
        key: SenseKey(raw.key & 0x0f),
        asc: raw.asc,
        ascq: raw.ascq,
        info,
        deferred: raw.response_code & 0x7f == 0x73,
    })
}

/// Reads `T` from the start of `buf`, taking no more than the sense's own declared length
/// (ADDITIONAL SENSE LENGTH at `len_at`, plus the bytes before it) and zero-filling the rest.
fn zero_extended<T: FromBytes + IntoBytes>(buf: &[u8], len_at: usize) -> T {
    let declared = buf
        .get(len_at)
        .map_or(buf.len(), |&n| len_at + 1 + usize::from(n));
    let n = buf.len().min(declared).min(size_of::<T>());
    let mut raw = T::new_zeroed();
    if let (Some(dst), Some(src)) = (raw.as_mut_bytes().get_mut(..n), buf.get(..n)) {
        dst.copy_from_slice(src);
    }
    raw
}

/// Fixed format sense data (SPC-5 §4.4.3, table 51).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
struct FixedSense {
    /// VALID (7), RESPONSE CODE (6:0).
    response_code: u8,
    obsolete: u8,
    /// FILEMARK (7), EOM (6), ILI (5), SDAT_OVFL (4), SENSE KEY (3:0).
    flags: u8,
    information: U32,
    additional_length: u8,
    command_specific: U32,
    asc: u8,
    ascq: u8,
    fru: u8,
    sense_key_specific: [u8; 3],
}

/// Descriptor format sense data header (SPC-5 §4.4.2, table 28).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
struct DescriptorSenseHeader {
    response_code: u8,
    /// SENSE KEY (3:0).
    key: u8,
    asc: u8,
    ascq: u8,
    /// SDAT_OVFL (7).
    flags: u8,
    reserved: [u8; 2],
    additional_length: u8,
}

/// Information sense data descriptor body, after type and length (SPC-5 §4.4.2.2, table 31).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, Immutable, KnownLayout, Unaligned)]
struct InformationDescriptor {
    /// VALID (7).
    valid: u8,
    reserved: u8,
    information: U64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::tests_util::bytes;

    /// Data segments of SCSI Response PDUs from tgtd 1.0.85 after CHECK CONDITION.
    fn tgt_segment(key: &str, asc: &str) -> Vec<u8> {
        bytes(&format!(
            "{}{}{}{}{}{}{}{}{}",
            "0012",     // SenseLength 18
            "70",       // VALID 0 | current, fixed format
            "00",       // obsolete
            key,        // SENSE KEY
            "00000000", // INFORMATION
            "0a",       // ADDITIONAL SENSE LENGTH 10
            "00000000", // COMMAND-SPECIFIC INFORMATION
            asc,        // ASC, ASCQ
            "00000000", // FRU, SENSE-KEY SPECIFIC
        ))
    }

    #[test]
    fn test_parse_tgt_lba_out_of_range() {
        // READ(10) at LBA 0x10000 of a 0x10000-block LUN
        let sense = Sense::from_response_data(&tgt_segment("05", "2100"))
            .unwrap()
            .unwrap();
        assert_eq!(sense.key, SenseKey::ILLEGAL_REQUEST);
        assert_eq!(sense.additional(), AscAscq::LBA_OUT_OF_RANGE);
        assert_eq!((sense.info, sense.deferred), (None, false));
        assert_eq!(
            sense.to_string(),
            "ILLEGAL REQUEST: LOGICAL BLOCK ADDRESS OUT OF RANGE (0x21/0x00)"
        );
        assert_eq!(sense.error_kind(), ErrorKind::OutOfRange);
        assert!(!sense.is_retryable());
        let err = sense.to_block_error();
        assert_eq!(err.kind(), ErrorKind::OutOfRange);
        assert_eq!(err.context(), "LOGICAL BLOCK ADDRESS OUT OF RANGE");
    }

    #[test]
    fn test_parse_tgt_conditions() {
        // (key, asc/ascq) as tgtd returned them, and what they mean.
        let cases = [
            // first command of a new session: POWER ON, RESET
            ("06", "2900", ErrorKind::PathFailure, true),
            // WRITE(10) to a readonly=1 LUN
            ("07", "2700", ErrorKind::ReadOnly, false),
            // INQUIRY with EVPD 0 and a page code
            ("05", "2400", ErrorKind::Unsupported, false),
            // opcode 0xee
            ("05", "2000", ErrorKind::Unsupported, false),
        ];
        for (key, asc, kind, retry) in cases {
            let sense = Sense::from_response_data(&tgt_segment(key, asc))
                .unwrap()
                .unwrap();
            assert_eq!(sense.error_kind(), kind, "{sense}");
            assert_eq!(sense.is_retryable(), retry, "{sense}");
        }
        let ua = Sense::from_response_data(&tgt_segment("06", "2900"))
            .unwrap()
            .unwrap();
        assert_eq!(
            ua.to_string(),
            "UNIT ATTENTION: POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (0x29/0x00)"
        );
    }

    #[test]
    fn test_parse_fixed_info_and_deferred() {
        let raw = bytes(concat!(
            "f1", // VALID | deferred, fixed format
            "00", "03",       // MEDIUM ERROR
            "00123456", // INFORMATION: failing LBA
            "0a", "00000000", "1100", // UNRECOVERED READ ERROR
            "00000000",
        ));
        let sense = Sense::parse(&raw).unwrap();
        assert_eq!(sense.info, Some(0x12_3456));
        assert!(sense.deferred);
        assert_eq!(sense.error_kind(), ErrorKind::Medium);
        assert_eq!(
            sense.to_string(),
            "MEDIUM ERROR: UNRECOVERED READ ERROR (0x11/0x00) (deferred)"
        );
        // Short fixed sense: key only, ADDITIONAL SENSE LENGTH 0 hides stale ASC bytes.
        let short = Sense::parse(&bytes("70000200000000002104")).unwrap();
        assert_eq!(
            (short.key, short.asc, short.ascq),
            (SenseKey::NOT_READY, 0, 0)
        );
        assert_eq!(
            short.to_string(),
            "NOT READY: NO ADDITIONAL SENSE INFORMATION (0x00/0x00)"
        );
        assert_eq!(short.to_block_error().context(), "NOT READY");
        let three = Sense::parse(&bytes("700004")).unwrap();
        assert_eq!(three.key, SenseKey::HARDWARE_ERROR);
        assert_eq!(three.error_kind(), ErrorKind::TargetFailure);
    }

    #[test]
    fn test_parse_descriptor_format() {
        let raw = bytes(concat!(
            "72",   // current, descriptor format
            "05",   // ILLEGAL REQUEST
            "2100", // LBA OUT OF RANGE
            "000000",
            "0c", // ADDITIONAL SENSE LENGTH 12
            "00", // information descriptor
            "0a", // ADDITIONAL LENGTH 10
            "80", // VALID
            "00",
            "0000000123456789",
        ));
        let sense = Sense::parse(&raw).unwrap();
        assert_eq!(sense.key, SenseKey::ILLEGAL_REQUEST);
        assert_eq!(sense.info, Some(0x1_2345_6789));
        assert!(!sense.deferred);
        // Deferred, a non-information descriptor first, then a malformed one.
        let raw = bytes("73060401000000080202aaaa05ff00");
        let sense = Sense::parse(&raw).unwrap();
        assert_eq!(sense.key, SenseKey::UNIT_ATTENTION);
        assert_eq!(sense.additional(), AscAscq::new(0x04, 0x01));
        assert!(sense.deferred && sense.info.is_none());
        assert!(matches!(
            Sense::parse(&bytes("720506")),
            Err(ParseError::TooShort { .. })
        ));
    }

    #[test]
    fn test_response_segment_edges() {
        assert_eq!(Sense::from_response_data(&[]), Ok(None));
        assert_eq!(Sense::from_response_data(&[0, 0]), Ok(None));
        assert!(matches!(
            Sense::from_response_data(&[0]),
            Err(ParseError::TooShort { .. })
        ));
        assert_eq!(
            Sense::from_response_data(&bytes("0012700005")),
            Err(ParseError::Truncated {
                what: "SCSI Response sense data",
                need: 20,
                have: 5
            })
        );
        assert_eq!(
            Sense::from_response_data(&bytes("00027f00")),
            Err(ParseError::UnknownSenseFormat(0x7f))
        );
        assert!(matches!(
            Sense::parse(&[]),
            Err(ParseError::TooShort { .. })
        ));
    }

    #[test]
    fn error_mapping_table() {
        let s = |key: SenseKey, asc: u8, ascq: u8| Sense {
            key,
            asc,
            ascq,
            info: None,
            deferred: false,
        };
        let cases = [
            (
                s(SenseKey::HARDWARE_ERROR, 0x44, 0),
                ErrorKind::TargetFailure,
                false,
            ),
            (
                s(SenseKey::DATA_PROTECT, 0x27, 0x07),
                ErrorKind::NoSpace,
                false,
            ),
            (
                s(SenseKey::ILLEGAL_REQUEST, 0x25, 0),
                ErrorKind::NotPresent,
                false,
            ),
            (
                s(SenseKey::ILLEGAL_REQUEST, 0x26, 0),
                ErrorKind::InvalidRequest,
                false,
            ),
            (
                s(SenseKey::NOT_READY, 0x04, 0x01),
                ErrorKind::TargetFailure,
                true,
            ),
            (
                s(SenseKey::NOT_READY, 0x04, 0x0a),
                ErrorKind::PortUnavailable,
                true,
            ),
            (
                s(SenseKey::NOT_READY, 0x04, 0x0b),
                ErrorKind::PortUnavailable,
                false,
            ),
            (
                s(SenseKey::NOT_READY, 0x3a, 0x00),
                ErrorKind::TargetFailure,
                false,
            ),
            (
                s(SenseKey::UNIT_ATTENTION, 0x2a, 0x09),
                ErrorKind::PathFailure,
                true,
            ),
            (
                s(SenseKey::UNIT_ATTENTION, 0x3f, 0x0e),
                ErrorKind::PathFailure,
                true,
            ),
            (
                s(SenseKey::ABORTED_COMMAND, 0x47, 0x03),
                ErrorKind::PathFailure,
                true,
            ),
            (
                s(SenseKey::ABORTED_COMMAND, 0x10, 0x01),
                ErrorKind::Medium,
                false,
            ),
            (
                s(SenseKey::MEDIUM_ERROR, 0x0c, 0x00),
                ErrorKind::Medium,
                false,
            ),
        ];
        for (sense, kind, retry) in cases {
            assert_eq!(sense.error_kind(), kind, "{sense}");
            assert_eq!(sense.is_retryable(), retry, "{sense}");
        }
        assert!(s(SenseKey::RECOVERED_ERROR, 0x17, 0).is_recovered());
        assert_eq!(
            s(SenseKey::DATA_PROTECT, 0x27, 0x07)
                .to_block_error()
                .context(),
            "SPACE ALLOCATION FAILED WRITE PROTECT"
        );
        assert_eq!(
            s(SenseKey(0x0c), 0x99, 0x99).to_string(),
            "0x0c: vendor-specific (0x99/0x99)"
        );
    }
}
