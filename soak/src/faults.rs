//! The fault scheduler: every one to three seconds one fault on one path (a [`FaultProxy`] in
//! front of tgtd): a cut (now, after N bytes, in the middle of a Data-In), a freeze (in a
//! Data-In, at an R2T), a flipped bit (in Data-In data, in write data, in a header of either
//! direction), or a delay of every PDU; and about once a minute a SIGKILL of tgtd and its
//! restart.
//!
//! A fault that needs traffic to fire (a bit flip, a freeze at the next R2T, ...) is armed on
//! any connection of the path and disarmed if it has not fired within 10 s; only faults that
//! fired are counted, from the proxies' own records. A freeze is held 1-6 s and released (the
//! export's path checker should have failed the path over by then); a delay lasts 2-6 s.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use sanshim_initiator::wire::Opcode;
use sanshim_testbed::{Direction, FaultProxy, ProxyFault};

use crate::rng::Rng;
use crate::tgtd::Tgtd;

/// Fault counts by name.
pub type Counts = BTreeMap<String, u64>;

/// The scheduler's handles and its direct counts (cuts and tgtd kills; armed faults are
/// counted from the proxies at the end).
pub struct Scheduler<'a> {
    proxies: &'a [FaultProxy; 2],
    tgtd: &'a mut Tgtd,
    rng: Rng,
    direct: Counts,
    /// Faults armed that never met their condition.
    pub unfired: Counts,
    /// How long tgtd was gone at each restart.
    pub outages: Vec<Duration>,
    /// Where each fault is written down as it happens (wall-clock time, to read beside the
    /// export's log).
    log: Option<std::fs::File>,
}

impl<'a> Scheduler<'a> {
    /// A scheduler over the two paths' proxies and tgtd.
    pub fn new(
        proxies: &'a [FaultProxy; 2],
        tgtd: &'a mut Tgtd,
        log: &std::path::Path,
    ) -> Scheduler<'a> {
        Scheduler {
            log: std::fs::File::create(log).ok(),
            proxies,
            tgtd,
            rng: Rng::new(0),
            direct: Counts::new(),
            unfired: Counts::new(),
            outages: Vec::new(),
        }
    }

    /// Injects faults, choosing with `rng`, until `deadline` or until `stop` says so; tgtd is killed first after
    /// a quarter of the run (at most half of `kill_every` in), then every 0.75-1.25 times
    /// `kill_every`.
    ///
    /// # Errors
    /// tgtd did not come back after a kill.
    pub fn run(
        &mut self,
        rng: Rng,
        deadline: Instant,
        kill_every: Duration,
        stop: impl Fn() -> bool,
    ) -> Result<(), String> {
        self.rng = rng;
        let start = Instant::now();
        let first = (deadline - start).div_f32(4.0).min(kill_every / 2);
        let every = kill_every.as_millis() as u64;
        let mut next_kill = start + first;
        while !stop() {
            let pause = self.rng.millis(1000, 3000);
            if Instant::now() + pause >= deadline {
                break;
            }
            std::thread::sleep(pause);
            if Instant::now() >= next_kill {
                let down = self.rng.millis(200, 2000);
                self.note("tgtd: SIGKILL");
                let gone = self.tgtd.restart(down)?;
                self.note(&format!("tgtd: back and configured after {gone:?}"));
                self.outages.push(gone);
                *self
                    .direct
                    .entry("tgtd_sigkill_restart".into())
                    .or_default() += 1;
                next_kill = Instant::now() + self.rng.millis(every * 3 / 4, every * 5 / 4);
                continue;
            }
            let path = self.rng.range(0, 2) as usize;
            self.one(path, deadline);
        }
        for p in self.proxies {
            p.disarm();
            p.release();
        }
        Ok(())
    }

    /// Every fault injected, by name: the direct ones and those the proxies recorded.
    pub fn injected(&self) -> Counts {
        let mut counts = self.direct.clone();
        for p in self.proxies {
            for f in p.fired() {
                *counts.entry(name(&f.fault)).or_default() += 1;
            }
        }
        counts
    }

    /// One fault on `path`.
    fn one(&mut self, path: usize, deadline: Instant) {
        let Some(proxy) = self.proxies.get(path) else {
            return;
        };
        let fault = match self.rng.range(0, 11) {
            0 => {
                proxy.cut_all();
                self.note(&format!("path {}: cut_all", path + 1));
                *self.direct.entry("cut_all".into()).or_default() += 1;
                return;
            }
            1 => ProxyFault::CutAfterBytes {
                direction: if self.rng.chance(50) {
                    Direction::ToTarget
                } else {
                    Direction::ToInitiator
                },
                bytes: self.rng.range(0, 4 << 20),
            },
            2 => ProxyFault::CutMidDataIn,
            3 => ProxyFault::FreezeMidDataIn,
            4 => ProxyFault::FreezeOnR2t,
            5 | 6 => ProxyFault::FlipDataBit,
            7 => ProxyFault::FlipDataOutBit,
            8 | 9 => ProxyFault::FlipHeaderBit {
                opcode: HEADER_FLIPS[self.rng.range(0, HEADER_FLIPS.len() as u64) as usize],
            },
            _ => ProxyFault::Delay(self.rng.millis(1, 30)),
        };
        let before = proxy.faults_fired();
        let path = path + 1;
        proxy.arm_any(fault.clone());
        self.note(&format!("path {path}: armed {fault:?}"));
        if let ProxyFault::Delay(_) = fault {
            std::thread::sleep(self.rng.millis(2000, 6000));
            proxy.disarm();
            self.note(&format!("path {path}: delay over"));
            return;
        }
        let limit = (Instant::now() + Duration::from_secs(10)).min(deadline);
        while proxy.faults_fired() == before && Instant::now() < limit {
            std::thread::sleep(Duration::from_millis(20));
        }
        if proxy.faults_fired() == before {
            proxy.disarm();
            self.note(&format!("path {path}: never fired; disarmed"));
            *self.unfired.entry(name(&fault)).or_default() += 1;
            return;
        }
        self.note(&format!("path {path}: fired"));
        if matches!(fault, ProxyFault::FreezeMidDataIn | ProxyFault::FreezeOnR2t) {
            std::thread::sleep(self.rng.millis(1000, 6000));
            proxy.release();
            self.note(&format!("path {path}: released"));
        }
    }
}

