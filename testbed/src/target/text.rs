//! Text negotiation in full feature phase (RFC 7143 §11.10-§11.11): SendTargets (Appendix
//! C) on any session, `NotUnderstood` for other keys, an empty final response to an empty
//! request, and answers longer than the initiator's MaxRecvDataSegmentLength split over
//! several Text Responses (F=0 with a TTT, C=1 when a key=value pair spans two of them).

use sanshim_initiator::wire::{
    Bytes, Lun, Pdu, RESERVED_TAG, RejectReason, TextRequest, TextResponse, TextSplitter,
    encode_text,
};

use super::conn::Connection;

impl Connection {
    pub(super) fn handle_text(&mut self, req: TextRequest) {
        self.shared.count(|c| c.text_requests += 1);
        if !self.consume_cmd_sn(req.immediate, req.cmd_sn) {
            return;
        }
        if req.ttt != RESERVED_TAG && !self.text_in.is_pending() {
            match self.text_out.take() {
                Some((ttt, rest)) if ttt == req.ttt => return self.send_text(req.itt, ttt, rest),
                _ => {
                    let bhs = Pdu::TextRequest(req).encoded_header().0;
                    return self.reject(&bhs, RejectReason::INVALID_PDU_FIELD);
                }
            }
        }
        self.text_out = None;
        let pairs = match self.text_in.push(&req.data, req.cont) {
            Ok(Some(pairs)) => pairs,
            Ok(None) => {
                // The initiator's text continues: ask for the rest with an empty response.
                let ttt = self.fresh_ttt();
                let rest = TextSplitter::new(Bytes::new(), 1);
                return self.send_text_segment(req.itt, ttt, Bytes::new(), false, false, rest);
            }
            Err(_) => {
                let bhs = Pdu::TextRequest(req).encoded_header().0;
                return self.reject(&bhs, RejectReason::PROTOCOL_ERROR);
            }
        };
        let mut answer = Vec::new();
        for (key, value) in pairs {
            if key == "SendTargets" {
                answer.extend(self.send_targets(&value));
            } else {
                answer.push((key, "NotUnderstood".to_owned()));
            }
        }
        let text = encode_text(&answer).map(|t| t.freeze()).unwrap_or_default();
        let rest = TextSplitter::new(text, self.params.peer_mrdsl as usize);
        let ttt = self.fresh_ttt();
        self.send_text(req.itt, ttt, rest);
    }

    /// The SendTargets answer (RFC 7143 Appendix C) for `value`: All, our name, or empty
    /// (the session's own target, in a normal session).
    fn send_targets(&self, value: &str) -> Vec<(String, String)> {
        let config = &self.shared.config;
        let ours =
            value == "All" || value == config.iqn || (value.is_empty() && !self.params.discovery);
        if !ours {
            return Vec::new();
        }
        let mut pairs = vec![
            ("TargetName".to_owned(), config.iqn.clone()),
            (
                "TargetAddress".to_owned(),
                format!("127.0.0.1:{},1", self.shared.port),
            ),
        ];
        for extra in super::lock(&self.shared.extra_addresses).iter() {
            pairs.push(("TargetAddress".to_owned(), extra.clone()));
        }
        pairs
    }

    /// Sends the next segment of a Text Response; more segments follow with F=0 and a TTT
    /// (RFC 7143 §11.11.2), C=1 when a key=value pair spans the boundary.
    fn send_text(&mut self, itt: u32, ttt: u32, mut rest: TextSplitter) {
        let (segment, more) = rest.next().unwrap_or_default();
        let cont = more && segment.last() != Some(&0);
        self.send_text_segment(itt, ttt, segment, !more, cont, rest);
    }

    fn send_text_segment(
        &mut self,
        itt: u32,
        ttt: u32,
        data: Bytes,
        final_: bool,
        cont: bool,
        rest: TextSplitter,
    ) {
        let pdu = TextResponse {
            final_,
            cont,
            lun: Lun::default(),
            itt,
            ttt: if final_ { RESERVED_TAG } else { ttt },
            stat_sn: self.advance_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data,
        };
        if !final_ {
            self.text_out = Some((ttt, rest));
        }
        self.send(Pdu::TextResponse(pdu));
    }
}
