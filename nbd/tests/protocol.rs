//! The server against scripted and hostile clients: the old EXPORT_NAME handshake (as
//! busybox's nbd-client speaks it), refused requests amid valid pipelined ones, garbage,
//! silence, floods of clients, out-of-order replies, draining on DISC and on shutdown.
//!
//! Every test runs on tokio's paused clock: the server's timeouts and the test device's delays
//! take no real time, and the clock only moves when every task waits, so nothing depends on
//! how fast the machine is.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use sanshim_blockdev::{Fault, FaultDisk, MemDisk, Op, PathState, Trigger};
use sanshim_nbd::wire::{
    Command, OptionCode, OptionHeader, ReplyCode, Request, command_flags as cf,
};
use sanshim_nbd::{Config, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use zerocopy::IntoBytes;

use common::{
    Client, Reply, TestServer, connect, export, get, mem_disk, put, random_bytes, settle,
    wait_until,
};

const EINVAL: u32 = 22;
const EPERM: u32 = 1;
const ENOSPC: u32 = 28;
const SHORT: Duration = Duration::from_secs(5);

fn ok(cookie: u64, data: Vec<u8>) -> Reply {
    Reply {
        cookie,
        error: 0,
        data,
    }
}

fn err(cookie: u64, error: u32) -> Reply {
    Reply {
        cookie,
        error,
        data: vec![],
    }
}

async fn go<D>(srv: &TestServer<D>, name: &str, structured: bool) -> Client<UnixStream> {
    Client::go(connect(&srv.sock).await, name, structured).await
}

#[tokio::test(start_paused = true)]
async fn test_export_name_handshake_sends_zeroes_like_busybox_expects() {
    let disk = mem_disk(512, 1 << 20);
    put(&*disk, 0, &[0x42; 512]).await;
    let srv = TestServer::with_disk(disk).await;
    for no_zeroes in [false, true] {
        let mut s = connect(&srv.sock).await;
        // busybox sends only FIXED_NEWSTYLE, then EXPORT_NAME, and reads 8+2+124 bytes.
        let hs = Client::greet(&mut s, if no_zeroes { 3 } else { 1 }).await;
        assert_eq!(hs, 3, "FIXED_NEWSTYLE | NO_ZEROES offered");
        Client::send_option(&mut s, OptionCode::EXPORT_NAME, b"disk").await;
        let mut reply = vec![0; if no_zeroes { 10 } else { 134 }];
        s.read_exact(&mut reply).await.unwrap();
        assert_eq!(u64::from_be_bytes(reply[..8].try_into().unwrap()), 1 << 20);
        assert!(reply[10..].iter().all(|&b| b == 0));
        let flags = u16::from_be_bytes([reply[8], reply[9]]);
        let mut c = Client {
            stream: s,
            size: 1 << 20,
            flags,
            structured: false,
        };
        c.send(Command::READ, 0, 1, 0, 512).await;
        assert_eq!(c.recv(|_| 512).await, ok(1, vec![0x42; 512]));
        c.send(Command::DISC, 0, 2, 0, 0).await;
        assert!(c.closed_within(SHORT).await);
    }
    // An unknown name cannot be refused in this handshake: the server hangs up.
    let mut s = connect(&srv.sock).await;
    Client::greet(&mut s, 1).await;
    Client::send_option(&mut s, OptionCode::EXPORT_NAME, b"nope").await;
    let mut c = Client {
        stream: s,
        size: 0,
        flags: 0,
        structured: false,
    };
    assert!(c.closed_within(SHORT).await);
    srv.stop().await;
}

#[tokio::test(start_paused = true)]
async fn test_options_unknown_unsupported_and_abort() {
    let srv = TestServer::with_disk(mem_disk(512, 1 << 20)).await;
    let mut s = connect(&srv.sock).await;
    Client::greet(&mut s, 3).await;
    for (option, want) in [
        (OptionCode(1234), ReplyCode::ERR_UNSUP),
        (OptionCode::STARTTLS, ReplyCode::ERR_UNSUP),
        (OptionCode::SET_META_CONTEXT, ReplyCode::ERR_UNSUP),
        (OptionCode::EXTENDED_HEADERS, ReplyCode::ERR_UNSUP),
        (OptionCode::GO, ReplyCode::ERR_INVALID),
    ] {
        Client::send_option(&mut s, option, &[1, 2, 3]).await;
        assert_eq!(
            Client::read_option_reply(&mut s).await.1,
            want,
            "{option:?}"
        );
    }
    // Oversized option data is skipped, not buffered.
    Client::send_option(&mut s, OptionCode::INFO, &vec![0; 100_000]).await;
    assert_eq!(
        Client::read_option_reply(&mut s).await.1,
        ReplyCode::ERR_TOO_BIG
    );
    Client::send_option(&mut s, OptionCode::ABORT, &[]).await;
    assert_eq!(Client::read_option_reply(&mut s).await.1, ReplyCode::ACK);
    let mut c = Client {
        stream: s,
        size: 0,
        flags: 0,
        structured: false,
    };
    assert!(c.closed_within(SHORT).await);
    srv.stop().await;
}

#[tokio::test(start_paused = true)]
async fn test_bad_requests_get_errors_while_the_connection_goes_on() {
    let disk = mem_disk(4096, 1 << 20);
    let ro = mem_disk(4096, 1 << 20);
    let exports = vec![export("disk", disk.clone(), false), export("ro", ro, true)];
    let config = Config {
        max_request_bytes: 1 << 20,
        ..Config::default()
    };
    let srv = TestServer::start(config, exports).await;
    for structured in [false, true] {
        let mut c = go(&srv, "disk", structured).await;
        let data = random_bytes(8192, 1);
        c.send_write(1, 8192, &data, cf::FUA).await;
        assert_eq!(c.recv(|_| 0).await, ok(1, vec![]));
        // Pipeline everything else before reading any reply.
        c.send(Command::READ, 0, 2, 1 << 20, 4096).await; // past the end
        c.send_write(3, (1 << 20) - 4096, &[0; 8192], 0).await; // write past the end
        c.send(Command::READ, 0, 4, 0, (1 << 20) + 4096).await; // longer than the maximum
        c.send_write(5, 0, &vec![7; (1 << 20) + 4096], 0).await; // oversized write, payload sent
        c.send(Command::READ, 0, 6, 512, 4096).await; // misaligned offset
        c.send_write(7, 0, &[1; 100], 0).await; // misaligned length
        c.send(Command(99), 0, 8, 0, 0).await; // unknown command
        c.send(Command::BLOCK_STATUS, 0, 9, 0, 4096).await; // not negotiated
        c.send(Command::READ, cf::REQ_ONE, 10, 0, 4096).await; // flag not valid here
        c.send(Command::READ, 0, 11, 8192, 8192).await; // valid: the data of cookie 1
        c.send(Command::FLUSH, 0, 12, 0, 0).await;
        let mut got: Vec<Reply> = Vec::new();
        for _ in 0..11 {
            got.push(c.recv(|cookie| if cookie == 11 { 8192 } else { 0 }).await);
        }
        got.sort_by_key(|r| r.cookie);
        let want = vec![
            err(2, EINVAL),
            err(3, ENOSPC),
            err(4, EINVAL),
            err(5, EINVAL),
            err(6, EINVAL),
            err(7, EINVAL),
            err(8, EINVAL),
            err(9, EINVAL),
            err(10, EINVAL),
            ok(11, data),
            ok(12, vec![]),
        ];
        assert_eq!(got, want, "structured: {structured}");
    }
    assert!(disk.stats().fua_writes >= 2);
    // Writes of every kind on a read-only export: EPERM.
    let mut c = go(&srv, "ro", true).await;
    c.send_write(1, 0, &[1; 4096], 0).await;
    c.send(Command::TRIM, 0, 2, 0, 4096).await;
    c.send(Command::WRITE_ZEROES, 0, 3, 0, 4096).await;
    c.send(Command::READ, 0, 4, 0, 4096).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(c.recv(|_| 4096).await);
    }
    got.sort_by_key(|r| r.cookie);
    assert_eq!(
        got,
        [
            err(1, EPERM),
            err(2, EPERM),
            err(3, EPERM),
            ok(4, vec![0; 4096])
        ]
    );
    srv.stop().await;
}

