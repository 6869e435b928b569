//! Source tests against temporary files and trees standing in for sysfs and physical memory.

use std::fs;
use std::net::IpAddr;
use std::path::Path;

use super::*;
use crate::model::{Ibft, Lun};
use crate::testdata::{table, table_bytes};
use crate::warning::Code;
use crate::writer::{self, Layout};

/// A fake `/dev/mem`: 1 MiB of zeros with `tables` placed at their physical addresses.
fn fake_mem(dir: &Path, len: u64, tables: &[(u64, &[u8])]) -> std::path::PathBuf {
    let path = dir.join("mem");
    let mut bytes = vec![0u8; usize::try_from(len).unwrap()];
    for (at, table) in tables {
        let at = usize::try_from(*at).unwrap();
        let end = bytes.len().min(at + table.len());
        bytes[at..end].copy_from_slice(&table[..end - at]);
    }
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn file_source_reads_and_classifies_failures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.bin");
    fs::write(&path, table_bytes()).unwrap();
    let found = read_file(&path).unwrap();
    assert_eq!((found.kind, found.parsed.ibft), (SourceKind::File, table()));

    let absent = read_file(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(absent, SourceError::Absent { .. }), "{absent}");
    assert!(absent.to_string().ends_with("nope: absent"));

    fs::write(&path, vec![0u8; (MAX_TABLE_FILE + 1) as usize]).unwrap();
    assert!(matches!(
        read_file(&path),
        Err(SourceError::TooLarge { .. })
    ));

    fs::write(&path, &table_bytes()[..100]).unwrap();
    let invalid = read_file(&path).unwrap_err();
    assert!(
        invalid
            .to_string()
            .contains("table truncated: 409 bytes needed, 100 available")
    );

    let not_a_file = read_file(dir.path()).unwrap_err();
    assert!(matches!(not_a_file, SourceError::Io { .. }), "{not_a_file}");
}

#[test]
fn acpi_source_tries_the_three_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let absent = read_acpi(dir.path()).unwrap_err();
    assert!(absent.to_string().ends_with("iBFT: absent"), "{absent}");
    let mut bytes = table_bytes();
    bytes[..4].copy_from_slice(b"BIFT");
    bytes[9] = bytes[9].wrapping_add(b'i' - b'I'); // "iB" became "BI"
    fs::write(dir.path().join("BIFT"), &bytes).unwrap();
    let found = read_acpi(dir.path()).unwrap();
    assert_eq!(found.kind, SourceKind::Acpi);
    assert!(found.location.ends_with("BIFT"));
    let codes: Vec<Code> = found.parsed.warnings.iter().map(|w| w.code).collect();
    assert_eq!(codes, vec![Code::SignatureVariant]);
}

#[test]
fn mem_scan_finds_aligned_tables_outside_the_vga_hole() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = table_bytes();
    let mem = fake_mem(dir.path(), 0x10_0000, &[(0x9_f000, &bytes)]);
    let found = scan_mem(&mem).unwrap();
    assert_eq!(found.kind, SourceKind::Mem);
    assert!(found.location.ends_with("at 0x9f000"), "{}", found.location);
    assert_eq!(found.parsed.ibft, table());

    let mem = fake_mem(
        dir.path(),
        0x10_0000,
        &[(0xa_8000, &bytes), (0x9_0008, &bytes)],
    );
    let error = scan_mem(&mem).unwrap_err();
    assert!(
        matches!(error, SourceError::NoSignature { .. }),
        "VGA hole, unaligned: {error}"
    );

    let mem = fake_mem(dir.path(), 0x10_0000, &[(0xf_ff00, &bytes)]);
    let error = scan_mem(&mem).unwrap_err().to_string();
    assert!(error.contains("0xfff00: table truncated"), "{error}");
}

