//! The login target: the sans-IO [`Login`] driven as the initiator, with a hostile target's
//! byte stream as its input.
//!
//! The first byte picks the configuration (bits 0-1: no CHAP, one-way CHAP, mutual CHAP,
//! mutual CHAP with MD5 alone; bit 2: discovery session; bit 3: a connection added to an
//! existing session; bit 7: the scripted-target fix-ups below); the rest is what the target
//! sends, framed by the real [`Codec`]. With the fix-ups on, each Login Response gets our ISID
//! and task tag, and a mutual-CHAP `CHAP_R` is replaced by the right answer to the challenge
//! we sent, so the fuzzer spends its time past the checks a random stream cannot pass.

use bytes::{Bytes, BytesMut};

use crate::login::{
    ChapAlgorithm, ChapConfig, Established, Login, LoginConfig, LoginError, MAX_LENGTH_VALUE,
    MIN_LENGTH_VALUE, Secret, encode_hex, parse_binary, parse_number,
};
use crate::wire::{Codec, Isid, LoginRequest, Pdu, encode_text, parse_text};

/// The identities of the fuzzed logins. The seed capture (`scripts/fuzz-seed`) configures
/// tgtd with the same accounts, so captured CHAP exchanges replay.
pub const INITIATOR: &str = "iqn.2026-12.org.sanshim:fuzz";
/// The target of a normal-session login.
pub const TARGET: &str = "iqn.2026-12.org.sanshim:fuzz-disk";
/// Our CHAP name and secret.
pub const CHAP_USER: (&str, &str) = ("fuzz-initiator", "initiator-secret-01");
/// The name and secret the target proves itself with (mutual CHAP).
pub const MUTUAL_USER: (&str, &str) = ("fuzz-target", "target-secret-0123");

const ISID: Isid = Isid([0x80, 0x12, 0x34, 0x56, 0, 0x78]);
/// The TSIH a connection added to a session presents (configuration bit 3).
const TSIH: u16 = 0x0101;
/// The largest login data segment (RFC 7143 §13.12 default, in force during login).
const LOGIN_SEGMENT: usize = 8192;

/// How a fuzzed login ended.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum LoginSummary {
    /// Reached the full feature phase.
    Established {
        /// The target proved itself with mutual CHAP.
        target_authenticated: bool,
    },
    /// Failed, with the error's text.
    Failed(String),
}

/// Runs one login against the target stream in `data[1..]`, configured by `data[0]`.
///
/// # Panics
/// When the login breaks its contract: more than one request outstanding, a request over
/// the login segment limit or for another ISID, a PDU after the end, a finished login without
/// an outcome, or an established session that violates the negotiation rules or skipped the
/// mutual authentication it was configured with.
pub fn fuzz_login(data: &[u8]) -> Option<LoginSummary> {
    let (&settings, stream) = data.split_first()?;
    let config = config(settings);
    let mut script = Script {
        fix_up: settings & 0x80 != 0,
        algorithm: None,
        last_request: None,
    };
    let mut login = Login::new(config.clone());
    let mut codec = Codec::new();
    let mut buf = BytesMut::from(stream);
    loop {
        if let Some(pdu) = login.poll_transmit() {
            script.last_request = Some(check_request(pdu, &config));
            assert!(login.poll_transmit().is_none(), "two requests outstanding");
        }
        if login.is_finished() {
            break;
        }
        match codec.decode(&mut buf) {
            Ok(Some(pdu)) => {
                let _ = login.handle_pdu(script.fix(pdu));
            }
            Ok(None) | Err(_) => login.handle_close(),
        }
    }
    assert!(login.poll_transmit().is_none(), "a request after the end");
    let outcome = login.poll_outcome();
    let Some(outcome) = outcome else {
        panic!("a finished login without an outcome");
    };
    assert_eq!(
        login.handle_pdu(Pdu::NopIn(Default::default())),
        Err(LoginError::Finished),
        "a PDU accepted after the end"
    );
    Some(match outcome {
        Ok(established) => check_established(&established, &config),
        Err(e) => LoginSummary::Failed(e.to_string()),
    })
}

fn config(settings: u8) -> LoginConfig {
    let mut config = if settings & 4 != 0 {
        LoginConfig::discovery(INITIATOR, ISID)
    } else {
        LoginConfig::normal(INITIATOR, TARGET, ISID)
    };
    if settings & 8 != 0 {
        config.tsih = TSIH;
    }
    let mut chap = ChapConfig::new(CHAP_USER.0, Secret::from(CHAP_USER.1));
    match settings & 3 {
        0 => return config,
        1 => {}
        mode => {
            chap.mutual = Some((MUTUAL_USER.0.to_owned(), Secret::from(MUTUAL_USER.1)));
            chap.md5_only = mode == 3;
        }
    }
    config.chap = Some(chap);
    config
}

