//! Writer-generated tables for the kernel comparison: the shapes firmware produces (two NICs
//! and targets, VLANs, IPv6, CHAP, host names) laid out in the ways firmware lays them out
//! (packed, odd alignments, strings first, NULs counted, mapped-zero absent addresses,
//! flag-less filler structures), plus tables the kernel refuses on purpose.

use std::net::IpAddr;

use sanshim_ibft::writer::Layout;
use sanshim_ibft::{
    ChapType, Header, Ibft, Initiator, Lun, MacAddr, Nic, Origin, PciBdf, Secret, Target, flags,
};

/// What the kernel is expected to make of a table.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Kernel {
    /// Loads the driver and shows the valid structures as sanshim lists them.
    Agrees,
    /// Agrees like [`Kernel::Agrees`] when the driver loads; newer kernels (not Debian's 6.1)
    /// insist on an 18-byte control structure and refuse the table ("Control header is
    /// invalid"), which passes too.
    AgreesUnlessStrictControl,
    /// Loads but skips every structure (their length is not the one it insists on).
    SkipsStructures,
}

/// One table to boot.
pub struct Case {
    /// Short name, used in messages and file names.
    pub name: &'static str,
    /// The table's content.
    pub ibft: Ibft,
    /// How the writer lays it out.
    pub layout: Layout,
    /// The kernel's expected verdict.
    pub kernel: Kernel,
}

/// Every writer case, at least 20.
pub fn cases() -> Vec<Case> {
    let mut cases = shapes();
    cases.extend(layouts());
    cases.extend(refused());
    cases
}

fn case(name: &'static str, ibft: Ibft) -> Case {
    Case {
        name,
        ibft,
        layout: Layout::default(),
        kernel: Kernel::Agrees,
    }
}

