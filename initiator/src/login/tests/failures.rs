//! Login failures: status classes, malformed responses, and a property test that arbitrary
//! responses never panic the machine.

use proptest::prelude::*;

use super::*;
use crate::wire::{Bytes, LoginResponse, NopIn, Reject, RejectReason, encode_text};

fn start(config: LoginConfig) -> (Login, LoginRequest) {
    let mut login = Login::new(config);
    let Some(Pdu::LoginRequest(first)) = login.poll_transmit() else {
        panic!("no first request")
    };
    (login, first)
}

/// A well-formed successful response to `request` carrying `pairs`, without the T bit.
fn reply(request: &LoginRequest, pairs: &[(&str, &str)]) -> LoginResponse {
    LoginResponse {
        csg: request.csg,
        isid: request.isid,
        itt: request.itt,
        stat_sn: 5,
        exp_cmd_sn: request.cmd_sn,
        max_cmd_sn: request.cmd_sn.wrapping_add(1),
        data: encode_text(pairs).unwrap().freeze(),
        ..LoginResponse::default()
    }
}

fn transit(mut response: LoginResponse, nsg: Stage) -> LoginResponse {
    response.transit = true;
    response.nsg = nsg;
    response
}

fn fails_with(login: &mut Login, response: LoginResponse) -> LoginError {
    let err = login.handle_pdu(Pdu::LoginResponse(response)).unwrap_err();
    assert_eq!(login.outcome(), Some(&Err(err.clone())));
    assert!(
        login.poll_transmit().is_none(),
        "nothing to send after a failure"
    );
    err
}

fn misbehaved(login: &mut Login, response: LoginResponse, reason: &str) {
    match fails_with(login, response) {
        LoginError::PeerMisbehaved(got) => assert_eq!(got, reason),
        other => panic!("expected PeerMisbehaved({reason}), got {other:?}"),
    }
}

#[test]
fn malformed_headers() {
    type Tamper = fn(&mut LoginResponse);
    let cases: [(Tamper, &str); 7] = [
        (
            |r| r.itt = 99,
            "login response for another Initiator Task Tag",
        ),
        (
            |r| r.isid = Isid([0x80, 0, 0, 0, 0, 9]),
            "login response for another ISID",
        ),
        (
            |r| r.version_active = 1,
            "target selected an iSCSI version we did not offer",
        ),
        (
            |r| r.csg = Stage::OPERATIONAL,
            "login response in another stage than our request",
        ),
        (
            |r| {
                r.transit = true;
                r.cont = true;
            },
            "login response with both T and C bits",
        ),
        (
            |r| {
                r.transit = true;
                r.nsg = Stage::FULL_FEATURE;
            },
            "target moved to a stage we did not ask for",
        ),
        (
            |r| {
                r.transit = true;
                r.nsg = Stage::SECURITY;
            },
            "target moved to a stage we did not ask for",
        ),
    ];
    for (tamper, reason) in cases {
        let (mut login, first) = start(normal_config());
        let mut response = reply(&first, &[("AuthMethod", "None")]);
        tamper(&mut response);
        misbehaved(&mut login, response, reason);
    }
}

#[test]
fn malformed_security_text() {
    let texts: [(&[u8], &str); 6] = [
        (
            b"AuthMethod=None",
            "malformed key=value text in a login response",
        ),
        (
            b"AuthMethod=\xff\0",
            "malformed key=value text in a login response",
        ),
        (b"=None\0", "malformed key=value text in a login response"),
        (
            b"TargetPortalGroupTag=1\0",
            "AuthMethod missing from the answer",
        ),
        (
            b"AuthMethod=SRP\0",
            "target chose an AuthMethod we did not offer",
        ),
        (
            b"AuthMethod=None\0AuthMethod=None\0",
            "AuthMethod appears twice",
        ),
    ];
    for (data, reason) in texts {
        let (mut login, first) = start(normal_config());
        let response = LoginResponse {
            data: Bytes::from_static(data),
            ..reply(&first, &[])
        };
        misbehaved(&mut login, response, reason);
    }
    let (mut login, first) = start(normal_config());
    let response = reply(&first, &[("AuthMethod", "None"), ("CHAP_A", "5")]);
    misbehaved(&mut login, response, "CHAP keys before our CHAP_A offer");
}

