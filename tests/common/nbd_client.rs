//! A minimal NBD client (NBD proto.md: fixed newstyle handshake with `NBD_OPT_EXPORT_NAME`,
//! simple replies) for tests that must control what is in flight: it sends requests without
//! waiting for their replies and reads the replies when the test says so.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use sanshim_nbd::wire::{
    NBD_MAGIC, OPTION_MAGIC, REQUEST_MAGIC, SIMPLE_REPLY_MAGIC, command_flags, handshake_flags,
};

/// `NBD_CMD_WRITE`.
pub const CMD_WRITE: u16 = 1;
/// `NBD_CMD_FLUSH`.
pub const CMD_FLUSH: u16 = 3;
/// `NBD_OPT_EXPORT_NAME`.
const OPT_EXPORT_NAME: u32 = 1;

/// A connected client in the transmission phase.
pub struct NbdClient {
    stream: UnixStream,
    /// The export's size in bytes.
    pub size: u64,
    /// The transmission flags the server sent.
    pub flags: u16,
}

/// One simple reply.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Reply {
    /// The request's cookie.
    pub cookie: u64,
    /// 0, or the errno the server sent.
    pub error: u32,
}

impl NbdClient {
    /// Connects to the unix socket `path` and opens export `name`.
    ///
    /// # Panics
    /// On any I/O error or a server that does not speak fixed newstyle NBD.
    pub fn connect(path: &Path, name: &str) -> NbdClient {
        let mut stream = UnixStream::connect(path).expect("connect to the NBD socket");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("read timeout");
        let mut greeting = [0u8; 18];
        stream.read_exact(&mut greeting).expect("NBD greeting");
        assert_eq!(greeting[..8], NBD_MAGIC.to_be_bytes(), "NBD magic");
        assert_eq!(greeting[8..16], OPTION_MAGIC.to_be_bytes(), "newstyle");
        let client_flags = u32::from(handshake_flags::FIXED_NEWSTYLE | handshake_flags::NO_ZEROES);
        let mut out = client_flags.to_be_bytes().to_vec();
        out.extend_from_slice(&OPTION_MAGIC.to_be_bytes());
        out.extend_from_slice(&OPT_EXPORT_NAME.to_be_bytes());
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        stream.write_all(&out).expect("NBD_OPT_EXPORT_NAME");
        let mut export = [0u8; 10];
        stream
            .read_exact(&mut export)
            .expect("export size and flags");
        let size = u64::from_be_bytes(export[..8].try_into().expect("8 bytes"));
        let flags = u16::from_be_bytes([export[8], export[9]]);
        NbdClient {
            stream,
            size,
            flags,
        }
    }

    /// Sends a request (with `data` for a write) and does not wait for its reply.
    pub fn send(&mut self, command: u16, flags: u16, cookie: u64, offset: u64, data: &[u8]) {
        let length = if command == CMD_WRITE { data.len() } else { 0 };
        let mut out = Vec::with_capacity(28 + length);
        out.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&command.to_be_bytes());
        out.extend_from_slice(&cookie.to_be_bytes());
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&(length as u32).to_be_bytes());
        out.extend_from_slice(&data[..length]);
        self.stream.write_all(&out).expect("send an NBD request");
    }

    /// Sends a write with `NBD_CMD_FLAG_FUA`.
    pub fn send_fua_write(&mut self, cookie: u64, offset: u64, data: &[u8]) {
        self.send(CMD_WRITE, command_flags::FUA, cookie, offset, data);
    }

    /// Reads the next simple reply (writes and flushes carry no payload).
    ///
    /// # Panics
    /// On an I/O error, an end of stream or a reply that is not a simple one.
    pub fn reply(&mut self) -> Reply {
        let mut head = [0u8; 16];
        self.stream.read_exact(&mut head).expect("an NBD reply");
        assert_eq!(head[..4], SIMPLE_REPLY_MAGIC.to_be_bytes(), "simple reply");
        Reply {
            error: u32::from_be_bytes(head[4..8].try_into().expect("4 bytes")),
            cookie: u64::from_be_bytes(head[8..16].try_into().expect("8 bytes")),
        }
    }

    /// Whether a reply (or the end of the stream) can be read now, without waiting.
    pub fn reply_ready(&self) -> bool {
        use nix::sys::socket::{MsgFlags, recv};
        let mut byte = [0u8; 1];
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.stream);
        let peeked = recv(fd, &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT);
        !matches!(peeked, Err(nix::errno::Errno::EAGAIN))
    }
}
