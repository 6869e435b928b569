//! The owned representation of an iBFT (iBFT specification 1.03 §3.3–§3.5): what the parser
//! produces, the sysfs reader reconstructs and the writer emits.
//!
//! Absent values are `None`: an all-zero or `::ffff:0.0.0.0` address, a zero-length string.
//! IPv4-mapped addresses are held as [`IpAddr::V4`].

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use crate::code::{ChapType, Origin};

/// A whole table.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Ibft {
    /// The ACPI header.
    pub header: Header,
    /// Flags of the control structure ([`flags::CONTROL_SINGLE_LOGIN`](crate::flags)).
    pub control_flags: u8,
    /// The initiator, when present and in use.
    pub initiator: Option<Initiator>,
    /// NICs in use, in control-structure order.
    pub nics: Vec<Nic>,
    /// Targets in use, in control-structure order.
    pub targets: Vec<Target>,
}

/// The ACPI header fields worth reporting. The kernel's sysfs view lacks some of them.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Header {
    /// The table signature as found (`iBFT`, or a field variant).
    pub signature: [u8; 4],
    /// Table revision; unknown when read from sysfs.
    pub revision: Option<u8>,
    /// Table length in bytes; unknown when read from sysfs.
    pub length: Option<u32>,
    /// Whether the checksum holds; unknown when read from sysfs (the kernel checked it).
    pub checksum_ok: Option<bool>,
    /// OEM id, up to the first NUL.
    pub oem_id: String,
    /// OEM table id, up to the first NUL.
    pub oem_table_id: String,
}

/// The initiator structure.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Initiator {
    /// Structure index (0).
    pub index: u8,
    /// Header flags.
    pub flags: u8,
    /// iSNS server.
    pub isns: Option<IpAddr>,
    /// SLP server.
    pub slp: Option<IpAddr>,
    /// Primary RADIUS server.
    pub primary_radius: Option<IpAddr>,
    /// Secondary RADIUS server.
    pub secondary_radius: Option<IpAddr>,
    /// Our iSCSI name.
    pub name: Option<String>,
}

/// A NIC structure.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Nic {
    /// Structure index; targets refer to it.
    pub index: u8,
    /// Header flags.
    pub flags: u8,
    /// Our address.
    pub ip: Option<IpAddr>,
    /// Subnet prefix length in bits.
    pub prefix: u8,
    /// Where the address came from.
    pub origin: Origin,
    /// Default gateway.
    pub gateway: Option<IpAddr>,
    /// Primary DNS server.
    pub primary_dns: Option<IpAddr>,
    /// Secondary DNS server.
    pub secondary_dns: Option<IpAddr>,
    /// DHCP server.
    pub dhcp: Option<IpAddr>,
    /// VLAN id, 0 for none.
    pub vlan: u16,
    /// MAC address.
    pub mac: MacAddr,
    /// PCI location; unknown when sysfs has no `device` link.
    pub pci_bdf: Option<PciBdf>,
    /// Host name.
    pub hostname: Option<String>,
}

/// A target structure.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Target {
    /// Structure index.
    pub index: u8,
    /// Header flags.
    pub flags: u8,
    /// Portal address.
    pub ip: Option<IpAddr>,
    /// Portal TCP port.
    pub port: u16,
    /// Boot LUN.
    pub lun: Lun,
    /// Authentication.
    pub chap_type: ChapType,
    /// Index of the NIC that reaches the target.
    pub nic: u8,
    /// Target name.
    pub name: Option<String>,
    /// CHAP name.
    pub chap_user: Option<String>,
    /// CHAP secret.
    pub chap_secret: Option<Secret>,
    /// Reverse CHAP name (the name the target proves).
    pub reverse_chap_user: Option<String>,
    /// Reverse CHAP secret.
    pub reverse_chap_secret: Option<Secret>,
}

/// The 8 raw bytes of a SCSI LUN (SAM-5 §4.7).
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
pub struct Lun(pub [u8; 8]);

impl Lun {
    /// The single-level LUN `n` the way iPXE writes it: `n` big-endian in the first two bytes.
    pub fn from_number(n: u16) -> Lun {
        let [hi, lo] = n.to_be_bytes();
        Lun([hi, lo, 0, 0, 0, 0, 0, 0])
    }

    /// The LUN number of a single-level LUN with peripheral or flat addressing; `None` for
    /// multi-level and extended LUNs, which an `iscsi://` URL cannot express.
    pub fn number(&self) -> Option<u16> {
        let [hi, lo, rest @ ..] = self.0;
        let method = hi >> 6;
        (method <= 1 && rest == [0; 6]).then_some(u16::from_be_bytes([hi & 0x3f, lo]))
    }

    /// The 8 bytes as 16 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// An Ethernet MAC address; `Display` is lower-case and colon-separated.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A PCI bus/device/function as the iBFT packs it; `Display` is `bb:dd.f`.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
pub struct PciBdf(pub u16);

impl PciBdf {
    /// Packs bus, device (0–31) and function (0–7); extra bits of `device`/`function` are
    /// dropped.
    pub fn new(bus: u8, device: u8, function: u8) -> PciBdf {
        PciBdf(u16::from(bus) << 8 | u16::from(device & 0x1f) << 3 | u16::from(function & 7))
    }

