//! One SCSI command at a time over a logged-in session (RFC 7143 §3.2.2 sequencing, §11.3,
//! §11.4, §11.7, §11.18/§11.19): the minimal full-feature phase that discovery of LUNs and
//! `sanshim ls` need. Sans-IO: [`SingleSession::submit`] and [`SingleSession::handle_pdu`] in,
//! [`SingleSession::poll_transmit`] and [`SingleSession::poll_completion`] out.
//!
//! Only reads and commands without data are supported here; the concurrent engine with writes,
//! R2T and recovery is a separate state machine.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::scsi::Sense;
use crate::wire::{
    AsyncEvent, DataIn, LogoutReason, LogoutRequest, Lun, NopIn, NopOut, Pdu, ScsiCommand,
    ScsiResponse, ScsiStatus, Sn, TaskAttr,
};

/// The reserved task tag (RFC 7143 §11.18.5): "no task".
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// Sequence numbers handed over by login (RFC 7143 §11.13).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Sequence {
    /// The CmdSN of the next non-immediate command.
    pub cmd_sn: u32,
    /// The StatSN we expect next.
    pub exp_stat_sn: u32,
    /// The highest CmdSN the target accepts.
    pub max_cmd_sn: u32,
}

/// A finished command.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Completion {
    /// SCSI status.
    pub status: ScsiStatus,
    /// Data the target returned (at most the allocation length).
    pub data: Bytes,
    /// Decoded sense data, when the target sent some (CHECK CONDITION).
    pub sense: Option<Sense>,
    /// The target's iSCSI response code (0 = command completed at target).
    pub response: u8,
}

/// What the target did wrong during a command.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SingleError {
    /// A command is already running.
    #[error("a command is already in flight")]
    Busy,
    /// The target's PDU breaks the protocol.
    #[error("target protocol error: {0}")]
    PeerMisbehaved(&'static str),
    /// The target rejected our PDU.
    #[error("target rejected our PDU (reason {reason:?})")]
    Rejected {
        /// Reject reason code (RFC 7143 §11.17.1).
        reason: crate::wire::RejectReason,
    },
    /// The target asked us to log out or dropped the session.
    #[error("target ended the session (async event {0:?})")]
    SessionEnded(AsyncEvent),
    /// The command window stayed closed.
    #[error("command window closed (CmdSN {cmd_sn}, MaxCmdSN {max_cmd_sn})")]
    WindowClosed {
        /// Our next CmdSN.
        cmd_sn: u32,
        /// The target's MaxCmdSN.
        max_cmd_sn: u32,
    },
}

#[derive(Debug)]
struct InFlight {
    itt: u32,
    buf: BytesMut,
    expected: u32,
    next_data_sn: u32,
    received: u32,
}

/// The sequencing state of a session that runs one command at a time.
#[derive(Debug)]
pub struct SingleSession {
    seq: Sequence,
    exp_cmd_sn: u32,
    next_itt: u32,
    in_flight: Option<InFlight>,
    transmit: VecDeque<Pdu>,
    done: Option<Result<Completion, SingleError>>,
    max_recv: u32,
}

impl SingleSession {
    /// A session state starting from the numbers the final login response gave;
    /// `max_recv_data_segment_length` is what we declared (bounds Data-In segments).
    pub fn new(seq: Sequence, max_recv_data_segment_length: u32) -> Self {
        SingleSession {
            seq,
            exp_cmd_sn: seq.cmd_sn,
            next_itt: 1,
            in_flight: None,
            transmit: VecDeque::new(),
            done: None,
            max_recv: max_recv_data_segment_length,
        }
    }

    /// Queues a command reading at most `alloc_len` bytes (0 for none) from `lun`.
    ///
    /// # Errors
    /// [`SingleError::Busy`] while another command runs, [`SingleError::WindowClosed`] when
    /// the target's window does not admit a command.
    pub fn submit(&mut self, lun: Lun, cdb: [u8; 16], alloc_len: u32) -> Result<(), SingleError> {
        if self.in_flight.is_some() {
            return Err(SingleError::Busy);
        }
        if Sn(self.seq.cmd_sn).gt(Sn(self.seq.max_cmd_sn)) {
            return Err(SingleError::WindowClosed {
                cmd_sn: self.seq.cmd_sn,
                max_cmd_sn: self.seq.max_cmd_sn,
            });
        }
        let itt = self.allocate_itt();
        self.transmit.push_back(Pdu::ScsiCommand(ScsiCommand {
            immediate: false,
            final_: true,
            read: alloc_len > 0,
            write: false,
            attr: TaskAttr::SIMPLE,
            lun,
            itt,
            expected_data_transfer_length: alloc_len,
            cmd_sn: self.seq.cmd_sn,
            exp_stat_sn: self.seq.exp_stat_sn,
            cdb,
            extended_cdb: None,
            bidi_read_length: None,
            data: Bytes::new(),
        }));
        self.seq.cmd_sn = self.seq.cmd_sn.wrapping_add(1);
        let cap = usize::try_from(alloc_len)
            .unwrap_or(usize::MAX)
            .min(1 << 20);
        self.in_flight = Some(InFlight {
            itt,
            buf: BytesMut::with_capacity(cap),
            expected: alloc_len,
            next_data_sn: 0,
            received: 0,
        });
        self.done = None;
        Ok(())
    }

