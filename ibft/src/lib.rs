//! iSCSI Boot Firmware Table (iBFT) reader.
//!
//! Parses the table that BIOS/UEFI firmware of a SAN-booted machine leaves for the OS (iBFT
//! specification 1.03): the control structure, the initiator, NIC and target structures, with
//! every offset bounds-checked. Sources: the ACPI table, a low-memory scan, the kernel's sysfs
//! view or a file. No I/O beyond reading those sources.
#![forbid(unsafe_code)]
