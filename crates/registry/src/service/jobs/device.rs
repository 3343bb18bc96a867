//! The device side of jobs (botocore `iot-jobs-data`): a thing's pending
//! executions, starting the next one, and updating one.
//!
//! As on AWS, the thing need not be registered for these calls to answer (a
//! thing with no executions has nothing pending); an execution's thing
//! always exists, since only a job's targets get executions.

use herald_proto::error::{AwsError, ErrorType};
use herald_store::now_ms;

use super::{Registry, load_execution, load_job, old_exec_key, pending, save_execution};
use crate::domain::{
    check_name,
    jobs::{
        Actor, Execution, ExecutionStatus, Job, Refusal, StatusDetails, check_job_id,
        check_status_details, check_timeout, invalid_transition, transition,
    },
    not_found,
};

/// A thing's pending executions, each list oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pending {
    pub(crate) in_progress: Vec<Execution>,
    pub(crate) queued: Vec<Execution>,
}

/// What a device's UpdateJobExecution asks for.
#[derive(Debug, Clone)]
pub(crate) struct DeviceUpdate {
    pub(crate) job_id: String,
    pub(crate) thing: String,
    pub(crate) status: ExecutionStatus,
    pub(crate) details: Option<StatusDetails>,
    pub(crate) expected_version: Option<i64>,
    pub(crate) execution_number: Option<i64>,
    pub(crate) step_timeout_minutes: Option<i64>,
}

/// An update of an execution that already ended: AWS's
/// `InvalidStateTransitionException` ("for example, an attempt to change a
/// request in state SUCCESS to state IN_PROGRESS").
fn terminal_state(execution: &Execution) -> AwsError {
    invalid_transition(format!(
        "Job execution of job {} on thing {} is {}, a final status",
        execution.job_id,
        execution.thing_name,
        execution.status.name()
    ))
}

/// Starts an execution's timers as it goes IN_PROGRESS from `before`:
/// its job's in-progress timeout when it first starts, and a step timeout
/// whenever the device gives one (AWS IoT API Reference:
/// "UpdateJobExecution", `stepTimeoutInMinutes`).
fn start_timers(
    execution: &mut Execution,
    job: &Job,
    before: ExecutionStatus,
    step_minutes: Option<i64>,
    minute_ms: i64,
) {
    if execution.status != ExecutionStatus::InProgress {
        return;
    }
    let now = execution.updated_ms;
    if before == ExecutionStatus::Queued {
        execution.in_progress_deadline_ms = job
            .in_progress_timeout_minutes
            .map(|minutes| now.saturating_add(minutes.saturating_mul(minute_ms)));
    }
    if let Some(minutes) = step_minutes {
        execution.step_deadline_ms = Some(now.saturating_add(minutes.saturating_mul(minute_ms)));
    }
}

impl Registry {
    pub(crate) fn get_pending_job_executions(&self, thing: &str) -> Result<Pending, AwsError> {
        check_name("thing name", thing)?;
        pending(&self.reader(), thing)
    }

    /// StartNextPendingJobExecution: the oldest IN_PROGRESS execution as it
    /// is, or else the oldest QUEUED one, now IN_PROGRESS; `None` when
    /// nothing is pending.
    pub(crate) async fn start_next_pending_job_execution(
        &self,
        thing: String,
        details: Option<StatusDetails>,
        step_timeout_minutes: Option<i64>,
    ) -> Result<Option<(Execution, Job)>, AwsError> {
        check_name("thing name", &thing)?;
        if let Some(details) = &details {
            check_status_details(details)?;
        }
        if let Some(minutes) = step_timeout_minutes {
            check_timeout("stepTimeoutInMinutes", minutes)?;
        }
        let minute_ms = self.ctx.job_minute_ms;
        self.writer
            .mutate(move |c| {
                let pending = pending(c, &thing)?;
                let mut execution = match (pending.in_progress.first(), pending.queued.first()) {
                    (Some(started), _) => started.clone(),
                    (None, Some(queued)) => queued.clone(),
                    (None, None) => return Ok(None),
                };
                let job = load_job(c, &execution.job_id)?;
                if execution.status == ExecutionStatus::Queued {
                    let before = execution.status;
                    execution.set(ExecutionStatus::InProgress, details, now_ms());
                    start_timers(
                        &mut execution,
                        &job,
                        before,
                        step_timeout_minutes,
                        minute_ms,
                    );
                    save_execution(c, Some(before), &execution)?;
                }
                Ok(Some((execution, job)))
            })
            .await
    }

    /// UpdateJobExecution from the device: `expectedVersion` must match,
    /// an attempt other than the latest is final, and a final execution
    /// stays final (`InvalidStateTransitionException`).
    pub(crate) async fn update_job_execution(
        &self,
        update: DeviceUpdate,
    ) -> Result<(Execution, Job), AwsError> {
        check_job_id(&update.job_id)?;
        check_name("thing name", &update.thing)?;
        if let Some(details) = &update.details {
            check_status_details(details)?;
        }
        if let Some(minutes) = update.step_timeout_minutes {
            check_timeout("stepTimeoutInMinutes", minutes)?;
        }
        let minute_ms = self.ctx.job_minute_ms;
        self.writer
            .mutate(move |c| {
                let job = load_job(c, &update.job_id)?;
                let mut execution = load_execution(c, &update.job_id, &update.thing)?;
                if let Some(number) = update.execution_number
                    && number != execution.execution_number
                {
                    let old = c
                        .get::<Execution>(&old_exec_key(&update.job_id, &update.thing, number))?
                        .ok_or_else(|| {
                            not_found(format!(
                                "Job execution {number} of job {} on thing {} cannot be found.",
                                update.job_id, update.thing
                            ))
                        })?;
                    return Err(terminal_state(&old));
                }
                if let Some(expected) = update.expected_version
                    && expected != execution.version
                {
                    return Err(AwsError::new(
                        ErrorType::VersionConflict,
                        format!(
                            "The job execution's version is {}, not the expected {expected}",
                            execution.version
                        ),
                    ));
                }
                let before = execution.status;
                transition(Actor::Device, before, update.status).map_err(
                    |refusal| match refusal {
                        Refusal::Terminal => terminal_state(&execution),
                        Refusal::Transition => invalid_transition(format!(
                            "A device cannot move a job execution from {} to {}",
                            before.name(),
                            update.status.name()
                        )),
                    },
                )?;
                execution.set(update.status, update.details, now_ms());
                start_timers(
                    &mut execution,
                    &job,
                    before,
                    update.step_timeout_minutes,
                    minute_ms,
                );
                save_execution(c, Some(before), &execution)?;
                Ok((execution, job))
            })
            .await
    }
}
