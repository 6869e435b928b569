//! NBD wire format (NetworkBlockDevice `doc/proto.md`: "Handshake", "Transmission", "Values").
//!
//! # Contract
//! - Fixed-size headers are zerocopy structs with `network_endian` fields, read with
//!   `read_from_prefix` and written with `as_bytes`; no offsets are computed by hand outside
//!   this module.
//! - Each message has a validated representation (`*Repr`, [`Request`], [`InfoRequest`])
//!   produced by `parse`, which never panics on any input and returns a [`WireError`] saying
//!   what is wrong, and written back by `emit`, which never panics given a buffer of
//!   `encoded_len()` bytes (or appends to a `Vec`).
//! - Code points ([`Command`], [`OptionCode`], [`ReplyCode`], [`InfoType`], [`ChunkType`],
//!   [`Errno`]) are open newtypes: an unknown value survives a round trip and prints as a
//!   number.

mod handshake;
mod transmission;

pub use self::handshake::{
    ExportNameReply, Greeting, InfoRequest, OptionHeader, OptionReplyHeader, emit_info_block_size,
    emit_info_export, emit_info_string, emit_option_reply, emit_server_entry,
};
pub use self::transmission::{
    ChunkHeader, Request, RequestHeader, SimpleReplyHeader, emit_error_chunk,
};

/// `NBDMAGIC`: the first eight bytes the server sends.
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: the newstyle magic, also the magic of every client option.
pub const OPTION_MAGIC: u64 = 0x4948_4156_454f_5054;
/// Magic of an option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic of a transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Magic of a structured reply chunk.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
/// Length of the reserved zeroes after an `NBD_OPT_EXPORT_NAME` reply.
pub const EXPORT_NAME_ZEROES: usize = 124;
/// Longest string (export name, description, message) the protocol allows.
pub const MAX_STRING: usize = 4096;

/// Handshake flags (server) and client flags.
pub mod handshake_flags {
    /// `NBD_FLAG_FIXED_NEWSTYLE` / `NBD_FLAG_C_FIXED_NEWSTYLE`.
    pub const FIXED_NEWSTYLE: u16 = 1 << 0;
    /// `NBD_FLAG_NO_ZEROES` / `NBD_FLAG_C_NO_ZEROES`.
    pub const NO_ZEROES: u16 = 1 << 1;
}

/// Transmission flags (`NBD_FLAG_*`), sent with the export size.
pub mod transmission_flags {
    /// Always set.
    pub const HAS_FLAGS: u16 = 1 << 0;
    /// The export refuses writes.
    pub const READ_ONLY: u16 = 1 << 1;
    /// `NBD_CMD_FLUSH` is understood.
    pub const SEND_FLUSH: u16 = 1 << 2;
    /// `NBD_CMD_FLAG_FUA` is understood.
    pub const SEND_FUA: u16 = 1 << 3;
    /// The medium is rotational.
    pub const ROTATIONAL: u16 = 1 << 4;
    /// `NBD_CMD_TRIM` is understood.
    pub const SEND_TRIM: u16 = 1 << 5;
    /// `NBD_CMD_WRITE_ZEROES` is understood.
    pub const SEND_WRITE_ZEROES: u16 = 1 << 6;
    /// `NBD_CMD_FLAG_DF` is understood (structured replies only).
    pub const SEND_DF: u16 = 1 << 7;
    /// Flush and FUA are visible across all connections to the export.
    pub const CAN_MULTI_CONN: u16 = 1 << 8;
    /// `NBD_CMD_CACHE` is understood.
    pub const SEND_CACHE: u16 = 1 << 10;
    /// `NBD_CMD_FLAG_FAST_ZERO` is understood.
    pub const SEND_FAST_ZERO: u16 = 1 << 11;
}

/// Command flags (`NBD_CMD_FLAG_*`) of a transmission request.
pub mod command_flags {
    /// Force unit access.
    pub const FUA: u16 = 1 << 0;
    /// Write-zeroes must not deallocate.
    pub const NO_HOLE: u16 = 1 << 1;
    /// Read: at most one content chunk.
    pub const DF: u16 = 1 << 2;
    /// Block status: one extent only.
    pub const REQ_ONE: u16 = 1 << 3;
    /// Write-zeroes: fail rather than be slow.
    pub const FAST_ZERO: u16 = 1 << 4;
}

/// Flags of a structured reply chunk.
pub mod reply_flags {
    /// The last chunk of a reply.
    pub const DONE: u16 = 1 << 0;
}

/// Why bytes could not be parsed.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Fewer bytes than the message needs.
    #[error("message truncated: {needed} bytes needed, {got} present")]
    Truncated {
        /// Bytes the message needs.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// A magic number is wrong: the peer does not speak NBD or lost framing.
    #[error("bad magic {0:#x}")]
    BadMagic(u64),
    /// Bytes left over after the fields the message defines.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A string is longer than the protocol allows.
    #[error("string of {0} bytes is too long")]
    StringTooLong(usize),
}

sanshim_codepoint::code_point! {
    /// An option the client sends during the handshake (`NBD_OPT_*`).
    pub struct OptionCode(u32) {
        /// Choose an export and enter transmission (the old way).
        EXPORT_NAME = 1,
        /// End the handshake.
        ABORT = 2,
        /// List the exports.
        LIST = 3,
        /// Withdrawn.
        PEEK_EXPORT = 4,
        /// Upgrade to TLS.
        STARTTLS = 5,
        /// Describe an export.
        INFO = 6,
        /// Describe an export and enter transmission.
        GO = 7,
        /// Use structured replies.
        STRUCTURED_REPLY = 8,
        /// List metadata contexts.
        LIST_META_CONTEXT = 9,
        /// Select metadata contexts.
        SET_META_CONTEXT = 10,
        /// Use 64-bit request and reply headers.
        EXTENDED_HEADERS = 11,
    }
}

