//! SendTargets discovery on a discovery session, sans-IO (RFC 7143 §11.10-11.11 Text
//! Request/Response, §13.3 SendTargets, Appendix C SendTargets operation).
//!
//! After a [`Login`](crate::login::Login) with `SessionType=Discovery`, [`SendTargets`] sends
//! `SendTargets=All` in a Text Request and gathers the answer. A long answer comes in several
//! Text Responses: each with F=0 carries a Target Transfer Tag that we echo in an empty Text
//! Request to ask for the rest; the C bit marks a key=value pair split across PDUs. The answer
//! is a list of `TargetName=` entries, each followed by its `TargetAddress=` portals:
//!
//! ```text
//! TargetName=iqn.2026-01.example:disk1
//! TargetAddress=10.0.0.1:3260,1
//! TargetAddress=[fe80::1]:3260,2
//! ```

use core::fmt;
use std::collections::VecDeque;

use crate::login::{Established, clip, parse_number};
use crate::wire::{
    Bytes, Lun, NopIn, NopOut, Pdu, RESERVED_TAG, RejectReason, TextAssembler, TextError,
    TextRequest, TextResponse, encode_text,
};

/// The iSCSI port (RFC 7143 §13.9 default for TargetAddress).
pub const DEFAULT_PORT: u16 = 3260;
/// Bound on the whole SendTargets answer.
const MAX_ANSWER: usize = 4 << 20;
/// Bound on one key=value run split with the C bit.
const MAX_PDU_TEXT: usize = 1 << 20;
/// Bound on Text Requests per exchange.
const MAX_EXCHANGES: u32 = 4096;

/// A target named in a SendTargets answer, with the portals it is reachable through.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct DiscoveredTarget {
    /// The target's iSCSI name.
    pub name: String,
    /// Its portals, in the order the target listed them (possibly none: use the portal the
    /// discovery session runs on).
    pub portals: Vec<Portal>,
}

/// One network portal from a `TargetAddress` value.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Portal {
    /// IPv4 or IPv6 address (without brackets) or host name.
    pub host: String,
    /// TCP port; [`DEFAULT_PORT`] when the value names none.
    pub port: u16,
    /// Target portal group tag, when given.
    pub tpgt: Option<u16>,
}

impl Portal {
    /// Parses a TargetAddress value: `host[:port][,tpgt]` with IPv6 hosts in brackets
    /// (RFC 7143 §13.9), e.g. `[fe80::1]:3260,1`, `10.0.0.1,1`, `disk.example`.
    ///
    /// An unbracketed value with several colons is taken as a bare IPv6 address on the
    /// default port.
    ///
    /// # Errors
    /// [`DiscoveryError::InvalidAddress`] naming what is wrong.
    pub fn parse(value: &str) -> Result<Portal, DiscoveryError> {
        let invalid = |reason| DiscoveryError::InvalidAddress {
            value: clip(value),
            reason,
        };
        let (address, tpgt) = match value.split_once(',') {
            Some((address, tag)) => {
                let tag = parse_number(tag, u16::MAX.into())
                    .map_err(|_| invalid("bad portal group tag"))?;
                (
                    address,
                    Some(u16::try_from(tag).map_err(|_| invalid("bad portal group tag"))?),
                )
            }
            None => (value, None),
        };
        let (host, port) = if let Some(rest) = address.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| invalid("unclosed '['"))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| invalid("junk after ']'"))?,
                    ),
                ),
            }
        } else {
            match address.split_once(':') {
                Some((host, port)) if !port.contains(':') => (host, Some(port)),
                _ => (address, None),
            }
        };
        let port = match port {
            None => DEFAULT_PORT,
            Some(port) => port
                .parse()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid("bad port"))?,
        };
        let bad_char = |c: char| c.is_whitespace() || c.is_control() || c == '[' || c == ']';
        if host.is_empty() || host.chars().any(bad_char) {
            return Err(invalid("bad host"));
        }
        Ok(Portal {
            host: host.to_owned(),
            port,
            tpgt,
        })
    }
}

