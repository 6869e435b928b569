//! Test support: an in-process server on a MemDisk, a scripted raw NBD client, tool lookup.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sanshim_blockdev::{BlockDevice, MemDisk};
use sanshim_nbd::wire::{
    ChunkHeader, Command, InfoRequest, InfoType, OptionCode, OptionHeader, OptionReplyHeader,
    ReplyCode, Request, SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC,
};
use sanshim_nbd::{Config, Export, ListenAddr, Server};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;
use zerocopy::{FromBytes, IntoBytes};

/// A server on a unix socket in a temporary directory.
pub struct TestServer<D> {
    pub server: Server<D>,
    pub sock: PathBuf,
    pub task: JoinHandle<()>,
    pub dir: tempfile::TempDir,
}

impl<D: BlockDevice + 'static> TestServer<D> {
    pub async fn start(config: Config, exports: Vec<Export<D>>) -> TestServer<D> {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("nbd.sock");
        let server = Server::new(config, exports).unwrap();
        let listener = ListenAddr::Unix(sock.clone()).bind().await.unwrap();
        let task = tokio::spawn({
            let server = server.clone();
            async move { server.serve(listener).await }
        });
        TestServer {
            server,
            sock,
            task,
            dir,
        }
    }

    /// One writable export "disk" of `disk`.
    pub async fn with_disk(disk: Arc<D>) -> TestServer<D> {
        TestServer::start(Config::default(), vec![export("disk", disk, false)]).await
    }

    pub fn uri(&self, name: &str) -> String {
        format!("nbd+unix:///{name}?socket={}", self.sock.display())
    }

    pub async fn stop(self) {
        self.server.shutdown();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

pub fn export<D>(name: &str, device: Arc<D>, read_only: bool) -> Export<D> {
    Export {
        name: name.into(),
        description: format!("test export {name}"),
        device,
        read_only,
    }
}

pub fn mem_disk(block_size: u32, bytes: u64) -> Arc<MemDisk> {
    Arc::new(MemDisk::new(block_size, bytes / u64::from(block_size)).unwrap())
}

/// Writes `data` at `lba` (test set-up).
pub async fn put<D: BlockDevice>(disk: &D, lba: u64, data: &[u8]) {
    disk.write(lba, bytes::Bytes::copy_from_slice(data), false)
        .await
        .unwrap();
}

/// Reads `len` bytes at `lba` (test checks).
pub async fn get<D: BlockDevice>(disk: &D, lba: u64, len: usize) -> Vec<u8> {
    disk.read(lba, bytes::BytesMut::zeroed(len))
        .await
        .unwrap()
        .to_vec()
}

/// Waits, on the test's clock, until `cond` holds; panics after a minute of it.
pub async fn wait_until(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "condition not met");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// On a paused clock: returns once every task waits for something other than time (an hour
/// passes only when nothing else can run).
pub async fn settle() {
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

/// Deterministic pseudo-random bytes (xorshift).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Path of an external tool; `None` (test skipped) when missing, unless CI=true, where a
/// missing tool fails the test.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
            "{name} is required under CI (CI=true or CI=1)"
        );
        eprintln!("skipping: {name} not installed");
    }
    found
}

/// A raw NBD client that speaks exactly what a test tells it to.
pub struct Client<S> {
    pub stream: S,
    pub size: u64,
    pub flags: u16,
    pub structured: bool,
}

/// A reply to one request.
#[derive(Eq, PartialEq)]
pub struct Reply {
    pub cookie: u64,
    pub error: u32,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Data can be megabytes: show its length and a digest, not the bytes.
        let digest = self.data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        write!(
            f,
            "Reply {{ cookie: {}, error: {}, data: {} bytes, fnv {digest:#x} }}",
            self.cookie,
            self.error,
            self.data.len()
        )
    }
}

