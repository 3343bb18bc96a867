//! When a job's executions are created: `jobExecutionsRolloutConfig` (at
//! most so many things notified per minute, optionally starting lower and
//! growing by a factor) and `schedulingConfig` (a start time before which
//! the job is SCHEDULED, and an end time with what then happens). AWS IoT
//! Core Developer Guide: "Job rollout, scheduling, and abort
//! configurations"; botocore model `iot`, shapes `JobExecutionsRolloutConfig`,
//! `ExponentialRolloutRate`, `SchedulingConfig`.

use serde::{Deserialize, Serialize};

use herald_proto::error::AwsError;

use super::{cron::Cron, invalid};

/// `maximumPerMinute` and `baseRatePerMinute`: 1 to 1,000.
pub(crate) const MAX_PER_MINUTE: u32 = 1_000;
/// `incrementFactor`, in tenths: 1.1 to 5.0, one decimal.
pub(crate) const MIN_FACTOR_TENTHS: u32 = 11;
pub(crate) const MAX_FACTOR_TENTHS: u32 = 50;
/// How far ahead a start may be scheduled, and how long after its start a
/// job may end, in minutes (a year; two years).
pub(crate) const MAX_START_AHEAD_MINUTES: i64 = 365 * 24 * 60;
pub(crate) const MAX_RUN_MINUTES: i64 = 2 * 365 * 24 * 60;

/// `jobExecutionsRolloutConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rollout {
    pub(crate) maximum_per_minute: Option<u32>,
    pub(crate) exponential: Option<ExponentialRate>,
}

/// `exponentialRate`: start at `base_per_minute`, and multiply the rate by
/// the factor each time so many more things were notified (or succeeded)
/// since the rate last grew.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExponentialRate {
    pub(crate) base_per_minute: u32,
    pub(crate) factor_tenths: u32,
    pub(crate) criterion: RateIncrease,
}

/// `rateIncreaseCriteria`: exactly one of its two fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RateIncrease {
    NotifiedThings(u32),
    SucceededThings(u32),
}

impl Rollout {
    pub(crate) fn check(&self) -> Result<(), AwsError> {
        if self.maximum_per_minute.is_none() && self.exponential.is_none() {
            return Err(invalid(
                "jobExecutionsRolloutConfig needs maximumPerMinute or exponentialRate",
            ));
        }
        if let Some(max) = self.maximum_per_minute
            && !(1..=MAX_PER_MINUTE).contains(&max)
        {
            return Err(invalid(format!(
                "maximumPerMinute must be 1 to {MAX_PER_MINUTE}, got {max}"
            )));
        }
        if let Some(rate) = &self.exponential {
            if !(1..=MAX_PER_MINUTE).contains(&rate.base_per_minute) {
                return Err(invalid(format!(
                    "baseRatePerMinute must be 1 to {MAX_PER_MINUTE}, got {}",
                    rate.base_per_minute
                )));
            }
            if !(MIN_FACTOR_TENTHS..=MAX_FACTOR_TENTHS).contains(&rate.factor_tenths) {
                return Err(invalid(
                    "incrementFactor must be 1.1 to 5, with at most one decimal",
                ));
            }
            let (RateIncrease::NotifiedThings(n) | RateIncrease::SucceededThings(n)) =
                rate.criterion;
            if n == 0 {
                return Err(invalid("rateIncreaseCriteria must be at least 1 thing"));
            }
        }
        Ok(())
    }

    /// The most things notified per minute, ever.
    fn ceiling(&self) -> f64 {
        f64::from(self.maximum_per_minute.unwrap_or(MAX_PER_MINUTE))
    }

    fn initial_rate(&self) -> f64 {
        match &self.exponential {
            Some(rate) => f64::from(rate.base_per_minute).min(self.ceiling()),
            None => self.ceiling(),
        }
    }
}

