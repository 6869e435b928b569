//! Validation of transmission requests (proto.md "Request types", "Command flags", "Error
//! values", "Block size constraints").
//!
//! [`check`] turns a parsed [`Request`] into an [`Action`] to run against the device, or a
//! [`Refusal`] with the errno that goes on the wire; either way it says how many payload bytes
//! follow the header, so that the connection stays framed after a refused write. Refusals:
//!
//! | request | errno |
//! | --- | --- |
//! | unknown command, or a command this export did not advertise (CACHE, BLOCK_STATUS, TRIM without `SEND_TRIM`) | `EINVAL` |
//! | a flag not documented or not negotiated for the command | `EINVAL` |
//! | WRITE, TRIM, WRITE_ZEROES on a read-only export | `EPERM` |
//! | READ or WRITE longer than the maximum block size | `EINVAL` |
//! | offset or length not a multiple of the minimum block size (only for clients that agreed to it; the others have a minimum of 1, [`crate::negotiate::ExportParams::session`]) | `EINVAL` |
//! | past the end: WRITE, WRITE_ZEROES | `ENOSPC` |
//! | past the end: READ, TRIM | `EINVAL` |

use crate::wire::{Command, Errno, Request, command_flags as cf, transmission_flags as tf};

/// The transmission parameters of one connection.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Session {
    /// Export size in bytes.
    pub size: u64,
    /// Transmission flags sent to the client.
    pub flags: u16,
    /// Minimum block size: offsets and lengths must be multiples of it.
    pub block_size: u32,
    /// Largest READ or WRITE payload.
    pub max_payload: u32,
    /// Whether structured replies were negotiated.
    pub structured: bool,
}

/// A valid request, ready to run.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Action {
    /// Read `length` bytes at `offset`.
    Read {
        /// Byte offset.
        offset: u64,
        /// Byte length.
        length: u32,
    },
    /// Write the payload at `offset`.
    Write {
        /// Byte offset.
        offset: u64,
        /// Byte length.
        length: u32,
        /// Force unit access.
        fua: bool,
    },
    /// Flush the device's write cache.
    Flush,
    /// Discard a range.
    Trim {
        /// Byte offset.
        offset: u64,
        /// Byte length.
        length: u32,
        /// Flush afterwards.
        fua: bool,
    },
    /// Zero a range.
    WriteZeroes {
        /// Byte offset.
        offset: u64,
        /// Byte length.
        length: u32,
        /// Flush afterwards.
        fua: bool,
        /// The device may deallocate (no `NO_HOLE`).
        unmap: bool,
        /// `NBD_CMD_FLAG_FAST_ZERO`: fail with `NBD_ENOTSUP` rather than write zeroes slowly.
        fast: bool,
    },
    /// Finish in-flight requests and close (`NBD_CMD_DISC`).
    Disconnect,
}

/// Why a request is refused, and the errno for its reply.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Refusal {
    /// The error value sent.
    pub errno: Errno,
    /// What was wrong, for logs and structured error messages.
    pub reason: &'static str,
}

/// The verdict on one request.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Checked {
    /// The request's cookie.
    pub cookie: u64,
    /// Whether the request is a READ (whose structured reply must be a chunk).
    pub is_read: bool,
    /// Bytes of payload following the header, to read or skip whatever the verdict.
    pub payload: u32,
    /// The action, or why not.
    pub verdict: Result<Action, Refusal>,
}

/// Checks a request against the session.
pub fn check(req: &Request, s: &Session) -> Checked {
    Checked {
        cookie: req.cookie,
        is_read: req.command == Command::READ,
        payload: if req.command == Command::WRITE {
            req.length
        } else {
            0
        },
        verdict: verdict(req, s),
    }
}

