//! SCSI code points: operation codes (SPC-5 Annex D), sense keys (SPC-5 §4.4.2, table 48),
//! peripheral qualifier and device type (SPC-5 §6.7.2). The status byte (SAM-5 §5.3) is
//! [`crate::wire::ScsiStatus`], since the SCSI Response PDU carries it.

sanshim_codepoint::code_point! {
    /// A SCSI operation code, the first byte of a CDB (SPC-5 Annex D).
    pub struct ScsiOp(u8) as "{:#04x}" {
        /// TEST UNIT READY.
        TEST_UNIT_READY = 0x00 => "TEST UNIT READY",
        /// REQUEST SENSE.
        REQUEST_SENSE = 0x03 => "REQUEST SENSE",
        /// INQUIRY.
        INQUIRY = 0x12 => "INQUIRY",
        /// MODE SELECT(6).
        MODE_SELECT_6 = 0x15 => "MODE SELECT(6)",
        /// MODE SENSE(6).
        MODE_SENSE_6 = 0x1a => "MODE SENSE(6)",
        /// START STOP UNIT.
        START_STOP_UNIT = 0x1b => "START STOP UNIT",
        /// READ CAPACITY(10).
        READ_CAPACITY_10 = 0x25 => "READ CAPACITY(10)",
        /// READ(10).
        READ_10 = 0x28 => "READ(10)",
        /// WRITE(10).
        WRITE_10 = 0x2a => "WRITE(10)",
        /// VERIFY(10).
        VERIFY_10 = 0x2f => "VERIFY(10)",
        /// SYNCHRONIZE CACHE(10).
        SYNCHRONIZE_CACHE_10 = 0x35 => "SYNCHRONIZE CACHE(10)",
        /// WRITE SAME(10).
        WRITE_SAME_10 = 0x41 => "WRITE SAME(10)",
        /// UNMAP.
        UNMAP = 0x42 => "UNMAP",
        /// MODE SELECT(10).
        MODE_SELECT_10 = 0x55 => "MODE SELECT(10)",
        /// MODE SENSE(10).
        MODE_SENSE_10 = 0x5a => "MODE SENSE(10)",
        /// PERSISTENT RESERVE IN.
        PERSISTENT_RESERVE_IN = 0x5e => "PERSISTENT RESERVE IN",
        /// PERSISTENT RESERVE OUT.
        PERSISTENT_RESERVE_OUT = 0x5f => "PERSISTENT RESERVE OUT",
        /// READ(16).
        READ_16 = 0x88 => "READ(16)",
        /// COMPARE AND WRITE.
        COMPARE_AND_WRITE = 0x89 => "COMPARE AND WRITE",
        /// WRITE(16).
        WRITE_16 = 0x8a => "WRITE(16)",
        /// VERIFY(16).
        VERIFY_16 = 0x8f => "VERIFY(16)",
        /// SYNCHRONIZE CACHE(16).
        SYNCHRONIZE_CACHE_16 = 0x91 => "SYNCHRONIZE CACHE(16)",
        /// WRITE SAME(16).
        WRITE_SAME_16 = 0x93 => "WRITE SAME(16)",
        /// SERVICE ACTION IN(16); service action 0x10 is READ CAPACITY(16).
        SERVICE_ACTION_IN_16 = 0x9e => "SERVICE ACTION IN(16)",
        /// REPORT LUNS.
        REPORT_LUNS = 0xa0 => "REPORT LUNS",
        /// MAINTENANCE IN; service action 0x0a is REPORT TARGET PORT GROUPS.
        MAINTENANCE_IN = 0xa3 => "MAINTENANCE IN",
        /// MAINTENANCE OUT; service action 0x0a is SET TARGET PORT GROUPS.
        MAINTENANCE_OUT = 0xa4 => "MAINTENANCE OUT",
        /// READ(12).
        READ_12 = 0xa8 => "READ(12)",
        /// WRITE(12).
        WRITE_12 = 0xaa => "WRITE(12)",
    }
}

