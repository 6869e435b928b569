//! Kernel attach: connects `/dev/nbdN` to a [`Server`] export through socket pairs, without an
//! external nbd-client (Linux `drivers/block/nbd.c`, `include/uapi/linux/nbd.h`,
//! `nbd-netlink.h`).
//!
//! The kernel takes no handshake: it is told the size, block size and transmission flags
//! directly and then sends requests with simple replies. [`attach`] creates one socket pair per
//! connection, serves the server's end with [`Server`]'s transmission driver and hands the
//! other ends to the kernel with the generic netlink `nbd` family (`NBD_CMD_CONNECT`, with a
//! dead-connection timeout), or, where netlink is unavailable, with the ioctls (`NBD_SET_SOCK`
//! … `NBD_DO_IT` on a dedicated thread). [`Attachment::detach`] disconnects, which makes the
//! kernel finish its requests and send `NBD_CMD_DISC`, and waits for the connections to end.
//!
//! Order on exit: [`Attachment::detach`] first, then [`Server::shutdown`]; a server shut down
//! under an attached device stops answering it, which the kernel sees as a dead connection.
//! An attachment dropped without `detach` leaves the device configured until the kernel's
//! dead-connection timeout fails it.
//!
//! The message encoding and ioctl numbers are unit-tested here; both methods run against
//! Debian's `nbd.ko` in a VM in `tests/nbd_vm.rs` (through `examples/memexport.rs` and
//! `sanshim export --attach`).

mod netlink;
mod sys;

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;

use self::netlink::{Answer, ConnectParams};
use self::sys::GenericNetlink;
use sanshim_blockdev::BlockDevice;

use crate::Server;

/// How to attach.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AttachOptions {
    /// Connections (socket pairs) the kernel uses; the export advertises multi-conn.
    pub connections: usize,
    /// Kernel request timeout; `None` keeps the kernel's default.
    pub timeout: Option<Duration>,
    /// How long the kernel holds I/O when a connection dies before failing it (netlink only).
    pub dead_conn_timeout: Duration,
    /// `None` tries netlink and falls back to the ioctls where netlink is unavailable;
    /// `Some` uses only that method (tests use it to exercise the ioctl path).
    pub method: Option<Method>,
}

/// How the kernel was attached.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Method {
    /// Generic netlink `NBD_CMD_CONNECT`.
    Netlink,
    /// The `NBD_SET_SOCK`/`NBD_DO_IT` ioctls.
    Ioctl,
}

/// A device attached to an export; detach it with [`Attachment::detach`].
#[derive(Debug)]
pub struct Attachment {
    device: PathBuf,
    index: u32,
    method: Method,
    /// The open device and the thread blocked in `NBD_DO_IT` (ioctl method).
    ioctl: Option<(std::sync::Arc<std::fs::File>, JoinHandle<io::Result<()>>)>,
    connections: Vec<JoinHandle<()>>,
}

/// Why attaching or detaching failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The path is not `/dev/nbdN`.
    #[error("{0}: not an nbd device path (/dev/nbdN)")]
    NotNbd(PathBuf),
    /// No such device: the nbd module is not loaded or has fewer devices.
    #[error("{0}: no such nbd device (is the nbd module loaded?)")]
    NoDevice(PathBuf),
    /// The device is already connected.
    #[error("{0}: device is already in use")]
    InUse(PathBuf),
    /// The export does not exist.
    #[error("no export named {0:?}")]
    UnknownExport(String),
    /// The kernel cannot use this block size (it takes 512 bytes to the page size).
    #[error("block size {0} is not usable by the kernel nbd driver")]
    BlockSize(u32),
    /// The kernel refused.
    #[error("{what}: {source}")]
    Kernel {
        /// The step that failed.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            connections: 1,
            timeout: None,
            dead_conn_timeout: Duration::from_secs(30),
            method: None,
        }
    }
}

