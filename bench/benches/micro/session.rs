//! The sans-IO `Session` running 4 KiB commands against the in-memory fake target, one
//! command per iteration at a steady queue depth: submit a command, take its SCSI Command PDU
//! from `poll_transmit`, let the target answer the oldest command in flight (a Data-In with
//! status, its 4 KiB landed through `begin_data_in`/`landing_buffer`/`finish_data_in`, for a
//! read; a SCSI Response via `handle_pdu` for a write with immediate data), and take the
//! completion. The fake target's work is timed too; it builds one PDU struct per command.
//!
//! Before measuring, each variant runs 1,000,000 commands once, checks that all of them
//! completed with GOOD (and the data of the first ones), and prints the rate by the wall clock
//! and by the time the thread was on a CPU (the machine may be shared). `session_1m` measures
//! such runs with criterion. `poll_timeout` is measured apart: the driver calls it once per
//! wake-up, not per command; at queue depth 32 and 128 alike, as it must not walk the
//! commands in flight (it did before: 81 ns at 32, 332 ns at 128).

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, SamplingMode, Throughput};
use sanshim_initiator::scsi::Cdb;
use sanshim_initiator::session::{Command, Outcome, Session, Transfer};
use sanshim_initiator::wire::{Lun, Pdu, ScsiCommand, ScsiStatus};

use crate::fake_target::FakeTarget;

const BLOCK: usize = 4096;
const MILLION: u64 = 1_000_000;

/// `session/{read_4k_qd32,read_4k_qd128,write_4k_qd32,poll_timeout_qd*}` and `session_1m`.
pub fn session(c: &mut Criterion) {
    let mut group = c.benchmark_group("session");
    group.throughput(Throughput::Elements(1));
    for (name, write, depth) in [
        ("read_4k_qd32", false, 32),
        ("read_4k_qd128", false, 128),
        ("write_4k_qd32", true, 32),
    ] {
        let mut rig = Loop::new(write, depth);
        let mut checked = false;
        group.bench_function(name, |b| {
            // Here rather than before: only when the filter selects this bench.
            if !std::mem::replace(&mut checked, true) {
                rig.check(name);
            }
            b.iter_custom(|iters| rig.run(iters))
        });
    }
    for depth in [32, 128] {
        let rig = Loop::new(false, depth);
        assert_eq!(rig.session.in_flight(), depth as usize - 1);
        assert!(rig.session.poll_timeout().is_some());
        group.bench_function(format!("poll_timeout_qd{depth}"), |b| {
            b.iter(|| black_box(&rig.session).poll_timeout())
        });
    }
    group.finish();

    let mut group = c.benchmark_group("session_1m");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    // Ten runs of about 0.3 s each, and room for a slower machine.
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(MILLION));
    let mut rig = Loop::new(false, 32);
    group.bench_function("read_4k_qd32", |b| {
        b.iter_custom(|iters| rig.run(iters * MILLION))
    });
    group.finish();
}

/// A session with a steady `depth` commands in flight (one fewer between iterations) and the
/// target that holds them.
struct Loop {
    session: Session,
    target: FakeTarget,
    now: Instant,
    write: bool,
    depth: u32,
    /// The 4 KiB a read's Data-In carries, or a write sends.
    source: Bytes,
    /// Read buffers handed back by completed reads, for the next reads.
    buffers: Vec<BytesMut>,
    /// Commands the target has taken and not answered yet, oldest first.
    held: VecDeque<ScsiCommand>,
    /// Whether each completion's data is compared with the source.
    verify: bool,
    completed: u64,
}

impl Loop {
    fn new(write: bool, depth: u32) -> Loop {
        let now = Instant::now();
        let (session, target) = FakeTarget::connect(depth, false, now);
        let source: Bytes = (0..BLOCK).map(|i| (i % 251 + 1) as u8).collect();
        let mut rig = Loop {
            session,
            target,
            now,
            write,
            depth,
            source,
            buffers: (0..depth).map(|_| BytesMut::zeroed(BLOCK)).collect(),
            held: VecDeque::new(),
            verify: false,
            completed: 0,
        };
        for _ in 1..depth {
            rig.submit();
            rig.hold();
        }
        rig
    }

