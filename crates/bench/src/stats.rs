//! Small helpers for turning raw measurements into reported figures.

use std::time::Duration;

/// The p50 and p99 of a set of call durations, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Latency {
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

impl Latency {
    /// Sorts `durations` and takes nearest-rank percentiles; zeros when empty.
    pub(crate) fn of(durations: &mut [Duration]) -> Latency {
        durations.sort_unstable();
        Latency {
            p50_ms: millis(percentile(durations, 0.50)),
            p99_ms: millis(percentile(durations, 0.99)),
        }
    }
}

/// The nearest-rank percentile `p` (0 < p ≤ 1) of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank: the smallest value with at least p of the values at or below it.
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn millis(duration: Duration) -> f64 {
    round(duration.as_secs_f64() * 1000.0, 3)
}

/// `count` per second over `elapsed`, to one decimal.
pub(crate) fn per_sec(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs == 0.0 {
        0.0
    } else {
        round(count as f64 / secs, 1)
    }
}

/// Rounds to `decimals` places, so that reports stay readable.
pub(crate) fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut durations: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let latency = Latency::of(&mut durations);
        assert_eq!(
            latency,
            Latency {
                p50_ms: 50.0,
                p99_ms: 99.0
            }
        );

        let mut one = vec![Duration::from_micros(1500)];
        assert_eq!(
            Latency::of(&mut one),
            Latency {
                p50_ms: 1.5,
                p99_ms: 1.5
            }
        );
        assert_eq!(
            Latency::of(&mut []),
            Latency {
                p50_ms: 0.0,
                p99_ms: 0.0
            }
        );
    }

    #[test]
    fn rates_are_per_second() {
        assert_eq!(per_sec(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(per_sec(1, Duration::ZERO), 0.0);
    }
}
