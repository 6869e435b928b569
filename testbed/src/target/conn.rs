//! One target connection as a sans-IO state machine: fed decoded PDUs (`handle_pdu`), bad
//! PDUs (`handle_invalid`) and the clock (`handle_tick`), it queues what to send
//! (`poll_transmit`). The driver in `driver.rs` owns the socket.
//!
//! Sequencing follows RFC 7143 §4.2.2: StatSN advances on every status-carrying PDU (SCSI
//! Response, Data-In with S, NOP-In answering a ping, Text, Logout, Task Management
//! Responses, Async Message and Reject; §11.17.3 for Reject) but not on R2T or a NOP-In
//! with ITT 0xffffffff. Non-immediate commands must carry a CmdSN inside
//! [ExpCmdSN, MaxCmdSN] (others are dropped, §4.2.2.1) and advance ExpCmdSN; immediate ones
//! do not. MaxCmdSN = ExpCmdSN + window - 1.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use sanshim_initiator::wire::{
    AsyncEvent, AsyncMessage, BHS_LEN, Bytes, Codec, LoginResponse, LogoutRequest, LogoutResponse,
    LogoutResponseCode, Lun, NopIn, NopOut, Pdu, RESERVED_TAG, Reject, RejectReason, ScsiCommand,
    Sn, TaskMgmtRequest, TaskMgmtResponse, TextAssembler, TextSplitter, TmFunction, TmResponse,
};

use super::login::{LoginMachine, LoginStep, Negotiated};
use super::pages;
use super::rules::Rule;
use super::task::WriteTask;
use super::{Event, Shared, lock};

/// What the driver must do next, in order.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) enum Transmit {
    /// Send this PDU; with `true`, with a wrong data digest.
    Pdu(Pdu, bool),
    /// From here on, in both directions, use these digests (end of login).
    Digests {
        /// HeaderDigest=CRC32C.
        header: bool,
        /// DataDigest=CRC32C.
        data: bool,
    },
    /// Close the connection once everything queued before has been sent.
    Close,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Phase {
    Login,
    FullFeature,
    Closed,
}

/// The state of one connection (one session: MaxConnections=1).
pub(crate) struct Connection {
    pub(super) shared: Arc<Shared>,
    /// This connection's id among the target's.
    pub(super) id: u64,
    /// The session's ISID once a normal session logged in: its I_T nexus.
    pub(super) nexus: Option<[u8; 6]>,
    phase: Phase,
    login: LoginMachine,
    login_seen: bool,
    pub(super) params: Negotiated,
    pub(super) stat_sn: u32,
    pub(super) exp_cmd_sn: u32,
    out: VecDeque<Transmit>,
    /// Write commands collecting Data-Out, by ITT.
    pub(super) writes: HashMap<u32, WriteTask>,
    /// Commands held by [`Rule::Hold`], by ITT.
    pub(super) held: HashMap<u32, ScsiCommand>,
    /// The [`crate::FakeTarget::release_held`] count this connection has acted on.
    pub(super) released: u64,
    pub(super) next_ttt: u32,
    pub(super) text_in: TextAssembler,
    /// The rest of a Text Response too long for one PDU, and its TTT.
    pub(super) text_out: Option<(u32, TextSplitter)>,
    silent: bool,
    close_after: Option<u32>,
    last_ping: Instant,
    ping_ttt: Option<u32>,
    /// The window size last announced; a change is announced with a NOP-In.
    window_seen: u32,
    /// The highest MaxCmdSN announced: a target may not take back a CmdSN it granted
    /// (RFC 7143 §4.2.2.1), so a smaller window only stops MaxCmdSN from growing.
    granted: std::cell::Cell<Option<u32>>,
    rx_codec: Codec,
}

