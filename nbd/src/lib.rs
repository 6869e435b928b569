//! NBD server serving any [`sanshim_blockdev::BlockDevice`] (NBD protocol, doc/proto.md of the
//! NetworkBlockDevice project), and attachment of the kernel's `/dev/nbdX` to it.
//!
//! ```text
//!  client ──► Listener (unix:/tcp:) ──► conn: handshake driver ──► negotiate::Negotiation
//!                                        │ (timeout, option bytes)     (pure: options → replies)
//!                                        ▼
//!                              conn: transmission driver ──► request::check (pure: header →
//!                                │ reader ─ payload ─► task per request ──► Bytewise ─► device
//!                                └ writer ◄─ replies ◄──────┘  (out of order, bounded memory)
//!  kernel::attach ── socketpair ──┘ (skips the handshake; netlink or ioctl hands the kernel
//!                                    the other end)
//! ```
//!
//! Protocol decisions (which option gets which reply, which request gets which errno) live in
//! the pure modules [`wire`], [`negotiate`] and [`request`]; `conn` only moves bytes, keeps
//! time and bounds memory. [`Server`] owns the exports, the connection limit and the shutdown
//! signal; [`Server::serve`] runs one [`Listener`] until [`Server::shutdown`], then drains.
//! Each export's device is reached through one [`sanshim_blockdev::Bytewise`], which serves
//! the requests of clients that did not agree to the block size at any alignment, by
//! read-modify-write. The limits and their defaults are those of [`Config`].
#![deny(unsafe_code)]

mod conn;
mod execute;
#[cfg(any(fuzzing, test))]
pub mod fuzzing;
pub mod kernel;
mod listen;
pub mod negotiate;
mod pool;
pub mod request;
mod server;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use sanshim_blockdev::BlockDevice;

pub use crate::conn::ConnectionError;
pub use crate::listen::{BindError, ListenAddr, ListenAddrError, Listener};
pub use crate::server::{ConfigError, Server, Shutdown, Stats};

/// One export: a device under a name.
pub struct Export<D> {
    /// The name clients ask for (`NBD_OPT_GO`, `NBD_OPT_EXPORT_NAME`); the first export is
    /// also the default one, chosen by an empty name.
    pub name: String,
    /// A description shown by `NBD_OPT_LIST` and `NBD_INFO_DESCRIPTION`.
    pub description: String,
    /// The device served.
    pub device: Arc<D>,
    /// Refuse writes even if the device accepts them (`--read-only`).
    pub read_only: bool,
}

impl<D> Clone for Export<D> {
    fn clone(&self) -> Self {
        Export {
            name: self.name.clone(),
            description: self.description.clone(),
            device: Arc::clone(&self.device),
            read_only: self.read_only,
        }
    }
}

impl<D: BlockDevice> std::fmt::Debug for Export<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("geometry", self.device.geometry())
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// Server limits, with their defaults. Memory held for request data is bounded by
/// `max_connections × connection_buffer_bytes` (plus up to two blocks per unaligned read).
/// The server's [`Stats`] show what is held against them.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Config {
    /// Time a client has to finish the handshake before it is dropped (10 s).
    pub handshake_timeout: Duration,
    /// Connections served at once (64); further ones are told `NBD_REP_ERR_POLICY` "too many
    /// connections" in the handshake and closed. The kernel's connections of
    /// [`kernel::attach`] do not count.
    pub max_connections: usize,
    /// Largest read or write payload (the advertised maximum block size; 32 MiB, the most
    /// allowed); longer requests get `EINVAL` without their data being held.
    pub max_request_bytes: u32,
    /// Request and reply data one connection may hold at once (64 MiB; at least
    /// `max_request_bytes`): at the bound the server stops reading the socket.
    pub connection_buffer_bytes: u32,
    /// Requests one connection may have in flight at once (128): at the bound the server
    /// stops reading the socket.
    pub max_inflight_requests: u32,
    /// Time a reply may wait for the client to take it (the socket's send buffer full):
    /// a client that stops reading replies is dropped after it, and a shutdown never waits
    /// on such a client longer (30 s).
    pub reply_timeout: Duration,
    /// Time a client may go without sending a request, none being in flight, before it is
    /// dropped; `None` (the default) keeps idle clients forever. Off by default because
    /// clients idle legitimately — a mounted but unused /dev/nbdX sends nothing for hours —
    /// and a dropped one loses its device; a dead peer costs only its socket. Never applied
    /// to the kernel's connections of [`kernel::attach`].
    pub idle_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            handshake_timeout: Duration::from_secs(10),
            max_connections: 64,
            max_request_bytes: MAX_REQUEST_BYTES,
            connection_buffer_bytes: 2 * MAX_REQUEST_BYTES,
            max_inflight_requests: 128,
            reply_timeout: Duration::from_secs(30),
            idle_timeout: None,
        }
    }
}

/// The largest payload this server ever accepts (32 MiB, the size every NBD client handles).
pub const MAX_REQUEST_BYTES: u32 = 32 << 20;
