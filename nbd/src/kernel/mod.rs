//! Kernel attach: connects `/dev/nbdN` to a [`Server`] export through socket pairs, without an
//! external nbd-client, and reconnects a live device after its server died (Linux
//! `drivers/block/nbd.c`, `include/uapi/linux/nbd.h`, `nbd-netlink.h`).
//!
//! ```text
//!  attach ──► socketpair ×N ─┬─ our ends ──► Server::transmit (one task each)
//!                            └─ kernel ends ──► NBD_CMD_CONNECT (generic netlink, genl.rs)
//!                                               or NBD_SET_SOCK … NBD_DO_IT (ioctl.rs)
//!  reattach ─► NBD_CMD_STATUS + sysfs (device.rs): started? same size, block size, flags?
//!              ├─ no ──► attach
//!              └─ yes ─► socketpair ×64 ─► NBD_CMD_RECONFIGURE: the kernel swaps them in for
//!                        its dead sockets, drops the rest; ends it did not take read EOF
//! ```
//!
//! The kernel takes no handshake: it is told the size, block size and transmission flags
//! directly and then sends requests with simple replies.
//!
//! # Surviving a restart (netlink only)
//! [`attach`] sets a dead-connection timeout (default [`DEFAULT_DEAD_CONN_TIMEOUT`]) and no
//! `NBD_CFLAG_DESTROY_ON_DISCONNECT`/`NBD_CFLAG_DISCONNECT_ON_CLOSE`. When the server process
//! dies, the kernel marks its sockets dead but keeps the device and its configuration (the
//! netlink connect holds a reference until `NBD_CMD_DISCONNECT`); then, per `nbd.c`:
//! - a request dispatched while no socket is alive waits in `wait_for_reconnect` up to the
//!   dead-connection timeout; when that expires, it and every later request fail (I/O errors)
//!   until a reconfigure;
//! - a request that was in flight on a dead socket is not re-sent by the reconfigure: its own
//!   timer does it. Without a request timeout (the default, `NBD_ATTR_TIMEOUT` 0) that is the
//!   block layer's 30 s: the timer logs "Possible stuck request" and requeues it once the socket
//!   was replaced (it compares a per-socket cookie, since 2021; Debian's 6.1 does, see the VM
//!   test), so the pause after a crash is ~30 s when a request was in flight, the restart time
//!   otherwise. A request timeout would shorten it, but on a live server a slow request would
//!   then have its socket shut (the kernel waits for a reconnect no one sends) and be re-sent
//!   while the first copy may still run, so none is set;
//! - `NBD_CMD_RECONFIGURE` replaces dead sockets only, first dead one first, one per given
//!   descriptor; surplus descriptors are dropped silently (`-ENOSPC` is not reported). The
//!   count need not match, and the kernel shows its connection count nowhere (one blk-mq
//!   queue per connection, but capped at the CPU count): [`reattach`] offers
//!   [`REATTACH_OFFER`] and serves those the kernel took.
//!
//! A device attached with the ioctls dies with its process (`NBD_DO_IT` is interrupted, the
//! sockets are shut and the queue failed) and the kernel refuses to reconfigure it.
//!
//! # Order on exit
//! [`Attachment::detach`] first, then [`Server::shutdown`]; a server shut down under an
//! attached device stops answering it, which the kernel sees as a dead connection.
//! [`Attachment::leave`] (or exiting without detaching) keeps the device configured for a
//! successor's [`reattach`] within the dead-connection timeout.
//!
//! The messages and ioctl numbers are unit-tested here; both methods, and a `kill -9` followed
//! by a reattach under a write loop, run against Debian's `nbd.ko` in a VM in
//! `tests/nbd_vm.rs`.

mod device;
mod genl;
mod ioctl;
mod netlink;
mod sys;

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;

use self::device::{Device, Live};
use self::genl::{GenlError, NbdGenl};
use self::netlink::{ConnectParams, ReconfigureParams};
use crate::Server;
use crate::negotiate::ExportParams;
use crate::wire::transmission_flags as tf;
use sanshim_blockdev::BlockDevice;

/// How long the kernel holds I/O for a replacement after every connection died, by default:
/// room for a server to be restarted (or upgraded) and [`reattach`].
pub const DEFAULT_DEAD_CONN_TIMEOUT: Duration = Duration::from_secs(120);

/// Sockets [`reattach`] offers the kernel, more than the connections of any device (nbd-client
/// configures a handful at most); it takes one per dead connection.
pub const REATTACH_OFFER: usize = 64;

