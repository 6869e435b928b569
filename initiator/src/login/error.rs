//! Login failures ([`LoginError`]) by who is at fault, and human names of login status codes
//! (RFC 7143 §11.13.5).

use super::negotiate::NegotiationError;
use crate::wire::{LoginStatus, RejectReason};

/// Why a login did not reach the full feature phase.
///
/// The variants say who is at fault: the target sends us elsewhere ([`Redirect`]), is
/// temporarily unable ([`Retryable`]), refuses us ([`InitiatorError`],
/// [`AuthenticationFailed`]), breaks the protocol ([`PeerMisbehaved`], [`Negotiation`]), or
/// the caller's configuration is unusable ([`InvalidConfig`]). No variant carries a secret.
///
/// [`Redirect`]: LoginError::Redirect
/// [`Retryable`]: LoginError::Retryable
/// [`InitiatorError`]: LoginError::InitiatorError
/// [`AuthenticationFailed`]: LoginError::AuthenticationFailed
/// [`PeerMisbehaved`]: LoginError::PeerMisbehaved
/// [`Negotiation`]: LoginError::Negotiation
/// [`InvalidConfig`]: LoginError::InvalidConfig
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// Status class 1: log in at `address` instead (RFC 7143 §11.13.5).
    #[error("target moved {}: log in at TargetAddress={address}",
        if *permanent { "permanently" } else { "temporarily" })]
    Redirect {
        /// The TargetAddress value: `host[:port][,tpgt]`, IPv6 hosts in brackets.
        address: String,
        /// Status detail 2 (moved permanently) rather than 1 (temporarily).
        permanent: bool,
    },
    /// Status class 3: the target cannot serve us now; retrying later may succeed.
    #[error("target cannot log us in right now: {}", status_name(*status))]
    Retryable {
        /// The status the target sent.
        status: LoginStatus,
    },
    /// Status class 2: the target refuses this login (bad credentials, unknown target, ...).
    #[error("target refused the login: {}", status_name(*status))]
    InitiatorError {
        /// The status the target sent.
        status: LoginStatus,
    },
    /// The target refused our CHAP_A list (answered Reject, or failed the login on it). Some
    /// targets accept only a single algorithm: retry with [`ChapConfig::md5_only`] set.
    ///
    /// [`ChapConfig::md5_only`]: super::ChapConfig::md5_only
    #[error("target refused our CHAP algorithm list{}",
        status.map(|s| format!(" ({})", status_name(s))).unwrap_or_default())]
    ChapAlgorithmsRejected {
        /// The failing login status, when the target ended the login instead of answering.
        status: Option<LoginStatus>,
    },
    /// The target refused the CHAP response we sent: wrong CHAP name or secret, or an account
    /// not bound to this target.
    #[error("target refused our CHAP authentication ({}): check the CHAP user and secret",
        status_name(*status))]
    ChapResponseRefused {
        /// The status the target sent.
        status: LoginStatus,
    },
    /// The target accepted none of the AuthMethods we offered (it answered `Reject`, or
    /// closed a discovery login in answer to `None` alone, as LIO does), e.g. it requires
    /// CHAP and none is configured.
    #[error("target refused AuthMethod={offered}{}",
        if *offered == "None" { " (it requires authentication: configure CHAP)" } else { "" })]
    AuthMethodRejected {
        /// What we offered.
        offered: &'static str,
    },
    /// The target did not prove its identity (mutual CHAP), or tried to trick us into
    /// proving ours on its behalf.
    #[error("target authentication failed: {0}")]
    AuthenticationFailed(&'static str),
    /// Operational parameter negotiation failed.
    #[error(transparent)]
    Negotiation(#[from] NegotiationError),
    /// The target broke the login protocol (malformed or inconsistent responses).
    #[error("target broke the login protocol: {0}")]
    PeerMisbehaved(&'static str),
    /// The target answered a login PDU with a Reject PDU.
    #[error("target rejected our login PDU ({reason:?})")]
    PduRejected {
        /// The Reject reason code.
        reason: RejectReason,
    },
    /// A status class RFC 7143 does not define.
    #[error("target sent unknown login status {:#06x}", status.0)]
    UnknownStatus {
        /// The status the target sent.
        status: LoginStatus,
    },
    /// The connection closed before the login finished.
    #[error("connection closed during login")]
    ConnectionClosed,
    /// The login configuration cannot be used; names the offending setting.
    #[error("invalid login configuration: {0}")]
    InvalidConfig(&'static str),
    /// The target ended the login with a plain "initiator error" while operational
    /// parameters were being negotiated: it insists on a value we did not take (LIO does this
    /// for a digest it requires and we declined, where RFC 7143 has the key answered).
    #[error("target refused the login while negotiating operational parameters ({}): it may require a digest we declined, or insist on a limit (try --header-digest/--data-digest prefer-crc32c)",
        status_name(*status))]
    OperationalRefused {
        /// The status the target sent.
        status: LoginStatus,
    },
    /// The target closed the connection without answering our first login request (which
    /// offered `AuthMethod=offered`): targets do this instead of sending a status when they
    /// do not know the target name (tgt, also while a SAN is still coming up), when a portal
    /// group requires CHAP and we offered none (LIO), or when the initiator name is not
    /// allowed. Retried as a target that may come up; a refusal once retries are spent.
    #[error("the target closed the connection without answering the login (we offered AuthMethod={offered}): {}",
        if *offered == "None" {
            "it may not know the target name (yet), require CHAP (give --chap-user), or not allow this initiator name"
        } else {
            "it may not know the target name (yet) or not allow this initiator name"
        })]
    ClosedWithoutAnswer {
        /// The AuthMethod list we offered.
        offered: &'static str,
    },
    /// The operating system's random number generator failed.
    #[error("no randomness for the CHAP challenge: {0}")]
    Random(getrandom::Error),
    /// A PDU was handed to a login that already has its outcome.
    #[error("login already finished")]
    Finished,
}

