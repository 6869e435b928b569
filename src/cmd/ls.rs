//! `sanshim ls URL... [--json]`: what each LUN is — device type, vendor/product/revision,
//! capacity, block size, identity (VPD 0x83), serial (VPD 0x80), write-protect, thin
//! provisioning, Block Limits and ALUA (the path's target port group and its access state). A
//! URL without `/LUN` lists every LUN of the target.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Args;
use sanshim_initiator::inspect::{self, AluaReport, InspectError, LunReport};
use sanshim_initiator::login::Established;
use sanshim_initiator::scsi::{Designator, TargetPortGroup};
use sanshim_initiator::transport::SessionHandle;
use sanshim_initiator::wire::Lun;
use serde_json::{Value, json};

use super::session::{Context, parse_url, redact};
use crate::cli::Global;
use crate::exit::{self, Failure};

/// Arguments of `sanshim ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// `iscsi://[USER[%SECRET]@]HOST[:PORT]/TARGET-IQN[/LUN]`; without LUN, every LUN.
    #[arg(required = true, value_name = "URL")]
    pub urls: Vec<String>,
    /// Print one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs `sanshim ls`.
pub fn run(global: &Global, args: LsArgs) -> Result<ExitCode, Failure> {
    let ctx = Context::new(global)?;
    let rt = super::runtime(global)?;
    let mut luns = Vec::new();
    for (path, s) in args.urls.iter().enumerate() {
        let (url, wanted) = parse_url(s, true)?;
        let session = rt.block_on(ctx.open(&url, path as u32))?;
        let listed = rt.block_on(list(&session, wanted, &redact(s)));
        rt.block_on(session.close());
        luns.extend(listed?);
    }
    if args.json {
        println!("{}", json!({ "luns": luns }));
    } else {
        print!("{}", human(&luns));
    }
    Ok(ExitCode::SUCCESS)
}

/// Inspects LUN `wanted` (every LUN when `None`) on a session; `shown` is the URL for
/// messages.
async fn list(
    session: &SessionHandle,
    wanted: Option<u64>,
    shown: &str,
) -> Result<Vec<Value>, Failure> {
    let numbers: Vec<Lun> = match wanted {
        Some(n) => vec![Lun::from_number(n)],
        None => inspect::report_luns(session)
            .await
            .map_err(inspect_failure)?,
    };
    let mut luns = Vec::new();
    for lun in numbers {
        let report = inspect::inspect(session, lun)
            .await
            .map_err(inspect_failure)?;
        let url = match wanted {
            Some(_) => shown.to_owned(),
            None => format!("{}/{}", shown.trim_end_matches('/'), report.lun),
        };
        luns.push(lun_json(&url, session, &report));
    }
    Ok(luns)
}

/// Maps an inspection failure to its exit code.
pub fn inspect_failure(e: InspectError) -> Failure {
    match e {
        InspectError::Scsi { .. } => Failure::new(exit::SCSI, anyhow!(e)),
        other => Failure::new(exit::OTHER, anyhow!(other)),
    }
}

/// The JSON object of one LUN (the `ls --json` schema, also used by `discover --luns`).
pub fn lun_json(url: &str, session: &SessionHandle, r: &LunReport) -> Value {
    let established: &Established = session.established();
    let (target, portal) = (session.target(), session.portal().to_string());
    let n = &established.negotiated;
    let capacity = r.capacity;
    let limits = r.block_limits.as_ref().map(|b| {
        json!({
            "max_transfer_blocks": b.max_transfer_length,
            "optimal_granularity_blocks": b.optimal_transfer_granularity,
            "optimal_transfer_blocks": b.optimal_transfer_length,
            "max_unmap_blocks": b.max_unmap_lba_count,
            "max_unmap_descriptors": b.max_unmap_descriptor_count,
            "unmap_granularity_blocks": b.unmap_granularity,
            "max_write_same_blocks": b.max_write_same_length,
        })
    });
    let provisioning = r.provisioning.as_ref().map(|p| {
        json!({ "lbpu": p.lbpu, "lbpws": p.lbpws, "lbpws10": p.lbpws10, "lbprz": p.lbprz,
                "type": format!("{:?}", p.provisioning_type) })
    });
    let designators: Vec<Value> = r
        .identification
        .iter()
        .flat_map(|id| id.designators.iter())
        .map(designator_json)
        .collect();
    json!({
        "url": url,
        "target": target,
        "portal": portal,
        "lun": r.lun,
        "device_type": r.inquiry.device_type.0,
        "device_type_name": r.inquiry.device_type.name().unwrap_or("unknown"),
        "vendor": r.inquiry.vendor,
        "product": r.inquiry.product,
        "revision": r.inquiry.revision,
        "removable": r.inquiry.removable,
        "capacity_bytes": capacity.map(|c| c.bytes()),
        "blocks": capacity.map(|c| c.blocks),
        "block_size": capacity.map(|c| c.block_size),
        "physical_block_size": capacity.and_then(|c| c.physical_block_size),
        "identity": r.identity().map(designator_json),
        "designators": designators,
        "serial": r.serial,
        "write_protected": r.write_protected,
        "fua": r.fua,
        "rotation_rate": r.characteristics.as_ref().map(|c| c.rotation_rate),
        "thin_provisioning": capacity.and_then(|c| c.thin_provisioning),
        "block_limits": limits,
        "provisioning": provisioning,
        "alua": r.alua.as_ref().map(alua_json),
        "session": {
            "header_digest": if n.header_digest { "CRC32C" } else { "None" },
            "data_digest": if n.data_digest { "CRC32C" } else { "None" },
            "max_recv_data_segment_length": n.max_recv_data_segment_length,
            "max_xmit_data_segment_length": n.max_xmit_data_segment_length,
            "max_burst_length": n.max_burst_length,
            "first_burst_length": n.first_burst_length,
            "immediate_data": n.immediate_data,
            "initial_r2t": n.initial_r2t,
            "tsih": established.tsih,
            "chap": established.chap_algorithm.map(|a| format!("{a:?}")),
            "mutual_chap": established.target_authenticated,
        },
    })
}

