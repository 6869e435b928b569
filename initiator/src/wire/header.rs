//! The Basic Header Segment common to every PDU (RFC 7143 §11.2.1).
//!
//! ```text
//! byte 0   .|I| opcode        byte 1  F + opcode-specific   bytes 2-3 opcode-specific
//! byte 4   TotalAHSLength     bytes 5-7 DataSegmentLength (24 bits)
//! 8-15     LUN or opcode-specific     16-19 Initiator Task Tag     20-47 opcode-specific
//! ```

use zerocopy::network_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::wire::codes::Opcode;

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;

/// Length of a CRC32C header or data digest.
pub const DIGEST_LEN: usize = 4;

/// Reserved tag value meaning "no task" / "no transfer" (RFC 7143 §11.2.1.8).
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// The fields every BHS shares, as a zerocopy view.
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
pub struct BasicHeader {
    /// `.|I|` + opcode.
    pub opcode: u8,
    /// F bit + opcode-specific flags.
    pub flags: u8,
    /// Opcode-specific.
    pub specific: [u8; 2],
    /// TotalAHSLength in 4-byte words.
    pub total_ahs_len: u8,
    /// DataSegmentLength, 24-bit big-endian.
    pub data_segment_len: [u8; 3],
    /// LUN or opcode-specific.
    pub lun: [u8; 8],
    /// Initiator Task Tag.
    pub itt: U32,
    /// Opcode-specific.
    pub rest: [u8; 28],
}

const _: () = assert!(size_of::<BasicHeader>() == BHS_LEN);

impl BasicHeader {
    /// Views a 48-byte BHS.
    pub fn from_array(bhs: &[u8; BHS_LEN]) -> BasicHeader {
        zerocopy::transmute!(*bhs)
    }

    /// The opcode (low six bits of byte 0).
    pub fn opcode(&self) -> Opcode {
        Opcode(self.opcode & 0x3f)
    }

    /// The I (immediate delivery) bit.
    pub fn immediate(&self) -> bool {
        self.opcode & 0x40 != 0
    }

    /// AHS length in bytes (TotalAHSLength × 4).
    pub fn ahs_len(&self) -> usize {
        usize::from(self.total_ahs_len) * 4
    }

    /// DataSegmentLength in bytes, without padding.
    pub fn data_len(&self) -> u32 {
        u24(self.data_segment_len)
    }

    /// The Initiator Task Tag.
    pub fn itt(&self) -> u32 {
        self.itt.get()
    }
}

/// Reads a 24-bit big-endian length.
pub(crate) fn u24(b: [u8; 3]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

/// Writes a data segment length as 24-bit big-endian. Lengths are bounded by the
/// negotiated MaxRecvDataSegmentLength (at most 2^24 - 1); anything longer is a caller bug.
pub(crate) fn to_u24(len: usize) -> [u8; 3] {
    debug_assert!(
        len < 1 << 24,
        "data segment of {len} bytes does not fit 24 bits"
    );
    let b = (len as u32).to_be_bytes();
    [b[1], b[2], b[3]]
}

/// Byte 0 of a BHS: opcode plus the I bit.
pub(crate) fn opcode_byte(opcode: Opcode, immediate: bool) -> u8 {
    opcode.0 & 0x3f | if immediate { 0x40 } else { 0 }
}

/// Returns `bit` when `on`, else 0.
pub(crate) fn flag(on: bool, bit: u8) -> u8 {
    if on { bit } else { 0 }
}

/// Bytes of zero padding after a segment of `len` bytes (RFC 7143 §11.1: 4-byte alignment).
pub fn padding(len: usize) -> usize {
    len.wrapping_neg() & 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_fields() {
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = 0x41; // I + SCSI Command
        bhs[4] = 2; // TotalAHSLength: 2 words
        bhs[5..8].copy_from_slice(&[0x01, 0x02, 0x03]); // DataSegmentLength
        bhs[16..20].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // ITT
        let h = BasicHeader::from_array(&bhs);
        assert_eq!(h.opcode(), Opcode::SCSI_COMMAND);
        assert!(h.immediate());
        assert_eq!(h.ahs_len(), 8);
        assert_eq!(h.data_len(), 0x010203);
        assert_eq!(h.itt(), 0xdead_beef);
        assert_eq!(to_u24(0x010203), [1, 2, 3]);
    }

    #[test]
    fn padding_to_four() {
        assert_eq!([0, 1, 2, 3, 4, 5].map(padding), [0, 3, 2, 1, 0, 3]);
    }
}
