//! CHAP authentication, initiator side (RFC 7143 §12.1.3 over RFC 1994).
//!
//! ```text
//!  I → T  CHAP_A=8,7,6,5                       (our algorithms, preferred first)
//!  T → I  CHAP_A=a CHAP_I=i CHAP_C=c
//!  I → T  CHAP_N=user CHAP_R=H(i‖secret‖c)     [+ CHAP_I=j CHAP_C=d  for mutual CHAP]
//!  T → I                                       [CHAP_N=tuser CHAP_R=H(j‖mutual‖d)]
//! ```
//!
//! Algorithm numbers are the IANA "PPP Authentication Algorithms" values: 5 MD5, 6 SHA-1,
//! 7 SHA-256, 8 SHA3-256 (the same values Linux LIO implements). Binary values are read in
//! hex (`0x`) or base64 (`0b`) and written in hex.

use core::fmt;

use md5::Md5;
use sha1::Sha1;
use sha2::Sha256;
use sha2::digest::Digest;
use sha3::Sha3_256;
use subtle::ConstantTimeEq;

use super::error::LoginError;
use super::secret::Secret;
use super::value::{encode_hex, parse_binary, parse_number};

/// Secrets shorter than this are refused by many targets (RFC 7143 §12.1.3 asks for at least
/// 96 bits); we warn.
pub const RECOMMENDED_SECRET_LEN: usize = 12;

/// A CHAP hash algorithm, by its IANA PPP authentication algorithm number.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub enum ChapAlgorithm {
    /// 5: MD5 (RFC 1994), the one every target implements.
    Md5,
    /// 6: SHA-1.
    Sha1,
    /// 7: SHA-256.
    Sha256,
    /// 8: SHA3-256.
    Sha3_256,
}

/// Our default CHAP_A offer, strongest first: `8,7,6,5`.
pub const DEFAULT_ALGORITHMS: [ChapAlgorithm; 4] = [
    ChapAlgorithm::Sha3_256,
    ChapAlgorithm::Sha256,
    ChapAlgorithm::Sha1,
    ChapAlgorithm::Md5,
];

impl ChapAlgorithm {
    /// The CHAP_A number.
    pub fn code(self) -> u8 {
        match self {
            ChapAlgorithm::Md5 => 5,
            ChapAlgorithm::Sha1 => 6,
            ChapAlgorithm::Sha256 => 7,
            ChapAlgorithm::Sha3_256 => 8,
        }
    }

    /// The algorithm with CHAP_A number `code`, if we implement it.
    pub fn from_code(code: u8) -> Option<Self> {
        DEFAULT_ALGORITHMS.into_iter().find(|a| a.code() == code)
    }

    /// Digest length in bytes (also the length of our mutual challenge).
    pub fn digest_len(self) -> usize {
        match self {
            ChapAlgorithm::Md5 => 16,
            ChapAlgorithm::Sha1 => 20,
            ChapAlgorithm::Sha256 | ChapAlgorithm::Sha3_256 => 32,
        }
    }

    /// The CHAP response `H(id ‖ secret ‖ challenge)` (RFC 1994 §4.1).
    pub fn response(self, id: u8, secret: &Secret, challenge: &[u8]) -> Vec<u8> {
        fn hash<D: Digest>(id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
            let mut hasher = D::new();
            hasher.update([id]);
            hasher.update(secret);
            hasher.update(challenge);
            hasher.finalize().to_vec()
        }
        let secret = secret.expose();
        match self {
            ChapAlgorithm::Md5 => hash::<Md5>(id, secret, challenge),
            ChapAlgorithm::Sha1 => hash::<Sha1>(id, secret, challenge),
            ChapAlgorithm::Sha256 => hash::<Sha256>(id, secret, challenge),
            ChapAlgorithm::Sha3_256 => hash::<Sha3_256>(id, secret, challenge),
        }
    }
}

/// CHAP credentials and preferences for one login.
#[derive(Clone, Debug)]
pub struct ChapConfig {
    /// Our CHAP name (CHAP_N).
    pub user: String,
    /// Our secret.
    pub secret: Secret,
    /// For mutual CHAP: the name the target must answer with, and its secret.
    pub mutual: Option<(String, Secret)>,
    /// CHAP_A offer, preferred first ([`DEFAULT_ALGORITHMS`] by default).
    pub algorithms: Vec<ChapAlgorithm>,
    /// Offer `CHAP_A=5` alone. Set on a second attempt after
    /// [`LoginError::ChapAlgorithmsRejected`], for targets that cannot parse a list.
    pub md5_only: bool,
}

impl ChapConfig {
    /// One-way CHAP as `user` with `secret`, offering [`DEFAULT_ALGORITHMS`].
    pub fn new(user: impl Into<String>, secret: Secret) -> Self {
        ChapConfig {
            user: user.into(),
            secret,
            mutual: None,
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            md5_only: false,
        }
    }