/// How to attach.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AttachOptions {
    /// Connections (socket pairs) the kernel uses; the export advertises multi-conn.
    pub connections: usize,
    /// Kernel request timeout; `None` keeps the kernel's default (30 s timer, never fails a
    /// request; see the module doc for why that is the right one for a restartable server).
    pub timeout: Option<Duration>,
    /// How long the kernel holds I/O when every connection is dead before failing it (netlink
    /// only; whole seconds, at least 1). Default [`DEFAULT_DEAD_CONN_TIMEOUT`].
    pub dead_conn_timeout: Duration,
    /// `None` tries netlink and falls back to the ioctls where netlink is unavailable;
    /// `Some` uses only that method (tests use it to exercise the ioctl path). A reattach
    /// always reconnects through netlink; this applies to the attach it falls back to.
    pub method: Option<Method>,
}

/// How the kernel was attached.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Method {
    /// Generic netlink `NBD_CMD_CONNECT` (or `NBD_CMD_RECONFIGURE` for a reattach).
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
    reattached: bool,
    ioctl: Option<ioctl::Running>,
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
    /// A reattach found the live device different from the export.
    #[error(
        "{device}: the device's {what} is {device_value}, the export's {export_value}: \
         refusing to reattach a different disk"
    )]
    Mismatch {
        /// The device.
        device: PathBuf,
        /// What differs.
        what: &'static str,
        /// The kernel's value.
        device_value: u64,
        /// The export's value.
        export_value: u64,
    },
    /// A reattach found a live device it cannot take over.
    #[error("{device}: cannot reattach: {reason}")]
    NotReattachable {
        /// The device.
        device: PathBuf,
        /// Why.
        reason: &'static str,
    },
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
            dead_conn_timeout: DEFAULT_DEAD_CONN_TIMEOUT,
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
    let target = Target::find(server, export, device)?;
    if target.device.started() {
        return Err(AttachError::InUse(device.into()));
    }
    connect(server, &target, options).await
}

