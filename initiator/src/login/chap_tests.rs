//! CHAP tests. Expected digests were computed independently with Python's hashlib, e.g.
//! `hashlib.md5(bytes([0x2a]) + b"sanshim-secret-1" + bytes(range(16))).hexdigest()`.

use super::*;

fn hex(text: &str) -> Vec<u8> {
    parse_binary(&format!("0x{text}")).unwrap()
}

#[test]
fn response_vectors() {
    let secret = Secret::from("sanshim-secret-1");
    let challenge: Vec<u8> = (0..16).collect();
    let cases = [
        (ChapAlgorithm::Md5, "097cdbf2f03308fe2003ec81d5842812"),
        (
            ChapAlgorithm::Sha1,
            "566aaae80ea02079edc6f6a7d8345d7249326191",
        ),
        (
            ChapAlgorithm::Sha256,
            "45a1718ffab3789232a4e746e307286d44388741c18a3ba8665a06f5c90fab51",
        ),
        (
            ChapAlgorithm::Sha3_256,
            "05d82e9a6ab5ec295437922ca76fa228280908d581f72264790ff891f54b8b57",
        ),
    ];
    for (algorithm, expected) in cases {
        let response = algorithm.response(0x2a, &secret, &challenge);
        assert_eq!(response, hex(expected), "{algorithm:?}");
        assert_eq!(response.len(), algorithm.digest_len());
    }
    let secret = Secret::from("mutual-secret-2");
    let challenge = hex("00ff10deadbeef0123456789abcdef42");
    let cases = [
        (ChapAlgorithm::Md5, "6d17e809bf9484600cbbf866f0a439d3"),
        (
            ChapAlgorithm::Sha1,
            "f91557ff953944c568ac8115074e2c32fdaa8cdb",
        ),
        (
            ChapAlgorithm::Sha256,
            "a2ce5050eaec0d04db1ede2036a8946dd479b0c997d2c8ce57b2a826269eac09",
        ),
        (
            ChapAlgorithm::Sha3_256,
            "5249c42b53f98f49f25a8c506d31053f1d4dae9c973af4b06ab0b38190dece87",
        ),
    ];
    for (algorithm, expected) in cases {
        assert_eq!(
            algorithm.response(0xff, &secret, &challenge),
            hex(expected),
            "{algorithm:?}"
        );
    }
}

#[test]
fn algorithm_codes() {
    for algorithm in DEFAULT_ALGORITHMS {
        assert_eq!(ChapAlgorithm::from_code(algorithm.code()), Some(algorithm));
    }
    assert_eq!(ChapAlgorithm::from_code(4), None);
    let mut config = ChapConfig::new("user", Secret::from("0123456789abcdef"));
    assert_eq!(config.algorithm_offer(), "8,7,6,5");
    config.md5_only = true;
    assert_eq!(config.algorithm_offer(), "5");
    config.md5_only = false;
    config.algorithms = vec![ChapAlgorithm::Sha256, ChapAlgorithm::Md5];
    assert_eq!(config.algorithm_offer(), "7,5");
}

#[test]
fn config_validation() {
    let good = ChapConfig::new("user", Secret::from("0123456789abcdef"));
    assert!(good.validate().is_ok());
    let short = ChapConfig::new("user", Secret::from("short"));
    assert!(
        short.validate().is_ok(),
        "short secrets are warned about, not refused"
    );
    let mut same = good.clone();
    same.mutual = Some(("target".into(), Secret::from("0123456789abcdef")));
    assert_eq!(
        same.validate(),
        Err(LoginError::InvalidConfig(
            "mutual CHAP secret equals our own secret"
        ))
    );
    let mut empty = good.clone();
    empty.user.clear();
    assert!(empty.validate().is_err());
    let mut none = good;
    none.algorithms.clear();
    assert!(none.validate().is_err());
    none.md5_only = true;
    assert!(none.validate().is_ok());
}

fn keys(list: &[(&str, &str)]) -> ChapKeys {
    let mut keys = ChapKeys::default();
    for (k, v) in list {
        assert!(keys.take(k, v).unwrap());
    }
    keys
}

#[test]
fn one_way_answer() {
    let config = ChapConfig::new("alice", Secret::from("sanshim-secret-1"));
    let challenge = encode_hex(&(0..16).collect::<Vec<u8>>());
    let target = keys(&[("CHAP_A", "5"), ("CHAP_I", "42"), ("CHAP_C", &challenge)]);
    let answer = answer_challenge(&config, &target).unwrap();
    assert!(answer.mutual.is_none());
    assert_eq!(answer.algorithm, ChapAlgorithm::Md5);
    let pairs = answer.pairs;
    assert_eq!(
        pairs,
        vec![
            ("CHAP_N".to_owned(), "alice".to_owned()),
            (
                "CHAP_R".to_owned(),
                "0x097cdbf2f03308fe2003ec81d5842812".to_owned()
            ),
        ]
    );
    // The same challenge in base64 and the identifier in hex give the same answer.
    let target = keys(&[
        ("CHAP_A", "5"),
        ("CHAP_I", "0x2a"),
        ("CHAP_C", "0bAAECAwQFBgcICQoLDA0ODw=="),
    ]);
    assert_eq!(answer_challenge(&config, &target).unwrap().pairs, pairs);
}

