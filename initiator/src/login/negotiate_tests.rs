//! Tests of the negotiation engine: fixed exchanges and property tests of the §13 rules.

use proptest::prelude::*;

use super::*;
use crate::login::params::DigestPref;

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn value_of<'a>(offer: &'a [(String, String)], key: &str) -> &'a str {
    offer
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap()
}

/// A target that holds `target` and answers every offered key by the RFC 7143 §13 rules,
/// written out per key independently of the engine.
fn answer_as_target(offer: &[(String, String)], target: &Proposal) -> Vec<(String, String)> {
    let yes = |b: bool| if b { "Yes" } else { "No" }.to_owned();
    let mut answers = Vec::new();
    for (key, value) in offer {
        let num = || value.parse::<u32>().unwrap();
        let boolean = || value == "Yes";
        let answer = match key.as_str() {
            "HeaderDigest" | "DataDigest" => {
                let pref = if key == "HeaderDigest" {
                    target.header_digest
                } else {
                    target.data_digest
                };
                value
                    .split(',')
                    .find(|v| pref.accepts(v))
                    .unwrap_or("Reject")
                    .to_owned()
            }
            "MaxRecvDataSegmentLength" => target.max_recv_data_segment_length.to_string(),
            "MaxBurstLength" => num().min(target.max_burst_length).to_string(),
            "FirstBurstLength" => num().min(target.first_burst_length).to_string(),
            "MaxConnections" => num().min(target.max_connections.into()).to_string(),
            "MaxOutstandingR2T" => num().min(target.max_outstanding_r2t.into()).to_string(),
            "DefaultTime2Retain" => num().min(target.default_time2retain.into()).to_string(),
            "ErrorRecoveryLevel" => num().min(target.error_recovery_level.into()).to_string(),
            "DefaultTime2Wait" => num().max(target.default_time2wait.into()).to_string(),
            "InitialR2T" => yes(boolean() || target.initial_r2t),
            "DataPDUInOrder" => yes(boolean() || target.data_pdu_in_order),
            "DataSequenceInOrder" => yes(boolean() || target.data_sequence_in_order),
            "ImmediateData" => yes(boolean() && target.immediate_data),
            other => panic!("unexpected offer {other}"),
        };
        answers.push((key.clone(), answer));
    }
    answers
}

fn negotiate(ours: &Proposal, target: &Proposal) -> Result<Negotiated, NegotiationError> {
    let mut engine = Negotiation::new(ours.clone(), SessionType::Normal);
    let offer = engine.offer();
    engine.handle_pairs(&answer_as_target(&offer, target))?;
    assert!(!engine.has_replies());
    engine.finish()
}

#[test]
fn default_offer_lists_every_key() {
    let mut engine = Negotiation::new(Proposal::default(), SessionType::Normal);
    let offer = engine.offer();
    let expected = [
        ("HeaderDigest", "CRC32C,None"),
        ("DataDigest", "CRC32C,None"),
        ("MaxRecvDataSegmentLength", "262144"),
        ("MaxConnections", "1"),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "16776192"),
        ("FirstBurstLength", "262144"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "20"),
        ("MaxOutstandingR2T", "1"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
        ("ErrorRecoveryLevel", "0"),
    ];
    assert_eq!(offer, pairs(&expected));
}

#[test]
fn discovery_offer_is_digests_and_length() {
    let mut engine = Negotiation::new(Proposal::default(), SessionType::Discovery);
    let offer = engine.offer();
    let keys: Vec<&str> = offer.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["HeaderDigest", "DataDigest", "MaxRecvDataSegmentLength"]
    );
}

