//! A minimal NBD client (NBD proto.md, fixed newstyle, `NBD_OPT_GO`, simple replies) for the
//! soak's workload: one unix-socket connection shared by several worker threads, requests
//! pipelined, replies matched by cookie by one reader thread, so several requests are in flight
//! and may complete out of order.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use sanshim_nbd::wire::{
    Command, Greeting, InfoRequest, NBD_MAGIC, OPTION_MAGIC, OPTION_REPLY_MAGIC, OptionCode,
    OptionHeader, OptionReplyHeader, ReplyCode, Request, SIMPLE_REPLY_MAGIC, SimpleReplyHeader,
    handshake_flags,
};
use zerocopy::network_endian::{U16, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The answer to one request: `error` 0 and the data of a read, or an NBD error number.
#[derive(Debug)]
pub struct Reply {
    /// NBD error value (0: success).
    pub error: u32,
    /// A successful read's data.
    pub data: Vec<u8>,
}

/// One NBD connection in transmission phase.
pub struct Client {
    /// Export size in bytes.
    pub size: u64,
    /// Transmission flags.
    pub flags: u16,
    writer: Mutex<UnixStream>,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<HashMap<u64, Pending>>,
    /// Set once the connection has failed; later submissions fail at once.
    broken: AtomicBool,
    next_cookie: AtomicU64,
}

struct Pending {
    read_len: usize,
    reply: Sender<Reply>,
}

/// `NBD_INFO_EXPORT` payload.
#[derive(FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct InfoExport {
    info: U16,
    size: U64,
    flags: U16,
}

impl Client {
    /// Connects to the unix socket at `sock` and negotiates export `name`.
    ///
    /// # Errors
    /// I/O errors, and `InvalidData` for a server that does not follow the protocol or
    /// refuses the export.
    pub fn connect(sock: &Path, name: &str) -> io::Result<Client> {
        let mut stream = UnixStream::connect(sock)?;
        let (size, flags) = handshake(&mut stream, name)?;
        let shared = Arc::new(Shared::default());
        let reader_stream = stream.try_clone()?;
        let s = shared.clone();
        let reader = std::thread::Builder::new()
            .name("soak-nbd-reader".to_owned())
            .spawn(move || read_replies(reader_stream, &s))?;
        Ok(Client {
            size,
            flags,
            writer: Mutex::new(stream),
            shared,
            reader: Some(reader),
        })
    }

    /// Sends one request (with `data` for a write); the reply arrives on the returned channel
    /// (a broken connection drops the sender instead).
    ///
    /// # Errors
    /// The connection has failed.
    pub fn submit(
        &self,
        command: Command,
        flags: u16,
        offset: u64,
        length: u32,
        data: Option<&[u8]>,
    ) -> io::Result<Receiver<Reply>> {
        let cookie = self.shared.next_cookie.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        let read_len = if command == Command::READ {
            length as usize
        } else {
            0
        };
        lock(&self.shared.pending).insert(
            cookie,
            Pending {
                read_len,
                reply: tx,
            },
        );
        if self.shared.broken.load(Ordering::Acquire) {
            lock(&self.shared.pending).remove(&cookie);
            return Err(io::ErrorKind::NotConnected.into());
        }
        let header = Request {
            flags,
            command,
            cookie,
            offset,
            length,
        }
        .emit();
        let mut w = lock(&self.writer);
        let sent = w
            .write_all(&header)
            .and_then(|()| data.map_or(Ok(()), |d| w.write_all(d)));
        if let Err(e) = sent {
            self.shared.broken.store(true, Ordering::Release);
            return Err(e);
        }
        Ok(rx)
    }

    /// Sends `NBD_CMD_DISC` and waits for the server to close.
    pub fn disconnect(mut self) {
        let header = Request {
            flags: 0,
            command: Command::DISC,
            cookie: u64::MAX,
            offset: 0,
            length: 0,
        }
        .emit();
        let _ = lock(&self.writer).write_all(&header);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = lock(&self.writer).shutdown(std::net::Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// Fixed newstyle negotiation ending in `NBD_OPT_GO`: the export's size and flags.
fn handshake(stream: &mut UnixStream, name: &str) -> io::Result<(u64, u16)> {
    let mut g = [0u8; size_of::<Greeting>()];
    stream.read_exact(&mut g)?;
    let g = Greeting::read_from_bytes(&g).map_err(|_| bad("short greeting"))?;
    if g.magic.get() != NBD_MAGIC || g.option_magic.get() != OPTION_MAGIC {
        return Err(bad("not an NBD newstyle server"));
    }
    let client_flags = u32::from(handshake_flags::FIXED_NEWSTYLE | handshake_flags::NO_ZEROES);
    stream.write_all(&client_flags.to_be_bytes())?;
    let mut data = Vec::new();
    InfoRequest {
        name: name.as_bytes(),
        requests: Vec::new(),
    }
    .emit(&mut data);
    let len = u32::try_from(data.len()).map_err(|_| bad("export name too long"))?;
    stream.write_all(OptionHeader::new(OptionCode::GO, len).as_bytes())?;
    stream.write_all(&data)?;
    let mut export = None;
    loop {
        let mut h = [0u8; size_of::<OptionReplyHeader>()];
        stream.read_exact(&mut h)?;
        let h = OptionReplyHeader::read_from_bytes(&h).map_err(|_| bad("short reply"))?;
        if h.magic.get() != OPTION_REPLY_MAGIC {
            return Err(bad("bad option reply magic"));
        }
        let len = h.length.get();
        if len > MAX_OPTION_REPLY {
            return Err(bad("option reply too long"));
        }
        let mut payload = vec![0u8; len as usize];
        stream.read_exact(&mut payload)?;
        match ReplyCode(h.reply.get()) {
            ReplyCode::ACK => break,
            ReplyCode::INFO => {
                if let Ok(info) = InfoExport::read_from_bytes(&payload)
                    && info.info.get() == 0
                {
                    export = Some((info.size.get(), info.flags.get()));
                }
            }
            other => {
                let text = String::from_utf8_lossy(&payload);
                return Err(bad(&format!("NBD_OPT_GO refused: {other:?} {text}")));
            }
        }
    }
    export.ok_or_else(|| bad("NBD_OPT_GO without NBD_INFO_EXPORT"))
}

/// The reader thread: replies to their waiting requests until the connection ends; then
/// every request still waiting gets its sender dropped.
fn read_replies(mut stream: UnixStream, shared: &Shared) {
    let _ = read_loop(&mut stream, shared);
    shared.broken.store(true, Ordering::Release);
    lock(&shared.pending).clear();
}

fn read_loop(stream: &mut UnixStream, shared: &Shared) -> io::Result<()> {
    loop {
        let mut h = [0u8; SimpleReplyHeader::LEN];
        stream.read_exact(&mut h)?;
        let h = SimpleReplyHeader::read_from_bytes(&h).map_err(|_| bad("short reply"))?;
        if h.magic.get() != SIMPLE_REPLY_MAGIC {
            return Err(bad("bad reply magic"));
        }
        let pending = lock(&shared.pending)
            .remove(&h.cookie.get())
            .ok_or_else(|| bad("reply to no request"))?;
        let error = h.error.get();
        let mut data = vec![0u8; if error == 0 { pending.read_len } else { 0 }];
        stream.read_exact(&mut data)?;
        let _ = pending.reply.send(Reply { error, data });
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The longest option reply read (this client asks for nothing long).
const MAX_OPTION_REPLY: u32 = 1 << 16;
