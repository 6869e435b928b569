//! What a [`crate::FakeTarget`] has seen and done, for tests to assert on.

use std::collections::BTreeMap;

use sanshim_initiator::wire::ScsiStatus;

/// One step of what the target did, in the order it happened, over every connection
/// ([`crate::FakeTarget::events`]): for tests that assert an order (a write answered before
/// the SYNCHRONIZE CACHE arrived, a Logout after it).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Event {
    /// A SCSI command within the window reached the target (before any Data-Out of it).
    Command {
        /// CDB byte 0.
        opcode: u8,
    },
    /// The target answered a SCSI command with this status (a held command: when released).
    Status {
        /// CDB byte 0.
        opcode: u8,
        /// The status sent.
        status: ScsiStatus,
    },
    /// A Logout Request arrived.
    Logout,
}

/// A snapshot of a target's counters ([`crate::FakeTarget::counters`]). All counts are
/// totals since the target started, over every connection.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Counters {
    /// TCP connections accepted.
    pub connections: u64,
    /// Logins that reached full feature phase in a normal session.
    pub logins_normal: u64,
    /// Logins that reached full feature phase in a discovery session.
    pub logins_discovery: u64,
    /// Logins answered with a failure status.
    pub login_failures: u64,
    /// SCSI Command PDUs received, by SCSI operation code (CDB byte 0).
    pub commands: BTreeMap<u8, u64>,
    /// SCSI commands dropped because their CmdSN lay outside the command window.
    pub out_of_window: u64,
    /// Data-Out PDUs received.
    pub data_out: u64,
    /// R2Ts sent.
    pub r2ts: u64,
    /// Data-In PDUs sent.
    pub data_in: u64,
    /// NOP-Out PDUs received.
    pub nop_outs: u64,
    /// NOP-In PDUs sent (echoes, pings and window updates).
    pub nop_ins: u64,
    /// NOP-Outs that answered one of the target's own pings.
    pub ping_replies: u64,
    /// Task management requests received, by function code.
    pub task_mgmt: BTreeMap<u8, u64>,
    /// Text Requests received.
    pub text_requests: u64,
    /// Logout Requests received.
    pub logouts: u64,
    /// Rejects sent (scripted or for malformed PDUs).
    pub rejects: u64,
    /// Asynchronous Messages sent.
    pub async_messages: u64,
    /// Scripted rules fired (each firing of a counted rule counts once).
    pub faults_fired: u64,
    /// Deferred writes ([`crate::Rule::Defer`]) carried out after their connection was gone.
    pub ghost_writes: u64,
    /// Deferred writes a LOGICAL UNIT RESET cancelled before they were carried out.
    pub deferred_cancelled: u64,
    /// Reset unit attentions (29h/03h) a LOGICAL UNIT RESET left on other I_T nexuses.
    pub reset_attentions_set: u64,
    /// Of those, how many a command has met (and so reported).
    pub reset_attentions_reported: u64,
    /// Bytes returned by READ commands, by LUN.
    pub bytes_read: BTreeMap<u64, u64>,
    /// Bytes stored by WRITE and WRITE SAME commands, by LUN.
    pub bytes_written: BTreeMap<u64, u64>,
}

impl Counters {
    /// SCSI commands received with this operation code.
    pub fn commands_of(&self, opcode: u8) -> u64 {
        self.commands.get(&opcode).copied().unwrap_or(0)
    }

    /// Task management requests received with this function code.
    pub fn task_mgmt_of(&self, function: u8) -> u64 {
        self.task_mgmt.get(&function).copied().unwrap_or(0)
    }

    /// All SCSI commands received.
    pub fn total_commands(&self) -> u64 {
        self.commands.values().sum()
    }

    /// Bytes read from LUN 1.
    pub fn lun1_bytes_read(&self) -> u64 {
        self.bytes_read.get(&1).copied().unwrap_or(0)
    }

    /// Bytes written to LUN 1.
    pub fn lun1_bytes_written(&self) -> u64 {
        self.bytes_written.get(&1).copied().unwrap_or(0)
    }
}
