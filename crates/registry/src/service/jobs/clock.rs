//! A job's clock: the jobs with a `jobExecutionsRolloutConfig` or a
//! `schedulingConfig` create their executions over time, not at once. The
//! things such a job reaches wait in a list until the rate allows them an
//! execution; a scheduled job is SCHEDULED until its start time, and at its
//! end time stops its rollout or is cancelled. Everything is state, written
//! with the changes that cause it, so a restart resumes where it was:
//!
//! - `jobclock/<id>`: the job's [`Clock`].
//! - `jobwaiting/<id>/<thing>`: things waiting for their execution.
//! - `jobtimer/<ms>/<id>`: when a job's clock next needs a look; the
//!   registry's timer ([`Registry::run_job_clocks`]) looks at the due ones.

use std::collections::BTreeSet;

use herald_proto::error::AwsError;
use herald_store::{key, now_ms, prefix};
use serde::{Deserialize, Serialize};

use super::{Changes, Registry, exec_key, job_key, load_counts, queue_execution, things_under};
use crate::{
    domain::{
        jobs::{Execution, ExecutionStatus, Job, JobStatus, arn_resource},
        rollout::{EndBehavior, RolloutProgress, window_at},
    },
    service::{group_key, thing_key},
};

/// The state of a job's clock.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Clock {
    /// How long a minute of this job lasts (fixed when it was created).
    pub(super) minute_ms: i64,
    pub(super) progress: RolloutProgress,
    /// Things in the waiting list.
    pub(super) waiting: u64,
    /// The entry of the job in the timer index, if any.
    pub(super) wake_ms: Option<i64>,
    /// The job's end time has passed and its end behaviour was applied.
    pub(super) ended: bool,
}

fn clock_key(id: &str) -> Vec<u8> {
    key(&["jobclock", id])
}

fn waiting_key(id: &str, thing: &str) -> Vec<u8> {
    key(&["jobwaiting", id, thing])
}

fn timer_key(ms: i64, id: &str) -> Vec<u8> {
    key(&["jobtimer", &format!("{ms:020}"), id])
}

pub(super) fn load_clock(c: &Changes<'_>, id: &str) -> Result<Option<Clock>, AwsError> {
    c.get(&clock_key(id))
}

/// Whether `job` creates its executions over time (a rollout rate, or
/// maintenance windows): the things it reaches wait for them.
fn throttled(job: &Job) -> bool {
    job.rollout.is_some() || job.schedule.as_ref().is_some_and(|s| !s.windows.is_empty())
}

/// Whether `job` holds things back: they wait for their executions.
pub(super) fn has_waiting(c: &Changes<'_>, job: &Job) -> Result<bool, AwsError> {
    if !throttled(job) {
        return Ok(false);
    }
    Ok(load_clock(c, &job.id)?.is_some_and(|clock| clock.waiting > 0))
}

/// Gives a new job with a rollout or a schedule its clock.
pub(super) fn start_clock(c: &mut Changes<'_>, job: &Job, minute_ms: i64) -> Result<(), AwsError> {
    if job.rollout.is_none() && job.schedule.is_none() {
        return Ok(());
    }
    let clock = Clock {
        minute_ms,
        ..Clock::default()
    };
    c.put(clock_key(&job.id), &clock)
}

/// The things `job`'s targets reach now (those that still exist).
pub(super) fn targeted_things(c: &Changes<'_>, job: &Job) -> Result<BTreeSet<String>, AwsError> {
    let mut things = BTreeSet::new();
    for arn in &job.targets {
        match arn_resource(arn) {
            Some(("thing", name)) if c.exists(&thing_key(name))? => {
                things.insert(name.to_owned());
            }
            Some(("thinggroup", name)) if c.exists(&group_key(name))? => {
                things.extend(things_under(c, name)?);
            }
            _ => {}
        }
    }
    Ok(things)
}