/// How far a rollout has gone: state, so a restart resumes it where it was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct RolloutProgress {
    /// Whether the first minute has begun.
    pub(crate) started: bool,
    /// Things notified per minute now.
    pub(crate) rate: f64,
    /// When the current minute began (epoch ms).
    pub(crate) window_start_ms: i64,
    /// Executions created in the current minute.
    pub(crate) in_window: u64,
    /// Executions created in all.
    pub(crate) notified: u64,
    /// `notified` and the job's succeeded count when the rate last grew
    /// (or the rollout began).
    pub(crate) notified_mark: u64,
    pub(crate) succeeded_mark: u64,
}

impl RolloutProgress {
    /// How many more executions may be created at `now`, given the job's
    /// `succeeded` count: a minute that has passed starts a new one, and
    /// an exponential rate grows once per minute when its criterion is met.
    pub(crate) fn allowance(
        &mut self,
        rollout: &Rollout,
        now: i64,
        minute_ms: i64,
        succeeded: u64,
    ) -> u64 {
        if !self.started {
            self.started = true;
            self.rate = rollout.initial_rate();
            self.window_start_ms = now;
            self.in_window = 0;
            self.notified_mark = self.notified;
            self.succeeded_mark = succeeded;
        } else if now >= self.window_start_ms.saturating_add(minute_ms) {
            self.window_start_ms = now;
            self.in_window = 0;
            if let Some(rate) = &rollout.exponential {
                let met = match rate.criterion {
                    RateIncrease::NotifiedThings(n) => {
                        self.notified.saturating_sub(self.notified_mark) >= u64::from(n)
                    }
                    RateIncrease::SucceededThings(n) => {
                        succeeded.saturating_sub(self.succeeded_mark) >= u64::from(n)
                    }
                };
                if met {
                    self.rate =
                        (self.rate * f64::from(rate.factor_tenths) / 10.0).min(rollout.ceiling());
                    self.notified_mark = self.notified;
                    self.succeeded_mark = succeeded;
                }
            }
        }
        // A rollout configuration changed by UpdateJob caps the rate at once.
        self.rate = self.rate.min(rollout.ceiling());
        // Rates are whole things per minute; a grown rate counts what it
        // reached in full.
        (self.rate.floor() as u64).saturating_sub(self.in_window)
    }

    /// `n` executions were created.
    pub(crate) fn created(&mut self, n: u64) {
        self.in_window += n;
        self.notified += n;
    }

    /// When the next minute begins.
    pub(crate) fn next_window_ms(&self, minute_ms: i64) -> i64 {
        self.window_start_ms.saturating_add(minute_ms)
    }
}

/// `schedulingConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Schedule {
    pub(crate) start_ms: Option<i64>,
    pub(crate) end_ms: Option<i64>,
    pub(crate) end_behavior: EndBehavior,
    /// `maintenanceWindows`: executions are created only within one.
    #[serde(default)]
    pub(crate) windows: Vec<MaintenanceWindow>,
}

/// A recurring maintenance window: from each minute its cron expression
/// names, for `duration_minutes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MaintenanceWindow {
    /// `cron(...)`, as given.
    pub(crate) start: String,
    pub(crate) duration_minutes: u32,
}

/// `durationInMinutes`: 1 to 1,430.
pub(crate) const MAX_WINDOW_MINUTES: u32 = 1_430;

impl MaintenanceWindow {
    fn cron(&self) -> Option<Cron> {
        Cron::parse(&self.start).ok()
    }
}

/// Where `at_ms` stands against `windows`: `Ok(end)` inside one (the
/// latest end of those it is in), `Err(next start)` outside all (`None`:
/// no window starts again).
pub(crate) fn window_at(
    windows: &[MaintenanceWindow],
    at_ms: i64,
    minute_ms: i64,
) -> Result<i64, Option<i64>> {
    let mut inside: Option<i64> = None;
    let mut next: Option<i64> = None;
    for window in windows {
        let Some(cron) = window.cron() else { continue };
        let duration = i64::from(window.duration_minutes).saturating_mul(minute_ms);
        if let Some(end) = cron.window_at(at_ms, duration) {
            inside = Some(inside.map_or(end, |e| e.max(end)));
        } else if let Some(start) = cron.next_at_or_after(at_ms) {
            next = Some(next.map_or(start, |n| n.min(start)));
        }
    }
    inside.ok_or(next)
}