#[test]
fn chap_stage_violations() {
    // T=1 while our request had T=0.
    let (mut login, first) = start(chap_config(false));
    let response = transit(reply(&first, &[("AuthMethod", "CHAP")]), Stage::OPERATIONAL);
    misbehaved(
        &mut login,
        response,
        "target changed stage without our T bit",
    );

    // Challenge without CHAP_I.
    let (mut login, first) = start(chap_config(false));
    login
        .handle_pdu(Pdu::LoginResponse(reply(&first, &[("AuthMethod", "CHAP")])))
        .unwrap();
    let Some(Pdu::LoginRequest(second)) = login.poll_transmit() else {
        panic!()
    };
    let response = reply(&second, &[("CHAP_A", "5"), ("CHAP_C", "0x0102")]);
    misbehaved(&mut login, response, "CHAP_I missing");

    // Leaving the security stage before the verdict on our response.
    let (mut login, first) = start(chap_config(false));
    login
        .handle_pdu(Pdu::LoginResponse(reply(&first, &[("AuthMethod", "CHAP")])))
        .unwrap();
    let Some(Pdu::LoginRequest(second)) = login.poll_transmit() else {
        panic!()
    };
    let response = reply(
        &second,
        &[("CHAP_A", "5"), ("CHAP_I", "1"), ("CHAP_C", "0x0102")],
    );
    login.handle_pdu(Pdu::LoginResponse(response)).unwrap();
    let Some(Pdu::LoginRequest(third)) = login.poll_transmit() else {
        panic!()
    };
    assert!(third.transit);
    let response = reply(&third, &[("CHAP_A", "5")]);
    misbehaved(&mut login, response, "CHAP keys after authentication");
}

/// Runs a plain login up to the operational request and returns it.
fn operational(login: &mut Login, first: &LoginRequest) -> LoginRequest {
    let response = transit(reply(first, &[("AuthMethod", "None")]), Stage::OPERATIONAL);
    login.handle_pdu(Pdu::LoginResponse(response)).unwrap();
    let Some(Pdu::LoginRequest(request)) = login.poll_transmit() else {
        panic!()
    };
    assert_eq!(request.csg, Stage::OPERATIONAL);
    request
}

#[test]
fn operational_violations() {
    let (mut login, first) = start(normal_config());
    let second = operational(&mut login, &first);
    misbehaved(
        &mut login,
        reply(&second, &[("CHAP_A", "5")]),
        "security key in the operational stage",
    );

    let (mut login, first) = start(normal_config());
    let second = operational(&mut login, &first);
    let response = transit(
        reply(&second, &[("HeaderDigest", "None")]),
        Stage::FULL_FEATURE,
    );
    misbehaved(&mut login, response, "final login response assigns no TSIH");

    let (mut login, first) = start(normal_config());
    let second = operational(&mut login, &first);
    let err = fails_with(
        &mut login,
        reply(&second, &[("MaxBurstLength", "99999999")]),
    );
    assert!(
        matches!(
            err,
            LoginError::Negotiation(NegotiationError::InvalidValue { .. })
        ),
        "{err:?}"
    );

    let (mut login, first) = start(LoginConfig {
        tsih: 9,
        ..normal_config()
    });
    let second = operational(&mut login, &first);
    let mut response = transit(reply(&second, &[]), Stage::FULL_FEATURE);
    response.tsih = 10;
    misbehaved(
        &mut login,
        response,
        "final login response has another TSIH",
    );
}

#[test]
fn minimal_target_answers_leave_defaults() {
    let (mut login, first) = start(normal_config());
    let second = operational(&mut login, &first);
    let mut response = transit(reply(&second, &[]), Stage::FULL_FEATURE);
    response.tsih = 3;
    login.handle_pdu(Pdu::LoginResponse(response)).unwrap();
    let done = login.poll_outcome().unwrap().unwrap();
    assert_eq!(done.negotiated.max_xmit_data_segment_length, 8192);
    assert!(!done.negotiated.header_digest);
    assert!(done.negotiated.initial_r2t);
}

