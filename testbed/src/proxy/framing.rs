//! Finding PDU boundaries on a byte stream without decoding the PDUs (RFC 7143 §11.2): the
//! BHS gives TotalAHSLength (byte 4) and DataSegmentLength (bytes 5-7); the data segment is
//! padded to 4 bytes; CRC32C header and data digests add 4 bytes each once the login has
//! negotiated them. And watching the login text (§13.1) to learn those digests.

use bytes::Bytes;
use sanshim_initiator::wire::{
    BHS_LEN, BasicHeader, DIGEST_LEN, LoginStatus, Opcode, Pdu, Stage, padding,
};

/// Where the parts of the PDU at the front of a buffer lie.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct Frame {
    /// The opcode (BHS byte 0, low six bits).
    pub(crate) opcode: Opcode,
    /// BHS + AHS + header digest: where the data segment starts.
    pub(crate) header_len: usize,
    /// DataSegmentLength (without padding).
    pub(crate) data_len: usize,
    /// The whole PDU.
    pub(crate) total: usize,
}

/// The digests in force on one direction of a connection.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub(crate) struct Digests {
    pub(crate) header: bool,
    pub(crate) data: bool,
}

/// Frames the PDU at the front of `buf`, or `None` until its BHS has arrived. Never fails:
/// any 48 bytes describe some length.
pub(crate) fn frame(buf: &[u8], digests: Digests) -> Option<Frame> {
    let bhs = buf.first_chunk::<BHS_LEN>()?;
    let header = BasicHeader::from_array(bhs);
    let header_len = BHS_LEN + header.ahs_len() + if digests.header { DIGEST_LEN } else { 0 };
    // DataSegmentLength is 24 bits: it fits any usize.
    let data_len = header.data_len() as usize;
    let data_digest = if digests.data && data_len > 0 {
        DIGEST_LEN
    } else {
        0
    };
    Some(Frame {
        opcode: header.opcode(),
        header_len,
        data_len,
        total: header_len + data_len + padding(data_len) + data_digest,
    })
}

/// Learns HeaderDigest and DataDigest from the login text of both directions and says when
/// the final Login Response (T=1, NSG=3, success) passes.
#[derive(Debug, Default)]
pub(crate) struct LoginWatch {
    /// Partial key=value text per direction (index 0: initiator, 1: target).
    pending: [Vec<u8>; 2],
    /// Last HeaderDigest / DataDigest value per direction.
    values: [[Option<String>; 2]; 2],
}

impl LoginWatch {
    /// Looks at a login PDU (`pdu` is its whole frame, sent without digests). Returns the
    /// digests to use from now on when it is the final Login Response.
    pub(crate) fn observe(&mut self, pdu: &[u8], frame: &Frame) -> Option<Digests> {
        let bhs = pdu.first_chunk::<BHS_LEN>()?;
        let data = pdu.get(frame.header_len..frame.header_len + frame.data_len)?;
        let side = usize::from(frame.opcode == Opcode::LOGIN_RESPONSE);
        self.scan(side, data);
        if side == 0 {
            return None;
        }
        match Pdu::parse(bhs, &[], Bytes::copy_from_slice(data)) {
            Ok(Pdu::LoginResponse(r))
                if r.transit
                    && r.nsg == Stage::FULL_FEATURE
                    && r.status == LoginStatus::SUCCESS =>
            {
                Some(Digests {
                    header: self.result(0),
                    data: self.result(1),
                })
            }
            _ => None,
        }
    }

    /// Records the digest keys of the complete `key=value\0` entries seen so far.
    fn scan(&mut self, side: usize, data: &[u8]) {
        let Some(pending) = self.pending.get_mut(side) else {
            return;
        };
        pending.extend_from_slice(data);
        let Some(end) = pending.iter().rposition(|&b| b == 0) else {
            return;
        };
        let complete: Vec<u8> = pending.drain(..=end).collect();
        for entry in complete.split(|&b| b == 0) {
            let text = String::from_utf8_lossy(entry);
            let Some((key, value)) = text.split_once('=') else {
                continue;
            };
            let index = match key {
                "HeaderDigest" => 0,
                "DataDigest" => 1,
                _ => continue,
            };
            if let Some(slot) = self.values.get_mut(side).and_then(|v| v.get_mut(index)) {
                *slot = Some(value.to_owned());
            }
        }
    }

    /// The outcome for key `index`: the target's answer, or the initiator's answer when the
    /// target was the one offering a list.
    fn result(&self, index: usize) -> bool {
        let get = |side: usize| self.values[side][index].as_deref();
        let chosen = match get(1) {
            Some(target) if target.contains(',') => get(0),
            other => other,
        };
        chosen == Some("CRC32C")
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use sanshim_initiator::wire::{Codec, LoginResponse, NopIn, encode_text};

    use super::*;

    #[test]
    fn frames_with_and_without_digests() {
        let pdu = Pdu::NopIn(NopIn {
            itt: 1,
            ttt: u32::MAX,
            data: Bytes::from_static(b"hello"),
            ..NopIn::default()
        });
        for (header, data) in [(false, false), (true, false), (true, true)] {
            let codec = Codec {
                header_digest: header,
                data_digest: data,
                ..Codec::new()
            };
            let mut out = BytesMut::new();
            codec.encode(&pdu, &mut out);
            let f = frame(&out, Digests { header, data }).unwrap();
            assert_eq!(
                (f.opcode, f.data_len, f.total),
                (Opcode::NOP_IN, 5, out.len())
            );
            assert_eq!(&out[f.header_len..f.header_len + 5], b"hello");
        }
        assert_eq!(frame(&[0; 47], Digests::default()), None);
    }

    #[test]
    fn learns_digests_from_the_final_login_response() {
        let response = |transit, text: &[(&str, &str)]| {
            let pdu = Pdu::LoginResponse(LoginResponse {
                transit,
                csg: Stage::OPERATIONAL,
                nsg: if transit {
                    Stage::FULL_FEATURE
                } else {
                    Stage::OPERATIONAL
                },
                data: encode_text(text).unwrap().freeze(),
                ..LoginResponse::default()
            });
            let mut out = BytesMut::new();
            Codec::new().encode(&pdu, &mut out);
            out
        };
        let mut w = LoginWatch::default();
        let first = response(false, &[("HeaderDigest", "CRC32C")]);
        assert_eq!(
            w.observe(&first, &frame(&first, Digests::default()).unwrap()),
            None
        );
        let last = response(true, &[("DataDigest", "None")]);
        let digests = w.observe(&last, &frame(&last, Digests::default()).unwrap());
        assert_eq!(
            digests,
            Some(Digests {
                header: true,
                data: false
            })
        );
    }
}
