//! iSCSI initiator (RFC 7143).
//!
//! ```text
//!  bytes ─► wire::Codec ─► Pdu ─► login / session state machines ─► events, PDUs to send
//!                                  (sans-IO: fed PDUs and `now`)       │
//!  transport (tokio) ◄─────────────────────────────────────────────────┘
//! ```
//!
//! The protocol core — PDU codec, text keys, login and CHAP, session sequencing — is sans-IO;
//! the tokio transport in `transport` owns sockets and timers and makes no protocol decisions.
#![forbid(unsafe_code)]

pub mod discovery;
pub mod disk;
#[cfg(any(fuzzing, test))]
pub mod fuzzing;
pub mod inspect;
pub mod login;
pub mod name;
pub mod portal;
pub mod scsi;
pub mod session;
pub mod transport;
pub mod url;
pub mod wire;
