//! Captures what real NBD clients send, for the fuzz corpora (`scripts/fuzz-seed` runs it):
//! nbdinfo, qemu-img, qemu-io and nbdcopy talk to this crate's server through a recording
//! relay, and each connection's client bytes are cut into an `nbd_handshake` seed (client
//! flags and options, up to the one that starts transmission) and an `nbd_request` seed (a
//! byte saying whether structured replies were negotiated, then requests and write payloads).
//!
//! ```text
//! nbd_seed OUT_DIR
//! ```
//!
//! The export is named `disk` and is 1 MiB of 512-byte blocks, like the one of
//! `sanshim_nbd::fuzzing`, so captured requests stay in bounds when replayed.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use sanshim_blockdev::MemDisk;
use sanshim_nbd::wire::{Command, OptionCode, OptionHeader, Request};
use sanshim_nbd::{Config, Export, ListenAddr, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SEED_MAX: usize = 16 * 1024;
/// Client flags (4 bytes) come before the first option.
const FLAGS_LEN: usize = 4;

type Captures = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let out: PathBuf = std::env::args()
        .nth(1)
        .ok_or("usage: nbd_seed OUT_DIR")?
        .into();
    let disk = Arc::new(MemDisk::new(512, 2048)?);
    let export = Export {
        name: "disk".to_owned(),
        description: "fuzz seed disk".to_owned(),
        device: disk,
        read_only: false,
    };
    let server = Server::new(Config::default(), vec![export])?;
    let listener = "tcp:127.0.0.1:0".parse::<ListenAddr>()?.bind().await?;
    let ListenAddr::Tcp { port, .. } = listener.local_addr() else {
        return Err("not a TCP listener".into());
    };
    let upstream = format!("127.0.0.1:{port}");
    tokio::spawn(async move { server.serve(listener).await });
    let relay = TcpListener::bind("127.0.0.1:0").await?;
    let uri = format!("nbd://{}/disk", relay.local_addr()?);
    let captures: Captures = Arc::default();
    tokio::spawn(relay_all(relay, upstream, Arc::clone(&captures)));
    let dir = std::env::temp_dir().join(format!("sanshim-nbd-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let small = dir.join("small.raw");
    std::fs::write(
        &small,
        (0..8192u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>(),
    )?;
    let copy = dir.join("copy.raw");
    for args in clients(&uri, &small, &copy) {
        let status = tokio::process::Command::new(args[0])
            .args(&args[1..])
            .stdout(Stdio::null())
            .status()
            .await?;
        if !status.success() {
            return Err(format!("{args:?}: {status}").into());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let captures: Vec<Vec<u8>> = captures
        .lock()
        .map_err(|_| "poisoned")?
        .iter()
        .filter_map(|c| c.lock().ok().map(|c| c.clone()))
        .collect();
    write_seeds(&out, &captures)
}

fn clients(uri: &str, small: &Path, copy: &Path) -> Vec<Vec<&'static str>> {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let uri = leak(uri.to_owned());
    let small = leak(small.display().to_string());
    let copy = leak(copy.display().to_string());
    vec![
        vec!["nbdinfo", uri],
        vec!["nbdinfo", "--list", uri],
        vec!["nbdinfo", "--size", uri],
        vec!["qemu-img", "info", "-f", "raw", uri],
        vec![
            "qemu-io",
            "-f",
            "raw",
            "-c",
            "write -P 0x5a 4096 4096",
            "-c",
            "write -z 8192 65536",
            "-c",
            "discard 131072 65536",
            "-c",
            "read 0 4096",
            "-c",
            "flush",
            uri,
        ],
        vec!["nbdcopy", small, uri],
        vec!["qemu-img", "convert", "-f", "raw", "-O", "raw", uri, copy],
    ]
}

async fn relay_all(listener: TcpListener, upstream: String, captures: Captures) {
    while let Ok((client, _)) = listener.accept().await {
        let capture = Arc::new(Mutex::new(Vec::new()));
        if let Ok(mut list) = captures.lock() {
            list.push(Arc::clone(&capture));
        }
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                return;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let up = async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = cr.read(&mut buf).await {
                    let bytes = buf.get(..n).unwrap_or_default();
                    if let Ok(mut c) = capture.lock() {
                        c.extend_from_slice(bytes);
                    }
                    if sw.write_all(bytes).await.is_err() {
                        break;
                    }
                }
                let _ = sw.shutdown().await;
            };
            let down = async move {
                let _ = tokio::io::copy(&mut sr, &mut cw).await;
                let _ = cw.shutdown().await;
            };
            tokio::join!(up, down);
        });
    }
}

/// Splits each connection's client bytes into its handshake and its requests.
fn write_seeds(out: &Path, captures: &[Vec<u8>]) -> Result<(), Box<dyn Error>> {
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
    for capture in captures {
        let (handshake_len, structured) = handshake_len(capture);
        let handshake = capture.get(..handshake_len).unwrap_or_default();
        seeds.push(("nbd_handshake", handshake.to_vec()));
        let requests = capture.get(handshake_len..).unwrap_or_default();
        let cut = requests_prefix(requests);
        if cut > 0 {
            let mut seed = vec![u8::from(structured)];
            seed.extend_from_slice(&requests[..cut]);
            seeds.push(("nbd_request", seed));
        }
    }
    let mut written: Vec<(&str, Vec<u8>)> = Vec::new();
    for (target, seed) in seeds {
        if seed.is_empty() || written.contains(&(target, seed.clone())) {
            continue;
        }
        let n = written.iter().filter(|(t, _)| *t == target).count();
        let dir = out.join(target);
        std::fs::create_dir_all(&dir)?;
        let name = format!("client-{n:03}");
        std::fs::write(dir.join(&name), &seed)?;
        println!("{target}/{name} {} bytes", seed.len());
        written.push((target, seed));
    }
    Ok(())
}

/// The length of the handshake (through `NBD_OPT_GO` or `NBD_OPT_EXPORT_NAME`, or all of it)
/// and whether the client asked for structured replies.
fn handshake_len(capture: &[u8]) -> (usize, bool) {
    let mut at = FLAGS_LEN;
    let mut structured = false;
    while let Some(Ok((option, len))) = capture.get(at..).map(OptionHeader::parse) {
        at += OptionHeader::LEN + len as usize;
        structured |= option == OptionCode::STRUCTURED_REPLY;
        if matches!(option, OptionCode::GO | OptionCode::EXPORT_NAME) {
            break;
        }
    }
    (at.min(capture.len()), structured)
}

/// The longest prefix of whole requests (with their write payloads) within [`SEED_MAX`].
fn requests_prefix(requests: &[u8]) -> usize {
    let mut at = 0;
    while let Some(Ok(request)) = requests.get(at..).map(Request::parse) {
        let payload = if request.command == Command::WRITE {
            request.length as usize
        } else {
            0
        };
        let end = at + Request::LEN + payload;
        if end > SEED_MAX.min(requests.len()) {
            break;
        }
        at = end;
    }
    at
}
