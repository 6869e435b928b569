//! The login state machine (RFC 7143 §6.3 stages, §11.12-11.13 PDUs, §6.2 C-bit continuation).
//!
//! One logical request at a time: its text is split into 8 KiB PDUs (the login-time data
//! segment limit) with the C bit on all but the last, each acknowledged by an empty response;
//! a response with the C bit is acknowledged by an empty request and gathered by a
//! [`TextAssembler`] before its keys are acted on.

use std::collections::VecDeque;

use bytes::Bytes;

use super::chap::{self, ChapKeys, MutualExpectation};
use super::error::{LoginError, status_error};
use super::negotiate::Negotiation;
use super::{ChapAlgorithm, Established, LoginConfig, LoginOutcome, SessionType};
use crate::wire::{
    LoginRequest, LoginResponse, LoginStatus, Pdu, Stage, TextAssembler, TextSplitter, encode_text,
    parse_text,
};

/// Initiator Task Tag of every login PDU; login is the only task on a fresh connection.
const LOGIN_ITT: u32 = 0;
/// Data segment limit during login: the RFC 7143 §13.12 default, in force until the full
/// feature phase.
const LOGIN_SEGMENT: usize = 8192;
/// Bound on one (possibly continued) login response text.
const MAX_RESPONSE_TEXT: usize = 64 * 1024;
/// Bound on request PDUs per login, so a target that never transits cannot keep us forever.
const MAX_EXCHANGES: u32 = 128;

/// A sans-IO login on one connection, from the first Login Request to the full feature phase.
///
/// ```text
///  driver:  loop { while let Some(pdu) = login.poll_transmit() { send(pdu) }
///                  if let Some(outcome) = login.poll_outcome() { break outcome }
///                  match recv() { Some(pdu) => login.handle_pdu(pdu), None => login.handle_close() } }
/// ```
#[derive(Debug)]
pub struct Login {
    config: LoginConfig,
    negotiation: Negotiation,
    stage: Stage,
    auth: Auth,
    /// Chunks of the current request not yet sent.
    pending: VecDeque<Bytes>,
    request: RequestFlags,
    transmit: Option<(Pdu, RequestFlags)>,
    /// Flags of the last request handed out, awaiting its response.
    in_flight: Option<RequestFlags>,
    assembler: TextAssembler,
    exp_stat_sn: u32,
    exchanges: u32,
    chap_algorithm: Option<ChapAlgorithm>,
    target_authenticated: bool,
    finished: bool,
    outcome: Option<LoginOutcome>,
}

/// Where authentication stands in the security stage.
#[derive(Debug)]
enum Auth {
    /// AuthMethod offered; awaiting the target's choice.
    AwaitMethod,
    /// CHAP_A offered; awaiting CHAP_A/CHAP_I/CHAP_C.
    AwaitChallenge,
    /// CHAP_R sent (with our challenge for mutual CHAP); awaiting the verdict.
    AwaitVerdict(Option<MutualExpectation>),
    /// Authenticated, or no authentication.
    Done,
}

/// The header flags of one request PDU.
#[derive(Clone, Copy, Debug)]
struct RequestFlags {
    transit: bool,
    cont: bool,
    nsg: Stage,
    /// The request offers a CHAP_A list of more than one algorithm.
    chap_list: bool,
    /// The request carries our CHAP_R, computed with this algorithm.
    chap_response: Option<ChapAlgorithm>,
}

impl Login {
    /// Starts a login; the first Login Request is ready in [`Login::poll_transmit`].
    ///
    /// An invalid `config` (see [`LoginConfig::validate`]) produces no PDU and an immediate
    /// [`LoginError::InvalidConfig`] outcome.
    pub fn new(config: LoginConfig) -> Login {
        let mut negotiation = Negotiation::new(config.proposal.clone(), config.session_type);
        if config.tsih != 0 {
            negotiation = negotiation.non_leading();
        }
        let mut login = Login {
            exp_stat_sn: config.exp_stat_sn,
            config,
            negotiation,
            stage: Stage::SECURITY,
            auth: Auth::AwaitMethod,
            pending: VecDeque::new(),
            request: RequestFlags {
                transit: false,
                cont: false,
                nsg: Stage::OPERATIONAL,
                chap_list: false,
                chap_response: None,
            },
            transmit: None,
            in_flight: None,
            assembler: TextAssembler::new(MAX_RESPONSE_TEXT),
            exchanges: 0,
            chap_algorithm: None,
            target_authenticated: false,
            finished: false,
            outcome: None,
        };
        let first = login.config.validate().and_then(|()| {
            let pairs = login.security_offer();
            let transit = login.config.chap.is_none();
            login.queue_request(pairs, transit, Stage::OPERATIONAL, false)
        });
        if let Err(error) = first {
            login.fail(error);
        }
        login
    }

