//! The server's limits and what it holds, judged by its gauges ([`sanshim_nbd::Stats`]) and by
//! a counting device: the connection limit, oversized requests, floods of requests from
//! clients that never read replies, the handshake and idle timeouts, clients that leave (or
//! say DISC) with requests still at the device, and read-only exports, whose writes must never
//! reach the device.
//!
//! Every test runs on tokio's paused clock (see protocol.rs).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use sanshim_blockdev::{Fault, FaultDisk, MemDisk, Op, PathState, Trigger};
use sanshim_nbd::wire::{Command, OptionCode, ReplyCode, command_flags as cf};
use sanshim_nbd::{Config, Stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use common::{
    Client, Reply, TestServer, connect, export, get, mem_disk, random_bytes, settle, wait_until,
};

const EINVAL: u32 = 22;
const EPERM: u32 = 1;
const MIB: u32 = 1 << 20;

fn fault_disk(block_size: u32, bytes: u64) -> Arc<FaultDisk<MemDisk>> {
    let blocks = bytes / u64::from(block_size);
    Arc::new(FaultDisk::new(MemDisk::new(block_size, blocks).unwrap()))
}

async fn go<D>(srv: &TestServer<D>, structured: bool) -> Client<UnixStream> {
    Client::go(connect(&srv.sock).await, "disk", structured).await
}

fn request(command: Command, cookie: u64, offset: u64, length: u32) -> [u8; 28] {
    let r = sanshim_nbd::wire::Request {
        flags: 0,
        command,
        cookie,
        offset,
        length,
    };
    r.emit()
}

/// Gauges that must all be zero once no client is connected.
fn held(s: &Stats) -> (u64, u64, u64, u64) {
    (s.connections, s.in_flight, s.held_bytes, s.running_tasks)
}

#[tokio::test(start_paused = true)]
async fn test_oversized_requests_are_refused_without_holding_their_data() {
    let disk = fault_disk(512, 8 << 20);
    let config = Config {
        max_request_bytes: MIB,
        ..Config::default()
    };
    let srv = TestServer::start(config, vec![export("disk", disk.clone(), false)]).await;
    let mut c = go(&srv, true).await;
    c.send(Command::READ, 0, 1, 0, 4 * MIB).await;
    c.send(Command::READ, 0, 2, 0, u32::MAX).await;
    // A write's payload is read and dropped, so that the stream stays framed.
    c.send_write(3, 0, &vec![7; 2 * MIB as usize], 0).await;
    for cookie in 1..=3 {
        let r = c.recv(|_| 0).await;
        assert_eq!((r.cookie, r.error), (cookie, EINVAL));
    }
    let s = srv.server.stats();
    assert_eq!(s.peak_held_bytes, 0, "{s:?}");
    assert_eq!(disk.op_count(), 0, "nothing reached the device");
    // The largest allowed request goes through.
    c.send(Command::READ, 0, 4, 0, MIB).await;
    assert_eq!(c.recv(|_| MIB as usize).await.error, 0);
    assert_eq!(srv.server.stats().peak_held_bytes, u64::from(MIB));
    srv.stop().await;
}

/// Clients that send requests as fast as they can and never read a reply: the server stops
/// reading from them at the bounds (backpressure: their writes block, nothing fails), holds
/// no more than the bounds, drops them after the reply timeout once replies pile up, and
/// keeps nothing of them afterwards.
#[tokio::test(start_paused = true)]
async fn test_a_flood_of_requests_is_held_to_the_bounds() {
    let dev = fault_disk(512, 64 << 20);
    dev.set_path_state(PathState::Hung);
    let config = Config {
        max_request_bytes: MIB,
        connection_buffer_bytes: 4 * MIB,
        max_inflight_requests: 16,
        ..Config::default()
    };
    let srv = TestServer::start(config, vec![export("disk", dev.clone(), false)]).await;
    // Writes of 1 MiB: the data bound (4 MiB) is reached first.
    let writer = go(&srv, false).await;
    let writes = tokio::spawn(async move {
        let mut s = writer.stream;
        let data = vec![5u8; MIB as usize];
        for cookie in 0..100u64 {
            let offset = cookie * u64::from(MIB);
            let r = request(Command::WRITE, cookie, offset, MIB);
            if s.write_all(&r).await.is_err() || s.write_all(&data).await.is_err() {
                return;
            }
        }
    });
    // Small reads: the request bound (16) is reached first.
    let reader = go(&srv, false).await;
    let reads = tokio::spawn(async move {
        let mut s = reader.stream;
        for cookie in 0..1000 {
            if s.write_all(&request(Command::READ, cookie, 0, 4096))
                .await
                .is_err()
            {
                return;
            }
        }
        // Connected, reading nothing, until the server drops the connection.
        let _ = s.read_to_end(&mut Vec::new()).await;
    });
    // The writer's fifth write holds a slot while it waits for room for its data.
    wait_until(|| srv.server.stats().in_flight == 5 + 16).await;
    settle().await;
    let s = srv.server.stats();
    assert_eq!(s.in_flight, 5 + 16, "{s:?}");
    assert_eq!(s.held_bytes, u64::from(4 * MIB + 16 * 4096), "{s:?}");
    assert_eq!(s.peak_held_bytes, s.held_bytes, "{s:?}");
    assert_eq!(s.peak_in_flight, 21, "{s:?}");
    assert!(!writes.is_finished(), "the writer is held back, not failed");
    assert!(!reads.is_finished(), "the reader is held back, not failed");
    assert_eq!(dev.op_count(), 20);

    // The device answers: the writer's writes complete and it leaves; the reader's replies
    // pile up unread until the reply timeout drops it.
    dev.set_path_state(PathState::Alive);
    wait_until(|| srv.server.stats().connections == 0).await;
    wait_until(|| held(&srv.server.stats()) == (0, 0, 0, 0)).await;
    let s = srv.server.stats();
    assert!(s.peak_held_bytes <= u64::from(2 * 4 * MIB), "{s:?}");
    assert!(s.peak_in_flight <= 2 * 16, "{s:?}");
    writes.abort();
    reads.abort();
    srv.stop().await;
}

/// A client that connects and says nothing is dropped after the handshake timeout (10 s by
/// default), not before.
#[tokio::test(start_paused = true)]
async fn test_a_silent_client_is_dropped_after_the_handshake_timeout() {
    let srv = TestServer::with_disk(fault_disk(512, MIB.into())).await;
    let mut silent = Client {
        stream: connect(&srv.sock).await,
        size: 0,
        flags: 0,
        structured: false,
    };
    let mut greeting = [0u8; 18];
    silent.stream.read_exact(&mut greeting).await.unwrap();
    assert!(!silent.closed_within(Duration::from_millis(9990)).await);
    assert!(silent.closed_within(Duration::from_millis(20)).await);
    wait_until(|| srv.server.stats().connections == 0).await;
    srv.stop().await;
}

/// With an idle timeout, a client with nothing in flight is dropped after it; a request
/// waiting at a slow device does not count as idleness.
#[tokio::test(start_paused = true)]
async fn test_the_idle_timeout_counts_from_the_last_reply() {
    let dev = fault_disk(512, MIB.into());
    dev.inject(Fault::delay(Duration::from_secs(120)).on(Op::Flush));
    let config = Config {
        idle_timeout: Some(Duration::from_secs(60)),
        ..Config::default()
    };
    let srv = TestServer::start(config, vec![export("disk", dev, false)]).await;
    let mut c = go(&srv, false).await;
    let started = tokio::time::Instant::now();
    c.send(Command::FLUSH, 0, 1, 0, 0).await;
    assert_eq!(c.recv(|_| 0).await.error, 0);
    assert_eq!(started.elapsed(), Duration::from_secs(120));
    assert!(!c.closed_within(Duration::from_millis(59_990)).await);
    assert!(c.closed_within(Duration::from_millis(20)).await);
    // Without one (the default), a client may idle for days.
    let srv2 = TestServer::with_disk(fault_disk(512, MIB.into())).await;
    let mut c = go(&srv2, false).await;
    assert!(!c.closed_within(Duration::from_secs(3 * 86400)).await);
    c.send(Command::FLUSH, 0, 2, 0, 0).await;
    assert_eq!(c.recv(|_| 0).await.error, 0);
    srv.stop().await;
    srv2.stop().await;
}

/// A client that goes away with writes still at the device: the writes it saw acknowledged
/// are on the device, the others still finish there, and afterwards no request, task, data
/// or connection is left.
#[tokio::test(start_paused = true)]
async fn test_a_client_leaving_with_requests_in_flight_leaves_nothing_behind() {
    let dev = fault_disk(512, MIB.into());
    // Blocks 8 and up are slow.
    dev.inject(
        Fault::delay(Duration::from_secs(10))
            .on(Op::Write)
            .when(Trigger::Blocks(8..2048)),
    );
    let srv = TestServer::with_disk(dev.clone()).await;
    let mut c = go(&srv, false).await;
    // Write 0 goes to the fast blocks; writes 1-4 to slow ones, at blocks 16, 24, 32, 40.
    let datas: Vec<Vec<u8>> = (0..5).map(|i| random_bytes(4096, i)).collect();
    let lba = |i: usize| if i == 0 { 0 } else { 8 * (i as u64 + 1) };
    for (i, d) in datas.iter().enumerate() {
        c.send_write(i as u64, 512 * lba(i), d, cf::FUA).await;
    }
    let acked = c.recv(|_| 0).await;
    assert_eq!((acked.cookie, acked.error), (0, 0));
    assert_eq!(srv.server.stats().in_flight, 4);
    drop(c);
    wait_until(|| held(&srv.server.stats()) == (0, 0, 0, 0)).await;
    assert_eq!(
        get(&*dev, 0, 4096).await,
        datas[0],
        "the acknowledged write"
    );
    for (i, d) in datas.iter().enumerate().skip(1) {
        assert_eq!(&get(&*dev, lba(i), 4096).await, d, "write {i} finished");
    }
    assert_eq!(dev.inner().stats().fua_writes, 5);
    srv.stop().await;
}

/// `NBD_CMD_DISC` with requests in flight: the server answers them all, then closes
/// (proto.md: the server must finish in-flight requests before it closes).
#[tokio::test(start_paused = true)]
async fn test_disc_answers_every_request_in_flight_before_closing() {
    let dev = fault_disk(4096, MIB.into());
    dev.inject(Fault::delay(Duration::from_secs(5)).on(Op::Write | Op::Flush));
    let srv = TestServer::with_disk(dev.clone()).await;
    for structured in [false, true] {
        let mut c = go(&srv, structured).await;
        let datas: Vec<Vec<u8>> = (0..6).map(|i| random_bytes(4096, 40 + i)).collect();
        for (i, d) in datas.iter().enumerate() {
            c.send_write(i as u64, 4096 * i as u64, d, 0).await;
        }
        c.send(Command::FLUSH, 0, 6, 0, 0).await;
        c.send(Command::DISC, 0, 7, 0, 0).await;
        let mut cookies: Vec<u64> = Vec::new();
        for _ in 0..7 {
            let r: Reply = c.recv(|_| 0).await;
            assert_eq!(r.error, 0, "{r:?}");
            cookies.push(r.cookie);
        }
        cookies.sort_unstable();
        assert_eq!(cookies, (0..7).collect::<Vec<_>>());
        assert!(c.closed_within(Duration::from_secs(1)).await);
        wait_until(|| held(&srv.server.stats()) == (0, 0, 0, 0)).await;
        for (i, d) in datas.iter().enumerate() {
            assert_eq!(&get(&*dev, i as u64, 4096).await, d);
        }
    }
    srv.stop().await;
}

/// A read-only export refuses every kind of write with EPERM before anything reaches the
/// device: the device sees no operation at all until a read.
#[tokio::test(start_paused = true)]
async fn test_read_only_refuses_writes_before_the_device() {
    let dev = fault_disk(512, MIB.into());
    let config = Config::default();
    let srv = TestServer::start(config, vec![export("disk", dev.clone(), true)]).await;
    for structured in [false, true] {
        let mut c = go(&srv, structured).await;
        c.send_write(1, 0, &[1; 4096], 0).await;
        c.send_write(2, 512, &[1; 512], 0).await;
        c.send(Command::TRIM, 0, 3, 0, 4096).await;
        c.send(Command::WRITE_ZEROES, 0, 4, 0, 4096).await;
        c.send(Command::WRITE_ZEROES, cf::NO_HOLE, 5, 0, 4096).await;
        for cookie in 1..=5 {
            let r = c.recv(|_| 0).await;
            assert_eq!((r.cookie, r.error), (cookie, EPERM));
        }
    }
    assert_eq!(dev.op_count(), 0, "a refused write reached the device");
    let mut c = go(&srv, false).await;
    c.send(Command::READ, 0, 9, 0, 512).await;
    assert_eq!(c.recv(|_| 512).await.error, 0);
    assert_eq!(dev.op_count(), 1);
    let s = dev.inner().stats();
    assert_eq!((s.writes, s.write_zeroes, s.discards), (0, 0, 0));
    srv.stop().await;
}

/// The connection after the last one allowed is told why it is refused (`NBD_REP_ERR_POLICY`
/// with a message, which libnbd and QEMU show their user) and closed; once a connection
/// ends, its place is free again.
#[tokio::test(start_paused = true)]
async fn test_connection_limit_refuses_extra_clients_saying_why() {
    let config = Config {
        max_connections: 2,
        ..Config::default()
    };
    let srv = TestServer::start(config, vec![export("disk", mem_disk(512, 1 << 20), false)]).await;
    let a = go(&srv, false).await;
    let b = go(&srv, false).await;
    let mut s = connect(&srv.sock).await;
    Client::greet(&mut s, 3).await;
    let mut data = Vec::new();
    sanshim_nbd::wire::InfoRequest {
        name: b"disk",
        requests: vec![],
    }
    .emit(&mut data);
    Client::send_option(&mut s, OptionCode::GO, &data).await;
    let (_, code, message) = Client::read_option_reply(&mut s).await;
    assert_eq!(code, ReplyCode::ERR_POLICY);
    let message = String::from_utf8(message).unwrap();
    assert!(message.contains("too many connections"), "{message}");
    // EXPORT_NAME cannot be refused in words: the connection closes.
    Client::send_option(&mut s, OptionCode::EXPORT_NAME, b"disk").await;
    let mut extra = Client {
        stream: s,
        size: 0,
        flags: 0,
        structured: false,
    };
    assert!(extra.closed_within(Duration::from_secs(5)).await);
    // One that says nothing is closed by the handshake timeout.
    let mut silent = Client {
        stream: connect(&srv.sock).await,
        size: 0,
        flags: 0,
        structured: false,
    };
    let mut greeting = [0u8; 18];
    silent.stream.read_exact(&mut greeting).await.unwrap();
    assert!(silent.closed_within(Duration::from_secs(11)).await);
    assert_eq!(srv.server.stats().refused_connections, 2);
    drop((a, b));
    wait_until(|| srv.server.stats().connections == 0).await;
    let mut c = go(&srv, false).await;
    c.send(Command::FLUSH, 0, 1, 0, 0).await;
    assert_eq!(
        c.recv(|_| 0).await,
        Reply {
            cookie: 1,
            error: 0,
            data: vec![]
        }
    );
    srv.stop().await;
}
