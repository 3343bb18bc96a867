//! The jobs operations' outputs, as botocore's `iot` model names their
//! members (AWS IoT Core API Reference: CreateJob, DescribeJob, ListJobs,
//! DescribeJobExecution, ListJobExecutionsForJob, ...). Timestamps are epoch
//! seconds.

use std::collections::BTreeMap;

use herald_proto::registry::v1 as pb;
use serde::Serialize;

use super::execution_status_name;
use crate::events::{
    job_status_name as job_status, seconds_before_timed_out,
    target_selection_name as target_selection,
};
use crate::http::output::{next_page, seconds, sorted};

/// CreateJob's and CancelJob's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateJobOutput {
    job_arn: String,
    job_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

pub(super) type CancelJobOutput = CreateJobOutput;

impl From<pb::CreateJobResponse> for CreateJobOutput {
    fn from(r: pb::CreateJobResponse) -> Self {
        CreateJobOutput {
            job_arn: r.job_arn,
            job_id: r.job_id,
            description: r.description,
        }
    }
}

impl From<pb::AssociateTargetsWithJobResponse> for CreateJobOutput {
    fn from(r: pb::AssociateTargetsWithJobResponse) -> Self {
        CreateJobOutput {
            job_arn: r.job_arn,
            job_id: r.job_id,
            description: r.description,
        }
    }
}

