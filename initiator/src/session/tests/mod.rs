//! Deterministic simulation of [`Session`] against a scripted fake target with a virtual
//! clock (STYLE rule 11b).

mod defects;
mod sim;
mod text;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::{
    Command, Event, Outcome, Response, Session, SessionConfig, SessionStart, TaskError, TaskId,
    Transfer,
};
use crate::login::Negotiated;
use crate::wire::{
    AsyncEvent, AsyncMessage, DataIn, Lun, NopIn, Pdu, R2t, RESERVED_TAG, Reject, RejectReason,
    ScsiCommand, ScsiResponse, ScsiStatus, TaskMgmtResponse, TextResponse, TmResponse,
};

/// A fake target: it only numbers statuses and grants the window; each test scripts what
/// it sends.
struct Target {
    stat_sn: u32,
    exp_cmd_sn: u32,
    window: u32,
}

impl Target {
    fn new() -> Target {
        Target {
            stat_sn: 100,
            exp_cmd_sn: 1,
            window: 32,
        }
    }

    fn max_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn.wrapping_add(self.window).wrapping_sub(1)
    }

    fn start(&self, negotiated: Negotiated) -> SessionStart {
        SessionStart {
            cmd_sn: self.exp_cmd_sn,
            exp_stat_sn: self.stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            negotiated,
        }
    }

    /// Accepts a command: ExpCmdSN moves past it.
    fn accept(&mut self, cmd: &ScsiCommand) {
        assert_eq!(
            cmd.cmd_sn, self.exp_cmd_sn,
            "commands arrive in CmdSN order"
        );
        self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
    }

    fn next_stat_sn(&mut self) -> u32 {
        let sn = self.stat_sn;
        self.stat_sn = sn.wrapping_add(1);
        sn
    }

    fn data_in(&mut self, itt: u32, data_sn: u32, offset: u32, data: &[u8], last: bool) -> Pdu {
        Pdu::DataIn(DataIn {
            final_: last,
            status_present: last,
            status: ScsiStatus::GOOD,
            itt,
            ttt: RESERVED_TAG,
            stat_sn: if last { self.next_stat_sn() } else { 0 },
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data_sn,
            buffer_offset: offset,
            data: Bytes::copy_from_slice(data),
            ..DataIn::default()
        })
    }

    fn response(&mut self, itt: u32, status: ScsiStatus) -> Pdu {
        Pdu::ScsiResponse(ScsiResponse {
            status,
            itt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            ..ScsiResponse::default()
        })
    }

    fn r2t(&self, itt: u32, r2t_sn: u32, offset: u32, len: u32) -> Pdu {
        Pdu::R2t(R2t {
            itt,
            ttt: 0x1000 + r2t_sn,
            stat_sn: self.stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            r2t_sn,
            buffer_offset: offset,
            desired_data_transfer_length: len,
            ..R2t::default()
        })
    }

    /// A Reject of `rejected` (its BHS in the data segment), with a StatSN of its own.
    fn reject(&mut self, reason: RejectReason, rejected: &Pdu) -> Pdu {
        let (bhs, _) = rejected.encoded_header();
        Pdu::Reject(Reject {
            reason,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data_sn_or_r2t_sn: 0,
            data: Bytes::copy_from_slice(&bhs),
        })
    }

    /// CHECK CONDITION with fixed-format sense `key/asc/ascq` (RFC 7143 §11.4.7.2).
    fn check_condition(&mut self, itt: u32, key: u8, asc: u8, ascq: u8) -> Pdu {
        let mut sense = vec![0u8; 2 + 18];
        sense[1] = 18;
        sense[2] = 0x70;
        sense[4] = key;
        sense[9] = 10;
        sense[14] = asc;
        sense[15] = ascq;
        Pdu::ScsiResponse(ScsiResponse {
            status: ScsiStatus::CHECK_CONDITION,
            itt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data: Bytes::from(sense),
            ..ScsiResponse::default()
        })
    }

    /// An Asynchronous Message with `event` and Parameter3.
    fn async_message(&mut self, event: AsyncEvent, parameter3: u16) -> Pdu {
        Pdu::AsyncMessage(AsyncMessage {
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            event,
            parameter3,
            ..AsyncMessage::default()
        })
    }

    /// A Text Response answering ITT `itt`.
    fn text_response(&mut self, itt: u32, data: &[u8], final_: bool, cont: bool, ttt: u32) -> Pdu {
        Pdu::TextResponse(TextResponse {
            final_,
            cont,
            itt,
            ttt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data: Bytes::copy_from_slice(data),
            ..TextResponse::default()
        })
    }

    /// A task management response.
    fn tmf_response(&mut self, itt: u32, response: TmResponse) -> Pdu {
        Pdu::TaskMgmtResponse(TaskMgmtResponse {
            response,
            itt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
        })
    }

    fn window_update(&self) -> Pdu {
        Pdu::NopIn(NopIn {
            itt: RESERVED_TAG,
            ttt: RESERVED_TAG,
            stat_sn: self.stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            ..NopIn::default()
        })
    }
}