/// `job` reaches `thing`: an execution is queued now, or, for a job with a
/// rollout or maintenance windows, once its rate and windows allow
/// ([`tick`] creates it). A thing with an execution other than a REMOVED
/// one is reached already.
pub(super) fn reach(c: &mut Changes<'_>, job: &Job, thing: &str) -> Result<(), AwsError> {
    if !throttled(job) {
        queue_execution(c, job, thing, now_ms())?;
        return Ok(());
    }
    if c.get::<Execution>(&exec_key(&job.id, thing))?
        .is_some_and(|e| e.status != ExecutionStatus::Removed)
    {
        return Ok(());
    }
    let waiting = waiting_key(&job.id, thing);
    if c.exists(&waiting)? {
        return Ok(());
    }
    c.put(waiting, &())?;
    let mut clock = load_clock(c, &job.id)?.unwrap_or_default();
    clock.waiting += 1;
    c.put(clock_key(&job.id), &clock)
}

/// `thing` no longer waits for an execution of job `id`.
pub(super) fn unwait(c: &mut Changes<'_>, id: &str, thing: &str) -> Result<(), AwsError> {
    let waiting = waiting_key(id, thing);
    if !c.exists(&waiting)? {
        return Ok(());
    }
    c.remove(waiting);
    if let Some(mut clock) = load_clock(c, id)? {
        clock.waiting = clock.waiting.saturating_sub(1);
        c.put(clock_key(id), &clock)?;
    }
    Ok(())
}

/// Empties job `id`'s waiting list: those things get no execution.
pub(super) fn drop_waiting(c: &mut Changes<'_>, id: &str) -> Result<(), AwsError> {
    let Some(mut clock) = load_clock(c, id)? else {
        return Ok(());
    };
    let list = prefix(&["jobwaiting", id]);
    for thing in c.keys(&list)? {
        c.remove(waiting_key(id, &thing));
    }
    clock.waiting = 0;
    c.put(clock_key(id), &clock)
}

/// Removes job `id`'s clock with its waiting list and timer entry.
pub(super) fn delete_clock(c: &mut Changes<'_>, id: &str) -> Result<(), AwsError> {
    let Some(clock) = load_clock(c, id)? else {
        return Ok(());
    };
    drop_waiting(c, id)?;
    if let Some(wake) = clock.wake_ms {
        c.remove(timer_key(wake, id));
    }
    c.remove(clock_key(id));
    Ok(())
}

