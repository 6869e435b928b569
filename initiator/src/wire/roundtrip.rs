//! Self-checks over arbitrary bytes, shared by the fuzz targets (`crate::fuzzing`, under
//! `cfg(fuzzing)`) and by bounded property tests on stable (STYLE rule 12).

use bytes::{Bytes, BytesMut};

use crate::wire::codec::Codec;
use crate::wire::error::Role;
use crate::wire::pdu::Pdu;
use crate::wire::text::{TextAssembler, TextSplitter, encode_text, parse_text};

/// Decodes PDUs from `data[1..]` with framing settings taken from `data[0]` (bit 0 header
/// digest, bit 1 data digest, bit 2 decode as a target, bit 3 a 16 MiB segment limit) and
/// checks that every decoded PDU re-encodes to bytes that decode to the same PDU, and that
/// a truncated encoding asks for more bytes.
///
/// # Panics
/// When that round trip fails: a bug in the wire layer, which is what the fuzzer looks for.
pub fn pdu_round_trip(data: &[u8]) {
    let Some((&settings, rest)) = data.split_first() else {
        return;
    };
    let mut codec = Codec {
        header_digest: settings & 1 != 0,
        data_digest: settings & 2 != 0,
        max_recv_data_segment_length: if settings & 8 != 0 {
            (1 << 24) - 1
        } else {
            8192
        },
    };
    let local = if settings & 4 != 0 {
        Role::Target
    } else {
        Role::Initiator
    };
    let mut buf = BytesMut::from(rest);
    loop {
        let before = buf.len();
        match codec.decode_as(&mut buf, local) {
            Ok(Some(pdu)) => check_reencode(&mut codec, &pdu, local),
            Ok(None) => break,
            Err(e) => {
                // Exercise the error's reporting paths; stop when the stream is unusable.
                let _ = (e.reject_reason(), e.to_string());
                if buf.len() == before {
                    break;
                }
            }
        }
    }
}

/// Encodes `pdu`, checks the length bookkeeping and decodes it back.
fn check_reencode(codec: &mut Codec, pdu: &Pdu, local: Role) {
    let mut out = BytesMut::new();
    codec.encode(pdu, &mut out);
    assert_eq!(
        out.len(),
        codec.encoded_len(pdu),
        "encoded_len disagrees with encode"
    );
    let mut short = BytesMut::from(&out[..out.len() - 1]);
    assert_eq!(
        codec.decode_as(&mut short, local),
        Ok(None),
        "truncated PDU decoded"
    );
    assert_eq!(short.len(), out.len() - 1, "truncated PDU consumed bytes");
    let again = codec.decode_as(&mut out, local);
    assert_eq!(
        again,
        Ok(Some(pdu.clone())),
        "PDU changed across encode/decode"
    );
    assert!(out.is_empty(), "decode left bytes of a single PDU");
}

/// Parses `data` as key=value text and checks that (a) parsing it split in two continued
/// pieces gives the same result, (b) valid text re-encodes to text that parses the same,
/// and (c) splitting the encoding into small segments and reassembling it does too.
///
/// # Panics
/// When one of those fails.
pub fn text_round_trip(data: &[u8]) {
    let whole = parse_text(data);
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut assembler = TextAssembler::new(data.len());
    let first = assembler.push(&data[..cut], true);
    assert_eq!(first, Ok(None), "continued text completed early");
    let joined = assembler.push(&data[cut..], false);
    assert_eq!(
        joined,
        whole.clone().map(Some),
        "continued text parsed differently"
    );
    let Ok(pairs) = whole else {
        return;
    };
    let encoded = match encode_text(&pairs) {
        Ok(encoded) => encoded.freeze(),
        Err(e) => panic!("parsed text does not re-encode: {e}"),
    };
    assert_eq!(
        parse_text(&encoded).as_ref(),
        Ok(&pairs),
        "text changed across encode/parse"
    );
    let segment = data.len() % 13 + 1;
    let mut assembler = TextAssembler::new(encoded.len());
    let mut result = None;
    for (piece, cont) in TextSplitter::new(Bytes::clone(&encoded), segment) {
        assert!(piece.len() <= segment, "segment longer than asked");
        result = assembler.push(&piece, cont).ok().flatten();
    }
    assert_eq!(result, Some(pairs), "split text reassembled differently");
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::wire::strategies;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_as_pdus(data in vec(any::<u8>(), 0..400)) {
            pdu_round_trip(&data);
        }

        /// Valid streams, then flipped bits: reaches the parsers past the framing checks.
        #[test]
        fn mutated_streams_as_pdus(
            settings: u8,
            pdus in vec(strategies::any_pdu(), 1..4),
            flips in vec((any::<prop::sample::Index>(), 0u8..8), 0..4),
        ) {
            let codec = Codec {
                header_digest: settings & 1 != 0,
                data_digest: settings & 2 != 0,
                max_recv_data_segment_length: 8192,
            };
            let mut bytes = vec![settings];
            for pdu in &pdus {
                let mut out = BytesMut::new();
                codec.encode(pdu, &mut out);
                bytes.extend_from_slice(&out);
            }
            for (at, bit) in flips {
                let i = at.index(bytes.len() - 1) + 1;
                bytes[i] ^= 1 << bit;
            }
            pdu_round_trip(&bytes);
        }

        #[test]
        fn arbitrary_bytes_as_text(data in vec(any::<u8>(), 0..300)) {
            text_round_trip(&data);
        }

        #[test]
        fn texty_bytes_as_text(data in "([a-zA-Z=]{0,8}\u{0}){0,12}") {
            text_round_trip(data.as_bytes());
        }
    }
}