#[test]
fn mem_scan_skips_bad_checksums_and_short_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = table_bytes();
    let mut bad = table_bytes();
    bad[9] ^= 0x55;
    let mem = fake_mem(
        dir.path(),
        0x10_0000,
        &[(0x8_0000, &bad), (0xe_0010, &good)],
    );
    let found = scan_mem(&mem).unwrap();
    assert!(found.location.ends_with("at 0xe0010"), "{}", found.location);

    let mem = fake_mem(dir.path(), 0x8_1000, &[(0x8_0010, &bad)]);
    let error = scan_mem(&mem).unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("rejected: 0x80010: bad checksum"),
        "{error}"
    );

    let mem = fake_mem(
        dir.path(),
        0x9_f000 + good.len() as u64,
        &[(0x9_f000, &good)],
    );
    assert!(
        scan_mem(&mem).is_ok(),
        "a file ending right after the table"
    );
    let empty = fake_mem(dir.path(), 0, &[]);
    assert!(matches!(
        scan_mem(&empty),
        Err(SourceError::NoSignature { .. })
    ));
}

#[test]
fn mem_scan_caps_the_rejection_list() {
    let dir = tempfile::tempdir().unwrap();
    let stray: Vec<u8> = (0..0x1000).map(|i| b"iBFT"[i % 4]).collect();
    let mem = fake_mem(dir.path(), 0x10_0000, &[(0x9_0000, &stray)]);
    let SourceError::Rejected { reasons, .. } = scan_mem(&mem).unwrap_err() else {
        panic!("expected rejection");
    };
    assert_eq!(reasons.len(), 9);
    assert_eq!(reasons[8], "248 more");
}

/// Writes `ibft` as `iscsi_ibft.ko` shows it: hidden absent attributes, `%pI4`/`%pI6`
/// addresses, `%x` per LUN byte, a `device` link for the PCI location.
fn fake_sysfs(dir: &Path, ibft: &Ibft) {
    let put = |sub: &str, name: &str, value: &str| {
        fs::create_dir_all(dir.join(sub)).unwrap();
        fs::write(dir.join(sub).join(name), format!("{value}\n")).unwrap();
    };
    let ip = |ip: Option<IpAddr>| match ip {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => v6.segments().map(|s| format!("{s:04x}")).join(":"),
        None => "0000:0000:0000:0000:0000:0000:0000:0000".to_owned(),
    };
    put("acpi_header", "signature", "iBFT");
    put("acpi_header", "oem_id", &ibft.header.oem_id);
    put("acpi_header", "oem_table_id", &ibft.header.oem_table_id);
    if let Some(i) = &ibft.initiator {
        put("initiator", "index", &i.index.to_string());
        put("initiator", "flags", &i.flags.to_string());
        put("initiator", "initiator-name", i.name.as_deref().unwrap());
    }
    for nic in &ibft.nics {
        let sub = format!("ethernet{}", nic.index);
        for (name, value) in [
            ("index", nic.index.to_string()),
            ("flags", nic.flags.to_string()),
            ("ip-addr", ip(nic.ip)),
            ("prefix-len", nic.prefix.to_string()),
            ("subnet-mask", "255.255.255.0".to_owned()),
            ("origin", nic.origin.0.to_string()),
            ("gateway", ip(nic.gateway)),
            ("primary-dns", ip(nic.primary_dns)),
            ("dhcp", ip(nic.dhcp)),
            ("vlan", nic.vlan.to_string()),
            ("mac", nic.mac.to_string()),
            ("hostname", nic.hostname.clone().unwrap()),
        ] {
            put(&sub, name, &value);
        }
        let bdf = nic.pci_bdf.unwrap();
        let link = format!("../../../devices/pci0000:00/0000:{bdf}");
        std::os::unix::fs::symlink(link, dir.join(&sub).join("device")).unwrap();
    }
    for t in &ibft.targets {
        let sub = format!("target{}", t.index);
        let lun: String = t.lun.0.iter().map(|b| format!("{b:x}")).collect();
        for (name, value) in [
            ("index", t.index.to_string()),
            ("flags", t.flags.to_string()),
            ("ip-addr", ip(t.ip)),
            ("port", t.port.to_string()),
            ("lun", lun),
            ("chap-type", t.chap_type.0.to_string()),
            ("nic-assoc", t.nic.to_string()),
            ("target-name", t.name.clone().unwrap()),
            ("chap-name", t.chap_user.clone().unwrap()),
            (
                "chap-secret",
                t.chap_secret.as_ref().unwrap().expose().to_owned(),
            ),
        ] {
            put(&sub, name, &value);
        }
    }
}

