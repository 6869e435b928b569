//! Requests not aligned to the device's logical block from clients that did not agree to the
//! advertised block sizes (NBD_OPT_EXPORT_NAME, NBD_OPT_GO without NBD_INFO_BLOCK_SIZE): served
//! by read-modify-write, against a model of the export, also with several connections writing
//! distinct bytes of the same blocks at once (proto.md "Block size constraints").
//!
//! Every test runs on tokio's paused clock (see protocol.rs).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use sanshim_blockdev::{BlockDevice, Fault, FaultDisk, MemDisk, Op};
use sanshim_nbd::wire::{Command, OptionCode, command_flags as cf};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

use common::{Client, TestServer, connect, get, random_bytes, wait_until};

const EINVAL: u32 = 22;
const SIZE: usize = 256 * 1024;

/// A client of each kind that did not agree to the block sizes.
async fn lenient_clients<D>(srv: &TestServer<D>) -> Vec<Client<UnixStream>> {
    let mut clients = Vec::new();
    for structured in [false, true] {
        clients.push(Client::go_with(connect(&srv.sock).await, "disk", structured, false).await);
    }
    let mut s = connect(&srv.sock).await;
    Client::greet(&mut s, 3).await;
    Client::send_option(&mut s, OptionCode::EXPORT_NAME, b"disk").await;
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).await.unwrap();
    clients.push(Client {
        stream: s,
        size: SIZE as u64,
        flags: u16::from_be_bytes([reply[8], reply[9]]),
        structured: false,
    });
    clients
}

/// Writes, zeroes, trims and reads at every alignment, one at a time, checked against a model.
#[tokio::test(start_paused = true)]
async fn test_unaligned_requests_match_a_model() {
    for block_size in [512u32, 4096] {
        let disk = common::mem_disk(block_size, SIZE as u64);
        let srv = TestServer::with_disk(disk.clone()).await;
        let mut model = vec![0u8; SIZE];
        let mut cookie = 0u64;
        for (k, mut c) in lenient_clients(&srv).await.into_iter().enumerate() {
            for (i, (offset, len)) in [(1, 1), (511, 2), (512, 512), (4095, 4098), (100, 70000)]
                .into_iter()
                .enumerate()
            {
                cookie += 1;
                let data = random_bytes(len, cookie);
                c.send_write(cookie, offset, &data, if i % 2 == 0 { cf::FUA } else { 0 })
                    .await;
                assert_eq!(c.recv(|_| 0).await.error, 0, "write {offset}+{len}");
                let at = offset as usize;
                model[at..at + len].copy_from_slice(&data);
                c.send(Command::READ, 0, cookie, offset + 3, len as u32)
                    .await;
                let r = c.recv(|_| len).await;
                let want = &model[at + 3..at + 3 + len];
                assert!(r.error == 0 && r.data == want, "read {}+{len}", offset + 3);
            }
            cookie += 1;
            let (offset, len) = (1000 + 7 * k as u64, 9000);
            c.send(Command::WRITE_ZEROES, 0, cookie, offset, len).await;
            assert_eq!(c.recv(|_| 0).await.error, 0);
            model[offset as usize..(offset + u64::from(len)) as usize].fill(0);
            // A trim drops whole blocks inside only (MemDisk zeroes them).
            cookie += 1;
            c.send(Command::TRIM, 0, cookie, 50_001, 20_000).await;
            assert_eq!(c.recv(|_| 0).await.error, 0);
            let bs = block_size as usize;
            let (start, end) = (50_001usize.div_ceil(bs) * bs, 70_001 / bs * bs);
            model[start..end].fill(0);
            assert!(
                get(&*disk, 0, SIZE).await == model,
                "client {k}, {block_size}-byte blocks"
            );
        }
        let s = srv.server.stats();
        assert!(
            s.read_modify_writes >= 12 && s.unaligned_reads >= 12,
            "{s:?}"
        );
        srv.stop().await;
    }
}

/// Three connections, each with many pipelined writes to distinct bytes that share 4 KiB
/// blocks, on a device with delays: no update is lost.
#[tokio::test(start_paused = true)]
async fn test_concurrent_unaligned_writes_from_several_connections_lose_nothing() {
    let dev = Arc::new(FaultDisk::new(
        MemDisk::new(4096, (SIZE / 4096) as u64).unwrap(),
    ));
    dev.inject(Fault::delay(Duration::from_millis(3)).on(Op::Read));
    let srv = TestServer::with_disk(dev.clone()).await;
    let mut model = vec![0u8; SIZE];
    let mut clients = lenient_clients(&srv).await;
    // Writer w of each connection c writes 300 bytes at (c * 32 + w) * 300 + 17.
    for (c, client) in clients.iter_mut().enumerate() {
        for w in 0..32u64 {
            let offset = (c as u64 * 32 + w) * 300 + 17;
            let data = random_bytes(300, offset);
            model[offset as usize..offset as usize + 300].copy_from_slice(&data);
            client.send_write(w, offset, &data, 0).await;
        }
    }
    for client in &mut clients {
        for _ in 0..32 {
            assert_eq!(client.recv(|_| 0).await.error, 0);
        }
    }
    let back = get(&*dev, 0, SIZE).await;
    let lost = back.iter().zip(&model).position(|(a, b)| a != b);
    assert_eq!(lost, None, "an update was lost");
    wait_until(|| srv.server.stats().in_flight == 0).await;
    assert_eq!(srv.server.stats().read_modify_writes, 96);
    srv.stop().await;
}

/// A client that agreed to the block sizes is held to them: a misaligned request gets
/// EINVAL and nothing reaches the device.
#[tokio::test(start_paused = true)]
async fn test_clients_that_agreed_get_einval() {
    let dev = Arc::new(FaultDisk::new(MemDisk::new(4096, 64).unwrap()));
    let srv = TestServer::with_disk(dev.clone()).await;
    let mut c = Client::go(connect(&srv.sock).await, "disk", true).await;
    c.send_write(1, 512, &[1; 512], 0).await;
    c.send(Command::READ, 0, 2, 0, 512).await;
    for _ in 0..2 {
        assert_eq!(c.recv(|_| 0).await.error, EINVAL);
    }
    assert_eq!(dev.op_count(), 0);
    assert_eq!(dev.geometry().block_size, 4096);
    srv.stop().await;
}
