//! The device side of jobs over HTTP: botocore's `iot-jobs-data` model
//! (2017-09-29, SigV4 service `iot-jobs-data`): GetPendingJobExecutions,
//! StartNextPendingJobExecution, DescribeJobExecution (`$next` allowed),
//! UpdateJobExecution. The same listener serves it: a request signed for
//! `iot-jobs-data` is routed here, one signed for `iot` to the control plane.
//! Timestamps are epoch seconds, as the model's `long` members are.

use std::collections::{BTreeMap, HashMap};

use axum::{
    Router,
    extract::State,
    routing::{MethodRouter, get},
};
use herald_proto::registry::v1 as pb;
use serde::{Deserialize, Serialize};

use super::extract::{Body, Path, Query};
use super::jobs_api::{execution_status, execution_status_name};
use super::output::{ApiResult, ok};
use super::{ApiError, AppState, ErrorKind, fallback};
use crate::events::{DeviceSummary, device_summary, seconds_before_timed_out};

/// The job id that names a thing's next pending execution.
const NEXT: &str = "$next";

pub(crate) fn routes() -> Router<AppState> {
    fn served(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
        route.fallback(fallback::not_implemented)
    }
    Router::new()
        .route(
            "/things/{thingName}/jobs",
            served(get(get_pending_job_executions)),
        )
        .route(
            "/things/{thingName}/jobs/{jobId}",
            served(
                get(describe_job_execution)
                    .post(update_job_execution)
                    .put(start_next_pending_job_execution),
            ),
        )
}

fn epoch_seconds(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

/// `JobExecution` of the model.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JobExecution {
    job_id: String,
    thing_name: String,
    status: &'static str,
    status_details: BTreeMap<String, String>,
    queued_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<i64>,
    last_updated_at: i64,
    version_number: i64,
    execution_number: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_document: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    approximate_seconds_before_timed_out: Option<i64>,
}

fn execution(e: pb::JobExecution, document: Option<String>) -> JobExecution {
    let now_ms = crate::http::time::now_ms();
    JobExecution {
        approximate_seconds_before_timed_out: seconds_before_timed_out(&e, now_ms),
        status: execution_status_name(e.status),
        job_id: e.job_id,
        thing_name: e.thing_name,
        status_details: e.status_details.into_iter().collect(),
        queued_at: epoch_seconds(e.queued_at_ms),
        started_at: e.started_at_ms.map(epoch_seconds),
        last_updated_at: epoch_seconds(e.last_updated_at_ms),
        version_number: e.version_number,
        execution_number: e.execution_number,
        job_document: document,
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PendingOutput<'a> {
    in_progress_jobs: Vec<DeviceSummary<'a>>,
    queued_jobs: Vec<DeviceSummary<'a>>,
}

/// GetPendingJobExecutions: `GET /things/{thingName}/jobs`.
async fn get_pending_job_executions(
    State(state): State<AppState>,
    Path(thing_name): Path<String>,
) -> ApiResult {
    let pending = state
        .jobs
        .clone()
        .get_pending_job_executions(pb::GetPendingJobExecutionsRequest { thing_name })
        .await?
        .into_inner();
    ok(PendingOutput {
        in_progress_jobs: pending
            .in_progress_jobs
            .iter()
            .map(device_summary)
            .collect(),
        queued_jobs: pending.queued_jobs.iter().map(device_summary).collect(),
    })
}

#[derive(Debug, Serialize)]
struct ExecutionOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    execution: Option<JobExecution>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct StartNext {
    status_details: Option<HashMap<String, String>>,
    step_timeout_in_minutes: Option<i64>,
}

/// StartNextPendingJobExecution: `PUT /things/{thingName}/jobs/$next`.
async fn start_next_pending_job_execution(
    State(state): State<AppState>,
    Path((thing_name, job_id)): Path<(String, String)>,
    Body(body): Body<StartNext>,
) -> ApiResult {
    if job_id != NEXT {
        return Err(ApiError::new(
            ErrorKind::UnknownOperation,
            format!(
                "PUT /things/{thing_name}/jobs/{job_id} is not an operation of iot-jobs-data: only $next can be started"
            ),
        ));
    }
    let started = state
        .jobs
        .clone()
        .start_next_pending_job_execution(pb::StartNextPendingJobExecutionRequest {
            thing_name,
            status_details: body
                .status_details
                .map(|entries| pb::StatusDetails { entries }),
            step_timeout_in_minutes: body.step_timeout_in_minutes,
        })
        .await?
        .into_inner();
    let document = Some(started.job_document);
    ok(ExecutionOutput {
        execution: started.execution.map(|e| execution(e, document)),
    })
}

/// DescribeJobExecution: `GET /things/{thingName}/jobs/{jobId}`, where
/// `$next` names the thing's next pending execution;
/// `?includeJobDocument=` (default true) and `?executionNumber=`.
async fn describe_job_execution(
    State(state): State<AppState>,
    Path((thing_name, job_id)): Path<(String, String)>,
    query: Query,
) -> ApiResult {
    let include_document = !query.has("includeJobDocument") || query.flag("includeJobDocument")?;
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
    let document = include_document.then_some(described.job_document);
    ok(ExecutionOutput {
        execution: described.execution.map(|e| execution(e, document)),
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Update {
    status: Option<String>,
    status_details: Option<HashMap<String, String>>,
    step_timeout_in_minutes: Option<i64>,
    expected_version: Option<i64>,
    include_job_execution_state: bool,
    include_job_document: bool,
    execution_number: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecutionState {
    status: &'static str,
    status_details: BTreeMap<String, String>,
    version_number: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct UpdateOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_state: Option<ExecutionState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_document: Option<String>,
}

/// UpdateJobExecution: `POST /things/{thingName}/jobs/{jobId}`.
async fn update_job_execution(
    State(state): State<AppState>,
    Path((thing_name, job_id)): Path<(String, String)>,
    Body(body): Body<Update>,
) -> ApiResult {
    let status = execution_status(body.status.as_deref())?;
    if status == pb::JobExecutionStatus::Unspecified {
        return Err(ApiError::invalid("status is required"));
    }
    let updated = state
        .jobs
        .clone()
        .update_job_execution(pb::UpdateJobExecutionRequest {
            job_id,
            thing_name,
            status: status as i32,
            status_details: body
                .status_details
                .map(|entries| pb::StatusDetails { entries }),
            expected_version: body.expected_version,
            execution_number: body.execution_number,
            step_timeout_in_minutes: body.step_timeout_in_minutes,
        })
        .await?
        .into_inner();
    let e = updated.execution.unwrap_or_default();
    ok(UpdateOutput {
        execution_state: body.include_job_execution_state.then(|| ExecutionState {
            status: execution_status_name(e.status),
            status_details: e.status_details.into_iter().collect(),
            version_number: e.version_number,
        }),
        job_document: body.include_job_document.then_some(updated.job_document),
    })
}
