//! Login policy against a scripted portal in front of a real tgtd: redirections are followed
//! (and bounded), a busy target is retried with backoff (and bounded), a silent portal fails
//! after the login timeout with exit 3; discovery falls back from refused session credentials to none, and says so.
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

/// A portal that accepts the connection and never answers the login (a hung target daemon)
/// fails after `--login-timeout`, once, with one line saying what happened where and what to
/// ask, and exit 3 — for `ls` and for `bench`.
#[test]
fn a_portal_that_never_answers_the_login_times_out_with_exit_3() {
    let portal = MockPortal::start(vec![Reply::Silent]);
    let url = format!("iscsi://127.0.0.1:{}/{IQN}/1", portal.port());
    let expected = format!(
        "portal 127.0.0.1:{} accepted the connection but sent no login response in 0.5 s: \
         is it an iSCSI target? is the target daemon hung?",
        portal.port()
    );
    let ls = run(sanshim().args(["--login-timeout", "0.5", "ls", &url]));
    let bench = run(sanshim().args(["--login-timeout", "0.5", "bench", "--size", "4k", &url]));
    for out in [&ls, &bench] {
        out.expect_code(3);
        assert!(out.stderr.contains(&expected), "{}", out.stderr);
        let errors: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.starts_with("sanshim: error:"))
            .collect();
        assert_eq!(errors.len(), 1, "one line: {}", out.stderr);
        assert!(errors[0].contains("--login-timeout"), "{}", out.stderr);
    }
    assert_eq!(portal.connections(), 2, "one login each, no retries");
    let zero = run(sanshim().args(["--login-timeout", "0", "ls", &url]));
    zero.expect_code(2);
}

/// A target that closes the connection without answering the login (LIO when CHAP is
/// required and none was offered; tgt or a SAN still coming up) is tried a few times, then
/// refused: one line saying what happened and what to check, exit 4.
#[test]
fn a_target_that_closes_during_login_is_refused_with_exit_4() {
    let portal = MockPortal::start(vec![Reply::Close]);
    let out = ls(portal.port());
    out.expect_code(4);
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("sanshim: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert!(
        errors[0].contains(&format!("login to {IQN} at 127.0.0.1:{}", portal.port()))
            && errors[0].contains("closed the connection without answering the login")
            && errors[0].contains("require CHAP (give --chap-user)"),
        "{}",
        out.stderr
    );
    assert_eq!(portal.connections(), 3, "the first login and two retries");
}