    /// Checks the credentials and warns (tracing) about secrets short enough that many
    /// targets refuse them.
    ///
    /// # Errors
    /// [`LoginError::InvalidConfig`] for an empty name, secret or algorithm list, or a mutual
    /// secret equal to our own (RFC 7143 §12.1.3: a secret authenticates one direction only).
    pub fn validate(&self) -> Result<(), LoginError> {
        if self.user.is_empty() || self.secret.is_empty() {
            return Err(LoginError::InvalidConfig(
                "CHAP user and secret must not be empty",
            ));
        }
        if self.algorithms.is_empty() && !self.md5_only {
            return Err(LoginError::InvalidConfig("no CHAP algorithm to offer"));
        }
        if self.secret.len() < RECOMMENDED_SECRET_LEN {
            tracing::warn!(
                len = self.secret.len(),
                "CHAP secret shorter than 12 bytes; many targets refuse it"
            );
        }
        if let Some((user, secret)) = &self.mutual {
            if user.is_empty() || secret.is_empty() {
                return Err(LoginError::InvalidConfig(
                    "mutual CHAP user and secret must not be empty",
                ));
            }
            if secret.ct_eq(&self.secret) {
                return Err(LoginError::InvalidConfig(
                    "mutual CHAP secret equals our own secret",
                ));
            }
            if secret.len() < RECOMMENDED_SECRET_LEN {
                tracing::warn!(
                    len = secret.len(),
                    "mutual CHAP secret shorter than 12 bytes; many targets refuse it"
                );
            }
        }
        Ok(())
    }

    /// The algorithms offered in CHAP_A, preferred first.
    pub fn offered(&self) -> Vec<ChapAlgorithm> {
        if self.md5_only {
            vec![ChapAlgorithm::Md5]
        } else {
            self.algorithms.clone()
        }
    }

    /// The CHAP_A value: `8,7,6,5` by default, `5` with [`ChapConfig::md5_only`].
    pub fn algorithm_offer(&self) -> String {
        let codes: Vec<String> = self
            .offered()
            .iter()
            .map(|a| a.code().to_string())
            .collect();
        codes.join(",")
    }
}

/// The CHAP keys of one target response (each at most once).
#[derive(Clone, Debug, Default)]
pub(crate) struct ChapKeys {
    pub(crate) algorithm: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) challenge: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) response: Option<String>,
}

impl ChapKeys {
    /// Takes a `CHAP_*` pair; `Ok(false)` when `key` is not a CHAP key.
    ///
    /// # Errors
    /// A CHAP key the target sent twice.
    pub(crate) fn take(&mut self, key: &str, value: &str) -> Result<bool, LoginError> {
        let slot = match key {
            "CHAP_A" => &mut self.algorithm,
            "CHAP_I" => &mut self.id,
            "CHAP_C" => &mut self.challenge,
            "CHAP_N" => &mut self.name,
            "CHAP_R" => &mut self.response,
            _ => return Ok(false),
        };
        if slot.replace(value.to_owned()).is_some() {
            return Err(LoginError::PeerMisbehaved("a CHAP key appears twice"));
        }
        Ok(true)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.algorithm.is_none()
            && self.id.is_none()
            && self.challenge.is_none()
            && self.name.is_none()
            && self.response.is_none()
    }
}

/// Our answer to the target's challenge.
#[derive(Clone, Debug)]
pub(crate) struct ChapAnswer {
    /// Keys to send: CHAP_N, CHAP_R and, for mutual CHAP, CHAP_I and CHAP_C.
    pub(crate) pairs: Vec<(String, String)>,
    /// The algorithm the target chose.
    pub(crate) algorithm: ChapAlgorithm,
    /// For mutual CHAP, what the target must answer.
    pub(crate) mutual: Option<MutualExpectation>,
}

/// What the target must answer to our mutual challenge. `Debug` hides the digests.
#[derive(Clone)]
pub(crate) struct MutualExpectation {
    user: String,
    challenge: Vec<u8>,
    expected: Vec<u8>,
    /// The response our own secret gives to our challenge: a target sending this back is
    /// reflecting us (RFC 7143 §12.1.3).
    reflected: Vec<u8>,
}

