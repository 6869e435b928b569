//! A test tool: serves an in-memory disk over NBD and optionally attaches the kernel's
//! `/dev/nbdN` to it with [`sanshim_nbd::kernel::attach`] (no nbd-client involved).
//!
//! ```text
//! memexport [--size BYTES] [--block-size N] [--name NAME] [--listen unix:PATH|tcp:[HOST:]PORT]...
//!           [--attach /dev/nbdN [--reattach]] [--connections N] [--method netlink|ioctl]
//! ```
//!
//! Prints `uri URI` per listener, `attached DEVICE METHOD` and `connections N reattached
//! true|false` on stdout (`--reattach` uses [`sanshim_nbd::kernel::reattach`]), then serves until
//! SIGINT/SIGTERM; on the signal it detaches the device, drains the server and prints
//! `sha256 HEX` of the whole disk, so a test can compare what the kernel wrote with what it
//! reads back. Exit status 1 with a message on stderr when attaching fails (a device in use is
//! refused). Used by the VM test `tests/nbd_vm.rs`; builds statically like `sanshim`.

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;

use sanshim_blockdev::{BlockDevice, MemDisk};
use sanshim_nbd::kernel::{self, AttachOptions, Method};
use sanshim_nbd::{Config, Export, ListenAddr, Server};
use sha2::Digest;
use tokio::signal::unix::{SignalKind, signal};

struct Args {
    size: u64,
    block_size: u32,
    name: String,
    listen: Vec<ListenAddr>,
    attach: Option<PathBuf>,
    reattach: bool,
    connections: usize,
    method: Option<Method>,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut args = Args {
        size: 64 << 20,
        block_size: 512,
        name: "mem".to_owned(),
        listen: Vec::new(),
        attach: None,
        reattach: false,
        connections: 1,
        method: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--size" => args.size = value()?.parse()?,
            "--block-size" => args.block_size = value()?.parse()?,
            "--name" => args.name = value()?,
            "--listen" => args.listen.push(value()?.parse()?),
            "--attach" => args.attach = Some(value()?.into()),
            "--reattach" => args.reattach = true,
            "--connections" => args.connections = value()?.parse()?,
            "--method" => {
                args.method = match value()?.as_str() {
                    "netlink" => Some(Method::Netlink),
                    "ioctl" => Some(Method::Ioctl),
                    other => return Err(format!("unknown method {other:?}").into()),
                }
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memexport: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let blocks = args.size / u64::from(args.block_size);
    let disk = Arc::new(MemDisk::new(args.block_size, blocks)?);
    let export = Export {
        name: args.name.clone(),
        description: "memexport test disk".to_owned(),
        device: Arc::clone(&disk),
        read_only: false,
    };
    let server = Server::new(Config::default(), vec![export])?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut serving = Vec::new();
    for addr in &args.listen {
        let listener = addr.bind().await?;
        println!("uri {}", listener.uri(&args.name));
        let server = server.clone();
        serving.push(tokio::spawn(async move { server.serve(listener).await }));
    }
    let attachment = match &args.attach {
        Some(device) => {
            let options = AttachOptions {
                connections: args.connections,
                method: args.method,
                ..AttachOptions::default()
            };
            let a = if args.reattach {
                kernel::reattach(&server, &args.name, device, &options).await?
            } else {
                kernel::attach(&server, &args.name, device, &options).await?
            };
            println!("attached {} {:?}", a.device().display(), a.method());
            println!(
                "connections {} reattached {}",
                a.connections(),
                a.reattached()
            );
            Some(a)
        }
        None => None,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    if let Some(a) = attachment {
        a.detach().await?;
        println!("detached");
    }
    server.shutdown();
    for task in serving {
        task.await?;
    }
    let data = disk
        .read(0, bytes::BytesMut::zeroed(usize::try_from(args.size)?))
        .await?;
    let hex: String = sha2::Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("sha256 {hex}");
    Ok(())
}
