//! The sanshim test bed: an in-process fake iSCSI target with fault scripting, and a
//! PDU-aware fault-injecting TCP proxy, for integration tests and benches.
//!
//! ```text
//!   initiator under test ──TCP──► FaultProxy ──TCP──► FakeTarget (or a real tgtd)
//!                                  │ frames PDUs          │ RFC 7143 login, full feature
//!                                  │ freeze / cut / flip  │ phase, SCSI on an in-memory LUN
//!                                  └ fired faults + time  └ scripted Rules, Counters
//! ```
//!
//! Both pieces use only the initiator's wire format (`sanshim_initiator::wire`) and SCSI
//! parsers/code points (`sanshim_initiator::scsi`); nothing of its session engine. They run on
//! std threads with blocking sockets, so any test, sync or async, can use them. Every thread
//! ends within a second of its owner being dropped: sockets are shut down, read loops wake on
//! a short read timeout and check a stop flag.
//!
//! - [`target`]: [`FakeTarget`], configured by [`TargetConfig`], scripted with [`Rule`]s,
//!   observed through [`Counters`].
//! - [`proxy`]: [`FaultProxy`], armed with [`ProxyFault`]s, reporting [`Fired`] records.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod net;
pub mod proxy;
pub mod target;

pub use proxy::{Direction, FaultProxy, Fired, ProxyConfig, ProxyFault};
pub use target::{Counters, Digest, Event, FakeTarget, Rule, SenseCode, TargetConfig};