impl Scheduler<'_> {
    /// Writes `what` to the fault log with the UTC time of day, to match the export's log.
    fn note(&mut self, what: &str) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        if let Some(log) = &mut self.log {
            let day = now.as_secs() % 86_400;
            let (h, m, sec) = (day / 3600, day / 60 % 60, day % 60);
            let ms = now.subsec_millis();
            let _ = writeln!(log, "{h:02}:{m:02}:{sec:02}.{ms:03}Z {what}");
        }
    }
}

/// The report's name of a proxy fault.
fn name(fault: &ProxyFault) -> String {
    match fault {
        ProxyFault::FreezeMidDataIn => "freeze_mid_data_in".into(),
        ProxyFault::FreezeOnR2t => "freeze_on_r2t".into(),
        ProxyFault::CutMidDataIn => "cut_mid_data_in".into(),
        ProxyFault::FlipDataBit => "flip_data_in_bit".into(),
        ProxyFault::FlipDataOutBit => "flip_data_out_bit".into(),
        ProxyFault::FlipHeaderBit { opcode } => {
            format!("flip_header_bit_{opcode:?}").to_lowercase()
        }
        ProxyFault::CutAfterBytes { .. } => "cut_after_bytes".into(),
        ProxyFault::Delay(_) => "delay".into(),
    }
}

/// PDUs whose header gets a flipped bit: the target's answers and the initiator's commands
/// and data (tgtd checks the header digest of what it receives).
const HEADER_FLIPS: [Opcode; 5] = [
    Opcode::SCSI_RESPONSE,
    Opcode::DATA_IN,
    Opcode::R2T,
    Opcode::SCSI_COMMAND,
    Opcode::DATA_OUT,
];
