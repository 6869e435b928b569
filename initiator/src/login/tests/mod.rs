//! Sans-IO login tests against a fake target ([`fake::FakeTarget`]) and scripted responses.

mod failures;
mod fake;

use self::fake::{FakeTarget, ListHandling, MutualAnswer, drive, established};
use super::*;
use crate::wire::{LoginRequest, LoginStatus, Pdu, Stage, parse_text};

const INITIATOR: &str = "iqn.2026-01.test:initiator";
const TARGET: &str = "iqn.2026-01.test:target";
const ISID: Isid = Isid([0x80, 1, 2, 3, 0, 4]);

fn normal_config() -> LoginConfig {
    LoginConfig {
        cmd_sn: 7,
        ..LoginConfig::normal(INITIATOR, TARGET, ISID)
    }
}

fn chap_config(mutual: bool) -> LoginConfig {
    let mut chap = ChapConfig::new("alice", Secret::from("initiator-secret-01"));
    if mutual {
        chap.mutual = Some((TARGET.into(), Secret::from("target-secret-0123")));
    }
    LoginConfig {
        chap: Some(chap),
        ..normal_config()
    }
}

fn text(request: &LoginRequest) -> Vec<(String, String)> {
    parse_text(&request.data).unwrap()
}

fn keys(request: &LoginRequest) -> Vec<String> {
    text(request).into_iter().map(|(k, _)| k).collect()
}

