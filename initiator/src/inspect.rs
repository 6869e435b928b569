//! What `sanshim ls` and `discover --luns` report about a logical unit, and what a disk and
//! multipath learn before and while they carry I/O: the SPC/SBC identification and capacity
//! commands (INQUIRY and its VPD pages, READ CAPACITY, MODE SENSE, REPORT LUNS), run on a
//! live session through its [`SessionHandle`], beside any other traffic. UNIT ATTENTION and
//! busy statuses are retried by the session ([`crate::scsi::RetryPolicy`]).

use bytes::{Bytes, BytesMut};
use tracing::debug;

use crate::scsi::{
    BlockDeviceCharacteristics, BlockLimits, Cdb, Designator, DeviceIdentification,
    LogicalBlockProvisioning, ModeSense10, ParseError, PeripheralDeviceType, ReadCapacity10,
    ReadCapacity16, ReportLuns, Sense, StandardInquiry, SupportedVpdPages, UnitSerialNumber,
    VpdPage,
};
use crate::session::{Command, TaskError, Transfer};
use crate::transport::SessionHandle;
use crate::wire::{Lun, ScsiStatus};

/// Everything `ls` reports about one LUN.
#[derive(Clone, Debug)]
pub struct LunReport {
    /// LUN number.
    pub lun: u64,
    /// Standard INQUIRY data (device type, vendor, product, revision, ...).
    pub inquiry: StandardInquiry,
    /// Unit serial number (VPD 0x80).
    pub serial: Option<String>,
    /// Device identification designators (VPD 0x83).
    pub identification: Option<DeviceIdentification>,
    /// Number of logical blocks and their size (READ CAPACITY), for block devices.
    pub capacity: Option<Capacity>,
    /// Write-protected (MODE SENSE device-specific parameter WP bit).
    pub write_protected: Option<bool>,
    /// The device honours FUA on writes (MODE SENSE device-specific parameter DPOFUA bit).
    pub fua: Option<bool>,
    /// Block Device Characteristics VPD (0xB1): rotation rate, form factor.
    pub characteristics: Option<BlockDeviceCharacteristics>,
    /// Block Limits VPD (0xB0).
    pub block_limits: Option<BlockLimits>,
    /// Logical Block Provisioning VPD (0xB2).
    pub provisioning: Option<LogicalBlockProvisioning>,
}

impl LunReport {
    /// The designator that identifies the logical unit (NAA > EUI-64 > SCSI name > T10).
    pub fn identity(&self) -> Option<&Designator> {
        self.identification
            .as_ref()
            .and_then(DeviceIdentification::lu_identity)
    }
}

/// Capacity of a block device.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Capacity {
    /// Number of logical blocks.
    pub blocks: u64,
    /// Logical block size in bytes.
    pub block_size: u32,
    /// Physical block size in bytes, when larger than the logical one.
    pub physical_block_size: Option<u32>,
    /// Logical block provisioning management enabled (thin provisioning; READ CAPACITY(16)
    /// LBPME). `None` when only READ CAPACITY(10) answered.
    pub thin_provisioning: Option<bool>,
}

impl Capacity {
    /// Capacity in bytes.
    pub fn bytes(&self) -> u64 {
        self.blocks.saturating_mul(u64::from(self.block_size))
    }
}

/// Why inspecting a LUN failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The session could not run the command.
    #[error("{command} on LUN {lun} could not be run: {source}")]
    Session {
        /// The command.
        command: &'static str,
        /// The LUN.
        lun: u64,
        /// Why.
        source: TaskError,
    },
    /// A command ended with a SCSI error status.
    #[error(
        "{command} on LUN {lun} failed: status {status:?}{}",
        sense_text(sense)
    )]
    Scsi {
        /// The command that failed.
        command: &'static str,
        /// The LUN.
        lun: u64,
        /// SCSI status.
        status: ScsiStatus,
        /// Decoded sense data, if any.
        sense: Option<Sense>,
    },
    /// The target's answer could not be decoded.
    #[error("{command} on LUN {lun}: {source}")]
    Parse {
        /// The command whose data was bad.
        command: &'static str,
        /// The LUN.
        lun: u64,
        /// What was wrong.
        source: ParseError,
    },
    /// The target returned no iSCSI-level success for a command.
    #[error("{command} on LUN {lun}: target response code {response:#x}")]
    Response {
        /// The command.
        command: &'static str,
        /// The LUN.
        lun: u64,
        /// iSCSI response code.
        response: u8,
    },
}

fn sense_text(sense: &Option<Sense>) -> String {
    sense
        .as_ref()
        .map(|s| format!(", sense {s}"))
        .unwrap_or_default()
}

/// Lists the LUNs of the target (REPORT LUNS through LUN 0).
///
/// # Errors
/// [`InspectError`] when the command fails or its data is malformed.
pub async fn report_luns(client: &SessionHandle) -> Result<Vec<Lun>, InspectError> {
    let lun0 = Lun::from_number(0);
    let mut alloc = 4096u32;
    loop {
        let data = command(client, lun0, Cdb::report_luns(alloc), alloc, "REPORT LUNS").await?;
        match ReportLuns::parse(&data) {
            Ok(r) => return Ok(r.luns),
            Err(ParseError::Truncated { need, .. }) if (alloc as usize) < need => {
                alloc = u32::try_from(need).unwrap_or(u32::MAX).min(1 << 20);
            }
            Err(source) => {
                return Err(InspectError::Parse {
                    command: "REPORT LUNS",
                    lun: 0,
                    source,
                });
            }
        }
    }
}