#[test]
fn sysfs_source_reconstructs_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = table();
    expected.targets[0].ip = Some("fd00::2".parse().unwrap());
    fake_sysfs(dir.path(), &expected);
    let found = read_sysfs(dir.path()).unwrap();
    assert_eq!(found.kind, SourceKind::Sysfs);
    assert_eq!(found.parsed.warnings, vec![]);
    expected.header.revision = None;
    expected.header.length = None;
    expected.header.checksum_ok = None;
    assert_eq!(found.parsed.ibft, expected);

    fs::write(dir.path().join("target0/port"), "http\n").unwrap();
    let error = read_sysfs(dir.path()).unwrap_err().to_string();
    assert!(
        error.ends_with("target0/port: cannot parse \"http\""),
        "{error}"
    );
    fs::write(dir.path().join("target0/port"), "3260\n").unwrap();
    fs::write(dir.path().join("target0/flags"), "0\n").unwrap();
    assert!(
        read_sysfs(dir.path())
            .unwrap()
            .parsed
            .ibft
            .targets
            .is_empty(),
        "not in use"
    );

    let absent = read_sysfs(&dir.path().join("ibft")).unwrap_err();
    assert!(matches!(absent, SourceError::Absent { .. }));
}

#[test]
fn sysfs_lun_decoding() {
    let lun = |hex: &str| decode_sysfs_lun(hex).map(|(lun, guessed)| (lun.to_hex(), guessed));
    assert_eq!(lun("01000000"), Some(("0001000000000000".into(), false)));
    assert_eq!(lun("4010000000"), Some(("4010000000000000".into(), false)));
    assert_eq!(
        lun("1020304050607080"),
        Some(("1020304050607080".into(), false))
    );
    assert_eq!(lun("0ff000000"), Some(("00ff000000000000".into(), true)));
    assert_eq!(lun("123000000"), Some(("0123000000000000".into(), true)));
    assert_eq!(lun("0102000"), None);
    assert_eq!(lun("01g00000"), None);
    assert_eq!(lun("00000000000000000"), None);
    assert_eq!(decode_sysfs_lun("01000000").unwrap().0, Lun::from_number(1));
}

#[test]
fn auto_tries_acpi_then_mem_then_sysfs_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let roots = Roots {
        acpi_tables: dir.path().join("tables"),
        mem: dir.path().join("mem"),
        sysfs: dir.path().join("ibft"),
    };
    let error = read_auto(&roots).unwrap_err().to_string();
    assert!(error.starts_with("no iBFT found; acpi: "), "{error}");
    assert!(error.contains("tables/iBFT: absent; mem: "), "{error}");
    assert!(error.contains("mem: absent; sysfs: "), "{error}");
    assert!(error.ends_with("ibft: absent"), "{error}");

    fake_sysfs(&roots.sysfs, &table());
    assert_eq!(read_auto(&roots).unwrap().kind, SourceKind::Sysfs);
    let other = writer::emit(
        &table(),
        &Layout {
            align: 1,
            ..Layout::default()
        },
    )
    .unwrap();
    fake_mem(dir.path(), 0x10_0000, &[(0xf_0000, &other)]);
    assert_eq!(read_auto(&roots).unwrap().kind, SourceKind::Mem);
    fs::create_dir(&roots.acpi_tables).unwrap();
    fs::write(roots.acpi_tables.join("iBFT"), table_bytes()).unwrap();
    assert_eq!(read_auto(&roots).unwrap().kind, SourceKind::Acpi);
}

#[test]
fn acpi_source_finds_a_numbered_table() {
    let dir = tempfile::tempdir().unwrap();
    let table = crate::testdata::table_bytes();
    std::fs::write(dir.path().join("iBFT1"), &table).unwrap();
    std::fs::write(dir.path().join("iBFT2"), &table).unwrap();
    let found = read_acpi(dir.path()).unwrap();
    assert!(found.location.ends_with("iBFT1"), "{}", found.location);
}
