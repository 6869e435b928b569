//! Keep-alive (RFC 7143 §11.18, §11.19): NOP-Out pings after a quiet interval, a deadline
//! for their answer, and prompt answers to the target's own NOP-In pings.

use std::time::Instant;

use super::Session;
use super::types::{ConnectionFailure, SessionConfig};
use crate::wire::{NopIn, NopOut, Pdu, RESERVED_TAG};

/// Ping state of a connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Keepalive {
    /// When the target last sent anything.
    last_rx: Instant,
    /// Our outstanding ping: its ITT and when it was sent.
    ping: Option<(u32, Instant)>,
}

impl Keepalive {
    /// A quiet connection as of `now`.
    pub fn new(now: Instant) -> Keepalive {
        Keepalive {
            last_rx: now,
            ping: None,
        }
    }

    /// Something arrived.
    pub fn received(&mut self, now: Instant) {
        self.last_rx = now;
    }

    /// Whether `itt` is our outstanding ping.
    pub fn is_ping(&self, itt: u32) -> bool {
        self.ping.is_some_and(|(p, _)| p == itt)
    }

    /// The ping was answered.
    pub fn answered(&mut self) {
        self.ping = None;
    }

    /// When a ping is due or times out. A ping's answer may queue behind data, so any PDU
    /// received after it was sent extends its deadline.
    pub fn next_timeout(&self, config: &SessionConfig) -> Option<Instant> {
        if config.noop_interval.is_zero() {
            return None;
        }
        Some(match self.ping {
            Some((_, sent)) => sent.max(self.last_rx) + config.noop_timeout,
            None => self.last_rx + config.noop_interval,
        })
    }
}

impl Session {
    pub(super) fn handle_nop_in(&mut self, n: NopIn, now: Instant) {
        self.window.update(n.exp_cmd_sn, n.max_cmd_sn);
        if n.ttt != RESERVED_TAG {
            // The target pings: echo its TTT, LUN and data at once (§11.18.6), the data cut
            // to what the target accepts in one segment. Its StatSN is not advanced.
            let mut data = n.data;
            data.truncate(self.params.max_xmit as usize);
            self.transmit.push_back(Pdu::NopOut(NopOut {
                immediate: true,
                lun: n.lun,
                itt: RESERVED_TAG,
                ttt: n.ttt,
                cmd_sn: self.window.cmd_sn,
                exp_stat_sn: self.window.exp_stat_sn,
                data,
            }));
            return;
        }
        if n.itt == RESERVED_TAG {
            // An unsolicited window update; carries no new StatSN.
            return;
        }
        if self.handle_pong(&n, now) {
            return;
        }
        if !self.keepalive.is_ping(n.itt) {
            return self.protocol_error("NOP-In answers a ping we did not send", now);
        }
        if self.ack(n.stat_sn, now).is_ok() {
            self.keepalive.answered();
        }
    }

    pub(super) fn keepalive_timeout(&mut self, now: Instant) {
        let Some(due) = self.keepalive.next_timeout(&self.config) else {
            return;
        };
        if now < due {
            return;
        }
        if self.keepalive.ping.is_some() {
            tracing::warn!(
                silent_for = ?now.saturating_duration_since(self.keepalive.last_rx),
                "nothing from the target since a NOP-Out ping; declaring the connection dead"
            );
            let delay = std::time::Duration::ZERO;
            return self.fail_connection(ConnectionFailure::PingTimeout, delay, now);
        }
        let itt = self.allocate_itt();
        self.transmit.push_back(Pdu::NopOut(NopOut {
            immediate: true,
            lun: Default::default(),
            itt,
            ttt: RESERVED_TAG,
            cmd_sn: self.window.cmd_sn,
            exp_stat_sn: self.window.exp_stat_sn,
            data: Default::default(),
        }));
        self.keepalive.ping = Some((itt, now));
    }
}
