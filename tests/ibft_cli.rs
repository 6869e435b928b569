//! `sanshim ibft` end to end: the built binary reads table files written by
//! `sanshim_ibft::writer` and prints them in every format.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output};

use sanshim_ibft::writer::{self, Layout};
use sanshim_ibft::{
    ChapType, Header, Ibft, Initiator, Lun, MacAddr, Nic, Origin, PciBdf, Secret, Target,
};
use serde_json::{Value, json};

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

fn nic(index: u8, addr: &str, prefix: u8) -> Nic {
    Nic {
        index,
        flags: 3,
        ip: ip(addr),
        prefix,
        origin: Origin::DHCP,
        gateway: ip("10.0.2.2"),
        primary_dns: ip("10.0.2.3"),
        secondary_dns: None,
        dhcp: ip("10.0.2.2"),
        vlan: 0,
        mac: MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56 + index]),
        pci_bdf: Some(PciBdf::new(0, 3 + index, 0)),
        hostname: None,
    }
}

fn target(index: u8, addr: &str) -> Target {
    Target {
        index,
        flags: 3,
        ip: ip(addr),
        port: 3260,
        lun: Lun::from_number(1),
        chap_type: ChapType::ONE_WAY,
        nic: 0,
        name: Some("iqn.2026-11.test:disk".into()),
        chap_user: Some("alice".into()),
        chap_secret: Some(Secret::new("s3cret-s3cret".into())),
        reverse_chap_user: None,
        reverse_chap_secret: None,
    }
}

/// What iPXE writes after `sanhook` with one URL and CHAP.
fn ipxe_like() -> Ibft {
    Ibft {
        header: Header {
            signature: *b"iBFT",
            revision: Some(1),
            length: None,
            checksum_ok: None,
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
            name: Some("iqn.2026-11.test:client".into()),
        }),
        nics: vec![nic(0, "10.0.2.15", 24)],
        targets: vec![target(0, "10.0.2.2")],
    }
}

fn write_table(dir: &Path, ibft: &Ibft, layout: &Layout) -> String {
    let path = dir.join("ibft.bin");
    std::fs::write(&path, writer::emit(ibft, layout).unwrap()).unwrap();
    path.to_str().unwrap().to_owned()
}

fn sanshim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sanshim"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout_of(args: &[&str]) -> String {
    let output = sanshim(args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn json_follows_the_design_schema() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_table(dir.path(), &ipxe_like(), &Layout::default());
    let document: Value =
        serde_json::from_str(&stdout_of(&["ibft", "--source", &file, "--format", "json"])).unwrap();
    let length = std::fs::metadata(&file).unwrap().len();
    let expected = json!({
        "source": "file",
        "header": { "oem_id": "FENSYS", "oem_table_id": "iPXE", "revision": 1,
                    "length": length, "checksum_ok": true },
        "initiator": { "name": "iqn.2026-11.test:client", "flags": 3, "isns": null,
                       "slp": null, "primary_radius": null, "secondary_radius": null },
        "nics": [ { "index": 0, "flags": 3, "ip": "10.0.2.15", "prefix": 24, "origin": 3,
                    "gateway": "10.0.2.2", "primary_dns": "10.0.2.3", "secondary_dns": null,
                    "dhcp": "10.0.2.2", "vlan": 0, "mac": "52:54:00:12:34:56",
                    "pci_bdf": "00:03.0", "hostname": null } ],
        "targets": [ { "index": 0, "flags": 3, "ip": "10.0.2.2", "port": 3260, "lun": 1,
                       "lun_raw": "0001000000000000", "chap_type": 1, "nic": 0,
                       "name": "iqn.2026-11.test:disk", "chap_user": "alice",
                       "chap_secret": "***", "reverse_chap_user": null,
                       "reverse_chap_secret": null,
                       "url": "iscsi://alice@10.0.2.2:3260/iqn.2026-11.test:disk/1" } ],
        "warnings": []
    });
    assert_eq!(document, expected);

    let shown: Value = serde_json::from_str(&stdout_of(&[
        "ibft",
        "--source",
        &file,
        "--format",
        "json",
        "--show-secrets",
    ]))
    .unwrap();
    assert_eq!(shown["targets"][0]["chap_secret"], "s3cret-s3cret");
}

