//! PDU framing on a byte stream (RFC 7143 §11.1-§11.2): BHS, AHS, optional CRC32C header
//! digest, data segment padded to 4 bytes, optional CRC32C data digest (RFC 7143 §13.1).
//!
//! Decoding is incremental: `Ok(None)` means "need more bytes" and nothing is consumed until
//! a whole PDU is buffered. The data segment length is checked against our
//! MaxRecvDataSegmentLength before anything is reserved for it.
//!
//! Digests are CRC32C (Castagnoli) over the BHS+AHS, resp. the data segment including its
//! padding, sent least significant byte first (RFC 3720 Appendix B.4 shows the 32 zero
//! bytes vector as `aa 36 91 8a` on the wire, i.e. the value 0x8a9136aa).

use core::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::codes::Opcode;
use crate::wire::error::{DecodeError, InvalidPdu, Role};
use crate::wire::header::{BHS_LEN, BasicHeader, DIGEST_LEN, padding};
use crate::wire::pdu::{Pdu, check_header_lengths};

/// MaxRecvDataSegmentLength before (and during) login: RFC 7143 §13.12 default.
pub const DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH: u32 = 8192;

/// Framing parameters of one connection (negotiated HeaderDigest, DataDigest and our
/// declared MaxRecvDataSegmentLength).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Codec {
    /// Whether PDUs carry a CRC32C header digest.
    pub header_digest: bool,
    /// Whether PDUs with a data segment carry a CRC32C data digest.
    pub data_digest: bool,
    /// Largest data segment we accept.
    pub max_recv_data_segment_length: u32,
}

/// Where the parts of a PDU lie, learned from its header alone.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct HeaderInfo {
    /// The BHS.
    pub bhs: [u8; BHS_LEN],
    /// The opcode.
    pub opcode: Opcode,
    /// AHS length in bytes (follows the BHS).
    pub ahs_len: usize,
    /// BHS + AHS + header digest: the offset of the data segment.
    pub header_len: usize,
    /// DataSegmentLength, without padding.
    pub data_len: usize,
    /// Length of the whole PDU: header, data, padding and data digest.
    pub total_len: usize,
    /// Whether a data digest follows the padded data segment.
    pub has_data_digest: bool,
}

impl HeaderInfo {
    /// Byte range of the data segment within the PDU.
    pub fn data_range(&self) -> Range<usize> {
        self.header_len..self.header_len + self.data_len
    }

    /// Byte range of the data digest within the PDU, if it has one.
    pub fn data_digest_range(&self) -> Option<Range<usize>> {
        self.has_data_digest
            .then(|| self.total_len - DIGEST_LEN..self.total_len)
    }

    /// Byte range of the AHS within the PDU.
    pub fn ahs_range(&self) -> Range<usize> {
        BHS_LEN..BHS_LEN + self.ahs_len
    }
}

/// A PDU encoded as three buffers for one vectored write: header (BHS, AHS, header
/// digest), the data segment itself (shared, not copied) and the trailer (padding and data
/// digest).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct EncodedPdu {
    /// BHS, AHS and header digest.
    pub header: Bytes,
    /// The data segment.
    pub data: Bytes,
    /// Padding and data digest (at most 7 bytes).
    pub trailer: Bytes,
}

impl EncodedPdu {
    /// Total length on the wire.
    pub fn len(&self) -> usize {
        self.header.len() + self.data.len() + self.trailer.len()
    }

    /// Never true: a PDU has at least its 48-byte BHS.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Codec {
    fn default() -> Self {
        Self::new()
    }
}

impl Codec {
    /// No digests and the 8192-byte MaxRecvDataSegmentLength that applies during login.
    pub fn new() -> Codec {
        Codec {
            header_digest: false,
            data_digest: false,
            max_recv_data_segment_length: DEFAULT_MAX_RECV_DATA_SEGMENT_LENGTH,
        }
    }

    /// Decodes one PDU sent by a target; see [`Codec::decode_as`].
    ///
    /// # Errors
    /// As [`Codec::decode_as`].
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Pdu>, DecodeError> {
        self.decode_as(buf, Role::Initiator)
    }