/// Takes over `device` when it is still configured after its server died: checks that it is
/// the same disk (size, logical block size, and the flags the kernel uses), hands the kernel
/// fresh sockets with `NBD_CMD_RECONFIGURE` and serves them. Requests the kernel held meanwhile
/// proceed; see the module doc for those that were in flight. When the device is not connected,
/// attaches it as [`attach`] does (and logs so). A device whose server is still alive keeps it
/// (the kernel takes no socket; only the dead-connection timeout and client flags it was sent
/// apply) and the call fails.
///
/// # Errors
/// [`AttachError::Mismatch`] for a different disk; [`AttachError::NotReattachable`] when the
/// device was attached with ioctls (or netlink is unavailable) or still has a live server;
/// the errors of [`attach`].
pub async fn reattach<D: BlockDevice + 'static>(
    server: &Server<D>,
    export: &str,
    device: &Path,
    options: &AttachOptions,
) -> Result<Attachment, AttachError> {
    let target = Target::find(server, export, device)?;
    let index = target.device.index;
    let status = netlink(move |genl| genl.status(index)).await;
    let not_reattachable = |reason| AttachError::NotReattachable {
        device: device.into(),
        reason,
    };
    let connected = match status {
        Ok(status) => status.is_some_and(|s| s.connected) && target.device.started(),
        Err(GenlError::Unavailable(_)) if target.device.started() => {
            return Err(not_reattachable(NO_NETLINK));
        }
        Err(GenlError::Unavailable(_)) => false,
        Err(GenlError::Refused(source)) => {
            return Err(AttachError::Kernel {
                what: "NBD_CMD_STATUS",
                source,
            });
        }
    };
    if !connected {
        tracing::info!(device = %device.display(), "not connected: attaching it afresh");
        return connect(server, &target, options).await;
    }
    let live = target.device.live().map_err(|source| AttachError::Kernel {
        what: "reading the device's sysfs",
        source,
    })?;
    check_same_disk(&live, target.device.kernel_flags(), &target.params).map_err(
        |(what, device_value, export_value)| AttachError::Mismatch {
            device: device.into(),
            what,
            device_value,
            export_value,
        },
    )?;
    reconnect(server, &target, options).await
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

    /// Whether [`reattach`] took over a live device (rather than attaching it afresh).
    pub fn reattached(&self) -> bool {
        self.reattached
    }

    /// Connections served.
    pub fn connections(&self) -> usize {
        self.connections.len()
    }

    /// Disconnects the device: the kernel finishes its requests, sends `NBD_CMD_DISC` and
    /// closes; then waits (up to a minute) for the connections to drain.
    ///
    /// # Errors
    /// [`AttachError::Kernel`] when the kernel refused the disconnect.
    pub async fn detach(mut self) -> Result<(), AttachError> {
        let result = match self.ioctl.take() {
            None => {
                let index = self.index;
                netlink(move |genl| genl.disconnect(index))
                    .await
                    .map_err(|e| AttachError::Kernel {
                        what: "NBD_CMD_DISCONNECT",
                        source: e.into_io(),
                    })
            }
            Some(running) => ioctl::disconnect(running).await,
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

    /// Stops serving without disconnecting, for a successor to [`reattach`] (an upgrade): the
    /// kernel holds new requests for the dead-connection timeout, and re-sends those in flight
    /// once their timer fires after the reattach. Of no use for an ioctl attachment, which
    /// ends with its process anyway.
    pub fn leave(mut self) {
        for c in self.connections.drain(..) {
            c.abort();
        }
    }

    fn abort_connections(&mut self) {
        for c in self.connections.drain(..) {
            c.abort();
        }
    }
}

/// The device and export an attach is about.
struct Target {
    device: Device,
    export: usize,
    params: ExportParams,
}

impl Target {
    fn find<D: BlockDevice + 'static>(
        server: &Server<D>,
        export: &str,
        device: &Path,
    ) -> Result<Target, AttachError> {
        let device = Device::find(device)?;
        let unknown = || AttachError::UnknownExport(export.into());
        let index = server.find_export(export).ok_or_else(unknown)?;
        let params = server.params(index).ok_or_else(unknown)?.clone();
        if !(512..=4096).contains(&params.min_block) {
            return Err(AttachError::BlockSize(params.min_block));
        }
        Ok(Target {
            device,
            export: index,
            params,
        })
    }
}

/// A fresh attach: sockets, then `NBD_CMD_CONNECT`, or the ioctls where netlink is missing.
async fn connect<D: BlockDevice + 'static>(
    server: &Server<D>,
    target: &Target,
    options: &AttachOptions,
) -> Result<Attachment, AttachError> {
    let (ours, kernel_ends) = socket_pairs(options.connections.max(1))?;
    let connect = ConnectParams {
        index: target.device.index,
        size: target.params.size,
        block_size: u64::from(target.params.min_block),
        server_flags: u64::from(target.params.flags(false)),
        timeout: options.timeout.map(|t| t.as_secs().max(1)),
        dead_conn_timeout: options.dead_conn_timeout.as_secs().max(1),
        fds: kernel_ends.iter().map(|fd| fd.as_raw_fd() as u32).collect(),
    };
    let mut attachment = Attachment {
        device: target.device.path.clone(),
        index: target.device.index,
        method: Method::Netlink,
        reattached: false,
        ioctl: None,
        connections: serve(server, target.export, ours)?,
    };
    let netlinked = match options.method {
        Some(Method::Ioctl) => Err(GenlError::Unavailable(io::ErrorKind::Unsupported.into())),
        _ => {
            let params = connect.clone();
            netlink(move |genl| genl.connect(&params)).await
        }
    };
    let result = match netlinked {
        Ok(()) => Ok(()),
        Err(GenlError::Unavailable(e)) if options.method != Some(Method::Netlink) => {
            tracing::info!(error = %e, "nbd netlink not used, attaching with ioctls");
            attachment.method = Method::Ioctl;
            ioctl::connect(&attachment.device, &connect, kernel_ends)
                .map(|running| attachment.ioctl = Some(running))
        }
        Err(GenlError::Unavailable(source)) => Err(AttachError::Kernel {
            what: "nbd netlink",
            source,
        }),
        Err(GenlError::Refused(e)) if e.raw_os_error() == Some(libc::EBUSY) => {
            Err(AttachError::InUse(attachment.device.clone()))
        }
        Err(GenlError::Refused(source)) => Err(AttachError::Kernel {
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

/// Hands a started device fresh sockets with `NBD_CMD_RECONFIGURE` and serves those it took.
async fn reconnect<D: BlockDevice + 'static>(
    server: &Server<D>,
    target: &Target,
    options: &AttachOptions,
) -> Result<Attachment, AttachError> {
    let device = target.device.path.clone();
    let (ours, kernel_ends) = socket_pairs(REATTACH_OFFER.max(options.connections))?;
    let params = ReconfigureParams {
        index: target.device.index,
        timeout: options.timeout.map(|t| t.as_secs().max(1)),
        dead_conn_timeout: options.dead_conn_timeout.as_secs().max(1),
        fds: kernel_ends.iter().map(|fd| fd.as_raw_fd() as u32).collect(),
    };
    let reconfigured = netlink(move |genl| genl.reconfigure(&params)).await;
    // The kernel holds its own reference to each socket it took; closing ours makes the ends
    // of those it did not take read EOF.
    drop(kernel_ends);
    match reconfigured {
        Ok(()) => {}
        Err(GenlError::Refused(e)) if e.raw_os_error() == Some(libc::EINVAL) => {
            return Err(AttachError::NotReattachable {
                device,
                reason: IOCTL_BOUND,
            });
        }
        Err(e) => {
            return Err(AttachError::Kernel {
                what: "NBD_CMD_RECONFIGURE",
                source: e.into_io(),
            });
        }
    }
    let taken: Vec<UnixStream> = ours.into_iter().filter(taken_by_kernel).collect();
    if taken.is_empty() {
        return Err(AttachError::NotReattachable {
            device,
            reason: NO_DEAD_SOCKET,
        });
    }
    tracing::info!(
        device = %device.display(),
        connections = taken.len(),
        "reattached: the kernel's held requests proceed"
    );
    Ok(Attachment {
        index: target.device.index,
        device,
        method: Method::Netlink,
        reattached: true,
        ioctl: None,
        connections: serve(server, target.export, taken)?,
    })
}

/// Whether the kernel kept the other end of `ours`: an end it dropped reads EOF at once.
fn taken_by_kernel(ours: &UnixStream) -> bool {
    let mut byte = [MaybeUninit::uninit()];
    match socket2::SockRef::from(ours).peek(&mut byte) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    }
}

/// Whether the live device is the export's disk: the size and logical block size must match,
/// a writable device must not meet a read-only export, and (where debugfs shows them) the
/// kernel must not use a command the export does not offer. On a mismatch: what, the device's
/// value, the export's.
fn check_same_disk(
    live: &Live,
    kernel_flags: Option<u64>,
    params: &ExportParams,
) -> Result<(), (&'static str, u64, u64)> {
    let ours = u64::from(params.flags(false));
    if live.size != params.size {
        return Err(("size in bytes", live.size, params.size));
    }
    if live.block_size != params.min_block {
        return Err((
            "logical block size",
            live.block_size.into(),
            params.min_block.into(),
        ));
    }
    if !live.read_only && ours & u64::from(tf::READ_ONLY) != 0 {
        return Err(("read-only state", 0, 1));
    }
    let used = u64::from(tf::SEND_FLUSH | tf::SEND_FUA | tf::SEND_TRIM | tf::SEND_WRITE_ZEROES);
    match kernel_flags {
        Some(kernel) if kernel & used & !ours != 0 => Err(("transmission flags", kernel, ours)),
        _ => Ok(()),
    }
}

/// `n` connected socket pairs: our ends non-blocking (for tokio), the kernel's as descriptors.
fn socket_pairs(n: usize) -> Result<(Vec<UnixStream>, Vec<OwnedFd>), AttachError> {
    let failed = |source| AttachError::Kernel {
        what: "socketpair",
        source,
    };
    let mut ours = Vec::with_capacity(n);
    let mut theirs = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let (our, their) = UnixStream::pair().map_err(failed)?;
        our.set_nonblocking(true).map_err(failed)?;
        ours.push(our);
        theirs.push(OwnedFd::from(their));
    }
    Ok((ours, theirs))
}

/// One transmission task per connection.
fn serve<D: BlockDevice + 'static>(
    server: &Server<D>,
    export: usize,
    ours: Vec<UnixStream>,
) -> Result<Vec<JoinHandle<()>>, AttachError> {
    let mut tasks = Vec::with_capacity(ours.len());
    for our in ours {
        let stream = match tokio::net::UnixStream::from_std(our) {
            Ok(s) => s,
            Err(source) => {
                tasks.iter().for_each(JoinHandle::abort);
                return Err(AttachError::Kernel {
                    what: "socketpair",
                    source,
                });
            }
        };
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = server.transmit(stream, export, false).await {
                tracing::warn!(error = %e, "kernel connection ended");
            }
        }));
    }
    Ok(tasks)
}

