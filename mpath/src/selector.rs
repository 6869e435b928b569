//! Path selectors (as dm-multipath's): which of the paths that may carry I/O takes the next
//! request. Pure functions over a snapshot of each candidate, so that they can be tested and
//! benchmarked without I/O.
//!
//! - round-robin: each path in turn, `rr_min_io` requests at a time;
//! - queue-length: the path with the fewest requests in flight;
//! - service-time: the path that would finish the request first, estimating its service time
//!   as (bytes in flight + the request's bytes) / the path's measured throughput — so a slower
//!   path gets a proportionally smaller share (the default, as in dm-multipath). Throughput is
//!   measured on requests of [`MIN_SAMPLE_BYTES`] or more only (a small request measures the
//!   round trip, not the bandwidth: a path whose first request was 4 KiB would look a hundred
//!   times slower than one that carried 1 MiB); estimates within [`TIE`] of the best count as
//!   equal, and equal paths take turns (two healthy paths with slightly different estimates
//!   share the load instead of one taking all of a one-at-a-time workload); and a path left
//!   out for [`STARVED_TURNS`] requests gets the next one, so its estimate is refreshed and
//!   every active path keeps carrying I/O (a path that carries none would be found dead only
//!   by its keep-alive).

/// How requests are spread over the paths.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum Policy {
    /// Each path in turn, `min_io` requests at a time.
    RoundRobin {
        /// Requests sent down a path before the next one takes over (at least 1).
        min_io: u32,
    },
    /// The path with the fewest requests in flight.
    QueueLength,
    /// The path with the lowest expected service time.
    #[default]
    ServiceTime,
}

/// What a selector knows about one path that may take the request.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Candidate {
    /// Requests in flight.
    pub in_flight: u32,
    /// Bytes of the requests in flight.
    pub in_flight_bytes: u64,
    /// Measured throughput in bytes per second (0 when nothing was measured yet).
    pub throughput: f64,
    /// Requests the device dispatched since this path last took one.
    pub passed_over: u64,
}

/// Throughput assumed for a path with no measurement yet: equal for every such path.
const UNMEASURED: f64 = 100e6;

/// The smallest request whose completion updates a path's throughput estimate.
pub const MIN_SAMPLE_BYTES: u64 = 64 << 10;

/// Service-time estimates within this fraction of the best count as equal.
pub const TIE: f64 = 0.125;

/// Requests a service-time path may be passed over before it takes one regardless.
pub const STARVED_TURNS: u64 = 32;

impl Policy {
    /// The index of the candidate that takes a request of `bytes`; `turn` counts the
    /// requests this device has dispatched (round-robin's clock). `None` without candidates.
    pub fn choose(self, candidates: &[Candidate], bytes: u64, turn: u64) -> Option<usize> {
        let n = candidates.len();
        if n == 0 {
            return None;
        }
        match self {
            Policy::RoundRobin { min_io } => {
                let per = u64::from(min_io.max(1));
                Some(((turn / per) % n as u64) as usize)
            }
            Policy::QueueLength => least_by(candidates, turn, 0.0, |c| c.in_flight as f64),
            Policy::ServiceTime => {
                let starved = candidates
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.passed_over >= STARVED_TURNS)
                    .max_by_key(|(_, c)| c.passed_over);
                if let Some((i, _)) = starved {
                    return Some(i);
                }
                least_by(candidates, turn, TIE, |c| {
                    let rate = if c.throughput > 0.0 {
                        c.throughput
                    } else {
                        UNMEASURED
                    };
                    (c.in_flight_bytes + bytes) as f64 / rate
                })
            }
        }
    }
}