    /// The next PDU to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Pdu> {
        self.transmit.pop_front()
    }

    /// The result of the command, once it finished.
    pub fn poll_completion(&mut self) -> Option<Result<Completion, SingleError>> {
        self.done.take()
    }

    /// Whether a command is running.
    pub fn is_busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The MaxRecvDataSegmentLength we declared.
    pub fn max_recv_data_segment_length(&self) -> u32 {
        self.max_recv
    }

    /// The current sequence numbers (for logout and reinstatement).
    pub fn sequence(&self) -> Sequence {
        self.seq
    }

    /// Queues a Logout Request closing the session (RFC 7143 §11.14); returns its ITT.
    pub fn logout(&mut self, cid: u16) -> u32 {
        let itt = self.allocate_itt();
        self.transmit.push_back(Pdu::LogoutRequest(LogoutRequest {
            immediate: true,
            reason: LogoutReason::CLOSE_SESSION,
            itt,
            cid,
            cmd_sn: self.seq.cmd_sn,
            exp_stat_sn: self.seq.exp_stat_sn,
        }));
        itt
    }

    /// Consumes a PDU from the target.
    ///
    /// Protocol errors end the running command with an error and are also returned, so the
    /// driver can drop the connection.
    ///
    /// # Errors
    /// [`SingleError`] for a PDU that breaks the protocol.
    pub fn handle_pdu(&mut self, pdu: Pdu) -> Result<(), SingleError> {
        let result = self.dispatch(pdu);
        if let Err(e) = &result {
            if self.in_flight.take().is_some() {
                self.done = Some(Err(e.clone()));
            }
        }
        result
    }

    fn dispatch(&mut self, pdu: Pdu) -> Result<(), SingleError> {
        match pdu {
            Pdu::DataIn(d) => self.handle_data_in(d),
            Pdu::ScsiResponse(r) => self.handle_response(r),
            Pdu::NopIn(n) => self.handle_nop_in(n),
            Pdu::AsyncMessage(a) => {
                self.update_window(a.exp_cmd_sn, a.max_cmd_sn);
                self.ack_stat_sn(a.stat_sn)?;
                match a.event {
                    AsyncEvent::LOGOUT_REQUEST
                    | AsyncEvent::CONNECTION_DROP
                    | AsyncEvent::SESSION_DROP => Err(SingleError::SessionEnded(a.event)),
                    // SCSI events, renegotiation requests (we keep the values we have: the
                    // target may not change them unasked) and vendor events need no answer
                    // from a session that runs one command at a time.
                    other => {
                        tracing::info!(event = ?other, "target sent an asynchronous message");
                        Ok(())
                    }
                }
            }
            Pdu::Reject(r) => {
                self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
                Err(SingleError::Rejected { reason: r.reason })
            }
            Pdu::LogoutResponse(l) => {
                self.update_window(l.exp_cmd_sn, l.max_cmd_sn);
                self.ack_stat_sn(l.stat_sn)
            }
            _ => Err(SingleError::PeerMisbehaved(
                "unexpected PDU in full feature phase",
            )),
        }
    }

    fn handle_data_in(&mut self, d: DataIn) -> Result<(), SingleError> {
        self.update_window(d.exp_cmd_sn, d.max_cmd_sn);
        let cmd = self.in_flight.as_mut().ok_or(SingleError::PeerMisbehaved(
            "Data-In without a command in flight",
        ))?;
        if d.itt != cmd.itt {
            return Err(SingleError::PeerMisbehaved(
                "Data-In for an unknown task tag",
            ));
        }
        if d.data_sn != cmd.next_data_sn {
            return Err(SingleError::PeerMisbehaved("Data-In out of DataSN order"));
        }
        if d.buffer_offset != cmd.received {
            return Err(SingleError::PeerMisbehaved(
                "Data-In at an unexpected buffer offset",
            ));
        }
        let len = u32::try_from(d.data.len()).unwrap_or(u32::MAX);
        if len > self.max_recv {
            return Err(SingleError::PeerMisbehaved(
                "Data-In segment above our limit",
            ));
        }
        let end = cmd.received.checked_add(len).filter(|&e| e <= cmd.expected);
        let Some(end) = end else {
            return Err(SingleError::PeerMisbehaved(
                "Data-In beyond the expected length",
            ));
        };
        cmd.buf.extend_from_slice(&d.data);
        cmd.received = end;
        cmd.next_data_sn = cmd.next_data_sn.wrapping_add(1);
        if d.status_present {
            if !d.final_ {
                return Err(SingleError::PeerMisbehaved(
                    "Data-In with status but no F bit",
                ));
            }
            self.ack_stat_sn(d.stat_sn)?;
            self.finish(d.status, None, 0);
        }
        Ok(())
    }

    fn handle_response(&mut self, r: ScsiResponse) -> Result<(), SingleError> {
        self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
        let itt = self.in_flight.as_ref().map(|c| c.itt);
        if itt != Some(r.itt) {
            return Err(SingleError::PeerMisbehaved(
                "SCSI Response for an unknown task tag",
            ));
        }
        self.ack_stat_sn(r.stat_sn)?;
        // Sense data that cannot be decoded is dropped: the status still tells the caller
        // the command failed.
        let sense = Sense::from_response_data(&r.data).ok().flatten();
        self.finish(r.status, sense, r.response);
        Ok(())
    }

    fn handle_nop_in(&mut self, n: NopIn) -> Result<(), SingleError> {
        self.update_window(n.exp_cmd_sn, n.max_cmd_sn);
        if n.ttt != RESERVED_TAG {
            // A target ping: answer with the same TTT and LUN, and the ping's data
            // (RFC 7143 §11.18.6); it carries no StatSN to acknowledge.
            self.transmit.push_back(Pdu::NopOut(NopOut {
                immediate: true,
                lun: n.lun,
                itt: RESERVED_TAG,
                ttt: n.ttt,
                cmd_sn: self.seq.cmd_sn,
                exp_stat_sn: self.seq.exp_stat_sn,
                data: n.data,
            }));
            return Ok(());
        }
        if n.itt == RESERVED_TAG {
            return Err(SingleError::PeerMisbehaved(
                "NOP-In with both tags reserved",
            ));
        }
        self.ack_stat_sn(n.stat_sn)
    }

    fn finish(&mut self, status: ScsiStatus, sense: Option<Sense>, response: u8) {
        if let Some(cmd) = self.in_flight.take() {
            self.done = Some(Ok(Completion {
                status,
                data: cmd.buf.freeze(),
                sense,
                response,
            }));
        }
    }

    fn ack_stat_sn(&mut self, stat_sn: u32) -> Result<(), SingleError> {
        if stat_sn != self.seq.exp_stat_sn {
            // ERL 0 has no way to recover a gap in status numbering.
            return Err(SingleError::PeerMisbehaved("StatSN out of sequence"));
        }
        self.seq.exp_stat_sn = stat_sn.wrapping_add(1);
        Ok(())
    }

    fn update_window(&mut self, exp_cmd_sn: u32, max_cmd_sn: u32) {
        // RFC 7143 §3.2.2.1: ignore values where MaxCmdSN < ExpCmdSN - 1, and values older
        // than what we already have.
        if Sn(max_cmd_sn).lt(Sn(exp_cmd_sn.wrapping_sub(1))) {
            return;
        }
        if Sn(exp_cmd_sn).gt(Sn(self.exp_cmd_sn)) {
            self.exp_cmd_sn = exp_cmd_sn;
        }
        if Sn(max_cmd_sn).gt(Sn(self.seq.max_cmd_sn)) {
            self.seq.max_cmd_sn = max_cmd_sn;
        }
    }

    fn allocate_itt(&mut self) -> u32 {
        let itt = self.next_itt;
        self.next_itt = match self.next_itt.wrapping_add(1) {
            RESERVED_TAG => 1,
            n => n,
        };
        itt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SingleSession {
        SingleSession::new(
            Sequence {
                cmd_sn: 10,
                exp_stat_sn: 100,
                max_cmd_sn: 20,
            },
            8192,
        )
    }

    fn submit_read(s: &mut SingleSession, len: u32) -> u32 {
        s.submit(Lun::from_number(1), [0x12; 16], len).unwrap();
        match s.poll_transmit() {
            Some(Pdu::ScsiCommand(c)) => {
                assert_eq!(c.cmd_sn, 10);
                assert_eq!(c.exp_stat_sn, 100);
                assert!(c.read && c.final_ && !c.write);
                assert_eq!(c.expected_data_transfer_length, len);
                c.itt
            }
            other => panic!("expected a SCSI Command, got {other:?}"),
        }
    }

    fn data_in(itt: u32, data_sn: u32, offset: u32, data: &[u8], status: bool) -> Pdu {
        Pdu::DataIn(DataIn {
            final_: status,
            status_present: status,
            status: ScsiStatus::GOOD,
            itt,
            ttt: RESERVED_TAG,
            stat_sn: 100,
            exp_cmd_sn: 11,
            max_cmd_sn: 30,
            data_sn,
            buffer_offset: offset,
            data: Bytes::copy_from_slice(data),
            ..DataIn::default()
        })
    }

    #[test]
    fn read_in_two_data_in_pdus_completes_with_the_data() {
        let mut s = session();
        let itt = submit_read(&mut s, 8);
        s.handle_pdu(data_in(itt, 0, 0, b"abcd", false)).unwrap();
        assert!(s.poll_completion().is_none());
        s.handle_pdu(data_in(itt, 1, 4, b"efgh", true)).unwrap();
        let done = s.poll_completion().unwrap().unwrap();
        assert_eq!(&done.data[..], b"abcdefgh");
        assert_eq!(done.status, ScsiStatus::GOOD);
        assert_eq!(
            s.sequence(),
            Sequence {
                cmd_sn: 11,
                exp_stat_sn: 101,
                max_cmd_sn: 30
            }
        );
    }

    #[test]
    fn data_in_protocol_errors_never_deliver_data() {
        type MakePdu = Box<dyn Fn(u32) -> Pdu>;
        let cases: [(&str, MakePdu); 5] = [
            (
                "DataSN gap",
                Box::new(|itt| data_in(itt, 1, 0, b"abcd", true)),
            ),
            (
                "offset gap",
                Box::new(|itt| data_in(itt, 0, 4, b"abcd", true)),
            ),
            (
                "past the end",
                Box::new(|itt| data_in(itt, 0, 0, b"abcdefghi", true)),
            ),
            (
                "unknown ITT",
                Box::new(|itt| data_in(itt + 1, 0, 0, b"abcd", true)),
            ),
            (
                "StatSN gap",
                Box::new(|itt| {
                    let Pdu::DataIn(mut d) = data_in(itt, 0, 0, b"abcd", true) else {
                        unreachable!()
                    };
                    d.stat_sn = 105;
                    Pdu::DataIn(d)
                }),
            ),
        ];
        for (what, make) in cases {
            let mut s = session();
            let itt = submit_read(&mut s, 8);
            assert!(s.handle_pdu(make(itt)).is_err(), "{what} accepted");
            match s.poll_completion() {
                Some(Err(SingleError::PeerMisbehaved(_))) => {}
                other => panic!("{what}: expected a protocol error, got {other:?}"),
            }
            assert!(!s.is_busy());
        }
    }

    #[test]
    fn target_ping_is_answered_with_its_tag_and_data() {
        let mut s = session();
        let ping = Pdu::NopIn(NopIn {
            lun: Lun::from_number(0),
            itt: RESERVED_TAG,
            ttt: 0x55,
            stat_sn: 100,
            exp_cmd_sn: 10,
            max_cmd_sn: 20,
            data: Bytes::from_static(b"ping"),
        });
        s.handle_pdu(ping).unwrap();
        match s.poll_transmit() {
            Some(Pdu::NopOut(n)) => {
                assert_eq!((n.itt, n.ttt, n.immediate), (RESERVED_TAG, 0x55, true));
                assert_eq!(&n.data[..], b"ping");
            }
            other => panic!("expected a NOP-Out, got {other:?}"),
        }
        assert_eq!(
            s.sequence().exp_stat_sn,
            100,
            "a ping does not advance StatSN"
        );
    }

    #[test]
    fn closed_window_refuses_a_command() {
        let mut s = SingleSession::new(
            Sequence {
                cmd_sn: 21,
                exp_stat_sn: 1,
                max_cmd_sn: 20,
            },
            8192,
        );
        assert_eq!(
            s.submit(Lun::from_number(0), [0; 16], 0),
            Err(SingleError::WindowClosed {
                cmd_sn: 21,
                max_cmd_sn: 20
            })
        );
    }

    #[test]
    fn logout_request_is_immediate_and_closes_the_session() {
        let mut s = session();
        let itt = s.logout(0);
        match s.poll_transmit() {
            Some(Pdu::LogoutRequest(l)) => {
                assert_eq!(l.itt, itt);
                assert!(l.immediate);
                assert_eq!(l.reason, LogoutReason::CLOSE_SESSION);
                assert_eq!((l.cmd_sn, l.exp_stat_sn), (10, 100));
            }
            other => panic!("expected a Logout Request, got {other:?}"),
        }
    }
}
