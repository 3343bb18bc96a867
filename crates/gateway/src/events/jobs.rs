//! The two jobs event families: topic and payload of each (AWS IoT Core
//! Developer Guide: "Jobs events"); and the notifications a thing's devices
//! get when its pending executions change, `$aws/things/{thingName}/jobs/notify`
//! and `.../notify-next` ("Jobs device MQTT API operations"), which no event
//! configuration gates.
//!
//! As in the guide's examples, `timestamp` is in epoch seconds while
//! `createdAt`, `lastUpdatedAt` and `completedAt` are in milliseconds. A
//! `completed` event carries the guide's five counts in `jobProcessDetails`
//! (canceled, rejected, failed, removed, succeeded); `comment` is present on
//! `deleted`, `cancellation_in_progress` and `deletion_in_progress`.

use std::collections::BTreeMap;

use herald_proto::registry::v1::{self as pb, ChangeEvent};
use serde::Serialize;

use super::RenderError;

/// The kind of a job event: its `operation` and topic level.
fn job_kind(raw: i32) -> Option<(&'static str, &'static str)> {
    use pb::JobEventKind as K;
    Some(match K::try_from(raw).ok()? {
        K::Unspecified => return None,
        K::Completed => ("COMPLETED", "completed"),
        K::Canceled => ("CANCELED", "canceled"),
        K::Deleted => ("DELETED", "deleted"),
        K::CancellationInProgress => ("CANCELLATION_IN_PROGRESS", "cancellation_in_progress"),
        K::DeletionInProgress => ("DELETION_IN_PROGRESS", "deletion_in_progress"),
    })
}

/// The kind of a job execution event: its `operation` and topic level.
fn execution_kind(raw: i32) -> Option<(&'static str, &'static str)> {
    use pb::JobExecutionEventKind as K;
    Some(match K::try_from(raw).ok()? {
        K::Unspecified => return None,
        K::Succeeded => ("SUCCEEDED", "succeeded"),
        K::Failed => ("FAILED", "failed"),
        K::Rejected => ("REJECTED", "rejected"),
        K::Canceled => ("CANCELED", "canceled"),
        K::TimedOut => ("TIMED_OUT", "timed_out"),
        K::Removed => ("REMOVED", "removed"),
        K::Deleted => ("DELETED", "deleted"),
    })
}

/// A job status's AWS name.
pub(crate) fn job_status_name(raw: i32) -> &'static str {
    match pb::JobStatus::try_from(raw) {
        Ok(pb::JobStatus::InProgress) => "IN_PROGRESS",
        Ok(pb::JobStatus::Canceled) => "CANCELED",
        Ok(pb::JobStatus::Completed) => "COMPLETED",
        Ok(pb::JobStatus::DeletionInProgress) => "DELETION_IN_PROGRESS",
        Ok(pb::JobStatus::Scheduled) => "SCHEDULED",
        Ok(pb::JobStatus::Unspecified) | Err(_) => "UNKNOWN",
    }
}

/// An execution status's AWS name.
pub(crate) fn execution_status_name(raw: i32) -> &'static str {
    use pb::JobExecutionStatus as S;
    match S::try_from(raw) {
        Ok(S::Queued) => "QUEUED",
        Ok(S::InProgress) => "IN_PROGRESS",
        Ok(S::Succeeded) => "SUCCEEDED",
        Ok(S::Failed) => "FAILED",
        Ok(S::TimedOut) => "TIMED_OUT",
        Ok(S::Rejected) => "REJECTED",
        Ok(S::Removed) => "REMOVED",
        Ok(S::Canceled) => "CANCELED",
        Ok(S::Unspecified) | Err(_) => "UNKNOWN",
    }
}

/// A target selection's AWS name (SNAPSHOT when unset).
pub(crate) fn target_selection_name(raw: i32) -> &'static str {
    match pb::TargetSelection::try_from(raw) {
        Ok(pb::TargetSelection::Continuous) => "CONTINUOUS",
        _ => "SNAPSHOT",
    }
}

/// `jobProcessDetails` of a `completed` event.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProcessCounts {
    number_of_canceled_things: u64,
    number_of_rejected_things: u64,
    number_of_failed_things: u64,
    number_of_removed_things: u64,
    number_of_succeeded_things: u64,
}

/// A job event, `eventType` `JOB`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JobPayload<'a> {
    event_type: &'static str,
    event_id: &'a str,
    timestamp: i64,
    operation: &'static str,
    job_id: &'a str,
    status: &'static str,
    target_selection: &'static str,
    targets: &'a [String],
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_at: Option<i64>,
    created_at: i64,
    last_updated_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_process_details: Option<ProcessCounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<&'a str>,
}