fn verdict(req: &Request, s: &Session) -> Result<Action, Refusal> {
    let has = |flag: u16| s.flags & flag != 0;
    let fua_ok = if has(tf::SEND_FUA) { cf::FUA } else { 0 };
    let allowed = match req.command {
        Command::DISC => return Ok(Action::Disconnect),
        Command::READ => fua_ok | if s.structured { cf::DF } else { 0 },
        Command::WRITE | Command::FLUSH | Command::TRIM => fua_ok,
        Command::WRITE_ZEROES => {
            fua_ok
                | cf::NO_HOLE
                | if has(tf::SEND_FAST_ZERO) {
                    cf::FAST_ZERO
                } else {
                    0
                }
        }
        _ => return Err(refuse(Errno::EINVAL, "unknown or unadvertised command")),
    };
    if req.flags & !allowed != 0 {
        return Err(refuse(
            Errno::EINVAL,
            "command flag not valid for this command",
        ));
    }
    let fua = req.flags & cf::FUA != 0;
    let (offset, length) = (req.offset, req.length);
    let modifies = matches!(
        req.command,
        Command::WRITE | Command::TRIM | Command::WRITE_ZEROES
    );
    if modifies && has(tf::READ_ONLY) {
        return Err(refuse(Errno::EPERM, "export is read-only"));
    }
    if req.command == Command::FLUSH {
        // proto.md reserves offset and length; any value is harmless, so none is refused.
        return Ok(Action::Flush);
    }
    if req.command == Command::TRIM && !has(tf::SEND_TRIM) {
        return Err(refuse(
            Errno::EINVAL,
            "trim is not supported by this export",
        ));
    }
    let carries_data = matches!(req.command, Command::READ | Command::WRITE);
    if carries_data && length > s.max_payload {
        return Err(refuse(
            Errno::EINVAL,
            "request longer than the maximum block size",
        ));
    }
    let bs = u64::from(s.block_size.max(1));
    if offset % bs != 0 || u64::from(length) % bs != 0 {
        return Err(refuse(
            Errno::EINVAL,
            "request not aligned to the minimum block size",
        ));
    }
    if offset
        .checked_add(u64::from(length))
        .is_none_or(|end| end > s.size)
    {
        let errno = match req.command {
            Command::WRITE | Command::WRITE_ZEROES => Errno::ENOSPC,
            _ => Errno::EINVAL,
        };
        return Err(refuse(errno, "request reaches past the end of the export"));
    }
    Ok(match req.command {
        Command::READ => Action::Read { offset, length },
        Command::WRITE => Action::Write {
            offset,
            length,
            fua,
        },
        Command::TRIM => Action::Trim {
            offset,
            length,
            fua,
        },
        _ => Action::WriteZeroes {
            offset,
            length,
            fua,
            unmap: req.flags & cf::NO_HOLE == 0,
            fast: req.flags & cf::FAST_ZERO != 0,
        },
    })
}