    /// Decodes one PDU from the front of `buf`, for an end playing `local`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold a whole PDU; nothing is consumed
    /// then, but `buf` may have been given room for the rest of the PDU.
    ///
    /// # Errors
    /// - [`DecodeError::HeaderDigest`], [`DecodeError::TooLong`], or
    ///   [`InvalidPdu::WrongDirection`], [`InvalidPdu::UnexpectedAhs`] and
    ///   [`InvalidPdu::UnexpectedData`] (from the header alone): nothing is consumed, and the
    ///   stream cannot be trusted further.
    /// - [`DecodeError::DataDigest`] and the remaining [`InvalidPdu`] errors: the PDU's
    ///   bytes are consumed, so the caller may answer with a Reject and go on.
    pub fn decode_as(
        &mut self,
        buf: &mut BytesMut,
        local: Role,
    ) -> Result<Option<Pdu>, DecodeError> {
        let Some(info) = self.decode_header_as(buf, local)? else {
            return Ok(None);
        };
        if buf.len() < info.total_len {
            buf.reserve(info.total_len - buf.len());
            return Ok(None);
        }
        let frame = buf.split_to(info.total_len).freeze();
        // The ranges lie within `total_len` bytes by construction of `HeaderInfo`.
        let data = frame.slice(info.data_range());
        if let Some(range) = info.data_digest_range() {
            let padded = &frame[info.header_len..range.start];
            check_data_digest(&info, padded, &frame[range])?;
        }
        Ok(Some(Pdu::parse(&info.bhs, &frame[info.ahs_range()], data)?))
    }

    /// Reads the header of the PDU at the front of `buf` as an initiator; see
    /// [`Codec::decode_header_as`].
    ///
    /// # Errors
    /// As [`Codec::decode_header_as`].
    pub fn decode_header(&self, buf: &[u8]) -> Result<Option<HeaderInfo>, DecodeError> {
        self.decode_header_as(buf, Role::Initiator)
    }

    /// Reads and checks the header of the PDU at the front of `buf` (BHS, AHS, header
    /// digest) without touching its data segment, so that a caller can land the data
    /// straight into its own buffer: parse the header with [`Pdu::parse_header`], consume
    /// `header_len` bytes, read `data_len` bytes of data, skip the padding and check the data
    /// digest with [`data_digest`]. Returns `Ok(None)` until the header is complete.
    ///
    /// # Errors
    /// [`DecodeError::HeaderDigest`]; [`DecodeError::TooLong`] when DataSegmentLength
    /// exceeds `max_recv_data_segment_length`; [`InvalidPdu::WrongDirection`] when the
    /// opcode is one only `local`'s role sends; [`InvalidPdu::UnexpectedAhs`] and
    /// [`InvalidPdu::UnexpectedData`] for PDU types that carry no AHS or data.
    pub fn decode_header_as(
        &self,
        buf: &[u8],
        local: Role,
    ) -> Result<Option<HeaderInfo>, DecodeError> {
        let Some(bhs) = buf.first_chunk::<BHS_LEN>() else {
            return Ok(None);
        };
        let header = BasicHeader::from_array(bhs);
        let ahs_end = BHS_LEN + header.ahs_len();
        let header_len = ahs_end + if self.header_digest { DIGEST_LEN } else { 0 };
        // Without a header digest the BHS can be judged at once; with one, only after the
        // digest has vouched for it.
        if !self.header_digest {
            self.check_header(&header, local)?;
        }
        let Some(full_header) = buf.get(..header_len) else {
            return Ok(None);
        };
        if self.header_digest {
            check_header_digest(full_header, ahs_end)?;
            self.check_header(&header, local)?;
        }
        // At most 2^24 - 1: fits usize on every supported target.
        let data_len = header.data_len() as usize;
        let has_data_digest = self.data_digest && data_len > 0;
        let total_len = header_len
            + data_len
            + padding(data_len)
            + if has_data_digest { DIGEST_LEN } else { 0 };
        Ok(Some(HeaderInfo {
            bhs: *bhs,
            opcode: header.opcode(),
            ahs_len: header.ahs_len(),
            header_len,
            data_len,
            total_len,
            has_data_digest,
        }))
    }

    /// Checks what the BHS alone can tell: direction, AHS and data allowed, data length.
    fn check_header(&self, header: &BasicHeader, local: Role) -> Result<(), DecodeError> {
        let opcode = header.opcode();
        if opcode.is_initiator() == (local == Role::Initiator) {
            return Err(InvalidPdu::WrongDirection {
                opcode,
                receiver: local,
            }
            .into());
        }
        check_header_lengths(header)?;
        let len = header.data_len();
        if len > self.max_recv_data_segment_length {
            return Err(DecodeError::TooLong {
                len,
                max: self.max_recv_data_segment_length,
            });
        }
        Ok(())
    }

    /// Appends the encoded PDU to `out`.
    pub fn encode(&self, pdu: &Pdu, out: &mut BytesMut) {
        let parts = self.encode_parts(pdu);
        out.reserve(parts.len());
        out.put_slice(&parts.header);
        out.put_slice(&parts.data);
        out.put_slice(&parts.trailer);
    }

