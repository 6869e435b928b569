//! Lint tests: each lint fires on the table that has its flaw, and only there.

use std::net::IpAddr;

use super::*;
use crate::model::{Lun, Secret};
use crate::testdata::{table, v4};
use crate::warning::Severity;

fn codes(ibft: &Ibft) -> Vec<Code> {
    check(ibft).iter().map(|w| w.code).collect()
}

#[test]
fn the_clean_table_has_no_lints() {
    assert_eq!(check(&table()), vec![]);
}

#[test]
fn uppercase_iqn_but_not_eui_or_naa() {
    let mut ibft = table();
    ibft.initiator.as_mut().unwrap().name = Some("iqn.2026-11.Local:Client".into());
    ibft.targets[0].name = Some("eui.02004567A425678D".into());
    assert_eq!(codes(&ibft), vec![Code::UppercaseIqn]);
    ibft.targets[0].name = Some("IQN.2026-11.local:disk".into());
    assert_eq!(codes(&ibft), vec![Code::UppercaseIqn, Code::UppercaseIqn]);
}

#[test]
fn target_outside_the_nic_subnet_is_routed() {
    let mut ibft = table();
    ibft.targets[0].ip = v4(192, 168, 7, 9);
    let lints = check(&ibft);
    assert_eq!(lints.len(), 1);
    assert_eq!(lints[0].code, Code::TargetRouted);
    assert!(
        lints[0].message.contains("through gateway 10.0.2.2"),
        "{}",
        lints[0].message
    );
    ibft.nics[0].prefix = 0;
    assert_eq!(codes(&ibft), vec![], "no prefix, no judgement");
    ibft.nics[0].prefix = 8;
    ibft.targets[0].ip = v4(10, 200, 0, 1);
    assert_eq!(codes(&ibft), vec![]);
    ibft.targets[0].ip = Some("fd00::1".parse().unwrap());
    let lints = check(&ibft);
    assert_eq!(lints[0].code, Code::TargetRouted);
    assert!(
        lints[0]
            .message
            .contains("in another address family than NIC 0's subnet")
    );
}

#[test]
fn target_without_address_is_by_hostname() {
    let mut ibft = table();
    ibft.targets[0].ip = None;
    assert_eq!(codes(&ibft), vec![Code::TargetByHostname]);
}

#[test]
fn chap_missing_or_incomplete() {
    let mut ibft = table();
    let target = &mut ibft.targets[0];
    target.chap_type = ChapType::NONE;
    target.chap_user = None;
    target.chap_secret = None;
    assert_eq!(codes(&ibft), vec![Code::NoChap]);
    ibft.targets[0].chap_type = ChapType::ONE_WAY;
    assert_eq!(codes(&ibft), vec![Code::ChapIncomplete]);
    let mut ibft = table();
    ibft.targets[0].chap_type = ChapType::MUTUAL;
    assert_eq!(codes(&ibft), vec![Code::ChapIncomplete]);
    ibft.targets[0].reverse_chap_user = Some("target".into());
    ibft.targets[0].reverse_chap_secret = Some(Secret::new("targetsecret".into()));
    assert_eq!(codes(&ibft), vec![]);
    ibft.targets[0].chap_type = ChapType(9);
    assert_eq!(codes(&ibft), vec![Code::ChapIncomplete]);
    assert!(check(&ibft).iter().all(|w| !w.message.contains("secret\"")));
}

#[test]
fn nic_association_must_name_a_nic_in_the_table() {
    let mut ibft = table();
    ibft.targets[0].nic = 1;
    assert_eq!(codes(&ibft), vec![Code::NicMissing]);
    ibft.nics[0].index = 1;
    assert_eq!(codes(&ibft), vec![]);
}

#[test]
fn dhcp_origin_needs_a_dhcp_server() {
    let mut ibft = table();
    ibft.nics[0].dhcp = None;
    assert_eq!(codes(&ibft), vec![Code::DhcpNoServer]);
    ibft.nics[0].origin = Origin::MANUAL;
    assert_eq!(codes(&ibft), vec![]);
}

#[test]
fn same_name_and_lun_on_several_portals_is_multipath_info() {
    let mut ibft = table();
    let mut second = ibft.targets[0].clone();
    second.index = 1;
    second.ip = v4(10, 0, 2, 3);
    ibft.targets.push(second.clone());
    let lints = check(&ibft);
    assert_eq!(lints.len(), 1, "{lints:?}");
    assert_eq!(
        (lints[0].code, lints[0].severity),
        (Code::Multipath, Severity::Info)
    );
    assert!(
        lints[0].message.contains("10.0.2.2:3260, 10.0.2.3:3260"),
        "{}",
        lints[0].message
    );

    // Another LUN of the same target, or the same portal twice, is not multipath.
    ibft.targets[1].lun = Lun::from_number(2);
    assert_eq!(codes(&ibft), vec![]);
    ibft.targets[1] = second;
    ibft.targets[1].ip = ibft.targets[0].ip;
    assert_eq!(codes(&ibft), vec![]);
    ibft.targets[1].ip = Some("fe80::1".parse::<IpAddr>().unwrap());
    ibft.nics[0].ip = None;
    let lints = check(&ibft);
    assert!(
        lints[0].message.contains("[fe80::1]:3260"),
        "{}",
        lints[0].message
    );
}
