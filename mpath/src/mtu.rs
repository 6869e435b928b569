//! The jumbo-frame black-hole probe. SAN networks commonly run MTU 9000, and one switch port
//! left at 1500 makes logins work (small PDUs) while large transfers hang. After each login a
//! path sends a NOP-Out ping of the full segment size (the target echoes it): when it is lost
//! and a small one passes, the path's TCP maximum segment size is clamped (`TCP_MAXSEG`, set
//! before the connection is made, so it bounds the segments both ways) to what an Ethernet
//! MTU of 1500 carries, then to what a tunnel's carries; the path logs in again and is probed
//! again. A clamp stays for the path's later connections.

use std::time::Duration;

use tracing::{info, warn};

use crate::path::Path;

/// Maximum segment sizes tried, in order: Ethernet MTU 1500 (1500 - 40 - 12 of timestamps),
/// then a margin for tunnels.
const CLAMPS: [u32; 2] = [1448, 1200];
/// How long a ping may take.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Pings of this size fit any MTU.
const SMALL: usize = 512;
/// How long a new login after a clamp may take.
const RELOGIN: Duration = Duration::from_secs(15);

/// Probes `path`; clamps and logs in again on a black hole.
///
/// # Errors
/// What is wrong, when the path cannot carry full-size PDUs (or no ping passes at all).
pub(crate) async fn probe(path: &Path) -> Result<(), String> {
    let session = path.disk.session();
    let negotiated = &session.established().negotiated;
    let full = (negotiated.max_xmit_data_segment_length as usize)
        .min(negotiated.max_recv_data_segment_length as usize)
        .min(256 << 10);
    if full <= SMALL {
        return Ok(());
    }
    // Small first: once a segment is lost, TCP holds everything behind it on that connection.
    if session.ping(SMALL, PING_TIMEOUT).await.is_err() {
        return Err("no answer to pings".to_owned());
    }
    if session.ping(full, PING_TIMEOUT).await.is_ok() {
        return Ok(());
    }
    for mss in CLAMPS {
        if path.max_segment().is_some_and(|m| m <= mss) {
            continue;
        }
        warn!(
            path = path.index + 1, name = %path.name, full, mss,
            "MTU black hole: a {full}-byte ping is lost while a {SMALL}-byte one passes; \
             clamping the TCP maximum segment size and logging in again"
        );
        path.set_max_segment(Some(mss));
        let mut health = session.health();
        session.set_max_segment(Some(mss)).await;
        let relogged = tokio::time::timeout(
            RELOGIN,
            health.wait_for(|h| h.connected && h.max_segment == Some(mss)),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if !relogged {
            return Err(format!(
                "no new login within {RELOGIN:?} after clamping the MSS to {mss}"
            ));
        }
        if session.ping(full, PING_TIMEOUT).await.is_ok() {
            info!(path = path.index + 1, name = %path.name, mss, "full-size pings pass with the clamped MSS");
            return Ok(());
        }
    }
    Err(format!(
        "MTU black hole: {full}-byte pings are lost even with the MSS clamped"
    ))
}