/// A job execution event, `eventType` `JOB_EXECUTION`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecutionPayload<'a> {
    event_type: &'static str,
    event_id: &'a str,
    timestamp: i64,
    operation: &'static str,
    job_id: &'a str,
    thing_arn: &'a str,
    status: &'static str,
    status_details: BTreeMap<&'a str, &'a str>,
}

fn missing(sequence: u64) -> RenderError {
    RenderError::MissingBody { sequence }
}

fn to_json<T: Serialize>(payload: &T) -> Vec<u8> {
    // Strings, integers and string-keyed maps: JSON always represents them.
    serde_json::to_vec(payload).expect("a jobs event payload serializes to JSON")
}

/// The topic and payload of a job event.
pub(super) fn job(
    event: &ChangeEvent,
    body: &pb::JobEvent,
) -> Result<(String, Vec<u8>), RenderError> {
    let sequence = event.sequence;
    let job = body.job.as_ref().ok_or_else(|| missing(sequence))?;
    let (operation, level) = job_kind(body.kind).ok_or_else(|| RenderError::OperationMismatch {
        sequence,
        gate: super::EventGate::Job,
        operation: body.kind.to_string(),
    })?;
    let job_id = super::render::topic_level(sequence, "jobId", &job.job_id)?;
    let completed = operation == "COMPLETED";
    let with_comment = matches!(
        operation,
        "DELETED" | "CANCELLATION_IN_PROGRESS" | "DELETION_IN_PROGRESS"
    );
    let details = job.job_process_details.clone().unwrap_or_default();
    let payload = JobPayload {
        event_type: "JOB",
        event_id: &event.event_id,
        timestamp: event.timestamp_ms.div_euclid(1000),
        operation,
        job_id,
        status: job_status_name(job.status),
        target_selection: target_selection_name(job.target_selection),
        targets: &job.targets,
        description: job.description.as_deref(),
        completed_at: if completed { job.completed_at_ms } else { None },
        created_at: job.created_at_ms,
        last_updated_at: job.last_updated_at_ms,
        job_process_details: completed.then_some(ProcessCounts {
            number_of_canceled_things: details.number_of_canceled_things,
            number_of_rejected_things: details.number_of_rejected_things,
            number_of_failed_things: details.number_of_failed_things,
            number_of_removed_things: details.number_of_removed_things,
            number_of_succeeded_things: details.number_of_succeeded_things,
        }),
        comment: if with_comment {
            Some(job.comment.as_deref().unwrap_or_default())
        } else {
            None
        },
    };
    Ok((
        format!("$aws/events/job/{job_id}/{level}"),
        to_json(&payload),
    ))
}

/// The topic and payload of a job execution event.
pub(super) fn execution(
    event: &ChangeEvent,
    body: &pb::JobExecutionEvent,
) -> Result<(String, Vec<u8>), RenderError> {
    let sequence = event.sequence;
    let execution = body.execution.as_ref().ok_or_else(|| missing(sequence))?;
    let (operation, level) =
        execution_kind(body.kind).ok_or_else(|| RenderError::OperationMismatch {
            sequence,
            gate: super::EventGate::JobExecution,
            operation: body.kind.to_string(),
        })?;
    let job_id = super::render::topic_level(sequence, "jobId", &execution.job_id)?;
    let payload = ExecutionPayload {
        event_type: "JOB_EXECUTION",
        event_id: &event.event_id,
        timestamp: event.timestamp_ms.div_euclid(1000),
        operation,
        job_id,
        thing_arn: &execution.thing_arn,
        status: execution_status_name(execution.status),
        status_details: execution
            .status_details
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
    };
    Ok((
        format!("$aws/events/jobExecution/{job_id}/{level}"),
        to_json(&payload),
    ))
}

/// The most executions of each list a `notify` message carries.
const NOTIFY_MAX: usize = 10;

/// `JobExecutionSummary` of the device API (epoch seconds), over MQTT and
/// HTTP alike.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceSummary<'a> {
    job_id: &'a str,
    queued_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<i64>,
    last_updated_at: i64,
    version_number: i64,
    execution_number: i64,
}

pub(crate) fn device_summary(e: &pb::JobExecution) -> DeviceSummary<'_> {
    DeviceSummary {
        job_id: &e.job_id,
        queued_at: e.queued_at_ms.div_euclid(1000),
        started_at: e.started_at_ms.map(|ms| ms.div_euclid(1000)),
        last_updated_at: e.last_updated_at_ms.div_euclid(1000),
        version_number: e.version_number,
        execution_number: e.execution_number,
    }
}

