//! Keeping the process that serves the root disk alive and able to make progress.
//!
//! When the installed system's root filesystem lives on /dev/nbd0, `sanshim boot` is the one
//! process the kernel cannot lose: if it is killed, swapped out or stuck in reclaim waiting on
//! its own I/O, the root filesystem hangs. So, in this order:
//!
//! 1. **argv[0] begins with `@`** — systemd's convention for root storage daemons
//!    (systemd.io/ROOT_STORAGE_DAEMONS): the killing spree at switch-root and at shutdown spares
//!    processes whose argv[0][0] is '@'. We re-exec ourselves as `@sanshim` with the same
//!    arguments, and with glibc malloc tunables (below) in the environment, so nothing depends
//!    on how we were started.
//! 2. **`oom_score_adj` = -1000**: the OOM killer never picks us.
//! 3. **`PR_SET_IO_FLUSHER`**: our allocations do not wait for reclaim that would need I/O to
//!    the very device we serve (the kernel treats us like a block driver's thread).
//! 4. **`mlockall(MCL_CURRENT | MCL_FUTURE)`**: nothing of ours is paged out, and every page
//!    we map later is locked as it is mapped.
//! 5. **Preallocated buffers**: glibc's malloc is told (`GLIBC_TUNABLES`, set for the re-exec)
//!    to keep one arena, never give freed memory back to the kernel, and serve requests up to
//!    32 MiB from the heap; then [`PREALLOCATED`] bytes are allocated, touched and freed, so
//!    the request buffers of the I/O path are carved from memory that is already resident and
//!    locked instead of faulting pages in under memory pressure.
//!
//! Each step logs what it did; one that fails (not root, an old kernel) is a warning, not the
//! end of the boot.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::time::Instant;

use tracing::{info, warn};

/// Bytes of heap touched and kept at start-up for the I/O path's buffers.
pub const PREALLOCATED: usize = 32 << 20;

/// The argv[0] systemd spares.
const ARGV0: &str = "@sanshim";

/// glibc malloc tunables for a daemon that must not fault memory in under pressure.
const TUNABLES: &str = "glibc.malloc.arena_max=1:glibc.malloc.trim_threshold=4294967295:\
glibc.malloc.mmap_threshold=33554432:glibc.malloc.top_pad=33554432";

/// Re-executes the process as `@sanshim` (same executable, same arguments, malloc tunables
/// added) unless argv[0] already begins with '@'. Returns only when it did not re-exec.
pub fn reexec_as_root_storage_daemon() {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    if argv0.as_encoded_bytes().first() == Some(&b'@') {
        return;
    }
    let tunables = match std::env::var_os("GLIBC_TUNABLES") {
        Some(existing) if !existing.is_empty() => {
            let mut t = existing;
            t.push(":");
            t.push(TUNABLES);
            t
        }
        _ => OsString::from(TUNABLES),
    };
    let error = std::process::Command::new("/proc/self/exe")
        .arg0(ARGV0)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .exec();
    warn!(error = %error, "cannot re-execute as {ARGV0}: systemd may kill this process at switch-root");
}

/// Steps 2–5 of the module documentation; each logs its outcome.
pub fn harden() {
    let started = Instant::now();
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if argv0.as_encoded_bytes().first() == Some(&b'@') {
        info!(argv0 = %argv0.to_string_lossy(), "running as a root storage daemon (systemd spares '@' processes at switch-root and shutdown)");
    }
    match std::fs::write("/proc/self/oom_score_adj", "-1000") {
        Ok(()) => info!("oom_score_adj set to -1000: the OOM killer will not pick this process"),
        Err(e) => warn!(error = %e, "cannot set oom_score_adj (run as root)"),
    }
    match rustix::process::configure_io_flusher_behavior(true) {
        Ok(()) => info!("PR_SET_IO_FLUSHER set: reclaim will not wait on our own I/O"),
        Err(e) => {
            warn!(error = %e, "cannot set PR_SET_IO_FLUSHER (needs CAP_SYS_RESOURCE, Linux 5.6)")
        }
    }
    let flags = rustix::mm::MlockAllFlags::CURRENT | rustix::mm::MlockAllFlags::FUTURE;
    match rustix::mm::mlockall(flags) {
        Ok(()) => info!("memory locked (mlockall current and future)"),
        Err(e) => warn!(error = %e, "cannot lock memory (mlockall); it may be paged out"),
    }
    preallocate(PREALLOCATED);
    info!(
        took_ms = started.elapsed().as_millis() as u64,
        "process hardened"
    );
}

/// Grows the heap by `bytes` in request-sized chunks, touching every page, and frees them:
/// with the tunables of the re-exec, glibc keeps the memory for later allocations.
fn preallocate(bytes: usize) {
    const CHUNK: usize = 256 << 10;
    let chunks: Vec<Vec<u8>> = (0..bytes / CHUNK).map(|_| vec![1u8; CHUNK]).collect();
    let chunks = std::hint::black_box(chunks);
    let resident: usize = chunks.iter().map(Vec::len).sum();
    drop(chunks);
    info!(
        mib = resident >> 20,
        "request buffers preallocated (heap kept resident)"
    );
}
