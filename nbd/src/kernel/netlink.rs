//! Generic netlink messages for the kernel's `nbd` family (Linux `include/uapi/linux/netlink.h`,
//! `genetlink.h`, `nbd-netlink.h`), built and parsed without I/O.
//!
//! Netlink is in host byte order; headers are zerocopy structs with `native_endian` fields, and
//! every message and attribute is padded to 4 bytes (`NLMSG_ALIGN`, `NLA_ALIGN`).

use zerocopy::native_endian::{I32, U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// `NLMSG_ERROR`: an error or, with error 0, an acknowledgement.
const NLMSG_ERROR: u16 = 2;
/// `NLM_F_REQUEST`.
const NLM_F_REQUEST: u16 = 1;
/// `NLM_F_ACK`.
const NLM_F_ACK: u16 = 4;
/// `NLA_F_NESTED`.
const NLA_F_NESTED: u16 = 1 << 15;
/// `GENL_ID_CTRL`: the family that resolves family names.
const GENL_ID_CTRL: u16 = 0x10;
/// `CTRL_CMD_GETFAMILY`.
const CTRL_CMD_GETFAMILY: u8 = 3;
/// `CTRL_ATTR_FAMILY_ID` (u16).
const CTRL_ATTR_FAMILY_ID: u16 = 1;
/// `CTRL_ATTR_FAMILY_NAME` (NUL-terminated string).
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

/// `NBD_GENL_FAMILY_NAME`.
pub const NBD_FAMILY_NAME: &str = "nbd";
/// `NBD_GENL_VERSION`.
const NBD_GENL_VERSION: u8 = 1;
/// `NBD_CMD_CONNECT`.
const NBD_CMD_CONNECT: u8 = 1;
/// `NBD_CMD_DISCONNECT`.
const NBD_CMD_DISCONNECT: u8 = 2;
/// `NBD_ATTR_INDEX` (u32).
const NBD_ATTR_INDEX: u16 = 1;
/// `NBD_ATTR_SIZE_BYTES` (u64).
const NBD_ATTR_SIZE_BYTES: u16 = 2;
/// `NBD_ATTR_BLOCK_SIZE_BYTES` (u64).
const NBD_ATTR_BLOCK_SIZE_BYTES: u16 = 3;
/// `NBD_ATTR_TIMEOUT` (u64 seconds).
const NBD_ATTR_TIMEOUT: u16 = 4;
/// `NBD_ATTR_SERVER_FLAGS` (u64).
const NBD_ATTR_SERVER_FLAGS: u16 = 5;
/// `NBD_ATTR_SOCKETS` (nested list of `NBD_SOCK_ITEM`).
const NBD_ATTR_SOCKETS: u16 = 7;
/// `NBD_ATTR_DEAD_CONN_TIMEOUT` (u64 seconds).
const NBD_ATTR_DEAD_CONN_TIMEOUT: u16 = 8;
/// `NBD_SOCK_ITEM` (nested: `NBD_SOCK_FD`).
const NBD_SOCK_ITEM: u16 = 1;
/// `NBD_SOCK_FD` (u32).
const NBD_SOCK_FD: u16 = 1;

/// `struct nlmsghdr`.
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct NlMsgHdr {
    len: U32,
    kind: U16,
    flags: U16,
    seq: U32,
    pid: U32,
}

/// `struct genlmsghdr`.
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct GenlMsgHdr {
    cmd: u8,
    version: u8,
    reserved: U16,
}

/// `struct nlattr`.
#[derive(Clone, Copy, Debug, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned)]
#[repr(C)]
struct NlAttr {
    len: U16,
    kind: U16,
}

/// What `NBD_CMD_CONNECT` tells the kernel.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ConnectParams {
    /// The device index (N of /dev/nbdN).
    pub index: u32,
    /// Export size in bytes.
    pub size: u64,
    /// Logical block size in bytes.
    pub block_size: u64,
    /// NBD transmission flags.
    pub server_flags: u64,
    /// Request timeout in seconds, if not the kernel's default.
    pub timeout: Option<u64>,
    /// How long the kernel waits for a dead connection to be replaced, in seconds.
    pub dead_conn_timeout: u64,
    /// The kernel's ends of the socket pairs.
    pub fds: Vec<u32>,
}

/// What the kernel answered.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Answer {
    /// The request with this sequence number succeeded.
    Ack,
    /// The request failed with this errno.
    Error(i32),
    /// `CTRL_CMD_GETFAMILY` resolved the family to this id.
    Family(u16),
}

