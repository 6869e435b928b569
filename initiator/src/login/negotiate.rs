//! The operational key negotiation engine (RFC 7143 §6.2 text negotiation, §13 keys).
//!
//! We are the proposer of the keys in [`Negotiation::offer`]; the target answers them. The
//! target may also propose keys we did not offer, or declare values (MaxRecvDataSegmentLength,
//! TargetAlias, TargetPortalGroupTag); we then act as acceptor and queue answers, which the
//! login machine sends in its next request ([`Negotiation::take_replies`]). Keys we do not know
//! (including `X-` and `X#` extensions) are answered `NotUnderstood`.
//!
//! Result rules: digests pick the first acceptable entry of the proposer's list; MaxConnections,
//! MaxBurstLength, FirstBurstLength, DefaultTime2Retain, MaxOutstandingR2T and
//! ErrorRecoveryLevel take the minimum; DefaultTime2Wait the maximum; InitialR2T,
//! DataPDUInOrder and DataSequenceInOrder are OR; ImmediateData is AND;
//! MaxRecvDataSegmentLength is declared by each side for its own receive direction.

use super::params::{
    MAX_LENGTH_VALUE, MIN_LENGTH_VALUE, Negotiated, OpKey, Proposal, Rule, Scalar, SessionType,
};
use super::value::parse_number;

/// Longest key or value quoted in an error; target text can be 8 KiB long.
const QUOTE_LIMIT: usize = 64;

/// A failed operational negotiation: the target answered outside the rules.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The target's answer is not a value our offer allowed (e.g. MaxBurstLength above ours).
    #[error("target answered {key}={value}, which our offer does not allow")]
    NotOffered {
        /// The key.
        key: String,
        /// The target's value (clipped).
        value: String,
    },
    /// The target sent a value that is malformed or outside the key's range.
    #[error("target sent {key}={value}, which is malformed or out of range")]
    InvalidValue {
        /// The key.
        key: String,
        /// The target's value (clipped).
        value: String,
    },
    /// The target refused a value we require (e.g. `HeaderDigest=CRC32C` only).
    #[error("target refused {key} ({value}) and our configuration requires it")]
    Refused {
        /// The key.
        key: String,
        /// What the target answered.
        value: String,
    },
    /// The target negotiated or declared a key a second time (RFC 7143 §6.3).
    #[error("target negotiated or declared {key} more than once")]
    Repeated {
        /// The key.
        key: String,
    },
    /// The target sent a key only an initiator may send.
    #[error("target sent {key}, which only an initiator may send")]
    NotForTarget {
        /// The key.
        key: String,
    },
    /// The target ended the login while its own offer still needed an answer we disagree with.
    #[error("target finished the login without hearing our answer to its {key} offer")]
    Unanswered {
        /// The key.
        key: String,
    },
}

/// Negotiation state for one connection's login: offers, answers and the running result.
#[derive(Clone, Debug)]
pub struct Negotiation {
    proposal: Proposal,
    session_type: SessionType,
    /// Whether session-wide (leading-only) keys are negotiated on this connection.
    leading: bool,
    result: Negotiated,
    /// Keys we offered that the target has not answered yet.
    offered: Vec<OpKey>,
    /// Keys whose value is settled (answered, accepted, or declared by the target).
    settled: Vec<String>,
    replies: Vec<Reply>,
}

/// Our answer to a key the target proposed.
#[derive(Clone, Debug)]
struct Reply {
    key: String,
    value: String,
    /// Whether the target's own value already equals the outcome, so the answer is a formality.
    agrees: bool,
}

impl Negotiation {
    /// Starts a negotiation for a session of `session_type` offering `proposal`.
    ///
    /// The proposal should have passed [`Proposal::validate`]; out-of-range values would be
    /// sent as they are and most likely rejected by the target.
    pub fn new(proposal: Proposal, session_type: SessionType) -> Self {
        let result = Negotiated {
            max_recv_data_segment_length: proposal.max_recv_data_segment_length,
            ..Negotiated::default()
        };
        Negotiation {
            proposal,
            session_type,
            leading: true,
            result,
            offered: Vec::new(),
            settled: Vec::new(),
            replies: Vec::new(),
        }
    }

    /// Negotiates only the connection-scoped keys (digests, MaxRecvDataSegmentLength): for a
    /// connection joining an existing session (TSIH ≠ 0), where the leading-only keys of
    /// RFC 7143 §13 must not be sent. The other fields of the result keep their RFC defaults;
    /// take them from the leading connection.
    pub fn non_leading(mut self) -> Self {
        self.leading = false;
        self
    }

