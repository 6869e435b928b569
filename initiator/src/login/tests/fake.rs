//! A small fake target for login tests: answers Login Requests like a real target would,
//! with switches for the misbehaviours under test.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::login::chap::ChapAlgorithm;
use crate::login::value::{encode_hex, parse_binary, parse_number};
use crate::login::{Established, Login, LoginOutcome, Negotiation, Proposal, Secret, SessionType};
use crate::wire::{
    LoginRequest, LoginResponse, LoginStatus, Pdu, Stage, TextAssembler, TextSplitter, encode_text,
};

/// How the target treats a CHAP_A list of more than one algorithm.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) enum ListHandling {
    Accept,
    AnswerReject,
    FailStatus,
}

/// How the target answers our mutual challenge.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) enum MutualAnswer {
    Correct,
    WrongSecret,
    /// Answers with the initiator's own secret (a reflection).
    InitiatorSecret,
    /// Sends our challenge back as its own.
    EchoChallenge,
    Omit,
}

pub(super) const TARGET_CHALLENGE: [u8; 16] = *b"target-challenge";

pub(super) struct FakeTarget {
    /// The initiator account the target checks (None: no authentication required).
    pub(super) account: Option<(String, Secret)>,
    /// The target's own identity for mutual CHAP.
    pub(super) identity: (String, Secret),
    /// The initiator's secret, for the reflection misbehaviour.
    pub(super) initiator_secret: Secret,
    pub(super) mutual: MutualAnswer,
    pub(super) algorithms: Vec<u8>,
    pub(super) list_handling: ListHandling,
    pub(super) params: Proposal,
    /// Keys the target proposes in its first operational response (with T=0).
    pub(super) offers: Vec<(String, String)>,
    /// Split responses into data segments of this size.
    pub(super) split: Option<usize>,
    pub(super) tsih: u16,
    /// Every request received, in order.
    pub(super) requests: Vec<LoginRequest>,
    /// Our offers' answers seen (key=value pairs the initiator sent back).
    pub(super) answers: Vec<(String, String)>,
    stat_sn: u32,
    assembler: TextAssembler,
    chunks: VecDeque<Bytes>,
    last: Option<(bool, Stage, Stage)>,
    negotiation: Option<Negotiation>,
}

impl FakeTarget {
    pub(super) fn new() -> Self {
        FakeTarget {
            account: None,
            identity: (
                "iqn.2026-01.test:target".into(),
                Secret::from("target-secret-0123"),
            ),
            initiator_secret: Secret::from("initiator-secret-01"),
            mutual: MutualAnswer::Correct,
            algorithms: vec![8, 7, 6, 5],
            list_handling: ListHandling::Accept,
            params: Proposal {
                max_recv_data_segment_length: 65_536,
                ..Proposal::default()
            },
            offers: Vec::new(),
            split: None,
            tsih: 0x1234,
            requests: Vec::new(),
            answers: Vec::new(),
            stat_sn: 0x100,
            assembler: TextAssembler::new(1 << 20),
            chunks: VecDeque::new(),
            last: None,
            negotiation: None,
        }
    }

    pub(super) fn with_chap(mut self, user: &str, secret: &str) -> Self {
        self.account = Some((user.into(), Secret::from(secret)));
        self
    }

    /// Answers one Login Request.
    pub(super) fn handle(&mut self, request: LoginRequest) -> LoginResponse {
        self.requests.push(request.clone());
        if let Some(chunk) = self.chunks.pop_front() {
            assert!(request.data.is_empty(), "continuation ack must be empty");
            return self.chunk_response(&request, chunk);
        }
        let pairs = match self.assembler.push(&request.data, request.cont) {
            Ok(Some(pairs)) => pairs,
            Ok(None) => return self.response(&request, Bytes::new(), false, false, Stage(0)),
            Err(e) => panic!("initiator sent malformed text: {e:?}"),
        };
        let answer = match request.csg {
            Stage::SECURITY => self.security(&request, &pairs),
            _ => Ok(self.operational(&request, &pairs)),
        };
        match answer {
            Ok((pairs, transit)) => {
                let text = encode_text(&pairs).unwrap().freeze();
                let mut chunks: VecDeque<Bytes> =
                    TextSplitter::new(text, self.split.unwrap_or(8192))
                        .map(|(chunk, _)| chunk)
                        .collect();
                self.last = Some((transit, request.csg, request.nsg));
                let first = chunks.pop_front().unwrap_or_default();
                self.chunks = chunks;
                self.chunk_response(&request, first)
            }
            Err(status) => {
                let mut response = self.response(&request, Bytes::new(), false, false, Stage(0));
                response.status = status;
                response
            }
        }
    }