impl LoginError {
    /// Whether the target refused us for who we are (credentials, access, unknown target) or
    /// failed to authenticate itself: retrying unchanged will not help. The CLI exits 4.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            LoginError::InitiatorError { .. }
                | LoginError::ChapResponseRefused { .. }
                | LoginError::AuthMethodRejected { .. }
                | LoginError::AuthenticationFailed(_)
                | LoginError::ChapAlgorithmsRejected { .. }
                | LoginError::ClosedWithoutAnswer { .. }
        )
    }

    /// Whether the target refused who we are (wrong or missing CHAP name or secret, or a
    /// target that failed to prove its own): sending the same login again will not help,
    /// unlike a target that is not found or not ready yet while a SAN comes up.
    pub fn is_authentication_failure(&self) -> bool {
        match self {
            LoginError::InitiatorError { status } => *status == LoginStatus::AUTHENTICATION_FAILURE,
            LoginError::ChapResponseRefused { .. }
            | LoginError::AuthMethodRejected { .. }
            | LoginError::AuthenticationFailed(_) => true,
            _ => false,
        }
    }

    /// Whether the same login, sent again later, may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LoginError::Retryable { .. }
                | LoginError::ConnectionClosed
                | LoginError::ClosedWithoutAnswer { .. }
        )
    }

    /// Whether a second attempt should offer `CHAP_A=5` alone (see
    /// [`ChapConfig::md5_only`](super::ChapConfig::md5_only)).
    pub fn retry_with_md5_only(&self) -> bool {
        matches!(self, LoginError::ChapAlgorithmsRejected { .. })
    }
}

/// A human name for a login status: `"authentication failure"`, `"target not found"`, ...
pub fn status_name(status: LoginStatus) -> &'static str {
    match status {
        LoginStatus::SUCCESS => "success",
        LoginStatus::TARGET_MOVED_TEMPORARILY => "target moved temporarily",
        LoginStatus::TARGET_MOVED_PERMANENTLY => "target moved permanently",
        LoginStatus::INITIATOR_ERROR => "initiator error",
        LoginStatus::AUTHENTICATION_FAILURE => "authentication failure",
        LoginStatus::AUTHORIZATION_FAILURE => "authorization failure",
        LoginStatus::NOT_FOUND => "target not found",
        LoginStatus::TARGET_REMOVED => "target removed",
        LoginStatus::UNSUPPORTED_VERSION => "unsupported iSCSI version",
        LoginStatus::TOO_MANY_CONNECTIONS => "too many connections",
        LoginStatus::MISSING_PARAMETER => "missing parameter",
        LoginStatus::CANT_INCLUDE_IN_SESSION => "cannot include connection in session",
        LoginStatus::SESSION_TYPE_NOT_SUPPORTED => "session type not supported",
        LoginStatus::SESSION_DOES_NOT_EXIST => "session does not exist",
        LoginStatus::INVALID_DURING_LOGIN => "invalid request during login",
        LoginStatus::TARGET_ERROR => "target error",
        LoginStatus::SERVICE_UNAVAILABLE => "service unavailable",
        LoginStatus::OUT_OF_RESOURCES => "out of resources",
        other => match other.class() {
            1 => "redirection (unknown detail)",
            2 => "initiator error (unknown detail)",
            3 => "target error (unknown detail)",
            _ => "unknown status class",
        },
    }
}

/// Maps a failing login status and the text of its response to an error.
pub(crate) fn status_error(status: LoginStatus, target_address: Option<&str>) -> LoginError {
    match status.class() {
        1 => match target_address {
            Some(address) => LoginError::Redirect {
                address: address.to_owned(),
                permanent: status == LoginStatus::TARGET_MOVED_PERMANENTLY,
            },
            None => LoginError::PeerMisbehaved("redirection without a TargetAddress"),
        },
        2 => LoginError::InitiatorError { status },
        3 => LoginError::Retryable { status },
        _ => LoginError::UnknownStatus { status },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_classes() {
        assert_eq!(status_name(LoginStatus(0x0201)), "authentication failure");
        assert_eq!(status_name(LoginStatus(0x0203)), "target not found");
        assert_eq!(
            status_name(LoginStatus(0x02ff)),
            "initiator error (unknown detail)"
        );
        assert_eq!(status_name(LoginStatus(0x0700)), "unknown status class");
        let err = status_error(LoginStatus::AUTHORIZATION_FAILURE, None);
        assert_eq!(
            err.to_string(),
            "target refused the login: authorization failure"
        );
        assert!(err.is_refusal());
        assert!(status_error(LoginStatus::OUT_OF_RESOURCES, None).is_retryable());
        assert_eq!(
            status_error(
                LoginStatus::TARGET_MOVED_PERMANENTLY,
                Some("10.0.0.2:3260,1")
            ),
            LoginError::Redirect {
                address: "10.0.0.2:3260,1".into(),
                permanent: true
            }
        );
        assert!(matches!(
            status_error(LoginStatus::TARGET_MOVED_TEMPORARILY, None),
            LoginError::PeerMisbehaved(_)
        ));
        assert!(matches!(
            status_error(LoginStatus(0x0400), None),
            LoginError::UnknownStatus { .. }
        ));
    }
}
