//! Serving a multipath device over NBD until told to stop — what `export` and `boot` share:
//! listeners (their URIs on stdout), the optional kernel attach of /dev/nbdN, the control
//! socket `sanshim status` reads, SIGUSR1 status logs, and the orderly stop on SIGINT/SIGTERM
//! (detach, drain the server, SYNCHRONIZE CACHE, log out).

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::anyhow;
use sanshim_blockdev::BlockDevice;
use sanshim_initiator::disk::DiskOptions;
use sanshim_mpath::Multipath;
use sanshim_nbd::kernel::{self, AttachError, AttachOptions};
use sanshim_nbd::{Config, Export, ListenAddr, Server};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::status::{self, RUN_DIR};
use crate::exit::{self, Failure};

/// What to serve, decided before the device is opened.
pub struct ServePlan {
    /// The export's name.
    pub name: String,
    /// Its NBD description.
    pub description: String,
    /// Where to listen.
    pub listen: Vec<ListenAddr>,
    /// Refuse writes.
    pub read_only: bool,
    /// The kernel device to attach, if any.
    pub attach: Option<PathBuf>,
    /// How to attach it.
    pub attach_options: AttachOptions,
    /// Take over the device if its previous server died (`kernel::reattach`).
    pub reattach: bool,
    /// The LU's identity, recorded next to the control socket while the device is attached
    /// (`/run/sanshim/nbdN.lu`), so that a later reattach can refuse a device that was
    /// serving another LU of the same size: its page cache holds that LU's blocks.
    pub identity: String,
    /// The control socket for `sanshim status`.
    pub control: PathBuf,
    /// The session settings (reported by `status`).
    pub options: DiskOptions,
}

/// SIGINT and SIGTERM; SIGUSR1.
struct Signals {
    int: Signal,
    term: Signal,
    usr1: Signal,
}

