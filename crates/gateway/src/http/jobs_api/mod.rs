//! The jobs control plane of botocore's `iot` model: CreateJob, UpdateJob,
//! AssociateTargetsWithJob, DescribeJob, ListJobs, GetJobDocument,
//! CancelJob, DeleteJob, the job templates, DescribeJobExecution,
//! ListJobExecutionsForJob, ListJobExecutionsForThing, CancelJobExecution,
//! DeleteJobExecution, each a call to the registry's `Jobs` service.
//!
//! The job configurations Herald does not apply yet (rollout, abort, retry,
//! scheduling, presigned URLs, templates, document parameters, package
//! versions, namespaces, tags) are refused with an
//! `InvalidRequestException` that names them, never accepted and ignored.

mod output;

use std::collections::HashMap;

use axum::{
    Router,
    extract::State,
    routing::{MethodRouter, get, put},
};
use herald_proto::registry::v1 as pb;
use serde::Deserialize;
use serde_json::Value;

use self::output::{
    CancelJobOutput, CreateJobOutput, CreateJobTemplateOutput, DescribeJobExecutionOutput,
    DescribeJobOutput, DescribeJobTemplateOutput, GetJobDocumentOutput,
    ListJobExecutionsForJobOutput, ListJobExecutionsForThingOutput, ListJobTemplatesOutput,
    ListJobsOutput,
};
pub(crate) use crate::events::execution_status_name;

use super::extract::{Body, Path, Query};
use super::output::{ApiResult, empty, ok};
use super::registry_api::{Tag, tags};
use super::{ApiError, AppState, fallback};

pub(crate) fn routes() -> Router<AppState> {
    fn served(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
        route.fallback(fallback::not_implemented)
    }
    Router::new()
        .route("/jobs", served(get(list_jobs)))
        .route(
            "/jobs/{jobId}",
            served(
                put(create_job)
                    .get(describe_job)
                    .patch(update_job)
                    .delete(delete_job),
            ),
        )
        .route(
            "/jobs/{jobId}/targets",
            served(axum::routing::post(associate_targets_with_job)),
        )
        .route("/jobs/{jobId}/cancel", served(put(cancel_job)))
        .route("/job-templates", served(get(list_job_templates)))
        .route(
            "/job-templates/{jobTemplateId}",
            served(
                put(create_job_template)
                    .get(describe_job_template)
                    .delete(delete_job_template),
            ),
        )
        .route("/jobs/{jobId}/job-document", served(get(get_job_document)))
        .route(
            "/jobs/{jobId}/things",
            served(get(list_job_executions_for_job)),
        )
        .route(
            "/things/{thingName}/jobs",
            served(get(list_job_executions_for_thing)),
        )
        .route(
            "/things/{thingName}/jobs/{jobId}",
            served(get(describe_job_execution)),
        )
        .route(
            "/things/{thingName}/jobs/{jobId}/cancel",
            served(put(cancel_job_execution)),
        )
        .route(
            "/things/{thingName}/jobs/{jobId}/executionNumber/{executionNumber}",
            served(axum::routing::delete(delete_job_execution)),
        )
}

/// `targetSelection`, `status`: AWS's names.
fn target_selection(value: Option<&str>) -> Result<pb::TargetSelection, ApiError> {
    match value {
        None => Ok(pb::TargetSelection::Unspecified),
        Some("SNAPSHOT") => Ok(pb::TargetSelection::Snapshot),
        Some("CONTINUOUS") => Ok(pb::TargetSelection::Continuous),
        Some(other) => Err(ApiError::invalid(format!(
            "targetSelection must be SNAPSHOT or CONTINUOUS, got {other:?}"
        ))),
    }
}

fn job_status(value: Option<&str>) -> Result<pb::JobStatus, ApiError> {
    Ok(match value {
        None => pb::JobStatus::Unspecified,
        Some("IN_PROGRESS") => pb::JobStatus::InProgress,
        Some("CANCELED") => pb::JobStatus::Canceled,
        Some("COMPLETED") => pb::JobStatus::Completed,
        Some("DELETION_IN_PROGRESS") => pb::JobStatus::DeletionInProgress,
        Some("SCHEDULED") => pb::JobStatus::Scheduled,
        Some(other) => return Err(ApiError::invalid(format!("Unknown job status {other:?}"))),
    })
}