/// Gathers the [`LunReport`] of `lun`.
///
/// # Errors
/// [`InspectError`] when a mandatory command (INQUIRY, READ CAPACITY for block devices) fails;
/// optional pages a target does not support are left out.
pub async fn inspect(client: &SessionHandle, lun: Lun) -> Result<LunReport, InspectError> {
    let n = lun.number().unwrap_or(lun.raw());
    let parse_err = |command| {
        move |source| InspectError::Parse {
            command,
            lun: n,
            source,
        }
    };
    let data = command(client, lun, Cdb::inquiry(255), 255, "INQUIRY").await?;
    let inquiry = StandardInquiry::parse(&data).map_err(parse_err("INQUIRY"))?;
    let pages = vpd(client, lun, 0x00)
        .await
        .and_then(|d| SupportedVpdPages::parse(&d).ok());
    let has = |p: u8| pages.as_ref().is_some_and(|s| s.contains(VpdPage(p)));
    let serial = match has(0x80) {
        true => vpd(client, lun, 0x80)
            .await
            .and_then(|d| UnitSerialNumber::parse(&d).ok()),
        false => None,
    };
    let identification = match has(0x83) {
        true => vpd(client, lun, 0x83)
            .await
            .and_then(|d| DeviceIdentification::parse(&d).ok()),
        false => None,
    };
    let mut report = LunReport {
        lun: n,
        serial: serial.map(|s| s.serial),
        identification,
        capacity: None,
        write_protected: None,
        fua: None,
        characteristics: None,
        block_limits: None,
        provisioning: None,
        inquiry,
    };
    if report.inquiry.device_type != PeripheralDeviceType::DIRECT_ACCESS {
        return Ok(report);
    }
    report.capacity = Some(capacity(client, lun, n).await?);
    if has(0xb0) {
        report.block_limits = vpd(client, lun, 0xb0)
            .await
            .and_then(|d| BlockLimits::parse(&d).ok());
    }
    if has(0xb1) {
        report.characteristics = vpd(client, lun, 0xb1)
            .await
            .and_then(|d| BlockDeviceCharacteristics::parse(&d).ok());
    }
    if has(0xb2) {
        report.provisioning = vpd(client, lun, 0xb2)
            .await
            .and_then(|d| LogicalBlockProvisioning::parse(&d).ok());
    }
    let mode = command(
        client,
        lun,
        Cdb::mode_sense10(0x3f, true, 4096),
        4096,
        "MODE SENSE",
    )
    .await
    .ok()
    .and_then(|d| ModeSense10::parse(&d).ok());
    report.write_protected = mode.as_ref().map(|m| m.write_protected);
    report.fua = mode.as_ref().map(|m| m.dpofua);
    Ok(report)
}

async fn capacity(client: &SessionHandle, lun: Lun, n: u64) -> Result<Capacity, InspectError> {
    let parse_err = |command| {
        move |source| InspectError::Parse {
            command,
            lun: n,
            source,
        }
    };
    match command(
        client,
        lun,
        Cdb::read_capacity16(32),
        32,
        "READ CAPACITY(16)",
    )
    .await
    {
        Ok(data) => {
            let rc = ReadCapacity16::parse(&data).map_err(parse_err("READ CAPACITY(16)"))?;
            Ok(Capacity {
                blocks: rc.blocks,
                block_size: rc.block_length,
                physical_block_size: rc.physical_block_length().filter(|&p| p != rc.block_length),
                thin_provisioning: Some(rc.lbpme),
            })
        }
        Err(e) => {
            debug!(lun = n, error = %e, "READ CAPACITY(16) failed; trying READ CAPACITY(10)");
            let data = command(client, lun, Cdb::read_capacity10(), 8, "READ CAPACITY(10)").await?;
            let rc = ReadCapacity10::parse(&data).map_err(parse_err("READ CAPACITY(10)"))?;
            Ok(Capacity {
                blocks: rc.blocks(),
                block_size: rc.block_length,
                physical_block_size: None,
                thin_provisioning: None,
            })
        }
    }
}

/// Reads VPD page `page`; `None` when the target fails the command (optional pages).
async fn vpd(client: &SessionHandle, lun: Lun, page: u8) -> Option<Bytes> {
    let cdb = Cdb::inquiry_vpd(page, 4096);
    match command(client, lun, cdb, 4096, "INQUIRY VPD").await {
        Ok(data) => Some(data),
        Err(e) => {
            debug!(page, error = %e, "VPD page not available");
            None
        }
    }
}

/// Runs one command reading at most `alloc_len` bytes; the session has retried what the
/// standard retry policy allows.
async fn command(
    client: &SessionHandle,
    lun: Lun,
    cdb: Cdb,
    alloc_len: u32,
    name: &'static str,
) -> Result<Bytes, InspectError> {
    let n = lun.number().unwrap_or(lun.raw());
    let transfer = match alloc_len {
        0 => Transfer::None,
        len => Transfer::Read(BytesMut::zeroed(len as usize)),
    };
    let done = client
        .command(Command::new(lun, cdb.padded(), transfer))
        .await
        .map_err(|source| InspectError::Session {
            command: name,
            lun: n,
            source,
        })?;
    if done.response != 0 {
        return Err(InspectError::Response {
            command: name,
            lun: n,
            response: done.response,
        });
    }
    match done.status {
        ScsiStatus::GOOD => Ok(done.data.freeze()),
        status => Err(InspectError::Scsi {
            command: name,
            lun: n,
            status,
            sense: done.sense,
        }),
    }
}
