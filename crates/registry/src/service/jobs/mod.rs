//! Jobs and their executions: what the control plane (`control`) and the
//! device side (`device`) share: keys, loaders, the targets of a job, and
//! the one way an execution changes (`save_execution`), which keeps each
//! job's counts, logs the execution's event and completes a snapshot job
//! whose executions are all final, in the same change.
//!
//! State:
//! - `job/<id>`: the [`Job`]; `jobcounts/<id>`: its [`ProcessDetails`].
//! - `jobexec/<id>/<thing>`: the thing's latest attempt ([`Execution`]);
//!   `jobexecold/<id>/<thing>/<number>`: earlier attempts.
//! - `thingjob/<thing>/<id>`: the jobs with an execution for a thing.
//! - `jobgroup/<group>/<id>`: the jobs targeting a group.
//! - `jobtemplate/<id>`: job templates.
//! - `jobdeadline/<ms>/<id>/<thing>`: the IN_PROGRESS executions with a
//!   timeout, by deadline (`timeouts` times them out).
//! - `jobclock/...`, `jobwaiting/...`, `jobtimer/...`: rollouts and
//!   schedules (`clock`).

mod clock;
mod control;
mod device;
mod documents;
mod membership;
mod templates;
mod timeouts;

use std::collections::BTreeSet;

use herald_proto::error::AwsError;
use herald_store::{key, now_ms, prefix};

use super::{Changes, Registry, group_key};
use crate::domain::{
    Event, EventBody, ExecutionEventKind, JobEventKind, NotifyKind, ThingGroup,
    jobs::{
        Actor, Execution, ExecutionStatus, Job, JobStatus, ProcessDetails, TargetSelection,
        retries_after, transition,
    },
    not_found,
};

pub(crate) use control::{JobFilter, JobUpdate, NewJob};
pub(crate) use device::{DeviceUpdate, Pending};
pub(super) use membership::{thing_deleted, thing_joined, thing_left};
pub(crate) use templates::NewTemplate;

fn job_key(id: &str) -> Vec<u8> {
    key(&["job", id])
}

fn counts_key(id: &str) -> Vec<u8> {
    key(&["jobcounts", id])
}

fn exec_key(job: &str, thing: &str) -> Vec<u8> {
    key(&["jobexec", job, thing])
}

fn old_exec_key(job: &str, thing: &str, number: i64) -> Vec<u8> {
    key(&["jobexecold", job, thing, &format!("{number:020}")])
}

fn thing_job_key(thing: &str, job: &str) -> Vec<u8> {
    key(&["thingjob", thing, job])
}

fn job_group_key(group: &str, job: &str) -> Vec<u8> {
    key(&["jobgroup", group, job])
}

fn deadline_key(deadline_ms: i64, job: &str, thing: &str) -> Vec<u8> {
    key(&["jobdeadline", &format!("{deadline_ms:020}"), job, thing])
}

/// Drops an execution's entry in the deadline index (it is deleted, or
/// replaced by `next`).
fn move_deadline(
    c: &mut Changes<'_>,
    previous: Option<&Execution>,
    next: Option<&Execution>,
) -> Result<(), AwsError> {
    let old = previous.and_then(|e| Some((e.deadline_ms()?, e)));
    let new = next.and_then(|e| Some((e.deadline_ms()?, e)));
    if old.map(|(d, _)| d) == new.map(|(d, _)| d) {
        return Ok(());
    }
    if let Some((deadline, e)) = old {
        c.remove(deadline_key(deadline, &e.job_id, &e.thing_name));
    }
    if let Some((deadline, e)) = new {
        c.put(deadline_key(deadline, &e.job_id, &e.thing_name), &())?;
    }
    Ok(())
}

fn load_job(c: &Changes<'_>, id: &str) -> Result<Job, AwsError> {
    c.get(&job_key(id))?
        .ok_or_else(|| not_found(format!("Job {id} cannot be found.")))
}

fn load_counts(c: &Changes<'_>, id: &str) -> Result<ProcessDetails, AwsError> {
    Ok(c.get(&counts_key(id))?.unwrap_or_default())
}

fn load_execution(c: &Changes<'_>, job: &str, thing: &str) -> Result<Execution, AwsError> {
    c.get(&exec_key(job, thing))?.ok_or_else(|| {
        not_found(format!(
            "Job execution of job {job} on thing {thing} cannot be found."
        ))
    })
}

/// Logs a job event with the job as it is now.
fn job_event(c: &mut Changes<'_>, kind: JobEventKind, job: &Job) -> Result<(), AwsError> {
    let details = load_counts(c, &job.id)?;
    c.log(Event {
        operation: None,
        body: EventBody::Job {
            kind,
            job: Box::new(job.clone()),
            details,
        },
    });
    Ok(())
}

fn execution_event(c: &mut Changes<'_>, kind: ExecutionEventKind, execution: &Execution) {
    c.log(Event {
        operation: None,
        body: EventBody::JobExecution {
            kind,
            execution: execution.clone(),
        },
    });
}