impl fmt::Display for Portal {
    /// `host:port`, with an IPv6 host in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why discovery failed.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The target broke the Text Request/Response protocol.
    #[error("target broke the SendTargets exchange: {0}")]
    PeerMisbehaved(&'static str),
    /// The answer is not valid key=value text.
    #[error("malformed SendTargets answer: {0}")]
    Text(TextError),
    /// The target answered `SendTargets=Reject` (or Irrelevant/NotUnderstood).
    #[error("target refused SendTargets ({0})")]
    Refused(String),
    /// A TargetAddress came before any TargetName.
    #[error("TargetAddress={0} before any TargetName")]
    AddressBeforeName(String),
    /// A TargetAddress value could not be parsed.
    #[error("invalid TargetAddress={value}: {reason}")]
    InvalidAddress {
        /// The value (clipped).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The target answered our Text Request with a Reject PDU.
    #[error("target rejected our Text Request ({reason:?})")]
    PduRejected {
        /// The Reject reason code.
        reason: RejectReason,
    },
    /// The connection closed before the answer was complete.
    #[error("connection closed during discovery")]
    ConnectionClosed,
    /// A PDU was handed to an exchange that already has its outcome.
    #[error("discovery already finished")]
    Finished,
}

/// How a SendTargets exchange ended.
pub type DiscoveryOutcome = Result<Vec<DiscoveredTarget>, DiscoveryError>;

/// A sans-IO SendTargets exchange, driven like [`Login`](crate::login::Login): send what
/// [`SendTargets::poll_transmit`] yields, feed received PDUs to [`SendTargets::handle_pdu`],
/// stop when [`SendTargets::poll_outcome`] has the result. It answers the target's NOP-In
/// pings on the way.
#[derive(Debug)]
pub struct SendTargets {
    itt: u32,
    cmd_sn: u32,
    exp_stat_sn: u32,
    transmit: VecDeque<Pdu>,
    assembler: TextAssembler,
    pairs: Vec<(String, String)>,
    text_len: usize,
    exchanges: u32,
    finished: bool,
    outcome: Option<DiscoveryOutcome>,
}

impl SendTargets {
    /// Asks for `SendTargets=All` with task tag `itt`, using the session's next CmdSN and
    /// ExpStatSN.
    pub fn new(itt: u32, cmd_sn: u32, exp_stat_sn: u32) -> Self {
        Self::with_value(itt, cmd_sn, exp_stat_sn, "All")
    }

    /// Asks for `SendTargets=All` right after a discovery login.
    pub fn after_login(established: &Established) -> Self {
        Self::new(1, established.cmd_sn, established.stat_sn.wrapping_add(1))
    }

    /// Asks about one target only (`SendTargets=<iSCSI name>`), or the session's own target
    /// with an empty `value` on a normal session.
    pub fn with_value(itt: u32, cmd_sn: u32, exp_stat_sn: u32, value: &str) -> Self {
        let mut exchange = SendTargets {
            itt,
            cmd_sn,
            exp_stat_sn,
            transmit: VecDeque::new(),
            assembler: TextAssembler::new(MAX_PDU_TEXT),
            pairs: Vec::new(),
            text_len: 0,
            exchanges: 0,
            finished: false,
            outcome: None,
        };
        match encode_text(&[("SendTargets", value)]) {
            Ok(text) => exchange.send_request(text.freeze(), RESERVED_TAG),
            Err(e) => exchange.fail(DiscoveryError::Text(e)),
        }
        exchange
    }

    /// The next PDU to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Pdu> {
        self.transmit.pop_front()
    }

    /// Feeds a PDU received on the discovery session.
    ///
    /// # Errors
    /// The failure this PDU caused (also kept as the outcome), or
    /// [`DiscoveryError::Finished`] once the exchange has ended.
    pub fn handle_pdu(&mut self, pdu: Pdu) -> Result<(), DiscoveryError> {
        if self.finished {
            return Err(DiscoveryError::Finished);
        }
        let result = match pdu {
            Pdu::TextResponse(response) => self.handle_response(response),
            Pdu::NopIn(nop) => {
                self.handle_nop(nop);
                Ok(())
            }
            Pdu::AsyncMessage(message) => {
                tracing::warn!(event = ?message.event, "async message during discovery ignored");
                Ok(())
            }
            Pdu::Reject(reject) => Err(DiscoveryError::PduRejected {
                reason: reject.reason,
            }),
            _ => Err(DiscoveryError::PeerMisbehaved(
                "unexpected PDU during discovery",
            )),
        };
        if let Err(error) = &result {
            self.fail(error.clone());
        }
        result
    }

    /// Reports that the connection closed.
    pub fn handle_close(&mut self) {
        if !self.finished {
            self.fail(DiscoveryError::ConnectionClosed);
        }
    }

    /// Takes the outcome once the exchange has ended.
    pub fn poll_outcome(&mut self) -> Option<DiscoveryOutcome> {
        self.outcome.take()
    }

    /// The next CmdSN of the session (for the Logout that usually follows); immediate Text
    /// Requests do not advance it.
    pub fn cmd_sn(&self) -> u32 {
        self.cmd_sn
    }

    /// The session's ExpStatSN after the PDUs handled so far.
    pub fn exp_stat_sn(&self) -> u32 {
        self.exp_stat_sn
    }

    fn fail(&mut self, error: DiscoveryError) {
        self.transmit.clear();
        self.finished = true;
        self.outcome = Some(Err(error));
    }

    fn send_request(&mut self, data: Bytes, ttt: u32) {
        self.exchanges += 1;
        // Immediate, as libiscsi sends it: the exchange needs no CmdSN window and leaves the
        // session's CmdSN where login put it (RFC 7143 §3.2.2.1).
        let request = TextRequest {
            immediate: true,
            final_: true,
            cont: false,
            lun: Lun::default(),
            itt: self.itt,
            ttt,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data,
        };
        self.transmit.push_back(Pdu::TextRequest(request));
    }

    fn handle_response(&mut self, response: TextResponse) -> Result<(), DiscoveryError> {
        let misbehaved = |reason| Err(DiscoveryError::PeerMisbehaved(reason));
        if response.itt != self.itt {
            return misbehaved("text response for another task");
        }
        if response.final_ && response.cont {
            return misbehaved("text response with both F and C bits");
        }
        if response.final_ != (response.ttt == RESERVED_TAG) {
            return misbehaved("Target Transfer Tag inconsistent with the F bit");
        }
        self.exp_stat_sn = response.stat_sn.wrapping_add(1);
        self.text_len = self.text_len.saturating_add(response.data.len());
        if self.text_len > MAX_ANSWER {
            return misbehaved("SendTargets answer too long");
        }
        if let Some(pairs) = self
            .assembler
            .push(&response.data, response.cont)
            .map_err(DiscoveryError::Text)?
        {
            self.pairs.extend(pairs);
        }
        if response.final_ {
            let pairs = std::mem::take(&mut self.pairs);
            self.finished = true;
            self.outcome = Some(parse_send_targets(&pairs));
            return Ok(());
        }
        if self.exchanges >= MAX_EXCHANGES {
            return misbehaved("SendTargets answer does not end");
        }
        self.send_request(Bytes::new(), response.ttt);
        Ok(())
    }

    /// Answers a target ping (a NOP-In with a Target Transfer Tag) with a NOP-Out.
    fn handle_nop(&mut self, nop: NopIn) {
        if nop.ttt == RESERVED_TAG {
            return;
        }
        let reply = NopOut {
            immediate: true,
            lun: nop.lun,
            itt: RESERVED_TAG,
            ttt: nop.ttt,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: nop.data,
        };
        self.transmit.push_back(Pdu::NopOut(reply));
    }
}

/// Turns the pairs of a SendTargets answer into targets and their portals.
///
/// Keys other than TargetName and TargetAddress (e.g. TargetAlias) are ignored.
///
/// # Errors
/// [`DiscoveryError::AddressBeforeName`], [`DiscoveryError::InvalidAddress`], or
/// [`DiscoveryError::Refused`] when the answer is `SendTargets=Reject` or similar.
pub fn parse_send_targets(pairs: &[(String, String)]) -> DiscoveryOutcome {
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
                target.portals.push(Portal::parse(value)?);
            }
            "SendTargets" => return Err(DiscoveryError::Refused(clip(value))),
            _ => tracing::debug!(key = %clip(key), "ignored in SendTargets answer"),
        }
    }
    Ok(targets)
}

#[cfg(test)]
mod tests;