    /// Our offer for the operational stage, in sending order; marks the keys as awaiting an
    /// answer. A discovery session, or a non-leading connection, offers only the digests and
    /// MaxRecvDataSegmentLength.
    pub fn offer(&mut self) -> Vec<(String, String)> {
        let connection_only = self.session_type == SessionType::Discovery || !self.leading;
        let mut pairs = Vec::new();
        for key in OpKey::ALL {
            if (connection_only && !key.connection_scoped()) || self.is_settled(key.name()) {
                continue;
            }
            let value = match key.rule() {
                Rule::Digest => self.proposal.digest(key).offer().to_owned(),
                _ => self.proposal.scalar(key).to_text(),
            };
            pairs.push((key.name().to_owned(), value));
            self.offered.push(key);
            if key == OpKey::DataDigest {
                let ours = self.proposal.max_recv_data_segment_length.to_string();
                pairs.push(("MaxRecvDataSegmentLength".to_owned(), ours));
            }
        }
        pairs
    }

    /// Processes the operational keys of one complete target response.
    ///
    /// # Errors
    /// The first key that breaks the negotiation rules.
    pub fn handle_pairs(&mut self, pairs: &[(String, String)]) -> Result<(), NegotiationError> {
        pairs
            .iter()
            .try_for_each(|(key, value)| self.handle_pair(key, value))
    }

    /// Processes one operational `key=value` from the target.
    ///
    /// # Errors
    /// When the pair breaks the negotiation rules.
    pub fn handle_pair(&mut self, key: &str, value: &str) -> Result<(), NegotiationError> {
        if let Some(op) = OpKey::from_name(key) {
            if let Some(at) = self.offered.iter().position(|k| *k == op) {
                self.offered.swap_remove(at);
                self.settle(key)?;
                return self.handle_answer(op, value);
            }
            self.settle(key)?;
            return self.handle_offer(op, value);
        }
        match key {
            "MaxRecvDataSegmentLength" => self.declare_max_xmit(value),
            "TargetAlias" => self.declare(key, value, |n, v| n.target_alias = Some(v.to_owned())),
            "TargetPortalGroupTag" => self.declare_tpgt(value),
            // Repeatable declarations that carry nothing for the negotiated state.
            "TargetAddress" | "TargetName" | "X#NodeArchitecture" => Ok(()),
            "InitiatorName" | "InitiatorAlias" | "SessionType" | "SendTargets" => {
                Err(NegotiationError::NotForTarget { key: clip(key) })
            }
            "OFMarker" | "IFMarker" | "OFMarkInt" | "IFMarkInt" => {
                // Obsoleted by RFC 7143 §13.26: answered Reject.
                self.reply(key, "Reject", false);
                Ok(())
            }
            "TaskReporting" => self.accept_list(key, value, "RFC3720"),
            "iSCSIProtocolLevel" => self.accept_protocol_level(value),
            _ => {
                tracing::debug!(key = %clip(key), "answering NotUnderstood");
                self.reply(key, "NotUnderstood", true);
                Ok(())
            }
        }
    }

    /// Our answers to the target's proposals since the last call, to send in the next request.
    pub fn take_replies(&mut self) -> Vec<(String, String)> {
        self.replies
            .drain(..)
            .map(|reply| (reply.key, reply.value))
            .collect()
    }

    /// Whether answers are waiting to be sent.
    pub fn has_replies(&self) -> bool {
        !self.replies.is_empty()
    }

    /// Ends the negotiation and returns the agreed parameters.
    ///
    /// Offers the target never answered take the value they would have with the target's RFC
    /// default (with a warning); answers we could not send (the target transited) are fine
    /// only when they agree with what the target proposed. A FirstBurstLength above
    /// MaxBurstLength is lowered to MaxBurstLength (with a warning).
    ///
    /// # Errors
    /// [`NegotiationError::Unanswered`] for an unsent disagreeing answer,
    /// [`NegotiationError::Refused`] for an unanswered digest offer that excluded `None`.
    pub fn finish(mut self) -> Result<Negotiated, NegotiationError> {
        if let Some(reply) = self.replies.iter().find(|reply| !reply.agrees) {
            return Err(NegotiationError::Unanswered {
                key: clip(&reply.key),
            });
        }
        for key in std::mem::take(&mut self.offered) {
            self.apply_default_answer(key)?;
        }
        self.clamp_first_burst();
        Ok(self.result)
    }

    /// The parameters agreed so far.
    pub fn current(&self) -> &Negotiated {
        &self.result
    }

    /// Lowers FirstBurstLength to MaxBurstLength. RFC 7143 §13.14 forbids a larger one, yet a
    /// tgtd given only `MaxBurstLength 16384` keeps its default FirstBurstLength 65536 and
    /// answers both; libiscsi logs in to such a target, so we use the smaller value too rather
    /// than fail the login.
    fn clamp_first_burst(&mut self) {
        let n = &mut self.result;
        if n.first_burst_length > n.max_burst_length {
            tracing::warn!(
                first_burst_length = n.first_burst_length,
                max_burst_length = n.max_burst_length,
                "the target negotiated FirstBurstLength above MaxBurstLength (RFC 7143 §13.14 \
                 forbids it); clamped FirstBurstLength to MaxBurstLength"
            );
            n.first_burst_length = n.max_burst_length;
        }
    }

