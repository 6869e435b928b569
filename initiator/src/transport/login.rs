//! Logging in over TCP: connect, run [`Login`], follow redirections (bounded hops), retry a
//! busy target with backoff (bounded, like open-iscsi's `node.session.initial_logon_retry_max`)
//! and retry CHAP with MD5 alone for targets that reject an algorithm list.

use std::time::Duration;

use tracing::{debug, info, warn};

use super::connection::{ConnectError, Connection, RecvError};
use crate::login::{Established, Login, LoginConfig, LoginError};
use crate::portal::{Portal, TargetAddress};

/// How patient a login is.
#[derive(Clone, Debug)]
pub struct LoginPolicy {
    /// Bound on each TCP connect.
    pub connect_timeout: Duration,
    /// Bound on each PDU exchange during login: a portal that accepts the connection and
    /// then stays silent this long fails the login ([`SessionError::NoLoginResponse`]).
    pub response_timeout: Duration,
    /// Redirections followed before giving up.
    pub max_redirects: u32,
    /// Retries of a target that says it is busy or out of resources.
    pub busy_retries: u32,
    /// Of those, the retries of a target that closed the connection without answering the
    /// first login request ([`LoginError::ClosedWithoutAnswer`](crate::login::LoginError)):
    /// more often a refusal in disguise (CHAP required, unknown target) than a busy target,
    /// so fewer. `sanshim boot` waits for slow SANs with its own loop.
    pub closed_retries: u32,
    /// First delay between busy retries; doubled each time up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest delay between busy retries.
    pub max_backoff: Duration,
    /// Clamp the TCP maximum segment size (`TCP_MAXSEG`) of the connection: for a path with
    /// a jumbo-frame black hole.
    pub max_segment: Option<u32>,
}

impl Default for LoginPolicy {
    fn default() -> Self {
        LoginPolicy {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(15),
            max_redirects: 4,
            busy_retries: 8,
            closed_retries: 2,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(8),
            max_segment: None,
        }
    }
}

/// A connection in the full feature phase.
#[derive(Debug)]
pub struct LoggedIn {
    /// The connection, its codec switched to the negotiated digests and limits.
    pub connection: Connection,
    /// What the login established.
    pub established: Established,
    /// The portal we ended up on (after redirections).
    pub portal: Portal,
}

/// Why a session could not be established or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// No TCP connection to the portal.
    #[error("portal {portal} unreachable: {source}")]
    Unreachable {
        /// The portal tried.
        portal: Portal,
        /// Why.
        source: ConnectError,
    },
    /// The login failed.
    #[error("login to {target} at {portal} failed: {source}")]
    Login {
        /// The portal.
        portal: Portal,
        /// The target name (or "discovery").
        target: String,
        /// Why.
        source: LoginError,
    },
    /// The connection broke or the target sent garbage.
    #[error("connection to {portal} failed: {source}")]
    Connection {
        /// The portal.
        portal: Portal,
        /// Why.
        source: RecvError,
    },
    /// The peer answered our first login request with something that is not an iSCSI Login
    /// Response: another service listens on the port (an HTTP proxy on 3260, say).
    #[error(
        "{portal} does not speak iSCSI (is another service listening there? iSCSI's port is 3260): its answer to our login began {seen}"
    )]
    NotIscsi {
        /// The portal.
        portal: Portal,
        /// The first bytes it sent, printable ASCII kept and the rest escaped.
        seen: String,
        /// What the decoder said (logged at debug level, not shown: it speaks of opcodes).
        why: String,
    },
    /// The portal accepted the TCP connection and never answered our first Login Request: a
    /// hung target daemon, or a service that waits for its client to speak first.
    #[error(
        "portal {portal} accepted the connection but sent no login response in {}: is it an iSCSI target? is the target daemon hung?",
        seconds(*waited)
    )]
    NoLoginResponse {
        /// The portal.
        portal: Portal,
        /// How long we waited.
        waited: Duration,
    },
    /// The portal answered the login, then stopped answering in the middle of it.
    #[error(
        "portal {portal} stopped answering during the login to {target} (nothing for {}): is the target daemon hung?",
        seconds(*waited)
    )]
    LoginStalled {
        /// The portal.
        portal: Portal,
        /// The target name (or "discovery").
        target: String,
        /// How long we waited.
        waited: Duration,
    },
    /// Redirected too many times.
    #[error("login redirected more than {0} times; giving up")]
    TooManyRedirects(u32),
    /// A redirection named an address we cannot parse.
    #[error("target redirected us to an unusable address {0:?}")]
    BadRedirect(String),
}