    fn chunk_response(&mut self, request: &LoginRequest, chunk: Bytes) -> LoginResponse {
        let cont = !self.chunks.is_empty();
        let (transit, csg, nsg) = self.last.unwrap();
        let mut response = self.response(request, chunk, transit && !cont, cont, nsg);
        response.csg = csg;
        response
    }

    fn response(
        &mut self,
        req: &LoginRequest,
        data: Bytes,
        transit: bool,
        cont: bool,
        nsg: Stage,
    ) -> LoginResponse {
        self.stat_sn += 1;
        let done = transit && nsg == Stage::FULL_FEATURE;
        LoginResponse {
            transit,
            cont,
            csg: req.csg,
            nsg: if transit { nsg } else { Stage(0) },
            version_max: 0,
            version_active: 0,
            isid: req.isid,
            tsih: if done && req.tsih == 0 {
                self.tsih
            } else {
                req.tsih
            },
            itt: req.itt,
            stat_sn: self.stat_sn,
            exp_cmd_sn: req.cmd_sn,
            max_cmd_sn: req.cmd_sn.wrapping_add(31),
            status: LoginStatus::SUCCESS,
            data,
        }
    }

    fn security(
        &mut self,
        req: &LoginRequest,
        pairs: &[(String, String)],
    ) -> Result<(Vec<(String, String)>, bool), LoginStatus> {
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let mut out = Vec::new();
        let mut done = self.account.is_none();
        if let Some(methods) = get("AuthMethod") {
            let wanted = if self.account.is_some() {
                "CHAP"
            } else {
                "None"
            };
            let choice = if methods.split(',').any(|m| m == wanted) {
                wanted
            } else {
                "Reject"
            };
            out.push(("AuthMethod".to_owned(), choice.to_owned()));
            out.push(("TargetPortalGroupTag".to_owned(), "1".to_owned()));
            return Ok((out, req.transit && choice == "None"));
        }
        if let Some(list) = get("CHAP_A") {
            let many = list.contains(',');
            if many && self.list_handling == ListHandling::FailStatus {
                return Err(LoginStatus::AUTHENTICATION_FAILURE);
            }
            let choice = list
                .split(',')
                .find(|a| self.algorithms.iter().any(|ours| ours.to_string() == *a))
                .filter(|_| !(many && self.list_handling == ListHandling::AnswerReject));
            let Some(choice) = choice else {
                return Ok((vec![("CHAP_A".into(), "Reject".into())], false));
            };
            out.push(("CHAP_A".to_owned(), choice.to_owned()));
            out.push(("CHAP_I".to_owned(), "66".to_owned()));
            out.push(("CHAP_C".to_owned(), encode_hex(&TARGET_CHALLENGE)));
            return Ok((out, false));
        }
        if let Some(name) = get("CHAP_N") {
            let algorithm = self.chosen_algorithm();
            let (user, secret) = self.account.as_ref().unwrap();
            let expected = algorithm.response(66, secret, &TARGET_CHALLENGE);
            let got = parse_binary(get("CHAP_R").unwrap_or("")).unwrap_or_default();
            if name != user || got != expected {
                return Err(LoginStatus::AUTHENTICATION_FAILURE);
            }
            if let (Some(id), Some(challenge)) = (get("CHAP_I"), get("CHAP_C")) {
                out.extend(self.mutual_answer(algorithm, id, challenge));
            }
            done = true;
        }
        Ok((out, req.transit && done))
    }