fn discover(port: u16, args: &[&str], env: &[(&str, &str)]) -> common::RunResult {
    let mut cmd = sanshim();
    cmd.arg("-v").args(args);
    cmd.args(["discover", "--json", &format!("127.0.0.1:{port}")]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

/// A portal that refuses our target credentials for discovery (as LIO does when it protects
/// targets but has no discovery secret) is asked again without authentication; the log says
/// which credentials were used. Discovery credentials given apart are offered alone.
#[test]
fn discovery_falls_back_to_no_authentication_and_says_so() {
    let Some(t) = target() else { return };
    let address = format!("127.0.0.1:{},1", t.port());
    let refused = Reply::Status(LoginStatus::AUTHENTICATION_FAILURE, None);
    let creds = ["--chap-user", "someone"];
    let secret = [("SANSHIM_CHAP_SECRET", "a-target-secret")];

    let portal = MockPortal::start(vec![
        refused.clone(),
        Reply::Status(LoginStatus::TARGET_MOVED_TEMPORARILY, Some(address)),
    ]);
    let out = discover(portal.port(), &creds, &secret);
    out.expect_code(0);
    assert_eq!(out.json()["portals"][0]["targets"][0]["name"], IQN);
    assert!(
        out.stderr
            .contains("refused our CHAP credentials for discovery; trying without authentication"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("discovery session logged in") && out.stderr.contains("auth=\"none\""),
        "{}",
        out.stderr
    );
    assert_eq!(portal.connections(), 2, "CHAP, then none");

    // Refused both ways: exit 4, naming what was tried and the option to give.
    let portal = MockPortal::start(vec![refused.clone()]);
    let out = discover(portal.port(), &creds, &secret);
    out.expect_code(4);
    assert!(
        out.stderr
            .contains("tried the --chap-user credentials, then no authentication")
            && out.stderr.contains("--discovery-chap-user"),
        "{}",
        out.stderr
    );
    assert_eq!(portal.connections(), 2);

    // Discovery credentials are offered alone: refused means refused, no fallback.
    let portal = MockPortal::start(vec![refused]);
    let out = discover(
        portal.port(),
        &["--discovery-chap-user", "finder"],
        &[("SANSHIM_DISCOVERY_CHAP_SECRET", "a-discovery-secret")],
    );
    out.expect_code(4);
    assert_eq!(portal.connections(), 1);
    assert!(
        out.stderr.contains("the discovery CHAP credentials"),
        "{}",
        out.stderr
    );
    for secret in ["a-target-secret", "a-discovery-secret"] {
        assert!(!out.stderr.contains(secret));
    }

    // Against tgtd itself (its discovery takes no authentication: it answers AuthMethod=None
    // to our CHAP offer) the log says none was used.
    let out = discover(t.port(), &creds, &secret);
    out.expect_code(0);
    assert!(out.stderr.contains("auth=\"none\""), "{}", out.stderr);

    // A discovery name without its secret is a usage error.
    let out = discover(t.port(), &["--discovery-chap-user", "finder"], &[]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("SANSHIM_DISCOVERY_CHAP_SECRET"),
        "{}",
        out.stderr
    );
}

/// `discover --luns` tries every portal a target lists — one that refuses the connection and
/// one that never answers it (a listener whose accept queue is full drops the SYN, as a
/// portal behind NAT that lists its inside address looks from outside) — marks both
/// unreachable within its bounded probe time and lists the LUNs through the portal asked.
#[test]
fn discover_luns_passes_over_listed_portals_it_cannot_reach() {
    let target = sanshim_testbed::FakeTarget::start(sanshim_testbed::TargetConfig {
        iqn: IQN.into(),
        block_count: 2048,
        ..sanshim_testbed::TargetConfig::default()
    });
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let (silent, silent_port) = full_listener();
    let _queued = std::net::TcpStream::connect(("127.0.0.1", silent_port)).unwrap();
    target.add_address(&format!("127.0.0.1:{closed_port},1"));
    target.add_address(&format!("127.0.0.1:{silent_port},1"));

    let started = Instant::now();
    let out = run(sanshim().args([
        "-v",
        "discover",
        "--luns",
        "--json",
        &format!("127.0.0.1:{}", target.port()),
    ]));
    let took = started.elapsed();
    drop(silent);
    out.expect_code(0);
    let doc = out.json();
    let listed = &doc["portals"][0]["targets"][0];
    let entry = |port: u16| {
        listed["portals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["port"] == port)
            .unwrap_or_else(|| panic!("port {port} listed: {listed}"))
            .clone()
    };
    assert_eq!(entry(target.port())["reachable"], true, "{listed}");
    for port in [closed_port, silent_port] {
        assert_eq!(entry(port)["reachable"], false, "{listed}");
        assert!(entry(port)["error"].is_string(), "{listed}");
    }
    let luns = listed["luns"].as_array().unwrap();
    assert!(!luns.is_empty(), "the LUNs are listed: {listed}");
    assert!(
        took < Duration::from_secs(12),
        "the silent portal costs the 3 s probe, not TCP's minutes: {took:?}"
    );
    assert!(
        out.stderr.contains("listed portal not reachable from here"),
        "{}",
        out.stderr
    );
    // Human output marks them too.
    let out = run(sanshim().args([
        "discover",
        "--luns",
        &format!("127.0.0.1:{}", target.port()),
    ]));
    out.expect_code(0);
    assert!(
        out.stdout.contains(&format!(
            "127.0.0.1:{closed_port},1  (unreachable from here"
        )),
        "{}",
        out.stdout
    );
}

/// A loopback listener with an accept queue of one, filled by the caller's first connection:
/// further connection attempts go unanswered.
fn full_listener() -> (std::os::fd::OwnedFd, u16) {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, getsockname, listen, socket,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::new(127, 0, 0, 1, 0),
    )
    .unwrap();
    listen(&fd, Backlog::new(0).unwrap()).unwrap();
    let port = getsockname::<SockaddrIn>(std::os::fd::AsRawFd::as_raw_fd(&fd))
        .unwrap()
        .port();
    (fd, port)
}

/// A loopback service that sends `reply` — first, as SSH sends its banner, or after reading
/// a request, as HTTP answers — reads what the client sends, then keeps the connection open
/// for `linger` or closes it.
fn other_service(reply: &'static [u8], speaks_first: bool, linger: Duration) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            if speaks_first {
                let _ = s.write_all(reply);
            }
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let mut request = [0u8; 4096];
            let _ = s.read(&mut request);
            if !speaks_first {
                let _ = s.write_all(reply);
            }
            std::thread::sleep(linger);
        }
    });
    port
}

/// A portal that is something else than iSCSI — an HTTP proxy on 3260, an SSH server —
/// gets one line saying so, quoting what it sent, and exit 3, at once (no retries).
#[test]
fn a_peer_that_does_not_speak_iscsi_is_named_as_such() {
    let http = other_service(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        false,
        Duration::from_secs(30),
    );
    let ssh = other_service(b"SSH-2.0-OpenSSH_9.2p1\r\n", true, Duration::ZERO);
    for (port, shown) in [
        (http, "HTTP/1.1 400 Bad Request"),
        (ssh, "SSH-2.0-OpenSSH_9.2p1"),
    ] {
        let started = Instant::now();
        let out = ls(port);
        out.expect_code(3);
        assert!(
            out.stderr.contains("does not speak iSCSI") && out.stderr.contains(shown),
            "{}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("is sent by the initiator"),
            "{}",
            out.stderr
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}
