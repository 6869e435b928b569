//! The kernel's generic netlink `nbd` family as typed messages (Linux
//! `include/uapi/linux/nbd-netlink.h`; the handlers are `nbd_genl_*` in `drivers/block/nbd.c`),
//! emitted and parsed with the `netlink-packet-core` and `netlink-packet-generic` crates. No I/O
//! here: the socket is `genl.rs`.
//!
//! ```text
//!  NbdMessage::{connect, reconfigure, disconnect, status} ─► request(msg, family, seq) ─► bytes
//!  family_request("nbd", seq) (CTRL_CMD_GETFAMILY) ────────────────────────────────────► bytes
//!  bytes from the kernel ─► parse_answers::<NbdMessage | FamilyReply>(bytes, seq)
//!                              ─► [Answer::Message(..) | Answer::Ack | Answer::Error(errno)]
//! ```
//!
//! Attributes are in host byte order, each padded to 4 bytes; the nested lists
//! (`NBD_ATTR_SOCKETS`, `NBD_ATTR_DEVICE_LIST`) are sent with `NLA_F_NESTED`, which the kernel
//! ignores, and parsed with or without it (the kernel sends `NBD_ATTR_DEVICE_LIST` without).
//! Parsing never panics: malformed input is an error, or [`Answer::Error`] with `EPROTO`.

use std::fmt::Debug;

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, NLA_F_NESTED, NLM_F_ACK, NLM_F_REQUEST, NetlinkBuffer,
    NetlinkMessage, NetlinkPayload, Nla, NlaBuffer, NlasIterator, Parseable, ParseableParametrized,
    emit_u32, emit_u64, parse_u8, parse_u16, parse_u32, parse_u64,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};

/// `NBD_GENL_FAMILY_NAME`.
pub const NBD_FAMILY_NAME: &str = "nbd";

sanshim_codepoint::code_point! {
    /// A command of the `nbd` generic netlink family (`NBD_CMD_*` of nbd-netlink.h, not the
    /// NBD protocol's request types).
    pub struct NbdCmd(u8) {
        /// Configure and start a device with sockets.
        CONNECT = 1,
        /// Send `NBD_CMD_DISC` on every socket and tear the configuration down.
        DISCONNECT = 2,
        /// Replace dead sockets, change timeouts or client flags of a started device.
        RECONFIGURE = 3,
        /// Multicast by the kernel when a socket dies.
        LINK_DEAD = 4,
        /// Which devices exist and whether they are configured.
        STATUS = 5,
    }
}

sanshim_codepoint::code_point! {
    /// A top-level attribute of the `nbd` family (`NBD_ATTR_*`).
    pub struct AttrKind(u16) {
        /// Device index, u32 (N of /dev/nbdN).
        INDEX = 1,
        /// Size in bytes, u64.
        SIZE_BYTES = 2,
        /// Logical block size in bytes, u64.
        BLOCK_SIZE_BYTES = 3,
        /// Request timeout in seconds, u64; 0 keeps the block layer's 30 s and never fails.
        TIMEOUT = 4,
        /// NBD transmission flags, u64.
        SERVER_FLAGS = 5,
        /// `NBD_CFLAG_*`, u64.
        CLIENT_FLAGS = 6,
        /// Nested `NBD_SOCK_ITEM { NBD_SOCK_FD u32 }` list.
        SOCKETS = 7,
        /// Seconds a request waits for a dead connection to be replaced, u64.
        DEAD_CONN_TIMEOUT = 8,
        /// Nested `NBD_DEVICE_ITEM { NBD_DEVICE_INDEX u32, NBD_DEVICE_CONNECTED u8 }` list.
        DEVICE_LIST = 9,
    }
}

/// One attribute of an `nbd` family message.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum NbdAttr {
    /// `NBD_ATTR_INDEX`.
    Index(u32),
    /// `NBD_ATTR_SIZE_BYTES`.
    SizeBytes(u64),
    /// `NBD_ATTR_BLOCK_SIZE_BYTES`.
    BlockSizeBytes(u64),
    /// `NBD_ATTR_TIMEOUT` (seconds).
    Timeout(u64),
    /// `NBD_ATTR_SERVER_FLAGS`.
    ServerFlags(u64),
    /// `NBD_ATTR_CLIENT_FLAGS` (`CFLAG_*`).
    ClientFlags(u64),
    /// `NBD_ATTR_SOCKETS`: descriptor numbers in the sender's table.
    Sockets(Vec<u32>),
    /// `NBD_ATTR_DEAD_CONN_TIMEOUT` (seconds).
    DeadConnTimeout(u64),
    /// `NBD_ATTR_DEVICE_LIST`.
    DeviceList(Vec<DeviceStatus>),
    /// Any other attribute, kept as it came.
    Other(DefaultNla),
}

