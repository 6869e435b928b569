//! Login (RFC 7143 §6, §11.12-11.13): security negotiation with CHAP (§12.1.3), operational
//! parameter negotiation (§13), as a sans-IO state machine.
//!
//! ```text
//!   SecurityNegotiation (CSG 0)          LoginOperationalNegotiation (CSG 1)    FullFeature
//!   InitiatorName, TargetName,           our Proposal ──► target answers
//!   SessionType, AuthMethod   ──►        target offers ──► our answers   ──T──►  Established
//!   [CHAP_A ─► A,I,C ─► N,R(,I,C) ─► N,R]
//! ```
//!
//! [`Login`] is driven like a quinn connection: send whatever [`Login::poll_transmit`]
//! yields, feed every received PDU to [`Login::handle_pdu`], report a closed connection with
//! [`Login::handle_close`], and stop when [`Login::poll_outcome`] returns the result. It never
//! does I/O, never panics on what the target sends, and never logs a secret.

mod chap;
mod error;
mod machine;
mod negotiate;
mod params;
mod secret;
mod value;

pub use chap::{ChapAlgorithm, ChapConfig, DEFAULT_ALGORITHMS, RECOMMENDED_SECRET_LEN};
pub use error::{LoginError, status_name};
pub use machine::Login;
pub(crate) use negotiate::clip;
pub use negotiate::{Negotiation, NegotiationError};
pub use params::{
    DigestPref, MAX_LENGTH_VALUE, MIN_LENGTH_VALUE, Negotiated, Proposal, SessionType,
};
pub use secret::Secret;
pub use value::{MAX_BINARY_LEN, ValueError, encode_hex, parse_binary, parse_number};

use crate::wire::Isid;

/// Everything one connection's login needs.
#[derive(Clone, Debug)]
pub struct LoginConfig {
    /// Our iSCSI name (InitiatorName).
    pub initiator_name: String,
    /// Our InitiatorAlias, if any.
    pub initiator_alias: Option<String>,
    /// The TargetName; required for a normal session, absent for discovery.
    pub target_name: Option<String>,
    /// Normal or discovery session.
    pub session_type: SessionType,
    /// Initiator session ID: keep it stable per path, so a re-login reinstates the session.
    pub isid: Isid,
    /// 0 for a new session (or a reinstatement); the target's TSIH to add a connection to
    /// an existing session.
    pub tsih: u16,
    /// Connection ID.
    pub cid: u16,
    /// CmdSN of the login requests, which is also the first CmdSN of the session.
    pub cmd_sn: u32,
    /// ExpStatSN of the first login request (0 for a new connection).
    pub exp_stat_sn: u32,
    /// CHAP credentials; `None` offers `AuthMethod=None`.
    pub chap: Option<ChapConfig>,
    /// Operational keys to offer.
    pub proposal: Proposal,
}

impl LoginConfig {
    /// A normal-session login to `target_name`, without CHAP, offering [`Proposal::default`].
    pub fn normal(
        initiator_name: impl Into<String>,
        target_name: impl Into<String>,
        isid: Isid,
    ) -> Self {
        LoginConfig {
            target_name: Some(target_name.into()),
            session_type: SessionType::Normal,
            ..LoginConfig::discovery(initiator_name, isid)
        }
    }

    /// A discovery-session login (for SendTargets).
    pub fn discovery(initiator_name: impl Into<String>, isid: Isid) -> Self {
        LoginConfig {
            initiator_name: initiator_name.into(),
            initiator_alias: None,
            target_name: None,
            session_type: SessionType::Discovery,
            isid,
            tsih: 0,
            cid: 0,
            cmd_sn: 1,
            exp_stat_sn: 0,
            chap: None,
            proposal: Proposal::default(),
        }
    }

    /// Checks the configuration before any PDU is built.
    ///
    /// # Errors
    /// [`LoginError::InvalidConfig`] naming the problem.
    pub fn validate(&self) -> Result<(), LoginError> {
        if self.initiator_name.is_empty() {
            return Err(LoginError::InvalidConfig("InitiatorName is empty"));
        }
        match (self.session_type, &self.target_name) {
            (SessionType::Normal, None) => {
                return Err(LoginError::InvalidConfig(
                    "a normal session needs a TargetName",
                ));
            }
            (SessionType::Normal, Some(name)) if name.is_empty() => {
                return Err(LoginError::InvalidConfig("TargetName is empty"));
            }
            (SessionType::Discovery, Some(_)) => {
                return Err(LoginError::InvalidConfig(
                    "a discovery session takes no TargetName",
                ));
            }
            _ => {}
        }
        self.proposal
            .validate()
            .map_err(LoginError::InvalidConfig)?;
        self.chap.as_ref().map_or(Ok(()), ChapConfig::validate)
    }
}

/// A successful login: the connection is in the full feature phase.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Established {
    /// The agreed operational parameters.
    pub negotiated: Negotiated,
    /// The session handle the target assigned (or confirmed).
    pub tsih: u16,
    /// The next CmdSN to use (login requests do not advance it).
    pub cmd_sn: u32,
    /// StatSN of the final login response; the next ExpStatSN is one more.
    pub stat_sn: u32,
    /// ExpCmdSN from the final login response.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN from the final login response.
    pub max_cmd_sn: u32,
    /// The CHAP algorithm used, if we authenticated with CHAP.
    pub chap_algorithm: Option<ChapAlgorithm>,
    /// Whether the target proved its identity (mutual CHAP).
    pub target_authenticated: bool,
}

/// How a login ended.
pub type LoginOutcome = Result<Established, LoginError>;

#[cfg(test)]
mod tests;