/// `NBD_CMD_FLAG_FAST_ZERO` (NBD proto.md): a device that would have to write zero buffers
/// answers `NBD_ENOTSUP` at once and changes nothing, so the client writes the zeroes once
/// itself; the same request without the flag zeroes, and a device that zeroes by itself
/// takes the flag.
#[tokio::test(start_paused = true)]
async fn test_fast_zero_fails_fast_where_zeroing_would_be_slow() {
    use bytes::Bytes;
    use sanshim_blockdev::BlockDevice;
    const ENOTSUP: u32 = 95;
    let slow = Arc::new(
        MemDisk::builder(512, 2048)
            .can_write_zeroes(false)
            .build()
            .unwrap(),
    );
    slow.write(0, Bytes::from(vec![7u8; 4096]), false)
        .await
        .unwrap();
    let srv = TestServer::with_disk(slow.clone()).await;
    let mut c = go(&srv, "disk", true).await;
    c.send(Command::WRITE_ZEROES, cf::FAST_ZERO, 1, 0, 4096)
        .await;
    assert_eq!(c.recv(|_| 0).await, err(1, ENOTSUP));
    c.send(Command::READ, 0, 2, 0, 4096).await;
    assert_eq!(c.recv(|_| 4096).await, ok(2, vec![7; 4096]), "untouched");
    assert_eq!(slow.stats().write_zeroes, 0);
    c.send(Command::WRITE_ZEROES, 0, 3, 0, 4096).await;
    assert_eq!(c.recv(|_| 0).await, ok(3, vec![]));
    c.send(Command::READ, 0, 4, 0, 4096).await;
    assert_eq!(c.recv(|_| 4096).await, ok(4, vec![0; 4096]));
    srv.stop().await;

    let fast = Arc::new(MemDisk::new(512, 2048).unwrap());
    fast.write(0, Bytes::from(vec![7u8; 4096]), false)
        .await
        .unwrap();
    let srv = TestServer::with_disk(fast.clone()).await;
    let mut c = go(&srv, "disk", false).await;
    c.send(Command::WRITE_ZEROES, cf::FAST_ZERO, 5, 0, 4096)
        .await;
    assert_eq!(c.recv(|_| 0).await, ok(5, vec![]));
    c.send(Command::READ, 0, 6, 0, 4096).await;
    assert_eq!(c.recv(|_| 4096).await, ok(6, vec![0; 4096]));
    assert_eq!(fast.stats().write_zeroes, 1);
    srv.stop().await;
}

