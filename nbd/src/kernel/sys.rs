//! The only `unsafe` of this crate: the nbd ioctls (Linux `include/uapi/linux/nbd.h`). The
//! function wraps one system call and returns `io::Result`; the descriptor is borrowed
//! (`BorrowedFd`), never a raw number that could outlive its file. (Generic netlink goes through
//! the `netlink-sys` crate, `genl.rs`.)
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

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

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

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
}
