//! CPU time of this process's threads, grouped by thread name
//! (`/proc/self/task/*/stat`), to tell how busy Herald's threads and the
//! load's were during a phase. Threads that exit during the phase take their
//! time with them, so the figures are lower bounds.

use std::time::Duration;

/// Clock ticks per second of `/proc` times (`getconf CLK_TCK`; 100 on Linux).
fn ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// CPU time used so far by this process's threads whose name starts with
/// one of some prefixes (the load's), and by all the others.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Split {
    pub(crate) matching: Duration,
    pub(crate) others: Duration,
}

impl Split {
    /// Reads every thread's time now; zeros if `/proc` cannot be read.
    pub(crate) fn now(prefixes: &[&str]) -> Split {
        let ticks = ticks_per_sec();
        let mut split = Split::default();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return split;
        };
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let Some((name, used)) = parse_stat(&stat) else {
                continue;
            };
            let used = Duration::from_secs_f64(used as f64 / ticks as f64);
            if prefixes.iter().any(|prefix| name.starts_with(prefix)) {
                split.matching += used;
            } else {
                split.others += used;
            }
        }
        split
    }

    /// The cores each group kept busy from `earlier` to now, over `elapsed`.
    pub(crate) fn cores_since(&self, earlier: &Split, elapsed: Duration) -> (f64, f64) {
        let secs = elapsed.as_secs_f64();
        if secs == 0.0 {
            return (0.0, 0.0);
        }
        let busy = |now: Duration, then: Duration| {
            crate::stats::round(now.saturating_sub(then).as_secs_f64() / secs, 2)
        };
        (
            busy(self.matching, earlier.matching),
            busy(self.others, earlier.others),
        )
    }
}

/// The thread name (`comm`) and utime + stime, in ticks, of a
/// `/proc/<pid>/task/<tid>/stat` line.
fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    // The name is in parentheses and may hold spaces or parentheses itself.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    let mut fields = stat.get(close + 1..)?.split_whitespace();
    // After the name: state (field 3) ... utime (14), stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((name, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_the_name_and_the_time() {
        let stat =
            "4242 (bench-client) S 1 4242 4242 0 -1 4194368 100 0 0 0 250 50 0 0 20 0 4 0 1 2 3";
        assert_eq!(parse_stat(stat), Some(("bench-client", 300)));
        let odd = "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 1 2 3";
        assert_eq!(parse_stat(odd), Some(("a (b) c", 3)));
        assert_eq!(parse_stat("7 (x) R 1"), None);
    }

    #[test]
    fn cores_are_time_over_elapsed() {
        let then = Split {
            matching: Duration::from_secs(1),
            others: Duration::from_secs(2),
        };
        let now = Split {
            matching: Duration::from_secs(3),
            others: Duration::from_secs(3),
        };
        assert_eq!(now.cores_since(&then, Duration::from_secs(2)), (1.0, 0.5));
        assert_eq!(now.cores_since(&then, Duration::ZERO), (0.0, 0.0));
    }
}