#[tokio::test(start_paused = true)]
async fn test_replies_come_out_of_order() {
    let dev = Arc::new(FaultDisk::new(MemDisk::new(512, 2048).unwrap()));
    dev.inject(
        Fault::delay(Duration::from_millis(300))
            .on(Op::Read)
            .when(Trigger::Blocks(0..1)),
    );
    let srv = TestServer::with_disk(dev).await;
    let mut c = go(&srv, "disk", true).await;
    c.send(Command::READ, 0, 1, 0, 512).await;
    c.send(Command::READ, 0, 2, 512, 512).await;
    assert_eq!(c.recv(|_| 512).await.cookie, 2);
    assert_eq!(c.recv(|_| 512).await.cookie, 1);
    srv.stop().await;
}

#[tokio::test(start_paused = true)]
async fn test_disc_and_shutdown_drain_in_flight_requests() {
    let dev = Arc::new(FaultDisk::new(MemDisk::new(512, 2048).unwrap()));
    dev.inject(Fault::delay(Duration::from_millis(300)).on(Op::Write));
    let srv = TestServer::with_disk(dev.clone()).await;
    let mut c = go(&srv, "disk", false).await;
    c.send_write(1, 0, &[9; 512], 0).await;
    c.send(Command::DISC, 0, 2, 0, 0).await;
    assert_eq!(c.recv(|_| 0).await, ok(1, vec![]));
    assert!(c.closed_within(SHORT).await);

    let mut c = go(&srv, "disk", false).await;
    c.send_write(3, 512, &[8; 512], 0).await;
    wait_for_ops(&dev, 2).await;
    srv.server.shutdown();
    assert_eq!(c.recv(|_| 0).await, ok(3, vec![]));
    assert!(c.closed_within(SHORT).await);
    tokio::time::timeout(SHORT, srv.task)
        .await
        .unwrap()
        .unwrap();
    let buf = get(&*dev, 0, 1024).await;
    assert!(buf[..512].iter().all(|&b| b == 9) && buf[512..].iter().all(|&b| b == 8));
    assert!(!srv.sock.exists(), "socket removed on shutdown");
}