    /// Runs the first commands with their data verified, then 1,000,000 commands, all of
    /// which must complete with GOOD; prints the rate.
    fn check(&mut self, name: &str) {
        self.verify = true;
        self.run(2 * u64::from(self.depth));
        self.verify = false;
        let before = self.completed;
        let cpu = on_cpu();
        let elapsed = self.run(MILLION);
        let cpu = on_cpu()
            .zip(cpu)
            .map(|(after, before)| after.saturating_sub(before));
        assert_eq!(self.completed - before, MILLION, "every command completed");
        let rate = |d: Duration| MILLION as f64 / d.as_secs_f64() / 1e6;
        print!(
            "session/{name}: {MILLION} commands completed with GOOD in {:.3} s: {:.2} M/s",
            elapsed.as_secs_f64(),
            rate(elapsed)
        );
        match cpu {
            Some(cpu) => println!(
                "; on CPU {:.3} s: {:.2} M/s per core",
                cpu.as_secs_f64(),
                rate(cpu)
            ),
            None => println!(),
        }
    }

    /// Submits and completes `iters` commands; returns the time taken.
    fn run(&mut self, iters: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            self.submit();
            self.hold();
            self.answer();
            self.complete();
        }
        start.elapsed()
    }

    fn submit(&mut self) {
        let lun = Lun::from_number(1);
        let lba = self.completed;
        let command = if self.write {
            let cdb = Cdb::write16(lba, 8, false).padded();
            Command::new(lun, cdb, Transfer::Write(self.source.clone()))
        } else {
            let buf = self
                .buffers
                .pop()
                .unwrap_or_else(|| BytesMut::zeroed(BLOCK));
            Command::new(lun, Cdb::read16(lba, 8).padded(), Transfer::Read(buf))
        };
        if let Err(e) = self.session.submit(command, self.now) {
            panic!("submit failed: {e}");
        }
    }

    /// The target takes what the session sent.
    fn hold(&mut self) {
        while let Some(pdu) = self.session.poll_transmit() {
            let Pdu::ScsiCommand(cmd) = pdu else {
                panic!("expected only SCSI Commands, got {pdu:?}");
            };
            if self.verify && self.write && cmd.data != self.source {
                panic!("the write's data did not go as immediate data");
            }
            self.target.accept(&cmd);
            self.held.push_back(cmd);
        }
    }

    /// The target answers its oldest command.
    fn answer(&mut self) {
        let Some(cmd) = self.held.pop_front() else {
            panic!("no command in flight");
        };
        if self.write {
            let response = self.target.good(cmd.itt);
            self.session
                .handle_pdu(Pdu::ScsiResponse(response), self.now);
            return;
        }
        let header = self.target.data_in(cmd.itt, 0, 0, Bytes::new(), true);
        let landing = match self.session.begin_data_in(header, BLOCK, self.now) {
            Ok(landing) => landing,
            Err(e) => panic!("{e}"),
        };
        let dst = self.session.landing_buffer(&landing);
        if dst.len() != BLOCK {
            panic!("landing of {} bytes for a 4 KiB read", dst.len());
        }
        dst.copy_from_slice(&self.source);
        self.session.finish_data_in(landing, self.now);
    }

    fn complete(&mut self) {
        let response = match self.session.poll_completion() {
            Some((_, Ok(Outcome::Scsi(r)))) if r.status == ScsiStatus::GOOD => r,
            other => panic!("the command did not complete with GOOD: {other:?}"),
        };
        if !self.write {
            if self.verify && response.data != self.source {
                panic!("the read's data did not land");
            }
            self.buffers.push(response.data);
        }
        self.completed += 1;
    }
}

/// Time this thread has spent on a CPU (Linux `/proc/thread-self/schedstat`, first field):
/// unlike the wall clock, it does not count the time other processes had the core.
fn on_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}