pub(crate) fn execution_status(value: Option<&str>) -> Result<pb::JobExecutionStatus, ApiError> {
    use pb::JobExecutionStatus as S;
    Ok(match value {
        None => S::Unspecified,
        Some("QUEUED") => S::Queued,
        Some("IN_PROGRESS") => S::InProgress,
        Some("SUCCEEDED") => S::Succeeded,
        Some("FAILED") => S::Failed,
        Some("TIMED_OUT") => S::TimedOut,
        Some("REJECTED") => S::Rejected,
        Some("REMOVED") => S::Removed,
        Some("CANCELED") => S::Canceled,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Unknown job execution status {other:?}"
            )));
        }
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct TimeoutConfig {
    in_progress_timeout_in_minutes: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RetryConfig {
    criteria_list: Vec<RetryCriterion>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RetryCriterion {
    failure_type: String,
    number_of_retries: u32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AbortConfig {
    criteria_list: Vec<AbortCriterion>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AbortCriterion {
    failure_type: String,
    action: String,
    threshold_percentage: f64,
    min_number_of_executed_things: u64,
}

fn abort_criteria(config: Option<AbortConfig>) -> Vec<pb::AbortCriterion> {
    config
        .map(|c| c.criteria_list)
        .unwrap_or_default()
        .into_iter()
        .map(|c| pb::AbortCriterion {
            failure_type: c.failure_type,
            action: c.action,
            threshold_percentage: c.threshold_percentage,
            min_number_of_executed_things: c.min_number_of_executed_things,
        })
        .collect()
}

fn retry_criteria(config: Option<RetryConfig>) -> Vec<pb::RetryCriterion> {
    config
        .map(|c| c.criteria_list)
        .unwrap_or_default()
        .into_iter()
        .map(|c| pb::RetryCriterion {
            failure_type: c.failure_type,
            number_of_retries: c.number_of_retries,
        })
        .collect()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RolloutConfig {
    maximum_per_minute: Option<u32>,
    exponential_rate: Option<ExponentialRate>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ExponentialRate {
    base_rate_per_minute: u32,
    increment_factor: f64,
    rate_increase_criteria: RateIncreaseCriteria,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RateIncreaseCriteria {
    number_of_notified_things: Option<u32>,
    number_of_succeeded_things: Option<u32>,
}

fn rollout_config(config: Option<RolloutConfig>) -> Option<pb::RolloutConfig> {
    config.map(|c| pb::RolloutConfig {
        maximum_per_minute: c.maximum_per_minute,
        exponential_rate: c.exponential_rate.map(|e| pb::ExponentialRate {
            base_rate_per_minute: e.base_rate_per_minute,
            increment_factor: e.increment_factor,
            number_of_notified_things: e.rate_increase_criteria.number_of_notified_things,
            number_of_succeeded_things: e.rate_increase_criteria.number_of_succeeded_things,
        }),
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SchedulingConfig {
    start_time: Option<String>,
    end_time: Option<String>,
    end_behavior: Option<String>,
    maintenance_windows: Vec<MaintenanceWindow>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct MaintenanceWindow {
    start_time: String,
    duration_in_minutes: u32,
}

/// `startTime` and `endTime` (`yyyy-MM-ddTHH:mm`, UTC) to epoch ms.
fn scheduling_config(
    config: Option<SchedulingConfig>,
) -> Result<Option<pb::SchedulingConfig>, ApiError> {
    let Some(c) = config else {
        return Ok(None);
    };
    let time = |what: &str, text: Option<String>| -> Result<Option<i64>, ApiError> {
        text.map(|t| {
            crate::http::time::parse_schedule_time(&t)
                .map(|secs| secs.saturating_mul(1000))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "{what} must be a UTC time as yyyy-MM-ddTHH:mm, got {t:?}"
                    ))
                })
        })
        .transpose()
    };
    Ok(Some(pb::SchedulingConfig {
        start_time_ms: time("startTime", c.start_time)?,
        end_time_ms: time("endTime", c.end_time)?,
        end_behavior: c.end_behavior.unwrap_or_default(),
        maintenance_windows: c
            .maintenance_windows
            .into_iter()
            .map(|w| pb::MaintenanceWindow {
                start_time: w.start_time,
                duration_in_minutes: w.duration_in_minutes,
            })
            .collect(),
    }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreateJob {
    targets: Vec<String>,
    document_source: Option<String>,
    document: Option<String>,
    description: Option<String>,
    target_selection: Option<String>,
    timeout_config: Option<TimeoutConfig>,
    job_template_arn: Option<String>,
    job_executions_retry_config: Option<RetryConfig>,
    abort_config: Option<AbortConfig>,
    job_executions_rollout_config: Option<RolloutConfig>,
    scheduling_config: Option<SchedulingConfig>,
    tags: Vec<Tag>,
    /// Members Herald refuses until it applies them.
    #[serde(flatten)]
    others: HashMap<String, Value>,
}

/// The members of a request Herald does not apply yet: an error naming them.
fn refuse_unsupported(others: &HashMap<String, Value>) -> Result<(), ApiError> {
    const NOT_YET: &[&str] = &[
        "presignedUrlConfig",
        "namespaceId",
        "maintenanceWindows",
        "destinationPackageVersions",
    ];
    let mut given: Vec<&str> = others
        .iter()
        .filter(|(name, value)| NOT_YET.contains(&name.as_str()) && !is_empty(value))
        .map(|(name, _)| name.as_str())
        .collect();
    if given.is_empty() {
        return Ok(());
    }
    given.sort_unstable();
    Err(ApiError::invalid(format!(
        "{} not supported by Herald yet",
        given.join(", ")
    )))
}

/// `null`, `{}` and `[]` ask for nothing.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(list) => list.is_empty(),
        _ => false,
    }
}

/// CreateJob: `PUT /jobs/{jobId}`.
async fn create_job(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    query: Query,
    Body(body): Body<CreateJob>,
) -> ApiResult {
    refuse_unsupported(&body.others)?;
    if body
        .others
        .get("documentParameters")
        .is_some_and(|v| !is_empty(v))
    {
        // As AWS IoT answers for any template but its own managed ones.
        return Err(ApiError::invalid(
            "documentParameters can only be used when creating a job from an AWS managed template; Herald serves none",
        ));
    }
    if query.has("namespaceId") {
        return Err(ApiError::invalid("namespaceId not supported by Herald yet"));
    }
    let created = state
        .jobs
        .clone()
        .create_job(pb::CreateJobRequest {
            job_id,
            targets: body.targets,
            document: body.document,
            document_source: body.document_source,
            description: body.description,
            target_selection: target_selection(body.target_selection.as_deref())? as i32,
            in_progress_timeout_in_minutes: body
                .timeout_config
                .and_then(|t| t.in_progress_timeout_in_minutes),
            job_template_arn: body.job_template_arn,
            retry_criteria: retry_criteria(body.job_executions_retry_config),
            abort_criteria: abort_criteria(body.abort_config),
            rollout_config: rollout_config(body.job_executions_rollout_config),
            scheduling_config: scheduling_config(body.scheduling_config)?,
            tags: tags(body.tags),
        })
        .await?
        .into_inner();
    ok(CreateJobOutput::from(created))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct UpdateJob {
    description: Option<String>,
    timeout_config: Option<TimeoutConfig>,
    job_executions_retry_config: Option<RetryConfig>,
    abort_config: Option<AbortConfig>,
    job_executions_rollout_config: Option<RolloutConfig>,
    #[serde(flatten)]
    others: HashMap<String, Value>,
}

/// UpdateJob: `PATCH /jobs/{jobId}`.
async fn update_job(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    query: Query,
    Body(body): Body<UpdateJob>,
) -> ApiResult {
    refuse_unsupported(&body.others)?;
    if query.has("namespaceId") {
        return Err(ApiError::invalid("namespaceId not supported by Herald yet"));
    }
    state
        .jobs
        .clone()
        .update_job(pb::UpdateJobRequest {
            job_id,
            description: body.description,
            in_progress_timeout_in_minutes: body
                .timeout_config
                .and_then(|t| t.in_progress_timeout_in_minutes),
            retry_config: body.job_executions_retry_config.map(|c| pb::RetryConfig {
                criteria: retry_criteria(Some(c)),
            }),
            abort_config: body.abort_config.map(|c| pb::AbortConfig {
                criteria: abort_criteria(Some(c)),
            }),
            rollout_config: rollout_config(body.job_executions_rollout_config),
        })
        .await?;
    empty()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AssociateTargets {
    targets: Vec<String>,
    comment: Option<String>,
}

/// AssociateTargetsWithJob: `POST /jobs/{jobId}/targets`.
async fn associate_targets_with_job(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    query: Query,
    Body(body): Body<AssociateTargets>,
) -> ApiResult {
    if query.has("namespaceId") {
        return Err(ApiError::invalid("namespaceId not supported by Herald yet"));
    }
    let associated = state
        .jobs
        .clone()
        .associate_targets_with_job(pb::AssociateTargetsWithJobRequest {
            job_id,
            targets: body.targets,
            comment: body.comment,
        })
        .await?
        .into_inner();
    ok(CreateJobOutput::from(associated))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreateJobTemplate {
    description: Option<String>,
    document: Option<String>,
    document_source: Option<String>,
    job_arn: Option<String>,
    timeout_config: Option<TimeoutConfig>,
    job_executions_retry_config: Option<RetryConfig>,
    abort_config: Option<AbortConfig>,
    job_executions_rollout_config: Option<RolloutConfig>,
    tags: Vec<Tag>,
    #[serde(flatten)]
    others: HashMap<String, Value>,
}

/// CreateJobTemplate: `PUT /job-templates/{jobTemplateId}`.
async fn create_job_template(
    State(state): State<AppState>,
    Path(job_template_id): Path<String>,
    Body(body): Body<CreateJobTemplate>,
) -> ApiResult {
    refuse_unsupported(&body.others)?;
    let created = state
        .jobs
        .clone()
        .create_job_template(pb::CreateJobTemplateRequest {
            job_template_id,
            description: body
                .description
                .ok_or_else(|| ApiError::invalid("description is required"))?,
            document: body.document,
            document_source: body.document_source,
            job_arn: body.job_arn,
            in_progress_timeout_in_minutes: body
                .timeout_config
                .and_then(|t| t.in_progress_timeout_in_minutes),
            retry_criteria: retry_criteria(body.job_executions_retry_config),
            abort_criteria: abort_criteria(body.abort_config),
            rollout_config: rollout_config(body.job_executions_rollout_config),
            tags: tags(body.tags),
        })
        .await?
        .into_inner();
    ok(CreateJobTemplateOutput::from(created))
}

/// DescribeJobTemplate: `GET /job-templates/{jobTemplateId}`.
async fn describe_job_template(
    State(state): State<AppState>,
    Path(job_template_id): Path<String>,
) -> ApiResult {
    let template = state
        .jobs
        .clone()
        .describe_job_template(pb::DescribeJobTemplateRequest { job_template_id })
        .await?
        .into_inner();
    ok(DescribeJobTemplateOutput::from(template))
}

/// ListJobTemplates: `GET /job-templates`.
async fn list_job_templates(State(state): State<AppState>, query: Query) -> ApiResult {
    let paging = query.token_page()?;
    let listed = state
        .jobs
        .clone()
        .list_job_templates(pb::ListJobTemplatesRequest {
            next_token: paging.token,
            max_results: paging.size,
        })
        .await?
        .into_inner();
    ok(ListJobTemplatesOutput::from(listed))
}

/// DeleteJobTemplate: `DELETE /job-templates/{jobTemplateId}`.
async fn delete_job_template(
    State(state): State<AppState>,
    Path(job_template_id): Path<String>,
) -> ApiResult {
    state
        .jobs
        .clone()
        .delete_job_template(pb::DeleteJobTemplateRequest { job_template_id })
        .await?;
    empty()
}

/// DescribeJob: `GET /jobs/{jobId}`.
async fn describe_job(State(state): State<AppState>, Path(job_id): Path<String>) -> ApiResult {
    let described = state
        .jobs
        .clone()
        .describe_job(pb::DescribeJobRequest { job_id })
        .await?
        .into_inner();
    ok(DescribeJobOutput::from(described))
}

/// ListJobs: `GET /jobs`.
async fn list_jobs(State(state): State<AppState>, query: Query) -> ApiResult {
    if query.has("thingGroupId") || query.has("namespaceId") {
        return Err(ApiError::invalid(
            "thingGroupId and namespaceId filters are not supported by Herald yet; use thingGroupName",
        ));
    }
    let paging = query.token_page()?;
    let listed = state
        .jobs
        .clone()
        .list_jobs(pb::ListJobsRequest {
            status: job_status(query.string("status").as_deref())? as i32,
            target_selection: target_selection(query.string("targetSelection").as_deref())? as i32,
            thing_group_name: query.string("thingGroupName"),
            next_token: paging.token,
            max_results: paging.size,
        })
        .await?
        .into_inner();
    ok(ListJobsOutput::from(listed))
}

/// GetJobDocument: `GET /jobs/{jobId}/job-document`.
async fn get_job_document(State(state): State<AppState>, Path(job_id): Path<String>) -> ApiResult {
    let document = state
        .jobs
        .clone()
        .get_job_document(pb::GetJobDocumentRequest { job_id })
        .await?
        .into_inner();
    ok(GetJobDocumentOutput::from(document))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CancelJob {
    reason_code: Option<String>,
    comment: Option<String>,
}

/// CancelJob: `PUT /jobs/{jobId}/cancel?force=`.
async fn cancel_job(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    query: Query,
    Body(body): Body<CancelJob>,
) -> ApiResult {
    let canceled = state
        .jobs
        .clone()
        .cancel_job(pb::CancelJobRequest {
            job_id,
            reason_code: body.reason_code,
            comment: body.comment,
            force: query.flag("force")?,
        })
        .await?
        .into_inner();
    ok(CancelJobOutput::from(canceled))
}

/// DeleteJob: `DELETE /jobs/{jobId}?force=`.
async fn delete_job(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    query: Query,
) -> ApiResult {
    state
        .jobs
        .clone()
        .delete_job(pb::DeleteJobRequest {
            job_id,
            force: query.flag("force")?,
        })
        .await?;
    empty()
}

/// DescribeJobExecution: `GET /things/{thingName}/jobs/{jobId}?executionNumber=`.
async fn describe_job_execution(
    State(state): State<AppState>,
    Path((thing_name, job_id)): Path<(String, String)>,
    query: Query,
) -> ApiResult {
    // `$next` is the device side's (iot-jobs-data); the control plane's
    // jobId is a job's.
    if job_id == "$next" {
        return Err(ApiError::invalid(
            "jobId must be 1 to 64 characters of [a-zA-Z0-9_-]",
        ));
    }
    let described = state
        .jobs
        .clone()
        .describe_job_execution(pb::DescribeJobExecutionRequest {
            job_id,
            thing_name,
            execution_number: query.integer("executionNumber")?,
        })
        .await?
        .into_inner();
    ok(DescribeJobExecutionOutput::from(described))
}

/// ListJobExecutionsForJob: `GET /jobs/{jobId}/things`.
async fn list_job_executions_for_job(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    query: Query,
) -> ApiResult {
    let paging = query.token_page()?;
    let listed = state
        .jobs
        .clone()
        .list_job_executions_for_job(pb::ListJobExecutionsForJobRequest {
            job_id,
            status: execution_status(query.string("status").as_deref())? as i32,
            next_token: paging.token,
            max_results: paging.size,
        })
        .await?
        .into_inner();
    ok(ListJobExecutionsForJobOutput::from(listed))
}

/// ListJobExecutionsForThing: `GET /things/{thingName}/jobs`.
async fn list_job_executions_for_thing(
    State(state): State<AppState>,
    Path(thing_name): Path<String>,
    query: Query,
) -> ApiResult {
    if query.has("namespaceId") {
        return Err(ApiError::invalid("namespaceId not supported by Herald yet"));
    }
    let paging = query.token_page()?;
    let listed = state
        .jobs
        .clone()
        .list_job_executions_for_thing(pb::ListJobExecutionsForThingRequest {
            thing_name,
            status: execution_status(query.string("status").as_deref())? as i32,
            job_id: query.string("jobId"),
            next_token: paging.token,
            max_results: paging.size,
        })
        .await?
        .into_inner();
    ok(ListJobExecutionsForThingOutput::from(listed))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CancelJobExecution {
    expected_version: Option<i64>,
    status_details: Option<HashMap<String, String>>,
}

/// CancelJobExecution: `PUT /things/{thingName}/jobs/{jobId}/cancel?force=`.
async fn cancel_job_execution(
    State(state): State<AppState>,
    Path((thing_name, job_id)): Path<(String, String)>,
    query: Query,
    Body(body): Body<CancelJobExecution>,
) -> ApiResult {
    state
        .jobs
        .clone()
        .cancel_job_execution(pb::CancelJobExecutionRequest {
            job_id,
            thing_name,
            force: query.flag("force")?,
            expected_version: body.expected_version,
            status_details: body
                .status_details
                .map(|entries| pb::StatusDetails { entries }),
        })
        .await?;
    empty()
}

/// DeleteJobExecution:
/// `DELETE /things/{thingName}/jobs/{jobId}/executionNumber/{executionNumber}?force=`.
async fn delete_job_execution(
    State(state): State<AppState>,
    Path((thing_name, job_id, execution_number)): Path<(String, String, String)>,
    query: Query,
) -> ApiResult {
    let execution_number = execution_number.parse::<i64>().map_err(|_| {
        ApiError::invalid(format!(
            "executionNumber must be a whole number, got {execution_number:?}"
        ))
    })?;
    if query.has("namespaceId") {
        return Err(ApiError::invalid("namespaceId not supported by Herald yet"));
    }
    state
        .jobs
        .clone()
        .delete_job_execution(pb::DeleteJobExecutionRequest {
            job_id,
            thing_name,
            execution_number,
            force: query.flag("force")?,
        })
        .await?;
    empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_not_applied_yet_are_refused_by_name() {
        let body: CreateJob = serde_json::from_str(
            r#"{"targets":["a"],"document":"{}","jobExecutionsRolloutConfig":{"maximumPerMinute":1},
                "tags":[{"Key":"k","Value":"v"}],"presignedUrlConfig":{"expiresInSec":60}}"#,
        )
        .unwrap();
        let err = refuse_unsupported(&body.others).unwrap_err();
        assert_eq!(err.code, "InvalidRequestException");
        assert_eq!(
            err.message,
            "presignedUrlConfig not supported by Herald yet"
        );
        let bad_time = Some(SchedulingConfig {
            start_time: Some("tomorrow".into()),
            ..SchedulingConfig::default()
        });
        assert!(scheduling_config(bad_time).is_err());
        let at = scheduling_config(Some(SchedulingConfig {
            start_time: Some("2030-01-02T03:04".into()),
            ..SchedulingConfig::default()
        }))
        .unwrap()
        .unwrap();
        assert_eq!(at.start_time_ms, Some(1_893_553_440_000));
        let plain: CreateJob =
            serde_json::from_str(r#"{"targets":["a"],"document":"{}","tags":[]}"#).unwrap();
        assert!(refuse_unsupported(&plain.others).is_ok());
    }

    #[test]
    fn statuses_are_aws_names() {
        assert_eq!(
            execution_status(Some("TIMED_OUT")).unwrap(),
            pb::JobExecutionStatus::TimedOut
        );
        assert!(execution_status(Some("timed_out")).is_err());
        assert_eq!(
            target_selection(Some("CONTINUOUS")).unwrap(),
            pb::TargetSelection::Continuous
        );
        assert!(target_selection(Some("ALL")).is_err());
        assert_eq!(
            job_status(Some("SCHEDULED")).unwrap(),
            pb::JobStatus::Scheduled
        );
        assert!(job_status(Some("scheduled")).is_err());
        assert_eq!(job_status(None).unwrap(), pb::JobStatus::Unspecified);
    }
}
