//! Bounded property tests: writer → parser round trips over tables and layouts of every kind,
//! and the fuzz logic over random and mutated bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use crate::code::{ChapType, Origin, flags};
use crate::fuzzing;
use crate::model::{Header, Ibft, Initiator, Lun, MacAddr, Nic, PciBdf, Secret, Target};
use crate::testdata::table_bytes;
use crate::warning::Code;
use crate::writer::{self, Layout};

/// Addresses that survive the table: not unspecified, IPv6 not IPv4-mapped.
fn ip() -> impl Strategy<Value = Option<IpAddr>> {
    let v4 = any::<u32>()
        .prop_filter("specified", |a| *a != 0)
        .prop_map(|a| IpAddr::V4(Ipv4Addr::from(a)));
    let v6 = any::<u128>()
        .prop_map(Ipv6Addr::from)
        .prop_filter("v6 proper", |a| {
            !a.is_unspecified() && a.to_ipv4_mapped().is_none()
        })
        .prop_map(IpAddr::V6);
    prop_oneof![Just(None), v4.prop_map(Some), v6.prop_map(Some)]
}

/// Non-empty strings without NUL: printable, quotes, shell syntax, non-ASCII.
fn text() -> impl Strategy<Value = Option<String>> {
    option::of("[a-zA-Z0-9.:'\"$`\\\\ \n\u{e9}\u{1F600}-]{1,40}")
}

/// Flags, including the ignored 0 and the "boot selected only" seen in the field.
fn structure_flags() -> impl Strategy<Value = u8> {
    prop_oneof![Just(3u8), Just(1), Just(2), Just(0), Just(0x07), Just(0x0f)]
}

fn initiator() -> impl Strategy<Value = Initiator> {
    (
        any::<u8>(),
        structure_flags(),
        ip(),
        ip(),
        ip(),
        ip(),
        text(),
    )
        .prop_map(
            |(index, flags, isns, slp, primary_radius, secondary_radius, name)| Initiator {
                index,
                flags,
                isns,
                slp,
                primary_radius,
                secondary_radius,
                name,
            },
        )
}

fn nic() -> impl Strategy<Value = Nic> {
    let addrs = (ip(), ip(), ip(), ip(), ip());
    let rest = (
        any::<u8>(),
        structure_flags(),
        0u8..=128,
        any::<u8>(),
        0u16..4096,
    );
    let more = (any::<[u8; 6]>(), any::<u16>(), text());
    (addrs, rest, more).prop_map(|((ip, gateway, dns1, dns2, dhcp), r, m)| Nic {
        index: r.0,
        flags: r.1,
        ip,
        prefix: r.2,
        origin: Origin(r.3),
        gateway,
        primary_dns: dns1,
        secondary_dns: dns2,
        dhcp,
        vlan: r.4,
        mac: MacAddr(m.0),
        pci_bdf: Some(PciBdf(m.1)),
        hostname: m.2,
    })
}

fn target() -> impl Strategy<Value = Target> {
    let head = (
        any::<u8>(),
        structure_flags(),
        ip(),
        any::<u16>(),
        any::<[u8; 8]>(),
    );
    let chap = (0u8..4, any::<u8>(), text(), text(), text(), text(), text());
    (head, chap).prop_map(|(h, c)| Target {
        index: h.0,
        flags: h.1,
        ip: h.2,
        port: h.3,
        lun: Lun(h.4),
        chap_type: ChapType(c.0),
        nic: c.1,
        name: c.2,
        chap_user: c.3,
        chap_secret: c.4.map(Secret::new),
        reverse_chap_user: c.5,
        reverse_chap_secret: c.6.map(Secret::new),
    })
}

fn ibft() -> impl Strategy<Value = Ibft> {
    let signature = prop_oneof![Just(*b"iBFT"), Just(*b"IBFT"), Just(*b"BIFT")];
    let header = (
        signature,
        prop_oneof![Just(1u8), any::<u8>()],
        "[A-Z ]{0,6}",
        "[a-zA-Z]{0,8}",
    );
    let body = (
        any::<u8>(),
        option::of(initiator()),
        vec(nic(), 0..=2),
        vec(target(), 0..=3),
    );
    (header, body).prop_map(|((signature, revision, oem_id, oem_table_id), b)| Ibft {
        header: Header {
            signature,
            revision: Some(revision),
            length: None,
            checksum_ok: None,
            oem_id,
            oem_table_id,
        },
        control_flags: b.0,
        initiator: b.1,
        nics: b.2,
        targets: b.3,
    })
}

fn layout() -> impl Strategy<Value = Layout> {
    let align = prop_oneof![Just(1usize), Just(2), Just(4), Just(8), Just(16), Just(3)];
    let switches = (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    );
    (0usize..=5, align, switches, 0u16..=9).prop_map(|(pairs, align, s, structure_padding)| {
        Layout {
            pairs,
            align,
            strings_first: s.0,
            nul_in_length: s.1,
            mapped_zero_absent: s.2,
            unused_structures: s.3,
            structure_padding,
            bad_checksum: s.4,
        }
    })
}

/// What the parser must return for `ibft` written as `bytes` with `layout`.
fn expected(mut ibft: Ibft, bytes: &[u8], layout: &Layout) -> Ibft {
    let in_use = |f: u8| f & flags::IN_USE != 0;
    ibft.header.length = Some(u32::try_from(bytes.len()).unwrap());
    ibft.header.checksum_ok = Some(!layout.bad_checksum);
    ibft.initiator = ibft.initiator.filter(|i| in_use(i.flags));
    ibft.nics.retain(|n| in_use(n.flags));
    ibft.targets.retain(|t| in_use(t.flags));
    ibft
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn writer_parser_round_trip(ibft in ibft(), layout in layout()) {
        let bytes = writer::emit(&ibft, &layout).unwrap();
        let parsed = Ibft::parse(&bytes).unwrap();
        prop_assert_eq!(&parsed.ibft, &expected(ibft, &bytes, &layout));
        let bad = parsed.warnings.iter().any(|w| w.code == Code::BadChecksum);
        prop_assert_eq!(bad, layout.bad_checksum);
        let long_control = bytes[50..52] != [18, 0];
        let p = &parsed.ibft;
        let any_structure = p.initiator.is_some() || !p.nics.is_empty() || !p.targets.is_empty();
        let padded = layout.structure_padding > 0 && any_structure;
        let kernel = parsed.warnings.iter().any(|w| w.code == Code::KernelIgnores);
        prop_assert_eq!(kernel, long_control || padded);
    }

    #[test]
    fn fuzz_logic_on_random_bytes(bytes in vec(any::<u8>(), 0..600)) {
        fuzzing::parse_table(&bytes);
    }

    #[test]
    fn fuzz_logic_on_random_bytes_behind_a_valid_header(tail in vec(any::<u8>(), 0..600)) {
        let mut bytes = table_bytes()[..48].to_vec();
        let len = u32::try_from(48 + tail.len()).unwrap();
        bytes[4..8].copy_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&tail);
        fuzzing::parse_table(&bytes);
    }

    #[test]
    fn fuzz_logic_on_mutated_tables(
        ibft in ibft(),
        layout in layout(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = writer::emit(&ibft, &layout).unwrap();
        for (at, value) in edits {
            let at = at.index(bytes.len());
            bytes[at] = value;
        }
        fuzzing::parse_table(&bytes);
        let cut = cut.index(bytes.len());
        fuzzing::parse_table(&bytes[..cut]);
    }
}

#[test]
fn fuzz_logic_on_the_hand_written_table() {
    fuzzing::parse_table(&table_bytes());
}