impl fmt::Debug for MutualExpectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutualExpectation")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Answers the target's CHAP challenge (the response to our CHAP_A offer).
///
/// Returns the keys to send and, for mutual CHAP, what to expect back.
///
/// # Errors
/// [`LoginError::ChapAlgorithmsRejected`] when CHAP_A is Reject/NotUnderstood,
/// [`LoginError::PeerMisbehaved`] for missing, malformed or unoffered values,
/// [`LoginError::Random`] when the OS RNG fails.
pub(crate) fn answer_challenge(
    config: &ChapConfig,
    keys: &ChapKeys,
) -> Result<ChapAnswer, LoginError> {
    let algorithm = chosen_algorithm(config, keys.algorithm.as_deref())?;
    let id = keys
        .id
        .as_deref()
        .ok_or(LoginError::PeerMisbehaved("CHAP_I missing"))?;
    let id = parse_number(id, 255).map_err(|_| LoginError::PeerMisbehaved("CHAP_I malformed"))?;
    let challenge = keys
        .challenge
        .as_deref()
        .ok_or(LoginError::PeerMisbehaved("CHAP_C missing"))?;
    let challenge =
        parse_binary(challenge).map_err(|_| LoginError::PeerMisbehaved("CHAP_C malformed"))?;
    if keys.name.is_some() || keys.response.is_some() {
        return Err(LoginError::PeerMisbehaved(
            "CHAP_N/CHAP_R sent with the challenge",
        ));
    }
    let id = u8::try_from(id).map_err(|_| LoginError::PeerMisbehaved("CHAP_I malformed"))?;
    let response = algorithm.response(id, &config.secret, &challenge);
    let mut pairs = vec![
        ("CHAP_N".to_owned(), config.user.clone()),
        ("CHAP_R".to_owned(), encode_hex(&response)),
    ];
    let Some((user, mutual_secret)) = &config.mutual else {
        return Ok(ChapAnswer {
            pairs,
            algorithm,
            mutual: None,
        });
    };
    let (our_id, our_challenge) = fresh_challenge(algorithm, &challenge)?;
    pairs.push(("CHAP_I".to_owned(), our_id.to_string()));
    pairs.push(("CHAP_C".to_owned(), encode_hex(&our_challenge)));
    let expectation = MutualExpectation {
        user: user.clone(),
        expected: algorithm.response(our_id, mutual_secret, &our_challenge),
        reflected: algorithm.response(our_id, &config.secret, &our_challenge),
        challenge: our_challenge,
    };
    Ok(ChapAnswer {
        pairs,
        algorithm,
        mutual: Some(expectation),
    })
}

/// Checks the target's answer to our mutual challenge.
///
/// # Errors
/// [`LoginError::AuthenticationFailed`] when the name or response is missing or wrong, when
/// the target reflects our own response or challenge; [`LoginError::PeerMisbehaved`] for a
/// malformed response.
pub(crate) fn verify_target(expect: &MutualExpectation, keys: &ChapKeys) -> Result<(), LoginError> {
    if let Some(challenge) = keys.challenge.as_deref() {
        let reflected =
            parse_binary(challenge).is_ok_and(|c| bool::from(c.ct_eq(&expect.challenge)));
        return Err(if reflected {
            LoginError::AuthenticationFailed("target sent our own challenge back (reflection)")
        } else {
            LoginError::PeerMisbehaved("target sent a second CHAP challenge")
        });
    }
    let (Some(name), Some(response)) = (keys.name.as_deref(), keys.response.as_deref()) else {
        return Err(LoginError::AuthenticationFailed(
            "target did not answer our CHAP challenge",
        ));
    };
    let response =
        parse_binary(response).map_err(|_| LoginError::PeerMisbehaved("CHAP_R malformed"))?;
    if bool::from(response.ct_eq(&expect.reflected)) {
        return Err(LoginError::AuthenticationFailed(
            "target reflected our own CHAP response (same secret both ways)",
        ));
    }
    // Check the response before the name so a wrong name and a wrong secret take equal time.
    let response_ok = bool::from(response.ct_eq(&expect.expected));
    if !response_ok || name != expect.user {
        return Err(LoginError::AuthenticationFailed(
            "target's CHAP name or response is wrong",
        ));
    }
    Ok(())
}

fn chosen_algorithm(config: &ChapConfig, value: Option<&str>) -> Result<ChapAlgorithm, LoginError> {
    let value = value.ok_or(LoginError::PeerMisbehaved("CHAP_A missing"))?;
    if matches!(value, "Reject" | "NotUnderstood" | "Irrelevant") {
        return Err(LoginError::ChapAlgorithmsRejected { status: None });
    }
    let code =
        parse_number(value, 255).map_err(|_| LoginError::PeerMisbehaved("CHAP_A malformed"))?;
    u8::try_from(code)
        .ok()
        .and_then(ChapAlgorithm::from_code)
        .filter(|algorithm| config.offered().contains(algorithm))
        .ok_or(LoginError::PeerMisbehaved(
            "target chose a CHAP algorithm we did not offer",
        ))
}

/// A random identifier and challenge of the digest length (at least 16 bytes), never equal
/// to the target's challenge (RFC 7143 §12.1.3 forbids reusing it).
fn fresh_challenge(algorithm: ChapAlgorithm, theirs: &[u8]) -> Result<(u8, Vec<u8>), LoginError> {
    let mut buf = vec![0u8; 1 + algorithm.digest_len().max(16)];
    loop {
        getrandom::fill(&mut buf).map_err(LoginError::Random)?;
        if buf[1..] != *theirs {
            let challenge = buf.split_off(1);
            return Ok((buf[0], challenge));
        }
    }
}

#[cfg(test)]
#[path = "chap_tests.rs"]
mod tests;
