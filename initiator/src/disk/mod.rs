//! A logical unit as a [`BlockDevice`](sanshim_blockdev::BlockDevice) (SBC-4 over RFC 7143): [`ScsiDisk`] opens a session,
//! inspects the LU on it (INQUIRY with VPD 0x00/0x80/0x83/0xB0/0xB1/0xB2, READ CAPACITY,
//! MODE SENSE), then runs READ(16)/WRITE(16)/SYNCHRONIZE CACHE/UNMAP/WRITE SAME on the same
//! session, through its [`SessionHandle`].
//!
//! ```text
//!  read(lba, BytesMut) ─► one READ(16) ─► SessionHandle ─► driver ─► Data-In lands in the buffer
//!  write(lba, Bytes) ──► one WRITE(16) ─► SessionHandle ─► driver ─► Data-Out sent from it
//! ```
//!
//! A read or write is one SCSI command: requests longer than the LU's MAXIMUM TRANSFER
//! LENGTH are refused ([`sanshim_blockdev::split`] cuts them, once, above this layer). SCSI
//! retries (UNIT ATTENTION, BUSY, TASK SET FULL, becoming ready) are the session's
//! ([`crate::scsi::RetryPolicy`]); what reaches here is final and mapped to an
//! [`sanshim_blockdev::ErrorKind`].
//!
//! # Steady-state cost of a read
//! Measured by `bench/benches/hotpath.rs` (a counting allocator around the whole stack):
//! one 128 KiB NBD read costs 2 allocations — the NBD server's buffer and its task for the
//! request; this layer and the session add none once warm (the reply slot comes from a pool,
//! the PDU header is encoded into a reused buffer) — and copies no payload byte in userspace,
//! with or without data digests (the Data-In segment is read by the kernel straight into the
//! caller's buffer, the digest is computed over it there, and the NBD reply is written from
//! it). It makes one hop to the session's driver task and one back, and runs no task of its
//! own.

mod ops;

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sanshim_blockdev::{ErrorKind, Geometry, Limits};

use crate::inspect::{self, InspectError, LunReport};
use crate::login::LoginConfig;
use crate::portal::Portal;
use crate::scsi::{Designator, PeripheralDeviceType};
use crate::session::SessionConfig;
use crate::transport::{self, LoginPolicy, SessionError, SessionHandle};
use crate::wire::Lun;

/// How a disk's session behaves.
#[derive(Clone, Copy, Debug)]
pub struct DiskOptions {
    /// Commands in flight at most (1..=512; default 64).
    pub queue_depth: u32,
    /// Idle time before a NOP-Out ping (default 5 s; zero disables pings).
    pub noop_interval: Duration,
    /// How long a ping may go unanswered before the connection is declared dead (5 s).
    pub noop_timeout: Duration,
    /// How long I/O waits for a working session before failing (15 s).
    pub replacement_timeout: Duration,
    /// How long one command may run before it is aborted (30 s).
    pub command_timeout: Duration,
    /// Refuse writes even if the LU is writable.
    pub read_only: bool,
    /// The LUN to open (default 0; tgt's disks start at 1).
    pub lun: u64,
    /// Fail commands at once when the connection is lost or down, for a multipath layer to
    /// re-drive them on another path (default: re-issue them on the next connection).
    pub fail_fast: bool,
    /// Log, once per episode, the conditions a user must act on at the array (the LU no
    /// longer presented, out of space; default on); off for a caller that reports the
    /// failure itself, as `sanshim bench` does on exit.
    pub log_conditions: bool,
}

impl Default for DiskOptions {
    fn default() -> Self {
        DiskOptions {
            queue_depth: 64,
            noop_interval: Duration::from_secs(5),
            noop_timeout: Duration::from_secs(5),
            replacement_timeout: Duration::from_secs(15),
            command_timeout: Duration::from_secs(30),
            read_only: false,
            lun: 0,
            fail_fast: false,
            log_conditions: true,
        }
    }
}

impl DiskOptions {
    /// The session settings these options ask for.
    pub fn session_config(&self) -> SessionConfig {
        SessionConfig {
            queue_depth: self.queue_depth,
            noop_interval: self.noop_interval,
            noop_timeout: self.noop_timeout,
            replacement_timeout: self.replacement_timeout,
            command_timeout: self.command_timeout,
            tmf_timeout: self.command_timeout.min(Duration::from_secs(10)),
            fail_fast: self.fail_fast,
            ..SessionConfig::default()
        }
    }
}

