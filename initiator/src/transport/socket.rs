//! Socket options of an iSCSI connection: a dead peer must be noticed by the kernel too, not
//! only by the session's NOP-Out pings, so that a send into a silent link fails rather than
//! waiting for TCP's own retransmission limit (about 15 minutes on Linux).

use std::io;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// How long sent data may stay unacknowledged before the kernel drops the connection
/// (`TCP_USER_TIMEOUT`), when the session's own pings do not say otherwise.
pub const DEFAULT_USER_TIMEOUT: Duration = Duration::from_secs(20);

/// Idle time before the first TCP keep-alive probe, the interval between probes and their
/// number: an idle connection to a vanished peer dies within 10 + 3 × 5 = 25 s.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_PROBES: u32 = 3;

/// Sets TCP_NODELAY (commands and R2T answers must not wait for Nagle), TCP keep-alive and
/// `TCP_USER_TIMEOUT` = `user_timeout`.
///
/// # Errors
/// The first `setsockopt` that fails.
pub fn configure(stream: &TcpStream, user_timeout: Duration) -> io::Result<()> {
    let sock = SockRef::from(stream);
    sock.set_tcp_nodelay(true)?;
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    sock.set_tcp_keepalive(&keepalive)?;
    sock.set_tcp_user_timeout(Some(user_timeout))
}

/// The `TCP_USER_TIMEOUT` for a session pinging every `noop_interval` and waiting
/// `noop_timeout` for an answer: a little longer than the pings take to declare the peer
/// dead, so that they, not the kernel, say why.
pub fn user_timeout(noop_interval: Duration, noop_timeout: Duration) -> Duration {
    if noop_interval.is_zero() {
        return DEFAULT_USER_TIMEOUT;
    }
    (noop_interval + noop_timeout + Duration::from_secs(2)).max(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn options_are_set_on_a_loopback_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, _server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let client = client.unwrap();
        configure(&client, Duration::from_secs(12)).unwrap();
        let sock = SockRef::from(&client);
        assert!(sock.tcp_nodelay().unwrap());
        assert!(sock.keepalive().unwrap());
        assert_eq!(
            sock.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(12))
        );
        assert_eq!(sock.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
    }

    #[test]
    fn user_timeout_follows_the_pings() {
        let s = Duration::from_secs;
        assert_eq!(user_timeout(s(5), s(5)), s(12));
        assert_eq!(user_timeout(Duration::ZERO, s(5)), DEFAULT_USER_TIMEOUT);
        assert_eq!(
            user_timeout(Duration::from_millis(500), Duration::from_millis(500)),
            s(5)
        );
    }
}