fn refuse(errno: Errno, reason: &'static str) -> Refusal {
    Refusal { errno, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: u16 = tf::HAS_FLAGS
        | tf::SEND_FLUSH
        | tf::SEND_FUA
        | tf::SEND_TRIM
        | tf::SEND_WRITE_ZEROES
        | tf::SEND_FAST_ZERO;

    fn session(flags: u16, structured: bool) -> Session {
        Session {
            size: 1 << 20,
            flags,
            block_size: 512,
            max_payload: 64 * 1024,
            structured,
        }
    }

    fn req(command: Command, flags: u16, offset: u64, length: u32) -> Request {
        Request {
            flags,
            command,
            cookie: 9,
            offset,
            length,
        }
    }

    fn errno(r: Request, s: &Session) -> Option<Errno> {
        check(&r, s).verdict.err().map(|e| e.errno)
    }

    #[test]
    fn test_valid_requests() {
        let s = session(RW, false);
        let c = check(&req(Command::WRITE, cf::FUA, 512, 1024), &s);
        assert_eq!(
            c.verdict,
            Ok(Action::Write {
                offset: 512,
                length: 1024,
                fua: true
            })
        );
        assert_eq!((c.cookie, c.payload, c.is_read), (9, 1024, false));
        let c = check(&req(Command::READ, 0, (1 << 20) - 512, 512), &s);
        assert_eq!(
            c.verdict,
            Ok(Action::Read {
                offset: (1 << 20) - 512,
                length: 512
            })
        );
        assert!(c.is_read);
        let wz = req(
            Command::WRITE_ZEROES,
            cf::NO_HOLE | cf::FAST_ZERO,
            0,
            1 << 20,
        );
        assert_eq!(
            check(&wz, &s).verdict,
            Ok(Action::WriteZeroes {
                offset: 0,
                length: 1 << 20,
                fua: false,
                unmap: false,
                fast: true
            })
        );
        assert_eq!(
            check(&req(Command::FLUSH, 0, 7, 3), &s).verdict,
            Ok(Action::Flush)
        );
        assert_eq!(
            check(&req(Command::DISC, 0xffff, 1, 1), &s).verdict,
            Ok(Action::Disconnect)
        );
        let trim = check(&req(Command::TRIM, 0, 0, 4096), &s).verdict;
        assert_eq!(
            trim,
            Ok(Action::Trim {
                offset: 0,
                length: 4096,
                fua: false
            })
        );
        // Zero-length requests inside the export are valid no-ops.
        assert!(
            check(&req(Command::READ, 0, 1 << 20, 0), &s)
                .verdict
                .is_ok()
        );
    }

    #[test]
    fn test_refusals() {
        let s = session(RW, false);
        assert_eq!(errno(req(Command(42), 0, 0, 0), &s), Some(Errno::EINVAL));
        assert_eq!(
            errno(req(Command::BLOCK_STATUS, 0, 0, 512), &s),
            Some(Errno::EINVAL)
        );
        assert_eq!(
            errno(req(Command::CACHE, 0, 0, 512), &s),
            Some(Errno::EINVAL)
        );
        assert_eq!(
            errno(req(Command::READ, 0, 0, 64 * 1024 + 512), &s),
            Some(Errno::EINVAL)
        );
        assert_eq!(
            errno(req(Command::WRITE, 0, 0, 64 * 1024 + 512), &s),
            Some(Errno::EINVAL)
        );
        assert_eq!(
            errno(req(Command::READ, 0, 1, 512), &s),
            Some(Errno::EINVAL)
        );
        assert_eq!(
            errno(req(Command::WRITE, 0, 0, 100), &s),
            Some(Errno::EINVAL)
        );
        assert_eq!(
            errno(req(Command::READ, 0, 1 << 20, 512), &s),
            Some(Errno::EINVAL)
        );
        assert_eq!(
            errno(req(Command::WRITE, 0, 1 << 20, 512), &s),
            Some(Errno::ENOSPC)
        );
        assert_eq!(
            errno(req(Command::WRITE_ZEROES, 0, 1 << 20, 512), &s),
            Some(Errno::ENOSPC)
        );
        assert_eq!(
            errno(req(Command::TRIM, 0, 1 << 20, 512), &s),
            Some(Errno::EINVAL)
        );
        assert_eq!(
            errno(req(Command::READ, 0, u64::MAX - 511, 512), &s),
            Some(Errno::EINVAL)
        );
        // DF needs structured replies; REQ_ONE is never valid on a read.
        assert_eq!(
            errno(req(Command::READ, cf::DF, 0, 512), &s),
            Some(Errno::EINVAL)
        );
        assert_eq!(
            errno(req(Command::READ, cf::DF, 0, 512), &session(RW, true)),
            None
        );
        assert_eq!(
            errno(req(Command::READ, cf::REQ_ONE, 0, 512), &s),
            Some(Errno::EINVAL)
        );
        assert_eq!(
            errno(req(Command::WRITE, cf::NO_HOLE, 0, 512), &s),
            Some(Errno::EINVAL)
        );
    }

    #[test]
    fn test_refusals_depend_on_advertised_flags() {
        let ro = session(tf::HAS_FLAGS | tf::READ_ONLY, false);
        assert_eq!(
            errno(req(Command::WRITE, 0, 0, 512), &ro),
            Some(Errno::EPERM)
        );
        assert_eq!(
            errno(req(Command::TRIM, 0, 0, 512), &ro),
            Some(Errno::EPERM)
        );
        assert_eq!(
            errno(req(Command::WRITE_ZEROES, 0, 0, 512), &ro),
            Some(Errno::EPERM)
        );
        assert_eq!(
            errno(req(Command::READ, cf::FUA, 0, 512), &ro),
            Some(Errno::EINVAL)
        );
        // A refused write still announces its payload, so the stream stays framed.
        assert_eq!(check(&req(Command::WRITE, 0, 0, 512), &ro).payload, 512);
        let plain = session(tf::HAS_FLAGS | tf::SEND_WRITE_ZEROES, false);
        assert_eq!(
            errno(req(Command::TRIM, 0, 0, 512), &plain),
            Some(Errno::EINVAL)
        );
        let fast = req(Command::WRITE_ZEROES, cf::FAST_ZERO, 0, 512);
        assert_eq!(errno(fast, &plain), Some(Errno::EINVAL));
        assert_eq!(
            errno(req(Command::WRITE, cf::FUA, 0, 512), &plain),
            Some(Errno::EINVAL)
        );
    }
}