impl From<pb::CancelJobResponse> for CreateJobOutput {
    fn from(r: pb::CancelJobResponse) -> Self {
        CreateJobOutput {
            job_arn: r.job_arn,
            job_id: r.job_id,
            description: r.description,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JobProcessDetails {
    processing_targets: Vec<String>,
    number_of_canceled_things: u64,
    number_of_succeeded_things: u64,
    number_of_failed_things: u64,
    number_of_rejected_things: u64,
    number_of_queued_things: u64,
    number_of_in_progress_things: u64,
    number_of_removed_things: u64,
    number_of_timed_out_things: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TimeoutConfig {
    in_progress_timeout_in_minutes: i64,
}

/// A job as DescribeJob answers it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Job {
    job_arn: String,
    job_id: String,
    target_selection: &'static str,
    status: &'static str,
    force_canceled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
    targets: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    created_at: f64,
    last_updated_at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_at: Option<f64>,
    job_process_details: JobProcessDetails,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_config: Option<TimeoutConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_template_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_executions_retry_config: Option<RetryConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    abort_config: Option<AbortConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_executions_rollout_config: Option<RolloutConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduling_config: Option<SchedulingConfig>,
    is_concurrent: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RolloutConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    maximum_per_minute: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exponential_rate: Option<ExponentialRate>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ExponentialRate {
    base_rate_per_minute: u32,
    increment_factor: f64,
    rate_increase_criteria: RateIncreaseCriteria,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RateIncreaseCriteria {
    #[serde(skip_serializing_if = "Option::is_none")]
    number_of_notified_things: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    number_of_succeeded_things: Option<u32>,
}

impl From<pb::RolloutConfig> for RolloutConfig {
    fn from(r: pb::RolloutConfig) -> Self {
        RolloutConfig {
            maximum_per_minute: r.maximum_per_minute,
            exponential_rate: r.exponential_rate.map(|e| ExponentialRate {
                base_rate_per_minute: e.base_rate_per_minute,
                increment_factor: e.increment_factor,
                rate_increase_criteria: RateIncreaseCriteria {
                    number_of_notified_things: e.number_of_notified_things,
                    number_of_succeeded_things: e.number_of_succeeded_things,
                },
            }),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SchedulingConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<String>,
    end_behavior: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    maintenance_windows: Vec<MaintenanceWindow>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MaintenanceWindow {
    start_time: String,
    duration_in_minutes: u32,
}

impl From<pb::SchedulingConfig> for SchedulingConfig {
    fn from(s: pb::SchedulingConfig) -> Self {
        let time = |ms: i64| crate::http::time::format_schedule_time(ms.div_euclid(1000));
        SchedulingConfig {
            start_time: s.start_time_ms.map(time),
            end_time: s.end_time_ms.map(time),
            end_behavior: s.end_behavior,
            maintenance_windows: s
                .maintenance_windows
                .into_iter()
                .map(|w| MaintenanceWindow {
                    start_time: w.start_time,
                    duration_in_minutes: w.duration_in_minutes,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AbortConfig {
    criteria_list: Vec<AbortCriterion>,
}

impl AbortConfig {
    /// `None` for no criteria.
    fn of(criteria: Vec<pb::AbortCriterion>) -> Option<AbortConfig> {
        (!criteria.is_empty()).then(|| AbortConfig {
            criteria_list: criteria
                .into_iter()
                .map(|c| AbortCriterion {
                    failure_type: c.failure_type,
                    action: c.action,
                    threshold_percentage: c.threshold_percentage,
                    min_number_of_executed_things: c.min_number_of_executed_things,
                })
                .collect(),
        })
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AbortCriterion {
    failure_type: String,
    action: String,
    threshold_percentage: f64,
    min_number_of_executed_things: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RetryConfig {
    criteria_list: Vec<RetryCriterion>,
}

impl RetryConfig {
    /// `None` for no criteria.
    fn of(criteria: Vec<pb::RetryCriterion>) -> Option<RetryConfig> {
        (!criteria.is_empty()).then(|| RetryConfig {
            criteria_list: criteria
                .into_iter()
                .map(|c| RetryCriterion {
                    failure_type: c.failure_type,
                    number_of_retries: c.number_of_retries,
                })
                .collect(),
        })
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RetryCriterion {
    failure_type: String,
    number_of_retries: u32,
}

/// DescribeJob's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeJobOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    document_source: Option<String>,
    job: Job,
}

impl From<pb::DescribeJobResponse> for DescribeJobOutput {
    fn from(r: pb::DescribeJobResponse) -> Self {
        let j = r.job.unwrap_or_default();
        let d = j.job_process_details.unwrap_or_default();
        DescribeJobOutput {
            document_source: r.document_source,
            job: Job {
                target_selection: target_selection(j.target_selection),
                status: job_status(j.status),
                job_arn: j.job_arn,
                job_id: j.job_id,
                force_canceled: j.force_canceled,
                reason_code: j.reason_code,
                comment: j.comment,
                targets: j.targets,
                description: j.description,
                created_at: seconds(j.created_at_ms),
                last_updated_at: seconds(j.last_updated_at_ms),
                completed_at: j.completed_at_ms.map(seconds),
                job_process_details: JobProcessDetails {
                    processing_targets: d.processing_targets,
                    number_of_canceled_things: d.number_of_canceled_things,
                    number_of_succeeded_things: d.number_of_succeeded_things,
                    number_of_failed_things: d.number_of_failed_things,
                    number_of_rejected_things: d.number_of_rejected_things,
                    number_of_queued_things: d.number_of_queued_things,
                    number_of_in_progress_things: d.number_of_in_progress_things,
                    number_of_removed_things: d.number_of_removed_things,
                    number_of_timed_out_things: d.number_of_timed_out_things,
                },
                timeout_config: j
                    .in_progress_timeout_in_minutes
                    .map(|minutes| TimeoutConfig {
                        in_progress_timeout_in_minutes: minutes,
                    }),
                job_template_arn: j.job_template_arn,
                job_executions_retry_config: RetryConfig::of(j.retry_criteria),
                abort_config: AbortConfig::of(j.abort_criteria),
                job_executions_rollout_config: j.rollout_config.map(RolloutConfig::from),
                scheduling_config: j.scheduling_config.map(SchedulingConfig::from),
                is_concurrent: false,
            },
        }
    }
}

/// A job as ListJobs lists it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JobSummary {
    job_arn: String,
    job_id: String,
    target_selection: &'static str,
    status: &'static str,
    created_at: f64,
    last_updated_at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_at: Option<f64>,
    is_concurrent: bool,
}

/// ListJobs' output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListJobsOutput {
    jobs: Vec<JobSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

impl From<pb::ListJobsResponse> for ListJobsOutput {
    fn from(r: pb::ListJobsResponse) -> Self {
        ListJobsOutput {
            jobs: r
                .jobs
                .into_iter()
                .map(|j| JobSummary {
                    target_selection: target_selection(j.target_selection),
                    status: job_status(j.status),
                    job_arn: j.job_arn,
                    job_id: j.job_id,
                    created_at: seconds(j.created_at_ms),
                    last_updated_at: seconds(j.last_updated_at_ms),
                    completed_at: j.completed_at_ms.map(seconds),
                    is_concurrent: false,
                })
                .collect(),
            next_token: next_page(r.next_token),
        }
    }
}

/// GetJobDocument's output.
#[derive(Debug, Serialize)]
pub(super) struct GetJobDocumentOutput {
    document: String,
}

impl From<pb::GetJobDocumentResponse> for GetJobDocumentOutput {
    fn from(r: pb::GetJobDocumentResponse) -> Self {
        GetJobDocumentOutput {
            document: r.document,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusDetails {
    details_map: BTreeMap<String, String>,
}

/// A job execution as DescribeJobExecution answers it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JobExecution {
    job_id: String,
    status: &'static str,
    force_canceled: bool,
    status_details: StatusDetails,
    thing_arn: String,
    queued_at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<f64>,
    last_updated_at: f64,
    execution_number: i64,
    version_number: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    approximate_seconds_before_timed_out: Option<i64>,
}

/// DescribeJobExecution's output.
#[derive(Debug, Serialize)]
pub(super) struct DescribeJobExecutionOutput {
    execution: JobExecution,
}

impl From<pb::DescribeJobExecutionResponse> for DescribeJobExecutionOutput {
    fn from(r: pb::DescribeJobExecutionResponse) -> Self {
        let e = r.execution.unwrap_or_default();
        let now_ms = crate::http::time::now_ms();
        DescribeJobExecutionOutput {
            execution: JobExecution {
                approximate_seconds_before_timed_out: seconds_before_timed_out(&e, now_ms),
                status: execution_status_name(e.status),
                job_id: e.job_id,
                force_canceled: e.force_canceled,
                status_details: StatusDetails {
                    details_map: sorted(e.status_details),
                },
                thing_arn: e.thing_arn,
                queued_at: seconds(e.queued_at_ms),
                started_at: e.started_at_ms.map(seconds),
                last_updated_at: seconds(e.last_updated_at_ms),
                execution_number: e.execution_number,
                version_number: e.version_number,
            },
        }
    }
}

/// `JobExecutionSummary`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JobExecutionSummary {
    status: &'static str,
    queued_at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<f64>,
    last_updated_at: f64,
    execution_number: i64,
    retry_attempt: u32,
}

impl From<&pb::JobExecution> for JobExecutionSummary {
    fn from(e: &pb::JobExecution) -> Self {
        JobExecutionSummary {
            status: execution_status_name(e.status),
            queued_at: seconds(e.queued_at_ms),
            started_at: e.started_at_ms.map(seconds),
            last_updated_at: seconds(e.last_updated_at_ms),
            execution_number: e.execution_number,
            retry_attempt: e.retry_attempt,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ForJob {
    thing_arn: String,
    job_execution_summary: JobExecutionSummary,
}

/// ListJobExecutionsForJob's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListJobExecutionsForJobOutput {
    execution_summaries: Vec<ForJob>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

impl From<pb::ListJobExecutionsForJobResponse> for ListJobExecutionsForJobOutput {
    fn from(r: pb::ListJobExecutionsForJobResponse) -> Self {
        ListJobExecutionsForJobOutput {
            execution_summaries: r
                .executions
                .iter()
                .map(|e| ForJob {
                    thing_arn: e.thing_arn.clone(),
                    job_execution_summary: e.into(),
                })
                .collect(),
            next_token: next_page(r.next_token),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ForThing {
    job_id: String,
    job_execution_summary: JobExecutionSummary,
}

/// ListJobExecutionsForThing's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListJobExecutionsForThingOutput {
    execution_summaries: Vec<ForThing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

impl From<pb::ListJobExecutionsForThingResponse> for ListJobExecutionsForThingOutput {
    fn from(r: pb::ListJobExecutionsForThingResponse) -> Self {
        ListJobExecutionsForThingOutput {
            execution_summaries: r
                .executions
                .iter()
                .map(|e| ForThing {
                    job_id: e.job_id.clone(),
                    job_execution_summary: e.into(),
                })
                .collect(),
            next_token: next_page(r.next_token),
        }
    }
}

/// CreateJobTemplate's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateJobTemplateOutput {
    job_template_arn: String,
    job_template_id: String,
}

impl From<pb::CreateJobTemplateResponse> for CreateJobTemplateOutput {
    fn from(r: pb::CreateJobTemplateResponse) -> Self {
        CreateJobTemplateOutput {
            job_template_arn: r.job_template_arn,
            job_template_id: r.job_template_id,
        }
    }
}

/// DescribeJobTemplate's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeJobTemplateOutput {
    job_template_arn: String,
    job_template_id: String,
    description: String,
    document: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    document_source: Option<String>,
    created_at: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_config: Option<TimeoutConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_executions_retry_config: Option<RetryConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    abort_config: Option<AbortConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_executions_rollout_config: Option<RolloutConfig>,
}

impl From<pb::JobTemplate> for DescribeJobTemplateOutput {
    fn from(t: pb::JobTemplate) -> Self {
        DescribeJobTemplateOutput {
            job_template_arn: t.job_template_arn,
            job_template_id: t.job_template_id,
            description: t.description,
            document: t.document,
            document_source: t.document_source,
            created_at: seconds(t.created_at_ms),
            timeout_config: t
                .in_progress_timeout_in_minutes
                .map(|minutes| TimeoutConfig {
                    in_progress_timeout_in_minutes: minutes,
                }),
            job_executions_retry_config: RetryConfig::of(t.retry_criteria),
            abort_config: AbortConfig::of(t.abort_criteria),
            job_executions_rollout_config: t.rollout_config.map(RolloutConfig::from),
        }
    }
}

/// A template as ListJobTemplates lists it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JobTemplateSummary {
    job_template_arn: String,
    job_template_id: String,
    description: String,
    created_at: f64,
}

/// ListJobTemplates' output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListJobTemplatesOutput {
    job_templates: Vec<JobTemplateSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

impl From<pb::ListJobTemplatesResponse> for ListJobTemplatesOutput {
    fn from(r: pb::ListJobTemplatesResponse) -> Self {
        ListJobTemplatesOutput {
            job_templates: r
                .job_templates
                .into_iter()
                .map(|t| JobTemplateSummary {
                    job_template_arn: t.job_template_arn,
                    job_template_id: t.job_template_id,
                    description: t.description,
                    created_at: seconds(t.created_at_ms),
                })
                .collect(),
            next_token: next_page(r.next_token),
        }
    }
}