impl SessionError {
    /// Whether the target refused us (credentials, access, unknown target): exit code 4.
    pub fn is_refusal(&self) -> bool {
        matches!(self, SessionError::Login { source, .. } if source.is_refusal())
    }

    /// Whether the target refused our credentials (see
    /// [`LoginError::is_authentication_failure`]).
    pub fn is_authentication_failure(&self) -> bool {
        matches!(self, SessionError::Login { source, .. } if source.is_authentication_failure())
    }

    /// Whether no working iSCSI portal answered (nothing listens, something else than iSCSI
    /// does, or the portal accepts connections and never completes a login): exit code 3.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            SessionError::Unreachable { .. }
                | SessionError::NotIscsi { .. }
                | SessionError::NoLoginResponse { .. }
                | SessionError::LoginStalled { .. }
        )
    }
}

/// Logs in at `portal` with `config`, applying `policy`.
///
/// # Errors
/// [`SessionError`] saying whether the portal was unreachable, the target refused, or the
/// protocol failed.
pub async fn login(
    portal: &Portal,
    mut config: LoginConfig,
    policy: &LoginPolicy,
) -> Result<LoggedIn, SessionError> {
    let target = config
        .target_name
        .clone()
        .unwrap_or_else(|| "discovery".to_string());
    let mut portal = portal.clone();
    let (mut redirects, mut retries) = (0, 0);
    let mut backoff = policy.initial_backoff;
    loop {
        let connect = Connection::connect_with(
            &portal.host,
            portal.port,
            policy.connect_timeout,
            policy.max_segment,
        );
        let mut connection = connect.await.map_err(|source| SessionError::Unreachable {
            portal: portal.clone(),
            source,
        })?;
        debug!(%portal, %target, "connected; logging in");
        let error = match exchange(&mut connection, config.clone(), policy).await {
            Ok(established) => {
                apply_negotiated(&mut connection, &established);
                info!(%portal, %target, tsih = established.tsih, "logged in");
                return Ok(LoggedIn {
                    connection,
                    established,
                    portal,
                });
            }
            Err(Exchange::NotIscsi { seen, why }) => {
                debug!(%portal, %target, why, "first answer is no iSCSI login response");
                return Err(SessionError::NotIscsi { portal, seen, why });
            }
            Err(Exchange::Silent { first, waited }) => {
                debug!(%portal, %target, ?waited, first, "no login response");
                return Err(match first {
                    true => SessionError::NoLoginResponse { portal, waited },
                    false => SessionError::LoginStalled {
                        portal,
                        target,
                        waited,
                    },
                });
            }
            Err(Exchange::Recv(source)) => {
                return Err(SessionError::Connection { portal, source });
            }
            Err(Exchange::Login(e)) => e,
        };
        connection.shutdown().await;
        match &error {
            LoginError::Redirect { address, permanent } => {
                redirects += 1;
                if redirects > policy.max_redirects {
                    return Err(SessionError::TooManyRedirects(policy.max_redirects));
                }
                let next = TargetAddress::parse(address)
                    .map_err(|_| SessionError::BadRedirect(address.clone()))?
                    .portal;
                info!(from = %portal, to = %next, permanent, "target redirected the login");
                portal = next;
            }
            e if e.retry_with_md5_only() && config.chap.as_ref().is_some_and(|c| !c.md5_only) => {
                if matches!(e, LoginError::ChapAlgorithmsRejected { status: Some(_) }) {
                    // A wrong secret looks the same: it fails again, with MD5, as refused.
                    warn!(%portal, %target,
                        "target refused our CHAP response (computed with SHA); some targets get other algorithms than MD5 wrong: retrying once with MD5 alone");
                } else {
                    warn!(%portal, %target, "target refused the CHAP_A list; retrying with MD5 alone");
                }
                if let Some(chap) = config.chap.as_mut() {
                    chap.md5_only = true;
                }
            }
            e if e.is_retryable()
                && retries < policy.busy_retries
                && (!matches!(e, LoginError::ClosedWithoutAnswer { .. })
                    || retries < policy.closed_retries) =>
            {
                retries += 1;
                warn!(%portal, %target, error = %e, retry = retries, delay = ?backoff,
                    "login not possible now; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(policy.max_backoff);
            }
            _ => {
                return Err(SessionError::Login {
                    portal,
                    target,
                    source: error,
                });
            }
        }
    }
}

enum Exchange {
    Login(LoginError),
    Recv(RecvError),
    /// The first answer was no iSCSI Login Response.
    NotIscsi {
        seen: String,
        why: String,
    },
    /// Nothing arrived within the response timeout; `first`: not even an answer to our
    /// first Login Request.
    Silent {
        first: bool,
        waited: Duration,
    },
}

/// Runs one login exchange over an open connection.
async fn exchange(
    connection: &mut Connection,
    config: LoginConfig,
    policy: &LoginPolicy,
) -> Result<Established, Exchange> {
    let mut login = Login::new(config);
    let mut first = true;
    loop {
        while let Some(pdu) = login.poll_transmit() {
            if connection.send(&pdu).await.is_err() {
                login.handle_close();
            }
        }
        if let Some(outcome) = login.poll_outcome() {
            return outcome.map_err(Exchange::Login);
        }
        let received = connection.recv(policy.response_timeout).await;
        if let Err(RecvError::Timeout(waited)) = received {
            // Bytes of an unfinished PDU count as no answer too: a whole one never came.
            return Err(Exchange::Silent { first, waited });
        }
        if std::mem::take(&mut first) {
            // Garbage, or a PDU no target sends first, in answer to our first request: the
            // peer is something else than an iSCSI target.
            let why = match &received {
                Err(RecvError::Decode(e)) => Some(e.to_string()),
                Err(RecvError::Closed | RecvError::Io(_)) if connection.buffered() > 0 => Some(
                    "it closed the connection after an answer shorter than a PDU header".to_owned(),
                ),
                Ok(crate::wire::Pdu::LoginResponse(_) | crate::wire::Pdu::Reject(_)) | Err(_) => {
                    None
                }
                Ok(other) => Some(format!("a {:?} PDU", other.opcode())),
            };
            if let Some(why) = why {
                return Err(Exchange::NotIscsi {
                    seen: connection.received_text(24),
                    why,
                });
            }
        }
        match received {
            // An error is kept as the login's outcome, taken at the top of the loop.
            Ok(pdu) => drop(login.handle_pdu(pdu)),
            Err(RecvError::Closed) => login.handle_close(),
            Err(e) => return Err(Exchange::Recv(e)),
        }
    }
}

/// `15 s`, `1.5 s`: a timeout as a user gave it.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    match s.fract() == 0.0 {
        true => format!("{s:.0} s"),
        false => format!("{s:.1} s"),
    }
}

fn apply_negotiated(connection: &mut Connection, established: &Established) {
    let codec = connection.codec_mut();
    codec.header_digest = established.negotiated.header_digest;
    codec.data_digest = established.negotiated.data_digest;
    codec.max_recv_data_segment_length = established.negotiated.max_recv_data_segment_length;
}
