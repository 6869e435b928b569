//! An in-memory fake target for the session benches: it accepts commands in CmdSN order,
//! numbers its statuses (StatSN) and keeps the CmdSN window open (ExpCmdSN, MaxCmdSN), which
//! is all a `Session` needs to run commands at full speed. It answers with PDU structs; the
//! data segment of a Data-In is left to the caller, which lands it.

use std::time::Instant;

use bytes::Bytes;
use sanshim_initiator::login::Negotiated;
use sanshim_initiator::session::{Session, SessionConfig, SessionStart};
use sanshim_initiator::wire::{DataIn, RESERVED_TAG, ScsiCommand, ScsiResponse, ScsiStatus};

/// CmdSN window the target grants beyond ExpCmdSN: larger than any bench's queue depth, so
/// the window never closes.
const WINDOW: u32 = 1024;

/// StatSN, ExpCmdSN and MaxCmdSN of the target's end of one connection.
pub struct FakeTarget {
    stat_sn: u32,
    exp_cmd_sn: u32,
}

impl FakeTarget {
    /// A logged-in session with `queue_depth` and the parameters sanshim negotiates with a
    /// target without digests (MaxRecvDataSegmentLength 256 KiB both ways, ImmediateData=Yes,
    /// InitialR2T=No), and its target.
    pub fn connect(queue_depth: u32, digests: bool, now: Instant) -> (Session, FakeTarget) {
        let target = FakeTarget {
            stat_sn: 1000,
            exp_cmd_sn: 77,
        };
        let config = SessionConfig {
            queue_depth,
            ..SessionConfig::default()
        };
        let mut session = Session::new(config, now);
        let negotiated = Negotiated {
            header_digest: digests,
            data_digest: digests,
            max_recv_data_segment_length: 256 << 10,
            max_xmit_data_segment_length: 256 << 10,
            max_burst_length: 1 << 20,
            first_burst_length: 256 << 10,
            initial_r2t: false,
            immediate_data: true,
            ..Negotiated::default()
        };
        let start = SessionStart {
            cmd_sn: target.exp_cmd_sn,
            exp_stat_sn: target.stat_sn,
            exp_cmd_sn: target.exp_cmd_sn,
            max_cmd_sn: target.max_cmd_sn(),
            negotiated,
        };
        session.handle_connected(&start, now);
        (session, target)
    }

    /// Takes a command: it must carry the next CmdSN.
    pub fn accept(&mut self, cmd: &ScsiCommand) {
        if cmd.cmd_sn != self.exp_cmd_sn {
            panic!(
                "CmdSN {} out of order, {} expected",
                cmd.cmd_sn, self.exp_cmd_sn
            );
        }
        self.exp_cmd_sn = self.exp_cmd_sn.wrapping_add(1);
    }

    /// Data-In number `data_sn` of a read, `len` bytes at `offset`; the last one carries
    /// GOOD status. Its data segment is `data` (the caller lands it, or uses it to size the
    /// encoded header).
    pub fn data_in(
        &mut self,
        itt: u32,
        data_sn: u32,
        offset: usize,
        data: Bytes,
        last: bool,
    ) -> DataIn {
        DataIn {
            final_: last,
            status_present: last,
            status: ScsiStatus::GOOD,
            itt,
            ttt: RESERVED_TAG,
            stat_sn: if last { self.next_stat_sn() } else { 0 },
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data_sn,
            buffer_offset: u32::try_from(offset).unwrap_or(u32::MAX),
            data,
            ..DataIn::default()
        }
    }

    /// A SCSI Response with GOOD status.
    pub fn good(&mut self, itt: u32) -> ScsiResponse {
        ScsiResponse {
            status: ScsiStatus::GOOD,
            itt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            ..ScsiResponse::default()
        }
    }

    fn max_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn.wrapping_add(WINDOW - 1)
    }

    fn next_stat_sn(&mut self) -> u32 {
        let sn = self.stat_sn;
        self.stat_sn = sn.wrapping_add(1);
        sn
    }
}
