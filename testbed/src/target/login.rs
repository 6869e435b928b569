//! The target side of login (RFC 7143 §6, §11.12-11.13): stages and transitions (§6.3),
//! AuthMethod=None only, and the answers to the initiator's operational keys (§13) by each
//! key's result function. Sans-IO: it is fed Login Requests and returns Login Responses,
//! leaving StatSN, ExpCmdSN and MaxCmdSN to the connection.

use sanshim_initiator::wire::{
    Bytes, LoginRequest, LoginResponse, LoginStatus, Stage, TextAssembler, encode_text,
};

use super::config::{Digest, TargetConfig};

/// What a finished login agreed on (RFC 7143 defaults for keys not offered).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct Negotiated {
    /// SessionType=Discovery.
    pub(crate) discovery: bool,
    /// HeaderDigest=CRC32C.
    pub(crate) header_digest: bool,
    /// DataDigest=CRC32C.
    pub(crate) data_digest: bool,
    /// The initiator's declared MaxRecvDataSegmentLength: the bound on what we send.
    pub(crate) peer_mrdsl: u32,
    /// MaxBurstLength.
    pub(crate) max_burst: u32,
    /// FirstBurstLength.
    pub(crate) first_burst: u32,
    /// ImmediateData.
    pub(crate) immediate_data: bool,
    /// InitialR2T.
    pub(crate) initial_r2t: bool,
}

impl Default for Negotiated {
    fn default() -> Self {
        Negotiated {
            discovery: false,
            header_digest: false,
            data_digest: false,
            peer_mrdsl: 8192,
            max_burst: 262_144,
            first_burst: 65_536,
            immediate_data: true,
            initial_r2t: true,
        }
    }
}

/// The outcome of one Login Request.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) enum LoginStep {
    /// Send this response and wait for the next request.
    Reply(LoginResponse),
    /// Send this final response (T=1, NSG=3) and enter full feature phase.
    Done(LoginResponse, Negotiated),
    /// Send this failure response and close the connection.
    Fail(LoginResponse),
}

/// One connection's login in progress.
#[derive(Debug, Default)]
pub(crate) struct LoginMachine {
    started: bool,
    text: TextAssembler,
    params: Negotiated,
    declared_mrdsl: bool,
}

/// Keys RFC 7143 §13 marks "Irrelevant when SessionType=Discovery".
const SESSION_ONLY: [&str; 8] = [
    "MaxConnections",
    "InitialR2T",
    "ImmediateData",
    "MaxBurstLength",
    "FirstBurstLength",
    "MaxOutstandingR2T",
    "DataPDUInOrder",
    "DataSequenceInOrder",
];

impl LoginMachine {
    /// Handles one Login Request; `tsih` is the handle to give the session if this request
    /// completes the login.
    pub(crate) fn handle(
        &mut self,
        req: &LoginRequest,
        config: &TargetConfig,
        tsih: impl FnOnce() -> u16,
    ) -> LoginStep {
        match self.step(req, config) {
            Err(status) => LoginStep::Fail(response(req, status, Bytes::new())),
            Ok(None) => LoginStep::Reply(LoginResponse {
                nsg: req.csg,
                ..response(req, LoginStatus::SUCCESS, Bytes::new())
            }),
            Ok(Some(text)) => {
                let mut r = response(req, LoginStatus::SUCCESS, text);
                r.transit = req.transit;
                r.nsg = if req.transit { req.nsg } else { req.csg };
                if r.transit && r.nsg == Stage::FULL_FEATURE {
                    r.tsih = tsih();
                    LoginStep::Done(r, self.params)
                } else {
                    LoginStep::Reply(r)
                }
            }
        }
    }