#[test]
fn typical_target_answer() {
    // What tgtd answers to the default offer, give or take order.
    let mut engine = Negotiation::new(Proposal::default(), SessionType::Normal);
    engine.offer();
    let answer = pairs(&[
        ("HeaderDigest", "None"),
        ("DataDigest", "CRC32C"),
        ("MaxRecvDataSegmentLength", "8192"),
        ("MaxConnections", "1"),
        ("InitialR2T", "Yes"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "262144"),
        ("FirstBurstLength", "65536"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "0"),
        ("MaxOutstandingR2T", "1"),
        ("DataPDUInOrder", "Yes"),
        ("DataSequenceInOrder", "Yes"),
        ("ErrorRecoveryLevel", "0"),
        ("TargetAlias", "disk one"),
        ("TargetPortalGroupTag", "1"),
        ("X-com.example.Foo", "bar"),
    ]);
    engine.handle_pairs(&answer).unwrap();
    assert_eq!(
        engine.take_replies(),
        pairs(&[("X-com.example.Foo", "NotUnderstood")])
    );
    let n = engine.finish().unwrap();
    assert!(!n.header_digest);
    assert!(n.data_digest);
    assert_eq!(n.max_recv_data_segment_length, 262_144);
    assert_eq!(n.max_xmit_data_segment_length, 8192);
    assert_eq!(n.max_burst_length, 262_144);
    assert_eq!(n.first_burst_length, 65_536);
    assert!(n.initial_r2t);
    assert!(n.immediate_data);
    assert_eq!(n.default_time2retain, 0);
    assert_eq!(n.target_alias.as_deref(), Some("disk one"));
    assert_eq!(n.target_portal_group_tag, Some(1));
}

#[test]
fn answers_outside_the_offer_are_errors() {
    let cases = [
        ("MaxBurstLength", "16776193"),  // above ours (min)
        ("DefaultTime2Wait", "1"),       // below ours (max)
        ("DataPDUInOrder", "No"),        // we said Yes (OR)
        ("HeaderDigest", "CRC32C,None"), // a list is not an answer
        ("HeaderDigest", "MD5"),         // never offered
    ];
    for (key, value) in cases {
        let mut engine = Negotiation::new(Proposal::default(), SessionType::Normal);
        engine.offer();
        let err = engine.handle_pair(key, value).unwrap_err();
        assert!(
            matches!(err, NegotiationError::NotOffered { .. }),
            "{key}={value}: {err:?}"
        );
    }
    let proposal = Proposal {
        immediate_data: false,
        ..Proposal::default()
    };
    let mut engine = Negotiation::new(proposal, SessionType::Normal);
    engine.offer();
    assert!(matches!(
        engine.handle_pair("ImmediateData", "Yes"),
        Err(NegotiationError::NotOffered { .. })
    ));
}

#[test]
fn malformed_and_out_of_range_answers() {
    let cases = [
        ("MaxBurstLength", "511"),
        ("MaxBurstLength", "lots"),
        ("ErrorRecoveryLevel", "3"),
        ("MaxOutstandingR2T", "0"),
        ("InitialR2T", "yes"),
        ("DefaultTime2Wait", "3601"),
    ];
    for (key, value) in cases {
        let mut engine = Negotiation::new(Proposal::default(), SessionType::Normal);
        engine.offer();
        let err = engine.handle_pair(key, value).unwrap_err();
        assert!(
            matches!(err, NegotiationError::InvalidValue { .. }),
            "{key}={value}: {err:?}"
        );
    }
    let mut engine = Negotiation::new(Proposal::default(), SessionType::Normal);
    for value in ["511", "16777216", "0x", ""] {
        assert!(
            engine
                .handle_pair("MaxRecvDataSegmentLength", value)
                .is_err(),
            "{value}"
        );
    }
    assert!(engine.handle_pair("TargetPortalGroupTag", "65536").is_err());
}

#[test]
fn special_values_in_answers() {
    let mut engine = Negotiation::new(Proposal::default(), SessionType::Normal);
    engine.offer();
    engine
        .handle_pair("FirstBurstLength", "Irrelevant")
        .unwrap();
    engine.handle_pair("MaxBurstLength", "Reject").unwrap();
    engine.handle_pair("DataDigest", "NotUnderstood").unwrap();
    let n = engine.finish().unwrap();
    // A refused key keeps the RFC default on both sides.
    assert_eq!(n.first_burst_length, 65_536);
    assert_eq!(n.max_burst_length, 262_144);
    assert!(!n.data_digest);

    let required = Proposal {
        header_digest: DigestPref::Crc32c,
        ..Proposal::default()
    };
    let mut engine = Negotiation::new(required, SessionType::Normal);
    engine.offer();
    assert!(matches!(
        engine.handle_pair("HeaderDigest", "Reject"),
        Err(NegotiationError::Refused { .. })
    ));
}