fn designator_json(d: &Designator) -> Value {
    json!({
        "type": format!("{:?}", d.designator_type),
        "association": format!("{:?}", d.association),
        "value": d.render(),
    })
}

/// The `"alua"` object: TPGS, this path's port and group (VPD 0x83) and its state, and every
/// group (`null` when REPORT TARGET PORT GROUPS failed).
fn alua_json(a: &AluaReport) -> Value {
    let groups = a.groups.as_ref();
    json!({
        "implicit": a.tpgs.implicit(),
        "explicit": a.tpgs.explicit(),
        "relative_target_port": a.relative_target_port,
        "target_port_group": a.target_port_group,
        "path_group": a.path_group().map(|g| g.id),
        "state": a.state().map(|s| s.to_string()),
        "implicit_transition_time": groups.and_then(|g| g.implicit_transition_time),
        "groups": groups.map(|g| g.groups.iter().map(group_json).collect::<Vec<_>>()),
    })
}

fn group_json(g: &TargetPortGroup) -> Value {
    json!({
        "id": g.id,
        "state": g.state.to_string(),
        "state_code": g.state.0,
        "preferred": g.preferred,
        "supported": g.supported.states().map(|s| s.to_string()).collect::<Vec<_>>(),
        "status_code": g.status_code,
        "relative_target_ports": g.relative_target_ports,
    })
}

/// `group 1 active/optimized (implicit)`: this path's group and state, and how the target
/// changes states.
fn alua_line(a: &Value) -> String {
    let group = match a["path_group"].as_u64() {
        Some(id) => format!("group {id}"),
        None => "group unknown".into(),
    };
    let state = a["state"].as_str().unwrap_or("state unknown");
    let mode = match (a["implicit"].as_bool(), a["explicit"].as_bool()) {
        (Some(true), Some(true)) => "implicit and explicit",
        (_, Some(true)) => "explicit",
        _ => "implicit",
    };
    format!("{group} {state} ({mode})")
}

/// The human rendering of `ls` (and `discover --luns`) LUN objects.
pub fn human(luns: &[Value]) -> String {
    let mut out = String::new();
    let s = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| "-".into());
    for l in luns {
        let _ = writeln!(out, "{}", s(&l["url"]));
        let _ = writeln!(
            out,
            "  LUN {}: {} ({}), {} {} {}",
            l["lun"],
            s(&l["device_type_name"]),
            l["device_type"],
            s(&l["vendor"]),
            s(&l["product"]),
            s(&l["revision"])
        );
        if l["capacity_bytes"].is_u64() {
            let _ = writeln!(
                out,
                "    capacity     {} bytes ({} blocks of {} bytes)",
                l["capacity_bytes"], l["blocks"], l["block_size"]
            );
        }
        let _ = writeln!(out, "    identity     {}", s(&l["identity"]["value"]));
        let _ = writeln!(out, "    serial       {}", s(&l["serial"]));
        let yes_no = |v: &Value| match v.as_bool() {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown",
        };
        let _ = writeln!(
            out,
            "    write-protect {}   thin-provisioning {}",
            yes_no(&l["write_protected"]),
            yes_no(&l["thin_provisioning"])
        );
        let b = &l["block_limits"];
        if b.is_object() {
            // SBC-4 §6.6.4: zero means the target states no limit.
            let limit = |v: &Value| match v.as_u64() {
                Some(0) | None => "no limit".to_string(),
                Some(n) => format!("{n} blocks"),
            };
            let _ = writeln!(
                out,
                "    block limits max transfer {}, optimal granularity {}, max unmap {}",
                limit(&b["max_transfer_blocks"]),
                limit(&b["optimal_granularity_blocks"]),
                limit(&b["max_unmap_blocks"])
            );
        }
        if l["alua"].is_object() {
            let _ = writeln!(out, "    alua         {}", alua_line(&l["alua"]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alua_line_names_group_state_and_mode() {
        let alua = json!({
            "implicit": true, "explicit": false, "path_group": 1, "state": "active/optimized",
        });
        assert_eq!(alua_line(&alua), "group 1 active/optimized (implicit)");
        let alua = json!({ "implicit": true, "explicit": true, "path_group": null, "state": null });
        assert_eq!(
            alua_line(&alua),
            "group unknown state unknown (implicit and explicit)"
        );
        let lun = json!({ "url": "iscsi://h/t/1", "lun": 1, "alua": {
            "implicit": false, "explicit": true, "path_group": 2, "state": "standby" } });
        let text = human(&[lun]);
        assert!(
            text.contains("\n    alua         group 2 standby (explicit)\n"),
            "{text}"
        );
        assert!(!human(&[json!({ "lun": 1, "alua": null })]).contains("alua"));
    }
}