/// A session, its fake target and a virtual clock.
struct Sim {
    session: Session,
    target: Target,
    now: Instant,
    negotiated: Negotiated,
}

impl Sim {
    fn new(config: SessionConfig, negotiated: Negotiated) -> Sim {
        let now = Instant::now();
        let target = Target::new();
        let mut session = Session::new(config, now);
        session.handle_connected(&target.start(negotiated.clone()), now);
        Sim {
            session,
            target,
            now,
            negotiated,
        }
    }

    fn default() -> Sim {
        Sim::new(SessionConfig::default(), negotiated(8192, true, false))
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.session.handle_timeout(self.now);
    }

    /// Advances the clock to the session's next timeout.
    fn run_to_timeout(&mut self) {
        let at = self.session.poll_timeout().expect("a timer is armed");
        self.now = self.now.max(at);
        self.session.handle_timeout(self.now);
    }

    fn feed(&mut self, pdu: Pdu) {
        self.session.handle_pdu(pdu, self.now);
    }

    fn sent(&mut self) -> Vec<Pdu> {
        std::iter::from_fn(|| self.session.poll_transmit()).collect()
    }

    /// The commands sent, accepted by the target in order.
    fn commands(&mut self) -> Vec<ScsiCommand> {
        let cmds: Vec<ScsiCommand> = self
            .sent()
            .into_iter()
            .filter_map(|p| match p {
                Pdu::ScsiCommand(c) => Some(c),
                _ => None,
            })
            .collect();
        for c in &cmds {
            self.target.accept(c);
        }
        cmds
    }

    fn read(&mut self, len: usize) -> TaskId {
        let cmd = Command::new(
            Lun::from_number(1),
            [0x88; 16],
            Transfer::Read(BytesMut::zeroed(len)),
        );
        self.session.submit(cmd, self.now).unwrap()
    }

    fn write(&mut self, data: &[u8]) -> TaskId {
        let cmd = Command::new(
            Lun::from_number(1),
            [0x8a; 16],
            Transfer::Write(Bytes::copy_from_slice(data)),
        );
        self.session.submit(cmd, self.now).unwrap()
    }

    /// The SCSI commands that finished.
    /// Drains what the session sent, as the target sees it: pings are answered, commands
    /// accepted; returns everything but the pings.
    fn exchange(&mut self) -> Vec<Pdu> {
        let mut rest = Vec::new();
        for pdu in self.sent() {
            match pdu {
                Pdu::NopOut(ping) if ping.itt != RESERVED_TAG => {
                    let answer = Pdu::NopIn(NopIn {
                        itt: ping.itt,
                        ttt: RESERVED_TAG,
                        stat_sn: self.next_stat_sn(),
                        exp_cmd_sn: self.target.exp_cmd_sn,
                        max_cmd_sn: self.target.max_cmd_sn(),
                        ..NopIn::default()
                    });
                    self.feed(answer);
                }
                Pdu::ScsiCommand(c) => {
                    self.target.accept(&c);
                    rest.push(Pdu::ScsiCommand(c));
                }
                other => rest.push(other),
            }
        }
        rest
    }