/// One `NBD_DEVICE_ITEM` of a status answer.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct DeviceStatus {
    /// The device index.
    pub index: u32,
    /// The kernel holds a configuration for it: connected, being set up, or merely open.
    pub connected: bool,
}

/// One message of the `nbd` family: a command and its attributes.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct NbdMessage {
    /// The command.
    pub cmd: NbdCmd,
    /// Its attributes, in order.
    pub attrs: Vec<NbdAttr>,
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
    /// How long a request waits for a dead connection to be replaced, in seconds.
    pub dead_conn_timeout: u64,
    /// The kernel's ends of the socket pairs.
    pub fds: Vec<u32>,
}

/// What `NBD_CMD_RECONFIGURE` tells the kernel when sanshim takes a started device over.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ReconfigureParams {
    /// The device index.
    pub index: u32,
    /// A new request timeout in seconds, if one was asked for.
    pub timeout: Option<u64>,
    /// The dead-connection timeout for the next restart, in seconds.
    pub dead_conn_timeout: u64,
    /// Replacements for dead connections, used in order; the kernel ignores the surplus.
    pub fds: Vec<u32>,
}

/// What the kernel answered to one request.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Answer<F> {
    /// A message of the family (a reply ahead of the acknowledgement).
    Message(F),
    /// The request succeeded.
    Ack,
    /// The request failed with this errno (positive).
    Error(i32),
}

/// The part of a `CTRL_CMD_GETFAMILY` answer sanshim needs: the family id. Other controller
/// attributes (operations, multicast groups, ones newer kernels add) are skipped.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct FamilyReply {
    /// `CTRL_ATTR_FAMILY_ID`.
    pub id: Option<u16>,
}

impl NbdMessage {
    /// `NBD_CMD_CONNECT`, with [`CLIENT_FLAGS`].
    pub fn connect(p: &ConnectParams) -> Self {
        let mut attrs = vec![
            NbdAttr::Index(p.index),
            NbdAttr::SizeBytes(p.size),
            NbdAttr::BlockSizeBytes(p.block_size),
            NbdAttr::ServerFlags(p.server_flags),
            NbdAttr::ClientFlags(CLIENT_FLAGS),
            NbdAttr::DeadConnTimeout(p.dead_conn_timeout),
        ];
        attrs.extend(p.timeout.map(NbdAttr::Timeout));
        attrs.push(NbdAttr::Sockets(p.fds.clone()));
        NbdMessage {
            cmd: NbdCmd::CONNECT,
            attrs,
        }
    }

    /// `NBD_CMD_RECONFIGURE` with fresh sockets and [`CLIENT_FLAGS`]. No size: the caller
    /// checked it matches, and sending one would resize a mounted device.
    pub fn reconfigure(p: &ReconfigureParams) -> Self {
        let mut attrs = vec![
            NbdAttr::Index(p.index),
            NbdAttr::ClientFlags(CLIENT_FLAGS),
            NbdAttr::DeadConnTimeout(p.dead_conn_timeout),
        ];
        attrs.extend(p.timeout.map(NbdAttr::Timeout));
        attrs.push(NbdAttr::Sockets(p.fds.clone()));
        NbdMessage {
            cmd: NbdCmd::RECONFIGURE,
            attrs,
        }
    }

    /// `NBD_CMD_DISCONNECT` of device `index`.
    pub fn disconnect(index: u32) -> Self {
        NbdMessage {
            cmd: NbdCmd::DISCONNECT,
            attrs: vec![NbdAttr::Index(index)],
        }
    }

    /// `NBD_CMD_STATUS` of device `index` (without an index the kernel lists every device).
    pub fn status(index: u32) -> Self {
        NbdMessage {
            cmd: NbdCmd::STATUS,
            attrs: vec![NbdAttr::Index(index)],
        }
    }

