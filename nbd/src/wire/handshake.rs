//! Handshake messages: greeting, option requests and replies, `NBD_OPT_INFO`/`NBD_OPT_GO`
//! payloads (proto.md "Fixed newstyle negotiation", "Option types", "Option reply types").

use zerocopy::network_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{
    InfoType, MAX_STRING, NBD_MAGIC, OPTION_MAGIC, OPTION_REPLY_MAGIC, OptionCode, ReplyCode,
    WireError, read_header,
};

/// S: the newstyle greeting: `NBDMAGIC`, `IHAVEOPT`, handshake flags.
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
pub struct Greeting {
    /// [`NBD_MAGIC`].
    pub magic: U64,
    /// [`OPTION_MAGIC`].
    pub option_magic: U64,
    /// Handshake flags.
    pub flags: U16,
}

/// C: the header of an option request; `length` bytes of data follow.
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
pub struct OptionHeader {
    /// [`OPTION_MAGIC`].
    pub magic: U64,
    /// The option.
    pub option: U32,
    /// Length of the option data.
    pub length: U32,
}

/// S: the header of an option reply; `length` bytes of data follow.
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
pub struct OptionReplyHeader {
    /// [`OPTION_REPLY_MAGIC`].
    pub magic: U64,
    /// The option replied to.
    pub option: U32,
    /// The reply type.
    pub reply: U32,
    /// Length of the reply data.
    pub length: U32,
}

/// S: the reply to `NBD_OPT_EXPORT_NAME` (followed by 124 zeroes unless NO_ZEROES).
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
pub struct ExportNameReply {
    /// Export size in bytes.
    pub size: U64,
    /// Transmission flags.
    pub flags: U16,
}

/// `NBD_INFO_EXPORT` reply payload.
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct InfoExport {
    info: U16,
    size: U64,
    flags: U16,
}

/// `NBD_INFO_BLOCK_SIZE` reply payload.
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct InfoBlockSize {
    info: U16,
    minimum: U32,
    preferred: U32,
    maximum: U32,
}

/// The data of `NBD_OPT_INFO` / `NBD_OPT_GO`: an export name and the information asked for.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct InfoRequest<'a> {
    /// The export name (empty for the default export), as sent.
    pub name: &'a [u8],
    /// The information requests, in order, unknown ones included.
    pub requests: Vec<InfoType>,
}

impl Greeting {
    /// The greeting with these handshake flags.
    pub fn new(flags: u16) -> Self {
        Greeting {
            magic: NBD_MAGIC.into(),
            option_magic: OPTION_MAGIC.into(),
            flags: flags.into(),
        }
    }
}

impl OptionHeader {
    /// Length on the wire.
    pub const LEN: usize = size_of::<OptionHeader>();

    /// Parses an option header, returning the option and its data length.
    ///
    /// # Errors
    /// [`WireError::Truncated`] or [`WireError::BadMagic`].
    pub fn parse(bytes: &[u8]) -> Result<(OptionCode, u32), WireError> {
        let h: OptionHeader = read_header(bytes)?;
        if h.magic.get() != OPTION_MAGIC {
            return Err(WireError::BadMagic(h.magic.get()));
        }
        Ok((OptionCode(h.option.get()), h.length.get()))
    }

    /// An option header (for clients and tests).
    pub fn new(option: OptionCode, length: u32) -> Self {
        OptionHeader {
            magic: OPTION_MAGIC.into(),
            option: option.0.into(),
            length: length.into(),
        }
    }
}

