//! The tonic adapter of the `Jobs` service, and the wire form of the jobs
//! events. Wire types stop here.

use herald_proto::{
    error::AwsError,
    registry::v1::{self as pb, jobs_server},
};
use herald_store::Page;
use tonic::{Request, Status};

use super::{Reply, reply, token};
use crate::{
    domain::{
        self, Arns, ExecutionEventKind, JobEventKind, NotifyKind,
        jobs::{
            AbortCriterion, AbortFailure, Execution, ExecutionStatus, FailureType, Job, JobStatus,
            JobTemplate, ProcessDetails, RetryCriterion, TargetSelection,
        },
        rollout::{
            EndBehavior, ExponentialRate, MaintenanceWindow, RateIncrease, Rollout, Schedule,
        },
    },
    partition::Partitions,
    service::{DeviceUpdate, JobFilter, JobUpdate, NewJob, NewTemplate},
};

/// The `Jobs` service: each call runs on the partition it names.
pub(crate) struct GrpcJobs {
    partitions: Partitions,
}

impl GrpcJobs {
    pub(crate) fn new(partitions: Partitions) -> GrpcJobs {
        GrpcJobs { partitions }
    }
}

fn page(next_token: &str, max_results: u32) -> Result<Page, Status> {
    Page::new(next_token, max_results).map_err(|e| Status::from(domain::store_error(e)))
}

fn invalid(message: String) -> Status {
    Status::from(domain::invalid(message))
}

fn target_selection(raw: i32) -> Result<Option<TargetSelection>, Status> {
    match pb::TargetSelection::try_from(raw) {
        Ok(pb::TargetSelection::Unspecified) => Ok(None),
        Ok(pb::TargetSelection::Snapshot) => Ok(Some(TargetSelection::Snapshot)),
        Ok(pb::TargetSelection::Continuous) => Ok(Some(TargetSelection::Continuous)),
        Err(_) => Err(invalid(format!("unknown targetSelection {raw}"))),
    }
}

fn target_selection_to_pb(t: TargetSelection) -> pb::TargetSelection {
    match t {
        TargetSelection::Snapshot => pb::TargetSelection::Snapshot,
        TargetSelection::Continuous => pb::TargetSelection::Continuous,
    }
}

fn job_status(raw: i32) -> Result<Option<JobStatus>, Status> {
    match pb::JobStatus::try_from(raw) {
        Ok(pb::JobStatus::Unspecified) => Ok(None),
        Ok(pb::JobStatus::InProgress) => Ok(Some(JobStatus::InProgress)),
        Ok(pb::JobStatus::Canceled) => Ok(Some(JobStatus::Canceled)),
        Ok(pb::JobStatus::Completed) => Ok(Some(JobStatus::Completed)),
        Ok(pb::JobStatus::DeletionInProgress) => Ok(Some(JobStatus::DeletionInProgress)),
        Ok(pb::JobStatus::Scheduled) => Ok(Some(JobStatus::Scheduled)),
        Err(_) => Err(invalid(format!("unknown job status {raw}"))),
    }
}

fn job_status_to_pb(s: JobStatus) -> pb::JobStatus {
    match s {
        JobStatus::InProgress => pb::JobStatus::InProgress,
        JobStatus::Canceled => pb::JobStatus::Canceled,
        JobStatus::Completed => pb::JobStatus::Completed,
        JobStatus::DeletionInProgress => pb::JobStatus::DeletionInProgress,
        JobStatus::Scheduled => pb::JobStatus::Scheduled,
    }
}