/// The candidate with the least `cost`, counting costs within `tie` (a fraction) of the least
/// as equal; equal candidates are taken in turn, so equal paths share.
fn least_by(
    candidates: &[Candidate],
    turn: u64,
    tie: f64,
    cost: impl Fn(&Candidate) -> f64,
) -> Option<usize> {
    let n = candidates.len();
    let least = candidates.iter().map(&cost).min_by(f64::total_cmp)?;
    let start = (turn % n as u64) as usize;
    (0..n)
        .map(|k| (start + k) % n)
        .find(|&i| cost(&candidates[i]) <= least * (1.0 + tie))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(n: usize) -> Vec<Candidate> {
        vec![Candidate::default(); n]
    }

    #[test]
    fn round_robin_takes_turns_min_io_at_a_time() {
        let c = idle(3);
        let rr = Policy::RoundRobin { min_io: 2 };
        let picks: Vec<usize> = (0..8).filter_map(|t| rr.choose(&c, 4096, t)).collect();
        assert_eq!(picks, [0, 0, 1, 1, 2, 2, 0, 0]);
        assert_eq!(Policy::RoundRobin { min_io: 0 }.choose(&c, 1, 4), Some(1));
        assert_eq!(rr.choose(&[], 1, 0), None);
    }

    #[test]
    fn queue_length_prefers_the_shortest_queue_and_shares_ties() {
        let mut c = idle(2);
        c[0].in_flight = 3;
        c[1].in_flight = 1;
        assert_eq!(Policy::QueueLength.choose(&c, 1, 0), Some(1));
        let even = idle(2);
        let picks: Vec<_> = (0..4)
            .filter_map(|t| Policy::QueueLength.choose(&even, 1, t))
            .collect();
        assert_eq!(picks, [0, 1, 0, 1]);
    }

    #[test]
    fn service_time_weighs_bytes_in_flight_by_throughput() {
        let mut c = idle(2);
        // Path 0 is four times faster: it takes a request with four times the bytes queued.
        c[0].throughput = 400e6;
        c[1].throughput = 100e6;
        c[0].in_flight_bytes = 3 << 20;
        c[1].in_flight_bytes = 1 << 20;
        assert_eq!(Policy::ServiceTime.choose(&c, 128 << 10, 0), Some(0));
        c[0].in_flight_bytes = 8 << 20;
        assert_eq!(Policy::ServiceTime.choose(&c, 128 << 10, 0), Some(1));
    }

    #[test]
    fn service_time_shares_between_nearly_equal_paths() {
        let mut c = idle(2);
        c[0].throughput = 52e6;
        c[1].throughput = 50e6;
        let picks: Vec<_> = (0..4)
            .filter_map(|t| Policy::ServiceTime.choose(&c, 1 << 20, t))
            .collect();
        assert_eq!(picks, [0, 1, 0, 1], "within the tie band: in turn");
        c[1].throughput = 20e6;
        let picks: Vec<_> = (0..4)
            .filter_map(|t| Policy::ServiceTime.choose(&c, 1 << 20, t))
            .collect();
        assert_eq!(picks, [0, 0, 0, 0], "a path 2.6 times slower waits");
    }

    #[test]
    fn a_starved_path_takes_the_next_request() {
        let mut c = idle(3);
        c[0].throughput = 400e6;
        c[1].throughput = 1e6;
        c[2].throughput = 1e6;
        c[1].passed_over = STARVED_TURNS - 1;
        assert_eq!(Policy::ServiceTime.choose(&c, 1 << 20, 0), Some(0));
        c[1].passed_over = STARVED_TURNS;
        c[2].passed_over = STARVED_TURNS + 3;
        assert_eq!(
            Policy::ServiceTime.choose(&c, 1 << 20, 0),
            Some(2),
            "the longest passed over first"
        );
    }

    #[test]
    fn service_time_spreads_over_equal_idle_paths() {
        let c = idle(2);
        let picks: Vec<_> = (0..4)
            .filter_map(|t| Policy::ServiceTime.choose(&c, 4096, t))
            .collect();
        assert_eq!(picks, [0, 1, 0, 1]);
    }
}