    /// The devices of a status answer.
    pub fn devices(&self) -> impl Iterator<Item = DeviceStatus> + '_ {
        self.attrs
            .iter()
            .flat_map(|a| match a {
                NbdAttr::DeviceList(list) => list.as_slice(),
                _ => &[],
            })
            .copied()
    }
}

/// `CTRL_CMD_GETFAMILY` for `name`, as netlink bytes.
pub fn family_request(name: &str, seq: u32) -> Vec<u8> {
    let ctrl = GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(name.to_owned())],
    };
    request(ctrl, 0, seq)
}

/// `payload` as a netlink request to family id `family` (ignored for a family with a fixed id,
/// such as the controller), asking for an acknowledgement.
pub fn request<F: GenlFamily + Emitable + Debug>(payload: F, family: u16, seq: u32) -> Vec<u8> {
    let mut genl = GenlMessage::from_payload(payload);
    genl.set_resolved_family_id(family);
    let mut msg = NetlinkMessage::from(genl);
    msg.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    msg.header.sequence_number = seq;
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// Parses a datagram from the kernel and returns the answers to request `seq` in it, in order;
/// messages of other requests are skipped. Malformed input ends the list with
/// [`Answer::Error`] (`EPROTO`), never a panic.
pub fn parse_answers<F>(mut datagram: &[u8], seq: u32) -> Vec<Answer<F>>
where
    F: ParseableParametrized<[u8], GenlHeader> + Debug,
{
    let mut answers = Vec::new();
    while !datagram.is_empty() {
        // new_checked: at least a header, and a length between 16 and what is there.
        let Ok(buf) = NetlinkBuffer::new_checked(datagram) else {
            answers.push(Answer::Error(EPROTO));
            break;
        };
        let len = buf.length() as usize;
        if buf.sequence_number() == seq {
            let one = datagram.get(..len).unwrap_or_default();
            match NetlinkMessage::<GenlMessage<F>>::deserialize(one) {
                Ok(msg) => answers.extend(answer(msg.payload)),
                Err(_) => {
                    answers.push(Answer::Error(EPROTO));
                    break;
                }
            }
        }
        datagram = datagram.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    answers
}

fn answer<F: Debug>(payload: NetlinkPayload<GenlMessage<F>>) -> Option<Answer<F>> {
    match payload {
        NetlinkPayload::InnerMessage(genl) => Some(Answer::Message(genl.payload)),
        NetlinkPayload::Error(e) => Some(match e.code {
            None => Answer::Ack,
            Some(code) => Answer::Error(code.get().saturating_neg()),
        }),
        NetlinkPayload::Done(_) => Some(Answer::Ack),
        _ => None,
    }
}

/// The client flags sent, explicitly, with every connect and reconfigure: neither
/// `NBD_CFLAG_DESTROY_ON_DISCONNECT` (bit 0; a flag of the device, not of its configuration, so
/// a previous user's setting would otherwise stay) nor `NBD_CFLAG_DISCONNECT_ON_CLOSE` (bit 1):
/// the device outlives its server and its openers until it is disconnected on purpose.
pub const CLIENT_FLAGS: u64 = 0;
/// `EPROTO`: what a malformed answer is reported as.
const EPROTO: i32 = 71;
/// `NBD_GENL_VERSION`.
const NBD_GENL_VERSION: u8 = 1;
/// `NBD_SOCK_ITEM`, the only attribute of `NBD_ATTR_SOCKETS`.
const NBD_SOCK_ITEM: u16 = 1;
/// `NBD_SOCK_FD` (u32) in an `NBD_SOCK_ITEM`.
const NBD_SOCK_FD: u16 = 1;
/// `NBD_DEVICE_ITEM`, the only attribute of `NBD_ATTR_DEVICE_LIST`.
const NBD_DEVICE_ITEM: u16 = 1;
/// `NBD_DEVICE_INDEX` (u32) in an `NBD_DEVICE_ITEM`.
const NBD_DEVICE_INDEX: u16 = 1;
/// `NBD_DEVICE_CONNECTED` (u8) in an `NBD_DEVICE_ITEM`.
const NBD_DEVICE_CONNECTED: u16 = 2;
/// `CTRL_ATTR_FAMILY_ID` (u16) of a controller answer.
const CTRL_ATTR_FAMILY_ID: u16 = 1;

impl GenlFamily for NbdMessage {
    fn family_name() -> &'static str {
        NBD_FAMILY_NAME
    }

    fn command(&self) -> u8 {
        self.cmd.0
    }

    fn version(&self) -> u8 {
        NBD_GENL_VERSION
    }
}

impl Emitable for NbdMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer);
    }
}