#[test]
fn unanswered_offers_follow_the_target_default() {
    let mut engine = Negotiation::new(Proposal::default(), SessionType::Normal);
    engine.offer();
    let n = engine.finish().unwrap();
    assert!(!n.header_digest && !n.data_digest);
    assert!(n.initial_r2t, "OR with the default Yes");
    assert_eq!(n.max_burst_length, 262_144, "min with the default");
    assert_eq!(n.first_burst_length, 65_536);
    assert_eq!(n.max_xmit_data_segment_length, 8192);
}

#[test]
fn target_offers_are_answered() {
    let mut engine = Negotiation::new(Proposal::default(), SessionType::Normal);
    let target = pairs(&[
        ("MaxBurstLength", "65536"),
        ("DefaultTime2Wait", "5"),
        ("InitialR2T", "Yes"),
        ("ImmediateData", "Yes"),
        ("HeaderDigest", "None,CRC32C"),
        ("OFMarker", "No"),
        ("TaskReporting", "ResponseFence,RFC3720"),
        ("iSCSIProtocolLevel", "2"),
        ("X#Vendor", "1"),
    ]);
    engine.handle_pairs(&target).unwrap();
    let replies = engine.take_replies();
    assert_eq!(
        replies,
        pairs(&[
            ("MaxBurstLength", "65536"),
            ("DefaultTime2Wait", "5"),
            // InitialR2T=Yes decides OR by itself: no answer.
            ("ImmediateData", "Yes"),
            ("HeaderDigest", "None"),
            ("OFMarker", "Reject"),
            ("TaskReporting", "RFC3720"),
            ("iSCSIProtocolLevel", "1"),
            ("X#Vendor", "NotUnderstood"),
        ])
    );
    // The keys the target proposed are not offered again.
    let offer = engine.offer();
    for key in [
        "MaxBurstLength",
        "DefaultTime2Wait",
        "InitialR2T",
        "HeaderDigest",
    ] {
        assert!(offer.iter().all(|(k, _)| k != key), "{key} offered twice");
    }
    assert_eq!(value_of(&offer, "DataDigest"), "CRC32C,None");
    let n = engine.current();
    assert_eq!(n.max_burst_length, 65_536);
    assert_eq!(n.default_time2wait, 5);
    assert!(n.initial_r2t);
}

#[test]
fn target_offer_out_of_range_is_rejected_by_answer() {
    let mut engine = Negotiation::new(Proposal::default(), SessionType::Normal);
    engine.handle_pair("MaxBurstLength", "100").unwrap();
    assert_eq!(
        engine.take_replies(),
        pairs(&[("MaxBurstLength", "Reject")])
    );
    assert!(engine.handle_pair("MaxConnections", "Reject").is_err());
}

#[test]
fn repeats_and_forbidden_keys() {
    let mut engine = Negotiation::new(Proposal::default(), SessionType::Normal);
    engine.offer();
    engine.handle_pair("MaxBurstLength", "65536").unwrap();
    assert!(matches!(
        engine.handle_pair("MaxBurstLength", "65536"),
        Err(NegotiationError::Repeated { .. })
    ));
    engine.handle_pair("TargetPortalGroupTag", "1").unwrap();
    engine.handle_pair("TargetPortalGroupTag", "0x1").unwrap();
    assert!(engine.handle_pair("TargetPortalGroupTag", "2").is_err());
    assert!(matches!(
        engine.handle_pair("InitiatorName", "iqn.x"),
        Err(NegotiationError::NotForTarget { .. })
    ));
}

#[test]
fn unsent_disagreeing_answer_fails_finish() {
    let mut engine = Negotiation::new(Proposal::default(), SessionType::Normal);
    engine.handle_pair("MaxBurstLength", "65536").unwrap();
    assert!(engine.clone().finish().is_ok(), "our answer equals theirs");
    engine.handle_pair("DefaultTime2Retain", "3600").unwrap();
    assert!(matches!(
        engine.finish(),
        Err(NegotiationError::Unanswered { .. })
    ));
}