#[derive(Serialize)]
struct NotifyJobs<'a> {
    #[serde(rename = "IN_PROGRESS", skip_serializing_if = "Vec::is_empty")]
    in_progress: Vec<DeviceSummary<'a>>,
    #[serde(rename = "QUEUED", skip_serializing_if = "Vec::is_empty")]
    queued: Vec<DeviceSummary<'a>>,
}

#[derive(Serialize)]
struct NotifyPayload<'a> {
    timestamp: i64,
    jobs: NotifyJobs<'a>,
}

/// `JobExecutionData` of the device API: the job document as JSON.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceExecution<'a> {
    pub(crate) job_id: &'a str,
    pub(crate) thing_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) job_document: Option<serde_json::Value>,
    pub(crate) status: &'static str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) status_details: BTreeMap<&'a str, &'a str>,
    pub(crate) queued_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) started_at: Option<i64>,
    pub(crate) last_updated_at: i64,
    pub(crate) version_number: i64,
    pub(crate) execution_number: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) approximate_seconds_before_timed_out: Option<i64>,
}

/// Whole seconds from `now_ms` until an IN_PROGRESS execution times out
/// (`approximateSecondsBeforeTimedOut`); `None` without a timeout.
pub(crate) fn seconds_before_timed_out(e: &pb::JobExecution, now_ms: i64) -> Option<i64> {
    e.timeout_at_ms
        .map(|at| at.saturating_sub(now_ms).max(0).saturating_add(999) / 1000)
}

/// An execution as the device API shows it at `now_ms`, with its job's
/// document (a JSON object; a document that is not JSON is left out).
pub(crate) fn device_execution<'a>(
    e: &'a pb::JobExecution,
    document: Option<&str>,
    now_ms: i64,
) -> DeviceExecution<'a> {
    DeviceExecution {
        approximate_seconds_before_timed_out: seconds_before_timed_out(e, now_ms),
        job_id: &e.job_id,
        thing_name: &e.thing_name,
        job_document: document.and_then(|d| serde_json::from_str(d).ok()),
        status: execution_status_name(e.status),
        status_details: e
            .status_details
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        queued_at: e.queued_at_ms.div_euclid(1000),
        started_at: e.started_at_ms.map(|ms| ms.div_euclid(1000)),
        last_updated_at: e.last_updated_at_ms.div_euclid(1000),
        version_number: e.version_number,
        execution_number: e.execution_number,
    }
}

#[derive(Serialize)]
struct NotifyNextPayload<'a> {
    timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    execution: Option<DeviceExecution<'a>>,
}

