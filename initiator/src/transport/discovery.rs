//! Driving a [`SendTargets`] exchange on a discovery session, then logging out.

use std::time::Duration;

use super::connection::RecvError;
use super::login::LoggedIn;
use super::single::{CommandError, SingleClient};
use crate::discovery::{DiscoveredTarget, DiscoveryError, SendTargets};
use crate::single::Sequence;

/// Why a SendTargets exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoverError {
    /// The connection broke or timed out.
    #[error(transparent)]
    Connection(#[from] CommandError),
    /// The target's answer was unusable.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
}

/// Asks the target behind a discovery login for every target it offers (`SendTargets=All`),
/// then logs out. `timeout` bounds each PDU exchange.
///
/// # Errors
/// [`DiscoverError`] when the connection fails or the answer is malformed.
pub async fn send_targets(
    logged_in: LoggedIn,
    timeout: Duration,
) -> Result<Vec<DiscoveredTarget>, DiscoverError> {
    let mut exchange = SendTargets::after_login(&logged_in.established);
    let max_cmd_sn = logged_in.established.max_cmd_sn;
    let mut client = SingleClient::new(logged_in, 0, timeout);
    let outcome = loop {
        while let Some(pdu) = exchange.poll_transmit() {
            client.send(&pdu).await?;
        }
        if let Some(outcome) = exchange.poll_outcome() {
            break outcome;
        }
        match client.recv().await {
            // A failure is kept as the exchange's outcome, taken at the top of the loop.
            Ok(pdu) => drop(exchange.handle_pdu(pdu)),
            Err(CommandError::Connection {
                source: RecvError::Closed,
                ..
            }) => {
                exchange.handle_close();
            }
            Err(e) => return Err(e.into()),
        }
    };
    client.resequence(Sequence {
        cmd_sn: exchange.cmd_sn(),
        exp_stat_sn: exchange.exp_stat_sn(),
        max_cmd_sn,
    });
    client.logout().await;
    Ok(outcome?)
}
