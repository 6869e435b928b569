//! Benchmarks of the sanshim hot path (criterion benches under `benches/`), the engine behind
//! `sanshim bench`, and the side-by-side scripts against the peers users would otherwise pick
//! (`scripts/bench-peers`).
//!
//! ```text
//!  BenchOptions ─► engine::run ─► qd tasks ─► Arc<dyn BlockDevice> (ScsiDisk, MemDisk, ...)
//!                      │              └─► latency histogram, byte/op counters
//!                      ├─► Progress once a second (callback)
//!                      └─► Report (MiB/s, IOPS, p50/p99/max latency, CPU user/sys)
//! ```
//!
//! A verifying run writes blocks stamped with their LBA, a run tag and the operation number
//! ([`pattern`]), reads them all back and names the lowest LBA that came back wrong; with a
//! time bound it repeats such passes, each with a new tag, until the time is up.
#![forbid(unsafe_code)]

pub mod cpu;
pub mod engine;
pub mod histogram;
pub mod options;
pub mod pattern;
pub mod report;
pub mod rng;
pub mod size;

pub use crate::engine::{BenchError, run};
pub use crate::options::{BenchOptions, Bound, ReadWrite, UnknownReadWrite};
pub use crate::report::{Phase, PhaseReport, Progress, Report, VerifyReport};
pub use crate::size::{SizeError, format_size, parse_size};
