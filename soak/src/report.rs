//! The soak's report: ops by kind, faults injected by kind, errors surfaced to the NBD client,
//! acknowledged writes lost, wrong bytes returned, latency; as a plain table or JSON, and the
//! verdict.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::faults::Counts;
use crate::workload::{Findings, KINDS, Stats};

/// Everything the soak measured.
#[derive(Debug, Default)]
pub struct Report {
    seed: u64,
    seconds: u64,
    /// How long the workload ran.
    pub run_time: Duration,
    /// The export's transmission flags.
    pub flags: u16,
    /// The workload's counters (latencies summarised in `latency_us`).
    stats: Stats,
    /// p50, p99 and max latency in microseconds.
    latency_us: [u64; 3],
    /// Faults injected, by name.
    pub faults: Counts,
    /// Faults armed that never fired, by name.
    pub unfired: Counts,
    /// How long tgtd was gone at each restart.
    pub outages: Vec<Duration>,
    /// The final read-back over NBD and how long it took.
    pub read_back: Option<(Findings, Duration)>,
    /// The check of the backing file after the export stopped.
    pub backing: Option<Findings>,
    /// What went wrong with the export process (exit, SIGTERM), if anything.
    pub export_exit: Option<String>,
    /// Why the soak stopped early, if it did.
    pub fatal: Option<String>,
}

impl Report {
    /// An empty report for a run of `seconds` with `seed`.
    pub fn new(seed: u64, seconds: u64) -> Report {
        Report {
            seed,
            seconds,
            ..Report::default()
        }
    }

    /// Takes the workload's counters, summarising the latencies.
    pub fn take_stats(&mut self, stats: &mut Stats) {
        let mut stats = std::mem::take(stats);
        let mut l = std::mem::take(&mut stats.latencies_us);
        l.sort_unstable();
        let at = |q: f64| {
            let i = ((l.len() as f64 - 1.0) * q).round() as usize;
            l.get(i).copied().unwrap_or(0)
        };
        self.latency_us = [at(0.5), at(0.99), l.last().copied().unwrap_or(0)];
        self.stats = stats;
    }

    /// Requests completed.
    pub fn ops(&self) -> u64 {
        self.stats.ops.iter().sum()
    }

    /// Faults injected.
    pub fn injected(&self) -> u64 {
        self.faults.values().sum()
    }

    /// Acknowledged writes found lost, in any check.
    pub fn lost_writes(&self) -> usize {
        let mut ids: BTreeSet<u64> = self.stats.during.lost_writes.clone();
        for f in self.final_checks() {
            ids.extend(&f.lost_writes);
        }
        ids.len()
    }

    /// Wrong bytes returned, in any check.
    pub fn wrong_bytes(&self) -> u64 {
        self.stats.during.wrong_bytes + self.final_checks().map(|f| f.wrong_bytes).sum::<u64>()
    }

    /// Whether the soak passed.
    pub fn passed(&self) -> bool {
        self.verdict() == "passed"
    }

    /// "passed", or why not.
    pub fn verdict(&self) -> String {
        let mut why = Vec::new();
        if let Some(e) = &self.fatal {
            why.push(e.clone());
        }
        if self.lost_writes() > 0 {
            why.push(format!("{} acknowledged writes lost", self.lost_writes()));
        }
        let wrong = self.stats.during.wrong_blocks
            + self.final_checks().map(|f| f.wrong_blocks).sum::<u64>();
        if wrong > 0 {
            why.push(format!(
                "{} wrong bytes in {wrong} blocks",
                self.wrong_bytes()
            ));
        }
        if self.fatal.is_none() && (self.read_back.is_none() || self.backing.is_none()) {
            why.push("the final checks did not run".into());
        }
        if let Some(e) = &self.export_exit {
            why.push(format!("sanshim export: {e}"));
        }
        if self.ops() == 0 {
            why.push("no request completed".into());
        }
        if self.injected() == 0 {
            why.push("no fault was injected".into());
        }
        if why.is_empty() {
            "passed".into()
        } else {
            why.join("; ")
        }
    }

    /// Prints the report to stdout (table or JSON) and the findings' examples to stderr.
    pub fn print(&self, json: bool) {
        for (phase, f) in self.phases() {
            for e in &f.examples {
                eprintln!("soak: {phase}: {e}");
            }
        }
        if json {
            println!("{:#}", self.json());
        } else {
            print!("{}", self.table());
        }
    }

    fn final_checks(&self) -> impl Iterator<Item = &Findings> {
        self.read_back
            .iter()
            .map(|(f, _)| f)
            .chain(self.backing.iter())
    }

    fn phases(&self) -> impl Iterator<Item = (&'static str, &Findings)> {
        std::iter::once(("during the run", &self.stats.during))
            .chain(self.read_back.iter().map(|(f, _)| ("final read-back", f)))
            .chain(self.backing.iter().map(|f| ("backing file", f)))
    }

