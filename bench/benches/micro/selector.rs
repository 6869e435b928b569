//! Multipath path selection (`mpath::selector::Policy::choose`): round-robin (`min_io` 1 and
//! 16), queue-length and service-time choosing among 2 and 4 paths, one choice per
//! iteration. The inputs cycle through 256 snapshots of paths with varied load (requests and
//! bytes in flight, measured throughput, turns passed over), as a busy device presents them;
//! taking the snapshot from the paths' atomics (`Multipath::pick`) is not included.

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use sanshim_mpath::selector::{Candidate, Policy};

const SNAPSHOTS: usize = 256;
const REQUEST: u64 = 128 << 10;

/// `selector/{round_robin,round_robin_16,queue_length,service_time}_{2,4}paths`.
pub fn selector(c: &mut Criterion) {
    let mut group = c.benchmark_group("selector");
    group.throughput(Throughput::Elements(1));
    let policies = [
        ("round_robin", Policy::RoundRobin { min_io: 1 }),
        ("round_robin_16", Policy::RoundRobin { min_io: 16 }),
        ("queue_length", Policy::QueueLength),
        ("service_time", Policy::ServiceTime),
    ];
    for paths in [2, 4] {
        let snapshots = snapshots(paths);
        for (name, policy) in policies {
            check(policy, &snapshots);
            let mut turn = 0u64;
            group.bench_function(format!("{name}_{paths}paths"), |b| {
                b.iter(|| {
                    let candidates = &snapshots[turn as usize % SNAPSHOTS];
                    let chosen = policy.choose(black_box(candidates), REQUEST, turn);
                    turn += 1;
                    black_box(chosen)
                })
            });
        }
    }
    group.finish();
}

/// Every choice names a candidate, and the one the policy promises.
fn check(policy: Policy, snapshots: &[Vec<Candidate>]) {
    for (turn, candidates) in snapshots.iter().enumerate() {
        let turn = turn as u64;
        let Some(i) = policy.choose(candidates, REQUEST, turn) else {
            panic!("{policy:?} chose no path");
        };
        assert!(i < candidates.len());
        let least = candidates.iter().map(|c| c.in_flight).min();
        match policy {
            Policy::RoundRobin { min_io } => {
                let expected = (turn / u64::from(min_io)) % candidates.len() as u64;
                assert_eq!(i as u64, expected);
            }
            Policy::QueueLength => assert_eq!(Some(candidates[i].in_flight), least),
            Policy::ServiceTime => {}
        }
    }
}

/// `SNAPSHOTS` states of `paths` paths under load, from a fixed pseudo-random sequence.
fn snapshots(paths: usize) -> Vec<Vec<Candidate>> {
    let throughputs = [1.0e9, 0.9e9, 1.1e9, 0.5e9];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |bound: u64| {
        // xorshift64: cheap, fixed, and good enough to vary the inputs.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    (0..SNAPSHOTS)
        .map(|_| {
            throughputs[..paths]
                .iter()
                .map(|&throughput| {
                    let in_flight = next(16) as u32;
                    Candidate {
                        in_flight,
                        in_flight_bytes: u64::from(in_flight) * REQUEST,
                        throughput,
                        passed_over: next(36),
                    }
                })
                .collect()
        })
        .collect()
}
