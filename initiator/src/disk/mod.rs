//! A logical unit as a [`BlockDevice`] (SBC-4 over RFC 7143): [`ScsiDisk`] logs in, inspects
//! the LU (TEST UNIT READY, INQUIRY with VPD 0x00/0x80/0x83/0xB0/0xB2, READ CAPACITY, MODE
//! SENSE), then runs READ(16)/WRITE(16)/SYNCHRONIZE CACHE/UNMAP/WRITE SAME through a
//! [`crate::session::Session`] driven by one tokio task.
//!
//! ```text
//!  read/write ─► ops (split by Block Limits, retry UNIT ATTENTION/BUSY) ─► channel ─► driver
//!                                                 oneshot completion ◄──────────────┘
//! ```

mod driver;
mod ops;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sanshim_blockdev::{Geometry, Limits};
use tokio::sync::mpsc;

use self::driver::{Relogin, Request};
use crate::inspect::{self, InspectError, LunReport};
use crate::login::{Established, LoginConfig};
use crate::scsi::{Designator, PeripheralDeviceType};
use crate::session::{Session, SessionConfig, SessionStart};
use crate::transport::{self, LoginPolicy, Portal, SessionError, SingleClient};
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
    requests: mpsc::UnboundedSender<Request>,
    geometry: Geometry,
    report: LunReport,
    lun: Lun,
    options: DiskOptions,
    /// READ(16)/WRITE(16) work; cleared when the target lacks them.
    use16: AtomicBool,
    /// WRITE SAME(16) works; cleared when the target lacks it.
    write_same: AtomicBool,
    driver: tokio::task::JoinHandle<()>,
    reconnects: Arc<AtomicU64>,
}

impl ScsiDisk {
    /// Logs in at `portal`, inspects LUN `options.lun` and starts the session engine.
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
        let logged = transport::login(&portal, login.clone(), &policy).await?;
        let established: Established = logged.established.clone();
        let mut client = SingleClient::new(logged, login.cid, options.command_timeout);
        let lun = Lun::from_number(options.lun);
        let report = inspect::inspect(&mut client, lun).await?;
        let geometry = geometry(&report, &options)?;
        let (connection, seq) = client.into_parts();
        let (stream, codec, rbuf) = connection.into_parts();
        let start = SessionStart {
            cmd_sn: seq.cmd_sn,
            exp_stat_sn: seq.exp_stat_sn,
            exp_cmd_sn: seq.cmd_sn,
            max_cmd_sn: seq.max_cmd_sn,
            negotiated: established.negotiated,
        };
        let now = Instant::now();
        let mut session = Session::new(session_config(&options), now);
        session.handle_connected(&start, now);
        // Re-logins reinstate the session: same ISID, TSIH 0 (RFC 7143 §6.3.5).
        let mut config = login;
        config.tsih = 0;
        let relogin_policy = LoginPolicy {
            busy_retries: 0,
            connect_timeout: policy.connect_timeout.min(Duration::from_secs(3)),
            response_timeout: policy.response_timeout.min(Duration::from_secs(5)),
            ..policy
        };
        let reconnects = Arc::new(AtomicU64::new(0));
        let relogin = Relogin {
            portal,
            config,
            policy: relogin_policy,
            count: reconnects.clone(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(driver::run(session, stream, codec, rbuf, rx, relogin));
        Ok(ScsiDisk {
            requests: tx,
            geometry,
            report,
            lun,
            options,
            use16: AtomicBool::new(true),
            write_same: AtomicBool::new(true),
            driver,
            reconnects,
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

    /// How many times the session was re-established after losing its connection.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// The options the disk was opened with.
    pub fn options(&self) -> &DiskOptions {
        &self.options
    }

    /// Flushes the write cache (SYNCHRONIZE CACHE), logs out and stops the engine.
    ///
    /// # Errors
    /// The flush's error; the logout happens regardless.
    pub async fn close(self) -> Result<(), sanshim_blockdev::BlockError> {
        let flushed = if self.geometry.read_only {
            Ok(())
        } else {
            self.synchronize_cache().await
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.requests.send(Request::Close(tx)).is_ok() {
            let _ = rx.await;
        }
        let _ = self.driver.await;
        flushed
    }
}

fn session_config(o: &DiskOptions) -> SessionConfig {
    SessionConfig {
        queue_depth: o.queue_depth,
        noop_interval: o.noop_interval,
        noop_timeout: o.noop_timeout,
        replacement_timeout: o.replacement_timeout,
        command_timeout: o.command_timeout,
        tmf_timeout: o.command_timeout.min(Duration::from_secs(10)),
        ..SessionConfig::default()
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
    let limits = report
        .block_limits
        .map_or(Limits::default(), |b| b.limits());
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
