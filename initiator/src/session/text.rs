//! Text exchanges in the full feature phase (RFC 7143 §11.10-§11.11, §6.2): SendTargets
//! (§13.3, Appendix C) and the answer to a target's renegotiation request (§11.9.1 event 4).
//!
//! One exchange runs at a time per connection. A request goes out immediate (as libiscsi and
//! open-iscsi send it: no CmdSN window needed) with a fresh ITT; a Text Response with F=0
//! carries a Target Transfer Tag that we echo in an empty Text Request to ask for the rest,
//! and the C bit marks a key=value pair continued in the next PDU. The answer is bounded in
//! size and in round trips. An exchange cut by a lost connection starts over on the next one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{info, warn};

use super::types::{Outcome, SubmitError, TaskError, TaskId};
use super::{Session, State};
use crate::wire::{Lun, Pdu, RESERVED_TAG, TextAssembler, TextRequest, TextResponse, encode_text};

/// Bound on a whole text answer.
const MAX_ANSWER: usize = 4 << 20;
/// Bound on one key=value run split with the C bit.
const MAX_PDU_TEXT: usize = 1 << 20;
/// Bound on Text Requests per exchange.
const MAX_ROUND_TRIPS: u32 = 4096;
/// Times an exchange starts over after a lost connection before it fails: a target that drops
/// the connection on a request must not make us send it forever.
pub(super) const MAX_RESTARTS: u32 = 2;

/// Who asked for an exchange.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Purpose {
    /// The owner, who gets the pairs.
    Owner(TaskId),
    /// Our answer to the target's renegotiation request.
    Renegotiation,
}

/// An exchange waiting for its turn.
#[derive(Clone, Debug)]
struct Waiting {
    purpose: Purpose,
    text: Bytes,
    /// Times it started over after a lost connection.
    restarts: u32,
}

/// The exchange on the wire.
#[derive(Debug)]
struct Active {
    request: Waiting,
    itt: u32,
    deadline: Instant,
    assembler: TextAssembler,
    pairs: Vec<(String, String)>,
    received: usize,
    round_trips: u32,
}

/// Text exchanges: waiting ones in order, the running one, and the ITT of one we gave up on
/// (its late answer is dropped rather than treated as a protocol violation).
#[derive(Debug, Default)]
pub(super) struct TextTable {
    waiting: VecDeque<Waiting>,
    active: Option<Active>,
    abandoned: Option<u32>,
}

impl TextTable {
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    pub fn uses_itt(&self, itt: u32) -> bool {
        self.active.as_ref().is_some_and(|a| a.itt == itt) || self.abandoned == Some(itt)
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.active.as_ref().map(|a| a.deadline)
    }

    /// The owners of the exchanges that have not started.
    pub fn drain_waiting(&mut self) -> Vec<TaskId> {
        let owners = self.waiting.iter().filter_map(|w| w.purpose.owner());
        let ids = owners.collect();
        self.waiting.clear();
        ids
    }

    /// The owners of every exchange, running or not.
    pub fn drain_all(&mut self) -> Vec<TaskId> {
        let mut ids: Vec<TaskId> = self
            .active
            .take()
            .and_then(|a| a.request.purpose.owner())
            .into_iter()
            .collect();
        ids.extend(self.drain_waiting());
        ids
    }

    /// The connection is gone: the owner's running exchange starts over on the next one
    /// (a renegotiation is moot: the next login negotiates afresh) — unless `restart` is
    /// false or it started over [`MAX_RESTARTS`] times already; then its owner is returned,
    /// to be failed.
    pub fn connection_lost(&mut self, restart: bool) -> Option<TaskId> {
        self.abandoned = None;
        let mut active = self.active.take()?;
        let owner = active.request.purpose.owner()?;
        if !restart || active.request.restarts >= MAX_RESTARTS {
            return Some(owner);
        }
        active.request.restarts += 1;
        self.waiting.push_front(active.request);
        None
    }

    /// The target rejected the Text Request `itt`: the exchange ends; returns its owner.
    pub fn rejected(&mut self, itt: u32) -> Option<TaskId> {
        let active = self.active.take_if(|a| a.itt == itt)?;
        active.request.purpose.owner()
    }
}

impl Purpose {
    fn owner(self) -> Option<TaskId> {
        match self {
            Purpose::Owner(id) => Some(id),
            Purpose::Renegotiation => None,
        }
    }
}

impl Session {
    /// Queues a text exchange sending `pairs` (e.g. `SendTargets=All`); it completes with
    /// [`Outcome::Text`] holding every pair of the answer.
    ///
    /// # Errors
    /// [`SubmitError::TooLarge`] when the request does not fit the target's
    /// MaxRecvDataSegmentLength, [`SubmitError::Closing`] on a closing session.
    pub fn submit_text(
        &mut self,
        pairs: &[(&str, &str)],
        now: Instant,
    ) -> Result<TaskId, SubmitError> {
        let text = encode_text(pairs).map_err(|_| SubmitError::TooLarge(usize::MAX))?;
        if text.len() > self.params.max_xmit as usize {
            return Err(SubmitError::TooLarge(text.len()));
        }
        let id = self.admit()?;
        if let Some(error) = self.refusal() {
            self.fail(id, error);
            return Ok(id);
        }
        self.texts.waiting.push_back(Waiting {
            purpose: Purpose::Owner(id),
            text: text.freeze(),
            restarts: 0,
        });
        self.pump(now);
        Ok(id)
    }

    /// Answers an asynchronous renegotiation request with an empty Text Request, unless an
    /// exchange already runs (RFC 7143 §11.9.1: that one serves).
    pub(super) fn request_renegotiation(&mut self, _within: Duration, now: Instant) {
        if self.texts.active.is_none() {
            self.texts.waiting.push_front(Waiting {
                purpose: Purpose::Renegotiation,
                text: Bytes::new(),
                restarts: 0,
            });
        }
        self.pump(now);
    }