/// Appends netlink messages with attributes, patching lengths as they close.
#[derive(Debug)]
struct Builder {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Builder {
    fn new(family: u16, flags: u16, seq: u32, cmd: u8, version: u8) -> Self {
        let header = NlMsgHdr {
            len: 0.into(),
            kind: family.into(),
            flags: flags.into(),
            seq: seq.into(),
            pid: 0.into(),
        };
        let mut buf = header.as_bytes().to_vec();
        buf.extend_from_slice(
            GenlMsgHdr {
                cmd,
                version,
                reserved: 0.into(),
            }
            .as_bytes(),
        );
        Builder {
            buf,
            nests: Vec::new(),
        }
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = (size_of::<NlAttr>() + payload.len()) as u16;
        self.buf.extend_from_slice(
            NlAttr {
                len: len.into(),
                kind: kind.into(),
            }
            .as_bytes(),
        );
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    fn u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    fn u64(&mut self, kind: u16, v: u64) -> &mut Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    fn begin(&mut self, kind: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        let kind = kind | NLA_F_NESTED;
        self.buf.extend_from_slice(
            NlAttr {
                len: 0.into(),
                kind: kind.into(),
            }
            .as_bytes(),
        );
        self
    }

    fn end(&mut self) -> &mut Self {
        if let Some(start) = self.nests.pop() {
            let len = ((self.buf.len() - start) as u16).to_ne_bytes();
            self.buf[start..start + 2].copy_from_slice(&len);
        }
        self
    }

    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        let len = (self.buf.len() as u32).to_ne_bytes();
        self.buf[..4].copy_from_slice(&len);
        self.buf
    }
}

/// `CTRL_CMD_GETFAMILY` for `name`.
pub fn get_family(seq: u32, name: &str) -> Vec<u8> {
    let mut b = Builder::new(
        GENL_ID_CTRL,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        CTRL_CMD_GETFAMILY,
        1,
    );
    let mut name = name.as_bytes().to_vec();
    name.push(0);
    b.attr(CTRL_ATTR_FAMILY_NAME, &name);
    b.finish()
}

/// `NBD_CMD_CONNECT`.
pub fn connect(family: u16, seq: u32, p: &ConnectParams) -> Vec<u8> {
    let mut b = Builder::new(
        family,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        NBD_CMD_CONNECT,
        NBD_GENL_VERSION,
    );
    b.u32(NBD_ATTR_INDEX, p.index)
        .u64(NBD_ATTR_SIZE_BYTES, p.size)
        .u64(NBD_ATTR_BLOCK_SIZE_BYTES, p.block_size)
        .u64(NBD_ATTR_SERVER_FLAGS, p.server_flags)
        .u64(NBD_ATTR_DEAD_CONN_TIMEOUT, p.dead_conn_timeout);
    if let Some(t) = p.timeout {
        b.u64(NBD_ATTR_TIMEOUT, t);
    }
    b.begin(NBD_ATTR_SOCKETS);
    for &fd in &p.fds {
        b.begin(NBD_SOCK_ITEM).u32(NBD_SOCK_FD, fd).end();
    }
    b.end();
    b.finish()
}

/// `NBD_CMD_DISCONNECT` of device `index`.
pub fn disconnect(family: u16, seq: u32, index: u32) -> Vec<u8> {
    let mut b = Builder::new(
        family,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        NBD_CMD_DISCONNECT,
        NBD_GENL_VERSION,
    );
    b.u32(NBD_ATTR_INDEX, index);
    b.finish()
}

/// Parses a datagram from the kernel and returns the answers to request `seq` in it (other
/// messages, such as `NBD_CMD_CONNECT`'s reply carrying the index, are skipped). Malformed
/// input yields an [`Answer::Error`] with `EPROTO`, never a panic.
pub fn parse(mut buf: &[u8], seq: u32) -> Vec<Answer> {
    const EPROTO: i32 = 71;
    let mut answers = Vec::new();
    while !buf.is_empty() {
        let Ok((h, _)) = NlMsgHdr::read_from_prefix(buf) else {
            answers.push(Answer::Error(EPROTO));
            break;
        };
        let len = h.len.get() as usize;
        let Some(body) = buf.get(size_of::<NlMsgHdr>()..len) else {
            answers.push(Answer::Error(EPROTO));
            break;
        };
        if h.seq.get() == seq {
            answers.extend(parse_one(h.kind.get(), body));
        }
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    answers
}

fn parse_one(kind: u16, body: &[u8]) -> Option<Answer> {
    if kind == NLMSG_ERROR {
        let (error, _) = I32::read_from_prefix(body).ok()?;
        return Some(match error.get() {
            0 => Answer::Ack,
            e => Answer::Error(e.saturating_neg()),
        });
    }
    if kind != GENL_ID_CTRL {
        return None;
    }
    let mut attrs = body.get(size_of::<GenlMsgHdr>()..)?;
    while let Ok((a, _)) = NlAttr::read_from_prefix(attrs) {
        let len = usize::from(a.len.get());
        let payload = attrs.get(size_of::<NlAttr>()..len)?;
        if a.kind.get() & !NLA_F_NESTED == CTRL_ATTR_FAMILY_ID {
            let (id, _) = U16::read_from_prefix(payload).ok()?;
            return Some(Answer::Family(id.get()));
        }
        attrs = attrs
            .get(len.max(size_of::<NlAttr>()).next_multiple_of(4)..)
            .unwrap_or_default();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ne16(v: u16) -> [u8; 2] {
        v.to_ne_bytes()
    }

    fn ne32(v: u32) -> [u8; 4] {
        v.to_ne_bytes()
    }

    #[test]
    fn test_get_family() {
        let msg = get_family(7, "nbd");
        let want: Vec<u8> = [
            &ne32(28)[..], // nlmsg_len
            &ne16(0x10),   // GENL_ID_CTRL
            &ne16(5),      // NLM_F_REQUEST | NLM_F_ACK
            &ne32(7),      // seq
            &ne32(0),      // pid
            &[3, 1, 0, 0], // CTRL_CMD_GETFAMILY, version 1
            &ne16(8),      // nla_len: 4 + "nbd\0"
            &ne16(2),      // CTRL_ATTR_FAMILY_NAME
            b"nbd\0",
        ]
        .concat();
        assert_eq!(msg, want);
    }

    #[test]
    fn test_connect_layout() {
        let p = ConnectParams {
            index: 3,
            size: 1 << 30,
            block_size: 4096,
            server_flags: 0x10d,
            timeout: Some(60),
            dead_conn_timeout: 30,
            fds: vec![5, 6],
        };
        let msg = connect(0x22, 9, &p);
        let u64a = |kind: u16, v: u64| [&ne16(12)[..], &ne16(kind), &v.to_ne_bytes()].concat();
        let sock = |fd: u32| {
            [
                &ne16(12)[..],
                &ne16(1 | NLA_F_NESTED),
                &ne16(8),
                &ne16(1),
                &ne32(fd),
            ]
            .concat()
        };
        let want: Vec<u8> = [
            &ne32(116)[..],
            &ne16(0x22), // the nbd family id
            &ne16(5),
            &ne32(9),
            &ne32(0),
            &[1, 1, 0, 0], // NBD_CMD_CONNECT, version 1
            &ne16(8),
            &ne16(1),
            &ne32(3),          // NBD_ATTR_INDEX
            &u64a(2, 1 << 30), // NBD_ATTR_SIZE_BYTES
            &u64a(3, 4096),    // NBD_ATTR_BLOCK_SIZE_BYTES
            &u64a(5, 0x10d),   // NBD_ATTR_SERVER_FLAGS
            &u64a(8, 30),      // NBD_ATTR_DEAD_CONN_TIMEOUT
            &u64a(4, 60),      // NBD_ATTR_TIMEOUT
            &ne16(28),
            &ne16(7 | NLA_F_NESTED), // NBD_ATTR_SOCKETS
            &sock(5),
            &sock(6),
        ]
        .concat();
        assert_eq!(msg, want);
        assert_eq!(msg.len() % 4, 0);
        assert_eq!(
            disconnect(0x22, 10, 3)[16..],
            [&[2u8, 1, 0, 0][..], &ne16(8), &ne16(1), &ne32(3)].concat()
        );
    }

    #[test]
    fn test_parse_answers() {
        let ack = |seq: u32, err: i32| {
            [
                &ne32(36)[..],
                &ne16(2),
                &ne16(0),
                &ne32(seq),
                &ne32(0),
                &err.to_ne_bytes(),
                &[0u8; 16],
            ]
            .concat()
        };
        let family = [
            &ne32(36)[..],
            &ne16(0x10),
            &ne16(0),
            &ne32(4),
            &ne32(0),
            &[1, 2, 0, 0], // CTRL_CMD_NEWFAMILY
            &ne16(8),
            &ne16(2),
            b"nbd\0", // CTRL_ATTR_FAMILY_NAME
            &ne16(6),
            &ne16(1),
            &ne16(0x1b),
            &[0, 0], // CTRL_ATTR_FAMILY_ID, padded
        ]
        .concat();
        let datagram = [family.clone(), ack(4, 0), ack(5, -16)].concat();
        assert_eq!(parse(&datagram, 4), [Answer::Family(0x1b), Answer::Ack]);
        assert_eq!(parse(&datagram, 5), [Answer::Error(16)]);
        // Truncated and lying lengths.
        assert_eq!(parse(&datagram[..10], 4), [Answer::Error(71)]);
        let mut lying = ack(4, 0);
        lying[..4].copy_from_slice(&ne32(1000));
        assert_eq!(parse(&lying, 4), [Answer::Error(71)]);
        let mut zero_attr = family;
        zero_attr[20..22].copy_from_slice(&ne16(0)); // the first attribute claims length 0
        assert_eq!(parse(&zero_attr, 4), []);
    }
}
