//! The jobs device API over MQTT (AWS IoT Core Developer Guide: "Jobs device
//! MQTT API operations"): a PUBLISH on `$aws/things/{thingName}/jobs/get`,
//! `.../start-next`, `.../{jobId}/get` (`$next` allowed) or
//! `.../{jobId}/update` is a request to the registry's `Jobs` service; its
//! answer goes to `<request topic>/accepted` or `/rejected`, to the
//! requesting client only (the session delivers it if the client subscribed
//! to that topic and may receive it). Timestamps are epoch seconds; the
//! request's `clientToken` is echoed.

use std::collections::{BTreeMap, HashMap};

use crate::partition::Tagged;
use herald_proto::{
    error::{AwsError, ErrorType},
    registry::v1::{self as pb, jobs_client::JobsClient},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::{
    DeviceExecution, DeviceSummary, device_execution, device_summary, execution_status_name,
};

/// The job id that names a thing's next pending execution.
const NEXT: &str = "$next";

/// A jobs request, parsed from its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Request<'a> {
    /// `get`: the thing's pending executions.
    Get { thing: &'a str },
    /// `start-next`.
    StartNext { thing: &'a str },
    /// `{jobId}/get`.
    Describe { thing: &'a str, job_id: &'a str },
    /// `{jobId}/update`.
    Update { thing: &'a str, job_id: &'a str },
}

/// The request a topic names, if it names one.
pub(super) fn parse(topic: &str) -> Option<Request<'_>> {
    let (thing, rest) = crate::bus::topic::thing_service(topic, "jobs")?;
    let levels: Vec<&str> = rest.split('/').collect();
    match levels[..] {
        ["get"] => Some(Request::Get { thing }),
        ["start-next"] => Some(Request::StartNext { thing }),
        [job_id, "get"] if !job_id.is_empty() => Some(Request::Describe { thing, job_id }),
        [job_id, "update"] if !job_id.is_empty() => Some(Request::Update { thing, job_id }),
        _ => None,
    }
}

/// A request's JSON members (every one optional).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Body {
    client_token: Option<String>,
    status: Option<String>,
    status_details: Option<HashMap<String, String>>,
    expected_version: Option<i64>,
    execution_number: Option<i64>,
    include_job_execution_state: Option<bool>,
    include_job_document: Option<bool>,
    step_timeout_in_minutes: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PendingReply<'a> {
    in_progress_jobs: Vec<DeviceSummary<'a>>,
    queued_jobs: Vec<DeviceSummary<'a>>,
    timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecutionReply<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    execution: Option<DeviceExecution<'a>>,
    timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecutionState {
    status: &'static str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    status_details: BTreeMap<String, String>,
    version_number: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct UpdateReply {
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_state: Option<ExecutionState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_document: Option<Value>,
    timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Rejection {
    code: &'static str,
    message: String,
    timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_token: Option<String>,
}

/// Why a request is rejected, as the device API names it.
fn rejection_code(err: &AwsError) -> &'static str {
    match err.error_type {
        ErrorType::InvalidRequest => "InvalidRequest",
        ErrorType::ResourceNotFound => "ResourceNotFound",
        ErrorType::InvalidStateTransition => "InvalidStateTransition",
        ErrorType::VersionConflict => "VersionMismatch",
        ErrorType::TerminalState => "TerminalStateReached",
        ErrorType::Throttling => "RequestThrottled",
        _ => "InternalError",
    }
}

fn to_json<T: Serialize>(reply: &T) -> Vec<u8> {
    // Strings, integers, booleans, maps and JSON values only.
    serde_json::to_vec(reply).expect("a jobs reply serializes to JSON")
}

/// A document as JSON (devices parse it as an object); `None` if it is not.
fn document_json(document: &str) -> Option<Value> {
    serde_json::from_str(document).ok()
}

/// The reply topic and payload of `request`, published on `topic` with
/// Epoch seconds as milliseconds.
fn now_ms(now_secs: i64) -> i64 {
    now_secs.saturating_mul(1000)
}

/// `payload`, answered by `jobs` at `now_secs`.
pub(super) async fn answer(
    mut jobs: JobsClient<Tagged>,
    topic: &str,
    request: Request<'_>,
    payload: &[u8],
    now_secs: i64,
) -> (String, Vec<u8>) {
    let body = if payload.iter().all(u8::is_ascii_whitespace) {
        Ok(Body::default())
    } else {
        serde_json::from_slice::<Body>(payload)
    };
    let body = match body {
        Ok(body) => body,
        Err(err) => {
            let json = serde_json::from_slice::<Value>(payload);
            let rejection = Rejection {
                code: if json.is_ok() {
                    "InvalidRequest"
                } else {
                    "InvalidJson"
                },
                message: format!("The request payload is not valid: {err}"),
                timestamp: now_secs,
                client_token: json
                    .ok()
                    .and_then(|v| v.get("clientToken")?.as_str().map(str::to_owned)),
            };
            return (format!("{topic}/rejected"), to_json(&rejection));
        }
    };
    let client_token = body.client_token.clone();
    let answered = match request {
        Request::Get { thing } => get(&mut jobs, thing, client_token.clone(), now_secs).await,
        Request::StartNext { thing } => start_next(&mut jobs, thing, body, now_secs).await,
        Request::Describe { thing, job_id } => {
            describe(&mut jobs, thing, job_id, body, now_secs).await
        }
        Request::Update { thing, job_id } => update(&mut jobs, thing, job_id, body, now_secs).await,
    };
    match answered {
        Ok(reply) => (format!("{topic}/accepted"), reply),
        Err(err) => {
            let rejection = Rejection {
                code: rejection_code(&err),
                message: err.message,
                timestamp: now_secs,
                client_token,
            };
            (format!("{topic}/rejected"), to_json(&rejection))
        }
    }
}

fn aws(status: tonic::Status) -> AwsError {
    AwsError::from_status(&status)
}

/// The thing's pending executions.
async fn pending(
    jobs: &mut JobsClient<Tagged>,
    thing: &str,
) -> Result<pb::GetPendingJobExecutionsResponse, AwsError> {
    Ok(jobs
        .get_pending_job_executions(pb::GetPendingJobExecutionsRequest {
            thing_name: thing.to_owned(),
        })
        .await
        .map_err(aws)?
        .into_inner())
}

async fn get(
    jobs: &mut JobsClient<Tagged>,
    thing: &str,
    client_token: Option<String>,
    now_secs: i64,
) -> Result<Vec<u8>, AwsError> {
    let pending = pending(jobs, thing).await?;
    Ok(to_json(&PendingReply {
        in_progress_jobs: pending
            .in_progress_jobs
            .iter()
            .map(device_summary)
            .collect(),
        queued_jobs: pending.queued_jobs.iter().map(device_summary).collect(),
        timestamp: now_secs,
        client_token,
    }))
}

async fn start_next(
    jobs: &mut JobsClient<Tagged>,
    thing: &str,
    body: Body,
    now_secs: i64,
) -> Result<Vec<u8>, AwsError> {
    let started = jobs
        .start_next_pending_job_execution(pb::StartNextPendingJobExecutionRequest {
            thing_name: thing.to_owned(),
            status_details: body
                .status_details
                .map(|entries| pb::StatusDetails { entries }),
            step_timeout_in_minutes: body.step_timeout_in_minutes,
        })
        .await
        .map_err(aws)?
        .into_inner();
    Ok(to_json(&ExecutionReply {
        execution: started
            .execution
            .as_ref()
            .map(|e| device_execution(e, Some(&started.job_document), now_ms(now_secs))),
        timestamp: now_secs,
        client_token: body.client_token,
    }))
}

async fn describe(
    jobs: &mut JobsClient<Tagged>,
    thing: &str,
    job_id: &str,
    body: Body,
    now_secs: i64,
) -> Result<Vec<u8>, AwsError> {
    let described = jobs
        .describe_job_execution(pb::DescribeJobExecutionRequest {
            job_id: job_id.to_owned(),
            thing_name: thing.to_owned(),
            execution_number: body.execution_number,
        })
        .await
        .map_err(aws);
    let described = match described {
        Ok(described) => described.into_inner(),
        // `$next` with nothing pending: an answer without an execution.
        Err(err) if job_id == NEXT && err.error_type == ErrorType::ResourceNotFound => {
            return Ok(to_json(&ExecutionReply {
                execution: None,
                timestamp: now_secs,
                client_token: body.client_token,
            }));
        }
        Err(err) => return Err(err),
    };
    let include_document = body.include_job_document.unwrap_or(true);
    Ok(to_json(&ExecutionReply {
        execution: described.execution.as_ref().map(|e| {
            device_execution(
                e,
                include_document.then_some(described.job_document.as_str()),
                now_ms(now_secs),
            )
        }),
        timestamp: now_secs,
        client_token: body.client_token,
    }))
}

async fn update(
    jobs: &mut JobsClient<Tagged>,
    thing: &str,
    job_id: &str,
    body: Body,
    now_secs: i64,
) -> Result<Vec<u8>, AwsError> {
    let status = match body.status.as_deref() {
        Some("IN_PROGRESS") => pb::JobExecutionStatus::InProgress,
        Some("SUCCEEDED") => pb::JobExecutionStatus::Succeeded,
        Some("FAILED") => pb::JobExecutionStatus::Failed,
        Some("REJECTED") => pb::JobExecutionStatus::Rejected,
        Some(other) => {
            return Err(AwsError::new(
                ErrorType::InvalidRequest,
                format!(
                    "A device may set status IN_PROGRESS, SUCCEEDED, FAILED or REJECTED, not {other:?}"
                ),
            ));
        }
        None => {
            return Err(AwsError::new(
                ErrorType::InvalidRequest,
                "status is required",
            ));
        }
    };
    let updated = jobs
        .update_job_execution(pb::UpdateJobExecutionRequest {
            job_id: job_id.to_owned(),
            thing_name: thing.to_owned(),
            status: status as i32,
            status_details: body
                .status_details
                .map(|entries| pb::StatusDetails { entries }),
            expected_version: body.expected_version,
            execution_number: body.execution_number,
            step_timeout_in_minutes: body.step_timeout_in_minutes,
        })
        .await
        .map_err(aws)?
        .into_inner();
    let execution = updated.execution.unwrap_or_default();
    Ok(to_json(&UpdateReply {
        execution_state: body.include_job_execution_state.unwrap_or(false).then(|| {
            ExecutionState {
                status: execution_status_name(execution.status),
                status_details: execution.status_details.into_iter().collect(),
                version_number: execution.version_number,
            }
        }),
        job_document: if body.include_job_document.unwrap_or(false) {
            document_json(&updated.job_document)
        } else {
            None
        },
        timestamp: now_secs,
        client_token: body.client_token,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_topics_are_recognised_and_nothing_else() {
        assert_eq!(
            parse("$aws/things/t1/jobs/get"),
            Some(Request::Get { thing: "t1" })
        );
        assert_eq!(
            parse("$aws/things/t1/jobs/start-next"),
            Some(Request::StartNext { thing: "t1" })
        );
        assert_eq!(
            parse("$aws/things/t1/jobs/$next/get"),
            Some(Request::Describe {
                thing: "t1",
                job_id: "$next"
            })
        );
        assert_eq!(
            parse("$aws/things/t:1/jobs/fw-2/update"),
            Some(Request::Update {
                thing: "t:1",
                job_id: "fw-2"
            })
        );
        for other in [
            "$aws/things/t1/jobs/get/accepted",
            "$aws/things/t1/jobs/notify",
            "$aws/things/t1/jobs/notify-next",
            "$aws/things/t1/jobs/fw/update/accepted",
            "$aws/things/t1/shadow/get",
            "$aws/things//jobs/get",
            "$aws/things/t1/jobs//get",
            "things/t1/jobs/get",
            "$aws/things/t1",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }

    #[test]
    fn rejections_use_the_device_api_codes() {
        let code = |t| rejection_code(&AwsError::new(t, "m"));
        assert_eq!(code(ErrorType::VersionConflict), "VersionMismatch");
        assert_eq!(code(ErrorType::TerminalState), "TerminalStateReached");
        assert_eq!(
            code(ErrorType::InvalidStateTransition),
            "InvalidStateTransition"
        );
        assert_eq!(code(ErrorType::ResourceNotFound), "ResourceNotFound");
        assert_eq!(code(ErrorType::InternalFailure), "InternalError");
    }
}
