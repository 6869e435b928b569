//! Driving a [`SingleSession`] over a logged-in connection: one SCSI command at a time, NOP-In
//! pings answered, orderly logout.

use std::time::Duration;

use tracing::debug;

use super::connection::{Connection, RecvError};
use super::login::{LoggedIn, Portal};
use crate::single::{Completion, Sequence, SingleError, SingleSession};
use crate::wire::{Lun, Pdu};

/// Why a command did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The connection broke, timed out or carried garbage.
    #[error("connection to {portal} failed: {source}")]
    Connection {
        /// The portal.
        portal: Portal,
        /// Why.
        source: RecvError,
    },
    /// The target broke the protocol or ended the session.
    #[error("session with {portal}: {source}")]
    Session {
        /// The portal.
        portal: Portal,
        /// Why.
        source: SingleError,
    },
}

/// A logged-in session that runs one command at a time.
#[derive(Debug)]
pub struct SingleClient {
    connection: Connection,
    session: SingleSession,
    portal: Portal,
    cid: u16,
    timeout: Duration,
}

impl SingleClient {
    /// Takes over a logged-in connection; `timeout` bounds each command.
    pub fn new(logged_in: LoggedIn, cid: u16, timeout: Duration) -> Self {
        let e = &logged_in.established;
        let session = SingleSession::new(
            Sequence {
                cmd_sn: e.cmd_sn,
                exp_stat_sn: e.stat_sn.wrapping_add(1),
                max_cmd_sn: e.max_cmd_sn,
            },
            e.negotiated.max_recv_data_segment_length,
        );
        SingleClient {
            connection: logged_in.connection,
            session,
            portal: logged_in.portal,
            cid,
            timeout,
        }
    }

    /// The portal this session runs on.
    pub fn portal(&self) -> &Portal {
        &self.portal
    }

    /// Runs one command on `lun` reading at most `alloc_len` bytes.
    ///
    /// # Errors
    /// [`CommandError`] when the connection or the protocol fails; a SCSI error status is not
    /// an error here but part of the [`Completion`].
    pub async fn execute(
        &mut self,
        lun: Lun,
        cdb: [u8; 16],
        alloc_len: u32,
    ) -> Result<Completion, CommandError> {
        self.session
            .submit(lun, cdb, alloc_len)
            .map_err(|e| self.session_error(e))?;
        loop {
            self.flush().await?;
            if let Some(done) = self.session.poll_completion() {
                return done.map_err(|e| self.session_error(e));
            }
            let pdu = self.recv().await?;
            if let Err(e) = self.session.handle_pdu(pdu) {
                return Err(self.session_error(e));
            }
        }
    }

    /// Logs out (RFC 7143 §11.14) and closes the connection; failures are only logged, since
    /// the session is over either way.
    pub async fn logout(mut self) {
        let itt = self.session.logout(self.cid);
        let result = async {
            self.flush().await?;
            loop {
                if let Pdu::LogoutResponse(r) = self.recv().await? {
                    if r.itt == itt {
                        return Ok::<_, CommandError>(r.response);
                    }
                }
            }
        }
        .await;
        debug!(portal = %self.portal, ?result, "logged out");
        self.connection.shutdown().await;
    }

    /// The connection and the session's current sequence numbers, for an engine that takes
    /// the session over once no command runs.
    pub(crate) fn into_parts(self) -> (Connection, Sequence) {
        (self.connection, self.session.sequence())
    }

    /// Sends one PDU outside the command flow (for exchanges driven by other state machines
    /// on the same session, such as SendTargets).
    pub(crate) async fn send(&mut self, pdu: &Pdu) -> Result<(), CommandError> {
        self.connection
            .send(pdu)
            .await
            .map_err(|e| CommandError::Connection {
                portal: self.portal.clone(),
                source: RecvError::Io(e),
            })
    }

    /// Restarts the command sequencing from `seq`, after another state machine (such as
    /// SendTargets) advanced the session's numbers.
    pub(crate) fn resequence(&mut self, seq: Sequence) {
        let max_recv = self.session.max_recv_data_segment_length();
        self.session = SingleSession::new(seq, max_recv);
    }

    async fn flush(&mut self) -> Result<(), CommandError> {
        while let Some(pdu) = self.session.poll_transmit() {
            self.send(&pdu).await?;
        }
        Ok(())
    }

    pub(crate) async fn recv(&mut self) -> Result<Pdu, CommandError> {
        self.connection
            .recv(self.timeout)
            .await
            .map_err(|source| CommandError::Connection {
                portal: self.portal.clone(),
                source,
            })
    }

    fn session_error(&self, source: SingleError) -> CommandError {
        CommandError::Session {
            portal: self.portal.clone(),
            source,
        }
    }
}