impl<'a> InfoRequest<'a> {
    /// Parses `NBD_OPT_INFO`/`NBD_OPT_GO` data: u32 name length, name, u16 count, count u16s.
    ///
    /// # Errors
    /// [`WireError`] when the lengths do not match the data exactly or the name is too long.
    pub fn parse(data: &'a [u8]) -> Result<Self, WireError> {
        let (len, rest) = split_be::<4>(data)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_STRING {
            return Err(WireError::StringTooLong(len));
        }
        let (name, rest) = rest.split_at_checked(len).ok_or(WireError::Truncated {
            needed: len,
            got: rest.len(),
        })?;
        let (count, list) = split_be::<2>(rest)?;
        let count = usize::from(u16::from_be_bytes(count));
        let needed = count * 2;
        if list.len() < needed {
            return Err(WireError::Truncated {
                needed,
                got: list.len(),
            });
        }
        if list.len() > needed {
            return Err(WireError::Trailing(list.len() - needed));
        }
        let requests = list
            .chunks_exact(2)
            .map(|c| InfoType(u16::from_be_bytes([c[0], c[1]])))
            .collect();
        Ok(InfoRequest { name, requests })
    }

    /// Appends the request's wire form to `out` (for clients and round-trip tests).
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.name.len() as u32).to_be_bytes());
        out.extend_from_slice(self.name);
        out.extend_from_slice(&(self.requests.len() as u16).to_be_bytes());
        for r in &self.requests {
            out.extend_from_slice(&r.0.to_be_bytes());
        }
    }

    /// Length of the wire form.
    pub fn encoded_len(&self) -> usize {
        4 + self.name.len() + 2 + 2 * self.requests.len()
    }
}

/// Appends an option reply (header and `payload`) to `out`.
pub fn emit_option_reply(out: &mut Vec<u8>, option: OptionCode, reply: ReplyCode, payload: &[u8]) {
    let header = OptionReplyHeader {
        magic: OPTION_REPLY_MAGIC.into(),
        option: option.0.into(),
        reply: reply.0.into(),
        // Payloads are built here from bounded strings, far below 4 GiB.
        length: (payload.len() as u32).into(),
    };
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
}

/// The payload of an `NBD_REP_SERVER` entry: u32 name length, name, description.
pub fn emit_server_entry(name: &str, description: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + name.len() + description.len());
    p.extend_from_slice(&(name.len() as u32).to_be_bytes());
    p.extend_from_slice(name.as_bytes());
    p.extend_from_slice(description.as_bytes());
    p
}

/// The payload of an `NBD_INFO_EXPORT` reply.
pub fn emit_info_export(size: u64, flags: u16) -> [u8; 12] {
    let info = InfoExport {
        info: InfoType::EXPORT.0.into(),
        size: size.into(),
        flags: flags.into(),
    };
    let mut out = [0u8; 12];
    out.copy_from_slice(info.as_bytes());
    out
}

/// The payload of an `NBD_INFO_NAME` or `NBD_INFO_DESCRIPTION` reply.
pub fn emit_info_string(info: InfoType, text: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(2 + text.len());
    p.extend_from_slice(&info.0.to_be_bytes());
    p.extend_from_slice(text.as_bytes());
    p
}

/// The payload of an `NBD_INFO_BLOCK_SIZE` reply.
pub fn emit_info_block_size(minimum: u32, preferred: u32, maximum: u32) -> [u8; 14] {
    let info = InfoBlockSize {
        info: InfoType::BLOCK_SIZE.0.into(),
        minimum: minimum.into(),
        preferred: preferred.into(),
        maximum: maximum.into(),
    };
    let mut out = [0u8; 14];
    out.copy_from_slice(info.as_bytes());
    out
}