fn value(request: &LoginRequest, key: &str) -> Option<String> {
    text(request)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[test]
fn plain_login() {
    let mut login = Login::new(normal_config());
    let mut target = FakeTarget::new();
    let done = established(&mut login, &mut target);
    assert_eq!(done.tsih, 0x1234);
    assert_eq!(done.cmd_sn, 7);
    assert_eq!((done.exp_cmd_sn, done.max_cmd_sn), (7, 38));
    assert_eq!(done.stat_sn, 0x102);
    assert_eq!(done.chap_algorithm, None);
    let n = &done.negotiated;
    assert!(n.header_digest && n.data_digest);
    assert_eq!(n.max_recv_data_segment_length, 262_144);
    assert_eq!(n.max_xmit_data_segment_length, 65_536);
    assert!(!n.initial_r2t && n.immediate_data);
    assert_eq!(n.target_portal_group_tag, Some(1));
    assert_eq!(n.target_alias.as_deref(), Some("fake disk"));

    let [first, second] = &target.requests[..] else {
        panic!("{:?}", target.requests)
    };
    assert_eq!(
        text(first),
        [
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("SessionType", "Normal"),
            ("AuthMethod", "None")
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    assert!(first.transit && !first.cont);
    assert_eq!(
        (first.csg, first.nsg),
        (Stage::SECURITY, Stage::OPERATIONAL)
    );
    assert_eq!(
        (first.isid, first.tsih, first.cid, first.cmd_sn),
        (ISID, 0, 0, 7)
    );
    assert!(second.transit);
    assert_eq!(
        (second.csg, second.nsg),
        (Stage::OPERATIONAL, Stage::FULL_FEATURE)
    );
    assert_eq!(
        second.exp_stat_sn, 0x102,
        "ExpStatSN follows the first response's StatSN"
    );
    assert_eq!(second.cmd_sn, 7, "login requests do not advance CmdSN");
    assert_eq!(second.itt, first.itt);
    assert!(keys(second).contains(&"MaxBurstLength".to_owned()));
    assert!(login.poll_transmit().is_none());
    assert_eq!(
        login.handle_pdu(Pdu::LoginResponse(Default::default())),
        Err(LoginError::Finished)
    );
}

#[test]
fn discovery_login() {
    let config = LoginConfig::discovery(INITIATOR, ISID);
    let mut login = Login::new(config);
    let mut target = FakeTarget::new();
    let done = established(&mut login, &mut target);
    assert_eq!(done.tsih, 0x1234);
    assert_eq!(
        value(&target.requests[0], "SessionType").as_deref(),
        Some("Discovery")
    );
    assert_eq!(value(&target.requests[0], "TargetName"), None);
    assert_eq!(
        keys(&target.requests[1]),
        ["HeaderDigest", "DataDigest", "MaxRecvDataSegmentLength"]
    );
}

#[test]
fn added_connection_negotiates_connection_keys_only() {
    let config = LoginConfig {
        tsih: 0x1234,
        cid: 2,
        ..normal_config()
    };
    let mut login = Login::new(config);
    let mut target = FakeTarget::new();
    let done = established(&mut login, &mut target);
    assert_eq!(done.tsih, 0x1234);
    assert_eq!(value(&target.requests[0], "SessionType"), None);
    assert_eq!(
        keys(&target.requests[1]),
        ["HeaderDigest", "DataDigest", "MaxRecvDataSegmentLength"]
    );
    assert!(
        target
            .requests
            .iter()
            .all(|r| r.tsih == 0x1234 && r.cid == 2)
    );
}

#[test]
fn one_way_chap() {
    let mut login = Login::new(chap_config(false));
    let mut target = FakeTarget::new().with_chap("alice", "initiator-secret-01");
    let done = established(&mut login, &mut target);
    assert_eq!(done.chap_algorithm, Some(ChapAlgorithm::Sha3_256));
    assert!(!done.target_authenticated);
    let requests = &target.requests;
    assert_eq!(
        value(&requests[0], "AuthMethod").as_deref(),
        Some("CHAP,None")
    );
    assert!(!requests[0].transit, "no transit before CHAP");
    assert_eq!(value(&requests[1], "CHAP_A").as_deref(), Some("8,7,6,5"));
    assert!(!requests[1].transit);
    assert_eq!(keys(&requests[2]), ["CHAP_N", "CHAP_R"]);
    assert!(requests[2].transit);
    assert_eq!(requests[3].csg, Stage::OPERATIONAL);
}

#[test]
fn one_way_chap_md5_target() {
    let mut login = Login::new(chap_config(false));
    let mut target = FakeTarget::new().with_chap("alice", "initiator-secret-01");
    target.algorithms = vec![5];
    let done = established(&mut login, &mut target);
    assert_eq!(done.chap_algorithm, Some(ChapAlgorithm::Md5));
}

#[test]
fn target_without_auth_accepts_chap_offer() {
    let mut login = Login::new(chap_config(false));
    let done = established(&mut login, &mut FakeTarget::new());
    assert_eq!(done.chap_algorithm, None);
}

#[test]
fn wrong_secret_is_an_authentication_failure() {
    // A refused response made with anything but MD5 earns one retry with MD5 alone (tgt
    // takes CHAP_A=7 for SHA-1); a refused MD5 response is an authentication failure.
    let mut login = Login::new(chap_config(false));
    let mut target = FakeTarget::new().with_chap("alice", "some-other-secret");
    let err = drive(&mut login, &mut target).unwrap_err();
    assert_eq!(
        err,
        LoginError::ChapAlgorithmsRejected {
            status: Some(LoginStatus::AUTHENTICATION_FAILURE)
        }
    );
    assert!(err.retry_with_md5_only());
    let mut config = chap_config(false);
    if let Some(chap) = config.chap.as_mut() {
        chap.md5_only = true;
    }
    let mut login = Login::new(config);
    let mut target = FakeTarget::new().with_chap("alice", "some-other-secret");
    let err = drive(&mut login, &mut target).unwrap_err();
    assert_eq!(
        err,
        LoginError::ChapResponseRefused {
            status: LoginStatus::AUTHENTICATION_FAILURE
        }
    );
    assert!(err.is_refusal());
    assert!(!err.retry_with_md5_only());
    assert!(err.to_string().contains("authentication failure"), "{err}");
}

#[test]
fn mutual_chap() {
    let mut login = Login::new(chap_config(true));
    let mut target = FakeTarget::new().with_chap("alice", "initiator-secret-01");
    let done = established(&mut login, &mut target);
    assert!(done.target_authenticated);
    let reply = &target.requests[2];
    assert_eq!(keys(reply), ["CHAP_N", "CHAP_R", "CHAP_I", "CHAP_C"]);
    let challenge = parse_binary(&value(reply, "CHAP_C").unwrap()).unwrap();
    assert_eq!(challenge.len(), 32, "as long as the SHA3-256 digest");
}

#[test]
fn mutual_chap_bad_target_answers() {
    let cases = [
        (
            MutualAnswer::WrongSecret,
            "target's CHAP name or response is wrong",
        ),
        (
            MutualAnswer::InitiatorSecret,
            "target reflected our own CHAP response (same secret both ways)",
        ),
        (
            MutualAnswer::EchoChallenge,
            "target sent our own challenge back (reflection)",
        ),
        (
            MutualAnswer::Omit,
            "target did not answer our CHAP challenge",
        ),
    ];
    for (behaviour, reason) in cases {
        let mut login = Login::new(chap_config(true));
        let mut target = FakeTarget::new().with_chap("alice", "initiator-secret-01");
        target.mutual = behaviour;
        let err = drive(&mut login, &mut target).unwrap_err();
        assert_eq!(
            err,
            LoginError::AuthenticationFailed(reason),
            "{behaviour:?}"
        );
        assert!(err.is_refusal());
        assert_eq!(
            target.requests.len(),
            3,
            "nothing sent after the bad answer"
        );
    }
}

#[test]
fn mutual_chap_refuses_target_skipping_authentication() {
    let mut login = Login::new(chap_config(true));
    let err = drive(&mut login, &mut FakeTarget::new()).unwrap_err();
    assert!(matches!(err, LoginError::AuthenticationFailed(_)), "{err}");
}

#[test]
fn chap_required_but_not_configured() {
    let mut login = Login::new(normal_config());
    let mut target = FakeTarget::new().with_chap("alice", "initiator-secret-01");
    let err = drive(&mut login, &mut target).unwrap_err();
    assert_eq!(err, LoginError::AuthMethodRejected { offered: "None" });
    assert!(err.to_string().contains("configure CHAP"));
}

#[test]
fn chap_list_rejected_then_md5_only_retry() {
    for handling in [ListHandling::AnswerReject, ListHandling::FailStatus] {
        let mut target = FakeTarget::new().with_chap("alice", "initiator-secret-01");
        target.list_handling = handling;
        let mut login = Login::new(chap_config(true));
        let err = drive(&mut login, &mut target).unwrap_err();
        assert!(err.retry_with_md5_only(), "{handling:?}: {err}");
        let status =
            (handling == ListHandling::FailStatus).then_some(LoginStatus::AUTHENTICATION_FAILURE);
        assert_eq!(err, LoginError::ChapAlgorithmsRejected { status });

        let mut config = chap_config(true);
        if let Some(chap) = config.chap.as_mut() {
            chap.md5_only = true;
        }
        let mut target = FakeTarget::new().with_chap("alice", "initiator-secret-01");
        target.list_handling = handling;
        let mut login = Login::new(config);
        let done = established(&mut login, &mut target);
        assert_eq!(done.chap_algorithm, Some(ChapAlgorithm::Md5));
        assert!(done.target_authenticated);
        assert_eq!(value(&target.requests[1], "CHAP_A").as_deref(), Some("5"));
    }
}

#[test]
fn connection_closed_on_chap_list() {
    let mut login = Login::new(chap_config(false));
    let mut target = FakeTarget::new().with_chap("alice", "initiator-secret-01");
    let Some(Pdu::LoginRequest(first)) = login.poll_transmit() else {
        panic!()
    };
    login
        .handle_pdu(Pdu::LoginResponse(target.handle(first)))
        .unwrap();
    assert!(login.poll_transmit().is_some(), "CHAP_A offer sent");
    login.handle_close();
    let err = login.poll_outcome().unwrap().unwrap_err();
    assert_eq!(err, LoginError::ChapAlgorithmsRejected { status: None });

    // A discovery login closed in answer to AuthMethod=None alone: LIO enforcing discovery
    // authentication. A normal login closed there may be a target that does not exist yet
    // (tgt) or a portal group that requires CHAP (LIO): retried, and a refusal that says
    // both once the retries are spent.
    let mut login = Login::new(LoginConfig::discovery(INITIATOR, ISID));
    login.poll_transmit();
    login.handle_close();
    let refused = LoginError::AuthMethodRejected { offered: "None" };
    assert_eq!(login.outcome(), Some(&Err(refused)));
    let mut login = Login::new(normal_config());
    login.poll_transmit();
    login.handle_close();
    let closed = LoginError::ClosedWithoutAnswer { offered: "None" };
    assert!(closed.is_retryable() && closed.is_refusal());
    assert!(!closed.is_authentication_failure(), "boot keeps waiting");
    assert!(closed.to_string().contains("--chap-user"), "{closed}");
    assert_eq!(login.outcome(), Some(&Err(closed)));

    // Past the security stage a close is just a lost connection.
    let mut login = Login::new(normal_config());
    let mut target = FakeTarget::new();
    let Some(Pdu::LoginRequest(first)) = login.poll_transmit() else {
        panic!()
    };
    login
        .handle_pdu(Pdu::LoginResponse(target.handle(first)))
        .unwrap();
    assert!(
        login.poll_transmit().is_some(),
        "operational stage under way"
    );
    login.handle_close();
    assert_eq!(login.outcome(), Some(&Err(LoginError::ConnectionClosed)));
}

#[test]
fn continued_responses() {
    let mut login = Login::new(chap_config(true));
    let mut target = FakeTarget::new().with_chap("alice", "initiator-secret-01");
    target.split = Some(7);
    let done = established(&mut login, &mut target);
    assert!(done.target_authenticated);
    assert!(target.requests.len() > 40, "{}", target.requests.len());
    let acks = target.requests.iter().filter(|r| r.data.is_empty()).count();
    assert!(acks > 30);
    assert!(target.requests.iter().all(|r| !r.cont));
}

#[test]
fn continued_requests_and_target_offers() {
    // 150 vendor keys with long names: our NotUnderstood answers exceed one 8 KiB segment.
    let mut target = FakeTarget::new();
    target.offers = (0..150)
        .map(|i| {
            (
                format!("X-com.example.vendor-key-with-a-long-name-{i:03}"),
                "1".to_owned(),
            )
        })
        .collect();
    target
        .offers
        .push(("iSCSIProtocolLevel".into(), "2".into()));
    target.split = Some(4000);
    let mut login = Login::new(normal_config());
    established(&mut login, &mut target);
    let continued = target.requests.iter().filter(|r| r.cont).count();
    assert!(continued >= 1, "our answer spans PDUs");
    assert!(
        target
            .requests
            .iter()
            .filter(|r| r.cont)
            .all(|r| !r.transit && r.data.len() <= 8192)
    );
    assert_eq!(target.answers.len(), 151);
    assert!(
        target.answers[..150]
            .iter()
            .all(|(_, v)| v == "NotUnderstood")
    );
    assert_eq!(
        target.answers[150],
        ("iSCSIProtocolLevel".into(), "1".into())
    );
}

#[test]
fn invalid_config_produces_no_pdu() {
    let configs = [
        LoginConfig {
            target_name: None,
            ..normal_config()
        },
        LoginConfig {
            initiator_name: String::new(),
            ..normal_config()
        },
        LoginConfig {
            target_name: Some(TARGET.into()),
            ..LoginConfig::discovery(INITIATOR, ISID)
        },
        LoginConfig {
            proposal: Proposal {
                max_recv_data_segment_length: 100,
                ..Proposal::default()
            },
            ..normal_config()
        },
        LoginConfig {
            initiator_name: "bad\0name".into(),
            ..normal_config()
        },
    ];
    for config in configs {
        let mut login = Login::new(config);
        assert!(login.poll_transmit().is_none());
        assert!(matches!(
            login.poll_outcome(),
            Some(Err(LoginError::InvalidConfig(_)))
        ));
    }
    let mut same = chap_config(true);
    if let Some(chap) = same.chap.as_mut() {
        chap.mutual = Some((TARGET.into(), chap.secret.clone()));
    }
    let mut login = Login::new(same);
    assert!(login.poll_transmit().is_none());
    assert!(matches!(
        login.poll_outcome(),
        Some(Err(LoginError::InvalidConfig(_)))
    ));
}

#[test]
fn secrets_never_in_debug_output() {
    let login = Login::new(chap_config(true));
    let debug = format!("{login:?}");
    assert!(
        !debug.contains("initiator-secret-01") && !debug.contains("target-secret-0123"),
        "{debug}"
    );
}

#[test]
fn a_plain_initiator_error_in_the_operational_stage_names_the_parameters() {
    // LIO ends the login with 0x0200 when we decline a digest its portal group requires.
    let mut login = Login::new(normal_config());
    let mut target = FakeTarget::new();
    let Some(Pdu::LoginRequest(first)) = login.poll_transmit() else {
        panic!()
    };
    login
        .handle_pdu(Pdu::LoginResponse(target.handle(first)))
        .unwrap();
    let Some(Pdu::LoginRequest(second)) = login.poll_transmit() else {
        panic!("operational request")
    };
    assert_eq!(second.csg, Stage::OPERATIONAL);
    let mut refusal = target.handle(second);
    refusal.status = LoginStatus::INITIATOR_ERROR;
    refusal.csg = Stage::SECURITY; // as LIO sends it
    refusal.transit = false;
    refusal.data = bytes::Bytes::new();
    let _ = login.handle_pdu(Pdu::LoginResponse(refusal));
    let err = login.poll_outcome().unwrap().unwrap_err();
    assert_eq!(
        err,
        LoginError::OperationalRefused {
            status: LoginStatus::INITIATOR_ERROR
        }
    );
    assert!(!err.is_refusal() && !err.is_retryable());
    assert!(err.to_string().contains("--header-digest"), "{err}");
}
