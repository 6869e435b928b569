//! Transmission messages: the request header, simple replies and structured reply chunks
//! (proto.md "Request message", "Simple reply message", "Structured reply chunk message").

use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{
    ChunkType, Command, Errno, REQUEST_MAGIC, SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC,
    WireError, read_header, reply_flags,
};

/// C: a request header; a write's data follows it.
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
pub struct RequestHeader {
    /// [`REQUEST_MAGIC`].
    pub magic: U32,
    /// Command flags.
    pub flags: U16,
    /// Command.
    pub command: U16,
    /// Opaque cookie ("handle") echoed in the reply.
    pub cookie: U64,
    /// Byte offset.
    pub offset: U64,
    /// Byte length.
    pub length: U32,
}

/// S: a simple reply header; a read's data follows a successful one.
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
pub struct SimpleReplyHeader {
    /// [`SIMPLE_REPLY_MAGIC`].
    pub magic: U32,
    /// Error value, 0 for success.
    pub error: U32,
    /// The request's cookie.
    pub cookie: U64,
}

/// S: a structured reply chunk header; `length` bytes of payload follow.
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
pub struct ChunkHeader {
    /// [`STRUCTURED_REPLY_MAGIC`].
    pub magic: U32,
    /// Reply flags.
    pub flags: U16,
    /// Chunk type.
    pub kind: U16,
    /// The request's cookie.
    pub cookie: U64,
    /// Payload length.
    pub length: U32,
}

/// A parsed request header.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Request {
    /// Command flags, unchecked.
    pub flags: u16,
    /// The command, possibly unknown.
    pub command: Command,
    /// Opaque cookie.
    pub cookie: u64,
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub length: u32,
}

impl Request {
    /// Length of a request header on the wire.
    pub const LEN: usize = size_of::<RequestHeader>();

    /// Parses a request header; only the magic is checked here, everything else by
    /// [`crate::request::check`].
    ///
    /// # Errors
    /// [`WireError::Truncated`] or [`WireError::BadMagic`].
    pub fn parse(bytes: &[u8]) -> Result<Request, WireError> {
        let h: RequestHeader = read_header(bytes)?;
        if h.magic.get() != REQUEST_MAGIC {
            return Err(WireError::BadMagic(u64::from(h.magic.get())));
        }
        Ok(Request {
            flags: h.flags.get(),
            command: Command(h.command.get()),
            cookie: h.cookie.get(),
            offset: h.offset.get(),
            length: h.length.get(),
        })
    }

    /// The request's header on the wire (for clients and round-trip tests).
    pub fn emit(&self) -> [u8; Request::LEN] {
        let h = RequestHeader {
            magic: REQUEST_MAGIC.into(),
            flags: self.flags.into(),
            command: self.command.0.into(),
            cookie: self.cookie.into(),
            offset: self.offset.into(),
            length: self.length.into(),
        };
        let mut out = [0u8; Request::LEN];
        out.copy_from_slice(h.as_bytes());
        out
    }
}

impl SimpleReplyHeader {
    /// Length on the wire.
    pub const LEN: usize = size_of::<SimpleReplyHeader>();

    /// A simple reply header.
    pub fn new(cookie: u64, error: Option<Errno>) -> Self {
        SimpleReplyHeader {
            magic: SIMPLE_REPLY_MAGIC.into(),
            error: error.map_or(0, |e| e.0).into(),
            cookie: cookie.into(),
        }
    }
}

impl ChunkHeader {
    /// Length on the wire.
    pub const LEN: usize = size_of::<ChunkHeader>();

    /// A chunk header; `done` marks the last chunk of the reply.
    pub fn new(cookie: u64, kind: ChunkType, done: bool, length: u32) -> Self {
        ChunkHeader {
            magic: STRUCTURED_REPLY_MAGIC.into(),
            flags: if done { reply_flags::DONE } else { 0 }.into(),
            kind: kind.0.into(),
            cookie: cookie.into(),
            length: length.into(),
        }
    }
}

/// Appends a final `NBD_REPLY_TYPE_ERROR` chunk with `message` to `out`.
pub fn emit_error_chunk(out: &mut Vec<u8>, cookie: u64, errno: Errno, message: &str) {
    // Messages are static strings from this crate; cut them to be safe anyway.
    let message = &message.as_bytes()[..message.len().min(1024)];
    let length = 6 + message.len() as u32;
    out.extend_from_slice(ChunkHeader::new(cookie, ChunkType::ERROR, true, length).as_bytes());
    out.extend_from_slice(&errno.0.to_be_bytes());
    out.extend_from_slice(&(message.len() as u16).to_be_bytes());
    out.extend_from_slice(message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const WRITE_BYTES: [u8; 28] = [
        0x25, 0x60, 0x95, 0x13,                         // NBD_REQUEST_MAGIC
        0x00, 0x01,                                     // flags: FUA
        0x00, 0x01,                                     // NBD_CMD_WRITE
        0x00, 0x00, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, // cookie
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, // offset 4096
        0x00, 0x00, 0x02, 0x00,                         // length 512
    ];

    #[test]
    fn test_parse_request() {
        let r = Request::parse(&WRITE_BYTES).unwrap();
        let want = Request {
            flags: 1,
            command: Command::WRITE,
            cookie: 0xdead_beef,
            offset: 4096,
            length: 512,
        };
        assert_eq!(r, want);
        assert_eq!(r.emit(), WRITE_BYTES);
    }

    #[test]
    fn test_parse_request_errors() {
        assert_eq!(
            Request::parse(&WRITE_BYTES[..27]),
            Err(WireError::Truncated {
                needed: 28,
                got: 27
            })
        );
        let mut bad = WRITE_BYTES;
        bad[3] = 0x14;
        assert_eq!(Request::parse(&bad), Err(WireError::BadMagic(0x2560_9514)));
    }

    #[test]
    fn test_emit_replies() {
        #[rustfmt::skip]
        let simple = [
            0x67, 0x44, 0x66, 0x98,                         // NBD_SIMPLE_REPLY_MAGIC
            0x00, 0x00, 0x00, 0x16,                         // EINVAL
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, // cookie
        ];
        assert_eq!(
            SimpleReplyHeader::new(7, Some(Errno::EINVAL)).as_bytes(),
            simple
        );
        let mut out = Vec::new();
        emit_error_chunk(&mut out, 7, Errno::EPERM, "ro");
        #[rustfmt::skip]
        let chunk = [
            0x66, 0x8e, 0x33, 0xef,                         // NBD_STRUCTURED_REPLY_MAGIC
            0x00, 0x01,                                     // NBD_REPLY_FLAG_DONE
            0x80, 0x01,                                     // NBD_REPLY_TYPE_ERROR
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, // cookie
            0x00, 0x00, 0x00, 0x08,                         // length 8
            0x00, 0x00, 0x00, 0x01,                         // EPERM
            0x00, 0x02,                                     // message length
            b'r', b'o',
        ];
        assert_eq!(out, chunk);
    }
}