    /// Checks the request and answers its keys: `Ok(None)` while the initiator's text
    /// continues (C bit), `Ok(Some(text))` with the answer, `Err` with a failure status.
    fn step(
        &mut self,
        req: &LoginRequest,
        config: &TargetConfig,
    ) -> Result<Option<Bytes>, LoginStatus> {
        let first = !self.started;
        self.started = true;
        if first && (req.version_min > 0 || req.tsih != 0) {
            return Err(if req.version_min > 0 {
                LoginStatus::UNSUPPORTED_VERSION
            } else {
                LoginStatus::SESSION_DOES_NOT_EXIST
            });
        }
        let bad_stage = !matches!(req.csg, Stage::SECURITY | Stage::OPERATIONAL);
        let bad_transit = req.transit
            && (req.nsg.0 <= req.csg.0
                || !matches!(req.nsg, Stage::OPERATIONAL | Stage::FULL_FEATURE));
        if bad_stage || bad_transit {
            return Err(LoginStatus::INITIATOR_ERROR);
        }
        let pairs = match self.text.push(&req.data, req.cont) {
            Ok(None) => return Ok(None),
            Ok(Some(pairs)) => pairs,
            Err(_) => return Err(LoginStatus::INITIATOR_ERROR),
        };
        if first {
            self.check_names(&pairs, config)?;
        }
        let mut answers = Vec::new();
        if first && !self.params.discovery {
            answers.push(("TargetPortalGroupTag".to_owned(), "1".to_owned()));
        }
        for (key, value) in &pairs {
            if let Some(answer) = self.answer(key, value, config)? {
                answers.push((key.clone(), answer));
            }
        }
        let operational =
            req.csg == Stage::OPERATIONAL || (req.transit && req.nsg == Stage::FULL_FEATURE);
        if operational && !self.declared_mrdsl {
            self.declared_mrdsl = true;
            let ours = config.max_recv_data_segment_length.to_string();
            answers.push(("MaxRecvDataSegmentLength".to_owned(), ours));
        }
        encode_text(&answers)
            .map(|t| Some(t.freeze()))
            .map_err(|_| LoginStatus::TARGET_ERROR)
    }

    /// Checks InitiatorName, SessionType and TargetName of the first request.
    fn check_names(
        &mut self,
        pairs: &[(String, String)],
        config: &TargetConfig,
    ) -> Result<(), LoginStatus> {
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        if get("InitiatorName").is_none() {
            return Err(LoginStatus::MISSING_PARAMETER);
        }
        self.params.discovery = match get("SessionType").unwrap_or("Normal") {
            "Normal" => false,
            "Discovery" => true,
            _ => return Err(LoginStatus::SESSION_TYPE_NOT_SUPPORTED),
        };
        match get("TargetName") {
            _ if self.params.discovery => Ok(()),
            None => Err(LoginStatus::MISSING_PARAMETER),
            Some(name) if name == config.iqn => Ok(()),
            Some(_) => Err(LoginStatus::NOT_FOUND),
        }
    }

    /// The answer to one offered key, `None` for declarations that need none.
    fn answer(
        &mut self,
        key: &str,
        value: &str,
        config: &TargetConfig,
    ) -> Result<Option<String>, LoginStatus> {
        let p = &mut self.params;
        if p.discovery && SESSION_ONLY.contains(&key) {
            return Ok(Some("Irrelevant".to_owned()));
        }
        let yes = |b: bool| if b { "Yes" } else { "No" }.to_owned();
        let answer = match key {
            "InitiatorName" | "InitiatorAlias" | "TargetName" | "SessionType" => return Ok(None),
            "AuthMethod" if value.split(',').any(|v| v == "None") => "None".to_owned(),
            "AuthMethod" => return Err(LoginStatus::AUTHENTICATION_FAILURE),
            "HeaderDigest" => digest(config.header_digest, value, &mut p.header_digest),
            "DataDigest" => digest(config.data_digest, value, &mut p.data_digest),
            "MaxRecvDataSegmentLength" => {
                if let Some(n) = number(value) {
                    p.peer_mrdsl = n.clamp(512, (1 << 24) - 1);
                }
                return Ok(None);
            }
            "MaxConnections" | "MaxOutstandingR2T" => numeric(value, |_| 1),
            "ErrorRecoveryLevel" | "DefaultTime2Retain" => numeric(value, |_| 0),
            "DefaultTime2Wait" => numeric(value, |n| n.max(u32::from(config.default_time2wait))),
            "iSCSIProtocolLevel" => numeric(value, |n| n.min(1)),
            "MaxBurstLength" => numeric(value, |n| {
                p.max_burst = n.min(config.max_burst_length);
                p.max_burst
            }),
            "FirstBurstLength" => numeric(value, |n| {
                p.first_burst = n.min(config.first_burst_length);
                p.first_burst
            }),
            "InitialR2T" => {
                p.initial_r2t = value == "Yes" || config.initial_r2t;
                yes(p.initial_r2t)
            }
            "ImmediateData" => {
                p.immediate_data = value == "Yes" && config.immediate_data;
                yes(p.immediate_data)
            }
            "DataPDUInOrder" | "DataSequenceInOrder" => yes(true),
            "IFMarker" | "OFMarker" => yes(false),
            "IFMarkInt" | "OFMarkInt" => "Reject".to_owned(),
            "TaskReporting" => "RFC3720".to_owned(),
            _ => "NotUnderstood".to_owned(),
        };
        Ok(Some(answer))
    }
}

