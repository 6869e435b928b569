//! The ioctl method (Linux `include/uapi/linux/nbd.h`), for kernels or modules without the
//! netlink interface: `NBD_SET_BLKSIZE`, `NBD_SET_SIZE_BLOCKS`, `NBD_SET_TIMEOUT`,
//! `NBD_SET_FLAGS`, one `NBD_SET_SOCK` per connection, then `NBD_DO_IT` blocks a thread until
//! the device is disconnected.
//!
//! A device attached this way lives only as long as the thread in `NBD_DO_IT`: when the process
//! dies, the kernel shuts the sockets and fails every request, so it cannot be reattached. It
//! has no dead-connection timeout either.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::AttachError;
use super::netlink::ConnectParams;
use super::sys;

/// The open device and the thread blocked in `NBD_DO_IT`.
pub(super) type Running = (Arc<File>, JoinHandle<io::Result<()>>);

/// Configures `device` and starts `NBD_DO_IT` on a blocking thread, which owns the kernel's
/// socket ends until it returns.
///
/// # Errors
/// [`AttachError::InUse`] when another client holds the device; [`AttachError::Kernel`].
pub(super) fn connect(
    device: &Path,
    params: &ConnectParams,
    kernel_ends: Vec<OwnedFd>,
) -> Result<Running, AttachError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
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
        let arg = fd.as_raw_fd() as libc::c_ulong;
        match sys::nbd_ioctl(file.as_fd(), sys::NBD_SET_SOCK, arg) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(AttachError::InUse(device.into()));
            }
            Err(source) => {
                return Err(AttachError::Kernel {
                    what: "NBD_SET_SOCK",
                    source,
                });
            }
        }
    }
    let file = Arc::new(file);
    let do_it = tokio::task::spawn_blocking({
        let file = Arc::clone(&file);
        move || {
            // Blocks until NBD_DISCONNECT or a dead connection; then forget the sockets.
            let served = sys::nbd_ioctl(file.as_fd(), sys::NBD_DO_IT, 0);
            let _ = sys::nbd_ioctl(file.as_fd(), sys::NBD_CLEAR_SOCK, 0);
            drop(kernel_ends);
            served
        }
    });
    Ok((file, do_it))
}

/// `NBD_DISCONNECT`, then waits for `NBD_DO_IT` to return.
///
/// # Errors
/// [`AttachError::Kernel`] when the kernel refused the disconnect.
pub(super) async fn disconnect((file, do_it): Running) -> Result<(), AttachError> {
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