#[test]
fn status_classes() {
    use LoginStatus as S;
    type Case<'a> = (S, &'a [(&'a str, &'a str)], LoginError);
    let cases: [Case<'_>; 8] = [
        (
            S::TARGET_MOVED_TEMPORARILY,
            &[("TargetAddress", "[fe80::1]:3260,2")],
            LoginError::Redirect {
                address: "[fe80::1]:3260,2".into(),
                permanent: false,
            },
        ),
        (
            S::TARGET_MOVED_PERMANENTLY,
            &[("TargetAddress", "10.0.0.9")],
            LoginError::Redirect {
                address: "10.0.0.9".into(),
                permanent: true,
            },
        ),
        (
            S::TARGET_MOVED_TEMPORARILY,
            &[],
            LoginError::PeerMisbehaved("redirection without a TargetAddress"),
        ),
        (
            S::SERVICE_UNAVAILABLE,
            &[],
            LoginError::Retryable {
                status: S::SERVICE_UNAVAILABLE,
            },
        ),
        (
            S::OUT_OF_RESOURCES,
            &[],
            LoginError::Retryable {
                status: S::OUT_OF_RESOURCES,
            },
        ),
        (
            S::NOT_FOUND,
            &[],
            LoginError::InitiatorError {
                status: S::NOT_FOUND,
            },
        ),
        (
            S::TARGET_REMOVED,
            &[],
            LoginError::InitiatorError {
                status: S::TARGET_REMOVED,
            },
        ),
        (
            S(0x0500),
            &[],
            LoginError::UnknownStatus { status: S(0x0500) },
        ),
    ];
    for (status, pairs, expected) in cases {
        let (mut login, first) = start(normal_config());
        let response = LoginResponse {
            status,
            ..reply(&first, pairs)
        };
        assert_eq!(fails_with(&mut login, response), expected, "{status:?}");
    }
    let err = LoginError::InitiatorError {
        status: S::NOT_FOUND,
    };
    assert_eq!(
        err.to_string(),
        "target refused the login: target not found"
    );
    assert!(err.is_refusal() && !err.is_retryable());
    assert!(
        LoginError::Retryable {
            status: S::SERVICE_UNAVAILABLE
        }
        .is_retryable()
    );
}

#[test]
fn unexpected_pdus() {
    let (mut login, _) = start(normal_config());
    let err = fails_with(&mut login, LoginResponse::default());
    assert!(matches!(err, LoginError::PeerMisbehaved(_)), "{err:?}");

    let (mut login, _) = start(normal_config());
    let nop = Pdu::NopIn(NopIn::default());
    assert_eq!(
        login.handle_pdu(nop),
        Err(LoginError::PeerMisbehaved(
            "a non-login PDU arrived during login"
        ))
    );
    let (mut login, _) = start(normal_config());
    let reject = Pdu::Reject(Reject {
        reason: RejectReason::PROTOCOL_ERROR,
        ..Reject::default()
    });
    assert_eq!(
        login.handle_pdu(reject),
        Err(LoginError::PduRejected {
            reason: RejectReason::PROTOCOL_ERROR
        })
    );

    let mut login = Login::new(normal_config());
    let early = reply(
        &LoginRequest {
            isid: ISID,
            ..LoginRequest::default()
        },
        &[("AuthMethod", "None")],
    );
    assert_eq!(
        login.handle_pdu(Pdu::LoginResponse(early)),
        Err(LoginError::PeerMisbehaved(
            "login response without an outstanding request"
        ))
    );
}

#[test]
fn target_that_never_transits() {
    let (mut login, mut request) = start(normal_config());
    let mut last = None;
    for _ in 0..200 {
        let response = reply(&request, &[]);
        if let Err(err) = login.handle_pdu(Pdu::LoginResponse(response)) {
            last = Some(err);
            break;
        }
        let Some(Pdu::LoginRequest(next)) = login.poll_transmit() else {
            panic!()
        };
        request = next;
    }
    // The first empty answer lacks AuthMethod; a target that stalls later is bounded too.
    assert_eq!(
        last,
        Some(LoginError::PeerMisbehaved(
            "AuthMethod missing from the answer"
        ))
    );

    let (mut login, first) = start(normal_config());
    let mut request = operational(&mut login, &first);
    for _ in 0..200 {
        if login
            .handle_pdu(Pdu::LoginResponse(reply(&request, &[])))
            .is_err()
        {
            break;
        }
        let Some(Pdu::LoginRequest(next)) = login.poll_transmit() else {
            panic!()
        };
        request = next;
    }
    assert_eq!(
        login.outcome(),
        Some(&Err(LoginError::PeerMisbehaved("login does not converge")))
    );
}