impl ParseableParametrized<[u8], GenlHeader> for NbdMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let attrs = NlasIterator::new(buf)
            .map(|nla| nla.and_then(|nla| NbdAttr::parse(&nla)))
            .collect::<Result<_, _>>()?;
        Ok(NbdMessage {
            cmd: NbdCmd(header.cmd),
            attrs,
        })
    }
}

impl ParseableParametrized<[u8], GenlHeader> for FamilyReply {
    fn parse_with_param(buf: &[u8], _header: GenlHeader) -> Result<Self, DecodeError> {
        for nla in NlasIterator::new(buf) {
            let nla = nla?;
            if nla.kind() == CTRL_ATTR_FAMILY_ID {
                return Ok(FamilyReply {
                    id: Some(parse_u16(nla.value())?),
                });
            }
        }
        Ok(FamilyReply { id: None })
    }
}

impl Nla for NbdAttr {
    fn value_len(&self) -> usize {
        match self {
            NbdAttr::Index(_) => 4,
            NbdAttr::SizeBytes(_)
            | NbdAttr::BlockSizeBytes(_)
            | NbdAttr::Timeout(_)
            | NbdAttr::ServerFlags(_)
            | NbdAttr::ClientFlags(_)
            | NbdAttr::DeadConnTimeout(_) => 8,
            NbdAttr::Sockets(fds) => fds.len() * SockItem(0).buffer_len(),
            NbdAttr::DeviceList(list) => list.iter().map(|&d| DeviceItem(d).buffer_len()).sum(),
            NbdAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        let kind = match self {
            NbdAttr::Index(_) => AttrKind::INDEX,
            NbdAttr::SizeBytes(_) => AttrKind::SIZE_BYTES,
            NbdAttr::BlockSizeBytes(_) => AttrKind::BLOCK_SIZE_BYTES,
            NbdAttr::Timeout(_) => AttrKind::TIMEOUT,
            NbdAttr::ServerFlags(_) => AttrKind::SERVER_FLAGS,
            NbdAttr::ClientFlags(_) => AttrKind::CLIENT_FLAGS,
            NbdAttr::Sockets(_) => return AttrKind::SOCKETS.0 | NLA_F_NESTED,
            NbdAttr::DeadConnTimeout(_) => AttrKind::DEAD_CONN_TIMEOUT,
            NbdAttr::DeviceList(_) => return AttrKind::DEVICE_LIST.0 | NLA_F_NESTED,
            NbdAttr::Other(nla) => return nla.kind(),
        };
        kind.0
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        // The buffer is exactly value_len() long (the crate's Emitable for Nla), so the
        // fixed-size emits cannot fail.
        let _ = match self {
            NbdAttr::Index(v) => emit_u32(buffer, *v),
            NbdAttr::SizeBytes(v)
            | NbdAttr::BlockSizeBytes(v)
            | NbdAttr::Timeout(v)
            | NbdAttr::ServerFlags(v)
            | NbdAttr::ClientFlags(v)
            | NbdAttr::DeadConnTimeout(v) => emit_u64(buffer, *v),
            NbdAttr::Sockets(fds) => {
                let items: Vec<SockItem> = fds.iter().map(|&fd| SockItem(fd)).collect();
                items.as_slice().emit(buffer);
                Ok(())
            }
            NbdAttr::DeviceList(list) => {
                let items: Vec<DeviceItem> = list.iter().map(|&d| DeviceItem(d)).collect();
                items.as_slice().emit(buffer);
                Ok(())
            }
            NbdAttr::Other(nla) => {
                nla.emit_value(buffer);
                Ok(())
            }
        };
    }
}

impl<T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&T>> for NbdAttr {
    fn parse(buf: &NlaBuffer<&T>) -> Result<Self, DecodeError> {
        let value = buf.value();
        Ok(match AttrKind(buf.kind()) {
            AttrKind::INDEX => NbdAttr::Index(parse_u32(value)?),
            AttrKind::SIZE_BYTES => NbdAttr::SizeBytes(parse_u64(value)?),
            AttrKind::BLOCK_SIZE_BYTES => NbdAttr::BlockSizeBytes(parse_u64(value)?),
            AttrKind::TIMEOUT => NbdAttr::Timeout(parse_u64(value)?),
            AttrKind::SERVER_FLAGS => NbdAttr::ServerFlags(parse_u64(value)?),
            AttrKind::CLIENT_FLAGS => NbdAttr::ClientFlags(parse_u64(value)?),
            AttrKind::SOCKETS => NbdAttr::Sockets(parse_sockets(value)?),
            AttrKind::DEAD_CONN_TIMEOUT => NbdAttr::DeadConnTimeout(parse_u64(value)?),
            AttrKind::DEVICE_LIST => NbdAttr::DeviceList(parse_devices(value)?),
            _ => NbdAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// `NBD_SOCK_ITEM { NBD_SOCK_FD }`.
struct SockItem(u32);

/// `NBD_DEVICE_ITEM { NBD_DEVICE_INDEX, NBD_DEVICE_CONNECTED }`.
struct DeviceItem(DeviceStatus);

/// A u32 or u8 attribute inside an item.
enum Scalar {
    U32(u16, u32),
    U8(u16, u8),
}

impl Nla for SockItem {
    fn value_len(&self) -> usize {
        Scalar::U32(NBD_SOCK_FD, self.0).buffer_len()
    }

    fn kind(&self) -> u16 {
        NBD_SOCK_ITEM | NLA_F_NESTED
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        Scalar::U32(NBD_SOCK_FD, self.0).emit(buffer);
    }
}

impl DeviceItem {
    fn scalars(&self) -> [Scalar; 2] {
        [
            Scalar::U32(NBD_DEVICE_INDEX, self.0.index),
            Scalar::U8(NBD_DEVICE_CONNECTED, u8::from(self.0.connected)),
        ]
    }
}

impl Nla for DeviceItem {
    fn value_len(&self) -> usize {
        self.scalars().as_slice().buffer_len()
    }

    fn kind(&self) -> u16 {
        NBD_DEVICE_ITEM | NLA_F_NESTED
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        self.scalars().as_slice().emit(buffer);
    }
}

impl Nla for Scalar {
    fn value_len(&self) -> usize {
        match self {
            Scalar::U32(..) => 4,
            Scalar::U8(..) => 1,
        }
    }

    fn kind(&self) -> u16 {
        match *self {
            Scalar::U32(kind, _) | Scalar::U8(kind, _) => kind,
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match *self {
            Scalar::U32(_, v) => {
                let _ = emit_u32(buffer, v);
            }
            Scalar::U8(_, v) => {
                if let Some(b) = buffer.first_mut() {
                    *b = v;
                }
            }
        }
    }
}

/// The descriptors of an `NBD_ATTR_SOCKETS` value; an item without `NBD_SOCK_FD` is skipped, as
/// the kernel does.
fn parse_sockets(value: &[u8]) -> Result<Vec<u32>, DecodeError> {
    let mut fds = Vec::new();
    for item in NlasIterator::new(value) {
        let item = item?;
        if item.kind() != NBD_SOCK_ITEM {
            return Err(DecodeError::from("NBD_ATTR_SOCKETS holds a non-item"));
        }
        for nla in NlasIterator::new(item.value()) {
            let nla = nla?;
            if nla.kind() == NBD_SOCK_FD {
                fds.push(parse_u32(nla.value())?);
            }
        }
    }
    Ok(fds)
}

/// The devices of an `NBD_ATTR_DEVICE_LIST` value.
fn parse_devices(value: &[u8]) -> Result<Vec<DeviceStatus>, DecodeError> {
    let mut list = Vec::new();
    for item in NlasIterator::new(value) {
        let item = item?;
        if item.kind() != NBD_DEVICE_ITEM {
            continue;
        }
        let (mut index, mut connected) = (None, false);
        for nla in NlasIterator::new(item.value()) {
            let nla = nla?;
            match nla.kind() {
                NBD_DEVICE_INDEX => index = Some(parse_u32(nla.value())?),
                NBD_DEVICE_CONNECTED => connected = parse_u8(nla.value())? != 0,
                _ => {}
            }
        }
        let index = index.ok_or_else(|| DecodeError::from("NBD_DEVICE_ITEM without index"))?;
        list.push(DeviceStatus { index, connected });
    }
    Ok(list)
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

    /// Parses our own request back with the crates: header fields and the nbd message.
    fn parse_request(bytes: &[u8]) -> (u16, u16, u32, NbdMessage) {
        let msg = NetlinkMessage::<GenlMessage<NbdMessage>>::deserialize(bytes).unwrap();
        let h = msg.header;
        assert_eq!(h.length as usize, bytes.len());
        let NetlinkPayload::InnerMessage(genl) = msg.payload else {
            panic!("not a generic netlink message: {:?}", msg.payload);
        };
        assert_eq!(genl.header.version, 1);
        (h.message_type, h.flags, h.sequence_number, genl.payload)
    }

    fn params() -> ConnectParams {
        ConnectParams {
            index: 3,
            size: 1 << 30,
            block_size: 4096,
            server_flags: 0x10d,
            timeout: Some(60),
            dead_conn_timeout: 120,
            fds: vec![5, 6],
        }
    }

    #[test]
    fn test_family_request() {
        let msg = family_request("nbd", 7);
        let want: Vec<u8> = [
            &ne32(28)[..], // nlmsg_len
            &ne16(0x10),   // GENL_ID_CTRL
            &ne16(5),      // NLM_F_REQUEST | NLM_F_ACK
            &ne32(7),      // seq
            &ne32(0),      // pid
            &[3, 2, 0, 0], // CTRL_CMD_GETFAMILY, version 2
            &ne16(8),      // nla_len: 4 + "nbd\0"
            &ne16(2),      // CTRL_ATTR_FAMILY_NAME
            b"nbd\0",
        ]
        .concat();
        assert_eq!(msg, want);
    }

    #[test]
    fn test_connect_layout() {
        let msg = request(NbdMessage::connect(&params()), 0x22, 9);
        let u64a = |kind: u16, v: u64| [&ne16(12)[..], &ne16(kind), &v.to_ne_bytes()].concat();
        let sock = |fd: u32| {
            [
                &ne16(12)[..],
                &ne16(1 | NLA_F_NESTED), // NBD_SOCK_ITEM
                &ne16(8),
                &ne16(1), // NBD_SOCK_FD
                &ne32(fd),
            ]
            .concat()
        };
        let want: Vec<u8> = [
            &ne32(128)[..],
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
            &u64a(6, 0),       // NBD_ATTR_CLIENT_FLAGS: none
            &u64a(8, 120),     // NBD_ATTR_DEAD_CONN_TIMEOUT
            &u64a(4, 60),      // NBD_ATTR_TIMEOUT
            &ne16(28),
            &ne16(7 | NLA_F_NESTED), // NBD_ATTR_SOCKETS
            &sock(5),
            &sock(6),
        ]
        .concat();
        assert_eq!(msg, want);
    }

    #[test]
    fn test_requests_parse_back() {
        let (kind, flags, seq, connect) =
            parse_request(&request(NbdMessage::connect(&params()), 0x22, 9));
        assert_eq!((kind, flags, seq), (0x22, NLM_F_REQUEST | NLM_F_ACK, 9));
        assert_eq!(connect, NbdMessage::connect(&params()));
        assert!(connect.attrs.contains(&NbdAttr::ClientFlags(CLIENT_FLAGS)));

        let re = ReconfigureParams {
            index: 0,
            timeout: None,
            dead_conn_timeout: 90,
            fds: vec![11, 12, 13],
        };
        let (_, _, seq, back) = parse_request(&request(NbdMessage::reconfigure(&re), 0x22, 10));
        assert_eq!(seq, 10);
        assert_eq!(back.cmd, NbdCmd::RECONFIGURE);
        assert_eq!(
            back.attrs,
            [
                NbdAttr::Index(0),
                NbdAttr::ClientFlags(CLIENT_FLAGS),
                NbdAttr::DeadConnTimeout(90),
                NbdAttr::Sockets(vec![11, 12, 13]),
            ]
        );
        for (msg, cmd) in [
            (NbdMessage::disconnect(4), NbdCmd::DISCONNECT),
            (NbdMessage::status(4), NbdCmd::STATUS),
        ] {
            let (_, _, _, back) = parse_request(&request(msg, 0x22, 11));
            assert_eq!((back.cmd, back.attrs), (cmd, vec![NbdAttr::Index(4)]));
        }
    }

    /// A kernel status answer (no NLA_F_NESTED, as `nla_nest_start_noflag` writes it) for two
    /// devices, then the acknowledgement, in one datagram.
    fn status_datagram(seq: u32) -> Vec<u8> {
        let item = |index: u32, connected: u8| {
            [
                &ne16(20)[..],
                &ne16(1), // NBD_DEVICE_ITEM
                &ne16(8),
                &ne16(1), // NBD_DEVICE_INDEX
                &ne32(index),
                &ne16(5),
                &ne16(2), // NBD_DEVICE_CONNECTED
                &[connected, 0, 0, 0],
            ]
            .concat()
        };
        let reply = [
            &ne32(64)[..],
            &ne16(0x22),
            &ne16(0),
            &ne32(seq),
            &ne32(0),
            &[5, 1, 0, 0], // NBD_CMD_STATUS
            &ne16(44),
            &ne16(9), // NBD_ATTR_DEVICE_LIST
            &item(0, 1),
            &item(1, 0),
        ]
        .concat();
        [reply, ack(seq, 0)].concat()
    }

    fn ack(seq: u32, err: i32) -> Vec<u8> {
        [
            &ne32(36)[..],
            &ne16(2), // NLMSG_ERROR
            &ne16(0),
            &ne32(seq),
            &ne32(0),
            &err.to_ne_bytes(),
            &[0u8; 16], // the request's header
        ]
        .concat()
    }

    #[test]
    fn test_parse_status_answer() {
        let answers = parse_answers::<NbdMessage>(&status_datagram(12), 12);
        let [Answer::Message(status), Answer::Ack] = answers.as_slice() else {
            panic!("{answers:?}");
        };
        assert_eq!(status.cmd, NbdCmd::STATUS);
        let devices: Vec<_> = status.devices().collect();
        assert_eq!(
            devices,
            [
                DeviceStatus {
                    index: 0,
                    connected: true
                },
                DeviceStatus {
                    index: 1,
                    connected: false
                },
            ]
        );
        // Our own emit of the same list parses back to it.
        let ours = NbdMessage {
            cmd: NbdCmd::STATUS,
            attrs: vec![NbdAttr::DeviceList(devices.clone())],
        };
        let (_, _, _, back) = parse_request(&request(ours.clone(), 0x22, 1));
        assert_eq!(back, ours);
    }

    #[test]
    fn test_parse_answers() {
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
        assert_eq!(
            parse_answers::<FamilyReply>(&datagram, 4),
            [Answer::Message(FamilyReply { id: Some(0x1b) }), Answer::Ack]
        );
        assert_eq!(
            parse_answers::<FamilyReply>(&datagram, 5),
            [Answer::Error(16)]
        );
        // Truncated and lying lengths.
        assert_eq!(
            parse_answers::<FamilyReply>(&datagram[..10], 4),
            [Answer::Error(71)]
        );
        let mut lying = ack(4, 0);
        lying[..4].copy_from_slice(&ne32(1000));
        assert_eq!(parse_answers::<FamilyReply>(&lying, 4), [Answer::Error(71)]);
        let mut zero_attr = family;
        zero_attr[20..22].copy_from_slice(&ne16(0)); // the first attribute claims length 0
        assert_eq!(
            parse_answers::<FamilyReply>(&zero_attr, 4),
            [Answer::Error(71)]
        );
        // A status answer cut inside its device list.
        let status = status_datagram(6);
        assert_eq!(
            parse_answers::<NbdMessage>(&status[..40], 6),
            [Answer::Error(71)]
        );
    }

    #[test]
    fn test_parse_never_panics_on_prefixes_and_bit_flips() {
        let status = status_datagram(3);
        for cut in 0..status.len() {
            let _ = parse_answers::<NbdMessage>(&status[..cut], 3);
        }
        for i in 0..status.len() {
            let mut flipped = status.clone();
            flipped[i] ^= 0xff;
            let _ = parse_answers::<NbdMessage>(&flipped, 3);
            let _ = parse_answers::<FamilyReply>(&flipped, 3);
        }
    }
}
