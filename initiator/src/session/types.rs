//! What goes into and comes out of a [`super::Session`]: commands, their outcomes, the
//! session's configuration and the events the driver acts on.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::login::Negotiated;
use crate::scsi::{RetryPolicy, Sense};
use crate::wire::{
    DecodeError, Lun, RejectReason, ScsiStatus, TaskAttr, TextError, TmFunction, TmResponse,
};

/// A handle for a submitted command, stable across re-issues (the ITT changes, this does not).
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct TaskId(pub u64);

/// The data a command moves.
#[derive(Clone, Debug)]
pub enum Transfer {
    /// No data.
    None,
    /// Read into this buffer: its length is the Expected Data Transfer Length. The buffer
    /// comes back in [`Response::data`].
    Read(BytesMut),
    /// Write these bytes.
    Write(Bytes),
}

impl Transfer {
    /// The Expected Data Transfer Length.
    pub fn len(&self) -> usize {
        match self {
            Transfer::None => 0,
            Transfer::Read(b) => b.len(),
            Transfer::Write(b) => b.len(),
        }
    }

    /// Whether no data moves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A SCSI command to run.
#[derive(Clone, Debug)]
pub struct Command {
    /// The logical unit.
    pub lun: Lun,
    /// The CDB, zero padded to 16 bytes.
    pub cdb: [u8; 16],
    /// The data it moves.
    pub transfer: Transfer,
    /// Task attribute (SIMPLE for ordinary I/O).
    pub attr: TaskAttr,
    /// Which SCSI outcomes the session retries before handing them over.
    pub retry: RetryPolicy,
}

impl Command {
    /// A SIMPLE command on `lun` with the standard retry policy.
    pub fn new(lun: Lun, cdb: [u8; 16], transfer: Transfer) -> Command {
        Command {
            lun,
            cdb,
            transfer,
            attr: TaskAttr::SIMPLE,
            retry: RetryPolicy::STANDARD,
        }
    }

    /// The same command with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Command {
        self.retry = retry;
        self
    }
}

/// A task management function the owner asks for (RFC 7143 §11.5).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct TaskManagement {
    /// The function (LOGICAL UNIT RESET, ABORT TASK SET, ...).
    pub function: TmFunction,
    /// The logical unit it acts on.
    pub lun: Lun,
    /// For ABORT TASK: the command to abort.
    pub task: Option<TaskId>,
}

/// What a finished request produced.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// A SCSI command's status and data.
    Scsi(Response),
    /// A text exchange's key=value pairs, in the order the target sent them.
    Text(Vec<(String, String)>),
    /// A task management function's response.
    TaskManagement(TmResponse),
    /// A NOP-Out ping was echoed, with this many bytes of data.
    Pong(usize),
}

/// How a command ended at the target (RFC 7143 §11.4).
#[derive(Clone, Debug)]
pub struct Response {
    /// iSCSI service response: 0 completed at target, otherwise a target failure.
    pub response: u8,
    /// SCSI status.
    pub status: ScsiStatus,
    /// Decoded sense data, when the target sent some.
    pub sense: Option<Sense>,
    /// For reads: the buffer, cut to the bytes the target sent. Empty otherwise.
    pub data: BytesMut,
    /// Residual underflow (bytes not transferred), when the target reported one.
    pub underflow: Option<u32>,
    /// Residual overflow (bytes the target had beyond the expected length).
    pub overflow: Option<u32>,
    /// UNIT ATTENTION conditions met and retried on the way (oldest first), for owners that
    /// act on them (capacity or ALUA state changed, a target reset).
    pub unit_attentions: Vec<Sense>,
}

/// Why a command failed without a SCSI status.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// No working session for longer than the replacement timeout.
    #[error("no working session to the target within the replacement timeout")]
    ReplacementTimeout,
    /// The target rejected the command PDU.
    #[error("the target rejected the command (reason {reason:?})")]
    Rejected {
        /// Reject reason (RFC 7143 §11.17.1).
        reason: RejectReason,
    },
    /// The command was re-issued too many times (connection failures, aborts, TASK ABORTED).
    #[error("command re-issued {0} times without completing")]
    TooManyRetries(u32),
    /// The session was closed by its owner.
    #[error("the session is closed")]
    SessionClosed,
    /// The session refused the request (too large, or an unknown task to abort).
    #[error("request refused: {0}")]
    Refused(SubmitError),
    /// The connection was lost (or there was none) and the session fails fast instead of
    /// re-issuing (a multipath path, [`SessionConfig::fail_fast`]). `in_flight`: the command
    /// had been sent and not answered, so the target may still carry it out; otherwise it
    /// never reached the target.
    #[error("the connection to the target is lost{}", if *in_flight { " with the command in flight" } else { "" })]
    ConnectionLost {
        /// The command may still be carried out by the target.
        in_flight: bool,
    },
    /// A task management request needs a connection, and none is up.
    #[error("no connection to the target to send the request on")]
    NotConnected,
    /// Nothing answered within the command timeout: a command waited that long behind a
    /// closed command window, or a text exchange or task management request went unanswered.
    #[error("the target did not accept or answer the request within the command timeout")]
    Timeout,
    /// A text exchange broke the Text Request/Response protocol or carried malformed text.
    #[error("text exchange failed: {0}")]
    Text(&'static str),
    /// The target's text did not parse.
    #[error("malformed text from the target: {0}")]
    MalformedText(TextError),
}

