//! Durability you can see: `sanshim export` against the test bed's fake target, whose event
//! log shows the order in which commands arrived and were answered, driven by a raw NBD client
//! that controls what is in flight.
//!
//! - SIGTERM with writes still at the target: the export drains them (each acknowledged
//!   write is on the target), sends SYNCHRONIZE CACHE after the last write was answered,
//!   logs out and exits 0.
//! - The FUA fallback of a LU without DPOFUA: a FUA write goes out as WRITE, then
//!   SYNCHRONIZE CACHE, and its NBD reply comes only once the SYNCHRONIZE CACHE is answered
//!   (held at the target until the test releases it).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::export::{Export, PATIENCE};
use common::nbd_client::NbdClient;
use sanshim_initiator::wire::ScsiStatus;
use sanshim_testbed::{Event, FakeTarget, Rule, TargetConfig};

const IQN: &str = "iqn.2026-12.test.sanshim:durable";
const NAME: &str = "durable";
const WRITE16: u8 = 0x8a;
const SYNC16: u8 = 0x91;
fn target(dpofua: bool) -> FakeTarget {
    FakeTarget::start(TargetConfig {
        iqn: IQN.into(),
        block_count: 8192,
        dpofua,
        ..TargetConfig::default()
    })
}

/// `sanshim -v export` of LUN 1 of `target` on `DIR/nbd.sock`; returns it and the socket.
fn start_export(target: &FakeTarget, dir: &Path) -> (Export, PathBuf) {
    let socket = dir.join("nbd.sock");
    let args = [
        "--name".to_owned(),
        NAME.to_owned(),
        format!("iscsi://{}/{IQN}/1", target.portal()),
        "--listen".to_owned(),
        format!("unix:{}", socket.display()),
        "--control".to_owned(),
        dir.join("export.ctl").display().to_string(),
    ];
    (Export::start(args, &dir.join("export.log")), socket)
}

/// Polls `f` every 10 ms until it holds or [`PATIENCE`] is spent.
fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

fn position(events: &[Event], what: impl Fn(&Event) -> bool) -> Option<usize> {
    events.iter().position(what)
}

fn rposition(events: &[Event], what: impl Fn(&Event) -> bool) -> Option<usize> {
    events.iter().rposition(what)
}

fn block(seed: u8) -> Vec<u8> {
    (0..4096u32)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect()
}

/// SIGTERM while writes are held at the target: the export waits for them, acknowledges
/// them, flushes after the last one, logs out and exits 0.
#[test]
fn sigterm_drains_writes_then_flushes_and_logs_out() {
    const WRITES: u64 = 4;
    let target = target(true);
    let dir = tempfile::tempdir().unwrap();
    let (mut export, socket) = start_export(&target, dir.path());
    let mut client = NbdClient::connect(&socket, NAME);

    target.script(Rule::Hold {
        opcode: WRITE16,
        count: WRITES as u32,
    });
    for i in 0..WRITES {
        let data = block(i as u8);
        client.send(common::nbd_client::CMD_WRITE, 0, i, i * 4096, &data);
    }
    let arrived = |t: &FakeTarget| t.counters().commands_of(WRITE16) == WRITES;
    assert!(
        wait_until(|| arrived(&target)),
        "the writes reached the target:\n{}",
        export.log()
    );
    assert!(!client.reply_ready(), "no write is answered while held");

    export.signal("-TERM");
    assert!(
        wait_until(|| export.log().contains("draining in-flight requests")),
        "the export took the signal:\n{}",
        export.log()
    );
    target.release_held();
    let mut acknowledged = Vec::new();
    for _ in 0..WRITES {
        let reply = client.reply();
        assert_eq!(reply.error, 0, "write {} failed", reply.cookie);
        acknowledged.push(reply.cookie);
    }
    let status = export.wait();
    let log = export.log();
    assert_eq!(status.code(), Some(0), "exit status:\n{log}");

    for cookie in acknowledged {
        let on_target = target.read_back(cookie * 8, 4096);
        assert!(
            on_target == block(cookie as u8),
            "acknowledged write {cookie} is not on the target"
        );
    }
    let events = target.events();
    let last_write = rposition(
        &events,
        |e| matches!(e, Event::Status { opcode: WRITE16, status } if *status == ScsiStatus::GOOD),
    )
    .expect("the writes were answered");
    let sync = rposition(&events, |e| *e == Event::Command { opcode: SYNC16 })
        .expect("a SYNCHRONIZE CACHE reached the target");
    let synced = rposition(
        &events,
        |e| matches!(e, Event::Status { opcode: SYNC16, status } if *status == ScsiStatus::GOOD),
    )
    .expect("the SYNCHRONIZE CACHE was answered GOOD");
    let logout = position(&events, |e| *e == Event::Logout).expect("a Logout was sent");
    assert!(
        last_write < sync && sync < synced && synced < logout,
        "order: last write answered {last_write}, SYNCHRONIZE CACHE {sync}/{synced}, \
         Logout {logout}: {events:?}"
    );
    assert!(log.contains("flushed and logged out"), "{log}");
}

/// A LU without DPOFUA: an NBD write with FUA is a WRITE then a SYNCHRONIZE CACHE, and its
/// reply waits for the SYNCHRONIZE CACHE's GOOD (held at the target, then released).
#[test]
fn fua_fallback_writes_then_synchronizes_before_the_reply() {
    let target = target(false);
    let dir = tempfile::tempdir().unwrap();
    let (mut export, socket) = start_export(&target, dir.path());
    let mut client = NbdClient::connect(&socket, NAME);
    assert_ne!(
        client.flags & sanshim_nbd::wire::transmission_flags::SEND_FUA,
        0,
        "FUA is offered (and emulated)"
    );
    let before = target.events().len();
    target.script(Rule::Hold {
        opcode: SYNC16,
        count: 1,
    });
    let data = block(0x5a);
    client.send_fua_write(7, 64 * 4096, &data);
    assert!(
        wait_until(|| target.counters().commands_of(SYNC16) == 1),
        "the SYNCHRONIZE CACHE reached the target:\n{}",
        export.log()
    );
    assert!(
        !client.reply_ready(),
        "the write is not acknowledged while its SYNCHRONIZE CACHE is held"
    );
    target.release_held();
    let reply = client.reply();
    assert_eq!((reply.cookie, reply.error), (7, 0));

    let events: Vec<Event> = target.events().split_off(before);
    let good = |opcode| Event::Status {
        opcode,
        status: ScsiStatus::GOOD,
    };
    assert_eq!(
        events,
        vec![
            Event::Command { opcode: WRITE16 },
            good(WRITE16),
            Event::Command { opcode: SYNC16 },
            good(SYNC16),
        ],
        "WRITE, answered, then SYNCHRONIZE CACHE, answered"
    );
    assert!(
        target.read_back(64 * 8, 4096) == data,
        "the write is on the target"
    );
    let status = common::run(
        common::sanshim()
            .args(["status", "--json"])
            .arg(dir.path().join("export.ctl")),
    );
    status.expect_code(0);
    assert_eq!(status.json()["paths"][0]["syncs"], 1, "{}", status.stdout);
    drop(client);
    export.signal("-TERM");
    assert_eq!(export.wait().code(), Some(0), "{}", export.log());
}
