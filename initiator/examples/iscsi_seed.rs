//! Captures real iSCSI traffic for the fuzz corpora (`scripts/fuzz-seed` runs it against a
//! tgtd it configured): sessions go through a recording TCP relay to the target, and what
//! the target sent is cut into the seeds of the `login`, `pdu`, `text`, `sendtargets` and
//! `scsi` targets.
//!
//! ```text
//! iscsi_seed HOST:PORT NORMAL_TARGET CHAP_TARGET OUT_DIR
//! ```
//!
//! NORMAL_TARGET takes no authentication; CHAP_TARGET has the accounts of
//! `sanshim_initiator::fuzzing::login` (`fuzz-initiator` incoming, `fuzz-target` outgoing).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sanshim_initiator::inspect;
use sanshim_initiator::login::{ChapConfig, DigestPref, LoginConfig, Secret};
use sanshim_initiator::portal::Portal;
use sanshim_initiator::scsi::Cdb;
use sanshim_initiator::session::{Command, SessionConfig, Transfer};
use sanshim_initiator::transport::{self, LoginPolicy, SessionHandle};
use sanshim_initiator::wire::{Codec, Isid, Lun, Pdu, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const INITIATOR: &str = "iqn.2026-12.org.sanshim:fuzz";
const SEED_MAX: usize = 16 * 1024;

/// One session to capture: its label, the fuzz login settings byte it replays with, and
/// how it logs in.
struct Run {
    label: &'static str,
    settings: u8,
    digests: bool,
    config: LoginConfig,
}

/// The bytes of one relayed connection, each direction.
#[derive(Default)]
struct Capture {
    from_target: Vec<u8>,
    from_initiator: Vec<u8>,
}

type Captures = Arc<Mutex<Vec<Arc<Mutex<Capture>>>>>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, portal, normal, chap, more @ ..] = args.as_slice() else {
        return Err(
            "usage: iscsi_seed OUT_DIR HOST:PORT NORMAL_TARGET CHAP_TARGET [HOST:PORT]...".into(),
        );
    };
    let out = PathBuf::from(out);
    let mut seeds = Seeds::default();
    let runs = runs(normal, chap);
    let discovery = runs.iter().filter(|r| r.config.target_name.is_none());
    let sessions = runs.iter().map(|run| (portal, run)).chain(
        more.iter()
            .flat_map(|p| discovery.clone().map(move |run| (p, run))),
    );
    for (portal, run) in sessions {
        let captures = capture(portal, run).await?;
        for capture in captures {
            let capture = capture.lock().map_err(|_| "poisoned")?;
            seeds.add(run, &capture);
        }
    }
    seeds.write(&out)?;
    Ok(())
}

fn runs(normal: &str, chap: &str) -> Vec<Run> {
    let isid = Isid::random_qualifier(0x00f0_0001);
    let mut plain = LoginConfig::normal(INITIATOR, normal, isid);
    plain.proposal.header_digest = DigestPref::None;
    plain.proposal.data_digest = DigestPref::None;
    let mut digests = LoginConfig::normal(INITIATOR, normal, isid);
    digests.proposal.header_digest = DigestPref::Crc32c;
    digests.proposal.data_digest = DigestPref::Crc32c;
    let one_way = ChapConfig::new("fuzz-initiator", Secret::from("initiator-secret-01"));
    let mut mutual = one_way.clone();
    mutual.mutual = Some(("fuzz-target".to_owned(), Secret::from("target-secret-0123")));
    let mut chap_one_way = LoginConfig::normal(INITIATOR, chap, isid);
    chap_one_way.chap = Some(one_way);
    chap_one_way.proposal = plain.proposal.clone();
    let mut chap_mutual = chap_one_way.clone();
    chap_mutual.chap = Some(mutual);
    let discovery = LoginConfig::discovery(INITIATOR, isid);
    let run = |label, settings: u8, digests, config| Run {
        label,
        settings: 0x80 | settings,
        digests,
        config,
    };
    vec![
        run("plain", 0, false, plain),
        run("digests", 0, true, digests),
        run("chap", 1, false, chap_one_way),
        run("mutual", 2, false, chap_mutual),
        run("discovery", 4, false, discovery),
    ]
}