/// `endBehavior`: what happens to a job at its end time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum EndBehavior {
    /// No more executions are created; those created go on.
    StopRollout,
    Cancel,
    ForceCancel,
}

impl EndBehavior {
    pub(crate) fn parse(name: &str) -> Option<EndBehavior> {
        match name {
            "STOP_ROLLOUT" => Some(EndBehavior::StopRollout),
            "CANCEL" => Some(EndBehavior::Cancel),
            "FORCE_CANCEL" => Some(EndBehavior::ForceCancel),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            EndBehavior::StopRollout => "STOP_ROLLOUT",
            EndBehavior::Cancel => "CANCEL",
            EndBehavior::ForceCancel => "FORCE_CANCEL",
        }
    }
}

impl Schedule {
    /// AWS's rules, with `minute_ms` for a minute: a start at least
    /// `lead_minutes` and at most a year ahead; an end at least
    /// `lead_minutes` after the start (or now) and at most two years after
    /// it.
    pub(crate) fn check(
        &self,
        now: i64,
        minute_ms: i64,
        lead_minutes: i64,
    ) -> Result<(), AwsError> {
        let lead = lead_minutes.saturating_mul(minute_ms);
        if let Some(start) = self.start_ms {
            if start < now.saturating_add(lead) {
                return Err(invalid(format!(
                    "startTime must be at least {lead_minutes} minutes from now"
                )));
            }
            if start > now.saturating_add(MAX_START_AHEAD_MINUTES.saturating_mul(minute_ms)) {
                return Err(invalid("startTime must be at most a year from now"));
            }
        }
        for window in &self.windows {
            if let Err(why) = Cron::parse(&window.start) {
                return Err(invalid(format!(
                    "maintenanceWindows startTime {:?}: {why}",
                    window.start
                )));
            }
            if !(1..=MAX_WINDOW_MINUTES).contains(&window.duration_minutes) {
                return Err(invalid(format!(
                    "maintenanceWindows durationInMinutes must be 1 to {MAX_WINDOW_MINUTES}"
                )));
            }
        }
        if let Some(end) = self.end_ms {
            let from = self.start_ms.unwrap_or(now);
            if end < from.saturating_add(lead) {
                return Err(invalid(format!(
                    "endTime must be at least {lead_minutes} minutes after startTime"
                )));
            }
            if end > from.saturating_add(MAX_RUN_MINUTES.saturating_mul(minute_ms)) {
                return Err(invalid("endTime must be at most two years after startTime"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    #[test]
    fn a_maximum_rate_allows_that_many_per_minute() {
        let rollout = Rollout {
            maximum_per_minute: Some(3),
            exponential: None,
        };
        let mut progress = RolloutProgress::default();
        assert_eq!(progress.allowance(&rollout, 1_000, MINUTE, 0), 3);
        progress.created(2);
        assert_eq!(progress.allowance(&rollout, 2_000, MINUTE, 0), 1);
        progress.created(1);
        assert_eq!(progress.allowance(&rollout, 60_999, MINUTE, 0), 0);
        assert_eq!(progress.next_window_ms(MINUTE), 61_000);
        assert_eq!(progress.allowance(&rollout, 61_000, MINUTE, 0), 3);
    }

    #[test]
    fn an_exponential_rate_grows_when_its_criterion_is_met_up_to_the_maximum() {
        let rollout = Rollout {
            maximum_per_minute: Some(10),
            exponential: Some(ExponentialRate {
                base_per_minute: 2,
                factor_tenths: 25,
                criterion: RateIncrease::NotifiedThings(2),
            }),
        };
        let mut progress = RolloutProgress::default();
        let mut t = 0;
        let mut per_minute = Vec::new();
        for _ in 0..4 {
            let n = progress.allowance(&rollout, t, MINUTE, 0);
            progress.created(n);
            per_minute.push(n);
            t += MINUTE;
        }
        // 2, then 5, then 12.5 capped at 10.
        assert_eq!(per_minute, [2, 5, 10, 10]);
    }

    #[test]
    fn a_succeeded_criterion_waits_for_successes() {
        let rollout = Rollout {
            maximum_per_minute: None,
            exponential: Some(ExponentialRate {
                base_per_minute: 4,
                factor_tenths: 20,
                criterion: RateIncrease::SucceededThings(3),
            }),
        };
        let mut progress = RolloutProgress::default();
        assert_eq!(progress.allowance(&rollout, 0, MINUTE, 0), 4);
        progress.created(4);
        assert_eq!(progress.allowance(&rollout, MINUTE, MINUTE, 2), 4);
        progress.created(4);
        assert_eq!(progress.allowance(&rollout, 2 * MINUTE, MINUTE, 3), 8);
    }

    #[test]
    fn maintenance_windows() {
        let window = |start: &str, duration_minutes| MaintenanceWindow {
            start: start.into(),
            duration_minutes,
        };
        // 2026-12-06T01:30Z.
        let now = 1_796_520_600_000;
        let nightly = [
            window("cron(0 1 * * ? *)", 60),
            window("cron(0 22 * * ? *)", 30),
        ];
        assert_eq!(window_at(&nightly, now, MINUTE), Ok(now + 30 * MINUTE));
        let later = now + 40 * MINUTE;
        // Outside both: the next start is 22:00.
        assert_eq!(
            window_at(&nightly, later, MINUTE),
            Err(Some(now + (20 * 60 + 30) * MINUTE))
        );
        assert_eq!(
            window_at(&[window("cron(0 0 1 JAN ? 2020)", 60)], now, MINUTE),
            Err(None)
        );
        let bad = Schedule {
            start_ms: None,
            end_ms: None,
            end_behavior: EndBehavior::StopRollout,
            windows: vec![window("cron(0 1 * * ? *)", 1_431)],
        };
        assert!(bad.check(now, MINUTE, 30).is_err());
    }

    #[test]
    fn limits() {
        let ok = Rollout {
            maximum_per_minute: Some(1_000),
            exponential: None,
        };
        assert!(ok.check().is_ok());
        for bad in [
            Rollout {
                maximum_per_minute: Some(0),
                exponential: None,
            },
            Rollout {
                maximum_per_minute: Some(1_001),
                exponential: None,
            },
            Rollout {
                maximum_per_minute: None,
                exponential: None,
            },
            Rollout {
                maximum_per_minute: None,
                exponential: Some(ExponentialRate {
                    base_per_minute: 1,
                    factor_tenths: 10,
                    criterion: RateIncrease::NotifiedThings(1),
                }),
            },
            Rollout {
                maximum_per_minute: None,
                exponential: Some(ExponentialRate {
                    base_per_minute: 1,
                    factor_tenths: 11,
                    criterion: RateIncrease::SucceededThings(0),
                }),
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        let schedule = |start, end| Schedule {
            start_ms: start,
            end_ms: end,
            end_behavior: EndBehavior::StopRollout,
            windows: Vec::new(),
        };
        let now = 1_000 * MINUTE;
        assert!(
            schedule(Some(now + 30 * MINUTE), None)
                .check(now, MINUTE, 30)
                .is_ok()
        );
        assert!(
            schedule(Some(now + 29 * MINUTE), None)
                .check(now, MINUTE, 30)
                .is_err()
        );
        assert!(
            schedule(Some(now + 30 * MINUTE), Some(now + 59 * MINUTE))
                .check(now, MINUTE, 30)
                .is_err()
        );
        assert!(
            schedule(Some(now + 30 * MINUTE), Some(now + 60 * MINUTE))
                .check(now, MINUTE, 30)
                .is_ok()
        );
    }
}