#[test]
fn first_burst_above_max_burst_is_clamped() {
    // tgtd with `MaxBurstLength 16384` keeps its FirstBurstLength 65536 and answers both.
    let mut engine = Negotiation::new(Proposal::default(), SessionType::Normal);
    engine.offer();
    engine.handle_pair("MaxBurstLength", "16384").unwrap();
    engine.handle_pair("FirstBurstLength", "65536").unwrap();
    let n = engine.clone().finish().unwrap();
    assert_eq!((n.first_burst_length, n.max_burst_length), (16_384, 16_384));
    // Also when FirstBurstLength does not matter (InitialR2T=Yes, ImmediateData=No).
    engine.handle_pair("InitialR2T", "Yes").unwrap();
    engine.handle_pair("ImmediateData", "No").unwrap();
    assert_eq!(engine.finish().unwrap().first_burst_length, 16_384);
}

#[test]
fn errors_clip_long_values() {
    let mut engine = Negotiation::new(Proposal::default(), SessionType::Normal);
    engine.offer();
    let long = "9".repeat(5000);
    let err = engine.handle_pair("MaxBurstLength", &long).unwrap_err();
    assert!(err.to_string().len() < 200, "{err}");
}

fn digest_pref() -> impl Strategy<Value = DigestPref> {
    prop_oneof![
        Just(DigestPref::Crc32c),
        Just(DigestPref::None),
        Just(DigestPref::PreferCrc32c)
    ]
}

prop_compose! {
    fn proposal()(
        header_digest in digest_pref(), data_digest in digest_pref(),
        mrdsl in 512u32..=MAX_LENGTH_VALUE, mbl in 512u32..=MAX_LENGTH_VALUE,
        fbl in 512u32..=MAX_LENGTH_VALUE, bools in any::<[bool; 4]>(),
        r2t in 1u16.., erl in 0u8..=2, conns in 1u16..,
        wait in 0u16..=3600, retain in 0u16..=3600,
    ) -> Proposal {
        Proposal {
            header_digest, data_digest,
            max_recv_data_segment_length: mrdsl,
            max_burst_length: mbl,
            first_burst_length: fbl.min(mbl),
            initial_r2t: bools[0], immediate_data: bools[1],
            data_pdu_in_order: bools[2], data_sequence_in_order: bools[3],
            max_outstanding_r2t: r2t, error_recovery_level: erl, max_connections: conns,
            default_time2wait: wait, default_time2retain: retain,
        }
    }
}