/// A client that sends reads and never takes the replies: once the socket is full, the
/// connection is dropped after the reply timeout, and a graceful shutdown in the meantime
/// completes within it instead of waiting for the client forever.
#[tokio::test(start_paused = true)]
async fn test_a_client_that_stops_reading_replies_does_not_hold_the_server() {
    let reply_timeout = Duration::from_secs(1);
    let config = Config {
        reply_timeout,
        ..Config::default()
    };
    let srv = TestServer::start(config, vec![export("disk", mem_disk(512, 64 << 20), false)]).await;
    // Replies pile up in the socket until the server's writer blocks.
    let mut deaf = go(&srv, "disk", false).await;
    for cookie in 0..64 {
        deaf.send(Command::READ, 0, cookie, 0, 1 << 20).await;
    }
    // Dropped after the timeout: the server closes its side, which the client sees once it
    // looks (the replies that did go out come first).
    wait_until(|| srv.server.stats().connections == 0).await;
    let mut sink = vec![0u8; 1 << 20];
    let drained = tokio::time::timeout(SHORT, async {
        loop {
            match deaf.stream.read(&mut sink).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert_eq!(drained, Ok(true), "the connection was closed by the server");

    // The same during a shutdown: it returns within the timeout.
    let mut deaf = go(&srv, "disk", false).await;
    let before = srv.server.stats().requests;
    for cookie in 0..64 {
        deaf.send(Command::READ, 0, cookie, 0, 1 << 20).await;
    }
    wait_until(|| srv.server.stats().requests == before + 64).await;
    let started = tokio::time::Instant::now();
    srv.stop().await;
    assert!(
        started.elapsed() <= reply_timeout,
        "shutdown waited {:?}",
        started.elapsed()
    );
    drop(deaf);
}

#[tokio::test(start_paused = true)]
async fn test_in_flight_requests_are_bounded_per_connection() {
    let dev = Arc::new(FaultDisk::new(MemDisk::new(512, 2048).unwrap()));
    dev.set_path_state(PathState::Hung);
    let config = Config {
        max_inflight_requests: 8,
        ..Config::default()
    };
    let srv = TestServer::start(config, vec![export("disk", dev.clone(), false)]).await;
    let mut c = go(&srv, "disk", false).await;
    for cookie in 0..200 {
        c.send(Command::FLUSH, 0, cookie, 0, 0).await;
    }
    wait_for_ops(&dev, 8).await;
    // Let every task run until all wait: nothing more gets through.
    settle().await;
    assert_eq!(
        dev.op_count(),
        8,
        "only the allowed number reached the device"
    );
    assert_eq!(srv.server.stats().in_flight, 8);
    dev.set_path_state(PathState::Alive);
    let mut cookies: Vec<u64> = Vec::new();
    for _ in 0..200 {
        let r = c.recv(|_| 0).await;
        // The eight hung ones fail as a dead path would, the rest succeed.
        assert!(r.error == 0 || r.error == 5, "{r:?}");
        cookies.push(r.cookie);
    }
    cookies.sort_unstable();
    assert_eq!(cookies, (0..200).collect::<Vec<_>>());
    srv.stop().await;
}

#[tokio::test(start_paused = true)]
async fn test_garbage_and_silence_close_only_those_connections() {
    let disk = mem_disk(512, 1 << 20);
    let config = Config {
        handshake_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let srv = TestServer::start(config, vec![export("disk", disk, false)]).await;
    let mut good = go(&srv, "disk", true).await;
    // Garbage after the handshake: bad magic closes that connection.
    let mut bad = go(&srv, "disk", false).await;
    bad.stream.write_all(&random_bytes(64, 3)).await.unwrap();
    assert!(bad.closed_within(SHORT).await);
    // Garbage during the handshake.
    let mut s = connect(&srv.sock).await;
    Client::greet(&mut s, 1).await;
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(
        Client {
            stream: s,
            size: 0,
            flags: 0,
            structured: false
        }
        .closed_within(SHORT)
        .await
    );
    // Unknown client flags.
    let mut s = connect(&srv.sock).await;
    Client::greet(&mut s, 0x80).await;
    assert!(
        Client {
            stream: s,
            size: 0,
            flags: 0,
            structured: false
        }
        .closed_within(SHORT)
        .await
    );
    // A client that says nothing is dropped after the handshake timeout.
    let mut idle = Client {
        stream: connect(&srv.sock).await,
        size: 0,
        flags: 0,
        structured: false,
    };
    let mut greeting = [0u8; 18];
    idle.stream.read_exact(&mut greeting).await.unwrap();
    // Not before the timeout, and right after it.
    assert!(!idle.closed_within(Duration::from_millis(299)).await);
    assert!(idle.closed_within(Duration::from_millis(2)).await);
    // The good client never noticed.
    good.send_write(1, 0, &[3; 512], 0).await;
    assert_eq!(good.recv(|_| 0).await, ok(1, vec![]));
    good.send(Command::READ, 0, 2, 0, 512).await;
    assert_eq!(good.recv(|_| 0).await, ok(2, vec![3; 512]));
    srv.stop().await;
}

/// Waits until `n` operations reached the device (the server dispatched them).
async fn wait_for_ops(dev: &FaultDisk<MemDisk>, n: u64) {
    wait_until(|| dev.op_count() >= n).await;
}

/// After two hundred hostile clients, nothing they held is left: only the good client's
/// connection remains, with no request in flight and no data held.
#[tokio::test(start_paused = true)]
async fn test_two_hundred_hostile_clients_while_a_good_one_is_served() {
    let disk = mem_disk(512, 8 << 20);
    let config = Config {
        handshake_timeout: Duration::from_millis(500),
        max_connections: 128,
        ..Config::default()
    };
    let srv = Arc::new(TestServer::start(config, vec![export("disk", disk, false)]).await);
    let mut good = go(&srv, "disk", true).await;
    let hostile: Vec<_> = (0..200u64)
        .map(|i| {
            let srv = Arc::clone(&srv);
            tokio::spawn(async move { hostile_client(&srv, i).await })
        })
        .collect();
    // Keep working while they attack.
    for round in 0..50u64 {
        let data = random_bytes(64 * 1024, round);
        let offset = (round % 64) * 64 * 1024;
        good.send_write(round * 2, offset, &data, 0).await;
        // In-flight requests are unordered: read only after the write was answered.
        assert_eq!(good.recv(|_| 0).await, ok(round * 2, vec![]));
        good.send(Command::READ, 0, round * 2 + 1, offset, 64 * 1024)
            .await;
        assert_eq!(good.recv(|_| 0).await, ok(round * 2 + 1, data));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for h in hostile {
        tokio::time::timeout(Duration::from_secs(20), h)
            .await
            .unwrap()
            .unwrap();
    }
    wait_until(|| srv.server.stats().connections == 1).await;
    let s = srv.server.stats();
    assert_eq!(
        (s.in_flight, s.held_bytes, s.running_tasks),
        (0, 0, 0),
        "{s:?}"
    );
    assert!(s.peak_in_flight > 0, "{s:?}");
    good.send(Command::DISC, 0, 0, 0, 0).await;
    Arc::try_unwrap(srv).ok().unwrap().stop().await;
}

/// One of several kinds of misbehaviour, chosen by `i`.
async fn hostile_client<D>(srv: &TestServer<D>, i: u64) {
    let Ok(mut s) = UnixStream::connect(&srv.sock).await else {
        return;
    };
    match i % 5 {
        // Connect and say nothing (dropped by the handshake timeout or the limit).
        0 => {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut Vec::new())).await;
        }
        // Garbage instead of client flags.
        1 => {
            let _ = s.write_all(&random_bytes(4096, i)).await;
        }
        // Half an option, then silence.
        2 => {
            let _ = s.write_all(&[0, 0, 0, 1, b'I', b'H']).await;
            let _ =
                tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut Vec::new())).await;
        }
        // A write announcing 32 MiB that never comes, after a proper handshake.
        3 => {
            if try_handshake(&mut s).await.is_some() {
                let r = Request {
                    flags: 0,
                    command: Command::WRITE,
                    cookie: 1,
                    offset: 0,
                    length: 32 << 20,
                };
                let _ = s.write_all(&r.emit()).await;
                let _ = s.write_all(&[0; 1000]).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        // Bad requests, replies never read.
        _ => {
            if try_handshake(&mut s).await.is_some() {
                for cookie in 0..50 {
                    let unknown = Request {
                        flags: 0,
                        command: Command(77),
                        cookie,
                        offset: 0,
                        length: 0,
                    };
                    let past_end = Request {
                        command: Command::READ,
                        offset: u64::MAX - 511,
                        length: 512,
                        ..unknown
                    };
                    let _ = s.write_all(&unknown.emit()).await;
                    let _ = s.write_all(&past_end.emit()).await;
                }
            }
        }
    }
}

/// EXPORT_NAME handshake with NO_ZEROES that gives up quietly when the server refuses.
async fn try_handshake(s: &mut UnixStream) -> Option<()> {
    let mut greeting = [0u8; 18];
    s.read_exact(&mut greeting).await.ok()?;
    s.write_all(&3u32.to_be_bytes()).await.ok()?;
    s.write_all(OptionHeader::new(OptionCode::EXPORT_NAME, 4).as_bytes())
        .await
        .ok()?;
    s.write_all(b"disk").await.ok()?;
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).await.ok()?;
    Some(())
}

#[tokio::test(start_paused = true)]
async fn test_serve_stream_over_any_transport() {
    let server = Server::new(
        Config::default(),
        vec![export("disk", mem_disk(512, 4096), false)],
    )
    .unwrap();
    let (client, server_end) = tokio::io::duplex(1 << 16);
    let task = tokio::spawn({
        let server = server.clone();
        async move { server.serve_stream(server_end).await }
    });
    let mut c = Client::go(client, "", false).await;
    assert_eq!(c.size, 4096);
    c.send_write(1, 0, &[1; 512], 0).await;
    assert_eq!(c.recv(|_| 0).await, ok(1, vec![]));
    c.send(Command::DISC, 0, 2, 0, 0).await;
    task.await.unwrap().unwrap();
}
