//! Test data shared by the unit tests: one table written by hand, field by field, and its
//! owned form.

use std::net::{IpAddr, Ipv4Addr};

use crate::code::{ChapType, Origin};
use crate::model::{Header, Ibft, Initiator, Lun, MacAddr, Nic, PciBdf, Secret, Target};

/// Length of [`table_bytes`].
pub const TABLE_LEN: usize = 409;

/// `::ffff:a.b.c.d`
pub fn mapped(a: u8, b: u8, c: u8, d: u8) -> Vec<u8> {
    [&[0u8; 10][..], &[0xff, 0xff], &[a, b, c, d]].concat()
}

/// The table iPXE would write for one NIC and one target with one-way CHAP.
#[rustfmt::skip]
pub fn table_bytes() -> Vec<u8> {
    [
        // ACPI header @0
        &b"iBFT"[..],                        // signature
        &[0x99, 0x01, 0x00, 0x00],           // length 409
        &[0x01],                             // revision 1
        &[0xdc],                             // checksum: byte sum 0
        b"FENSYS",                           // OEM id
        b"iPXE\0\0\0\0",                     // OEM table id
        &[0; 12],                            // OEM revision, creator id, creator revision
        &[0; 12],                            // reserved
        // control @48
        &[0x01, 0x01, 0x12, 0x00, 0x00, 0x00], // id 1, version 1, length 18, index 0, flags 0
        &[0x00, 0x00],                       // extensions: none
        &[0x50, 0x00],                       // initiator @80
        &[0xa0, 0x00, 0x10, 0x01],           // NIC 0 @160, target 0 @272
        &[0x00, 0x00, 0x00, 0x00],           // NIC 1, target 1: none
        &[0; 14],                            // pad to 80
        // initiator @80
        &[0x02, 0x01, 0x4a, 0x00, 0x00, 0x03], // id 2, version 1, length 74, index 0, flags 3
        &[0; 64],                            // iSNS, SLP, RADIUS 1, RADIUS 2: absent
        &[0x18, 0x00, 0x50, 0x01],           // name: 24 bytes @336
        &[0; 6],                             // pad to 160
        // NIC @160
        &[0x03, 0x01, 0x66, 0x00, 0x00, 0x03], // id 3, version 1, length 102, index 0, flags 3
        &mapped(10, 0, 2, 15),               // IP
        &[24, 3],                            // prefix /24, origin DHCP
        &mapped(10, 0, 2, 2),                // gateway
        &mapped(10, 0, 2, 3),                // primary DNS
        &[0; 16],                            // secondary DNS: absent
        &mapped(10, 0, 2, 2),                // DHCP server
        &[0x00, 0x00],                       // VLAN none
        &[0x52, 0x54, 0x00, 0x12, 0x34, 0x56], // MAC
        &[0x18, 0x00],                       // PCI 00:03.0
        &[0x06, 0x00, 0x69, 0x01],           // host name: 6 bytes @361
        &[0; 10],                            // pad to 272
        // target @272
        &[0x04, 0x01, 0x36, 0x00, 0x00, 0x03], // id 4, version 1, length 54, index 0, flags 3
        &mapped(10, 0, 2, 2),                // IP
        &[0xbc, 0x0c],                       // port 3260
        &[0x00, 0x01, 0, 0, 0, 0, 0, 0],     // LUN 1
        &[0x01, 0x00],                       // CHAP one-way, NIC 0
        &[0x16, 0x00, 0x70, 0x01],           // name: 22 bytes @368
        &[0x04, 0x00, 0x87, 0x01],           // CHAP name: 4 bytes @391
        &[0x0c, 0x00, 0x8c, 0x01],           // CHAP secret: 12 bytes @396
        &[0; 8],                             // reverse CHAP name and secret: none
        &[0; 10],                            // pad to 336
        // strings @336
        b"iqn.2026-11.local:client\0",       // @336
        b"client\0",                         // @361
        b"iqn.2026-11.local:disk\0",         // @368
        b"user\0",                           // @391
        b"secretsecret\0",                   // @396
    ]
    .concat()
}

pub fn v4(a: u8, b: u8, c: u8, d: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
}

/// The owned form of [`table_bytes`].
pub fn table() -> Ibft {
    Ibft {
        header: Header {
            signature: *b"iBFT",
            revision: Some(1),
            length: Some(TABLE_LEN as u32),
            checksum_ok: Some(true),
            oem_id: "FENSYS".into(),
            oem_table_id: "iPXE".into(),
        },
        control_flags: 0,
        initiator: Some(Initiator {
            index: 0,
            flags: 3,
            isns: None,
            slp: None,
            primary_radius: None,
            secondary_radius: None,
            name: Some("iqn.2026-11.local:client".into()),
        }),
        nics: vec![Nic {
            index: 0,
            flags: 3,
            ip: v4(10, 0, 2, 15),
            prefix: 24,
            origin: Origin::DHCP,
            gateway: v4(10, 0, 2, 2),
            primary_dns: v4(10, 0, 2, 3),
            secondary_dns: None,
            dhcp: v4(10, 0, 2, 2),
            vlan: 0,
            mac: MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            pci_bdf: Some(PciBdf::new(0, 3, 0)),
            hostname: Some("client".into()),
        }],
        targets: vec![Target {
            index: 0,
            flags: 3,
            ip: v4(10, 0, 2, 2),
            port: 3260,
            lun: Lun::from_number(1),
            chap_type: ChapType::ONE_WAY,
            nic: 0,
            name: Some("iqn.2026-11.local:disk".into()),
            chap_user: Some("user".into()),
            chap_secret: Some(Secret::new("secretsecret".into())),
            reverse_chap_user: None,
            reverse_chap_secret: None,
        }],
    }
}