/// Moves job `id`'s clock to `now`: a scheduled job whose start time has
/// come starts (the things its targets reach now are reached); a job whose
/// end time has come stops its rollout or is cancelled, as its
/// `endBehavior` says; a rollout creates as many executions as its rate
/// allows this minute. Then sets when the clock next needs a look.
pub(super) fn tick(c: &mut Changes<'_>, id: &str, now: i64) -> Result<(), AwsError> {
    let Some(mut job) = c.get::<Job>(&job_key(id))? else {
        return delete_clock(c, id);
    };
    if job.status == JobStatus::Scheduled
        && job
            .schedule
            .as_ref()
            .and_then(|s| s.start_ms)
            .is_none_or(|start| start <= now)
    {
        job.status = JobStatus::InProgress;
        job.updated_ms = now;
        c.put(job_key(id), &job)?;
        for thing in targeted_things(c, &job)? {
            reach(c, &job, &thing)?;
        }
    }
    let Some(mut clock) = load_clock(c, id)? else {
        return super::complete_if_done(c, id);
    };
    let end = job
        .schedule
        .as_ref()
        .and_then(|s| s.end_ms.map(|end| (end, s.end_behavior)));
    let windows = job
        .schedule
        .as_ref()
        .map(|s| s.windows.clone())
        .unwrap_or_default();
    if let Some((end_ms, behavior)) = end
        && !clock.ended
        && end_ms <= now
        && job.status == JobStatus::InProgress
    {
        clock.ended = true;
        c.put(clock_key(id), &clock)?;
        drop_waiting(c, id)?;
        let comment = || Some(format!("Canceled at its endTime ({})", behavior.name()));
        match behavior {
            EndBehavior::StopRollout => {}
            EndBehavior::Cancel => job = super::cancel(c, job, false, None, comment())?,
            EndBehavior::ForceCancel => job = super::cancel(c, job, true, None, comment())?,
        }
        clock = load_clock(c, id)?.unwrap_or_default();
    }
    // Outside every maintenance window (`Err(next start)`), nothing is
    // created.
    let window = if windows.is_empty() {
        Ok(i64::MAX)
    } else {
        window_at(&windows, now, clock.minute_ms)
    };
    if throttled(&job) && job.status == JobStatus::InProgress && clock.waiting > 0 && window.is_ok()
    {
        let allowance = match &job.rollout {
            Some(rollout) => {
                let succeeded = load_counts(c, id)?.succeeded;
                clock
                    .progress
                    .allowance(rollout, now, clock.minute_ms, succeeded)
            }
            None => u64::MAX,
        };
        let batch = usize::try_from(allowance).unwrap_or(usize::MAX);
        let mut created = 0;
        for thing in c.first_keys(&prefix(&["jobwaiting", id]), batch)? {
            c.remove(waiting_key(id, &thing));
            clock.waiting = clock.waiting.saturating_sub(1);
            // A thing deleted while it waited gets nothing.
            if c.exists(&thing_key(&thing))? && queue_execution(c, &job, &thing, now)? {
                created += 1;
            }
        }
        clock.progress.created(created);
    }
    let mut next: Option<i64> = None;
    let mut consider = |at: i64| next = Some(next.map_or(at, |n| n.min(at)));
    if job.status == JobStatus::Scheduled
        && let Some(start) = job.schedule.as_ref().and_then(|s| s.start_ms)
    {
        consider(start);
    }
    if let Some((end_ms, _)) = end
        && !clock.ended
        && matches!(job.status, JobStatus::Scheduled | JobStatus::InProgress)
    {
        consider(end_ms);
    }
    if job.status == JobStatus::InProgress && clock.waiting > 0 {
        match window {
            // Inside a window: the rate's next minute, or the window's end.
            Ok(end) => {
                if job.rollout.is_some() {
                    consider(clock.progress.next_window_ms(clock.minute_ms));
                }
                if end != i64::MAX {
                    consider(end);
                }
            }
            Err(Some(start)) => consider(start),
            Err(None) => {}
        }
    }
    if clock.wake_ms != next {
        if let Some(wake) = clock.wake_ms {
            c.remove(timer_key(wake, id));
        }
        if let Some(at) = next {
            c.put(timer_key(at, id), &())?;
        }
        clock.wake_ms = next;
    }
    c.put(clock_key(id), &clock)?;
    super::complete_if_done(c, id)
}

/// A timer index entry: (when, job id).
fn timer_entry(suffix: &str) -> Option<(i64, &str)> {
    let (at, id) = suffix.split_once('\0')?;
    Some((at.parse().ok()?, id))
}

impl Registry {
    /// Moves the clocks of the jobs whose timer is due at `now`; returns
    /// how many.
    pub(crate) async fn tick_due_jobs(&self, now: i64) -> Result<usize, AwsError> {
        // Read off the writer first: the index is in time order, so its
        // first entry tells whether anything is due.
        let first = self.store.iter(&prefix(&["jobtimer"]), None).next();
        let due = match first {
            Some(entry) => {
                let (suffix, _) = entry?;
                timer_entry(&suffix).is_none_or(|(at, _)| at <= now)
            }
            None => false,
        };
        if !due {
            return Ok(0);
        }
        self.writer
            .mutate(move |c| {
                let mut ticked = 0;
                let index = prefix(&["jobtimer"]);
                for suffix in c.keys(&index)? {
                    let Some((at, id)) = timer_entry(&suffix) else {
                        let mut stale = index.clone();
                        stale.extend_from_slice(suffix.as_bytes());
                        c.remove(stale);
                        continue;
                    };
                    if at > now {
                        break;
                    }
                    c.remove(timer_key(at, id));
                    if let Some(mut clock) = load_clock(c, id)?
                        && clock.wake_ms == Some(at)
                    {
                        clock.wake_ms = None;
                        c.put(clock_key(id), &clock)?;
                    }
                    // The writer's own time: executions are queued at the
                    // start of the minute they count in.
                    tick(c, id, now_ms())?;
                    ticked += 1;
                }
                Ok(ticked)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_entries_are_read_back() {
        assert_eq!(
            timer_entry("00000000001700000000\0fw-2"),
            Some((1_700_000_000, "fw-2"))
        );
        assert_eq!(timer_entry("x\0a"), None);
        assert_eq!(timer_entry("1"), None);
    }
}
