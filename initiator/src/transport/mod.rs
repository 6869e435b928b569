//! The tokio side: sockets, timers and retry policy around the sans-IO state machines
//! ([`crate::login::Login`], [`crate::single::SingleSession`], [`crate::discovery::SendTargets`]). Nothing
//! here decides anything the protocol defines; it moves PDUs and applies the user's patience.

mod connection;
mod discovery;
mod login;
mod single;

pub use connection::{ConnectError, Connection, RecvError};
pub use discovery::{DiscoverError, send_targets};
pub use login::{LoggedIn, LoginPolicy, Portal, SessionError, login};
pub use single::{CommandError, SingleClient};