/// Runs one session through a recording relay and returns what each connection carried.
async fn capture(portal: &str, run: &Run) -> Result<Vec<Arc<Mutex<Capture>>>, Box<dyn Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let relay = Portal::parse(&listener.local_addr()?.to_string())?;
    let captures: Captures = Arc::default();
    let relaying = tokio::spawn(relay_all(
        listener,
        portal.to_owned(),
        Arc::clone(&captures),
    ));
    let handle = transport::open(
        &relay,
        run.config.clone(),
        &LoginPolicy::default(),
        SessionConfig::default(),
    )
    .await?;
    if run.config.target_name.is_some() {
        exercise(&handle).await?;
    } else {
        sanshim_initiator::discovery::send_targets(&handle).await?;
    }
    handle.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    relaying.abort();
    let captures = captures.lock().map_err(|_| "poisoned")?.clone();
    Ok(captures)
}

/// Inspection (INQUIRY, VPD pages, READ CAPACITY, MODE SENSE, REPORT LUNS), a write, a
/// read, a command that fails with sense data and a ping.
async fn exercise(handle: &SessionHandle) -> Result<(), Box<dyn Error>> {
    for lun in inspect::report_luns(handle).await? {
        let _ = inspect::inspect(handle, lun).await;
    }
    let lun = Lun::from_number(1);
    let data = Bytes::from((0..4096u32).map(|i| i as u8).collect::<Vec<u8>>());
    let write = Cdb::write16(8, 8, false).padded();
    handle
        .command(Command::new(lun, write, Transfer::Write(data)))
        .await?;
    let read = Cdb::read16(8, 8).padded();
    let buf = BytesMut::zeroed(4096);
    handle
        .command(Command::new(lun, read, Transfer::Read(buf)))
        .await?;
    // Past the end of the LU: CHECK CONDITION with sense data.
    let beyond = Cdb::read16(1 << 40, 1).padded();
    let buf = BytesMut::zeroed(512);
    let _ = handle
        .command(Command::new(lun, beyond, Transfer::Read(buf)))
        .await;
    let _ = handle.ping(64, Duration::from_secs(5)).await;
    Ok(())
}

async fn relay_all(listener: TcpListener, upstream: String, captures: Captures) {
    while let Ok((client, _)) = listener.accept().await {
        let capture = Arc::new(Mutex::new(Capture::default()));
        if let Ok(mut list) = captures.lock() {
            list.push(Arc::clone(&capture));
        }
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                return;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let up = pump(cr, sw, Arc::clone(&capture), false);
            let down = pump(sr, cw, capture, true);
            tokio::join!(up, down);
        });
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    capture: Arc<Mutex<Capture>>,
    from_target: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        let Some(bytes) = buf.get(..n).filter(|b| !b.is_empty()) else {
            break;
        };
        if let Ok(mut c) = capture.lock() {
            let side = if from_target {
                &mut c.from_target
            } else {
                &mut c.from_initiator
            };
            side.extend_from_slice(bytes);
        }
        if to.write_all(bytes).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// The seeds gathered so far, by fuzz target.
#[derive(Default)]
struct Seeds {
    files: Vec<(&'static str, String, Vec<u8>)>,
}

impl Seeds {
    fn add(&mut self, run: &Run, capture: &Capture) {
        let from_target = frames(&capture.from_target, Role::Initiator, run.digests);
        let from_initiator = frames(&capture.from_initiator, Role::Target, run.digests);
        let responses = login_len(&from_target);
        let requests = login_len(&from_initiator);
        let established = from_target
            .iter()
            .any(|(pdu, _)| matches!(pdu, Pdu::LoginResponse(r) if r.transit && r.nsg.0 == 3));
        if established {
            let mut seed = vec![run.settings];
            seed.extend_from_slice(&capture.from_target[..responses]);
            self.push("login", run.label, seed);
        }
        let digest_bits = if run.digests { 3 } else { 0 };
        for (settings, stream, skip) in [
            (0, &capture.from_target, 0),
            (digest_bits, &capture.from_target, responses),
            (4, &capture.from_initiator, 0),
            (4 | digest_bits, &capture.from_initiator, requests),
        ] {
            let mut seed = vec![settings];
            let cut = pdu_prefix(&stream[skip..], settings);
            seed.extend_from_slice(&stream[skip..skip + cut]);
            self.push("pdu", run.label, seed);
        }
        self.add_payloads(run, &from_target);
        for (pdu, _) in &from_initiator {
            if let Pdu::LoginRequest(r) = pdu {
                self.push("text", run.label, r.data.to_vec());
            }
        }
    }

