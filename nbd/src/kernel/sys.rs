//! The only `unsafe` of this crate: the nbd ioctls (Linux `include/uapi/linux/nbd.h`) and a
//! raw `NETLINK_GENERIC` socket. Each function wraps one system call and returns
//! `io::Result`; descriptors are borrowed or owned (`BorrowedFd`, `OwnedFd`), never raw
//! numbers that could outlive their file.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `_IO(0xab, n)`: nbd ioctls carry no size or direction bits.
const fn nbd_io(n: libc::c_ulong) -> libc::c_ulong {
    (0xab << 8) | n
}

/// `NBD_SET_SOCK`: hand the kernel one connection.
pub const NBD_SET_SOCK: libc::c_ulong = nbd_io(0);
/// `NBD_SET_BLKSIZE`: logical block size in bytes.
pub const NBD_SET_BLKSIZE: libc::c_ulong = nbd_io(1);
/// `NBD_DO_IT`: serve until disconnected (blocks).
pub const NBD_DO_IT: libc::c_ulong = nbd_io(3);
/// `NBD_CLEAR_SOCK`: forget the connections.
pub const NBD_CLEAR_SOCK: libc::c_ulong = nbd_io(4);
/// `NBD_SET_SIZE_BLOCKS`: size in blocks.
pub const NBD_SET_SIZE_BLOCKS: libc::c_ulong = nbd_io(7);
/// `NBD_DISCONNECT`: send NBD_CMD_DISC and end `NBD_DO_IT`.
pub const NBD_DISCONNECT: libc::c_ulong = nbd_io(8);
/// `NBD_SET_TIMEOUT`: request timeout in seconds.
pub const NBD_SET_TIMEOUT: libc::c_ulong = nbd_io(9);
/// `NBD_SET_FLAGS`: NBD transmission flags.
pub const NBD_SET_FLAGS: libc::c_ulong = nbd_io(10);

/// Issues an nbd ioctl whose argument is an integer (or nothing, passed as 0).
pub fn nbd_ioctl(fd: BorrowedFd<'_>, request: libc::c_ulong, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the nbd ioctls above take their argument by value (an integer or a descriptor
    // number), never as a pointer, so no memory is read or written through `arg`; `fd` is a
    // live descriptor for the duration of the borrow.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A `NETLINK_GENERIC` socket bound to an address the kernel picks.
#[derive(Debug)]
pub struct GenericNetlink {
    fd: OwnedFd,
}

impl GenericNetlink {
    /// Opens and binds the socket.
    ///
    /// # Errors
    /// The `socket` or `bind` error (e.g. `EAFNOSUPPORT` without netlink).
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) with constant arguments; no pointers involved.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_GENERIC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor socket(2) just returned and nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let addr = kernel_addr();
        // SAFETY: `addr` is a valid, initialised sockaddr_nl and the length passed is its size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(GenericNetlink { fd })
    }

    /// Sends one datagram to the kernel.
    ///
    /// # Errors
    /// The `sendto` error.
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        let addr = kernel_addr();
        // SAFETY: `msg` is a valid slice for `msg.len()` bytes; `addr` is a valid sockaddr_nl
        // of the size passed.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Receives one datagram; returns its length (truncated to `buf`).
    ///
    /// # Errors
    /// The `recv` error.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is a valid, writable slice of `buf.len()` bytes.
        let r = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        usize::try_from(r).map_err(|_| io::Error::last_os_error())
    }
}

impl AsFd for GenericNetlink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The kernel's netlink address (port id 0, no groups).
fn kernel_addr() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is a plain C struct of integers, for which all-zero is valid.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ioctl_numbers_match_linux_nbd_h() {
        assert_eq!(NBD_SET_SOCK, 0xab00);
        assert_eq!(NBD_SET_BLKSIZE, 0xab01);
        assert_eq!(NBD_DO_IT, 0xab03);
        assert_eq!(NBD_CLEAR_SOCK, 0xab04);
        assert_eq!(NBD_SET_SIZE_BLOCKS, 0xab07);
        assert_eq!(NBD_DISCONNECT, 0xab08);
        assert_eq!(NBD_SET_TIMEOUT, 0xab09);
        assert_eq!(NBD_SET_FLAGS, 0xab0a);
    }

    #[test]
    fn test_ioctl_on_a_non_nbd_file_fails_cleanly() {
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(nbd_ioctl(f.as_fd(), NBD_SET_BLKSIZE, 512).is_err());
    }

    #[test]
    fn test_netlink_resolves_a_family_that_exists() {
        // "nlctrl" (the controller itself) exists on every kernel with generic netlink.
        let Ok(sock) = GenericNetlink::open() else {
            return;
        };
        sock.send(&super::super::netlink::get_family(1, "nlctrl"))
            .unwrap();
        let mut buf = vec![0u8; 8192];
        let n = sock.recv(&mut buf).unwrap();
        let answers = super::super::netlink::parse(&buf[..n], 1);
        assert_eq!(
            answers.first(),
            Some(&super::super::netlink::Answer::Family(0x10))
        );
    }
}
