//! CPU time of this process, from `/proc/self/stat` (proc(5): fields 14 `utime` and 15
//! `stime`, in clock ticks), which needs no `unsafe` as `getrusage` would.
//!
//! The tick is USER_HZ, which Linux fixes at 100 for every architecture's user-space ABI
//! except Alpha and IA-64 (1024), neither of which we build for. The resolution is 10 ms,
//! enough for runs of seconds.

use std::time::Duration;

/// Clock ticks per second of the `/proc` time fields (USER_HZ).
pub const USER_HZ: u64 = 100;

/// CPU time spent by the process in user and kernel mode.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct CpuTime {
    /// Time in user mode.
    pub user: Duration,
    /// Time in the kernel on the process's behalf.
    pub sys: Duration,
}

impl CpuTime {
    /// The CPU time of this process so far; `None` where `/proc/self/stat` cannot be read
    /// (not Linux, or /proc not mounted).
    pub fn now() -> Option<CpuTime> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        parse_stat(&stat)
    }

    /// The time spent since `earlier`.
    pub fn since(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            sys: self.sys.saturating_sub(earlier.sys),
        }
    }
}

/// Reads `utime` and `stime` from the text of a `/proc/PID/stat` file.
pub fn parse_stat(stat: &str) -> Option<CpuTime> {
    // The command name (field 2) is in parentheses and may itself hold spaces and ')'; the
    // fields after the last ')' start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(UTIME_FIELD - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(CpuTime {
        user: ticks(utime),
        sys: ticks(stime),
    })
}

fn ticks(n: u64) -> Duration {
    Duration::from_millis(n.saturating_mul(1000 / USER_HZ))
}

/// 1-based number of the `utime` field in proc(5).
const UTIME_FIELD: usize = 14;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_stat() {
        let stat = "4242 (san shim) x) S 1 4242 4242 0 -1 4194560 1056 0 0 0 250 37 0 0 20 0 \
                    3 0 123456 1000000 500 18446744073709551615\n";
        let cpu = parse_stat(stat).unwrap();
        assert_eq!(cpu.user, Duration::from_millis(2500));
        assert_eq!(cpu.sys, Duration::from_millis(370));
    }

    #[test]
    fn test_parse_stat_rejects_garbage() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
        assert_eq!(parse_stat("1 (x) S 1 2 3 4 5 6 7 8 9 10 ab 12"), None);
    }

    #[test]
    fn test_now_advances_with_work() {
        // Linux always has /proc/self/stat: its absence is a failure, not a skip.
        let start = CpuTime::now().expect("/proc/self/stat readable");
        // Work until the clock ticks (its resolution is 10 ms), however busy the machine is;
        // the wall-clock bound only stops a broken clock from spinning forever.
        let give_up = std::time::Instant::now() + Duration::from_secs(60);
        let mut x = 0u64;
        let spent = loop {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            std::hint::black_box(x);
            let spent = CpuTime::now()
                .expect("/proc/self/stat readable")
                .since(&start);
            if spent.user + spent.sys >= Duration::from_millis(20)
                || std::time::Instant::now() > give_up
            {
                break spent;
            }
        };
        assert!(
            spent.user + spent.sys >= Duration::from_millis(20),
            "60 s of work and the CPU clock moved only {spent:?}"
        );
    }
}