impl Connection {
    pub(crate) fn new(shared: Arc<Shared>, now: Instant) -> Connection {
        let stat_sn = shared.config.initial_stat_sn;
        let shared_window = shared.window();
        let released = shared.released();
        let id = shared
            .next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        shared
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id);
        Connection {
            shared,
            id,
            nexus: None,
            phase: Phase::Login,
            login: LoginMachine::default(),
            login_seen: false,
            params: Negotiated::default(),
            stat_sn,
            exp_cmd_sn: 0,
            out: VecDeque::new(),
            writes: HashMap::new(),
            held: HashMap::new(),
            released,
            next_ttt: 0x1000,
            text_in: TextAssembler::default(),
            text_out: None,
            silent: false,
            close_after: None,
            last_ping: now,
            ping_ttt: None,
            window_seen: shared_window,
            granted: std::cell::Cell::new(None),
            rx_codec: Codec::new(),
        }
    }

    /// The codec to decode the next PDU with (changes at the end of login).
    pub(crate) fn rx_codec(&self) -> Codec {
        self.rx_codec
    }

    /// Whether the connection is over (after a Logout, a failed login or a fault).
    pub(crate) fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The next thing to send, if any.
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Handles a PDU the initiator sent; `bhs` is its header as received (for Rejects).
    pub(crate) fn handle_pdu(&mut self, pdu: Pdu, bhs: &[u8; BHS_LEN], now: Instant) {
        match self.phase {
            Phase::Login => self.handle_login_pdu(pdu),
            Phase::FullFeature if self.silent => {}
            Phase::FullFeature => {
                self.take_connection_rules();
                if self.silent {
                    return;
                }
                if self.close_after == Some(0) {
                    return self.close();
                }
                if let Some(reason) = self.shared.script(|s| s.take_reject(pdu.opcode())) {
                    self.consume_cmd_sn_of(&pdu);
                    self.reject(bhs, reason);
                } else {
                    self.handle_ffp_pdu(pdu, bhs, now);
                }
                self.count_down_close();
            }
            Phase::Closed => {}
        }
    }

    /// Handles a PDU that was framed but did not decode (a data digest error or an invalid
    /// field): a Reject with `reason` in full feature phase, closing during login.
    pub(crate) fn handle_invalid(&mut self, bhs: &[u8; BHS_LEN], reason: RejectReason) {
        match self.phase {
            Phase::FullFeature if !self.silent => {
                if let Ok(pdu) = Pdu::parse_header(bhs, &[]) {
                    self.consume_cmd_sn_of(&pdu);
                }
                self.reject(bhs, reason);
            }
            Phase::FullFeature | Phase::Closed => {}
            Phase::Login => self.close(),
        }
    }

    /// Runs what is due at `now`: rules taken while idle, target pings, window updates,
    /// deferred writes.
    pub(crate) fn handle_tick(&mut self, now: Instant) {
        if self.phase != Phase::FullFeature || self.silent || self.params.discovery {
            return;
        }
        self.run_deferred(now);
        self.run_released();
        self.take_connection_rules();
        if self.close_after == Some(0) {
            self.close();
            return;
        }
        if let Some(every) = self.shared.config.ping_interval {
            if self.ping_ttt.is_none() && now.duration_since(self.last_ping) >= every {
                self.last_ping = now;
                let ttt = self.fresh_ttt();
                self.ping_ttt = Some(ttt);
                self.send_nop_in(RESERVED_TAG, ttt);
            }
        }
        let window = self.shared.window();
        if window != self.window_seen {
            self.window_seen = window;
            self.send_nop_in(RESERVED_TAG, RESERVED_TAG);
        }
    }

    fn handle_login_pdu(&mut self, pdu: Pdu) {
        let Pdu::LoginRequest(req) = pdu else {
            self.close();
            return;
        };
        if !self.login_seen {
            self.login_seen = true;
            if let Some(status) = self.shared.script(|s| s.take_fail_login()) {
                let resp = super::login::response(&req, status, Bytes::new());
                self.finish_login_failure(resp, req.cmd_sn);
                return;
            }
        }
        self.exp_cmd_sn = req.cmd_sn;
        let shared = self.shared.clone();
        let step = self
            .login
            .handle(&req, &shared.config, || shared.next_tsih());
        match step {
            LoginStep::Reply(resp) => self.send_login(resp),
            LoginStep::Done(resp, params) => {
                self.params = params;
                self.send_login(resp);
                self.out.push_back(Transmit::Digests {
                    header: params.header_digest,
                    data: params.data_digest,
                });
                self.rx_codec = Codec {
                    header_digest: params.header_digest,
                    data_digest: params.data_digest,
                    max_recv_data_segment_length: shared.config.max_recv_data_segment_length,
                };
                self.phase = Phase::FullFeature;
                if !params.discovery {
                    self.nexus = Some(req.isid.0);
                    lock(&self.shared.nexuses).insert(req.isid.0);
                }
                self.shared.count(|c| match params.discovery {
                    true => c.logins_discovery += 1,
                    false => c.logins_normal += 1,
                });
            }
            LoginStep::Fail(resp) => self.finish_login_failure(resp, req.cmd_sn),
        }
    }

    fn finish_login_failure(&mut self, resp: LoginResponse, cmd_sn: u32) {
        self.exp_cmd_sn = cmd_sn;
        self.send_login(resp);
        self.shared.count(|c| c.login_failures += 1);
        self.close();
    }

    fn send_login(&mut self, mut resp: LoginResponse) {
        resp.stat_sn = self.advance_stat_sn();
        resp.exp_cmd_sn = self.exp_cmd_sn;
        resp.max_cmd_sn = self.max_cmd_sn();
        self.out
            .push_back(Transmit::Pdu(Pdu::LoginResponse(resp), false));
    }

    fn handle_ffp_pdu(&mut self, pdu: Pdu, bhs: &[u8; BHS_LEN], now: Instant) {
        let protocol_error = |this: &mut Self| this.reject(bhs, RejectReason::PROTOCOL_ERROR);
        match pdu {
            Pdu::NopOut(nop) => self.handle_nop_out(nop, now),
            Pdu::ScsiCommand(cmd) if self.params.discovery => {
                self.consume_cmd_sn(cmd.immediate, cmd.cmd_sn);
                protocol_error(self);
            }
            Pdu::ScsiCommand(cmd) => {
                self.shared
                    .count(|c| *c.commands.entry(cmd.cdb[0]).or_default() += 1);
                if self.consume_cmd_sn(cmd.immediate, cmd.cmd_sn) {
                    self.handle_command(cmd);
                } else {
                    self.shared.count(|c| c.out_of_window += 1);
                }
            }
            Pdu::DataOut(data) => self.handle_data_out(data),
            Pdu::TaskMgmtRequest(tmf) => self.handle_task_mgmt(tmf),
            Pdu::TextRequest(text) => self.handle_text(text),
            Pdu::LogoutRequest(logout) => self.handle_logout(logout),
            _ => protocol_error(self),
        }
    }

    fn handle_nop_out(&mut self, nop: NopOut, now: Instant) {
        self.shared.count(|c| c.nop_outs += 1);
        if nop.itt == RESERVED_TAG {
            if nop.ttt != RESERVED_TAG && self.ping_ttt == Some(nop.ttt) {
                self.ping_ttt = None;
                self.last_ping = now;
                self.shared.count(|c| c.ping_replies += 1);
            }
            return;
        }
        if !self.consume_cmd_sn(nop.immediate, nop.cmd_sn) {
            return;
        }
        let mut data = nop.data;
        data.truncate(self.params.peer_mrdsl as usize);
        let pdu = NopIn {
            lun: nop.lun,
            itt: nop.itt,
            ttt: RESERVED_TAG,
            stat_sn: self.advance_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data,
        };
        self.shared.count(|c| c.nop_ins += 1);
        self.send(Pdu::NopIn(pdu));
    }

    fn handle_task_mgmt(&mut self, tmf: TaskMgmtRequest) {
        self.shared
            .count(|c| *c.task_mgmt.entry(tmf.function.0).or_default() += 1);
        if !self.consume_cmd_sn(tmf.immediate, tmf.cmd_sn) {
            return;
        }
        let response = match tmf.function {
            TmFunction::ABORT_TASK => {
                let known = self.held.remove(&tmf.referenced_task_tag).is_some()
                    || self.writes.remove(&tmf.referenced_task_tag).is_some();
                if known {
                    TmResponse::FUNCTION_COMPLETE
                } else {
                    TmResponse::TASK_DOES_NOT_EXIST
                }
            }
            TmFunction::LOGICAL_UNIT_RESET if matches!(tmf.lun.number(), Some(0 | 1)) => {
                self.held.retain(|_, cmd| cmd.lun != tmf.lun);
                self.writes.retain(|_, w| w.lun != tmf.lun);
                self.cancel_deferred(tmf.lun);
                self.shared.reset_from(self.nexus);
                TmResponse::FUNCTION_COMPLETE
            }
            TmFunction::LOGICAL_UNIT_RESET => TmResponse::LUN_DOES_NOT_EXIST,
            f if f.name().is_some() => TmResponse::NOT_SUPPORTED,
            _ => TmResponse::FUNCTION_REJECTED,
        };
        let pdu = TaskMgmtResponse {
            response,
            itt: tmf.itt,
            stat_sn: self.advance_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
        };
        self.send(Pdu::TaskMgmtResponse(pdu));
    }

    fn handle_logout(&mut self, req: LogoutRequest) {
        self.shared.count(|c| c.logouts += 1);
        self.shared.log(Event::Logout);
        // A logout is answered even when its CmdSN is outside the window (it is usually
        // immediate anyway); ExpCmdSN still advances past it.
        self.consume_cmd_sn(req.immediate, req.cmd_sn);
        let pdu = LogoutResponse {
            response: LogoutResponseCode::SUCCESS,
            itt: req.itt,
            stat_sn: self.advance_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            time2wait: self.shared.config.default_time2wait,
            time2retain: 0,
        };
        self.send(Pdu::LogoutResponse(pdu));
        self.close();
    }

    /// Takes the rules that act on a whole connection: silence, close-after, async events.
    fn take_connection_rules(&mut self) {
        if self.params.discovery || !self.shared.script(|s| s.has_idle_work()) {
            return;
        }
        if self.shared.script(|s| s.take_silent()) {
            self.silent = true;
            self.out.clear();
            return;
        }
        if let Some(n) = self.shared.script(|s| s.take_close_after()) {
            self.close_after = Some(n);
        }
        if let Some(rule) = self.shared.script(|s| s.take_async()) {
            self.send_async(rule);
        }
    }

    fn count_down_close(&mut self) {
        match self.close_after {
            Some(0 | 1) => self.close(),
            Some(n) => self.close_after = Some(n - 1),
            None => {}
        }
    }

    fn send_async(&mut self, rule: Rule) {
        let Rule::Async {
            event,
            parameter1,
            parameter2,
            parameter3,
            sense,
        } = rule
        else {
            return;
        };
        let lun = if event == AsyncEvent::SCSI_EVENT {
            1
        } else {
            0
        };
        let pdu = AsyncMessage {
            lun: Lun::from_number(lun),
            stat_sn: self.advance_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            event,
            vendor_code: 0,
            parameter1,
            parameter2,
            parameter3,
            data: sense.map(pages::sense_segment).unwrap_or_default(),
        };
        self.shared.count(|c| c.async_messages += 1);
        self.send(Pdu::AsyncMessage(pdu));
    }

    /// Sends a Reject carrying `bhs` (RFC 7143 §11.17); it advances StatSN.
    pub(super) fn reject(&mut self, bhs: &[u8; BHS_LEN], reason: RejectReason) {
        let pdu = Reject {
            reason,
            stat_sn: self.advance_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data_sn_or_r2t_sn: 0,
            data: Bytes::copy_from_slice(bhs),
        };
        self.shared.count(|c| c.rejects += 1);
        self.send(Pdu::Reject(pdu));
    }

    /// A NOP-In that is not an answer: a ping (`ttt` valid) or a window update.
    fn send_nop_in(&mut self, itt: u32, ttt: u32) {
        let pdu = NopIn {
            lun: Lun::default(),
            itt,
            ttt,
            stat_sn: self.stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data: Bytes::new(),
        };
        self.shared.count(|c| c.nop_ins += 1);
        self.send(Pdu::NopIn(pdu));
    }

    /// Checks a command's CmdSN against the window and advances ExpCmdSN; `false` when the
    /// command lies outside the window and must be dropped.
    pub(super) fn consume_cmd_sn(&mut self, immediate: bool, cmd_sn: u32) -> bool {
        if immediate {
            return true;
        }
        let sn = Sn(cmd_sn);
        let (exp, max) = (self.exp_cmd_sn, self.max_cmd_sn());
        if !sn.within(Sn(exp), Sn(max)) {
            return false;
        }
        self.exp_cmd_sn = cmd_sn.wrapping_add(1);
        true
    }

    /// Advances ExpCmdSN past a rejected command PDU.
    fn consume_cmd_sn_of(&mut self, pdu: &Pdu) {
        let (immediate, cmd_sn) = match pdu {
            Pdu::ScsiCommand(p) => (p.immediate, p.cmd_sn),
            Pdu::NopOut(p) if p.itt != RESERVED_TAG => (p.immediate, p.cmd_sn),
            Pdu::TaskMgmtRequest(p) => (p.immediate, p.cmd_sn),
            Pdu::TextRequest(p) => (p.immediate, p.cmd_sn),
            Pdu::LogoutRequest(p) => (p.immediate, p.cmd_sn),
            _ => return,
        };
        self.consume_cmd_sn(immediate, cmd_sn);
    }

    pub(super) fn max_cmd_sn(&self) -> u32 {
        let window = self.shared.window();
        let wanted = self.exp_cmd_sn.wrapping_add(window).wrapping_sub(1);
        let max = match self.granted.get() {
            Some(granted) if Sn(granted).gt(Sn(wanted)) => granted,
            _ => wanted,
        };
        self.granted.set(Some(max));
        max
    }

    /// The StatSN for a status-carrying PDU; the next one is one higher.
    pub(super) fn advance_stat_sn(&mut self) -> u32 {
        let sn = self.stat_sn;
        self.stat_sn = sn.wrapping_add(1);
        sn
    }

    pub(super) fn fresh_ttt(&mut self) -> u32 {
        self.next_ttt = match self.next_ttt.wrapping_add(1) {
            RESERVED_TAG => 1,
            t => t,
        };
        self.next_ttt
    }

    /// Queues a full-feature PDU (nothing while silent).
    pub(super) fn send(&mut self, pdu: Pdu) {
        self.send_with(pdu, false);
    }

    pub(super) fn send_with(&mut self, pdu: Pdu, corrupt_data_digest: bool) {
        if self.silent {
            return;
        }
        self.out.push_back(Transmit::Pdu(pdu, corrupt_data_digest));
    }

    fn close(&mut self) {
        self.phase = Phase::Closed;
        self.out.push_back(Transmit::Close);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}