/// Why a disk could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The portal was unreachable or the login failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Inspecting the LU failed.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// The LU is not a direct-access block device.
    #[error("LUN {lun} is not a block device (peripheral device type {device_type:?})")]
    NotBlockDevice {
        /// The LUN.
        lun: u64,
        /// What it is.
        device_type: PeripheralDeviceType,
    },
    /// The LU reported an unusable capacity.
    #[error("LUN {lun} reports an unusable capacity ({blocks} blocks of {block_size} bytes)")]
    BadCapacity {
        /// The LUN.
        lun: u64,
        /// Blocks reported.
        blocks: u64,
        /// Block size reported.
        block_size: u32,
    },
}

impl OpenError {
    /// Whether no portal answered (exit code 3).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, OpenError::Session(e) if e.is_unreachable())
    }

    /// Whether the target refused the login (exit code 4).
    pub fn is_refusal(&self) -> bool {
        matches!(self, OpenError::Session(e) if e.is_refusal())
    }
}

/// A SCSI block device reached over one iSCSI session.
#[derive(Debug)]
pub struct ScsiDisk {
    session: SessionHandle,
    geometry: Geometry,
    report: LunReport,
    lun: Lun,
    options: DiskOptions,
    /// READ(16)/WRITE(16) work; cleared when the target lacks them.
    use16: AtomicBool,
    /// WRITE SAME(16) works; cleared when the target lacks it.
    write_same: AtomicBool,
    /// A command met UNIT ATTENTION, ASYMMETRIC ACCESS STATE CHANGED since the last look.
    alua_changed: AtomicBool,
    /// Until when the reset unit attention of a LOGICAL UNIT RESET our own side sent is due
    /// on this I_T nexus ([`ScsiDisk::expect_reset_attention`]).
    own_reset: Mutex<Option<Instant>>,
    /// SYNCHRONIZE CACHE commands that completed with GOOD status.
    syncs: AtomicU64,
    /// The condition last logged for a user to act on (0 none, 1 LU gone, 2 out of space).
    told: AtomicU8,
}

impl ScsiDisk {
    /// Logs in at `portal`, inspects LUN `options.lun` on the new session and keeps the
    /// session for I/O.
    ///
    /// # Errors
    /// [`OpenError`]: unreachable portal, refused login, failed inspection, or a LU that is
    /// not a usable block device.
    pub async fn open(
        portal: Portal,
        login: LoginConfig,
        policy: LoginPolicy,
        options: DiskOptions,
    ) -> Result<ScsiDisk, OpenError> {
        let session = transport::open(&portal, login, &policy, options.session_config()).await?;
        match ScsiDisk::on_session(session.clone(), options).await {
            Ok(disk) => Ok(disk),
            Err(e) => {
                session.close().await;
                Err(e)
            }
        }
    }

    /// Inspects LUN `options.lun` on a running session and makes it a disk.
    ///
    /// # Errors
    /// [`OpenError`] for a failed inspection or a LU that is not a usable block device.
    pub async fn on_session(
        session: SessionHandle,
        options: DiskOptions,
    ) -> Result<ScsiDisk, OpenError> {
        let lun = Lun::from_number(options.lun);
        let report = inspect::inspect(&session, lun).await?;
        let geometry = geometry(&report, &options)?;
        Ok(ScsiDisk {
            session,
            geometry,
            report,
            lun,
            options,
            use16: AtomicBool::new(true),
            write_same: AtomicBool::new(true),
            alua_changed: AtomicBool::new(false),
            own_reset: Mutex::new(None),
            syncs: AtomicU64::new(0),
            told: AtomicU8::new(0),
        })
    }

    /// What inspection found about the LU.
    pub fn report(&self) -> &LunReport {
        &self.report
    }

    /// The LU's identity designator (VPD 0x83), the key multipath groups paths by.
    pub fn identity(&self) -> Option<&Designator> {
        self.report.identity()
    }

    /// The session the disk runs on, for inspection and task management beside its I/O.
    pub fn session(&self) -> &SessionHandle {
        &self.session
    }

    /// Whether a command met UNIT ATTENTION, ASYMMETRIC ACCESS STATE CHANGED (0x2A/0x06), or
    /// was refused for its port's ALUA state (NOT READY 0x04/0x0a..=0x0c), since the last
    /// call: the ALUA states of the target port groups must be read again.
    pub fn take_alua_changed(&self) -> bool {
        self.alua_changed.swap(false, Ordering::Relaxed)
    }

