//! `sanshim export URL... [--listen ADDR]... [--name NAME] [--read-only] [--attach /dev/nbdN]
//! [--policy P]`: log in to a LUN and serve it over NBD until SIGINT/SIGTERM (shared/DESIGN.md
//! "Command line contract").
//!
//! ```text
//!  URL 1 ── ScsiDisk ─┐
//!  URL 2 ── ScsiDisk ─┼─► Multipath ──► Export ──► Server ──► listeners (URI lines on stdout)
//!  ...               ─┘                               └──► kernel::attach (--attach /dev/nbdN)
//!  SIGUSR1: per-path state and counters to the log
//!  SIGINT/SIGTERM: detach ► drain the server ► SYNCHRONIZE CACHE ► log out ► exit 0
//! ```
//!
//! Several URLs are paths to one LU: each is opened and its identity (INQUIRY VPD 0x83) must
//! match the first one's, or nothing is served; all of them carry I/O (`--policy`), and a
//! failed path fails over to the others (`sanshim_mpath`). A write-protected LUN is exported
//! read-only whatever `--read-only` says. A second signal during the drain gives up on it and
//! exits 1 (after still trying to log out).
//!
//! `--reattach` takes over a /dev/nbdN whose previous sanshim died (`kill -9`, a crash, an
//! upgrade that did not detach): the kernel held its I/O for `--dead-conn-timeout` seconds,
//! and gets fresh connections to this export instead; a device that is not connected is
//! attached as usual.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use sanshim_blockdev::BlockDevice;
use sanshim_initiator::url::IscsiUrl;
use sanshim_nbd::ListenAddr;
use sanshim_nbd::kernel::AttachOptions;
use tracing::warn;

use super::serve::{ServePlan, close, default_listener, serve};
use super::session::{Context, DiskArgs, PathArgs, parse_url};
use super::status;
use crate::cli::Global;
use crate::exit::Failure;

/// Arguments of `sanshim export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// `iscsi://[USER[%SECRET]@]HOST[:PORT]/TARGET-IQN/LUN`; several URLs are paths to the same
    /// LU (checked by identity), all carrying I/O.
    #[arg(required = true, value_name = "URL")]
    pub urls: Vec<String>,
    /// Where to serve: `unix:PATH` or `tcp:[HOST:]PORT` (loopback unless HOST is given);
    /// repeatable. Default: `unix:/run/sanshim/NAME.sock`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<ListenAddr>,
    /// Export name clients ask for. Default: the last component of the target name (after
    /// its last ':') and the LUN, as in `disk1-lun1`, or `sanshim` when that component holds
    /// characters other than letters, digits, '.', '-' and '_'.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Refuse writes (a write-protected LUN is always exported read-only).
    #[arg(long)]
    pub read_only: bool,
    /// Also connect the kernel's /dev/nbdN to the export (no nbd-client needed); refused
    /// when the device is in use (see --reattach). Detached on exit.
    #[arg(long, value_name = "/dev/nbdN")]
    pub attach: Option<PathBuf>,
    /// With --attach: when the device is still connected after its sanshim died, reconnect it
    /// to this export (same size and block size required) instead of refusing it; the I/O the
    /// kernel held resumes. A device that is not connected is attached as usual.
    #[arg(long, requires = "attach")]
    pub reattach: bool,
    /// With --attach: how long the kernel holds I/O after the connections die (a crash, a
    /// restart) before failing it with I/O errors; the time a --reattach has to come.
    #[arg(long, value_name = "SECS", default_value_t = 120, requires = "attach",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub dead_conn_timeout: u64,
    /// The control socket `sanshim status` reads (default /run/sanshim/NAME.ctl).
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Multipath settings.
    #[command(flatten)]
    pub paths: PathArgs,
    /// Session and command settings.
    #[command(flatten)]
    pub disk: DiskArgs,
}

/// Runs `sanshim export`.
pub fn run(global: &Global, args: ExportArgs) -> Result<ExitCode, Failure> {
    let ctx = Context::new(global)?;
    let mut urls = Vec::new();
    for s in &args.urls {
        urls.push(parse_url(s, false)?.0);
    }
    let name = match (&args.name, urls.first()) {
        (Some(n), _) => n.clone(),
        (None, Some(url)) => default_name(url),
        (None, None) => "sanshim".to_owned(),
    };
    let listen = if args.listen.is_empty() {
        vec![default_listener(&name)?]
    } else {
        args.listen.clone()
    };
    let options = args.disk.options(args.read_only);
    let config = args.paths.config(args.disk.replacement_timeout);
    let rt = super::runtime(global)?;
    rt.block_on(async {
        let disk = Arc::new(
            ctx.open_paths(&args.urls, &urls, &options, config, "export")
                .await?,
        );
        let read_only = disk.geometry().read_only;
        if read_only && !args.read_only {
            warn!("the LUN is write-protected: exporting it read-only");
        }
        let plan = ServePlan {
            control: args
                .control
                .clone()
                .unwrap_or_else(|| status::control_path(&name)),
            description: format!("sanshim export {name}"),
            name,
            listen,
            read_only,
            attach: args.attach.clone(),
            attach_options: AttachOptions {
                dead_conn_timeout: Duration::from_secs(args.dead_conn_timeout),
                ..AttachOptions::default()
            },
            reattach: args.reattach,
            identity: disk.identity().to_owned(),
            options,
        };
        let served = serve(&plan, &disk).await;
        let closed = close(disk).await;
        served.and(closed)
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The export name when `--name` is not given: see [`ExportArgs::name`].
fn default_name(url: &IscsiUrl) -> String {
    let target = url.target().as_str();
    let last = target.rsplit(':').next().unwrap_or(target);
    let clean = !last.is_empty()
        && last
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if clean {
        format!("{last}-lun{}", url.lun())
    } else {
        "sanshim".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_default_name() {
        let url = |s: &str| IscsiUrl::parse(s).unwrap();
        assert_eq!(
            default_name(&url("iscsi://h/iqn.2026-11.local.demo:disk1/1")),
            "disk1-lun1"
        );
        assert_eq!(
            default_name(&url("iscsi://h/iqn.2026-11.local.demo/3")),
            "iqn.2026-11.local.demo-lun3"
        );
        assert_eq!(
            default_name(&url("iscsi://h/iqn.2026-11.local.demo:/0")),
            "sanshim"
        );
    }
}