fn rollout(r: &pb::RolloutConfig) -> Result<Rollout, Status> {
    let exponential = match &r.exponential_rate {
        None => None,
        Some(e) => {
            let tenths = e.increment_factor * 10.0;
            // One decimal at most, as AWS IoT accepts.
            let factor_tenths = if tenths.is_finite()
                && (tenths - tenths.round()).abs() < 1e-6
                && (0.0..=f64::from(u32::MAX)).contains(&tenths)
            {
                tenths.round() as u32
            } else {
                0
            };
            let criterion = match (e.number_of_notified_things, e.number_of_succeeded_things) {
                (Some(n), None) => RateIncrease::NotifiedThings(n),
                (None, Some(n)) => RateIncrease::SucceededThings(n),
                _ => {
                    return Err(invalid(
                        "rateIncreaseCriteria needs exactly one of numberOfNotifiedThings and numberOfSucceededThings".into(),
                    ));
                }
            };
            Some(ExponentialRate {
                base_per_minute: e.base_rate_per_minute,
                factor_tenths,
                criterion,
            })
        }
    };
    Ok(Rollout {
        maximum_per_minute: r.maximum_per_minute,
        exponential,
    })
}

fn rollout_to_pb(r: Rollout) -> pb::RolloutConfig {
    pb::RolloutConfig {
        maximum_per_minute: r.maximum_per_minute,
        exponential_rate: r.exponential.map(|e| {
            let (notified, succeeded) = match e.criterion {
                RateIncrease::NotifiedThings(n) => (Some(n), None),
                RateIncrease::SucceededThings(n) => (None, Some(n)),
            };
            pb::ExponentialRate {
                base_rate_per_minute: e.base_per_minute,
                increment_factor: f64::from(e.factor_tenths) / 10.0,
                number_of_notified_things: notified,
                number_of_succeeded_things: succeeded,
            }
        }),
    }
}

fn schedule(s: &pb::SchedulingConfig) -> Result<Schedule, Status> {
    let end_behavior = if s.end_behavior.is_empty() {
        EndBehavior::StopRollout
    } else {
        EndBehavior::parse(&s.end_behavior).ok_or_else(|| {
            invalid(format!(
                "endBehavior must be STOP_ROLLOUT, CANCEL or FORCE_CANCEL, not {:?}",
                s.end_behavior
            ))
        })?
    };
    Ok(Schedule {
        start_ms: s.start_time_ms,
        end_ms: s.end_time_ms,
        end_behavior,
        windows: s
            .maintenance_windows
            .iter()
            .map(|w| MaintenanceWindow {
                start: w.start_time.clone(),
                duration_minutes: w.duration_in_minutes,
            })
            .collect(),
    })
}

fn schedule_to_pb(s: Schedule) -> pb::SchedulingConfig {
    pb::SchedulingConfig {
        start_time_ms: s.start_ms,
        end_time_ms: s.end_ms,
        end_behavior: s.end_behavior.name().to_owned(),
        maintenance_windows: s
            .windows
            .into_iter()
            .map(|w| pb::MaintenanceWindow {
                start_time: w.start,
                duration_in_minutes: w.duration_minutes,
            })
            .collect(),
    }
}

fn execution_status(raw: i32) -> Result<Option<ExecutionStatus>, Status> {
    use pb::JobExecutionStatus as P;
    Ok(Some(match P::try_from(raw) {
        Ok(P::Unspecified) => return Ok(None),
        Ok(P::Queued) => ExecutionStatus::Queued,
        Ok(P::InProgress) => ExecutionStatus::InProgress,
        Ok(P::Succeeded) => ExecutionStatus::Succeeded,
        Ok(P::Failed) => ExecutionStatus::Failed,
        Ok(P::TimedOut) => ExecutionStatus::TimedOut,
        Ok(P::Rejected) => ExecutionStatus::Rejected,
        Ok(P::Removed) => ExecutionStatus::Removed,
        Ok(P::Canceled) => ExecutionStatus::Canceled,
        Err(_) => return Err(invalid(format!("unknown job execution status {raw}"))),
    }))
}

fn execution_status_to_pb(s: ExecutionStatus) -> pb::JobExecutionStatus {
    use pb::JobExecutionStatus as P;
    match s {
        ExecutionStatus::Queued => P::Queued,
        ExecutionStatus::InProgress => P::InProgress,
        ExecutionStatus::Succeeded => P::Succeeded,
        ExecutionStatus::Failed => P::Failed,
        ExecutionStatus::TimedOut => P::TimedOut,
        ExecutionStatus::Rejected => P::Rejected,
        ExecutionStatus::Removed => P::Removed,
        ExecutionStatus::Canceled => P::Canceled,
    }
}