fn digests_compatible(a: DigestPref, b: DigestPref) -> bool {
    !matches!(
        (a, b),
        (DigestPref::Crc32c, DigestPref::None) | (DigestPref::None, DigestPref::Crc32c)
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rules_hold_for_any_pair_of_sides(ours in proposal(), theirs in proposal()) {
        // A target that requires CRC32C answers our `None` with Reject, which leaves the
        // default (None) in force; only our own requirement makes the login fail here.
        let required = |o, t| o == DigestPref::Crc32c && t == DigestPref::None;
        let compatible = !required(ours.header_digest, theirs.header_digest)
            && !required(ours.data_digest, theirs.data_digest);
        let result = negotiate(&ours, &theirs);
        let n = match result {
            Err(NegotiationError::Refused { .. }) => { prop_assert!(!compatible); return Ok(()); }
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
            Ok(n) => n,
        };
        prop_assert!(compatible);
        prop_assert!(n.max_burst_length <= ours.max_burst_length);
        prop_assert!(n.max_burst_length <= theirs.max_burst_length);
        prop_assert_eq!(n.max_burst_length, ours.max_burst_length.min(theirs.max_burst_length));
        prop_assert_eq!(n.first_burst_length, ours.first_burst_length.min(theirs.first_burst_length));
        prop_assert!(n.first_burst_length <= n.max_burst_length);
        prop_assert_eq!(n.max_connections, ours.max_connections.min(theirs.max_connections));
        prop_assert_eq!(n.max_outstanding_r2t, ours.max_outstanding_r2t.min(theirs.max_outstanding_r2t));
        prop_assert_eq!(n.error_recovery_level, ours.error_recovery_level.min(theirs.error_recovery_level));
        prop_assert_eq!(n.default_time2retain, ours.default_time2retain.min(theirs.default_time2retain));
        prop_assert_eq!(n.default_time2wait, ours.default_time2wait.max(theirs.default_time2wait));
        prop_assert_eq!(n.initial_r2t, ours.initial_r2t || theirs.initial_r2t);
        prop_assert_eq!(n.immediate_data, ours.immediate_data && theirs.immediate_data);
        prop_assert_eq!(n.data_pdu_in_order, ours.data_pdu_in_order || theirs.data_pdu_in_order);
        prop_assert_eq!(n.data_sequence_in_order, ours.data_sequence_in_order || theirs.data_sequence_in_order);
        prop_assert_eq!(n.max_recv_data_segment_length, ours.max_recv_data_segment_length);
        prop_assert_eq!(n.max_xmit_data_segment_length, theirs.max_recv_data_segment_length);
        // CRC32C is used exactly when we listed it first and they accept it, or we accept it
        // and they cannot do without it.
        let expect = |o: DigestPref, t: DigestPref| o != DigestPref::None && t != DigestPref::None;
        prop_assert_eq!(n.header_digest, expect(ours.header_digest, theirs.header_digest));
        prop_assert_eq!(n.data_digest, expect(ours.data_digest, theirs.data_digest));
    }

    #[test]
    fn first_burst_never_exceeds_max_burst(
        ours in proposal(), mut theirs in proposal(), their_fbl in 512u32..=MAX_LENGTH_VALUE,
    ) {
        // A target may hold a FirstBurstLength above its MaxBurstLength (tgtd does).
        theirs.first_burst_length = their_fbl;
        theirs.header_digest = DigestPref::PreferCrc32c;
        theirs.data_digest = DigestPref::PreferCrc32c;
        let n = negotiate(&ours, &theirs).unwrap();
        let first = ours.first_burst_length.min(their_fbl).min(n.max_burst_length);
        prop_assert_eq!(n.first_burst_length, first);
    }

    #[test]
    fn acceptor_role_matches_the_rules(ours in proposal(), theirs in proposal()) {
        // The target proposes its whole set; we answer. Our answer is the rule's result.
        let mut offerer = Negotiation::new(theirs.clone(), SessionType::Normal);
        let target_offer = offerer.offer();
        let mut engine = Negotiation::new(ours.clone(), SessionType::Normal);
        let compatible = digests_compatible(ours.header_digest, theirs.header_digest)
            && digests_compatible(ours.data_digest, theirs.data_digest);
        match engine.handle_pairs(&target_offer) {
            Err(NegotiationError::Refused { .. }) => { prop_assert!(!compatible); return Ok(()); }
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
            Ok(()) => prop_assert!(compatible),
        }
        // Feeding our answers back to the target side must be accepted as admissible.
        let replies = engine.take_replies();
        prop_assert!(offerer.handle_pairs(&replies).is_ok(), "{:?}", replies);
        let n = engine.current();
        prop_assert_eq!(n.max_burst_length, ours.max_burst_length.min(theirs.max_burst_length));
        prop_assert_eq!(n.default_time2wait, ours.default_time2wait.max(theirs.default_time2wait));
        prop_assert_eq!(n.initial_r2t, ours.initial_r2t || theirs.initial_r2t);
        prop_assert_eq!(n.immediate_data, ours.immediate_data && theirs.immediate_data);
    }

    #[test]
    fn arbitrary_target_text_never_panics(
        answers in proptest::collection::vec(("[A-Za-z#.-]{0,24}", ".{0,40}"), 0..40),
        keyed in proptest::collection::vec((0usize..OpKey::ALL.len(), ".{0,20}"), 0..20),
    ) {
        let mut engine = Negotiation::new(Proposal::default(), SessionType::Normal);
        engine.offer();
        for (key, value) in &answers {
            let _ = engine.handle_pair(key, value);
        }
        for (index, value) in &keyed {
            let _ = engine.handle_pair(OpKey::ALL[*index].name(), value);
        }
        let _ = engine.take_replies();
        if let Ok(n) = engine.finish() {
            prop_assert!(n.max_burst_length <= Proposal::default().max_burst_length);
            prop_assert!(n.first_burst_length <= n.max_burst_length);
            prop_assert!(n.error_recovery_level <= 2);
        }
    }
}