/// A Login Response to `req` in its current stage, without transit.
pub(super) fn response(req: &LoginRequest, status: LoginStatus, data: Bytes) -> LoginResponse {
    LoginResponse {
        transit: false,
        cont: false,
        csg: req.csg,
        nsg: req.csg,
        version_max: 0,
        version_active: 0,
        isid: req.isid,
        tsih: 0,
        itt: req.itt,
        status,
        data,
        ..LoginResponse::default()
    }
}

/// Picks a digest from the initiator's list per `policy`; sets `on` to the outcome.
fn digest(policy: Digest, offered: &str, on: &mut bool) -> String {
    let has = |v: &str| offered.split(',').any(|o| o == v);
    let choice = match policy {
        Digest::None if has("None") => "None",
        Digest::Crc32c if has("CRC32C") => "CRC32C",
        Digest::InitiatorFirst => offered
            .split(',')
            .find(|v| matches!(*v, "None" | "CRC32C"))
            .unwrap_or("Reject"),
        _ => "Reject",
    };
    *on = choice == "CRC32C";
    choice.to_owned()
}

/// Answers a numeric key with `f` of the offered value, or `Reject` when it is no number.
fn numeric(value: &str, f: impl FnOnce(u32) -> u32) -> String {
    number(value).map_or_else(|| "Reject".to_owned(), |n| f(n).to_string())
}

/// A decimal or `0x` hexadecimal number (RFC 7143 §6.1).
fn number(value: &str) -> Option<u32> {
    match value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use sanshim_initiator::wire::{TextPairs, encode_text};

    use super::*;

    fn request(csg: Stage, nsg: Stage, transit: bool, pairs: &[(&str, &str)]) -> LoginRequest {
        LoginRequest {
            transit,
            csg,
            nsg,
            itt: 7,
            data: encode_text(pairs).unwrap().freeze(),
            ..LoginRequest::default()
        }
    }

    fn text(r: &LoginResponse) -> TextPairs {
        TextPairs::parse(&r.data).unwrap()
    }

    #[test]
    fn security_then_operational_then_full_feature() {
        let config = TargetConfig {
            first_burst_length: 65_536,
            max_burst_length: 16_384,
            ..TargetConfig::default()
        };
        let mut m = LoginMachine::default();
        let first = [
            ("InitiatorName", "iqn.x:i"),
            ("TargetName", config.iqn.as_str()),
            ("SessionType", "Normal"),
            ("AuthMethod", "CHAP,None"),
        ];
        let req = request(Stage::SECURITY, Stage::OPERATIONAL, true, &first);
        let LoginStep::Reply(r) = m.handle(&req, &config, || 9) else {
            panic!("no reply")
        };
        assert!(r.transit && r.nsg == Stage::OPERATIONAL);
        assert_eq!(text(&r).get("AuthMethod"), Some("None"));
        assert_eq!(text(&r).get("TargetPortalGroupTag"), Some("1"));
        let ops = [
            ("HeaderDigest", "CRC32C,None"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "262144"),
            ("MaxRecvDataSegmentLength", "65536"),
            ("X-vendor", "1"),
        ];
        let req = request(Stage::OPERATIONAL, Stage::FULL_FEATURE, true, &ops);
        let LoginStep::Done(r, params) = m.handle(&req, &config, || 9) else {
            panic!("not done")
        };
        let t = text(&r);
        assert_eq!(t.get("HeaderDigest"), Some("None"));
        assert_eq!(t.get("MaxBurstLength"), Some("16384"));
        assert_eq!(t.get("FirstBurstLength"), Some("65536"));
        assert_eq!(t.get("X-vendor"), Some("NotUnderstood"));
        assert_eq!(t.get("MaxRecvDataSegmentLength"), Some("262144"));
        assert_eq!(r.tsih, 9);
        assert_eq!(params.peer_mrdsl, 65_536);
    }

    #[test]
    fn failures() {
        let config = TargetConfig::default();
        let names = [("InitiatorName", "iqn.x:i"), ("TargetName", "iqn.x:nope")];
        let req = request(Stage::SECURITY, Stage::FULL_FEATURE, true, &names);
        let LoginStep::Fail(r) = LoginMachine::default().handle(&req, &config, || 1) else {
            panic!("accepted an unknown target")
        };
        assert_eq!(r.status, LoginStatus::NOT_FOUND);
        let req = request(
            Stage::SECURITY,
            Stage::OPERATIONAL,
            true,
            &[("TargetName", "x")],
        );
        let LoginStep::Fail(r) = LoginMachine::default().handle(&req, &config, || 1) else {
            panic!("accepted a login without InitiatorName")
        };
        assert_eq!(r.status, LoginStatus::MISSING_PARAMETER);
    }
}