    /// The next PDU to send, if any. Send them in order; at most one is outstanding.
    pub fn poll_transmit(&mut self) -> Option<Pdu> {
        let (pdu, flags) = self.transmit.take()?;
        self.in_flight = Some(flags);
        Some(pdu)
    }

    /// Feeds a PDU received on the connection.
    ///
    /// # Errors
    /// The login failure this PDU caused (also kept as the outcome), or
    /// [`LoginError::Finished`] when the login already ended.
    pub fn handle_pdu(&mut self, pdu: Pdu) -> Result<(), LoginError> {
        if self.finished {
            return Err(LoginError::Finished);
        }
        let result = match pdu {
            Pdu::LoginResponse(response) => self.handle_response(response),
            Pdu::Reject(reject) => Err(LoginError::PduRejected {
                reason: reject.reason,
            }),
            _ => Err(LoginError::PeerMisbehaved(
                "a non-login PDU arrived during login",
            )),
        };
        if let Err(error) = &result {
            self.fail(error.clone());
        }
        result
    }

    /// Reports that the connection closed. Ends the login unless it already has an outcome.
    ///
    /// A close while our CHAP_A list was outstanding is reported as
    /// [`LoginError::ChapAlgorithmsRejected`]: some targets drop the connection on a list. A
    /// discovery login closed in answer to our offer of `AuthMethod=None` alone is
    /// [`LoginError::AuthMethodRejected`]: LIO closes the connection, without a response, when
    /// it enforces discovery authentication (RFC 7143 asks for `AuthMethod=Reject`), and
    /// trying again cannot help. A normal login closed there stays a lost connection, to be
    /// retried: LIO does the same when a TPG requires CHAP, but tgt closes it too when the
    /// target does not exist (yet), as while a SAN comes up.
    pub fn handle_close(&mut self) {
        if self.finished {
            return;
        }
        let refused_none = matches!(self.auth, Auth::AwaitMethod)
            && self.config.chap.is_none()
            && self.config.session_type == SessionType::Discovery;
        let error = match self.in_flight {
            Some(flags) if flags.chap_list => LoginError::ChapAlgorithmsRejected { status: None },
            Some(_) if refused_none => LoginError::AuthMethodRejected {
                offered: self.auth_offer(),
            },
            Some(_) if matches!(self.auth, Auth::AwaitMethod) => LoginError::ClosedWithoutAnswer {
                offered: self.auth_offer(),
            },
            _ => LoginError::ConnectionClosed,
        };
        self.fail(error);
    }

    /// The outcome, once the login has ended (stays available until taken by
    /// [`Login::poll_outcome`]).
    pub fn outcome(&self) -> Option<&LoginOutcome> {
        self.outcome.as_ref()
    }

    /// Takes the outcome once the login has ended.
    pub fn poll_outcome(&mut self) -> Option<LoginOutcome> {
        self.outcome.take()
    }