fn abort_criterion(c: &pb::AbortCriterion) -> Result<AbortCriterion, Status> {
    let failure_type = AbortFailure::parse(&c.failure_type).ok_or_else(|| {
        invalid(format!(
            "failureType must be FAILED, REJECTED, TIMED_OUT or ALL, not {:?}",
            c.failure_type
        ))
    })?;
    if c.action != "CANCEL" {
        return Err(invalid(format!(
            "action must be CANCEL, not {:?}",
            c.action
        )));
    }
    if !(c.threshold_percentage > 0.0 && c.threshold_percentage <= 100.0) {
        return Err(invalid(
            "thresholdPercentage must be above 0 and at most 100".to_owned(),
        ));
    }
    Ok(AbortCriterion {
        failure_type,
        // Hundredths of a percent: at least 1, as the check above allows.
        threshold_bp: ((c.threshold_percentage * 100.0).round() as u32).max(1),
        min_executed: c.min_number_of_executed_things,
    })
}

fn abort_criteria(list: &[pb::AbortCriterion]) -> Result<Vec<AbortCriterion>, Status> {
    list.iter().map(abort_criterion).collect()
}

fn retry_criteria(list: &[pb::RetryCriterion]) -> Result<Vec<RetryCriterion>, Status> {
    list.iter()
        .map(|c| {
            let failure_type = FailureType::parse(&c.failure_type).ok_or_else(|| {
                invalid(format!(
                    "failureType must be FAILED, TIMED_OUT or ALL, not {:?}",
                    c.failure_type
                ))
            })?;
            Ok(RetryCriterion {
                failure_type,
                retries: c.number_of_retries,
            })
        })
        .collect()
}

fn abort_criteria_to_pb(list: &[AbortCriterion]) -> Vec<pb::AbortCriterion> {
    list.iter()
        .map(|c| pb::AbortCriterion {
            failure_type: c.failure_type.name().to_owned(),
            action: "CANCEL".to_owned(),
            threshold_percentage: f64::from(c.threshold_bp) / 100.0,
            min_number_of_executed_things: c.min_executed,
        })
        .collect()
}

fn retry_criteria_to_pb(list: &[RetryCriterion]) -> Vec<pb::RetryCriterion> {
    list.iter()
        .map(|c| pb::RetryCriterion {
            failure_type: c.failure_type.name().to_owned(),
            number_of_retries: c.retries,
        })
        .collect()
}

fn details(d: Option<pb::StatusDetails>) -> Option<domain::jobs::StatusDetails> {
    d.map(|d| d.entries.into_iter().collect())
}

fn process_details(job: &Job, d: ProcessDetails) -> pb::JobProcessDetails {
    pb::JobProcessDetails {
        processing_targets: if job.status == JobStatus::InProgress {
            job.targets.clone()
        } else {
            Vec::new()
        },
        number_of_canceled_things: d.canceled,
        number_of_succeeded_things: d.succeeded,
        number_of_failed_things: d.failed,
        number_of_rejected_things: d.rejected,
        number_of_queued_things: d.queued,
        number_of_in_progress_things: d.in_progress,
        number_of_removed_things: d.removed,
        number_of_timed_out_things: d.timed_out,
    }
}

fn job(arns: &Arns<'_>, j: Job, d: ProcessDetails) -> pb::Job {
    pb::Job {
        job_arn: arns.of("job", &j.id),
        job_process_details: Some(process_details(&j, d)),
        target_selection: target_selection_to_pb(j.target_selection) as i32,
        status: job_status_to_pb(j.status) as i32,
        force_canceled: j.force_canceled,
        reason_code: j.reason_code,
        comment: j.comment,
        targets: j.targets,
        description: j.description,
        created_at_ms: j.created_ms,
        last_updated_at_ms: j.updated_ms,
        completed_at_ms: j.completed_ms,
        in_progress_timeout_in_minutes: j.in_progress_timeout_minutes,
        job_template_arn: j.template_id.map(|id| arns.of("jobtemplate", &id)),
        abort_criteria: abort_criteria_to_pb(&j.abort),
        retry_criteria: retry_criteria_to_pb(&j.retry),
        rollout_config: j.rollout.map(rollout_to_pb),
        scheduling_config: j.schedule.map(schedule_to_pb),
        job_id: j.id,
    }
}

