//! Active-active multipath over several paths to one logical unit.
//!
//! ```text
//!  BlockDevice request ─► Multipath ─► selector (round-robin | queue-length | service-time)
//!                            │            over the active paths of the best ALUA rank
//!                            ├─► path 1: ScsiDisk ─► its own iSCSI session (fail-fast)
//!                            ├─► path 2: ScsiDisk ─► ...
//!                            │   a path error: path out of service, connection dropped,
//!                            │   request re-driven elsewhere (writes behind a LUN reset)
//!                            └─ checker task: lost connections, silent paths (no progress
//!                               while others progress + a ping), reinstatement (login, TEST
//!                               UNIT READY, MTU probe), no-path-retry
//! ```
//!
//! Paths are grouped by LU identity (INQUIRY VPD 0x83, [`identity`]); paths to different LUs
//! are refused. Each path's session runs with `fail_fast` (a lost connection fails its
//! commands at once, for this layer to re-drive them) and logs in again on its own; the
//! checker puts it back into service. See [`Multipath`] for the ghost-write guarantee.
#![forbid(unsafe_code)]

mod alua;
mod checker;
mod device;
pub mod identity;
mod mtu;
mod path;
pub mod selector;

use std::time::Duration;

pub use crate::device::{MAX_PATHS, Multipath, policy_name};
pub use crate::identity::GroupError;
pub use crate::path::{Path, PathStats, State};
pub use crate::selector::Policy;

/// How long requests wait when no path is in service.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum NoPathRetry {
    /// Fail at once.
    Fail,
    /// Wait forever.
    Queue,
    /// Wait this long, then fail.
    For(Duration),
}

/// How a multipath device behaves.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// How requests are spread over the paths.
    pub policy: Policy,
    /// How long requests wait when no path is in service (default 60 s).
    pub no_path_retry: NoPathRetry,
    /// A path with commands in flight that received nothing for this long, while another
    /// path received something, is pinged (default 1 s).
    pub stall: Duration,
    /// How long that ping may take before the path leaves service (default 500 ms).
    pub probe_timeout: Duration,
    /// How often the checker looks at the paths (default 100 ms).
    pub check_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            policy: Policy::default(),
            no_path_retry: NoPathRetry::For(Duration::from_secs(60)),
            stall: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            check_interval: Duration::from_millis(100),
        }
    }
}
