//! What `sanshim ls` and `discover --luns` report about a logical unit, and what a disk and
//! multipath learn before and while they carry I/O: the SPC/SBC identification and capacity
//! commands (INQUIRY and its VPD pages, READ CAPACITY, MODE SENSE, REPORT LUNS, REPORT TARGET
//! PORT GROUPS), run on a live session through its [`SessionHandle`], beside any other
//! traffic. UNIT ATTENTION and busy statuses are retried by the session
//! ([`crate::scsi::RetryPolicy`]).

use bytes::{Bytes, BytesMut};
use tracing::debug;

use crate::scsi::{
    AccessState, BlockDeviceCharacteristics, BlockLimits, Cdb, Designator, DeviceIdentification,
    LogicalBlockProvisioning, ModeSense10, ParseError, PeripheralDeviceType, PeripheralQualifier,
    ReadCapacity10, ReadCapacity16, ReportLuns, Sense, StandardInquiry, SupportedVpdPages,
    TargetPortGroup, TargetPortGroups, Tpgs, UnitSerialNumber, VpdPage,
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
    /// Asymmetric logical unit access, when INQUIRY reports TPGS other than 0.
    pub alua: Option<AluaReport>,
}

impl LunReport {
    /// The designator that identifies the logical unit (NAA > EUI-64 > SCSI name > T10).
    pub fn identity(&self) -> Option<&Designator> {
        self.identification
            .as_ref()
            .and_then(DeviceIdentification::lu_identity)
    }
}

/// What ALUA says about the path a [`LunReport`] was read through.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AluaReport {
    /// TPGS of standard INQUIRY: implicit and/or explicit ALUA.
    pub tpgs: Tpgs,
    /// The relative target port this session uses (VPD 0x83), when the target names it.
    pub relative_target_port: Option<u16>,
    /// The target port group of that port (VPD 0x83), when the target names it.
    pub target_port_group: Option<u16>,
    /// The target port groups (REPORT TARGET PORT GROUPS); `None` when the command failed
    /// or its answer could not be decoded.
    pub groups: Option<TargetPortGroups>,
}

impl AluaReport {
    /// The group of this path: the one VPD 0x83 names, else the one listing this path's
    /// relative target port.
    pub fn path_group(&self) -> Option<&TargetPortGroup> {
        let groups = self.groups.as_ref()?;
        match self.target_port_group {
            Some(id) => groups.group(id),
            None => groups.group_of_port(self.relative_target_port?),
        }
    }