fn template(arns: &Arns<'_>, t: JobTemplate) -> pb::JobTemplate {
    pb::JobTemplate {
        job_template_arn: arns.of("jobtemplate", &t.id),
        job_template_id: t.id,
        description: t.description,
        document: t.document,
        created_at_ms: t.created_ms,
        in_progress_timeout_in_minutes: t.in_progress_timeout_minutes,
        document_source: t.document_source,
        retry_criteria: retry_criteria_to_pb(&t.retry),
        abort_criteria: abort_criteria_to_pb(&t.abort),
        rollout_config: t.rollout.map(rollout_to_pb),
    }
}

fn execution(arns: &Arns<'_>, e: Execution) -> pb::JobExecution {
    pb::JobExecution {
        timeout_at_ms: e.deadline_ms(),
        thing_arn: arns.thing(&e.thing_name),
        job_id: e.job_id,
        thing_name: e.thing_name,
        status: execution_status_to_pb(e.status) as i32,
        force_canceled: e.force_canceled,
        status_details: e.status_details.into_iter().collect(),
        queued_at_ms: e.queued_ms,
        started_at_ms: e.started_ms,
        last_updated_at_ms: e.updated_ms,
        execution_number: e.execution_number,
        version_number: e.version,
        retry_attempt: e.retry_attempt,
    }
}

/// A job event as the change log's wire form carries it.
pub(super) fn job_event(
    arns: &Arns<'_>,
    kind: JobEventKind,
    j: Job,
    d: ProcessDetails,
) -> pb::change_event::Event {
    use pb::JobEventKind as K;
    let kind = match kind {
        JobEventKind::Completed => K::Completed,
        JobEventKind::Canceled => K::Canceled,
        JobEventKind::Deleted => K::Deleted,
        JobEventKind::CancellationInProgress => K::CancellationInProgress,
        JobEventKind::DeletionInProgress => K::DeletionInProgress,
    };
    pb::change_event::Event::Job(pb::JobEvent {
        kind: kind as i32,
        job: Some(job(arns, j, d)),
    })
}

/// A job execution event as the change log's wire form carries it.
pub(super) fn execution_event(
    arns: &Arns<'_>,
    kind: ExecutionEventKind,
    e: Execution,
) -> pb::change_event::Event {
    use pb::JobExecutionEventKind as K;
    let kind = match kind {
        ExecutionEventKind::Succeeded => K::Succeeded,
        ExecutionEventKind::Failed => K::Failed,
        ExecutionEventKind::Rejected => K::Rejected,
        ExecutionEventKind::Canceled => K::Canceled,
        ExecutionEventKind::TimedOut => K::TimedOut,
        ExecutionEventKind::Removed => K::Removed,
        ExecutionEventKind::Deleted => K::Deleted,
    };
    pb::change_event::Event::JobExecution(pb::JobExecutionEvent {
        kind: kind as i32,
        execution: Some(execution(arns, e)),
    })
}

/// A thing's jobs notification as the change log's wire form carries it.
pub(super) fn notify_event(
    arns: &Arns<'_>,
    kind: NotifyKind,
    thing_name: String,
    in_progress: Vec<Execution>,
    queued: Vec<Execution>,
    next_job_document: Option<String>,
) -> pb::change_event::Event {
    let kind = match kind {
        NotifyKind::Notify => pb::JobsNotifyKind::Notify,
        NotifyKind::NotifyNext => pb::JobsNotifyKind::NotifyNext,
    };
    pb::change_event::Event::JobsNotify(pb::JobsNotifyEvent {
        kind: kind as i32,
        thing_name,
        in_progress: in_progress
            .into_iter()
            .map(|e| execution(arns, e))
            .collect(),
        queued: queued.into_iter().map(|e| execution(arns, e)).collect(),
        next_job_document,
    })
}

fn document(j: &Job) -> String {
    j.document.clone().unwrap_or_default()
}