    fn chosen_algorithm(&self) -> ChapAlgorithm {
        let answered = self.requests.iter().rev().find_map(|r| {
            let text = crate::wire::parse_text(&r.data).ok()?;
            text.into_iter()
                .find(|(k, _)| k == "CHAP_A")
                .map(|(_, v)| v)
        });
        let list = answered.unwrap();
        let code = list
            .split(',')
            .find(|a| self.algorithms.iter().any(|o| o.to_string() == *a))
            .unwrap();
        ChapAlgorithm::from_code(code.parse().unwrap()).unwrap()
    }

    fn mutual_answer(
        &self,
        algorithm: ChapAlgorithm,
        id: &str,
        challenge: &str,
    ) -> Vec<(String, String)> {
        let id = u8::try_from(parse_number(id, 255).unwrap()).unwrap();
        let challenge = parse_binary(challenge).unwrap();
        assert_ne!(
            challenge, TARGET_CHALLENGE,
            "initiator reused our challenge"
        );
        let (name, secret) = &self.identity;
        let respond = |secret: &Secret| encode_hex(&algorithm.response(id, secret, &challenge));
        let response = match self.mutual {
            MutualAnswer::Correct | MutualAnswer::EchoChallenge => respond(secret),
            MutualAnswer::WrongSecret => respond(&Secret::from("not-the-right-secret")),
            MutualAnswer::InitiatorSecret => respond(&self.initiator_secret),
            MutualAnswer::Omit => return Vec::new(),
        };
        let mut out = vec![
            ("CHAP_N".to_owned(), name.clone()),
            ("CHAP_R".to_owned(), response),
        ];
        if self.mutual == MutualAnswer::EchoChallenge {
            out.push(("CHAP_C".to_owned(), encode_hex(&challenge)));
        }
        out
    }

    fn operational(
        &mut self,
        req: &LoginRequest,
        pairs: &[(String, String)],
    ) -> (Vec<(String, String)>, bool) {
        let first = self.negotiation.is_none();
        let discovery = pairs.iter().all(|(k, _)| !k.starts_with("MaxBurst"));
        let session_type = if discovery {
            SessionType::Discovery
        } else {
            SessionType::Normal
        };
        let negotiation = self
            .negotiation
            .get_or_insert_with(|| Negotiation::new(self.params.clone(), session_type));
        let (answers, ours): (Vec<_>, Vec<_>) = pairs
            .iter()
            .cloned()
            .partition(|(k, _)| self.offers.iter().any(|(o, _)| o == k));
        self.answers.extend(answers);
        negotiation.handle_pairs(&ours).unwrap();
        let mut out = negotiation.take_replies();
        if first {
            let ours = self.params.max_recv_data_segment_length.to_string();
            out.push(("MaxRecvDataSegmentLength".to_owned(), ours));
            out.push(("TargetAlias".to_owned(), "fake disk".to_owned()));
            if !self.offers.is_empty() {
                out.extend(self.offers.iter().cloned());
                return (out, false);
            }
        }
        (out, req.transit)
    }
}

/// Runs a login against the fake target until it has an outcome.
pub(super) fn drive(login: &mut Login, target: &mut FakeTarget) -> LoginOutcome {
    for _ in 0..1000 {
        while let Some(pdu) = login.poll_transmit() {
            let Pdu::LoginRequest(request) = pdu else {
                panic!("login sent {pdu:?}")
            };
            let response = target.handle(request);
            let _ = login.handle_pdu(Pdu::LoginResponse(response));
        }
        if let Some(outcome) = login.poll_outcome() {
            return outcome;
        }
    }
    panic!("login neither finished nor produced a PDU");
}

pub(super) fn established(login: &mut Login, target: &mut FakeTarget) -> Established {
    match drive(login, target) {
        Ok(established) => established,
        Err(e) => panic!("login failed: {e}"),
    }
}
