//! The text keys of a full login (RFC 7143 §6.1, §13), both directions: the initiator's two
//! requests (security: names, session type, AuthMethod; operational: the keys
//! `Negotiation::offer` proposes) and the target's two answers, each encoded by its sender and
//! parsed by its receiver. The initiator's side includes building its offer and acting on the
//! answers (`Negotiation::handle_pairs`, `finish`), as the login state machine does.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput};
use sanshim_initiator::login::{Negotiated, Negotiation, Proposal, SessionType};
use sanshim_initiator::wire::{encode_text, parse_text};

type Pairs = Vec<(String, String)>;

const INITIATOR: &str = "iqn.2026-12.bench.sanshim:initiator";
const TARGET: &str = "iqn.2026-12.bench.sanshim:target";

/// `login_text/{request,response}_{encode,parse}`.
pub fn login_text(c: &mut Criterion) {
    let login = Login::new();
    login.check();
    let mut group = c.benchmark_group("login_text");
    group.throughput(Throughput::Bytes(login.request_len() as u64));
    group.bench_function("request_encode", |b| {
        b.iter(|| {
            let (security, operational) = Login::requests();
            black_box((encode(&security), encode(&operational)))
        })
    });
    group.bench_function("request_parse", |b| {
        b.iter(|| black_box((parse(&login.security), parse(&login.operational))))
    });
    group.throughput(Throughput::Bytes(login.response_len() as u64));
    group.bench_function("response_encode", |b| {
        b.iter(|| black_box((encode(&login.answers.0), encode(&login.answers.1))))
    });
    group.bench_function("response_parse", |b| {
        b.iter_batched(
            Login::offered,
            |negotiation| black_box(login.handle_answers(negotiation)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The four texts of a login on the wire, and the pairs the target answers with.
struct Login {
    security: BytesMut,
    operational: BytesMut,
    security_answer: BytesMut,
    operational_answer: BytesMut,
    answers: (Pairs, Pairs),
}

impl Login {
    fn new() -> Login {
        let (security, operational) = Login::requests();
        let answers = (
            pairs(&[("AuthMethod", "None"), ("TargetPortalGroupTag", "1")]),
            answer(&operational),
        );
        Login {
            security: encode(&security),
            operational: encode(&operational),
            security_answer: encode(&answers.0),
            operational_answer: encode(&answers.1),
            answers,
        }
    }

    /// The initiator's two requests, built as the login state machine builds them.
    fn requests() -> (Pairs, Pairs) {
        let security = vec![
            ("InitiatorName".to_owned(), INITIATOR.to_owned()),
            ("TargetName".to_owned(), TARGET.to_owned()),
            ("SessionType".to_owned(), "Normal".to_owned()),
            ("AuthMethod".to_owned(), "None".to_owned()),
        ];
        let operational = Login::negotiation().offer();
        (security, operational)
    }

    fn negotiation() -> Negotiation {
        Negotiation::new(Proposal::default(), SessionType::Normal)
    }

    /// A negotiation that has made its offer and awaits the answers.
    fn offered() -> Negotiation {
        let mut negotiation = Login::negotiation();
        black_box(negotiation.offer());
        negotiation
    }

    /// What the initiator does with the target's two answers.
    fn handle_answers(&self, mut negotiation: Negotiation) -> Negotiated {
        let security = parse(&self.security_answer);
        // The login machine takes AuthMethod itself and hands the rest to the negotiation.
        let rest: Pairs = security
            .into_iter()
            .filter(|(k, _)| k != "AuthMethod")
            .collect();
        let operational = parse(&self.operational_answer);
        let result = negotiation
            .handle_pairs(&rest)
            .and_then(|()| negotiation.handle_pairs(&operational))
            .and_then(|()| negotiation.finish());
        match result {
            Ok(negotiated) => negotiated,
            Err(e) => panic!("negotiation failed: {e}"),
        }
    }

    fn request_len(&self) -> usize {
        self.security.len() + self.operational.len()
    }

    fn response_len(&self) -> usize {
        self.security_answer.len() + self.operational_answer.len()
    }

    /// Every text parses back to its pairs, and the answers give the expected parameters.
    fn check(&self) {
        let (security, operational) = Login::requests();
        assert_eq!(parse(&self.security), security);
        assert_eq!(parse(&self.operational), operational);
        assert!(operational.len() >= 13, "every operational key offered");
        assert_eq!(parse(&self.operational_answer), self.answers.1);
        let n = self.handle_answers(Login::offered());
        assert!(n.header_digest && !n.data_digest);
        assert_eq!(n.max_xmit_data_segment_length, 262_144);
        assert_eq!(n.max_burst_length, 1 << 20);
        assert!(n.immediate_data && !n.initial_r2t);
        assert_eq!(n.target_alias.as_deref(), Some("sanshim-bench"));
    }
}

/// A target's answer to the operational offer (as LIO answers sanshim's defaults), followed
/// by its declarations.
fn answer(offer: &Pairs) -> Pairs {
    let mut answer: Pairs = offer
        .iter()
        .filter(|(key, _)| key != "MaxRecvDataSegmentLength")
        .map(|(key, value)| {
            let ours = match key.as_str() {
                "HeaderDigest" => "CRC32C",
                "DataDigest" => "None",
                "MaxBurstLength" => "1048576",
                "DefaultTime2Retain" => "0",
                _ => value,
            };
            (key.clone(), ours.to_owned())
        })
        .collect();
    answer.extend(pairs(&[
        ("MaxRecvDataSegmentLength", "262144"),
        ("TargetAlias", "sanshim-bench"),
    ]));
    answer
}

fn pairs(list: &[(&str, &str)]) -> Pairs {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn encode(pairs: &Pairs) -> BytesMut {
    match encode_text(pairs) {
        Ok(text) => text,
        Err(e) => panic!("text did not encode: {e}"),
    }
}

fn parse(text: &[u8]) -> Pairs {
    match parse_text(text) {
        Ok(pairs) => pairs,
        Err(e) => panic!("text did not parse: {e}"),
    }
}