    fn json(&self) -> Value {
        let s = &self.stats;
        let by_kind = |v: &[u64; KINDS.len()]| -> Value {
            KINDS
                .iter()
                .zip(v)
                .map(|(k, n)| ((*k).to_owned(), json!(n)))
                .collect()
        };
        let phases: serde_json::Map<String, Value> = self
            .phases()
            .map(|(p, f)| {
                let v = json!({
                    "lost_writes": f.lost_writes.len(), "stale_blocks": f.stale_blocks,
                    "wrong_blocks": f.wrong_blocks, "wrong_bytes": f.wrong_bytes,
                });
                (p.replace([' ', '-'], "_"), v)
            })
            .collect();
        json!({
            "verdict": self.verdict(), "passed": self.passed(),
            "seed": self.seed, "seconds": self.seconds,
            "run_seconds": self.run_time.as_secs_f64(),
            "ops": by_kind(&s.ops), "ops_total": self.ops(),
            "errors_surfaced": by_kind(&s.errors),
            "errors_surfaced_total": s.errors.iter().sum::<u64>(),
            "errnos": s.errnos.iter().map(|(e, n)| (e.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "bytes_read": s.bytes[0], "bytes_written": s.bytes[1],
            "faults_injected": self.faults, "faults_injected_total": self.injected(),
            "faults_armed_not_fired": self.unfired,
            "tgtd_outages_ms": self.outages.iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>(),
            "acknowledged_writes_lost": self.lost_writes(),
            "wrong_bytes_returned": self.wrong_bytes(),
            "checks": phases,
            "read_back_seconds": self.read_back.as_ref().map(|(_, d)| d.as_secs_f64()),
            "latency_us": { "p50": self.latency_us[0], "p99": self.latency_us[1], "max": self.latency_us[2] },
            "export_exit": self.export_exit, "fatal": self.fatal,
            "transmission_flags": self.flags,
        })
    }

    fn table(&self) -> String {
        use std::fmt::Write;
        let s = &self.stats;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "soak: seed {}, {:.1} s of workload",
            self.seed,
            self.run_time.as_secs_f64()
        );
        let _ = writeln!(t, "{:<28} {:>10} {:>10}", "request", "ops", "errors");
        for (i, k) in KINDS.iter().enumerate() {
            let _ = writeln!(t, "{k:<28} {:>10} {:>10}", s.ops[i], s.errors[i]);
        }
        let surfaced: u64 = s.errors.iter().sum();
        let _ = writeln!(t, "{:<28} {:>10} {:>10}", "total", self.ops(), surfaced);
        let _ = writeln!(t, "{:<28} {:>10}", "fault injected", "count");
        for (k, n) in &self.faults {
            let _ = writeln!(t, "{k:<28} {n:>10}");
        }
        let _ = writeln!(t, "{:<28} {:>10}", "total", self.injected());
        for (k, n) in &self.unfired {
            let _ = writeln!(t, "{:<28} {n:>10}", format!("(armed, never fired) {k}"));
        }
        let rows: [(&str, String); 8] = [
            (
                "errors surfaced to client",
                format!("{surfaced} {:?}", s.errnos),
            ),
            ("acknowledged writes lost", self.lost_writes().to_string()),
            ("wrong bytes returned", self.wrong_bytes().to_string()),
            (
                "MiB read / written",
                format!("{} / {}", s.bytes[0] >> 20, s.bytes[1] >> 20),
            ),
            (
                "latency p50/p99/max ms",
                format!(
                    "{:.1} / {:.1} / {:.1}",
                    self.latency_us[0] as f64 / 1e3,
                    self.latency_us[1] as f64 / 1e3,
                    self.latency_us[2] as f64 / 1e3
                ),
            ),
            (
                "tgtd outages ms",
                format!(
                    "{:?}",
                    self.outages
                        .iter()
                        .map(|d| d.as_millis() as u64)
                        .collect::<Vec<_>>()
                ),
            ),
            (
                "final read-back",
                match &self.read_back {
                    Some((f, d)) => format!(
                        "{:.1} s, {} stale, {} wrong blocks",
                        d.as_secs_f64(),
                        f.stale_blocks,
                        f.wrong_blocks
                    ),
                    None => "not run".into(),
                },
            ),
            (
                "backing file",
                match &self.backing {
                    Some(f) => format!("{} stale, {} wrong blocks", f.stale_blocks, f.wrong_blocks),
                    None => "not checked".into(),
                },
            ),
        ];
        for (k, v) in rows {
            let _ = writeln!(t, "{k:<28} {v}");
        }
        let _ = writeln!(t, "{:<28} {}", "verdict", self.verdict());
        t
    }
}