/// The pending executions of `thing`, in the order devices get them: by
/// the time they were queued, then by job id.
fn pending(c: &Changes<'_>, thing: &str) -> Result<Pending, AwsError> {
    let mut all = Vec::new();
    for job in c.keys(&prefix(&["thingjob", thing]))? {
        if let Some(execution) = c.get::<Execution>(&exec_key(&job, thing))?
            && !execution.status.is_terminal()
        {
            all.push(execution);
        }
    }
    all.sort_by(|a, b| (a.queued_ms, &a.job_id).cmp(&(b.queued_ms, &b.job_id)));
    let (in_progress, queued) = all
        .into_iter()
        .partition(|e| e.status == ExecutionStatus::InProgress);
    Ok(Pending {
        in_progress,
        queued,
    })
}

/// The job ids of a thing's pending list, the next one first.
fn pending_ids(c: &Changes<'_>, thing: &str) -> Result<Vec<String>, AwsError> {
    let pending = pending(c, thing)?;
    Ok(pending
        .in_progress
        .iter()
        .chain(&pending.queued)
        .map(|e| e.job_id.clone())
        .collect())
}

/// Logs `notify` when an execution joined or left `thing`'s pending list
/// since it was `before`, and `notify-next` when its head changed.
fn notify_if_changed(c: &mut Changes<'_>, thing: &str, before: &[String]) -> Result<(), AwsError> {
    let now = pending(c, thing)?;
    let after: Vec<&str> = now
        .in_progress
        .iter()
        .chain(&now.queued)
        .map(|e| e.job_id.as_str())
        .collect();
    let mut was: Vec<&str> = before.iter().map(String::as_str).collect();
    let mut is = after.clone();
    was.sort_unstable();
    is.sort_unstable();
    let mut kinds = Vec::new();
    if was != is {
        kinds.push(NotifyKind::Notify);
    }
    if before.first().map(String::as_str) != after.first().copied() {
        kinds.push(NotifyKind::NotifyNext);
    }
    for kind in kinds {
        let next_document = match (kind, after.first()) {
            (NotifyKind::NotifyNext, Some(next)) => load_job(c, next)?.document,
            _ => None,
        };
        c.log(Event {
            operation: None,
            body: EventBody::JobsNotify {
                kind,
                thing_name: thing.to_owned(),
                in_progress: now.in_progress.clone(),
                queued: now.queued.clone(),
                next_document,
            },
        });
    }
    Ok(())
}

/// Stores a new or changed execution (`before`: its status before the
/// change, `None` for a new one): the job's counts follow, the event of a
/// final status is logged, the thing's devices are notified when its
/// pending list changed, and a snapshot job whose executions are now all
/// final completes.
fn save_execution(
    c: &mut Changes<'_>,
    before: Option<ExecutionStatus>,
    execution: &Execution,
) -> Result<(), AwsError> {
    let job_id = &execution.job_id;
    let pending_before = pending_ids(c, &execution.thing_name)?;
    let previous = c.get::<Execution>(&exec_key(job_id, &execution.thing_name))?;
    move_deadline(c, previous.as_ref(), Some(execution))?;
    let mut counts = load_counts(c, job_id)?;
    if let Some(before) = before {
        counts.uncount(before);
    } else {
        c.put(thing_job_key(&execution.thing_name, job_id), &())?;
    }
    counts.count(execution.status);
    c.put(counts_key(job_id), &counts)?;
    c.put(exec_key(job_id, &execution.thing_name), execution)?;
    if before != Some(execution.status)
        && let Some(kind) = ExecutionEventKind::reaching(execution.status)
    {
        execution_event(c, kind, execution);
        retry_if_allowed(c, execution)?;
        abort_if_due(c, job_id)?;
    }
    notify_if_changed(c, &execution.thing_name, &pending_before)?;
    complete_if_done(c, job_id)
}

/// Queues a new attempt of an execution that just failed or timed out, if
/// its job (still in progress) retries that failure once more.
fn retry_if_allowed(c: &mut Changes<'_>, failed: &Execution) -> Result<(), AwsError> {
    let Some(job) = c.get::<Job>(&job_key(&failed.job_id))? else {
        return Ok(());
    };
    if job.status != JobStatus::InProgress
        || !retries_after(&job.retry, failed.status, failed.retry_attempt)
    {
        return Ok(());
    }
    let thing = &failed.thing_name;
    c.put(
        old_exec_key(&job.id, thing, failed.execution_number),
        failed,
    )?;
    let mut counts = load_counts(c, &job.id)?;
    counts.uncount(failed.status);
    c.put(counts_key(&job.id), &counts)?;
    c.remove(exec_key(&job.id, thing));
    let mut next = Execution::queued(&job.id, thing, failed.execution_number + 1, now_ms());
    next.retry_attempt = failed.retry_attempt + 1;
    save_execution(c, None, &next)
}