    fn add_payloads(&mut self, run: &Run, from_target: &[(Pdu, Vec<u8>)]) {
        let mut text = Vec::new();
        for (pdu, _) in from_target {
            match pdu {
                Pdu::LoginResponse(r) => self.push("text", run.label, r.data.to_vec()),
                Pdu::TextResponse(r) => {
                    text.extend_from_slice(&r.data);
                    if !r.cont {
                        self.push("sendtargets", run.label, std::mem::take(&mut text));
                    }
                }
                Pdu::DataIn(d) => self.push("scsi", run.label, d.data.to_vec()),
                Pdu::ScsiResponse(r) if !r.data.is_empty() => {
                    self.push("scsi", run.label, r.data.to_vec());
                    // The sense data without its 2-byte length.
                    self.push(
                        "scsi",
                        run.label,
                        r.data.get(2..).unwrap_or_default().to_vec(),
                    );
                }
                _ => {}
            }
        }
    }

    fn push(&mut self, target: &'static str, label: &str, seed: Vec<u8>) {
        let duplicate = self
            .files
            .iter()
            .any(|(t, _, s)| *t == target && *s == seed);
        if seed.is_empty() || seed.len() > SEED_MAX || duplicate {
            return;
        }
        let n = self.files.iter().filter(|(t, _, _)| *t == target).count();
        self.files
            .push((target, format!("tgtd-{label}-{n:03}"), seed));
    }

    fn write(&self, out: &Path) -> Result<(), Box<dyn Error>> {
        for (target, name, seed) in &self.files {
            let dir = out.join(target);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join(name), seed)?;
            println!("{target}/{name} {} bytes", seed.len());
        }
        Ok(())
    }
}

/// The bytes of the login PDUs at the start of a stream.
fn login_len(frames: &[(Pdu, Vec<u8>)]) -> usize {
    frames
        .iter()
        .take_while(|(pdu, _)| matches!(pdu, Pdu::LoginRequest(_) | Pdu::LoginResponse(_)))
        .map(|(_, raw)| raw.len())
        .sum()
}

/// Decodes a captured stream into PDUs with their raw bytes; login PDUs carry no digests,
/// the full feature phase carries them when `digests`.
fn frames(stream: &[u8], role: Role, digests: bool) -> Vec<(Pdu, Vec<u8>)> {
    let mut codec = Codec::new();
    codec.max_recv_data_segment_length = (1 << 24) - 1;
    let mut buf = BytesMut::from(stream);
    let mut out = Vec::new();
    loop {
        let before = buf.len();
        let Ok(Some(pdu)) = codec.decode_as(&mut buf, role) else {
            break;
        };
        let raw = stream[stream.len() - before..stream.len() - buf.len()].to_vec();
        let last_login = match &pdu {
            Pdu::LoginRequest(r) => r.transit && r.nsg.0 == 3,
            Pdu::LoginResponse(r) => r.transit && r.nsg.0 == 3,
            _ => false,
        };
        if last_login && digests {
            codec.header_digest = true;
            codec.data_digest = true;
        }
        out.push((pdu, raw));
    }
    out
}

/// The longest prefix of whole PDUs within [`SEED_MAX`], as the `pdu` target frames them
/// (`settings` as in `wire::pdu_round_trip`).
fn pdu_prefix(stream: &[u8], settings: u8) -> usize {
    let mut codec = Codec::new();
    codec.header_digest = settings & 1 != 0;
    codec.data_digest = settings & 2 != 0;
    let role = if settings & 4 != 0 {
        Role::Target
    } else {
        Role::Initiator
    };
    let mut buf = BytesMut::from(stream);
    let mut end = 0;
    while let Ok(Some(_)) = codec.decode_as(&mut buf, role) {
        let consumed = stream.len() - buf.len();
        if consumed > SEED_MAX {
            break;
        }
        end = consumed;
    }
    end
}