impl Signals {
    fn new() -> Result<Signals, Failure> {
        let install = |kind| {
            signal(kind).map_err(|e| Failure::from(anyhow!("cannot install a signal handler: {e}")))
        };
        Ok(Signals {
            int: install(SignalKind::interrupt())?,
            term: install(SignalKind::terminate())?,
            usr1: install(SignalKind::user_defined1())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// Serves until a signal, then detaches and drains.
pub async fn serve(plan: &ServePlan, disk: &Arc<Multipath>) -> Result<(), Failure> {
    let export = Export {
        name: plan.name.clone(),
        description: plan.description.clone(),
        device: Arc::clone(disk),
        read_only: plan.read_only,
    };
    let server = Server::new(Config::default(), vec![export]).map_err(|e| anyhow!(e))?;
    let mut signals = Signals::new()?;
    let mut tasks = JoinSet::new();
    let mut uris = Vec::new();
    for addr in &plan.listen {
        let listener = match addr.bind().await {
            Ok(l) => l,
            Err(e) => {
                drain(&server, &mut tasks).await;
                return Err(Failure::from(anyhow!("cannot listen on {addr}: {e}")));
            }
        };
        uris.push(listener.uri(&plan.name));
        let server = server.clone();
        tasks.spawn(async move { server.serve(listener).await });
    }
    let attachment = match &plan.attach {
        None => None,
        Some(device) => {
            if plan.reattach {
                if let Err(e) = check_recorded(device, &plan.identity) {
                    drain(&server, &mut tasks).await;
                    return Err(e);
                }
            }
            let attached = if plan.reattach {
                kernel::reattach(&server, &plan.name, device, &plan.attach_options).await
            } else {
                kernel::attach(&server, &plan.name, device, &plan.attach_options).await
            };
            match attached {
                Ok(a) => {
                    info!(device = %device.display(), method = ?a.method(),
                          reattached = a.reattached(), "kernel device attached");
                    record(device, Some(&plan.identity));
                    Some(a)
                }
                Err(e) => {
                    drain(&server, &mut tasks).await;
                    return Err(attach_failure(e));
                }
            }
        }
    };
    for uri in &uris {
        println!("{uri}");
    }
    info!(
        export = plan.name,
        read_only = plan.read_only,
        "serving; SIGINT or SIGTERM stops"
    );
    let report = {
        let (name, device, options) = (plan.name.clone(), Arc::clone(disk), plan.options);
        move || {
            status::document(&status::Status {
                name: &name,
                device: &device,
                options: &options,
            })
        }
    };
    let report: Arc<dyn Fn() -> serde_json::Value + Send + Sync> = Arc::new(report);
    let control = match status::serve(plan.control.clone(), Arc::clone(&report)) {
        Ok(task) => Some(task),
        Err(e) => {
            warn!(path = %plan.control.display(), error = %e, "no control socket: `sanshim status` will not reach this export");
            None
        }
    };
    loop {
        tokio::select! {
            _ = signals.int.recv() => break,
            _ = signals.term.recv() => break,
            _ = signals.usr1.recv() => status::log(&report()),
        }
    }
    if let Some(task) = control {
        task.abort();
        // Its report holds the device: wait until it is gone, or the logout on exit would
        // find the device still in use.
        let _ = task.await;
        let _ = std::fs::remove_file(&plan.control);
    }
    info!("stopping: detaching, draining in-flight requests");
    let stop = async {
        let detached = match attachment {
            Some(a) => {
                let device = a.device().to_owned();
                let detached = a.detach().await.map_err(attach_failure);
                if detached.is_ok() {
                    record(&device, None);
                }
                detached
            }
            None => Ok(()),
        };
        drain(&server, &mut tasks).await;
        detached
    };
    tokio::select! {
        r = stop => r,
        () = signals.recv() => Err(Failure::from(anyhow!("second signal: stopped without draining"))),
    }
}

async fn drain(server: &Server<Multipath>, tasks: &mut JoinSet<()>) {
    server.shutdown();
    while tasks.join_next().await.is_some() {}
}

/// Flushes the device's cache (unless read-only) and logs out.
pub async fn close(disk: Arc<Multipath>) -> Result<(), Failure> {
    let scsi = |e| Failure::new(exit::SCSI, anyhow!("SYNCHRONIZE CACHE on exit failed: {e}"));
    match Arc::try_unwrap(disk) {
        Ok(disk) => disk.close().await.map_err(scsi)?,
        // A kernel connection that did not end on detach still holds the device: flush, and
        // let the session end with the process (the target sees the connection close).
        Err(disk) => {
            warn!("the device is still in use: exiting without a logout");
            if !disk.geometry().read_only {
                disk.flush().await.map_err(scsi)?;
            }
        }
    }
    info!("flushed and logged out");
    Ok(())
}

/// Where the identity of the LU a device serves is recorded: `/run/sanshim/nbdN.lu`.
pub fn record_path(device: &Path) -> PathBuf {
    let name = device
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "nbd".into());
    Path::new(RUN_DIR).join(format!("{name}.lu"))
}

/// The identity recorded for `device`, if any.
pub fn recorded(device: &Path) -> Option<String> {
    std::fs::read_to_string(record_path(device))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Records (or, with `None`, forgets) the LU `device` serves; failures are only logged.
fn record(device: &Path, identity: Option<&str>) {
    let path = record_path(device);
    let result = match identity {
        Some(id) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(RUN_DIR)
            .and_then(|()| std::fs::write(&path, format!("{id}\n"))),
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        },
    };
    if let Err(e) = result {
        warn!(path = %path.display(), error = %e, "cannot record which LU the device serves; a later --reattach cannot check it");
    }
}

/// Refuses to reattach `device` to LU `identity` when it was serving another one.
fn check_recorded(device: &Path, identity: &str) -> Result<(), Failure> {
    match recorded(device) {
        Some(was) if was != identity => Err(Failure::new(
            exit::OTHER,
            anyhow!(
                "{} was serving LU {was}, not this LU {identity}: refusing to reattach it \
                 (its page cache and any filesystem on it belong to the other LU; detach it \
                 with nbd-client -d first)",
                device.display()
            ),
        )),
        Some(_) => Ok(()),
        None => {
            warn!(device = %device.display(), "no record of which LU the device served; reattaching on size alone");
            Ok(())
        }
    }
}

fn attach_failure(e: AttachError) -> Failure {
    match e {
        AttachError::InUse(_) => Failure::new(
            exit::OTHER,
            anyhow!(
                "{e} (detach it first, e.g. nbd-client -d DEVICE, or give --reattach to take \
                 over a device whose sanshim died)"
            ),
        ),
        other => Failure::new(exit::OTHER, anyhow!(other)),
    }
}

/// `unix:/run/sanshim/NAME.sock`, creating /run/sanshim (mode 0700) if needed.
pub fn default_listener(name: &str) -> Result<ListenAddr, Failure> {
    let dir = PathBuf::from(RUN_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| anyhow!("cannot create {RUN_DIR}: {e} (or give --listen)"))?;
    Ok(ListenAddr::Unix(
        dir.join(format!("{}.sock", name.replace('/', "_"))),
    ))
}