/// Attaches `device` (`/dev/nbdN`) to the export called `export` of `server`.
///
/// # Errors
/// [`AttachError`]; a device in use is refused before anything is changed.
pub async fn attach<D: BlockDevice + 'static>(
    server: &Server<D>,
    export: &str,
    device: &Path,
    options: &AttachOptions,
) -> Result<Attachment, AttachError> {
    let index = device_index(device).ok_or_else(|| AttachError::NotNbd(device.into()))?;
    let sys_dir = PathBuf::from(format!("/sys/block/nbd{index}"));
    if !sys_dir.exists() {
        return Err(AttachError::NoDevice(device.into()));
    }
    // The pid file exists while a client holds the device connected.
    if sys_dir.join("pid").exists() {
        return Err(AttachError::InUse(device.into()));
    }
    let export_index = server
        .find_export(export)
        .ok_or_else(|| AttachError::UnknownExport(export.into()))?;
    let params = server
        .params(export_index)
        .ok_or_else(|| AttachError::UnknownExport(export.into()))?;
    if !(512..=4096).contains(&params.min_block) {
        return Err(AttachError::BlockSize(params.min_block));
    }
    let mut kernel_ends = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..options.connections.max(1) {
        let (ours, theirs) =
            std::os::unix::net::UnixStream::pair().map_err(|source| AttachError::Kernel {
                what: "socketpair",
                source,
            })?;
        ours.set_nonblocking(true)
            .map_err(|source| AttachError::Kernel {
                what: "socketpair",
                source,
            })?;
        let ours =
            tokio::net::UnixStream::from_std(ours).map_err(|source| AttachError::Kernel {
                what: "socketpair",
                source,
            })?;
        let server = server.clone();
        connections.push(tokio::spawn(async move {
            if let Err(e) = server.transmit(ours, export_index, false).await {
                tracing::warn!(error = %e, "kernel connection ended");
            }
        }));
        kernel_ends.push(OwnedFd::from(theirs));
    }
    let connect = ConnectParams {
        index,
        size: params.size,
        block_size: u64::from(params.min_block),
        server_flags: u64::from(params.flags(false)),
        timeout: options.timeout.map(|t| t.as_secs().max(1)),
        dead_conn_timeout: options.dead_conn_timeout.as_secs(),
        fds: kernel_ends.iter().map(|fd| fd.as_raw_fd() as u32).collect(),
    };
    let mut attachment = Attachment {
        device: device.into(),
        index,
        method: Method::Netlink,
        ioctl: None,
        connections,
    };
    let netlink = match options.method {
        Some(Method::Ioctl) => Err(NetlinkError::Unavailable(io::ErrorKind::Unsupported.into())),
        _ => netlink_connect(&connect).await,
    };
    let result = match netlink {
        Ok(()) => Ok(()),
        Err(NetlinkError::Unavailable(e)) if options.method != Some(Method::Netlink) => {
            tracing::info!(error = %e, "nbd netlink not used, attaching with ioctls");
            attachment.method = Method::Ioctl;
            ioctl_connect(&mut attachment, &connect, kernel_ends).await
        }
        Err(NetlinkError::Unavailable(source)) => Err(AttachError::Kernel {
            what: "nbd netlink",
            source,
        }),
        Err(NetlinkError::Refused(e)) if e.raw_os_error() == Some(libc::EBUSY) => {
            Err(AttachError::InUse(device.into()))
        }
        Err(NetlinkError::Refused(source)) => Err(AttachError::Kernel {
            what: "NBD_CMD_CONNECT",
            source,
        }),
    };
    if let Err(e) = result {
        attachment.abort_connections();
        return Err(e);
    }
    Ok(attachment)
}

impl Attachment {
    /// The attached device.
    pub fn device(&self) -> &Path {
        &self.device
    }