    /// Starts the next waiting exchange when none runs.
    pub(super) fn pump_texts(&mut self, now: Instant) {
        if self.texts.active.is_some() || self.state != State::Connected {
            return;
        }
        let Some(request) = self.texts.waiting.pop_front() else {
            return;
        };
        let itt = self.allocate_itt();
        let text = request.text.clone();
        self.texts.active = Some(Active {
            request,
            itt,
            deadline: now + self.config.command_timeout,
            assembler: TextAssembler::new(MAX_PDU_TEXT),
            pairs: Vec::new(),
            received: 0,
            round_trips: 0,
        });
        self.send_text_request(itt, RESERVED_TAG, text);
    }

    fn send_text_request(&mut self, itt: u32, ttt: u32, data: Bytes) {
        if let Some(active) = &mut self.texts.active {
            active.round_trips += 1;
        }
        self.transmit.push_back(Pdu::TextRequest(TextRequest {
            immediate: true,
            final_: true,
            cont: false,
            lun: Lun::default(),
            itt,
            ttt,
            cmd_sn: self.window.cmd_sn,
            exp_stat_sn: self.window.exp_stat_sn,
            data,
        }));
    }

    pub(super) fn handle_text_response(&mut self, r: TextResponse, now: Instant) {
        self.window.update(r.exp_cmd_sn, r.max_cmd_sn);
        if self.texts.abandoned == Some(r.itt) {
            // The answer to an exchange we gave up on: acknowledge it and drop it.
            if self.ack(r.stat_sn, now).is_ok() && r.final_ {
                self.texts.abandoned = None;
            }
            return;
        }
        if self.texts.active.as_ref().is_none_or(|a| a.itt != r.itt) {
            return self.protocol_error("Text Response for an ITT not in flight", now);
        }
        if self.ack(r.stat_sn, now).is_err() {
            return;
        }
        match self.gather(&r) {
            Err(what) => self.end_text(Err(what), now),
            Ok(true) => {
                let pairs = self
                    .texts
                    .active
                    .as_mut()
                    .map(|a| std::mem::take(&mut a.pairs));
                self.end_text(Ok(pairs.unwrap_or_default()), now);
            }
            Ok(false) => self.send_text_request(r.itt, r.ttt, Bytes::new()),
        }
    }

    /// Adds a response's text to the running exchange; `Ok(true)` when it was the last.
    fn gather(&mut self, r: &TextResponse) -> Result<bool, TaskError> {
        let Some(active) = self.texts.active.as_mut() else {
            return Err(TaskError::Text("no exchange running"));
        };
        if r.final_ && r.cont {
            return Err(TaskError::Text("Text Response with both F and C bits"));
        }
        if r.final_ != (r.ttt == RESERVED_TAG) {
            return Err(TaskError::Text(
                "Target Transfer Tag inconsistent with the F bit",
            ));
        }
        active.received = active.received.saturating_add(r.data.len());
        if active.received > MAX_ANSWER {
            return Err(TaskError::Text("text answer too long"));
        }
        let pairs = active
            .assembler
            .push(&r.data, r.cont)
            .map_err(TaskError::MalformedText)?;
        active.pairs.extend(pairs.into_iter().flatten());
        if !r.final_ && active.round_trips >= MAX_ROUND_TRIPS {
            return Err(TaskError::Text("text answer does not end"));
        }
        Ok(r.final_)
    }

    /// Ends the running exchange with `result` and starts the next one.
    fn end_text(&mut self, result: Result<Vec<(String, String)>, TaskError>, now: Instant) {
        let Some(active) = self.texts.active.take() else {
            return;
        };
        match (active.request.purpose, result) {
            (Purpose::Owner(id), Ok(pairs)) => {
                self.completions.push_back((id, Ok(Outcome::Text(pairs))))
            }
            (Purpose::Owner(id), Err(e)) => self.fail(id, e),
            (Purpose::Renegotiation, Ok(pairs)) => self.renegotiated(&pairs, now),
            (Purpose::Renegotiation, Err(e)) => {
                warn!(error = %e, "renegotiation exchange failed; logging out to reconnect");
                self.drain(Duration::ZERO, now);
            }
        }
        self.pump(now);
    }

    /// Applies what the target declared in a renegotiation. MaxRecvDataSegmentLength is
    /// declarative and taken; any key that needs an answer is not negotiated here — the
    /// session logs out and the next login negotiates everything afresh.
    fn renegotiated(&mut self, pairs: &[(String, String)], now: Instant) {
        for (key, value) in pairs {
            let declared = (key == "MaxRecvDataSegmentLength")
                .then(|| crate::login::parse_number(value, 16_777_215).ok())
                .flatten()
                .filter(|&n| n >= 512);
            match declared {
                Some(n) => {
                    info!(max = n, "target declares a new MaxRecvDataSegmentLength");
                    self.params.max_xmit = u32::try_from(n).unwrap_or(u32::MAX);
                }
                None => {
                    warn!(key = %crate::login::clip(key), "target renegotiates a key; logging out to reconnect");
                    return self.drain(Duration::ZERO, now);
                }
            }
        }
        info!("renegotiation done");
    }

    /// Gives up on a text exchange that went unanswered for the command timeout.
    pub(super) fn text_timeouts(&mut self, now: Instant) {
        let Some(active) = self.texts.active.as_ref() else {
            return;
        };
        if now < active.deadline {
            return;
        }
        warn!("Text Request unanswered within the command timeout");
        self.texts.abandoned = Some(active.itt);
        self.end_text(Err(TaskError::Timeout), now);
    }
}