    /// Says that a LOGICAL UNIT RESET is about to be sent to this LU by our own side (a
    /// multipath write failover), so the reset unit attention (29h/00h or 29h/03h) it leaves
    /// on this I_T nexus within `within` is ours: a SYNCHRONIZE CACHE meeting it is sent again
    /// instead of failing as after a power loss. A logical unit reset aborts tasks; it does
    /// not discard the write cache. The expectation is used up by the first such attention,
    /// whichever command meets it.
    pub fn expect_reset_attention(&self, within: Duration) {
        *lock(&self.own_reset) = Some(Instant::now() + within);
    }

    /// Whether `sense` is the reset unit attention of our own LOGICAL UNIT RESET; uses up
    /// the expectation.
    pub(crate) fn take_own_reset(&self, sense: &crate::scsi::Sense) -> bool {
        if !(crate::scsi::is_reset(sense) && matches!(sense.ascq, 0x00 | 0x03)) {
            return false;
        }
        let mut due = lock(&self.own_reset);
        due.take().is_some_and(|until| Instant::now() < until)
    }

    /// The LUN the disk is.
    pub fn lun(&self) -> Lun {
        self.lun
    }

    /// How many SYNCHRONIZE CACHE commands completed with GOOD status: explicit flushes, the
    /// FUA fallback's and the one [`ScsiDisk::close`] sends.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// How many times the session was re-established after losing its connection.
    pub fn reconnects(&self) -> u64 {
        self.session.reconnects()
    }

    /// The options the disk was opened with.
    pub fn options(&self) -> &DiskOptions {
        &self.options
    }

    /// Flushes the write cache (SYNCHRONIZE CACHE), logs out and stops the engine. Both are
    /// bounded by the session's timeouts.
    ///
    /// # Errors
    /// The flush's error; the logout happens regardless.
    pub async fn close(self) -> Result<(), sanshim_blockdev::BlockError> {
        let flushed = if self.geometry.read_only {
            Ok(())
        } else {
            self.synchronize_cache().await
        };
        self.session.close().await;
        flushed
    }
}

/// The one line a user gets for a failure they must act on at the array, naming the LU
/// (`lun` of `target`, reached at `portals`) and what to do; `None` for other kinds.
pub fn explain(kind: ErrorKind, lun: u64, target: &str, portals: &str) -> Option<String> {
    match kind {
        ErrorKind::NotPresent => Some(format!(
            "LUN {lun} of target {target} (portal {portals}) is no longer presented: the target \
             answers LOGICAL UNIT NOT SUPPORTED (was it unmapped, or masked from this initiator, \
             on the array?): check the array's LUN mapping"
        )),
        ErrorKind::NoSpace => Some(format!(
            "the target is out of space (thin pool exhausted) for LUN {lun} of target {target} \
             (portal {portals}): writes fail with SPACE ALLOCATION FAILED WRITE PROTECT: free \
             space on the array"
        )),
        _ => None,
    }
}

/// The block layer's view of the LU.
fn geometry(report: &LunReport, options: &DiskOptions) -> Result<Geometry, OpenError> {
    let lun = report.lun;
    if report.inquiry.device_type != PeripheralDeviceType::DIRECT_ACCESS {
        return Err(OpenError::NotBlockDevice {
            lun,
            device_type: report.inquiry.device_type,
        });
    }
    let (blocks, block_size) = report.capacity.map_or((0, 0), |c| (c.blocks, c.block_size));
    if blocks == 0 || block_size < 512 || !block_size.is_power_of_two() {
        return Err(OpenError::BadCapacity {
            lun,
            blocks,
            block_size,
        });
    }
    let mut limits = report
        .block_limits
        .map_or(Limits::default(), |b| b.limits());
    // One command per request: state the transfer limit the disk applies when the LU
    // states none, so that callers split to it.
    let bs = u64::from(block_size);
    let default_max = u32::try_from(ops::DEFAULT_MAX_TRANSFER / bs).unwrap_or(u32::MAX);
    limits.max_transfer_blocks = Some(limits.max_transfer_blocks.unwrap_or(default_max).max(1));
    let provisioning = report.provisioning;
    Ok(Geometry {
        block_size,
        blocks,
        read_only: options.read_only || report.write_protected == Some(true),
        can_flush: true,
        // Without a MODE SENSE answer, assume FUA works: SBC-4 makes the bit mandatory to
        // accept, and a device without DPOFUA treats it as a no-op on a write-through cache.
        can_fua: report.fua.unwrap_or(true),
        can_discard: provisioning.is_some_and(|p| p.lbpu),
        can_write_zeroes: true,
        limits,
    })
}

/// Locks `m`; a holder that panicked left nothing half-done behind (the value is one field).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