    /// Whether the login has ended (successfully or not).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn fail(&mut self, error: LoginError) {
        self.transmit = None;
        self.pending.clear();
        self.finished = true;
        self.outcome = Some(Err(error));
    }

    fn security_offer(&self) -> Vec<(String, String)> {
        let config = &self.config;
        let mut pairs = vec![("InitiatorName".to_owned(), config.initiator_name.clone())];
        if let Some(alias) = &config.initiator_alias {
            pairs.push(("InitiatorAlias".to_owned(), alias.clone()));
        }
        if let Some(target) = &config.target_name {
            pairs.push(("TargetName".to_owned(), target.clone()));
        }
        // SessionType is leading-only (RFC 7143 §13.21).
        if config.tsih == 0 {
            pairs.push((
                "SessionType".to_owned(),
                config.session_type.as_str().to_owned(),
            ));
        }
        pairs.push(("AuthMethod".to_owned(), self.auth_offer().to_owned()));
        pairs
    }

    fn auth_offer(&self) -> &'static str {
        if self.config.chap.is_some() {
            "CHAP,None"
        } else {
            "None"
        }
    }

    /// Encodes a logical request and queues its first PDU.
    fn queue_request(
        &mut self,
        pairs: Vec<(String, String)>,
        transit: bool,
        nsg: Stage,
        chap_list: bool,
    ) -> Result<(), LoginError> {
        log_keys("sending", self.stage, &pairs);
        let text = encode_text(&pairs)
            .map_err(|_| LoginError::InvalidConfig("a login key or value is not valid iSCSI text"))?
            .freeze();
        self.pending = TextSplitter::new(text, LOGIN_SEGMENT)
            .map(|(chunk, _)| chunk)
            .collect();
        let chap_response = match self.auth {
            Auth::AwaitVerdict(_) if self.stage == Stage::SECURITY => self.chap_algorithm,
            _ => None,
        };
        self.request = RequestFlags {
            transit,
            cont: false,
            nsg,
            chap_list,
            chap_response,
        };
        self.send_next_chunk()
    }

    fn send_next_chunk(&mut self) -> Result<(), LoginError> {
        let data = self.pending.pop_front().unwrap_or_default();
        let cont = !self.pending.is_empty();
        self.send(data, cont)
    }

    /// Asks for the rest of a continued response with an empty request.
    fn send_ack(&mut self) -> Result<(), LoginError> {
        self.send(Bytes::new(), false)
    }

    fn send(&mut self, data: Bytes, cont: bool) -> Result<(), LoginError> {
        self.exchanges += 1;
        if self.exchanges > MAX_EXCHANGES {
            return Err(LoginError::PeerMisbehaved("login does not converge"));
        }
        let transit = self.request.transit && !cont;
        let flags = RequestFlags {
            transit,
            cont,
            ..self.request
        };
        let request = LoginRequest {
            transit,
            cont,
            csg: self.stage,
            // NSG is reserved (zero) unless T is set.
            nsg: if transit { self.request.nsg } else { Stage(0) },
            version_max: 0,
            version_min: 0,
            isid: self.config.isid,
            tsih: self.config.tsih,
            itt: LOGIN_ITT,
            cid: self.config.cid,
            cmd_sn: self.config.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data,
        };
        self.transmit = Some((Pdu::LoginRequest(request), flags));
        Ok(())
    }

    fn handle_response(&mut self, response: LoginResponse) -> Result<(), LoginError> {
        let sent = self.in_flight.take().ok_or(LoginError::PeerMisbehaved(
            "login response without an outstanding request",
        ))?;
        if response.status != LoginStatus::SUCCESS {
            return Err(failure(&response, sent, self.stage == Stage::OPERATIONAL));
        }
        self.check_header(&response, sent)?;
        self.exp_stat_sn = response.stat_sn.wrapping_add(1);
        if sent.cont {
            if !response.data.is_empty() || response.transit || response.cont {
                return Err(LoginError::PeerMisbehaved(
                    "answer to a continued request is not empty",
                ));
            }
            return self.send_next_chunk();
        }
        let pairs = self
            .assembler
            .push(&response.data, response.cont)
            .map_err(|_| {
                LoginError::PeerMisbehaved("malformed key=value text in a login response")
            })?;
        let Some(pairs) = pairs else {
            return self.send_ack();
        };
        log_keys("received", self.stage, &pairs);
        match self.stage {
            Stage::SECURITY => self.handle_security(&response, pairs),
            _ => self.handle_operational(&response, pairs),
        }
    }

    fn check_header(&self, response: &LoginResponse, sent: RequestFlags) -> Result<(), LoginError> {
        let misbehaved = |reason| Err(LoginError::PeerMisbehaved(reason));
        if response.version_active != 0 {
            return misbehaved("target selected an iSCSI version we did not offer");
        }
        if response.itt != LOGIN_ITT {
            return misbehaved("login response for another Initiator Task Tag");
        }
        if response.isid != self.config.isid {
            return misbehaved("login response for another ISID");
        }
        if response.transit && response.cont {
            return misbehaved("login response with both T and C bits");
        }
        if response.csg != self.stage {
            return misbehaved("login response in another stage than our request");
        }
        if response.transit {
            if !sent.transit {
                return misbehaved("target changed stage without our T bit");
            }
            let (csg, nsg, asked) = (response.csg.0, response.nsg.0, sent.nsg.0);
            if nsg <= csg || nsg > asked || response.nsg == Stage(2) {
                return misbehaved("target moved to a stage we did not ask for");
            }
        }
        Ok(())
    }

    fn handle_security(
        &mut self,
        response: &LoginResponse,
        pairs: Vec<(String, String)>,
    ) -> Result<(), LoginError> {
        let mut keys = ChapKeys::default();
        let mut method = None;
        let mut rest = Vec::new();
        for (key, value) in pairs {
            if key == "AuthMethod" {
                if method.replace(value).is_some() {
                    return Err(LoginError::PeerMisbehaved("AuthMethod appears twice"));
                }
            } else if !keys.take(&key, &value)? {
                rest.push((key, value));
            }
        }
        self.negotiation.handle_pairs(&rest)?;
        let next = self.advance_auth(method, &keys)?;
        if response.transit {
            if !matches!(self.auth, Auth::Done) {
                return Err(LoginError::PeerMisbehaved(
                    "target left the security stage before authentication",
                ));
            }
            return self.enter_stage(response);
        }
        let mut pairs = next;
        pairs.extend(self.negotiation.take_replies());
        let (transit, chap_list) = match &self.auth {
            Auth::AwaitChallenge => (
                false,
                self.config
                    .chap
                    .as_ref()
                    .is_some_and(|c| c.offered().len() > 1),
            ),
            _ => (true, false),
        };
        self.queue_request(pairs, transit, Stage::OPERATIONAL, chap_list)
    }

    /// Moves authentication on with the target's security keys; returns the security keys
    /// of our next request.
    fn advance_auth(
        &mut self,
        method: Option<String>,
        keys: &ChapKeys,
    ) -> Result<Vec<(String, String)>, LoginError> {
        let state = std::mem::replace(&mut self.auth, Auth::Done);
        if !matches!(state, Auth::AwaitMethod) && method.is_some() {
            return Err(LoginError::PeerMisbehaved(
                "AuthMethod sent again after the choice",
            ));
        }
        match state {
            Auth::AwaitMethod => {
                if !keys.is_empty() {
                    return Err(LoginError::PeerMisbehaved(
                        "CHAP keys before our CHAP_A offer",
                    ));
                }
                let method = method.ok_or(LoginError::PeerMisbehaved(
                    "AuthMethod missing from the answer",
                ))?;
                self.choose_method(&method)
            }
            Auth::AwaitChallenge => {
                let chap = self
                    .config
                    .chap
                    .as_ref()
                    .ok_or(LoginError::PeerMisbehaved("unexpected CHAP"))?;
                let answer = chap::answer_challenge(chap, keys)?;
                self.chap_algorithm = Some(answer.algorithm);
                self.auth = Auth::AwaitVerdict(answer.mutual);
                Ok(answer.pairs)
            }
            Auth::AwaitVerdict(Some(expect)) => {
                chap::verify_target(&expect, keys)?;
                self.target_authenticated = true;
                Ok(Vec::new())
            }
            Auth::AwaitVerdict(None) | Auth::Done if !keys.is_empty() => {
                Err(LoginError::PeerMisbehaved("CHAP keys after authentication"))
            }
            Auth::AwaitVerdict(None) | Auth::Done => Ok(Vec::new()),
        }
    }

    fn choose_method(&mut self, method: &str) -> Result<Vec<(String, String)>, LoginError> {
        let chap = self.config.chap.as_ref();
        match (method, chap) {
            ("None", Some(chap)) if chap.mutual.is_some() => Err(LoginError::AuthenticationFailed(
                "target chose AuthMethod=None although mutual CHAP is configured",
            )),
            ("None", _) => {
                if chap.is_some() {
                    tracing::info!("target requires no authentication; CHAP not used");
                }
                Ok(Vec::new())
            }
            ("CHAP", Some(chap)) => {
                let offer = vec![("CHAP_A".to_owned(), chap.algorithm_offer())];
                self.auth = Auth::AwaitChallenge;
                Ok(offer)
            }
            ("Reject", _) => Err(LoginError::AuthMethodRejected {
                offered: self.auth_offer(),
            }),
            _ => Err(LoginError::PeerMisbehaved(
                "target chose an AuthMethod we did not offer",
            )),
        }
    }

    fn enter_stage(&mut self, response: &LoginResponse) -> Result<(), LoginError> {
        self.stage = response.nsg;
        if response.nsg == Stage::FULL_FEATURE {
            return self.finish(response);
        }
        let mut pairs = self.negotiation.take_replies();
        pairs.extend(self.negotiation.offer());
        self.queue_request(pairs, true, Stage::FULL_FEATURE, false)
    }

    fn handle_operational(
        &mut self,
        response: &LoginResponse,
        pairs: Vec<(String, String)>,
    ) -> Result<(), LoginError> {
        if pairs
            .iter()
            .any(|(key, _)| key == "AuthMethod" || key.starts_with("CHAP_"))
        {
            return Err(LoginError::PeerMisbehaved(
                "security key in the operational stage",
            ));
        }
        self.negotiation.handle_pairs(&pairs)?;
        if response.transit {
            return self.finish(response);
        }
        let replies = self.negotiation.take_replies();
        self.queue_request(replies, true, Stage::FULL_FEATURE, false)
    }

    fn finish(&mut self, response: &LoginResponse) -> Result<(), LoginError> {
        let negotiated = self.negotiation.clone().finish()?;
        let tsih = match self.config.tsih {
            0 if response.tsih == 0 && self.config.session_type == SessionType::Normal => {
                return Err(LoginError::PeerMisbehaved(
                    "final login response assigns no TSIH",
                ));
            }
            0 => response.tsih,
            ours if response.tsih != ours => {
                return Err(LoginError::PeerMisbehaved(
                    "final login response has another TSIH",
                ));
            }
            ours => ours,
        };
        self.finished = true;
        self.outcome = Some(Ok(Established {
            negotiated,
            tsih,
            cmd_sn: self.config.cmd_sn,
            stat_sn: response.stat_sn,
            exp_cmd_sn: response.exp_cmd_sn,
            max_cmd_sn: response.max_cmd_sn,
            chap_algorithm: self.chap_algorithm,
            target_authenticated: self.target_authenticated,
        }));
        Ok(())
    }
}