/// The topic and payload of a `notify` or `notify-next` message.
pub(super) fn notify(
    event: &ChangeEvent,
    body: &pb::JobsNotifyEvent,
) -> Result<(String, Vec<u8>), RenderError> {
    let sequence = event.sequence;
    let thing = super::render::topic_level(sequence, "thingName", &body.thing_name)?;
    let timestamp = event.timestamp_ms.div_euclid(1000);
    match pb::JobsNotifyKind::try_from(body.kind) {
        Ok(pb::JobsNotifyKind::Notify) => {
            let payload = NotifyPayload {
                timestamp,
                jobs: NotifyJobs {
                    in_progress: body
                        .in_progress
                        .iter()
                        .take(NOTIFY_MAX)
                        .map(device_summary)
                        .collect(),
                    queued: body
                        .queued
                        .iter()
                        .take(NOTIFY_MAX)
                        .map(device_summary)
                        .collect(),
                },
            };
            Ok((
                format!("$aws/things/{thing}/jobs/notify"),
                to_json(&payload),
            ))
        }
        Ok(pb::JobsNotifyKind::NotifyNext) => {
            let next = body.in_progress.iter().chain(&body.queued).next();
            let payload = NotifyNextPayload {
                timestamp,
                execution: next.map(|e| {
                    device_execution(e, body.next_job_document.as_deref(), event.timestamp_ms)
                }),
            };
            Ok((
                format!("$aws/things/{thing}/jobs/notify-next"),
                to_json(&payload),
            ))
        }
        Ok(pb::JobsNotifyKind::Unspecified) | Err(_) => Err(RenderError::OperationMismatch {
            sequence,
            gate: super::EventGate::ThingJobs,
            operation: body.kind.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn event(body: pb::change_event::Event) -> ChangeEvent {
        ChangeEvent {
            sequence: 7,
            event_id: "1b2c3d4e-0000-4000-8000-000000000001".to_owned(),
            timestamp_ms: 1_700_000_000_123,
            account_id: "123456789012".to_owned(),
            region: "us-east-1".to_owned(),
            operation: 0,
            event: Some(body),
        }
    }

    fn a_job(status: pb::JobStatus) -> pb::Job {
        pb::Job {
            job_id: "fw-2".to_owned(),
            job_arn: "arn:aws:iot:us-east-1:123456789012:job/fw-2".to_owned(),
            target_selection: pb::TargetSelection::Snapshot as i32,
            status: status as i32,
            comment: Some("rolled back".to_owned()),
            targets: vec!["arn:aws:iot:us-east-1:123456789012:thing/t1".to_owned()],
            description: Some("firmware 2".to_owned()),
            created_at_ms: 1_699_999_000_000,
            last_updated_at_ms: 1_700_000_000_000,
            completed_at_ms: Some(1_700_000_000_100),
            job_process_details: Some(pb::JobProcessDetails {
                number_of_succeeded_things: 3,
                number_of_rejected_things: 1,
                number_of_queued_things: 0,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn json_of(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn a_completed_job_has_its_counts_and_completion_time() {
        let body = pb::JobEvent {
            kind: pb::JobEventKind::Completed as i32,
            job: Some(a_job(pb::JobStatus::Completed)),
        };
        let e = event(pb::change_event::Event::Job(body.clone()));
        let (topic, payload) = job(&e, &body).unwrap();
        assert_eq!(topic, "$aws/events/job/fw-2/completed");
        assert_eq!(
            json_of(&payload),
            json!({
                "eventType": "JOB",
                "eventId": "1b2c3d4e-0000-4000-8000-000000000001",
                "timestamp": 1_700_000_000,
                "operation": "COMPLETED",
                "jobId": "fw-2",
                "status": "COMPLETED",
                "targetSelection": "SNAPSHOT",
                "targets": ["arn:aws:iot:us-east-1:123456789012:thing/t1"],
                "description": "firmware 2",
                "completedAt": 1_700_000_000_100_i64,
                "createdAt": 1_699_999_000_000_i64,
                "lastUpdatedAt": 1_700_000_000_000_i64,
                "jobProcessDetails": {
                    "numberOfCanceledThings": 0,
                    "numberOfRejectedThings": 1,
                    "numberOfFailedThings": 0,
                    "numberOfRemovedThings": 0,
                    "numberOfSucceededThings": 3
                }
            })
        );
    }

    #[test]
    fn cancellations_and_deletions_carry_the_comment() {
        for (kind, level, operation, has_comment) in [
            (
                pb::JobEventKind::CancellationInProgress,
                "cancellation_in_progress",
                "CANCELLATION_IN_PROGRESS",
                true,
            ),
            (pb::JobEventKind::Canceled, "canceled", "CANCELED", false),
            (
                pb::JobEventKind::DeletionInProgress,
                "deletion_in_progress",
                "DELETION_IN_PROGRESS",
                true,
            ),
            (pb::JobEventKind::Deleted, "deleted", "DELETED", true),
        ] {
            let body = pb::JobEvent {
                kind: kind as i32,
                job: Some(a_job(pb::JobStatus::Canceled)),
            };
            let e = event(pb::change_event::Event::Job(body.clone()));
            let (topic, payload) = job(&e, &body).unwrap();
            assert_eq!(topic, format!("$aws/events/job/fw-2/{level}"));
            let payload = json_of(&payload);
            assert_eq!(payload["operation"], operation);
            assert_eq!(payload["status"], "CANCELED");
            assert_eq!(payload.get("comment").is_some(), has_comment, "{payload}");
            assert!(payload.get("jobProcessDetails").is_none());
            assert!(payload.get("completedAt").is_none());
        }
    }

    #[test]
    fn execution_events_name_the_thing_and_its_details() {
        let body = pb::JobExecutionEvent {
            kind: pb::JobExecutionEventKind::TimedOut as i32,
            execution: Some(pb::JobExecution {
                job_id: "fw-2".to_owned(),
                thing_name: "t1".to_owned(),
                thing_arn: "arn:aws:iot:us-east-1:123456789012:thing/t1".to_owned(),
                status: pb::JobExecutionStatus::TimedOut as i32,
                status_details: [("step".to_owned(), "2".to_owned())].into(),
                ..Default::default()
            }),
        };
        let e = event(pb::change_event::Event::JobExecution(body.clone()));
        let (topic, payload) = execution(&e, &body).unwrap();
        assert_eq!(topic, "$aws/events/jobExecution/fw-2/timed_out");
        assert_eq!(
            json_of(&payload),
            json!({
                "eventType": "JOB_EXECUTION",
                "eventId": "1b2c3d4e-0000-4000-8000-000000000001",
                "timestamp": 1_700_000_000,
                "operation": "TIMED_OUT",
                "jobId": "fw-2",
                "thingArn": "arn:aws:iot:us-east-1:123456789012:thing/t1",
                "status": "TIMED_OUT",
                "statusDetails": {"step": "2"}
            })
        );
    }

    fn pending(job_id: &str, status: pb::JobExecutionStatus) -> pb::JobExecution {
        pb::JobExecution {
            job_id: job_id.to_owned(),
            thing_name: "t1".to_owned(),
            status: status as i32,
            queued_at_ms: 1_699_000_000_999,
            last_updated_at_ms: 1_699_000_001_000,
            version_number: 1,
            execution_number: 1,
            ..Default::default()
        }
    }

    #[test]
    fn notify_lists_what_is_pending_in_progress_first() {
        let body = pb::JobsNotifyEvent {
            kind: pb::JobsNotifyKind::Notify as i32,
            thing_name: "t1".to_owned(),
            in_progress: vec![],
            queued: vec![
                pending("a", pb::JobExecutionStatus::Queued),
                pending("b", pb::JobExecutionStatus::Queued),
            ],
            next_job_document: None,
        };
        let e = event(pb::change_event::Event::JobsNotify(body.clone()));
        let (topic, payload) = notify(&e, &body).unwrap();
        assert_eq!(topic, "$aws/things/t1/jobs/notify");
        let summary = |id: &str| {
            json!({"jobId": id, "queuedAt": 1_699_000_000, "lastUpdatedAt": 1_699_000_001,
                   "versionNumber": 1, "executionNumber": 1})
        };
        assert_eq!(
            json_of(&payload),
            json!({"timestamp": 1_700_000_000, "jobs": {"QUEUED": [summary("a"), summary("b")]}})
        );
        let many = pb::JobsNotifyEvent {
            queued: (0..12)
                .map(|i| pending(&format!("j{i}"), pb::JobExecutionStatus::Queued))
                .collect(),
            ..body
        };
        let (_, payload) = notify(&e, &many).unwrap();
        assert_eq!(
            json_of(&payload)["jobs"]["QUEUED"]
                .as_array()
                .unwrap()
                .len(),
            10
        );
    }

    #[test]
    fn notify_next_carries_the_next_execution_with_its_document() {
        let mut started = pending("a", pb::JobExecutionStatus::InProgress);
        started.started_at_ms = Some(1_699_000_000_500);
        started.status_details = [("step".to_owned(), "1".to_owned())].into();
        let body = pb::JobsNotifyEvent {
            kind: pb::JobsNotifyKind::NotifyNext as i32,
            thing_name: "t1".to_owned(),
            in_progress: vec![started],
            queued: vec![pending("b", pb::JobExecutionStatus::Queued)],
            next_job_document: Some(r#"{"op":"update"}"#.to_owned()),
        };
        let e = event(pb::change_event::Event::JobsNotify(body.clone()));
        let (topic, payload) = notify(&e, &body).unwrap();
        assert_eq!(topic, "$aws/things/t1/jobs/notify-next");
        assert_eq!(
            json_of(&payload),
            json!({
                "timestamp": 1_700_000_000,
                "execution": {
                    "jobId": "a",
                    "thingName": "t1",
                    "jobDocument": {"op": "update"},
                    "status": "IN_PROGRESS",
                    "statusDetails": {"step": "1"},
                    "queuedAt": 1_699_000_000,
                    "startedAt": 1_699_000_000,
                    "lastUpdatedAt": 1_699_000_001,
                    "versionNumber": 1,
                    "executionNumber": 1
                }
            })
        );
        let nothing = pb::JobsNotifyEvent {
            in_progress: vec![],
            queued: vec![],
            next_job_document: None,
            ..body
        };
        let (_, payload) = notify(&e, &nothing).unwrap();
        assert_eq!(json_of(&payload), json!({"timestamp": 1_700_000_000}));
    }

    #[test]
    fn unknown_kinds_and_missing_bodies_are_not_rendered() {
        let body = pb::JobEvent {
            kind: 99,
            job: Some(a_job(pb::JobStatus::Completed)),
        };
        let e = event(pb::change_event::Event::Job(body.clone()));
        assert!(matches!(
            job(&e, &body),
            Err(RenderError::OperationMismatch { .. })
        ));
        let empty = pb::JobExecutionEvent {
            kind: pb::JobExecutionEventKind::Deleted as i32,
            execution: None,
        };
        let e = event(pb::change_event::Event::JobExecution(empty.clone()));
        assert!(matches!(
            execution(&e, &empty),
            Err(RenderError::MissingBody { .. })
        ));
    }
}