#[test]
fn answer_to_continued_request_must_be_empty() {
    let (mut login, first) = start(normal_config());
    let offers: Vec<(String, String)> = (0..150)
        .map(|i| {
            (
                format!("X-com.example.vendor-key-with-a-long-name-{i:03}"),
                "1".into(),
            )
        })
        .collect();
    let mut response = reply(&first, &[("AuthMethod", "None")]);
    let mut text = response.data.to_vec();
    text.extend_from_slice(&encode_text(&offers).unwrap());
    response.data = text.into();
    login.handle_pdu(Pdu::LoginResponse(response)).unwrap();
    let Some(Pdu::LoginRequest(chunk)) = login.poll_transmit() else {
        panic!()
    };
    assert!(chunk.cont && !chunk.transit);
    misbehaved(
        &mut login,
        reply(&chunk, &[("X-a", "1")]),
        "answer to a continued request is not empty",
    );
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("AuthMethod".to_owned()),
        Just("CHAP_A".to_owned()),
        Just("CHAP_I".to_owned()),
        Just("CHAP_C".to_owned()),
        Just("CHAP_N".to_owned()),
        Just("CHAP_R".to_owned()),
        Just("MaxBurstLength".to_owned()),
        Just("HeaderDigest".to_owned()),
        Just("TargetPortalGroupTag".to_owned()),
        Just("MaxRecvDataSegmentLength".to_owned()),
        Just("InitialR2T".to_owned()),
        "[A-Za-z]{1,10}",
    ]
}

fn value_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("None".to_owned()),
        Just("CHAP".to_owned()),
        Just("5".to_owned()),
        Just("8,7".to_owned()),
        Just("0x0102030405060708".to_owned()),
        Just("Yes".to_owned()),
        Just("Reject".to_owned()),
        Just("65536".to_owned()),
        Just("CRC32C".to_owned()),
        "[ -~]{0,12}",
    ]
}

fn data() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from),
        proptest::collection::vec((key(), value_text()), 0..6).prop_map(|pairs| encode_text(
            &pairs
        )
        .map(|t| t.freeze())
        .unwrap_or_default()),
    ]
}

prop_compose! {
    /// A response that is usually well addressed (so the machine gets past header checks).
    fn response()(
        flags in any::<(bool, bool, bool)>(), stages in (0u8..4, 0u8..4),
        status in prop_oneof![Just(0u16), any::<u16>()], tamper in any::<(bool, u32, u8)>(),
        tsih in any::<u16>(), data in data(),
    ) -> (LoginResponse, bool) {
        let (transit, cont, keep_header) = flags;
        let response = LoginResponse {
            transit, cont, csg: Stage(stages.0), nsg: Stage(stages.1),
            version_active: if tamper.0 { tamper.2 } else { 0 },
            tsih, status: LoginStatus(status), data,
            itt: if keep_header { 0 } else { tamper.1 },
            ..LoginResponse::default()
        };
        (response, keep_header)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_responses_never_panic(
        chap in any::<bool>(), mutual in any::<bool>(),
        responses in proptest::collection::vec(response(), 1..12),
    ) {
        let config = if chap { chap_config(mutual) } else { normal_config() };
        let mut login = Login::new(config);
        for (mut response, keep_header) in responses {
            let request = login.poll_transmit();
            if keep_header {
                if let Some(Pdu::LoginRequest(request)) = &request {
                    response.isid = request.isid;
                    response.csg = request.csg;
                }
            }
            let finished_before = login.is_finished();
            let result = login.handle_pdu(Pdu::LoginResponse(response));
            if finished_before {
                prop_assert_eq!(result, Err(LoginError::Finished));
            } else if let Err(err) = result {
                prop_assert!(login.is_finished());
                prop_assert_eq!(login.outcome(), Some(&Err(err)));
            }
        }
        login.handle_close();
        prop_assert!(login.is_finished());
    }
}