/// Runs `f` on a netlink socket with the `nbd` family resolved, on a blocking thread.
async fn netlink<T, F>(f: F) -> Result<T, GenlError>
where
    T: Send + 'static,
    F: FnOnce(&mut NbdGenl) -> Result<T, GenlError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || f(&mut NbdGenl::open()?))
        .await
        .unwrap_or_else(|e| Err(GenlError::Unavailable(io::Error::other(e))))
}

const NO_NETLINK: &str = "it is connected, and without the kernel's nbd netlink interface \
     only the ioctls could have attached it; a device attached with ioctls dies with its \
     process and cannot be taken over";
const IOCTL_BOUND: &str = "the kernel refused to reconfigure it: it was attached with the \
     ioctls (such a device dies with its process and cannot be taken over), or is being torn \
     down";
const NO_DEAD_SOCKET: &str = "the kernel had no dead connection to replace: its server is \
     still running (stop it, or detach the device)";

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sanshim_blockdev::MemDisk;

    use super::*;
    use crate::{Config, Export};

    fn server(block: u32, blocks: u64, read_only: bool) -> Server<MemDisk> {
        let disk = Arc::new(MemDisk::new(block, blocks).unwrap());
        let export = Export {
            name: "d".into(),
            description: String::new(),
            device: disk,
            read_only,
        };
        Server::new(Config::default(), vec![export]).unwrap()
    }

    #[tokio::test]
    async fn test_attach_refuses_bad_paths_before_touching_anything() {
        let server = server(512, 64, false);
        let opts = AttachOptions::default();
        for attach_or_reattach in [false, true] {
            let go = |dev: &'static str| {
                let server = server.clone();
                let opts = opts.clone();
                async move {
                    if attach_or_reattach {
                        reattach(&server, "d", Path::new(dev), &opts).await
                    } else {
                        attach(&server, "d", Path::new(dev), &opts).await
                    }
                }
            };
            assert!(matches!(go("/dev/sda").await, Err(AttachError::NotNbd(_))));
            // No nbd module on the build host: the device does not exist.
            if !Path::new("/sys/block/nbd4000").exists() {
                assert!(matches!(
                    go("/dev/nbd4000").await,
                    Err(AttachError::NoDevice(_))
                ));
            }
        }
    }

    #[test]
    fn test_defaults_survive_a_restart() {
        let opts = AttachOptions::default();
        assert_eq!(opts.dead_conn_timeout, Duration::from_secs(120));
        assert_eq!(opts.timeout, None);
    }

    #[test]
    fn test_check_same_disk() {
        let params = |read_only| server(4096, 256, read_only).params(0).unwrap().clone();
        let rw = params(false);
        let live = Live {
            size: 1 << 20,
            block_size: 4096,
            read_only: false,
        };
        let ours = u64::from(rw.flags(false));
        assert_eq!(check_same_disk(&live, None, &rw), Ok(()));
        assert_eq!(check_same_disk(&live, Some(ours), &rw), Ok(()));
        let bigger = Live {
            size: 2 << 20,
            ..live
        };
        assert_eq!(
            check_same_disk(&bigger, None, &rw),
            Err(("size in bytes", 2 << 20, 1 << 20))
        );
        let small_blocks = Live {
            block_size: 512,
            ..live
        };
        assert_eq!(
            check_same_disk(&small_blocks, None, &rw),
            Err(("logical block size", 512, 4096))
        );
        // A writable device cannot be served by a read-only export; the reverse is fine.
        let ro = params(true);
        assert!(check_same_disk(&live, None, &ro).is_err());
        let ro_live = Live {
            read_only: true,
            ..live
        };
        assert_eq!(check_same_disk(&ro_live, None, &rw), Ok(()));
        // The kernel uses trim; an export without it would fail those requests.
        let trim = u64::from(tf::SEND_TRIM);
        let no_trim = Some(ours & !trim);
        assert_eq!(check_same_disk(&live, no_trim, &rw), Ok(()));
        if ours & trim == 0 {
            assert!(check_same_disk(&live, Some(ours | trim), &rw).is_err());
        }
    }

    #[test]
    fn test_taken_by_kernel_tells_closed_peers() {
        let (ours, theirs) = socket_pairs(2).unwrap();
        let mut theirs = theirs.into_iter();
        let kept = theirs.next().unwrap();
        drop(theirs);
        assert!(taken_by_kernel(&ours[0]));
        assert!(!taken_by_kernel(&ours[1]));
        drop(kept);
        assert!(!taken_by_kernel(&ours[0]));
    }
}