    /// Encodes a PDU as header, data and trailer buffers for a vectored write; the data
    /// segment is shared with the PDU, not copied.
    pub fn encode_parts(&self, pdu: &Pdu) -> EncodedPdu {
        let mut header = BytesMut::with_capacity(BHS_LEN + DIGEST_LEN);
        self.encode_header(pdu, &mut header);
        let data = pdu.data().clone();
        let mut trailer = BytesMut::new();
        self.encode_trailer(&data, &mut trailer);
        EncodedPdu {
            header: header.freeze(),
            data,
            trailer: trailer.freeze(),
        }
    }

    /// Appends the header of `pdu` (BHS, AHS, header digest) to `out`; returns its length.
    pub fn encode_header(&self, pdu: &Pdu, out: &mut BytesMut) -> usize {
        let (bhs, ahs) = pdu.encoded_header();
        let ahs = ahs.unwrap_or_default();
        let start = out.len();
        out.reserve(BHS_LEN + ahs.len() + DIGEST_LEN);
        out.put_slice(&bhs);
        out.put_slice(&ahs);
        if self.header_digest {
            let digest = crc32c::crc32c(&out[start..]);
            out.put_u32_le(digest);
        }
        out.len() - start
    }

    /// Appends the trailer of a data segment (padding, data digest) to `out`; returns its
    /// length (0 for an empty segment).
    pub fn encode_trailer(&self, data: &[u8], out: &mut BytesMut) -> usize {
        if data.is_empty() {
            return 0;
        }
        let pad = padding(data.len());
        out.put_bytes(0, pad);
        if self.data_digest {
            out.put_u32_le(data_digest(data));
            return pad + DIGEST_LEN;
        }
        pad
    }

    /// Length of `pdu` on the wire with these settings.
    pub fn encoded_len(&self, pdu: &Pdu) -> usize {
        let (_, ahs) = pdu.encoded_header();
        let data_len = pdu.data().len();
        let digests =
            usize::from(self.header_digest) + usize::from(self.data_digest && data_len > 0);
        BHS_LEN + ahs.map_or(0, |a| a.len()) + data_len + padding(data_len) + digests * DIGEST_LEN
    }
}

/// CRC32C data digest of a data segment, including its zero padding (RFC 7143 §13.1).
pub fn data_digest(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc32c::crc32c_append(crc, &[0; 3][..padding(data.len())])
}

/// CRC32C header digest over BHS and AHS.
pub fn header_digest(header: &[u8]) -> u32 {
    crc32c::crc32c(header)
}

/// Reads a digest as sent on the wire (least significant byte first).
pub fn read_digest(bytes: &[u8; DIGEST_LEN]) -> u32 {
    u32::from_le_bytes(*bytes)
}

/// Verifies the header digest that follows `ahs_end` bytes of header in `full_header`.
/// Skipped when fuzzing, so that the fuzzer can reach the parser.
fn check_header_digest(full_header: &[u8], ahs_end: usize) -> Result<(), DecodeError> {
    let (covered, digest) = full_header.split_at(ahs_end);
    let actual = digest.first_chunk::<DIGEST_LEN>().map_or(0, read_digest);
    let expected = header_digest(covered);
    if expected != actual && !cfg!(fuzzing) {
        return Err(DecodeError::HeaderDigest { expected, actual });
    }
    Ok(())
}

