//! The netlink socket of the kernel attach: one `NETLINK_GENERIC` socket (`netlink-sys`) that
//! resolves the `nbd` family once and then sends one request at a time, collecting the
//! kernel's answers to it up to the acknowledgement. Messages are `netlink.rs`'s.
//!
//! Blocking: the kernel runs a generic netlink handler inside `sendmsg`, so the answer is
//! queued before `send` returns; callers still run it on `spawn_blocking`, as the handlers take
//! the device's locks.

use std::fmt::Debug;
use std::io;

use netlink_packet_core::ParseableParametrized;
use netlink_packet_generic::GenlHeader;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};

use super::netlink::{
    self, Answer, ConnectParams, DeviceStatus, FamilyReply, NbdMessage, ReconfigureParams,
};

/// A generic netlink socket talking to the kernel's `nbd` family.
#[derive(Debug)]
pub(super) struct NbdGenl {
    socket: Socket,
    family: u16,
    seq: u32,
}

/// Why a netlink request failed.
#[derive(Debug)]
pub(super) enum GenlError {
    /// No generic netlink, or no `nbd` family (an nbd module without netlink): the ioctls may
    /// still work.
    Unavailable(io::Error),
    /// The family refused the request with this errno.
    Refused(io::Error),
}

impl NbdGenl {
    /// Opens a socket and resolves the `nbd` family.
    ///
    /// # Errors
    /// [`GenlError::Unavailable`] without netlink or without the family.
    pub fn open() -> Result<Self, GenlError> {
        let mut genl = NbdGenl::open_socket().map_err(GenlError::Unavailable)?;
        genl.family = genl
            .resolve(netlink::NBD_FAMILY_NAME)
            .map_err(GenlError::Unavailable)?;
        Ok(genl)
    }

    /// `NBD_CMD_CONNECT`.
    pub fn connect(&mut self, params: &ConnectParams) -> Result<(), GenlError> {
        self.nbd(NbdMessage::connect(params)).map(drop)
    }

    /// `NBD_CMD_RECONFIGURE` with fresh sockets.
    pub fn reconfigure(&mut self, params: &ReconfigureParams) -> Result<(), GenlError> {
        self.nbd(NbdMessage::reconfigure(params)).map(drop)
    }

    /// `NBD_CMD_DISCONNECT`.
    pub fn disconnect(&mut self, index: u32) -> Result<(), GenlError> {
        self.nbd(NbdMessage::disconnect(index)).map(drop)
    }

    /// `NBD_CMD_STATUS` of one device; `None` when the kernel does not list it.
    pub fn status(&mut self, index: u32) -> Result<Option<DeviceStatus>, GenlError> {
        let replies = self.nbd(NbdMessage::status(index))?;
        Ok(replies
            .iter()
            .flat_map(NbdMessage::devices)
            .find(|d| d.index == index))
    }

    fn open_socket() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_GENERIC)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(NbdGenl {
            socket,
            family: 0,
            seq: 0,
        })
    }

    fn resolve(&mut self, name: &str) -> io::Result<u16> {
        let seq = self.next_seq();
        let replies: Vec<FamilyReply> = self.call(&netlink::family_request(name, seq), seq)?;
        replies
            .iter()
            .find_map(|r| r.id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no family id in the answer"))
    }

    fn nbd(&mut self, msg: NbdMessage) -> Result<Vec<NbdMessage>, GenlError> {
        let seq = self.next_seq();
        let bytes = netlink::request(msg, self.family, seq);
        self.call(&bytes, seq).map_err(GenlError::Refused)
    }

    /// Sends one request and returns the messages answered to it, up to its acknowledgement.
    fn call<F>(&self, request: &[u8], seq: u32) -> io::Result<Vec<F>>
    where
        F: ParseableParametrized<[u8], GenlHeader> + Debug,
    {
        self.socket.send(request, 0)?;
        let mut replies = Vec::new();
        let mut buf = Vec::with_capacity(RECV_BUFFER);
        loop {
            buf.clear();
            // MSG_TRUNC: the datagram's real length, to tell a truncated one.
            let n = self.socket.recv(&mut buf, libc::MSG_TRUNC)?;
            if n > buf.len() {
                return Err(io::Error::other("netlink answer larger than the buffer"));
            }
            for answer in netlink::parse_answers::<F>(&buf, seq) {
                match answer {
                    Answer::Message(m) => replies.push(m),
                    Answer::Ack => return Ok(replies),
                    Answer::Error(errno) => return Err(io::Error::from_raw_os_error(errno)),
                }
            }
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }
}

impl GenlError {
    /// The underlying error.
    pub fn into_io(self) -> io::Error {
        match self {
            GenlError::Unavailable(e) | GenlError::Refused(e) => e,
        }
    }
}

/// Receive buffer: the kernel sends generic netlink answers of at most a page (`NLMSG_GOODSIZE`)
/// here.
const RECV_BUFFER: usize = 32 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_resolves_a_family_that_exists() {
        // "nlctrl" (the controller itself) exists on every kernel with generic netlink.
        let Ok(mut genl) = NbdGenl::open_socket() else {
            return;
        };
        assert_eq!(genl.resolve("nlctrl").unwrap(), 0x10);
        let missing = genl.resolve("nosuchfamily").unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
    }
}