/// Splits `N` bytes off the front of `data`.
fn split_be<const N: usize>(data: &[u8]) -> Result<([u8; N], &[u8]), WireError> {
    match data.split_first_chunk::<N>() {
        Some((head, rest)) => Ok((*head, rest)),
        None => Err(WireError::Truncated {
            needed: N,
            got: data.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const GO_BYTES: [u8; 14] = [
        0x00, 0x00, 0x00, 0x04,     // name length 4
        b'd', b'i', b's', b'k',     // name
        0x00, 0x02,                 // two requests
        0x00, 0x03,                 // NBD_INFO_BLOCK_SIZE
        0x00, 0x2a,                 // unknown info 42
    ];

    #[test]
    fn test_parse_info_request() {
        let r = InfoRequest::parse(&GO_BYTES).unwrap();
        assert_eq!(r.name, b"disk");
        assert_eq!(r.requests, vec![InfoType::BLOCK_SIZE, InfoType(42)]);
        let mut out = Vec::new();
        r.emit(&mut out);
        assert_eq!(out, GO_BYTES);
        assert_eq!(r.encoded_len(), GO_BYTES.len());
    }

    #[test]
    fn test_parse_info_request_rejects_bad_lengths() {
        assert_eq!(
            InfoRequest::parse(&GO_BYTES[..13]),
            Err(WireError::Truncated { needed: 4, got: 3 })
        );
        let mut long = GO_BYTES.to_vec();
        long.push(0);
        assert_eq!(InfoRequest::parse(&long), Err(WireError::Trailing(1)));
        // Name length pointing past the data.
        assert_eq!(
            InfoRequest::parse(&[0, 0, 0, 9, b'a']),
            Err(WireError::Truncated { needed: 9, got: 1 })
        );
        assert_eq!(
            InfoRequest::parse(&[0, 0, 0x10, 0x01]),
            Err(WireError::StringTooLong(4097))
        );
        assert_eq!(
            InfoRequest::parse(&[]),
            Err(WireError::Truncated { needed: 4, got: 0 })
        );
        // Empty name, no requests: valid.
        let r = InfoRequest::parse(&[0, 0, 0, 0, 0, 0]).unwrap();
        assert!(r.name.is_empty() && r.requests.is_empty());
    }

    #[test]
    fn test_parse_option_header() {
        #[rustfmt::skip]
        let bytes = [
            0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54, // IHAVEOPT
            0x00, 0x00, 0x00, 0x07,                         // NBD_OPT_GO
            0x00, 0x00, 0x00, 0x0e,                         // 14 bytes of data
        ];
        assert_eq!(OptionHeader::parse(&bytes), Ok((OptionCode::GO, 14)));
        assert_eq!(OptionHeader::new(OptionCode::GO, 14).as_bytes(), bytes);
        let mut bad = bytes;
        bad[0] = 0;
        assert_eq!(
            OptionHeader::parse(&bad),
            Err(WireError::BadMagic(0x0048_4156_454f_5054))
        );
    }

    #[test]
    fn test_emit_option_reply_and_infos() {
        let mut out = Vec::new();
        emit_option_reply(
            &mut out,
            OptionCode::GO,
            ReplyCode::INFO,
            &emit_info_export(1 << 20, 0x4d),
        );
        #[rustfmt::skip]
        let want = [
            0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9, // reply magic
            0x00, 0x00, 0x00, 0x07,                         // option GO
            0x00, 0x00, 0x00, 0x03,                         // NBD_REP_INFO
            0x00, 0x00, 0x00, 0x0c,                         // 12 bytes
            0x00, 0x00,                                     // NBD_INFO_EXPORT
            0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, // size 1 MiB
            0x00, 0x4d,                                     // flags
        ];
        assert_eq!(out, want);
        #[rustfmt::skip]
        let bs = [
            0x00, 0x03,             // NBD_INFO_BLOCK_SIZE
            0x00, 0x00, 0x02, 0x00, // minimum 512
            0x00, 0x00, 0x10, 0x00, // preferred 4096
            0x02, 0x00, 0x00, 0x00, // maximum 32 MiB
        ];
        assert_eq!(emit_info_block_size(512, 4096, 32 << 20), bs);
        assert_eq!(emit_info_string(InfoType::NAME, "ab"), [0, 1, b'a', b'b']);
        assert_eq!(emit_server_entry("ab", "c"), [0, 0, 0, 2, b'a', b'b', b'c']);
        assert_eq!(Greeting::new(3).as_bytes()[..8], *b"NBDMAGIC");
        assert_eq!(Greeting::new(3).as_bytes()[8..], *b"IHAVEOPT\x00\x03");
    }
}
