//! Continuous jobs follow their groups: a thing that joins a target group
//! (or a group below one) gets an execution; one that no longer belongs to
//! any of a job's targets has its pending execution REMOVED, as has a
//! deleted thing. Each runs inside the membership change or the deletion.

use herald_proto::error::AwsError;
use herald_store::{now_ms, prefix};

use super::{Changes, clock, exec_key, group_and_ancestors, job_key, save_execution};
use crate::domain::jobs::{
    Actor, Execution, ExecutionStatus, Job, JobStatus, TargetSelection, transition,
};

/// The continuous jobs in progress that target `group` or a group above it.
fn continuous_jobs_over(c: &Changes<'_>, group: &str) -> Result<Vec<Job>, AwsError> {
    let mut jobs = Vec::new();
    for g in group_and_ancestors(c, group)? {
        for id in c.keys(&prefix(&["jobgroup", &g]))? {
            if let Some(job) = c.get::<Job>(&job_key(&id))?
                && job.target_selection == TargetSelection::Continuous
                && job.status == JobStatus::InProgress
                && !jobs.iter().any(|j: &Job| j.id == job.id)
            {
                jobs.push(job);
            }
        }
    }
    Ok(jobs)
}

/// Moves `thing`'s pending execution of `job_id`, if any, to REMOVED.
fn remove_execution(c: &mut Changes<'_>, job_id: &str, thing: &str) -> Result<(), AwsError> {
    let Some(mut execution) = c.get::<Execution>(&exec_key(job_id, thing))? else {
        return Ok(());
    };
    let before = execution.status;
    let removing = Actor::Service { force: true };
    if transition(removing, before, ExecutionStatus::Removed).is_err() {
        return Ok(());
    }
    execution.set(ExecutionStatus::Removed, None, now_ms());
    save_execution(c, Some(before), &execution)
}

/// `thing` has joined `group`.
pub(in crate::service) fn thing_joined(
    c: &mut Changes<'_>,
    thing: &str,
    group: &str,
) -> Result<(), AwsError> {
    for job in continuous_jobs_over(c, group)? {
        clock::reach(c, &job, thing)?;
        if job.rollout.is_some() {
            clock::tick(c, &job.id, now_ms())?;
        }
    }
    Ok(())
}

/// `thing` has left `group` (the membership is already gone).
pub(in crate::service) fn thing_left(
    c: &mut Changes<'_>,
    thing: &str,
    group: &str,
) -> Result<(), AwsError> {
    let remaining = c.keys(&prefix(&["tmem", thing]))?;
    for job in continuous_jobs_over(c, group)? {
        let mut still_reached = job.targets_thing(thing);
        for other in &remaining {
            if still_reached {
                break;
            }
            let above = group_and_ancestors(c, other)?;
            still_reached = job.target_groups().any(|g| above.iter().any(|a| a == g));
        }
        if !still_reached {
            clock::unwait(c, &job.id, thing)?;
            remove_execution(c, &job.id, thing)?;
        }
    }
    Ok(())
}

/// `thing` is being deleted: its pending executions are REMOVED.
pub(in crate::service) fn thing_deleted(c: &mut Changes<'_>, thing: &str) -> Result<(), AwsError> {
    for job in c.keys(&prefix(&["thingjob", thing]))? {
        remove_execution(c, &job, thing)?;
    }
    Ok(())
}