    fn handle_answer(&mut self, key: OpKey, value: &str) -> Result<(), NegotiationError> {
        if matches!(value, "Reject" | "NotUnderstood" | "Irrelevant") {
            if value != "Irrelevant" {
                tracing::warn!(key = key.name(), value, "target did not accept our offer");
            }
            return self.apply_default_answer(key);
        }
        let not_offered = || NegotiationError::NotOffered {
            key: key.name().to_owned(),
            value: clip(value),
        };
        let result = match key.rule() {
            Rule::Digest => {
                if value.contains(',') || !self.proposal.digest(key).accepts(value) {
                    return Err(not_offered());
                }
                Scalar::Bool(value == "CRC32C")
            }
            rule => {
                let theirs = parse_scalar(key, rule, value)?;
                let ours = self.proposal.scalar(key);
                if !answer_allowed(rule, ours, theirs) {
                    return Err(not_offered());
                }
                theirs
            }
        };
        self.result.set_scalar(key, result);
        Ok(())
    }

    fn handle_offer(&mut self, key: OpKey, value: &str) -> Result<(), NegotiationError> {
        let name = key.name();
        if is_reserved(value) {
            return Err(NegotiationError::InvalidValue {
                key: name.to_owned(),
                value: clip(value),
            });
        }
        if self.session_type == SessionType::Discovery && !key.connection_scoped() {
            self.reply(name, "Irrelevant", true);
            return Ok(());
        }
        if key.rule() == Rule::Digest {
            return self.accept_digest(key, value);
        }
        let rule = key.rule();
        let Ok(theirs) = parse_scalar(key, rule, value) else {
            tracing::warn!(key = name, value = %clip(value), "rejecting inadmissible offer");
            self.reply(name, "Reject", false);
            return Ok(());
        };
        let result = combine(rule, self.proposal.scalar(key), theirs);
        self.result.set_scalar(key, result);
        // A boolean the target's value alone decides needs no answer (RFC 7143 §6.2.2).
        let decided = matches!(
            (rule, theirs),
            (Rule::Or, Scalar::Bool(true)) | (Rule::And, Scalar::Bool(false))
        );
        if !decided {
            self.reply(name, &result.to_text(), result == theirs);
        }
        Ok(())
    }

    fn accept_digest(&mut self, key: OpKey, value: &str) -> Result<(), NegotiationError> {
        let pref = self.proposal.digest(key);
        match value.split(',').find(|choice| pref.accepts(choice)) {
            Some(choice) => {
                let agrees = !value.contains(',');
                self.result
                    .set_scalar(key, Scalar::Bool(choice == "CRC32C"));
                self.reply(key.name(), choice, agrees);
                Ok(())
            }
            None => Err(NegotiationError::Refused {
                key: key.name().to_owned(),
                value: clip(value),
            }),
        }
    }

    fn accept_list(&mut self, key: &str, value: &str, ours: &str) -> Result<(), NegotiationError> {
        if value.split(',').any(|choice| choice == ours) {
            self.settle(key)?;
            self.reply(key, ours, value == ours);
        } else {
            self.reply(key, "Reject", false);
        }
        Ok(())
    }

    fn accept_protocol_level(&mut self, value: &str) -> Result<(), NegotiationError> {
        const KEY: &str = "iSCSIProtocolLevel";
        self.settle(KEY)?;
        // We implement RFC 7143 (level 1); the result is the minimum (RFC 7144 §2.1).
        match parse_number(value, 31) {
            Ok(theirs) => self.reply(KEY, &theirs.min(1).to_string(), theirs <= 1),
            Err(_) => self.reply(KEY, "Reject", false),
        }
        Ok(())
    }

