//! Active-active multipath over several paths to one logical unit.
//!
//! A `BlockDevice` built from several path `BlockDevice`s (one iSCSI session each): grouping by
//! LU identity (INQUIRY VPD 0x83), round-robin and load-based path selectors, failover, path
//! checking and reinstatement.
#![forbid(unsafe_code)]