    /// The access state of this path ([`AluaReport::path_group`]).
    pub fn state(&self) -> Option<AccessState> {
        self.path_group().map(|g| g.state)
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

/// The disks (direct-access logical units, connected) the target presents: REPORT LUNS, then
/// a standard INQUIRY of each, at most `limit` of them, so a controller LUN 0 or an enclosure
/// is not mistaken for a disk. A LUN whose INQUIRY fails is left out.
///
/// # Errors
/// [`InspectError`] when REPORT LUNS fails or its data is malformed.
pub async fn disk_luns(client: &SessionHandle, limit: usize) -> Result<Vec<Lun>, InspectError> {
    let mut disks = Vec::new();
    for lun in report_luns(client).await?.into_iter().take(limit) {
        let Ok(data) = command(client, lun, Cdb::inquiry(36), 36, "INQUIRY").await else {
            continue;
        };
        if StandardInquiry::parse(&data).is_ok_and(|inq| {
            inq.qualifier == PeripheralQualifier::CONNECTED
                && inq.device_type == PeripheralDeviceType::DIRECT_ACCESS
        }) {
            disks.push(lun);
        }
    }
    Ok(disks)
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
    let alua = match inquiry.tpgs.supported() {
        true => Some(alua(client, lun, inquiry.tpgs, identification.as_ref()).await),
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
        alua,
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

/// Reads the target port groups of `lun` with REPORT TARGET PORT GROUPS (length-only header;
/// [`TargetPortGroups`] says why), asking once more, with the length the target names, when
/// the first answer is cut short.
///
/// Multipath calls this on a live session to learn new access states after a UNIT ATTENTION
/// ASYMMETRIC ACCESS STATE CHANGED (0x2A/0x06), or a NOT READY with 0x04/0x0A (asymmetric
/// access state transition), 0x04/0x0B (target port in standby) or 0x04/0x0C (target port
/// unavailable). Targets answer it in every access state.
///
/// # Errors
/// [`InspectError`] when the command fails (a target without ALUA answers ILLEGAL REQUEST)
/// or its data is malformed or still cut short.
pub async fn report_target_port_groups(
    client: &SessionHandle,
    lun: Lun,
) -> Result<TargetPortGroups, InspectError> {
    const NAME: &str = "REPORT TARGET PORT GROUPS";
    let n = lun.number().unwrap_or(lun.raw());
    let rtpg = |alloc| {
        command(
            client,
            lun,
            Cdb::report_target_port_groups(alloc),
            alloc,
            NAME,
        )
    };
    let first = TargetPortGroups::parse(&rtpg(RTPG_ALLOCATION).await?);
    let retry = match &first {
        Err(e) => retry_allocation(RTPG_ALLOCATION, e),
        Ok(_) => None,
    };
    let parsed = match retry {
        Some(alloc) => {
            debug!(lun = n, alloc, "{NAME} answer cut short; asking again");
            TargetPortGroups::parse(&rtpg(alloc).await?)
        }
        None => first,
    };
    parsed.map_err(|source| InspectError::Parse {
        command: NAME,
        lun: n,
        source,
    })
}

/// First allocation length of REPORT TARGET PORT GROUPS: room for dozens of groups.
const RTPG_ALLOCATION: u32 = 4096;
/// Largest allocation length a retry asks for, whatever a target declares.
const MAX_RTPG_ALLOCATION: u32 = 1 << 20;

/// The allocation length to ask again with after `error` answered an allocation of `alloc`:
/// the one a cut-short answer names, bounded; `None` when asking again cannot help.
fn retry_allocation(alloc: u32, error: &ParseError) -> Option<u32> {
    match *error {
        ParseError::Truncated { need, .. } => {
            let next = u32::try_from(need)
                .unwrap_or(u32::MAX)
                .min(MAX_RTPG_ALLOCATION);
            (next > alloc).then_some(next)
        }
        _ => None,
    }
}

/// The ALUA part of a report: this path's port and group from VPD 0x83, and the groups.
async fn alua(
    client: &SessionHandle,
    lun: Lun,
    tpgs: Tpgs,
    identification: Option<&DeviceIdentification>,
) -> AluaReport {
    let groups = match report_target_port_groups(client, lun).await {
        Ok(groups) => Some(groups),
        Err(e) => {
            debug!(error = %e, "TPGS is set but the target port groups are not available");
            None
        }
    };
    AluaReport {
        tpgs,
        relative_target_port: identification.and_then(DeviceIdentification::relative_target_port),
        target_port_group: identification.and_then(DeviceIdentification::target_port_group),
        groups,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::SupportedStates;

    fn group(id: u16, state: AccessState, ports: &[u16]) -> TargetPortGroup {
        TargetPortGroup {
            id,
            state,
            preferred: false,
            supported: SupportedStates(0x0f),
            status_code: 0,
            vendor: 0,
            relative_target_ports: ports.to_vec(),
        }
    }

    fn report(port: Option<u16>, group_id: Option<u16>) -> AluaReport {
        AluaReport {
            tpgs: Tpgs(1),
            relative_target_port: port,
            target_port_group: group_id,
            groups: Some(TargetPortGroups {
                groups: vec![
                    group(1, AccessState::ACTIVE_OPTIMIZED, &[1]),
                    group(2, AccessState::STANDBY, &[2, 3]),
                ],
                implicit_transition_time: None,
            }),
        }
    }

    #[test]
    fn the_path_group_is_found_by_group_then_by_port() {
        assert_eq!(report(Some(1), Some(2)).state(), Some(AccessState::STANDBY));
        assert_eq!(report(Some(3), None).state(), Some(AccessState::STANDBY));
        assert_eq!(report(Some(1), None).path_group().map(|g| g.id), Some(1));
        // A group or port the groups do not list, or nothing named at all.
        assert_eq!(report(None, Some(9)).state(), None);
        assert_eq!(report(Some(9), None).state(), None);
        assert_eq!(report(None, None).state(), None);
        let failed = AluaReport {
            groups: None,
            ..report(Some(1), Some(1))
        };
        assert_eq!(failed.state(), None);
    }

    #[test]
    fn a_cut_short_answer_is_asked_again_once_with_a_bounded_length() {
        let cut = |need| ParseError::Truncated {
            what: "REPORT TARGET PORT GROUPS data",
            need,
            have: 4096,
        };
        assert_eq!(retry_allocation(4096, &cut(5000)), Some(5000));
        assert_eq!(retry_allocation(4096, &cut(usize::MAX)), Some(1 << 20));
        // Asking for what was already asked cannot help.
        assert_eq!(retry_allocation(4096, &cut(4096)), None);
        assert_eq!(retry_allocation(1 << 20, &cut(1 << 21)), None);
        let invalid = ParseError::Invalid {
            what: "REPORT TARGET PORT GROUPS data",
            reason: "FORMAT TYPE is reserved",
        };
        assert_eq!(retry_allocation(4096, &invalid), None);
    }
}