/// The error for a response with a non-success status to a request sent in the operational
/// stage when `operational` (our own stage: LIO's failure responses leave CSG at 0).
/// Logs the keys of one login request or response at trace level, for whoever debugs a login
/// that fails. A CHAP response is hidden: with its challenge it would let a reader of the log
/// search for the secret offline. The secret itself never reaches a key.
fn log_keys(direction: &str, stage: Stage, pairs: &[(String, String)]) {
    if !tracing::enabled!(tracing::Level::TRACE) {
        return;
    }
    let keys: Vec<String> = pairs
        .iter()
        .map(|(key, value)| match key.as_str() {
            "CHAP_R" => format!("{key}=(hidden)"),
            _ => format!("{key}={}", super::negotiate::clip(value)),
        })
        .collect();
    tracing::trace!(stage = ?stage, keys = %keys.join(" "), "login keys {direction}");
}

fn failure(response: &LoginResponse, sent: RequestFlags, operational: bool) -> LoginError {
    let status = response.status;
    if status.class() == 1 {
        let address = parse_text(&response.data)
            .ok()
            .and_then(|pairs| pairs.into_iter().find(|(key, _)| key == "TargetAddress"))
            .map(|(_, value)| value);
        return status_error(status, address.as_deref());
    }
    let auth_status = matches!(
        status,
        LoginStatus::INITIATOR_ERROR | LoginStatus::AUTHENTICATION_FAILURE
    );
    if sent.chap_list && auth_status {
        return LoginError::ChapAlgorithmsRejected {
            status: Some(status),
        };
    }
    match sent.chap_response {
        // Some targets (tgt) take CHAP_A=7 for SHA-1, against the IANA registry where 7 is
        // SHA-256, and then cannot check our response: a refusal of a response made with
        // anything but MD5 earns one more try with MD5 alone.
        Some(algorithm) if auth_status && algorithm != ChapAlgorithm::Md5 => {
            LoginError::ChapAlgorithmsRejected {
                status: Some(status),
            }
        }
        Some(_) if auth_status => LoginError::ChapResponseRefused { status },
        _ if status == LoginStatus::INITIATOR_ERROR && operational => {
            LoginError::OperationalRefused { status }
        }
        _ => status_error(status, None),
    }
}