sanshim_codepoint::code_point! {
    /// The type of an option reply (`NBD_REP_*`); errors have bit 31 set.
    pub struct ReplyCode(u32) {
        /// The option succeeded (or a list ended).
        ACK = 1,
        /// One export of a list.
        SERVER = 2,
        /// One piece of export information.
        INFO = 3,
        /// One metadata context.
        META_CONTEXT = 4,
        /// The option is not known.
        ERR_UNSUP = 0x8000_0001,
        /// Policy forbids the option.
        ERR_POLICY = 0x8000_0002,
        /// The option is malformed.
        ERR_INVALID = 0x8000_0003,
        /// Not supported on this platform.
        ERR_PLATFORM = 0x8000_0004,
        /// TLS is required first.
        ERR_TLS_REQD = 0x8000_0005,
        /// The export does not exist.
        ERR_UNKNOWN = 0x8000_0006,
        /// The server is shutting down.
        ERR_SHUTDOWN = 0x8000_0007,
        /// The client must ask for block sizes.
        ERR_BLOCK_SIZE_REQD = 0x8000_0008,
        /// The option or its reply is too large.
        ERR_TOO_BIG = 0x8000_0009,
    }
}

sanshim_codepoint::code_point! {
    /// A piece of export information (`NBD_INFO_*`) in `NBD_OPT_INFO`/`NBD_OPT_GO`.
    pub struct InfoType(u16) {
        /// Size and transmission flags.
        EXPORT = 0,
        /// Canonical name.
        NAME = 1,
        /// Human-readable description.
        DESCRIPTION = 2,
        /// Minimum, preferred and maximum block sizes.
        BLOCK_SIZE = 3,
    }
}

sanshim_codepoint::code_point! {
    /// A transmission request type (`NBD_CMD_*`).
    pub struct Command(u16) {
        /// Read data.
        READ = 0,
        /// Write data.
        WRITE = 1,
        /// Disconnect.
        DISC = 2,
        /// Flush the write cache.
        FLUSH = 3,
        /// Discard.
        TRIM = 4,
        /// Prefetch.
        CACHE = 5,
        /// Write zeroes.
        WRITE_ZEROES = 6,
        /// Query allocation status.
        BLOCK_STATUS = 7,
        /// Resize the export.
        RESIZE = 8,
    }
}

sanshim_codepoint::code_point! {
    /// The type of a structured reply chunk (`NBD_REPLY_TYPE_*`).
    pub struct ChunkType(u16) {
        /// No payload; ends a reply.
        NONE = 0,
        /// Data at an offset.
        OFFSET_DATA = 1,
        /// A hole at an offset.
        OFFSET_HOLE = 2,
        /// Block status extents.
        BLOCK_STATUS = 5,
        /// An error.
        ERROR = 0x8001,
        /// An error at an offset.
        ERROR_OFFSET = 0x8002,
    }
}

sanshim_codepoint::code_point! {
    /// An error value in a reply (proto.md "Error values").
    pub struct Errno(u32) {
        /// Operation not permitted (write to a read-only export).
        EPERM = 1,
        /// Input/output error.
        EIO = 5,
        /// Out of memory.
        ENOMEM = 12,
        /// Invalid argument (bad request).
        EINVAL = 22,
        /// No space left (write past the end).
        ENOSPC = 28,
        /// Value too large.
        EOVERFLOW = 75,
        /// Operation not supported (fast zero that would be slow).
        ENOTSUP = 95,
        /// The server is shutting down.
        ESHUTDOWN = 108,
    }
}

impl From<sanshim_blockdev::BlockError> for Errno {
    fn from(e: sanshim_blockdev::BlockError) -> Self {
        // ErrorKind::errno returns small positive values from the NBD list.
        Errno(e.kind().errno().unsigned_abs())
    }
}

impl ReplyCode {
    /// Whether this reply reports an error.
    pub fn is_error(self) -> bool {
        self.0 & 0x8000_0000 != 0
    }
}

/// Reads a fixed-size header from the front of `bytes`.
fn read_header<T: zerocopy::FromBytes>(bytes: &[u8]) -> Result<T, WireError> {
    T::read_from_prefix(bytes)
        .map(|(header, _)| header)
        .map_err(|_| WireError::Truncated {
            needed: size_of::<T>(),
            got: bytes.len(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_code_points_print_names_and_keep_unknown_values() {
        assert_eq!(format!("{:?}", Command::WRITE_ZEROES), "WRITE_ZEROES");
        assert_eq!(format!("{:?}", Command(42)), "Command(0x2a)");
        assert_eq!(OptionCode(99).name(), None);
        assert_eq!(OptionCode(7), OptionCode::GO);
        assert!(ReplyCode::ERR_UNSUP.is_error());
        assert!(!ReplyCode::INFO.is_error());
    }

    #[test]
    fn test_errno_from_block_error() {
        use sanshim_blockdev::{BlockError, ErrorKind};
        let e = |k| Errno::from(BlockError::new(k, "x"));
        assert_eq!(e(ErrorKind::ReadOnly), Errno::EPERM);
        assert_eq!(e(ErrorKind::PathFailure), Errno::EIO);
        assert_eq!(e(ErrorKind::NoSpace), Errno::ENOSPC);
        assert_eq!(e(ErrorKind::Unsupported), Errno::ENOTSUP);
    }
}