    /// The bus number.
    pub fn bus(self) -> u8 {
        self.0.to_be_bytes()[0]
    }

    /// The device number.
    pub fn device(self) -> u8 {
        (self.0.to_be_bytes()[1] >> 3) & 0x1f
    }

    /// The function number.
    pub fn function(self) -> u8 {
        self.0.to_be_bytes()[1] & 7
    }
}

impl fmt::Display for PciBdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{:x}",
            self.bus(),
            self.device(),
            self.function()
        )
    }
}

/// A CHAP secret: `Debug` never shows it; [`Secret::expose`] does, on purpose.
#[derive(Clone, Eq, PartialEq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: String) -> Secret {
        Secret(secret)
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Decodes a 16-byte iBFT address: all zeros and `::ffff:0.0.0.0` are absent, IPv4-mapped
/// addresses become IPv4.
pub fn decode_addr(bytes: [u8; 16]) -> Option<IpAddr> {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) if v4.is_unspecified() => None,
        Some(v4) => Some(IpAddr::V4(v4)),
        None if v6.is_unspecified() => None,
        None => Some(IpAddr::V6(v6)),
    }
}

/// Encodes an address for the table: IPv4 mapped, absent as all zeros.
pub fn encode_addr(addr: Option<IpAddr>) -> [u8; 16] {
    match addr {
        None => [0; 16],
        Some(IpAddr::V4(v4)) => v4.to_ipv6_mapped().octets(),
        Some(IpAddr::V6(v6)) => v6.octets(),
    }
}

/// Whether `addr` lies in the subnet `net`/`prefix` (both of one family).
pub fn in_subnet(addr: IpAddr, net: IpAddr, prefix: u8) -> Option<bool> {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if prefix <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            Some(u32::from(a) & mask == u32::from(n) & mask)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if prefix <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            Some(u128::from(a) & mask == u128::from(n) & mask)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn addresses_decode_absent_mapped_and_v6() {
        assert_eq!(decode_addr([0; 16]), None);
        let mut mapped_zero = [0; 16];
        mapped_zero[10] = 0xff;
        mapped_zero[11] = 0xff;
        assert_eq!(decode_addr(mapped_zero), None);
        let v4 = Ipv4Addr::new(10, 0, 2, 15);
        assert_eq!(
            decode_addr(v4.to_ipv6_mapped().octets()),
            Some(IpAddr::V4(v4))
        );
        let v6: Ipv6Addr = "fe80::1".parse().unwrap();
        assert_eq!(decode_addr(v6.octets()), Some(IpAddr::V6(v6)));
        assert_eq!(
            encode_addr(Some(IpAddr::V4(v4))),
            v4.to_ipv6_mapped().octets()
        );
    }

    #[test]
    fn lun_numbers() {
        assert_eq!(Lun::from_number(1).to_hex(), "0001000000000000");
        assert_eq!(Lun::from_number(1).number(), Some(1));
        assert_eq!(Lun([0x40, 0x05, 0, 0, 0, 0, 0, 0]).number(), Some(5));
        assert_eq!(Lun([0x41, 0x00, 0, 0, 0, 0, 0, 0]).number(), Some(256));
        assert_eq!(Lun([0x00, 0x01, 0x00, 0x02, 0, 0, 0, 0]).number(), None);
        assert_eq!(Lun([0xc0, 0x01, 0, 0, 0, 0, 0, 0]).number(), None);
    }

    #[test]
    fn pci_and_mac_display() {
        assert_eq!(PciBdf::new(0, 3, 0).to_string(), "00:03.0");
        assert_eq!(PciBdf(0x0a19).to_string(), "0a:03.1");
        assert_eq!(
            MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]).to_string(),
            "52:54:00:12:34:56"
        );
    }

    #[test]
    fn subnets() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(in_subnet(ip("10.0.2.2"), ip("10.0.2.15"), 24), Some(true));
        assert_eq!(in_subnet(ip("10.0.3.2"), ip("10.0.2.15"), 24), Some(false));
        assert_eq!(in_subnet(ip("10.0.3.2"), ip("10.0.2.15"), 0), Some(true));
        assert_eq!(in_subnet(ip("10.0.2.15"), ip("10.0.2.15"), 32), Some(true));
        assert_eq!(in_subnet(ip("fe80::2"), ip("fe80::1"), 64), Some(true));
        assert_eq!(in_subnet(ip("fe80::2"), ip("10.0.2.15"), 24), None);
        assert_eq!(in_subnet(ip("10.0.2.2"), ip("10.0.2.15"), 33), None);
    }

    #[test]
    fn secret_debug_is_masked() {
        let secret = Secret::new("hunter2hunter2".into());
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(secret.expose(), "hunter2hunter2");
    }
}