pub async fn connect(sock: &Path) -> UnixStream {
    UnixStream::connect(sock).await.unwrap()
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Reads the greeting and sends client flags; returns the handshake flags.
    pub async fn greet(stream: &mut S, client_flags: u32) -> u16 {
        let mut g = [0u8; 18];
        stream.read_exact(&mut g).await.unwrap();
        assert_eq!(&g[..16], b"NBDMAGICIHAVEOPT");
        stream.write_all(&client_flags.to_be_bytes()).await.unwrap();
        u16::from_be_bytes([g[16], g[17]])
    }

    pub async fn send_option(stream: &mut S, option: OptionCode, data: &[u8]) {
        let h = OptionHeader::new(option, data.len() as u32);
        stream.write_all(h.as_bytes()).await.unwrap();
        stream.write_all(data).await.unwrap();
    }

    pub async fn read_option_reply(stream: &mut S) -> (OptionCode, ReplyCode, Vec<u8>) {
        let mut h = [0u8; 20];
        stream.read_exact(&mut h).await.unwrap();
        let h = OptionReplyHeader::read_from_bytes(&h).unwrap();
        let mut data = vec![0; h.length.get() as usize];
        stream.read_exact(&mut data).await.unwrap();
        (OptionCode(h.option.get()), ReplyCode(h.reply.get()), data)
    }

    /// Fixed newstyle handshake ending in NBD_OPT_GO that asks for the block sizes (and so
    /// agrees to them).
    pub async fn go(stream: S, name: &str, structured: bool) -> Client<S> {
        Client::go_with(stream, name, structured, true).await
    }

    /// NBD_OPT_GO, asking for the block sizes or not.
    pub async fn go_with(
        mut stream: S,
        name: &str,
        structured: bool,
        block_sizes: bool,
    ) -> Client<S> {
        Client::greet(&mut stream, 3).await;
        if structured {
            Client::send_option(&mut stream, OptionCode::STRUCTURED_REPLY, &[]).await;
            assert_eq!(
                Client::read_option_reply(&mut stream).await.1,
                ReplyCode::ACK
            );
        }
        let mut data = Vec::new();
        InfoRequest {
            name: name.as_bytes(),
            requests: if block_sizes {
                vec![InfoType::BLOCK_SIZE]
            } else {
                vec![]
            },
        }
        .emit(&mut data);
        Client::send_option(&mut stream, OptionCode::GO, &data).await;
        let (mut size, mut flags) = (0, 0);
        loop {
            let (_, code, data) = Client::read_option_reply(&mut stream).await;
            match code {
                ReplyCode::INFO if data[..2] == [0, 0] => {
                    size = u64::from_be_bytes(data[2..10].try_into().unwrap());
                    flags = u16::from_be_bytes([data[10], data[11]]);
                }
                ReplyCode::INFO => {}
                ReplyCode::ACK => break,
                other => panic!("GO failed: {other:?} {:?}", String::from_utf8_lossy(&data)),
            }
        }
        Client {
            stream,
            size,
            flags,
            structured,
        }
    }

    pub async fn send(&mut self, command: Command, flags: u16, cookie: u64, offset: u64, len: u32) {
        let r = Request {
            flags,
            command,
            cookie,
            offset,
            length: len,
        };
        self.stream.write_all(&r.emit()).await.unwrap();
    }

    pub async fn send_write(&mut self, cookie: u64, offset: u64, data: &[u8], flags: u16) {
        self.send(Command::WRITE, flags, cookie, offset, data.len() as u32)
            .await;
        self.stream.write_all(data).await.unwrap();
    }

    /// Reads one whole reply; `read_len` says how much data a successful simple reply carries
    /// (the simple reply format does not say).
    pub async fn recv(&mut self, read_len: impl Fn(u64) -> usize) -> Reply {
        let mut magic = [0u8; 4];
        self.stream.read_exact(&mut magic).await.unwrap();
        match u32::from_be_bytes(magic) {
            SIMPLE_REPLY_MAGIC => {
                let mut rest = [0u8; 12];
                self.stream.read_exact(&mut rest).await.unwrap();
                let error = u32::from_be_bytes(rest[..4].try_into().unwrap());
                let cookie = u64::from_be_bytes(rest[4..].try_into().unwrap());
                let mut data = vec![0; if error == 0 { read_len(cookie) } else { 0 }];
                self.stream.read_exact(&mut data).await.unwrap();
                Reply {
                    cookie,
                    error,
                    data,
                }
            }
            STRUCTURED_REPLY_MAGIC => self.recv_structured(magic).await,
            m => panic!("bad reply magic {m:#x}"),
        }
    }

    async fn recv_structured(&mut self, magic: [u8; 4]) -> Reply {
        let mut h = [0u8; ChunkHeader::LEN];
        h[..4].copy_from_slice(&magic);
        self.stream.read_exact(&mut h[4..]).await.unwrap();
        let h = ChunkHeader::read_from_bytes(&h).unwrap();
        assert_eq!(
            h.flags.get() & 1,
            1,
            "every reply of this server is one chunk"
        );
        let mut payload = vec![0; h.length.get() as usize];
        self.stream.read_exact(&mut payload).await.unwrap();
        let cookie = h.cookie.get();
        match h.kind.get() {
            0 => Reply {
                cookie,
                error: 0,
                data: vec![],
            },
            1 => Reply {
                cookie,
                error: 0,
                data: payload[8..].to_vec(),
            },
            0x8001 => {
                let error = u32::from_be_bytes(payload[..4].try_into().unwrap());
                let len = u16::from_be_bytes([payload[4], payload[5]]) as usize;
                assert_eq!(len + 6, payload.len());
                Reply {
                    cookie,
                    error,
                    data: vec![],
                }
            }
            t => panic!("unexpected chunk type {t:#x}"),
        }
    }

    /// Whether the server has closed the connection (EOF within `wait`).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(wait, self.stream.read(&mut b)).await,
            Ok(Ok(0) | Err(_))
        )
    }
}