    fn declare_max_xmit(&mut self, value: &str) -> Result<(), NegotiationError> {
        let length = parse_number(value, MAX_LENGTH_VALUE.into())
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n >= MIN_LENGTH_VALUE)
            .ok_or_else(|| NegotiationError::InvalidValue {
                key: "MaxRecvDataSegmentLength".to_owned(),
                value: clip(value),
            })?;
        self.declare("MaxRecvDataSegmentLength", value, |n, _| {
            n.max_xmit_data_segment_length = length
        })
    }

    fn declare_tpgt(&mut self, value: &str) -> Result<(), NegotiationError> {
        let tag = parse_number(value, u16::MAX.into())
            .ok()
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| NegotiationError::InvalidValue {
                key: "TargetPortalGroupTag".to_owned(),
                value: clip(value),
            })?;
        self.declare("TargetPortalGroupTag", value, |n, _| {
            n.target_portal_group_tag = Some(tag)
        })
    }

    /// Records a target declaration; a repeat is allowed only with the same value.
    fn declare(
        &mut self,
        key: &str,
        value: &str,
        apply: impl FnOnce(&mut Negotiated, &str),
    ) -> Result<(), NegotiationError> {
        let mut trial = self.result.clone();
        apply(&mut trial, value);
        if self.is_settled(key) && trial != self.result {
            return Err(NegotiationError::Repeated {
                key: key.to_owned(),
            });
        }
        if !self.is_settled(key) {
            self.settled.push(key.to_owned());
        }
        self.result = trial;
        Ok(())
    }

    /// The outcome of an offer the target did not (usefully) answer: the rule applied to our
    /// value and the RFC default, which is what the target holds for a key it ignored.
    fn apply_default_answer(&mut self, key: OpKey) -> Result<(), NegotiationError> {
        let rule = key.rule();
        if rule == Rule::Digest {
            if !self.proposal.digest(key).accepts("None") {
                return Err(NegotiationError::Refused {
                    key: key.name().to_owned(),
                    value: "None".to_owned(),
                });
            }
            self.result.set_scalar(key, Scalar::Bool(false));
            return Ok(());
        }
        let value = combine(
            rule,
            self.proposal.scalar(key),
            Negotiated::default().scalar(key),
        );
        if self.proposal.scalar(key) != value {
            tracing::warn!(key = key.name(), value = %value.to_text(), "no usable answer; using RFC default rule");
        }
        self.result.set_scalar(key, value);
        Ok(())
    }

    fn settle(&mut self, key: &str) -> Result<(), NegotiationError> {
        if self.is_settled(key) {
            return Err(NegotiationError::Repeated { key: clip(key) });
        }
        self.settled.push(key.to_owned());
        Ok(())
    }

    fn is_settled(&self, key: &str) -> bool {
        self.settled.iter().any(|k| k == key)
    }

    fn reply(&mut self, key: &str, value: &str, agrees: bool) {
        self.replies.push(Reply {
            key: key.to_owned(),
            value: value.to_owned(),
            agrees,
        });
    }
}

/// The negotiation result of `rule` when one side holds `a` and the other `b`.
pub(crate) fn combine(rule: Rule, a: Scalar, b: Scalar) -> Scalar {
    match (rule, a, b) {
        (Rule::Min(..), Scalar::Number(a), Scalar::Number(b)) => Scalar::Number(a.min(b)),
        (Rule::Max(..), Scalar::Number(a), Scalar::Number(b)) => Scalar::Number(a.max(b)),
        (Rule::Or, Scalar::Bool(a), Scalar::Bool(b)) => Scalar::Bool(a || b),
        (Rule::And, Scalar::Bool(a), Scalar::Bool(b)) => Scalar::Bool(a && b),
        // Mixed kinds never come out of the rule table; keep our side.
        _ => a,
    }
}

/// Whether `theirs` is an admissible acceptor answer to our offer `ours` under `rule`.
fn answer_allowed(rule: Rule, ours: Scalar, theirs: Scalar) -> bool {
    match (rule, ours, theirs) {
        (Rule::Min(..), Scalar::Number(ours), Scalar::Number(theirs)) => theirs <= ours,
        (Rule::Max(..), Scalar::Number(ours), Scalar::Number(theirs)) => theirs >= ours,
        (Rule::Or, Scalar::Bool(ours), Scalar::Bool(theirs)) => theirs || !ours,
        (Rule::And, Scalar::Bool(ours), Scalar::Bool(theirs)) => !theirs || ours,
        _ => false,
    }
}

fn parse_scalar(key: OpKey, rule: Rule, value: &str) -> Result<Scalar, NegotiationError> {
    let invalid = || NegotiationError::InvalidValue {
        key: key.name().to_owned(),
        value: clip(value),
    };
    match rule {
        Rule::Min(lo, hi) | Rule::Max(lo, hi) => {
            let n = parse_number(value, hi.into()).map_err(|_| invalid())?;
            let n = u32::try_from(n).map_err(|_| invalid())?;
            if n < lo {
                return Err(invalid());
            }
            Ok(Scalar::Number(n))
        }
        Rule::Or | Rule::And => match value {
            "Yes" => Ok(Scalar::Bool(true)),
            "No" => Ok(Scalar::Bool(false)),
            _ => Err(invalid()),
        },
        Rule::Digest => Err(invalid()),
    }
}

fn is_reserved(value: &str) -> bool {
    matches!(value, "Reject" | "NotUnderstood" | "Irrelevant")
}

/// A copy of `text` short enough to quote in an error or log line.
pub(crate) fn clip(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
#[path = "negotiate_tests.rs"]
mod tests;