/// Caller misuse at [`super::Session::submit`].
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The data does not fit the 32-bit Expected Data Transfer Length, or a text request
    /// does not fit the target's MaxRecvDataSegmentLength.
    #[error("request of {0} bytes is too large")]
    TooLarge(usize),
    /// An ABORT TASK names a command that is not running.
    #[error("no such command to abort")]
    NoSuchTask,
    /// The session is closing or closed.
    #[error("the session is closing")]
    Closing,
}

/// Why the session gave up on its connection.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionFailure {
    /// The target closed the TCP connection.
    #[error("the target closed the connection")]
    Closed,
    /// The socket failed.
    #[error("socket error")]
    Io,
    /// The byte stream did not decode (digest, framing, malformed PDU).
    #[error("undecodable PDU: {0}")]
    Decode(DecodeError),
    /// The target broke the protocol.
    #[error("target protocol violation: {0}")]
    PeerMisbehaved(&'static str),
    /// A NOP-Out ping went unanswered.
    #[error("no answer to a NOP-Out ping within the timeout")]
    PingTimeout,
    /// ABORT TASK and LOGICAL UNIT RESET both failed.
    #[error("task management failed: {0}")]
    TaskManagement(&'static str),
    /// The target announced it drops the connection or session (Async Message).
    #[error("the target announced a connection or session drop")]
    TargetDrop,
    /// The target asked us to log out, and we did.
    #[error("logged out at the target's request")]
    TargetLogout,
    /// A new login failed.
    #[error("login failed")]
    Login,
    /// The owner gave the connection up (a multipath path judged dead by its lack of
    /// progress while other paths made progress).
    #[error("dropped by its owner: {0}")]
    Dropped(&'static str),
    /// A Text Request went unanswered, or the target's parameter renegotiation could not be
    /// honoured on this connection.
    #[error("text exchange or renegotiation failed: {0}")]
    Text(&'static str),
}

/// What the driver must do.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Event {
    /// Close the connection (if any) and log in again (same ISID) after `delay`; report the
    /// result with [`super::Session::handle_connected`] or
    /// [`super::Session::handle_login_failed`].
    Reconnect {
        /// Why the old connection ended.
        reason: ConnectionFailure,
        /// How long to wait before connecting.
        delay: Duration,
    },
    /// The session logged out at our request; close the connection.
    LoggedOut,
}

/// Tunables of a session.
#[derive(Clone, Copy, Debug)]
pub struct SessionConfig {
    /// Commands in flight at most (1..=512).
    pub queue_depth: u32,
    /// Idle time after which a NOP-Out ping is sent (zero: never).
    pub noop_interval: Duration,
    /// How long a ping may go unanswered.
    pub noop_timeout: Duration,
    /// How long without a working session before commands fail.
    pub replacement_timeout: Duration,
    /// How long a command may run before it is aborted.
    pub command_timeout: Duration,
    /// How long a task management request may take.
    pub tmf_timeout: Duration,
    /// How many times a command is re-issued (after connection failures, successful aborts,
    /// TASK ABORTED) before it fails.
    pub max_reissues: u32,
    /// How long a close waits for running commands before logging out regardless.
    pub close_timeout: Duration,
    /// Fail commands at once when the connection is lost or down (with
    /// [`TaskError::ConnectionLost`]) instead of re-issuing them on the next connection: for
    /// a path of a multipath device, which re-drives them on another path. The session still
    /// logs in again on its own.
    pub fail_fast: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            queue_depth: 64,
            noop_interval: Duration::from_secs(5),
            noop_timeout: Duration::from_secs(5),
            replacement_timeout: Duration::from_secs(15),
            command_timeout: Duration::from_secs(30),
            tmf_timeout: Duration::from_secs(10),
            max_reissues: 8,
            close_timeout: Duration::from_secs(30),
            fail_fast: false,
        }
    }
}

/// The numbers and parameters a login hands to the full feature phase.
#[derive(Clone, Debug)]
pub struct SessionStart {
    /// The CmdSN of the next non-immediate command.
    pub cmd_sn: u32,
    /// The StatSN expected next.
    pub exp_stat_sn: u32,
    /// ExpCmdSN from the target.
    pub exp_cmd_sn: u32,
    /// MaxCmdSN from the target.
    pub max_cmd_sn: u32,
    /// The negotiated parameters.
    pub negotiated: Negotiated,
}

impl SessionStart {
    /// From a finished login.
    pub fn from_established(e: &crate::login::Established) -> SessionStart {
        SessionStart {
            cmd_sn: e.cmd_sn,
            exp_stat_sn: e.stat_sn.wrapping_add(1),
            exp_cmd_sn: e.exp_cmd_sn,
            max_cmd_sn: e.max_cmd_sn,
            negotiated: e.negotiated.clone(),
        }
    }
}