/// Verifies a data digest over the padded data segment. Skipped when fuzzing.
fn check_data_digest(info: &HeaderInfo, padded: &[u8], digest: &[u8]) -> Result<(), DecodeError> {
    let expected = crc32c::crc32c(padded);
    let actual = digest.first_chunk::<DIGEST_LEN>().map_or(0, read_digest);
    if expected != actual && !cfg!(fuzzing) {
        let itt = BasicHeader::from_array(&info.bhs).itt();
        return Err(DecodeError::DataDigest {
            itt,
            expected,
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::pdu::{DataIn, NopOut, ScsiCommand};
    use crate::wire::strategies;

    /// RFC 3720 Appendix B.4: CRC32C test vectors, with the CRC as the bytes on the wire.
    #[test]
    fn rfc3720_crc32c_vectors() {
        let wire = |data: &[u8]| header_digest(data).to_le_bytes();
        assert_eq!(wire(&[0x00; 32]), [0xaa, 0x36, 0x91, 0x8a]);
        assert_eq!(header_digest(&[0x00; 32]), 0x8a91_36aa);
        assert_eq!(wire(&[0xff; 32]), [0x43, 0xab, 0xa8, 0x62]);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(wire(&ascending), [0x4e, 0x79, 0xdd, 0x46]);
        let descending: Vec<u8> = (0..32).rev().collect();
        assert_eq!(wire(&descending), [0x5c, 0xdb, 0x3f, 0x11]);
        #[rustfmt::skip]
        let read10_pdu = [
            0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
            0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
            0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(wire(&read10_pdu), [0x56, 0x3a, 0x96, 0xd9]);
    }

    #[test]
    fn data_digest_covers_padding() {
        assert_eq!(data_digest(b"abcd"), crc32c::crc32c(b"abcd"));
        assert_eq!(data_digest(b"abcde"), crc32c::crc32c(b"abcde\0\0\0"));
        assert_ne!(data_digest(b"abcde"), crc32c::crc32c(b"abcde"));
    }

    fn digests() -> Codec {
        Codec {
            header_digest: true,
            data_digest: true,
            ..Codec::new()
        }
    }

    fn ping() -> Pdu {
        Pdu::NopOut(NopOut {
            itt: 1,
            ttt: RESERVED,
            data: Bytes::from_static(b"ping!"),
            ..NopOut::default()
        })
    }

    const RESERVED: u32 = crate::wire::header::RESERVED_TAG;

    #[test]
    fn encode_layout_with_digests() {
        let codec = digests();
        let mut out = BytesMut::new();
        codec.encode(&ping(), &mut out);
        // BHS, header digest, 5 data bytes, 3 padding bytes, data digest.
        assert_eq!(out.len(), 48 + 4 + 5 + 3 + 4);
        assert_eq!(out.len(), codec.encoded_len(&ping()));
        assert_eq!(out[48..52], header_digest(&out[..48]).to_le_bytes());
        assert_eq!(&out[52..60], b"ping!\0\0\0");
        assert_eq!(out[60..64], crc32c::crc32c(b"ping!\0\0\0").to_le_bytes());
        let parts = codec.encode_parts(&ping());
        assert_eq!(
            [&parts.header[..], &parts.data, &parts.trailer].concat(),
            out.to_vec()
        );
        assert_eq!(parts.len(), out.len());
    }

    #[test]
    fn no_data_digest_without_data() {
        let pdu = Pdu::NopOut(NopOut {
            itt: 1,
            ttt: RESERVED,
            ..NopOut::default()
        });
        let mut out = BytesMut::new();
        digests().encode(&pdu, &mut out);
        assert_eq!(out.len(), 48 + 4);
        assert_eq!(digests().decode_as(&mut out, Role::Target), Ok(Some(pdu)));
    }

    #[test]
    fn header_digest_mismatch_consumes_nothing() {
        let mut out = BytesMut::new();
        digests().encode(&ping(), &mut out);
        out[20] ^= 1; // TTT
        let len = out.len();
        let err = digests().decode_as(&mut out, Role::Target).unwrap_err();
        assert!(matches!(err, DecodeError::HeaderDigest { .. }), "{err:?}");
        assert_eq!(out.len(), len);
    }

    #[test]
    fn data_digest_mismatch_consumes_the_pdu() {
        let mut out = BytesMut::new();
        digests().encode(&ping(), &mut out);
        digests().encode(&ping(), &mut out);
        out[53] ^= 1; // data of the first PDU
        let err = digests().decode_as(&mut out, Role::Target).unwrap_err();
        assert!(
            matches!(err, DecodeError::DataDigest { itt: 1, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.reject_reason(),
            crate::wire::RejectReason::DATA_DIGEST_ERROR
        );
        assert_eq!(
            digests().decode_as(&mut out, Role::Target),
            Ok(Some(ping()))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn direction_is_checked() {
        let mut out = BytesMut::new();
        Codec::new().encode(&ping(), &mut out);
        let err = Codec::new().decode(&mut out).unwrap_err();
        let wrong = InvalidPdu::WrongDirection {
            opcode: Opcode::NOP_OUT,
            receiver: Role::Initiator,
        };
        assert_eq!(err, DecodeError::Invalid(wrong));
        assert_eq!(
            err.to_string(),
            "NOP_OUT is sent by the initiator, yet the initiator received it"
        );
        assert_eq!(
            err.reject_reason(),
            crate::wire::RejectReason::PROTOCOL_ERROR
        );
    }

    #[test]
    fn too_long_is_refused_from_the_header_alone() {
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = 0x25; // Data-In
        bhs[5..8].copy_from_slice(&[0xff, 0xff, 0xff]); // DataSegmentLength 16 MiB - 1
        let mut buf = BytesMut::from(&bhs[..]);
        let err = Codec::new().decode(&mut buf).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TooLong {
                len: 0xff_ffff,
                max: 8192
            }
        );
        // Nothing was reserved for the announced length.
        assert!(buf.capacity() < 0x1000);
        assert_eq!(buf.len(), BHS_LEN);
    }

    #[test]
    fn ahs_on_a_response_is_refused_from_the_header_alone() {
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = 0x21; // SCSI Response
        bhs[4] = 0xff; // TotalAHSLength
        let err = Codec::new()
            .decode(&mut BytesMut::from(&bhs[..]))
            .unwrap_err();
        let invalid = InvalidPdu::UnexpectedAhs {
            opcode: Opcode::SCSI_RESPONSE,
            words: 0xff,
        };
        assert_eq!(err, DecodeError::Invalid(invalid));
    }

    #[test]
    fn decode_header_locates_the_data() {
        let pdu = Pdu::DataIn(DataIn {
            itt: 9,
            ttt: RESERVED,
            data: Bytes::from_static(b"hello"),
            ..DataIn::default()
        });
        let codec = digests();
        let mut out = BytesMut::new();
        codec.encode(&pdu, &mut out);
        assert_eq!(codec.decode_header(&out[..51]), Ok(None));
        let info = codec.decode_header(&out[..52]).unwrap().unwrap();
        assert_eq!(info.opcode, Opcode::DATA_IN);
        assert_eq!(info.header_len, 52);
        assert_eq!(&out[info.data_range()], b"hello");
        assert_eq!(info.total_len, out.len());
        let digest = info.data_digest_range().unwrap();
        assert_eq!(out[digest], data_digest(b"hello").to_le_bytes());
        let header = Pdu::parse_header(&info.bhs, &out[info.ahs_range()]).unwrap();
        let Pdu::DataIn(header) = header else {
            panic!("not a Data-In: {header:?}")
        };
        assert_eq!((header.itt, header.data.len()), (9, 0));
        let whole = Pdu::parse(
            &info.bhs,
            &[],
            out.clone().freeze().slice(info.data_range()),
        );
        assert_eq!(whole, Ok(pdu));
    }

    #[test]
    fn extended_cdb_is_framed() {
        let pdu = Pdu::ScsiCommand(ScsiCommand {
            read: true,
            expected_data_transfer_length: 512,
            extended_cdb: Some(Bytes::from_static(&[7; 17])),
            ..ScsiCommand::default()
        });
        let mut codec = digests();
        let mut out = BytesMut::new();
        codec.encode(&pdu, &mut out);
        // BHS + AHS (4 + 17 + 3 padding) + header digest.
        assert_eq!(out.len(), 48 + 24 + 4);
        assert_eq!(codec.decode_as(&mut out, Role::Target), Ok(Some(pdu)));
    }

    /// Encodes PDUs back to back, for a receiver of role `local`.
    fn stream(codec: &Codec, pdus: &[Pdu]) -> BytesMut {
        let mut out = BytesMut::new();
        for pdu in pdus {
            codec.encode(pdu, &mut out);
        }
        out
    }

    fn codec_settings() -> impl Strategy<Value = Codec> {
        (any::<bool>(), any::<bool>()).prop_map(|(header_digest, data_digest)| Codec {
            header_digest,
            data_digest,
            max_recv_data_segment_length: 8192,
        })
    }

    proptest! {
        #[test]
        fn stream_round_trips(
            mut codec in codec_settings(),
            pdus in proptest::collection::vec(strategies::target_pdu(), 1..6),
        ) {
            let mut buf = stream(&codec, &pdus);
            for pdu in &pdus {
                prop_assert_eq!(codec.decode(&mut buf), Ok(Some(pdu.clone())));
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(codec.decode(&mut buf), Ok(None));
        }

        #[test]
        fn byte_by_byte_feed_yields_the_same_pdus(
            mut codec in codec_settings(),
            pdus in proptest::collection::vec(strategies::initiator_pdu(), 1..4),
        ) {
            let bytes = stream(&codec, &pdus);
            let mut buf = BytesMut::new();
            let mut decoded = Vec::new();
            for &b in bytes.iter() {
                buf.extend_from_slice(&[b]);
                let before = buf.len();
                match codec.decode_as(&mut buf, Role::Target) {
                    Ok(Some(pdu)) => decoded.push(pdu),
                    Ok(None) => prop_assert_eq!(buf.len(), before, "consumed a partial PDU"),
                    Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
                }
            }
            prop_assert_eq!(decoded, pdus);
            prop_assert!(buf.is_empty());
        }
    }
}
