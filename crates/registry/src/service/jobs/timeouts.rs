//! Job timeouts: an IN_PROGRESS execution past its deadline (its job's
//! in-progress timeout, or the step timeout its device set) becomes
//! TIMED_OUT. The deadlines are state (`jobdeadline/...`, written with the
//! execution), so they survive restarts; a timer looks for due ones.

use std::time::Duration;

use herald_proto::error::AwsError;
use herald_store::{key, now_ms, prefix};
use tokio_util::sync::CancellationToken;

use super::{Registry, exec_key, save_execution};
use crate::domain::jobs::{Execution, ExecutionStatus};

/// A deadline index entry: (deadline, job id, thing name).
fn entry(suffix: &str) -> Option<(i64, &str, &str)> {
    let mut parts = suffix.split('\0');
    let deadline = parts.next()?.parse().ok()?;
    let job = parts.next()?;
    let thing = parts.next()?;
    Some((deadline, job, thing))
}

impl Registry {
    /// Every `every`, times out the executions that are due and moves the
    /// clocks of the jobs whose rollout or schedule is due, until
    /// `shutdown`.
    pub(crate) async fn run_job_timers(self, every: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.time_out_due(now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(executions = n, "job executions timed out"),
                Err(e) => tracing::warn!(error = %e, "timing out job executions failed"),
            }
            match self.tick_due_jobs(now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(jobs = n, "job rollouts and schedules moved on"),
                Err(e) => tracing::warn!(error = %e, "moving job rollouts and schedules failed"),
            }
        }
    }

    /// Times out the IN_PROGRESS executions whose deadline is at or before
    /// `now`; returns how many.
    pub(crate) async fn time_out_due(&self, now: i64) -> Result<usize, AwsError> {
        // Read off the writer first: most ticks find nothing due, and the
        // index is in deadline order, so its first entry tells.
        let first = self.store.iter(&prefix(&["jobdeadline"]), None).next();
        let due = match first {
            Some(entry_read) => {
                let (suffix, _) = entry_read?;
                // An entry that does not parse is due: the writer drops it.
                entry(&suffix).is_none_or(|(deadline, _, _)| deadline <= now)
            }
            None => false,
        };
        if !due {
            return Ok(0);
        }
        self.writer
            .mutate(move |c| {
                let mut timed_out = 0;
                for suffix in c.keys(&prefix(&["jobdeadline"]))? {
                    let Some((deadline, job, thing)) = entry(&suffix) else {
                        let mut index = prefix(&["jobdeadline"]);
                        index.extend_from_slice(suffix.as_bytes());
                        c.remove(index);
                        continue;
                    };
                    if deadline > now {
                        break;
                    }
                    let index = key(&["jobdeadline", &format!("{deadline:020}"), job, thing]);
                    let Some(mut execution) = c.get::<Execution>(&exec_key(job, thing))? else {
                        c.remove(index);
                        continue;
                    };
                    if execution.deadline_ms().is_none_or(|d| d > now) {
                        // Stale: the execution moved on.
                        c.remove(index);
                        continue;
                    }
                    let before = execution.status;
                    execution.set(ExecutionStatus::TimedOut, None, now);
                    save_execution(c, Some(before), &execution)?;
                    c.remove(index);
                    timed_out += 1;
                }
                Ok(timed_out)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_entries_are_read_back() {
        assert_eq!(
            entry("00000000001700000000\0fw-2\0t:1"),
            Some((1_700_000_000, "fw-2", "t:1"))
        );
        assert_eq!(entry("x\0a\0b"), None);
        assert_eq!(entry("1\0a"), None);
    }
}
