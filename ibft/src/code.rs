//! Code points of the iBFT (iBFT specification 1.03 §3.2 structure ids, §3.5.2 NIC origin,
//! §3.5.3 CHAP type) and the flag bits of the structure headers.
//!
//! Code points are open newtypes: an unknown value survives a parse/emit round trip and
//! `Debug` prints the name of a known one.

sanshim_codepoint::code_point! {
    /// The id in a structure header (§3.2).
    pub struct StructureId(u8) as "{}" {
        /// Reserved; never a valid structure.
        RESERVED = 0,
        /// The control structure, always at offset 48.
        CONTROL = 1,
        /// The initiator structure.
        INITIATOR = 2,
        /// A NIC structure.
        NIC = 3,
        /// A target structure.
        TARGET = 4,
        /// Vendor extensions; not interpreted.
        EXTENSIONS = 5,
    }
}

sanshim_codepoint::code_point! {
    /// Where a NIC's IP address came from (§3.5.2, the values of Windows' `NL_PREFIX_ORIGIN`).
    pub struct Origin(u8) as "{}" {
        /// Some other source.
        OTHER = 0,
        /// Configured by hand.
        MANUAL = 1,
        /// A well-known address (e.g. link-local).
        WELL_KNOWN = 2,
        /// Leased from a DHCP server.
        DHCP = 3,
        /// From an IPv6 router advertisement.
        ROUTER_ADVERTISEMENT = 4,
        /// Unchanged (`IpPrefixOriginUnchanged`, 1 << 4; iPXE's header says 0x0f).
        UNCHANGED = 16,
    }
}

sanshim_codepoint::code_point! {
    /// How the initiator authenticates to a target (§3.5.3).
    pub struct ChapType(u8) as "{}" {
        /// No authentication.
        NONE = 0,
        /// One-way CHAP: the initiator proves its secret.
        ONE_WAY = 1,
        /// Mutual CHAP: the target proves its secret too.
        MUTUAL = 2,
    }
}

/// Flag bits of the structure headers (§3.4–§3.5).
pub mod flags {
    /// Initiator, NIC, target: the structure holds valid data.
    pub const BLOCK_VALID: u8 = 0x01;
    /// Initiator, NIC, target: the firmware booted through this structure.
    pub const BOOT_SELECTED: u8 = 0x02;
    /// Either of the two flags that make a structure count; with neither it is ignored.
    pub const IN_USE: u8 = BLOCK_VALID | BOOT_SELECTED;
    /// NIC: the address is global (not link-local).
    pub const NIC_GLOBAL: u8 = 0x04;
    /// Target: CHAP through RADIUS.
    pub const TARGET_RADIUS_CHAP: u8 = 0x04;
    /// Target: reverse CHAP through RADIUS.
    pub const TARGET_RADIUS_RCHAP: u8 = 0x08;
    /// Control: log in only to the boot-selected target.
    pub const CONTROL_SINGLE_LOGIN: u8 = 0x01;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_names_known_and_numbers_unknown() {
        assert_eq!(format!("{:?}", StructureId::NIC), "NIC");
        assert_eq!(format!("{:?}", StructureId(9)), "StructureId(9)");
        assert_eq!(format!("{:?}", Origin::DHCP), "DHCP");
        assert_eq!(format!("{:?}", ChapType(7)), "ChapType(7)");
        assert_eq!(ChapType::MUTUAL.name(), Some("MUTUAL"));
        assert_eq!(Origin(200).name(), None);
    }
}