/// Cancels `job`: its QUEUED executions (and with `force` its IN_PROGRESS
/// ones) are cancelled. Logs `cancellation_in_progress`, each execution's
/// `canceled`, then the job's `canceled`.
fn cancel(
    c: &mut Changes<'_>,
    mut job: Job,
    force: bool,
    reason_code: Option<String>,
    comment: Option<String>,
) -> Result<Job, AwsError> {
    let now = now_ms();
    job.status = JobStatus::Canceled;
    job.force_canceled |= force;
    job.reason_code = reason_code.or(job.reason_code);
    job.comment = comment.or(job.comment);
    job.updated_ms = now;
    c.put(job_key(&job.id), &job)?;
    clock::drop_waiting(c, &job.id)?;
    job_event(c, JobEventKind::CancellationInProgress, &job)?;
    for thing in c.keys(&prefix(&["jobexec", &job.id]))? {
        let mut execution = load_execution(c, &job.id, &thing)?;
        let before = execution.status;
        if transition(Actor::Service { force }, before, ExecutionStatus::Canceled).is_err() {
            continue;
        }
        execution.force_canceled = force;
        execution.set(ExecutionStatus::Canceled, None, now);
        save_execution(c, Some(before), &execution)?;
    }
    job_event(c, JobEventKind::Canceled, &job)?;
    Ok(job)
}

/// Cancels a job in progress whose `abortConfig` a criterion now meets.
fn abort_if_due(c: &mut Changes<'_>, job_id: &str) -> Result<(), AwsError> {
    let Some(job) = c.get::<Job>(&job_key(job_id))? else {
        return Ok(());
    };
    if job.status != JobStatus::InProgress || job.abort.is_empty() {
        return Ok(());
    }
    let counts = load_counts(c, job_id)?;
    let Some(why) = job
        .abort
        .iter()
        .find_map(|criterion| criterion.met(&counts))
    else {
        return Ok(());
    };
    cancel(c, job, false, None, Some(why))?;
    Ok(())
}

/// Completes a snapshot job that is in progress with no pending execution.
fn complete_if_done(c: &mut Changes<'_>, job_id: &str) -> Result<(), AwsError> {
    let Some(mut job) = c.get::<Job>(&job_key(job_id))? else {
        return Ok(());
    };
    if job.status != JobStatus::InProgress || job.target_selection != TargetSelection::Snapshot {
        return Ok(());
    }
    if load_counts(c, job_id)?.pending() > 0 || clock::has_waiting(c, &job)? {
        return Ok(());
    }
    let now = now_ms();
    job.status = JobStatus::Completed;
    job.completed_ms = Some(now);
    job.updated_ms = now;
    c.put(job_key(job_id), &job)?;
    job_event(c, JobEventKind::Completed, &job)
}

/// Queues an execution of `job` for `thing` (at `now`) unless it has a pending or
/// final one already; a thing whose last execution was REMOVED (it left a
/// continuous job's groups) gets a new attempt. Returns whether one was
/// queued.
fn queue_execution(
    c: &mut Changes<'_>,
    job: &Job,
    thing: &str,
    now: i64,
) -> Result<bool, AwsError> {
    let number = match c.get::<Execution>(&exec_key(&job.id, thing))? {
        None => 1,
        Some(last) if last.status == ExecutionStatus::Removed => {
            c.put(old_exec_key(&job.id, thing, last.execution_number), &last)?;
            let mut counts = load_counts(c, &job.id)?;
            counts.uncount(last.status);
            c.put(counts_key(&job.id), &counts)?;
            c.remove(exec_key(&job.id, thing));
            last.execution_number + 1
        }
        Some(_) => return Ok(false),
    };
    let execution = Execution::queued(&job.id, thing, number, now);
    save_execution(c, None, &execution)?;
    Ok(true)
}

/// The names of `group` and every group below it.
fn group_and_descendants(c: &Changes<'_>, group: &str) -> Result<BTreeSet<String>, AwsError> {
    let mut found = BTreeSet::from([group.to_owned()]);
    let mut queue = vec![group.to_owned()];
    while let Some(next) = queue.pop() {
        for child in c.keys(&prefix(&["child", &next]))? {
            if found.insert(child.clone()) {
                queue.push(child);
            }
        }
    }
    Ok(found)
}

/// The things in `group` and in the groups below it (a job targeting a
/// group reaches them all).
fn things_under(c: &Changes<'_>, group: &str) -> Result<BTreeSet<String>, AwsError> {
    let mut things = BTreeSet::new();
    for g in group_and_descendants(c, group)? {
        things.extend(c.keys(&prefix(&["gmem", &g]))?);
    }
    Ok(things)
}

/// `group` and its ancestors: the groups whose jobs reach a member of it.
fn group_and_ancestors(c: &Changes<'_>, group: &str) -> Result<Vec<String>, AwsError> {
    let Some(g) = c.get::<ThingGroup>(&group_key(group))? else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = g.ancestors.iter().map(|a| a.name.clone()).collect();
    names.push(g.name);
    Ok(names)
}

impl Registry {
    pub(crate) fn job_arn(&self, id: &str) -> String {
        self.arns().of("job", id)
    }
}