    /// How the kernel was attached.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Disconnects the device: the kernel finishes its requests, sends `NBD_CMD_DISC` and
    /// closes; then waits (up to a minute) for the connections to drain.
    ///
    /// # Errors
    /// [`AttachError::Kernel`] when the kernel refused the disconnect.
    pub async fn detach(mut self) -> Result<(), AttachError> {
        let result = match self.ioctl.take() {
            None => netlink_disconnect(self.index).await,
            Some((file, do_it)) => ioctl_disconnect(file, do_it).await,
        };
        for c in self.connections.drain(..) {
            if tokio::time::timeout(Duration::from_secs(60), c)
                .await
                .is_err()
            {
                tracing::warn!(device = %self.device.display(), "kernel connection did not close");
            }
        }
        result
    }

    fn abort_connections(&mut self) {
        for c in self.connections.drain(..) {
            c.abort();
        }
    }
}

/// N of `/dev/nbdN`.
fn device_index(device: &Path) -> Option<u32> {
    let name = device.file_name()?.to_str()?;
    let digits = name.strip_prefix("nbd")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

enum NetlinkError {
    /// No netlink or no `nbd` family: fall back to ioctls.
    Unavailable(io::Error),
    /// The family answered with an error.
    Refused(io::Error),
}

/// Sends one request and waits for the answers to it, up to its acknowledgement.
fn netlink_call(sock: &GenericNetlink, seq: u32, msg: &[u8]) -> io::Result<Vec<Answer>> {
    sock.send(msg)?;
    let mut answers = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while !answers
        .iter()
        .any(|a| matches!(a, Answer::Ack | Answer::Error(_)))
    {
        let n = sock.recv(&mut buf)?;
        answers.extend(netlink::parse(buf.get(..n).unwrap_or_default(), seq));
    }
    match answers.iter().find_map(|a| {
        if let Answer::Error(e) = a {
            Some(*e)
        } else {
            None
        }
    }) {
        Some(errno) => Err(io::Error::from_raw_os_error(errno)),
        None => Ok(answers),
    }
}

fn nbd_family(sock: &GenericNetlink) -> Result<u16, NetlinkError> {
    let answers = netlink_call(sock, 1, &netlink::get_family(1, netlink::NBD_FAMILY_NAME))
        .map_err(NetlinkError::Unavailable)?;
    answers
        .iter()
        .find_map(|a| {
            if let Answer::Family(id) = a {
                Some(*id)
            } else {
                None
            }
        })
        .ok_or_else(|| NetlinkError::Unavailable(io::ErrorKind::NotFound.into()))
}

async fn netlink_connect(params: &ConnectParams) -> Result<(), NetlinkError> {
    let params = params.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let sock = GenericNetlink::open().map_err(NetlinkError::Unavailable)?;
        let family = nbd_family(&sock)?;
        netlink_call(&sock, 2, &netlink::connect(family, 2, &params))
            .map_err(NetlinkError::Refused)?;
        Ok(())
    })
    .await;
    joined.unwrap_or_else(|e| Err(NetlinkError::Unavailable(io::Error::other(e))))
}

async fn netlink_disconnect(index: u32) -> Result<(), AttachError> {
    let joined = tokio::task::spawn_blocking(move || {
        let sock = GenericNetlink::open()?;
        let family = nbd_family(&sock)
            .map_err(|(NetlinkError::Unavailable(e) | NetlinkError::Refused(e))| e)?;
        netlink_call(&sock, 3, &netlink::disconnect(family, 3, index)).map(drop)
    })
    .await
    .unwrap_or_else(|e| Err(io::Error::other(e)));
    joined.map_err(|source| AttachError::Kernel {
        what: "NBD_CMD_DISCONNECT",
        source,
    })
}

