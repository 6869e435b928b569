//! The fault proxy in front of a real tgtd: a whole login and a READ pass through it with
//! header and data digests on, and a flipped data bit becomes a data digest error.

mod support;
#[path = "../../tests/common/tgtd.rs"]
#[allow(dead_code)]
mod tgtd;

use std::path::PathBuf;
use std::time::Duration;

use sanshim_initiator::scsi::{Cdb, ReadCapacity10};
use sanshim_initiator::wire::{DecodeError, Pdu, ScsiStatus};
use sanshim_testbed::{FaultProxy, ProxyFault};
use support::{Client, RecvError};

const IQN: &str = "iqn.2024-01.org.sanshim:testbed-tgtd";

/// Finds `tool` like the workspace's test bed does; under CI a missing tool fails the test.
pub fn require_tool(tool: &str) -> Result<PathBuf, String> {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path.split(':').chain(["/usr/sbin", "/sbin", "/usr/bin"]) {
        let candidate = PathBuf::from(dir).join(tool);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let reason = format!("{tool} is not installed");
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("CI=true and {reason}");
    }
    Err(reason)
}

/// tgtd with one 4 MiB file LUN holding a known pattern, and CRC32C digests required.
fn tgtd_with_digests() -> Option<(tgtd::Tgtd, Vec<u8>)> {
    let mut t = match tgtd::Tgtd::try_start() {
        Ok(t) => t,
        Err(reason) => {
            eprintln!("SKIPPED: {reason}");
            return None;
        }
    };
    t.add_target(1, IQN);
    let path = t.add_file_lun(1, 1, 4 << 20);
    let pattern: Vec<u8> = (0..65_536u32).map(|i| (i * 13 % 253) as u8).collect();
    std::fs::write(&path, &pattern).expect("write the backing file");
    let file = std::fs::File::options().write(true).open(&path);
    file.and_then(|f| f.set_len(4 << 20))
        .expect("size the backing file");
    t.set_param(1, "HeaderDigest", "CRC32C");
    t.set_param(1, "DataDigest", "CRC32C");
    Some((t, pattern))
}

fn login(proxy: &FaultProxy) -> Client {
    let mut c = Client::connect(proxy.addr());
    c.login(IQN, &[("HeaderDigest", "CRC32C"), ("DataDigest", "CRC32C")]);
    assert!(c.rx.header_digest && c.rx.data_digest, "{:?}", c.answers);
    // tgtd reports a power-on UNIT ATTENTION to the first command of a new nexus.
    let tur = c.command(1, Cdb::test_unit_ready().padded(), 0, &[]);
    if tur.status != ScsiStatus::GOOD {
        let again = c.command(1, Cdb::test_unit_ready().padded(), 0, &[]);
        assert_eq!(again.status, ScsiStatus::GOOD);
    }
    c
}

#[test]
fn proxy_forwards_login_and_read_to_tgtd_with_digests() {
    let Some((t, pattern)) = tgtd_with_digests() else {
        return;
    };
    let proxy = FaultProxy::start(t.portal().parse().unwrap());
    let mut c = login(&proxy);
    let r = c.command(1, Cdb::read_capacity10().padded(), 8, &[]);
    assert_eq!(ReadCapacity10::parse(&r.data).unwrap().blocks(), 8192);
    let r = c.command(1, Cdb::read10(0, 128).padded(), 65_536, &[]);
    assert_eq!(r.status, ScsiStatus::GOOD);
    assert_eq!(r.data, pattern);
    assert!(proxy.fired().is_empty());
}

#[test]
fn flipped_data_bit_from_tgtd_is_a_data_digest_error() {
    let Some((t, _)) = tgtd_with_digests() else {
        return;
    };
    let proxy = FaultProxy::start(t.portal().parse().unwrap());
    let mut c = login(&proxy);
    proxy.arm(ProxyFault::FlipDataBit);
    let cmd = c.command_pdu(1, Cdb::read10(0, 8).padded(), 4096, 0);
    c.send(&Pdu::ScsiCommand(cmd));
    match c.try_recv(Duration::from_secs(5)) {
        Err(RecvError::Decode(DecodeError::DataDigest { .. })) => {}
        other => panic!("expected a data digest error, got {other:?}"),
    }
}

/// A flipped bit in a write's immediate data with data digests on: tgtd sees the data
/// digest error and the corrupted data never reaches the LUN. With digests off nothing but
/// TCP's checksum guards the data, and the flipped bit is written.
#[test]
fn flipped_data_out_bit_is_refused_by_tgtd_only_with_digests() {
    let Some((t, pattern)) = tgtd_with_digests() else {
        return;
    };
    let backing = t.dir().join("t1-lun1.img");
    let proxy = FaultProxy::start(t.portal().parse().unwrap());
    let mut c = login(&proxy);
    proxy.arm(ProxyFault::FlipDataOutBit);
    let data = vec![0x5a; 4096];
    let mut cmd = c.command_pdu(1, Cdb::write10(0, 8, false).padded(), 0, 4096);
    cmd.data = data.clone().into();
    c.send(&Pdu::ScsiCommand(cmd));
    let answer = c.try_recv(Duration::from_secs(5));
    assert_eq!(proxy.faults_fired(), 1);
    // tgtd drops the connection (RFC 7143 §7.8 lets an ERL 0 target do so) or rejects the
    // PDU; either way no GOOD status may come back for the corrupted command.
    match answer {
        Err(RecvError::Closed) | Ok(Pdu::Reject(_)) => {}
        other => panic!("expected the connection closed or a Reject, got {other:?}"),
    }
    let on_disk = std::fs::read(&backing).unwrap();
    assert_eq!(
        on_disk[..4096],
        pattern[..4096],
        "corrupted write data reached the LUN"
    );

    let Some((mut t, _)) = tgtd_with_digests() else {
        return;
    };
    t.set_param(1, "HeaderDigest", "None");
    t.set_param(1, "DataDigest", "None");
    let backing = t.dir().join("t1-lun1.img");
    let proxy = FaultProxy::start(t.portal().parse().unwrap());
    let mut c = Client::connect(proxy.addr());
    c.login(IQN, &[("HeaderDigest", "None"), ("DataDigest", "None")]);
    let _ = c.command(1, Cdb::test_unit_ready().padded(), 0, &[]);
    proxy.arm(ProxyFault::FlipDataOutBit);
    let w = c.command(1, Cdb::write10(0, 8, false).padded(), 0, &data);
    assert_eq!(w.status, ScsiStatus::GOOD);
    let on_disk = std::fs::read(&backing).unwrap();
    let diff: Vec<usize> = (0..4096).filter(|&i| on_disk[i] != data[i]).collect();
    assert_eq!(diff, [2048], "without digests the flipped bit is written");
}
