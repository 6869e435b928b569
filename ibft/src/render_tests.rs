//! Rendering tests; the `env` output is sourced by a real `sh` with hostile values.

use std::process::Command;

use super::*;
use crate::model::Lun;
use crate::testdata::table;
use crate::warning::{Code, Warning};

const HOSTILE: [&str; 8] = [
    "it's",
    "'; touch /tmp/pwned-sanshim; '",
    "$(echo pwned)",
    "`echo pwned`",
    "line one\nline two\n",
    "back\\slash \"double\" ${HOME} $HOME *",
    "'''",
    "tab\there\r\u{1b}[31mred",
];

/// Sources `env` output in `sh` and prints one variable back.
fn source_and_print(script: &str, variable: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ibft.env"), script).unwrap();
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!(". ./ibft.env; printf %s \"${variable}\""))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn env_values_come_back_verbatim_from_sh() {
    for name in HOSTILE {
        let mut ibft = table();
        ibft.targets[0].name = Some(name.to_owned());
        ibft.nics[0].hostname = Some(name.to_owned());
        let script = env(&ibft, "file", Options::default());
        assert_eq!(source_and_print(&script, "IBFT_TARGET0_NAME"), name);
        assert_eq!(source_and_print(&script, "IBFT_NIC0_HOSTNAME"), name);
        assert_eq!(
            source_and_print(&script, "IBFT_INITIATOR_NAME"),
            "iqn.2026-11.local:client"
        );
    }
}

#[test]
fn env_drops_nul_and_uses_only_safe_names() {
    let mut ibft = table();
    ibft.targets[0].name = Some("a\0b".to_owned());
    let script = env(&ibft, "file", Options::default());
    assert_eq!(source_and_print(&script, "IBFT_TARGET0_NAME"), "ab");
    for line in script.lines() {
        let (name, _) = line.split_once('=').unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        );
    }
}

#[test]
fn env_lists_every_field() {
    let script = env(&table(), "acpi", Options::default());
    let expected = "\
IBFT_SOURCE='acpi'
IBFT_SIGNATURE='iBFT'
IBFT_OEM_ID='FENSYS'
IBFT_OEM_TABLE_ID='iPXE'
IBFT_CHECKSUM_OK='1'
IBFT_INITIATOR_NAME='iqn.2026-11.local:client'
IBFT_INITIATOR_FLAGS='3'
IBFT_INITIATOR_ISNS=''
IBFT_INITIATOR_SLP=''
IBFT_INITIATOR_PRIMARY_RADIUS=''
IBFT_INITIATOR_SECONDARY_RADIUS=''
IBFT_NIC_COUNT='1'
IBFT_NIC0_INDEX='0'
IBFT_NIC0_FLAGS='3'
IBFT_NIC0_IP='10.0.2.15'
IBFT_NIC0_PREFIX='24'
IBFT_NIC0_ORIGIN='3'
IBFT_NIC0_GATEWAY='10.0.2.2'
IBFT_NIC0_PRIMARY_DNS='10.0.2.3'
IBFT_NIC0_SECONDARY_DNS=''
IBFT_NIC0_DHCP='10.0.2.2'
IBFT_NIC0_VLAN='0'
IBFT_NIC0_MAC='52:54:00:12:34:56'
IBFT_NIC0_PCI_BDF='00:03.0'
IBFT_NIC0_HOSTNAME='client'
IBFT_TARGET_COUNT='1'
IBFT_TARGET0_INDEX='0'
IBFT_TARGET0_FLAGS='3'
IBFT_TARGET0_IP='10.0.2.2'
IBFT_TARGET0_PORT='3260'
IBFT_TARGET0_LUN='1'
IBFT_TARGET0_LUN_RAW='0001000000000000'
IBFT_TARGET0_CHAP_TYPE='1'
IBFT_TARGET0_NIC='0'
IBFT_TARGET0_NAME='iqn.2026-11.local:disk'
IBFT_TARGET0_CHAP_USER='user'
IBFT_TARGET0_CHAP_SECRET='***'
IBFT_TARGET0_REVERSE_CHAP_USER=''
IBFT_TARGET0_REVERSE_CHAP_SECRET=''
IBFT_TARGET0_URL='iscsi://user@10.0.2.2:3260/iqn.2026-11.local:disk/1'
";
    assert_eq!(script, expected);
    let shown = env(&table(), "acpi", Options { show_secrets: true });
    assert!(shown.contains("IBFT_TARGET0_CHAP_SECRET='secretsecret'\n"));
}

#[test]
fn urls() {
    let mut target = table().targets.remove(0);
    assert_eq!(
        url(&target).unwrap(),
        "iscsi://user@10.0.2.2:3260/iqn.2026-11.local:disk/1"
    );
    target.chap_user = Some("us@r:x/y".into());
    target.ip = Some("fd00::5".parse().unwrap());
    target.lun = Lun::from_number(300);
    let expected = "iscsi://us@r:x/y@[fd00::5]:3260/iqn.2026-11.local:disk/300";
    assert_eq!(url(&target).unwrap(), expected);
    target.chap_user = Some("50%off".into());
    assert_eq!(url(&target), None, "a '%' would start a secret");
    target.chap_user = None;
    target.name = Some("iqn.x:a b/c".into());
    assert_eq!(
        url(&target).unwrap(),
        "iscsi://[fd00::5]:3260/iqn.x:a%20b%2Fc/300"
    );
    target.lun = Lun([0, 1, 0, 2, 0, 0, 0, 0]);
    assert_eq!(url(&target), None, "multi-level LUN");
    target.lun = Lun::from_number(1);
    target.ip = None;
    assert_eq!(url(&target), None, "no address");
}

#[test]
fn text_shows_table_and_lints_and_masks_secrets() {
    let mut ibft = table();
    ibft.targets[0].name = Some("iqn.evil\u{1b}[2J".into());
    let warnings = [Warning::info(Code::Multipath, "two portals")];
    let out = text(&ibft, "/tmp/t.bin", &warnings, Options::default());
    assert!(
        out.contains("initiator: iqn.2026-11.local:client (flags 0x03: valid, boot selected)"),
        "{out}"
    );
    assert!(out.contains(
        "NIC 0 (flags 0x03: valid, boot selected): 10.0.2.15/24 (dhcp), MAC 52:54:00:12:34:56"
    ));
    assert!(out.contains(
        "target 0 (flags 0x03: valid, boot selected): iqn.evil\\u{1b}[2J at 10.0.2.2:3260 LUN 1"
    ));
    assert!(out.contains("CHAP one_way: user user secret ***"), "{out}");
    assert!(out.contains("info: two portals [multipath]"));
    assert!(!out.contains('\u{1b}'));
    assert!(!out.contains("secretsecret"));
    let shown = text(&ibft, "x", &[], Options { show_secrets: true });
    assert!(shown.contains("secret secretsecret"));
}