fn check_request(pdu: Pdu, config: &LoginConfig) -> LoginRequest {
    let Pdu::LoginRequest(request) = pdu else {
        panic!("login sent a {:?}", pdu.opcode());
    };
    assert!(request.data.len() <= LOGIN_SEGMENT, "request over 8 KiB");
    assert_eq!(request.isid, config.isid, "request for another ISID");
    assert_eq!(request.tsih, config.tsih, "request with another TSIH");
    assert!(!(request.transit && request.cont), "request with T and C");
    request
}

fn check_established(established: &Established, config: &LoginConfig) -> LoginSummary {
    let n = &established.negotiated;
    let lengths = MIN_LENGTH_VALUE..=MAX_LENGTH_VALUE;
    assert!(lengths.contains(&n.max_xmit_data_segment_length));
    assert!(
        n.first_burst_length <= n.max_burst_length,
        "FirstBurst > MaxBurst"
    );
    let mutual = config.chap.as_ref().is_some_and(|c| c.mutual.is_some());
    assert!(
        !mutual || established.target_authenticated,
        "logged in without the mutual authentication configured"
    );
    assert!(config.chap.is_some() || established.chap_algorithm.is_none());
    LoginSummary::Established {
        target_authenticated: established.target_authenticated,
    }
}

/// What the scripted target remembers to fix its responses up.
struct Script {
    fix_up: bool,
    /// The CHAP algorithm the target chose (its last CHAP_A).
    algorithm: Option<ChapAlgorithm>,
    last_request: Option<LoginRequest>,
}

impl Script {
    fn fix(&mut self, pdu: Pdu) -> Pdu {
        let Pdu::LoginResponse(mut response) = pdu else {
            return pdu;
        };
        if !self.fix_up {
            return Pdu::LoginResponse(response);
        }
        response.isid = ISID;
        response.itt = 0;
        response.version_active = 0;
        if let Some(data) = self.fix_text(&response.data) {
            response.data = data;
        }
        Pdu::LoginResponse(response)
    }

    /// Notes the CHAP_A of a response and replaces its CHAP_R with the right answer to the
    /// challenge of our last request.
    fn fix_text(&mut self, data: &[u8]) -> Option<Bytes> {
        let mut pairs = parse_text(data).ok()?;
        let chosen = pairs.iter().find(|(key, _)| key == "CHAP_A");
        if let Some((_, value)) = chosen {
            let code = parse_number(value, 255).ok()?;
            self.algorithm = u8::try_from(code).ok().and_then(ChapAlgorithm::from_code);
        }
        let answer = self.mutual_answer()?;
        let (_, response) = pairs.iter_mut().find(|(key, _)| key == "CHAP_R")?;
        *response = answer;
        encode_text(&pairs).ok().map(BytesMut::freeze)
    }

    fn mutual_answer(&self) -> Option<String> {
        let request = parse_text(&self.last_request.as_ref()?.data).ok()?;
        let value = |name: &str| {
            request
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, v)| v.as_str())
        };
        let id = u8::try_from(parse_number(value("CHAP_I")?, 255).ok()?).ok()?;
        let challenge = parse_binary(value("CHAP_C")?).ok()?;
        let secret = Secret::from(MUTUAL_USER.1);
        let response = self.algorithm?.response(id, &secret, &challenge);
        Some(encode_hex(&response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::tests::corpus;

    /// Every captured tgtd login replays to the full feature phase, mutual CHAP included.
    #[test]
    fn captured_logins_replay() {
        let mut mutual = 0;
        for (path, seed) in corpus("login") {
            let summary = fuzz_login(&seed);
            let Some(LoginSummary::Established {
                target_authenticated,
            }) = summary
            else {
                panic!("{}: {summary:?}", path.display());
            };
            mutual += usize::from(target_authenticated);
        }
        assert!(mutual > 0, "no seed logs in with mutual CHAP");
    }

    #[test]
    fn a_stream_cut_before_any_response_fails() {
        for (path, seed) in corpus("login") {
            let summary = fuzz_login(&seed[..1]);
            assert!(
                matches!(summary, Some(LoginSummary::Failed(_))),
                "{}: {summary:?}",
                path.display()
            );
        }
        assert_eq!(fuzz_login(&[]), None);
    }
}