sanshim_codepoint::code_point! {
    /// The sense key: the general class of a CHECK CONDITION (SPC-5 §4.4.2, table 48).
    pub struct SenseKey(u8) as "{:#04x}" {
        /// No specific sense key information.
        NO_SENSE = 0x00 => "NO SENSE",
        /// The command completed after recovery action.
        RECOVERED_ERROR = 0x01 => "RECOVERED ERROR",
        /// The logical unit is not accessible.
        NOT_READY = 0x02 => "NOT READY",
        /// A flaw in the medium or the recorded data.
        MEDIUM_ERROR = 0x03 => "MEDIUM ERROR",
        /// A non-recoverable hardware failure.
        HARDWARE_ERROR = 0x04 => "HARDWARE ERROR",
        /// The command or its parameters were invalid.
        ILLEGAL_REQUEST = 0x05 => "ILLEGAL REQUEST",
        /// A unit attention condition was established (reset, change of parameters).
        UNIT_ATTENTION = 0x06 => "UNIT ATTENTION",
        /// The medium is protected against the operation.
        DATA_PROTECT = 0x07 => "DATA PROTECT",
        /// Blank or non-blank medium was found where the other was expected.
        BLANK_CHECK = 0x08 => "BLANK CHECK",
        /// Vendor-specific condition.
        VENDOR_SPECIFIC = 0x09 => "VENDOR SPECIFIC",
        /// A copy operation was aborted.
        COPY_ABORTED = 0x0a => "COPY ABORTED",
        /// The device server aborted the command; a retry may succeed.
        ABORTED_COMMAND = 0x0b => "ABORTED COMMAND",
        /// A buffered device reached the end of a partition.
        VOLUME_OVERFLOW = 0x0d => "VOLUME OVERFLOW",
        /// Source data did not match data read from the medium.
        MISCOMPARE = 0x0e => "MISCOMPARE",
        /// A command completed with sense data to report.
        COMPLETED = 0x0f => "COMPLETED",
    }
}

sanshim_codepoint::code_point! {
    /// The PERIPHERAL QUALIFIER of INQUIRY data (SPC-5 §6.7.2, table 147).
    pub struct PeripheralQualifier(u8) as "{:#04x}" {
        /// A device of the stated type is connected to this logical unit.
        CONNECTED = 0 => "connected",
        /// The device server can support the type, but no device is connected now.
        NOT_CONNECTED = 1 => "not connected",
        /// The device server cannot support a device on this logical unit.
        NOT_SUPPORTED = 3 => "not supported",
    }
}

sanshim_codepoint::code_point! {
    /// The PERIPHERAL DEVICE TYPE of INQUIRY data (SPC-5 §6.7.2, table 148).
    pub struct PeripheralDeviceType(u8) as "{:#04x}" {
        /// Direct-access block device (a disk: SBC).
        DIRECT_ACCESS = 0x00 => "direct-access block device",
        /// Sequential-access device (a tape: SSC).
        SEQUENTIAL_ACCESS = 0x01 => "sequential-access device",
        /// Printer device.
        PRINTER = 0x02 => "printer device",
        /// Processor device.
        PROCESSOR = 0x03 => "processor device",
        /// Write-once device.
        WRITE_ONCE = 0x04 => "write-once device",
        /// CD/DVD device (MMC).
        CD_DVD = 0x05 => "CD/DVD device",
        /// Optical memory device.
        OPTICAL_MEMORY = 0x07 => "optical memory device",
        /// Media changer device.
        MEDIUM_CHANGER = 0x08 => "media changer device",
        /// Storage array controller device (RAID: SCC); tgt reports its LUN 0 as one.
        STORAGE_ARRAY_CONTROLLER = 0x0c => "storage array controller device",
        /// Enclosure services device (SES).
        ENCLOSURE_SERVICES = 0x0d => "enclosure services device",
        /// Simplified direct-access device (RBC).
        SIMPLIFIED_DIRECT_ACCESS = 0x0e => "simplified direct-access device",
        /// Optical card reader/writer device.
        OPTICAL_CARD = 0x0f => "optical card reader/writer device",
        /// Object-based storage device (OSD).
        OBJECT_STORAGE = 0x11 => "object-based storage device",
        /// Automation/drive interface.
        AUTOMATION_DRIVE_INTERFACE = 0x12 => "automation/drive interface",
        /// Host-managed zoned block device (ZBC).
        HOST_MANAGED_ZONED = 0x14 => "host-managed zoned block device",
        /// Well-known logical unit.
        WELL_KNOWN_LU = 0x1e => "well known logical unit",
        /// Unknown or no device type.
        UNKNOWN = 0x1f => "unknown or no device type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_print_names() {
        assert_eq!(format!("{:?}", ScsiOp::READ_16), "READ_16");
        assert_eq!(ScsiOp::READ_16.to_string(), "READ(16)");
        assert_eq!(SenseKey::ILLEGAL_REQUEST.to_string(), "ILLEGAL REQUEST");
        assert_eq!(
            PeripheralDeviceType(0x0c).to_string(),
            "storage array controller device"
        );
    }

    #[test]
    fn unknown_values_survive_and_print_hex() {
        let op = ScsiOp(0xc7);
        assert_eq!(op.name(), None);
        assert_eq!(u8::from(op), 0xc7);
        assert_eq!(format!("{op:?}"), "ScsiOp(0xc7)");
        assert_eq!(op.to_string(), "0xc7");
        assert_eq!(format!("{:?}", SenseKey(0x0c)), "SenseKey(0x0c)");
    }
}