fn shapes() -> Vec<Case> {
    vec![
        case("minimal", base()),
        case("two-nics-two-targets", two_paths()),
        case("vlans", {
            let mut t = two_paths();
            t.nics[0].vlan = 100;
            t.nics[1].vlan = 4094;
            t
        }),
        case("ipv6", {
            let mut t = base();
            t.nics[0] = Nic {
                ip: ip("2001:db8:0:1::15"),
                prefix: 64,
                origin: Origin::ROUTER_ADVERTISEMENT,
                gateway: ip("fe80::1"),
                primary_dns: ip("2001:db8::53"),
                secondary_dns: ip("2001:db8::54"),
                ..t.nics[0].clone()
            };
            t.targets[0].ip = ip("2001:db8:0:1::2");
            t
        }),
        case("ipv4-and-ipv6-paths", {
            let mut t = two_paths();
            t.nics[1].ip = ip("fe80::5054:ff:fe12:3457");
            t.nics[1].prefix = 10;
            t.nics[1].origin = Origin::WELL_KNOWN;
            t.targets[1].ip = ip("fe80::2");
            t
        }),
        case("chap-one-way", {
            let mut t = base();
            chap(&mut t.targets[0], "alice", "alice-secret-12", None);
            t
        }),
        case("chap-mutual", {
            let mut t = two_paths();
            chap(
                &mut t.targets[0],
                "alice",
                "alice-secret-12",
                Some(("tgt", "target-secret")),
            );
            let long = "x".repeat(40);
            chap(
                &mut t.targets[1],
                "bob",
                "b0b-secret-long-",
                Some(("tgt1", &long)),
            );
            t
        }),
        case("hostnames-dhcp", {
            let mut t = two_paths();
            t.nics[0].hostname = Some("client-a".to_owned());
            t.nics[0].origin = Origin::DHCP;
            t.nics[0].dhcp = ip("10.0.2.2");
            t.nics[1].hostname = Some("client-b.storage.example.org".to_owned());
            t
        }),
        case("long-names", {
            let mut t = base();
            let tail = "x".repeat(200);
            if let Some(i) = t.initiator.as_mut() {
                i.name = Some(format!("iqn.2026-11.test:{tail}"));
            }
            t.targets[0].name = Some(format!("iqn.2026-11.test:target.{tail}"));
            chap(&mut t.targets[0], &"u".repeat(120), &"s".repeat(100), None);
            t
        }),
        case("initiator-servers", {
            let mut t = base();
            if let Some(i) = t.initiator.as_mut() {
                i.isns = ip("10.0.9.1");
                i.slp = ip("10.0.9.2");
                i.primary_radius = ip("2001:db8::1812");
                i.secondary_radius = ip("10.0.9.4");
            }
            t
        }),
        case("luns", {
            let mut t = two_paths();
            t.targets[0].lun = Lun([0x40, 0x05, 0, 0, 0, 0, 0, 0]);
            t.targets[1].lun = Lun([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
            t
        }),
        case("lun0-prefix-edges", {
            let mut t = two_paths();
            t.targets[0].lun = Lun::from_number(0);
            t.nics[0].prefix = 32;
            t.nics[1].prefix = 0;
            t.nics[1].origin = Origin::OTHER;
            t
        }),
        case("flag-bits", {
            let mut t = two_paths();
            t.control_flags = flags::CONTROL_SINGLE_LOGIN;
            t.nics[0].flags = flags::IN_USE | flags::NIC_GLOBAL;
            t.nics[1].flags = flags::BLOCK_VALID;
            t.targets[0].flags =
                flags::IN_USE | flags::TARGET_RADIUS_CHAP | flags::TARGET_RADIUS_RCHAP;
            t.targets[1].flags = flags::BLOCK_VALID;
            t
        }),
        case("pci-and-oem", {
            let mut t = base();
            t.header.oem_id = "ABCDEF".to_owned();
            t.header.oem_table_id = "12345678".to_owned();
            t.nics[0].pci_bdf = Some(PciBdf::new(0, 1, 0));
            t.nics[0].mac = MacAddr([0x02, 0xff, 0xee, 0xdd, 0xcc, 0x01]);
            t
        }),
        case("invalid-structures", {
            let mut t = two_paths();
            t.nics[1].flags = 0;
            t.targets[1].flags = 0;
            t
        }),
        case("signature-IBFT", {
            let mut t = base();
            t.header.signature = *b"IBFT";
            t
        }),
    ]
}

fn layouts() -> Vec<Case> {
    let with = |name, ibft: Ibft, layout: Layout| Case {
        name,
        ibft,
        layout,
        kernel: Kernel::Agrees,
    };
    vec![
        with(
            "packed",
            mutual_two_paths(),
            Layout {
                align: 1,
                ..Layout::default()
            },
        ),
        with(
            "align2-strings-first",
            mutual_two_paths(),
            Layout {
                align: 2,
                strings_first: true,
                ..Layout::default()
            },
        ),
        with(
            "align4-nul-in-length",
            mutual_two_paths(),
            Layout {
                align: 4,
                nul_in_length: true,
                ..Layout::default()
            },
        ),
        with(
            "align8-mapped-zero-absent",
            mutual_two_paths(),
            Layout {
                align: 8,
                mapped_zero_absent: true,
                ..Layout::default()
            },
        ),
        with(
            "align3-filler-structures",
            base(),
            Layout {
                align: 3,
                unused_structures: true,
                ..Layout::default()
            },
        ),
    ]
}

/// Tables some kernel refuses in whole or part. A bad checksum cannot be among them: QEMU
/// recomputes the checksum of an `-acpitable` table.
fn refused() -> Vec<Case> {
    vec![
        Case {
            name: "three-pairs",
            ibft: {
                let mut t = two_paths();
                t.nics.push(Nic {
                    index: 2,
                    ..nic(2, "10.0.4.15")
                });
                t.targets.push(Target {
                    index: 2,
                    nic: 2,
                    ..target(2, "10.0.4.2")
                });
                t
            },
            layout: Layout::default(),
            kernel: Kernel::AgreesUnlessStrictControl,
        },
        Case {
            name: "padded-structures",
            ibft: two_paths(),
            layout: Layout {
                structure_padding: 6,
                ..Layout::default()
            },
            kernel: Kernel::SkipsStructures,
        },
    ]
}

fn base() -> Ibft {
    Ibft {
        header: Header {
            signature: *b"iBFT",
            revision: Some(1),
            length: None,
            checksum_ok: None,
            oem_id: "SANSHM".to_owned(),
            oem_table_id: "VMTEST".to_owned(),
        },
        control_flags: 0,
        initiator: Some(Initiator {
            index: 0,
            flags: flags::IN_USE,
            isns: None,
            slp: None,
            primary_radius: None,
            secondary_radius: None,
            name: Some("iqn.2026-11.test:initiator".to_owned()),
        }),
        nics: vec![nic(0, "10.0.2.15")],
        targets: vec![target(0, "10.0.2.2")],
    }
}

fn two_paths() -> Ibft {
    let mut t = base();
    t.nics.push(nic(1, "10.0.3.15"));
    t.targets.push(Target {
        nic: 1,
        port: 3261,
        ..target(1, "10.0.3.2")
    });
    t
}

fn mutual_two_paths() -> Ibft {
    let mut t = two_paths();
    t.nics[0].hostname = Some("layout-host".to_owned());
    chap(
        &mut t.targets[0],
        "alice",
        "alice-secret-12",
        Some(("tgt", "target-secret")),
    );
    chap(&mut t.targets[1], "alice", "alice-secret-12", None);
    t
}

fn nic(index: u8, addr: &str) -> Nic {
    Nic {
        index,
        flags: flags::IN_USE,
        ip: ip(addr),
        prefix: 24,
        origin: Origin::MANUAL,
        gateway: ip("10.0.2.2").filter(|_| index == 0),
        primary_dns: ip("10.0.2.3"),
        secondary_dns: None,
        dhcp: None,
        vlan: 0,
        mac: MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56 + index]),
        pci_bdf: Some(PciBdf::new(0, 3 + index, 0)),
        hostname: None,
    }
}

fn target(index: u8, addr: &str) -> Target {
    Target {
        index,
        flags: flags::IN_USE,
        ip: ip(addr),
        port: 3260,
        lun: Lun::from_number(1),
        chap_type: ChapType::NONE,
        nic: 0,
        name: Some(format!("iqn.2026-11.test:disk{index}")),
        chap_user: None,
        chap_secret: None,
        reverse_chap_user: None,
        reverse_chap_secret: None,
    }
}

fn chap(t: &mut Target, user: &str, secret: &str, reverse: Option<(&str, &str)>) {
    t.chap_type = ChapType::ONE_WAY;
    t.chap_user = Some(user.to_owned());
    t.chap_secret = Some(Secret::new(secret.to_owned()));
    if let Some((user, secret)) = reverse {
        t.chap_type = ChapType::MUTUAL;
        t.reverse_chap_user = Some(user.to_owned());
        t.reverse_chap_secret = Some(Secret::new(secret.to_owned()));
    }
}

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().expect("a test address"))
}