#[test]
fn json_carries_warnings_and_ipv6() {
    let dir = tempfile::tempdir().unwrap();
    let mut ibft = ipxe_like();
    ibft.header.signature = *b"IBFT";
    ibft.targets[0].ip = ip("fd00::2");
    ibft.targets[0].chap_type = ChapType::NONE;
    let layout = Layout {
        bad_checksum: true,
        ..Layout::default()
    };
    let file = write_table(dir.path(), &ibft, &layout);
    let out = stdout_of(&["ibft", "--source", &file, "--format", "json"]);
    let document: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(document["header"]["checksum_ok"], false);
    assert_eq!(document["targets"][0]["ip"], "fd00::2");
    let url = "iscsi://alice@[fd00::2]:3260/iqn.2026-11.test:disk/1";
    assert_eq!(document["targets"][0]["url"], url);
    let codes: Vec<&str> = document["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "signature-variant",
            "bad-checksum",
            "no-chap",
            "target-routed"
        ]
    );
    assert!(!out.contains("s3cret"));
}

#[test]
fn multipath_table_with_three_targets() {
    let dir = tempfile::tempdir().unwrap();
    let mut ibft = ipxe_like();
    ibft.nics.push(nic(1, "10.0.3.15", 24));
    ibft.targets.push(target(1, "10.0.3.2"));
    ibft.targets[1].nic = 1;
    ibft.targets.push(target(2, "10.0.2.4"));
    ibft.targets[2].name = Some("iqn.2026-11.test:Other".into());
    let file = write_table(dir.path(), &ibft, &Layout::default());

    let json: Value =
        serde_json::from_str(&stdout_of(&["ibft", "--source", &file, "--format", "json"])).unwrap();
    assert_eq!(json["targets"].as_array().unwrap().len(), 3);
    assert_eq!(json["targets"][1]["nic"], 1);
    let codes: Vec<&str> = json["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        ["kernel-ignores", "uppercase-iqn"],
        "multipath is an info"
    );

    let text = stdout_of(&["ibft", "--source", &file]);
    assert!(
        text.contains("info: iqn.2026-11.test:disk LUN 1 is offered on 2 portals"),
        "{text}"
    );
    assert!(text.contains(
        "target 2 (flags 0x03: valid, boot selected): iqn.2026-11.test:Other at 10.0.2.4:3260"
    ));
    assert!(text.contains("secret ***"));
    assert!(!text.contains("s3cret"));

    let urls = stdout_of(&["ibft", "--source", &file, "--format", "url"]);
    let expected = "iscsi://alice@10.0.2.2:3260/iqn.2026-11.test:disk/1\n\
                    iscsi://alice@10.0.3.2:3260/iqn.2026-11.test:disk/1\n\
                    iscsi://alice@10.0.2.4:3260/iqn.2026-11.test:Other/1\n";
    assert_eq!(urls, expected);
}

#[test]
fn env_output_is_safe_to_source() {
    let dir = tempfile::tempdir().unwrap();
    let mut ibft = ipxe_like();
    let hostile = "iqn.x:'$(touch pwned)'`id`\n\"; exit 1; \"";
    ibft.targets[0].name = Some(hostile.into());
    let file = write_table(
        dir.path(),
        &ibft,
        &Layout {
            align: 1,
            ..Layout::default()
        },
    );
    let env = stdout_of(&["ibft", "--source", &file, "--format", "env"]);
    std::fs::write(dir.path().join("ibft.env"), &env).unwrap();
    let output = Command::new("sh")
        .arg("-c")
        .arg(
            ". ./ibft.env; printf '%s|%s|%s' \"$IBFT_TARGET0_NAME\" \"$IBFT_NIC0_IP\" \
              \"$IBFT_TARGET0_CHAP_SECRET\"",
        )
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("{hostile}|10.0.2.15|***")
    );
    assert!(!dir.path().join("pwned").exists());
}

#[test]
fn failures_name_the_source_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.bin");
    let output = sanshim(&["ibft", "--source", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("missing.bin: absent"), "{stderr}");
    assert!(output.stdout.is_empty());

    let file = write_table(dir.path(), &ipxe_like(), &Layout::default());
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 1]).unwrap();
    let output = sanshim(&["ibft", "--source", &file, "--format", "json"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("table truncated"), "{stderr}");

    let output = sanshim(&["ibft", "--format", "yaml"]);
    assert_eq!(output.status.code(), Some(2));
}
