//! SendTargets discovery (RFC 7143 §12.3 / §13.3 SendTargets, Appendix C): a text exchange
//! on a session — a discovery session to list every target, or a normal one to list the
//! portals of its own target — run by the one session engine ([`SessionHandle::text`]), and
//! the parsing of its answer: `TargetName=` entries, each followed by its `TargetAddress=`
//! portals.
//!
//! ```text
//! TargetName=iqn.2026-01.example:disk1
//! TargetAddress=10.0.0.1:3260,1
//! TargetAddress=[fe80::1]:3260,2
//! ```

use crate::login::clip;
use crate::portal::{AddressError, TargetAddress};
use crate::session::TaskError;
use crate::transport::SessionHandle;

/// A target named in a SendTargets answer, with the portals it is reachable through.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct DiscoveredTarget {
    /// The target's iSCSI name.
    pub name: String,
    /// Its portals, in the order the target listed them (possibly none: use the portal the
    /// discovery session runs on).
    pub portals: Vec<TargetAddress>,
}

/// Why discovery failed.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The text exchange failed (connection, reject, malformed text, timeout).
    #[error("SendTargets exchange failed: {0}")]
    Exchange(#[from] TaskError),
    /// The target broke the SendTargets conventions.
    #[error("target broke the SendTargets exchange: {0}")]
    PeerMisbehaved(&'static str),
    /// The target answered `SendTargets=Reject` (or Irrelevant/NotUnderstood).
    #[error("target refused SendTargets ({0})")]
    Refused(String),
    /// A TargetAddress came before any TargetName.
    #[error("TargetAddress={0} before any TargetName")]
    AddressBeforeName(String),
    /// A TargetAddress value could not be parsed.
    #[error(transparent)]
    InvalidAddress(#[from] AddressError),
}

/// Asks the session's target for `SendTargets=All` (every target on a discovery session).
///
/// # Errors
/// [`DiscoveryError`] when the exchange fails or the answer is malformed.
pub async fn send_targets(
    session: &SessionHandle,
) -> Result<Vec<DiscoveredTarget>, DiscoveryError> {
    let pairs = session.text(&[("SendTargets", "All")]).await?;
    parse_send_targets(&pairs)
}

/// Turns the pairs of a SendTargets answer into targets and their portals.
///
/// Keys other than TargetName and TargetAddress (e.g. TargetAlias) are ignored.
///
/// # Errors
/// [`DiscoveryError::AddressBeforeName`], [`DiscoveryError::InvalidAddress`], or
/// [`DiscoveryError::Refused`] when the answer is `SendTargets=Reject` or similar.
pub fn parse_send_targets(
    pairs: &[(String, String)],
) -> Result<Vec<DiscoveredTarget>, DiscoveryError> {
    let mut targets: Vec<DiscoveredTarget> = Vec::new();
    for (key, value) in pairs {
        match key.as_str() {
            "TargetName" => {
                if value.is_empty() {
                    return Err(DiscoveryError::PeerMisbehaved("empty TargetName"));
                }
                targets.push(DiscoveredTarget {
                    name: value.clone(),
                    portals: Vec::new(),
                });
            }
            "TargetAddress" => {
                let target = targets
                    .last_mut()
                    .ok_or_else(|| DiscoveryError::AddressBeforeName(clip(value)))?;
                target.portals.push(TargetAddress::parse(value)?);
            }
            "SendTargets" => return Err(DiscoveryError::Refused(clip(value))),
            _ => tracing::debug!(key = %clip(key), "ignored in SendTargets answer"),
        }
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(value: &str) -> TargetAddress {
        TargetAddress::parse(value).unwrap()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn answer_parsing() {
        let answer = pairs(&[
            ("TargetName", "iqn.2026-01.test:a"),
            ("TargetAddress", "10.0.0.1:3260,1"),
            ("TargetAddress", "[fe80::1]:3260,2"),
            ("TargetAlias", "disk a"),
            ("TargetName", "iqn.2026-01.test:b"),
            ("TargetName", "iqn.2026-01.test:c"),
            ("TargetAddress", "10.0.0.3"),
        ]);
        let targets = parse_send_targets(&answer).unwrap();
        assert_eq!(
            targets,
            vec![
                DiscoveredTarget {
                    name: "iqn.2026-01.test:a".into(),
                    portals: vec![address("10.0.0.1:3260,1"), address("[fe80::1]:3260,2")],
                },
                DiscoveredTarget {
                    name: "iqn.2026-01.test:b".into(),
                    portals: vec![]
                },
                DiscoveredTarget {
                    name: "iqn.2026-01.test:c".into(),
                    portals: vec![address("10.0.0.3:3260")]
                },
            ]
        );
        assert_eq!(parse_send_targets(&[]), Ok(vec![]));
        assert_eq!(
            parse_send_targets(&pairs(&[
                ("TargetAddress", "10.0.0.1"),
                ("TargetName", "iqn.x")
            ])),
            Err(DiscoveryError::AddressBeforeName("10.0.0.1".into()))
        );
        assert_eq!(
            parse_send_targets(&pairs(&[("SendTargets", "Reject")])),
            Err(DiscoveryError::Refused("Reject".into()))
        );
        assert_eq!(
            parse_send_targets(&pairs(&[("TargetName", "")])),
            Err(DiscoveryError::PeerMisbehaved("empty TargetName"))
        );
        assert!(matches!(
            parse_send_targets(&pairs(&[
                ("TargetName", "iqn.x"),
                ("TargetAddress", "[::1")
            ])),
            Err(DiscoveryError::InvalidAddress(_))
        ));
    }
}
