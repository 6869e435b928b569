//! The tokio side: sockets, timers and retry policy around the sans-IO state machines
//! ([`crate::login::Login`] during login, [`crate::session::Session`] after it). Nothing here
//! decides anything the protocol defines; it moves PDUs and applies the user's patience.
//!
//! - [`login`] connects and logs in (redirections, busy retries) over a [`Connection`];
//! - [`open`] does that and starts the session's one driver task, returning a
//!   [`SessionHandle`] through which every command, text exchange, task management function
//!   and logout goes.

mod connection;
mod driver;
mod handle;
mod link;
mod login;
mod reply;
mod socket;

pub use connection::{ConnectError, Connection, RecvError};
pub use handle::{Health, PendingCommand, SessionHandle, Stats, open};
pub use login::{LoggedIn, LoginPolicy, SessionError, login};
pub use socket::{DEFAULT_USER_TIMEOUT, user_timeout};