    fn next_stat_sn(&mut self) -> u32 {
        self.target.next_stat_sn()
    }

    /// The PDUs of one kind that were sent.
    fn sent_of<T>(&mut self, pick: impl Fn(Pdu) -> Option<T>) -> Vec<T> {
        self.sent().into_iter().filter_map(pick).collect()
    }

    fn completions(&mut self) -> Vec<(TaskId, Result<Response, TaskError>)> {
        self.outcomes()
            .into_iter()
            .map(|(id, r)| match r {
                Ok(Outcome::Scsi(response)) => (id, Ok(response)),
                Ok(other) => panic!("not a SCSI outcome: {other:?}"),
                Err(e) => (id, Err(e)),
            })
            .collect()
    }

    /// Every request that finished.
    fn outcomes(&mut self) -> Vec<(TaskId, Result<Outcome, TaskError>)> {
        std::iter::from_fn(|| self.session.poll_completion()).collect()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }

    /// Reconnects as after a successful re-login (a new target-side session).
    fn reconnect(&mut self) {
        self.target.stat_sn = 500;
        self.target.exp_cmd_sn = 77;
        let start = self.target.start(self.negotiated.clone());
        self.session.handle_connected(&start, self.now);
    }
}

fn only_ok(done: Vec<(TaskId, Result<Response, TaskError>)>) -> Vec<(TaskId, Response)> {
    done.into_iter().map(|(id, r)| (id, r.unwrap())).collect()
}

fn negotiated(max_xmit: u32, immediate_data: bool, initial_r2t: bool) -> Negotiated {
    Negotiated {
        max_xmit_data_segment_length: max_xmit,
        max_recv_data_segment_length: 262_144,
        first_burst_length: 65536,
        max_burst_length: 262_144,
        immediate_data,
        initial_r2t,
        default_time2wait: 2,
        ..Negotiated::default()
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// The next command deadline is kept as a lower bound, not found by a walk over every command
/// in flight: after the oldest command finishes, the session may wake early, but that wake
/// aborts nothing, and it then reports the true deadline of the command still running, which
/// does time out when it is due.
#[test]
fn a_stale_command_deadline_wakes_early_and_aborts_nothing() {
    let config = SessionConfig {
        noop_interval: Duration::ZERO,
        ..SessionConfig::default()
    };
    let timeout = config.command_timeout;
    let mut sim = Sim::new(config, negotiated(8192, true, false));
    let first = sim.read(512);
    let first_cmd = sim.commands();
    let start = sim.now;
    sim.now += Duration::from_secs(10);
    let second = sim.read(512);
    let _ = sim.commands();
    assert_eq!(sim.session.poll_timeout(), Some(start + timeout));

    let done = sim.target.data_in(first_cmd[0].itt, 0, 0, &[7; 512], true);
    sim.feed(done);
    assert_eq!(only_ok(sim.completions())[0].0, first);

    // Early wake at the first command's old deadline: nothing is aborted.
    sim.run_to_timeout();
    assert_eq!(sim.now, start + timeout);
    assert!(sim.sent().is_empty(), "an early wake sent something");
    assert_eq!(
        sim.session.poll_timeout(),
        Some(start + Duration::from_secs(10) + timeout)
    );

    // At the second command's own deadline, it is aborted.
    sim.run_to_timeout();
    let aborts: Vec<_> = sim.sent_of(|p| match p {
        Pdu::TaskMgmtRequest(t) => Some(t),
        _ => None,
    });
    assert_eq!(aborts.len(), 1, "the running command was not aborted");
    assert_eq!(sim.session.outstanding(), 1);
    let _ = second;
}
