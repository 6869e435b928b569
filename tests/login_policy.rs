//! Login policy against a scripted portal in front of a real tgtd: redirections are followed
//! (and bounded), a busy target is retried with backoff (and bounded), a silent portal costs a
//! bounded time.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::mock_portal::{MockPortal, Reply};
use common::tgtd::Tgtd;
use common::{run, sanshim};
use sanshim_initiator::wire::LoginStatus;

const IQN: &str = "iqn.2026-11.test.sanshim:moved";

fn target() -> Option<Tgtd> {
    let mut t = match Tgtd::try_start() {
        Ok(t) => t,
        Err(reason) => {
            eprintln!("SKIPPED: {reason}");
            return None;
        }
    };
    t.add_target(1, IQN);
    t.add_file_lun(1, 1, 1 << 20);
    Some(t)
}

fn ls(port: u16) -> common::RunResult {
    run(sanshim().args([
        "-v",
        "ls",
        "--json",
        &format!("iscsi://127.0.0.1:{port}/{IQN}/1"),
    ]))
}

#[test]
fn redirection_is_followed_to_the_real_target() {
    let Some(t) = target() else { return };
    let address = format!("127.0.0.1:{},1", t.port());
    let portal = MockPortal::start(vec![Reply::Status(
        LoginStatus::TARGET_MOVED_TEMPORARILY,
        Some(address),
    )]);
    let out = ls(portal.port());
    out.expect_code(0);
    let doc = out.json();
    assert_eq!(doc["luns"][0]["capacity_bytes"], 1 << 20);
    assert_eq!(
        doc["luns"][0]["portal"],
        format!("127.0.0.1:{}", portal.port())
    );
    assert!(
        out.stderr.contains("redirected"),
        "logs the redirection: {}",
        out.stderr
    );
}

#[test]
fn redirection_loops_are_bounded() {
    let looping = MockPortal::start(vec![Reply::RedirectToSelf]);
    let out = ls(looping.port());
    out.expect_code(1);
    assert!(
        out.stderr.contains("redirected more than"),
        "{}",
        out.stderr
    );
    assert_eq!(
        looping.connections(),
        5,
        "the first login and four redirections"
    );
    let nowhere = MockPortal::start(vec![Reply::Status(
        LoginStatus::TARGET_MOVED_TEMPORARILY,
        None,
    )]);
    let out = ls(nowhere.port());
    assert_ne!(
        out.code, 0,
        "a redirection without an address fails: {out:?}"
    );
}

#[test]
fn busy_target_is_retried_with_backoff() {
    let Some(t) = target() else { return };
    let address = format!("127.0.0.1:{}", t.port());
    let busy = Reply::Status(LoginStatus::SERVICE_UNAVAILABLE, None);
    let portal = MockPortal::start(vec![
        busy.clone(),
        busy,
        Reply::Status(LoginStatus::TARGET_MOVED_TEMPORARILY, Some(address)),
    ]);
    let started = Instant::now();
    let out = ls(portal.port());
    out.expect_code(0);
    assert_eq!(
        portal.connections(),
        3,
        "two busy answers, then the redirection"
    );
    // Backoff 1 s then 2 s.
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "backed off: {:?}",
        started.elapsed()
    );
}

#[test]
fn a_silent_portal_costs_a_bounded_time() {
    let portal = MockPortal::start(vec![Reply::Silent]);
    let started = Instant::now();
    let out = ls(portal.port());
    assert_ne!(out.code, 0);
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(40), "gave up in {elapsed:?}");
    assert!(
        out.stderr.contains("no PDU") || out.stderr.contains("within"),
        "{}",
        out.stderr
    );
}
