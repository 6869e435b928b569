//! Benchmarks of the sanshim hot path (criterion benches under `benches/`) and the side-by-side
//! scripts against the peers users would otherwise pick.
#![forbid(unsafe_code)]