#[test]
fn mutual_answer_and_verification() {
    let mut config = ChapConfig::new("alice", Secret::from("sanshim-secret-1"));
    let target_secret = Secret::from("target-secret-99");
    config.mutual = Some(("tgt".into(), target_secret.clone()));
    let target = keys(&[
        ("CHAP_A", "7"),
        ("CHAP_I", "1"),
        ("CHAP_C", "0x0102030405060708090a0b0c0d0e0f10"),
    ]);
    let ChapAnswer {
        pairs,
        algorithm,
        mutual,
    } = answer_challenge(&config, &target).unwrap();
    assert_eq!(algorithm, ChapAlgorithm::Sha256);
    let expect = mutual.unwrap();
    let value = |key: &str| pairs.iter().find(|(k, _)| k == key).unwrap().1.clone();
    let id = u8::try_from(parse_number(&value("CHAP_I"), 255).unwrap()).unwrap();
    let challenge = parse_binary(&value("CHAP_C")).unwrap();
    assert_eq!(
        challenge.len(),
        32,
        "challenge as long as the SHA-256 digest"
    );
    let good = encode_hex(&ChapAlgorithm::Sha256.response(id, &target_secret, &challenge));
    assert!(verify_target(&expect, &keys(&[("CHAP_N", "tgt"), ("CHAP_R", &good)])).is_ok());
    let bad_name = keys(&[("CHAP_N", "other"), ("CHAP_R", &good)]);
    assert!(matches!(
        verify_target(&expect, &bad_name),
        Err(LoginError::AuthenticationFailed(_))
    ));
    let wrong = encode_hex(&ChapAlgorithm::Sha256.response(
        id,
        &Secret::from("nope-nope-nope"),
        &challenge,
    ));
    let bad_response = keys(&[("CHAP_N", "tgt"), ("CHAP_R", &wrong)]);
    assert!(matches!(
        verify_target(&expect, &bad_response),
        Err(LoginError::AuthenticationFailed(_))
    ));
    let missing = keys(&[("CHAP_N", "tgt")]);
    assert!(matches!(
        verify_target(&expect, &missing),
        Err(LoginError::AuthenticationFailed(_))
    ));
    let reflect = encode_hex(&ChapAlgorithm::Sha256.response(id, &config.secret, &challenge));
    let reflected = keys(&[("CHAP_N", "tgt"), ("CHAP_R", &reflect)]);
    assert_eq!(
        verify_target(&expect, &reflected),
        Err(LoginError::AuthenticationFailed(
            "target reflected our own CHAP response (same secret both ways)"
        ))
    );
    let echoed = keys(&[
        ("CHAP_N", "tgt"),
        ("CHAP_R", &good),
        ("CHAP_C", &value("CHAP_C")),
    ]);
    assert_eq!(
        verify_target(&expect, &echoed),
        Err(LoginError::AuthenticationFailed(
            "target sent our own challenge back (reflection)"
        ))
    );
}

#[test]
fn bad_challenges() {
    let config = ChapConfig::new("alice", Secret::from("sanshim-secret-1"));
    let cases: [(&[(&str, &str)], LoginError); 8] = [
        (
            &[("CHAP_A", "Reject")],
            LoginError::ChapAlgorithmsRejected { status: None },
        ),
        (
            &[("CHAP_A", "NotUnderstood")],
            LoginError::ChapAlgorithmsRejected { status: None },
        ),
        (
            &[("CHAP_I", "1"), ("CHAP_C", "0x01")],
            LoginError::PeerMisbehaved("CHAP_A missing"),
        ),
        (
            &[("CHAP_A", "4"), ("CHAP_I", "1"), ("CHAP_C", "0x01")],
            LoginError::PeerMisbehaved("target chose a CHAP algorithm we did not offer"),
        ),
        (
            &[("CHAP_A", "5"), ("CHAP_C", "0x01")],
            LoginError::PeerMisbehaved("CHAP_I missing"),
        ),
        (
            &[("CHAP_A", "5"), ("CHAP_I", "256"), ("CHAP_C", "0x01")],
            LoginError::PeerMisbehaved("CHAP_I malformed"),
        ),
        (
            &[("CHAP_A", "5"), ("CHAP_I", "1"), ("CHAP_C", "0x")],
            LoginError::PeerMisbehaved("CHAP_C malformed"),
        ),
        (
            &[("CHAP_A", "5"), ("CHAP_I", "1"), ("CHAP_C", "abc")],
            LoginError::PeerMisbehaved("CHAP_C malformed"),
        ),
    ];
    for (list, expected) in cases {
        assert_eq!(
            answer_challenge(&config, &keys(list)).unwrap_err(),
            expected,
            "{list:?}"
        );
    }
    let mut md5_only = config.clone();
    md5_only.md5_only = true;
    let sha = keys(&[("CHAP_A", "7"), ("CHAP_I", "1"), ("CHAP_C", "0x01")]);
    assert!(answer_challenge(&md5_only, &sha).is_err());
    let mut twice = ChapKeys::default();
    twice.take("CHAP_A", "5").unwrap();
    assert!(twice.take("CHAP_A", "5").is_err());
    assert!(!twice.take("AuthMethod", "CHAP").unwrap());
}

#[test]
fn fresh_challenges_differ() {
    let a = fresh_challenge(ChapAlgorithm::Md5, &[]).unwrap();
    let b = fresh_challenge(ChapAlgorithm::Md5, &[]).unwrap();
    assert_eq!(a.1.len(), 16);
    assert_ne!(a.1, b.1);
}