async fn ioctl_connect(
    attachment: &mut Attachment,
    params: &ConnectParams,
    kernel_ends: Vec<OwnedFd>,
) -> Result<(), AttachError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&attachment.device)
        .map_err(|source| AttachError::Kernel {
            what: "open",
            source,
        })?;
    let ioctl = |what: &'static str, req, arg: u64| {
        sys::nbd_ioctl(file.as_fd(), req, arg as libc::c_ulong)
            .map_err(|source| AttachError::Kernel { what, source })
    };
    ioctl("NBD_SET_BLKSIZE", sys::NBD_SET_BLKSIZE, params.block_size)?;
    ioctl(
        "NBD_SET_SIZE_BLOCKS",
        sys::NBD_SET_SIZE_BLOCKS,
        params.size / params.block_size,
    )?;
    if let Some(t) = params.timeout {
        ioctl("NBD_SET_TIMEOUT", sys::NBD_SET_TIMEOUT, t)?;
    }
    ioctl("NBD_SET_FLAGS", sys::NBD_SET_FLAGS, params.server_flags)?;
    for fd in &kernel_ends {
        match sys::nbd_ioctl(
            file.as_fd(),
            sys::NBD_SET_SOCK,
            fd.as_raw_fd() as libc::c_ulong,
        ) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(AttachError::InUse(attachment.device.clone()));
            }
            Err(source) => {
                return Err(AttachError::Kernel {
                    what: "NBD_SET_SOCK",
                    source,
                });
            }
        }
    }
    let file = std::sync::Arc::new(file);
    let do_it = tokio::task::spawn_blocking({
        let file = std::sync::Arc::clone(&file);
        move || {
            // Blocks until NBD_DISCONNECT or a dead connection; then forget the sockets.
            let served = sys::nbd_ioctl(file.as_fd(), sys::NBD_DO_IT, 0);
            let _ = sys::nbd_ioctl(file.as_fd(), sys::NBD_CLEAR_SOCK, 0);
            drop(kernel_ends);
            served
        }
    });
    attachment.ioctl = Some((file, do_it));
    Ok(())
}

async fn ioctl_disconnect(
    file: std::sync::Arc<std::fs::File>,
    do_it: JoinHandle<io::Result<()>>,
) -> Result<(), AttachError> {
    sys::nbd_ioctl(file.as_fd(), sys::NBD_DISCONNECT, 0).map_err(|source| AttachError::Kernel {
        what: "NBD_DISCONNECT",
        source,
    })?;
    match do_it.await {
        Ok(Ok(())) => Ok(()),
        // NBD_DO_IT reports the disconnect it was asked for as an error on some kernels.
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "NBD_DO_IT ended");
            Ok(())
        }
        Err(e) => Err(AttachError::Kernel {
            what: "NBD_DO_IT",
            source: io::Error::other(e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sanshim_blockdev::MemDisk;

    use super::*;
    use crate::{Config, Export};

    #[test]
    fn test_device_index() {
        assert_eq!(device_index(Path::new("/dev/nbd0")), Some(0));
        assert_eq!(device_index(Path::new("/dev/nbd15")), Some(15));
        for bad in ["/dev/nbd", "/dev/sda", "/dev/nbd1p1", "/dev/nbd-1", "/"] {
            assert_eq!(device_index(Path::new(bad)), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn test_attach_refuses_bad_paths_before_touching_anything() {
        let disk = Arc::new(MemDisk::new(512, 64).unwrap());
        let export = Export {
            name: "d".into(),
            description: String::new(),
            device: disk,
            read_only: false,
        };
        let server = Server::new(Config::default(), vec![export]).unwrap();
        let opts = AttachOptions::default();
        let r = attach(&server, "d", Path::new("/dev/sda"), &opts).await;
        assert!(matches!(r, Err(AttachError::NotNbd(_))));
        // No nbd module on the build host: the device does not exist.
        if !Path::new("/sys/block/nbd4000").exists() {
            let r = attach(&server, "d", Path::new("/dev/nbd4000"), &opts).await;
            assert!(matches!(r, Err(AttachError::NoDevice(_))));
        }
    }
}