#[tonic::async_trait]
impl jobs_server::Jobs for GrpcJobs {
    async fn create_job(
        &self,
        request: Request<pb::CreateJobRequest>,
    ) -> Reply<pb::CreateJobResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let new = NewJob {
            id: r.job_id,
            targets: r.targets,
            document: r.document,
            document_source: r.document_source,
            description: r.description,
            target_selection: target_selection(r.target_selection)?
                .unwrap_or(TargetSelection::Snapshot),
            in_progress_timeout_minutes: r.in_progress_timeout_in_minutes,
            template_arn: r.job_template_arn,
            retry: retry_criteria(&r.retry_criteria)?,
            abort: abort_criteria(&r.abort_criteria)?,
            rollout: r.rollout_config.as_ref().map(rollout).transpose()?,
            schedule: r.scheduling_config.as_ref().map(schedule).transpose()?,
            tags: super::tags(r.tags),
        };
        let registry = &registry;
        reply(
            registry
                .create_job(new)
                .await
                .map(|j| pb::CreateJobResponse {
                    job_arn: registry.job_arn(&j.id),
                    job_id: j.id,
                    description: j.description,
                }),
        )
    }

    async fn describe_job(
        &self,
        request: Request<pb::DescribeJobRequest>,
    ) -> Reply<pb::DescribeJobResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let arns = registry.arns();
        reply(
            registry
                .describe_job(&r.job_id)
                .map(|(j, d)| pb::DescribeJobResponse {
                    document_source: j.document_source.clone(),
                    job: Some(job(&arns, j, d)),
                }),
        )
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Reply<pb::ListJobsResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let filter = JobFilter {
            status: job_status(r.status)?,
            target_selection: target_selection(r.target_selection)?,
            thing_group: r.thing_group_name,
        };
        let registry = &registry;
        let listed = registry.list_jobs(page(&r.next_token, r.max_results)?, filter);
        reply(listed.map(|p| {
            pb::ListJobsResponse {
                jobs: p
                    .items
                    .into_iter()
                    .map(|j| pb::JobSummary {
                        job_arn: registry.job_arn(&j.id),
                        target_selection: target_selection_to_pb(j.target_selection) as i32,
                        status: job_status_to_pb(j.status) as i32,
                        created_at_ms: j.created_ms,
                        last_updated_at_ms: j.updated_ms,
                        completed_at_ms: j.completed_ms,
                        job_id: j.id,
                    })
                    .collect(),
                next_token: token(p.next_token),
            }
        }))
    }

    async fn get_job_document(
        &self,
        request: Request<pb::GetJobDocumentRequest>,
    ) -> Reply<pb::GetJobDocumentResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        reply(
            registry
                .get_job_document(&r.job_id)
                .map(|document| pb::GetJobDocumentResponse { document }),
        )
    }

    async fn update_job(
        &self,
        request: Request<pb::UpdateJobRequest>,
    ) -> Reply<pb::UpdateJobResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let update = JobUpdate {
            description: r.description,
            in_progress_timeout_minutes: r.in_progress_timeout_in_minutes,
            retry: r
                .retry_config
                .map(|c| retry_criteria(&c.criteria))
                .transpose()?,
            abort: r
                .abort_config
                .map(|c| abort_criteria(&c.criteria))
                .transpose()?,
            rollout: r.rollout_config.as_ref().map(rollout).transpose()?,
        };
        let updated = registry.update_job(r.job_id, update).await;
        reply(updated.map(|()| pb::UpdateJobResponse {}))
    }

    async fn associate_targets_with_job(
        &self,
        request: Request<pb::AssociateTargetsWithJobRequest>,
    ) -> Reply<pb::AssociateTargetsWithJobResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let registry = &registry;
        let associated = registry
            .associate_targets_with_job(r.job_id, r.targets, r.comment)
            .await;
        reply(associated.map(|j| pb::AssociateTargetsWithJobResponse {
            job_arn: registry.job_arn(&j.id),
            job_id: j.id,
            description: j.description,
        }))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Reply<pb::CancelJobResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let registry = &registry;
        let canceled = registry
            .cancel_job(r.job_id, r.reason_code, r.comment, r.force)
            .await;
        reply(canceled.map(|j| pb::CancelJobResponse {
            job_arn: registry.job_arn(&j.id),
            job_id: j.id,
            description: j.description,
        }))
    }

    async fn delete_job(
        &self,
        request: Request<pb::DeleteJobRequest>,
    ) -> Reply<pb::DeleteJobResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        reply(
            registry
                .delete_job(r.job_id, r.force)
                .await
                .map(|()| pb::DeleteJobResponse {}),
        )
    }

    async fn describe_job_execution(
        &self,
        request: Request<pb::DescribeJobExecutionRequest>,
    ) -> Reply<pb::DescribeJobExecutionResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let arns = registry.arns();
        let found = registry.describe_job_execution(&r.job_id, &r.thing_name, r.execution_number);
        reply(found.map(|(e, j)| pb::DescribeJobExecutionResponse {
            execution: Some(execution(&arns, e)),
            job_document: document(&j),
        }))
    }

    async fn list_job_executions_for_job(
        &self,
        request: Request<pb::ListJobExecutionsForJobRequest>,
    ) -> Reply<pb::ListJobExecutionsForJobResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let arns = registry.arns();
        let listed = registry.list_job_executions_for_job(
            &r.job_id,
            execution_status(r.status)?,
            page(&r.next_token, r.max_results)?,
        );
        reply(listed.map(|p| pb::ListJobExecutionsForJobResponse {
            executions: p.items.into_iter().map(|e| execution(&arns, e)).collect(),
            next_token: token(p.next_token),
        }))
    }

    async fn list_job_executions_for_thing(
        &self,
        request: Request<pb::ListJobExecutionsForThingRequest>,
    ) -> Reply<pb::ListJobExecutionsForThingResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let arns = registry.arns();
        let listed = registry.list_job_executions_for_thing(
            &r.thing_name,
            execution_status(r.status)?,
            r.job_id.as_deref(),
            page(&r.next_token, r.max_results)?,
        );
        reply(listed.map(|p| pb::ListJobExecutionsForThingResponse {
            executions: p.items.into_iter().map(|e| execution(&arns, e)).collect(),
            next_token: token(p.next_token),
        }))
    }

    async fn cancel_job_execution(
        &self,
        request: Request<pb::CancelJobExecutionRequest>,
    ) -> Reply<pb::CancelJobExecutionResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let canceled = registry
            .cancel_job_execution(
                r.job_id,
                r.thing_name,
                r.force,
                r.expected_version,
                details(r.status_details),
            )
            .await;
        reply(canceled.map(|()| pb::CancelJobExecutionResponse {}))
    }

    async fn delete_job_execution(
        &self,
        request: Request<pb::DeleteJobExecutionRequest>,
    ) -> Reply<pb::DeleteJobExecutionResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let deleted = registry
            .delete_job_execution(r.job_id, r.thing_name, r.execution_number, r.force)
            .await;
        reply(deleted.map(|()| pb::DeleteJobExecutionResponse {}))
    }

    async fn create_job_template(
        &self,
        request: Request<pb::CreateJobTemplateRequest>,
    ) -> Reply<pb::CreateJobTemplateResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let new = NewTemplate {
            id: r.job_template_id,
            description: r.description,
            document: r.document,
            document_source: r.document_source,
            job_arn: r.job_arn,
            in_progress_timeout_minutes: r.in_progress_timeout_in_minutes,
            retry: retry_criteria(&r.retry_criteria)?,
            abort: abort_criteria(&r.abort_criteria)?,
            rollout: r.rollout_config.as_ref().map(rollout).transpose()?,
            tags: super::tags(r.tags),
        };
        let registry = &registry;
        reply(
            registry
                .create_job_template(new)
                .await
                .map(|t| pb::CreateJobTemplateResponse {
                    job_template_arn: registry.job_template_arn(&t.id),
                    job_template_id: t.id,
                }),
        )
    }

    async fn describe_job_template(
        &self,
        request: Request<pb::DescribeJobTemplateRequest>,
    ) -> Reply<pb::JobTemplate> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let arns = registry.arns();
        reply(
            registry
                .describe_job_template(&r.job_template_id)
                .map(|t| template(&arns, t)),
        )
    }

    async fn list_job_templates(
        &self,
        request: Request<pb::ListJobTemplatesRequest>,
    ) -> Reply<pb::ListJobTemplatesResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let arns = registry.arns();
        let listed = registry.list_job_templates(page(&r.next_token, r.max_results)?);
        reply(listed.map(|p| pb::ListJobTemplatesResponse {
            job_templates: p.items.into_iter().map(|t| template(&arns, t)).collect(),
            next_token: token(p.next_token),
        }))
    }

    async fn delete_job_template(
        &self,
        request: Request<pb::DeleteJobTemplateRequest>,
    ) -> Reply<pb::DeleteJobTemplateResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        reply(
            registry
                .delete_job_template(r.job_template_id)
                .await
                .map(|()| pb::DeleteJobTemplateResponse {}),
        )
    }

    async fn get_pending_job_executions(
        &self,
        request: Request<pb::GetPendingJobExecutionsRequest>,
    ) -> Reply<pb::GetPendingJobExecutionsResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let arns = registry.arns();
        let pending = registry.get_pending_job_executions(&r.thing_name);
        reply(pending.map(|p| {
            pb::GetPendingJobExecutionsResponse {
                in_progress_jobs: p
                    .in_progress
                    .into_iter()
                    .map(|e| execution(&arns, e))
                    .collect(),
                queued_jobs: p.queued.into_iter().map(|e| execution(&arns, e)).collect(),
            }
        }))
    }

    async fn start_next_pending_job_execution(
        &self,
        request: Request<pb::StartNextPendingJobExecutionRequest>,
    ) -> Reply<pb::StartNextPendingJobExecutionResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let arns = registry.arns();
        let started = registry
            .start_next_pending_job_execution(
                r.thing_name,
                details(r.status_details),
                r.step_timeout_in_minutes,
            )
            .await;
        reply(started.map(|next| match next {
            Some((e, j)) => pb::StartNextPendingJobExecutionResponse {
                execution: Some(execution(&arns, e)),
                job_document: document(&j),
            },
            None => pb::StartNextPendingJobExecutionResponse::default(),
        }))
    }

    async fn update_job_execution(
        &self,
        request: Request<pb::UpdateJobExecutionRequest>,
    ) -> Reply<pb::UpdateJobExecutionResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let Some(status) = execution_status(r.status)? else {
            return Err(invalid("status is required".to_owned()));
        };
        let update = DeviceUpdate {
            job_id: r.job_id,
            thing: r.thing_name,
            status,
            details: details(r.status_details),
            expected_version: r.expected_version,
            execution_number: r.execution_number,
            step_timeout_minutes: r.step_timeout_in_minutes,
        };
        let arns = registry.arns();
        let updated: Result<_, AwsError> = registry.update_job_execution(update).await;
        reply(updated.map(|(e, j)| pb::UpdateJobExecutionResponse {
            execution: Some(execution(&arns, e)),
            job_document: document(&j),
        }))
    }
}

/// The registry's wire shapes of a job, for `Arns`-free callers in tests.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for s in ExecutionStatus::ALL {
            let raw = execution_status_to_pb(s) as i32;
            assert_eq!(execution_status(raw).unwrap(), Some(s));
        }
        assert_eq!(execution_status(0).unwrap(), None);
        assert!(execution_status(99).is_err());
        for s in [
            JobStatus::InProgress,
            JobStatus::Canceled,
            JobStatus::Completed,
            JobStatus::DeletionInProgress,
            JobStatus::Scheduled,
        ] {
            assert_eq!(job_status(job_status_to_pb(s) as i32).unwrap(), Some(s));
        }
        for t in [TargetSelection::Snapshot, TargetSelection::Continuous] {
            assert_eq!(
                target_selection(target_selection_to_pb(t) as i32).unwrap(),
                Some(t)
            );
        }
    }
}
