//! Jobs and job executions: their records, the rules their fields obey, and
//! the execution state machine (AWS IoT Core Developer Guide: "Jobs", "Job
//! execution states", "Jobs limits"; botocore model `iot`, shapes `Job`,
//! `JobExecution`, `CreateJobRequest`).

use std::collections::BTreeMap;

use herald_proto::error::{AwsError, ErrorType};
use serde::{Deserialize, Serialize};

use super::{
    MAX_DESCRIPTION, invalid,
    rollout::{Rollout, Schedule},
};

/// The most bytes of a job document.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 32_768;
/// The most targets a job may name at once (botocore `JobTargets` has no
/// maximum; AWS IoT's jobs limits page allows 100 groups or things per
/// CreateJob).
pub(crate) const MAX_TARGETS: usize = 100;
/// `comment` and `description`.
pub(crate) const MAX_COMMENT: usize = 2028;
pub(crate) const MAX_REASON_CODE: usize = 128;
/// `statusDetails`: keys 1–128 characters `[a-zA-Z0-9:_-]+`, values 1–1024
/// characters without control characters, at most 10 entries.
pub(crate) const MAX_DETAIL_KEY: usize = 128;
pub(crate) const MAX_DETAIL_VALUE: usize = 1024;
pub(crate) const MAX_DETAILS: usize = 10;
/// `timeoutConfig.inProgressTimeoutInMinutes` and `stepTimeoutInMinutes`.
pub(crate) const MAX_TIMEOUT_MINUTES: i64 = 10_080;

pub(crate) type StatusDetails = BTreeMap<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum TargetSelection {
    Snapshot,
    Continuous,
}

/// A job's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum JobStatus {
    InProgress,
    Canceled,
    Completed,
    DeletionInProgress,
    /// Waiting for its `schedulingConfig.startTime`.
    Scheduled,
}

/// A job execution's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum ExecutionStatus {
    Queued,
    InProgress,
    Succeeded,
    Failed,
    TimedOut,
    Rejected,
    Removed,
    Canceled,
}

impl ExecutionStatus {
    #[cfg(test)]
    pub(crate) const ALL: [ExecutionStatus; 8] = [
        ExecutionStatus::Queued,
        ExecutionStatus::InProgress,
        ExecutionStatus::Succeeded,
        ExecutionStatus::Failed,
        ExecutionStatus::TimedOut,
        ExecutionStatus::Rejected,
        ExecutionStatus::Removed,
        ExecutionStatus::Canceled,
    ];

    /// QUEUED and IN_PROGRESS are pending; every other status is final.
    pub(crate) fn is_terminal(self) -> bool {
        !matches!(self, ExecutionStatus::Queued | ExecutionStatus::InProgress)
    }

    /// AWS's name of the status.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ExecutionStatus::Queued => "QUEUED",
            ExecutionStatus::InProgress => "IN_PROGRESS",
            ExecutionStatus::Succeeded => "SUCCEEDED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::TimedOut => "TIMED_OUT",
            ExecutionStatus::Rejected => "REJECTED",
            ExecutionStatus::Removed => "REMOVED",
            ExecutionStatus::Canceled => "CANCELED",
        }
    }
}

/// The failures a retry criterion covers (`jobExecutionsRetryConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FailureType {
    Failed,
    TimedOut,
    All,
}

impl FailureType {
    pub(crate) fn parse(name: &str) -> Option<FailureType> {
        match name {
            "FAILED" => Some(FailureType::Failed),
            "TIMED_OUT" => Some(FailureType::TimedOut),
            "ALL" => Some(FailureType::All),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            FailureType::Failed => "FAILED",
            FailureType::TimedOut => "TIMED_OUT",
            FailureType::All => "ALL",
        }
    }

    fn covers(self, status: ExecutionStatus) -> bool {
        match self {
            FailureType::Failed => status == ExecutionStatus::Failed,
            FailureType::TimedOut => status == ExecutionStatus::TimedOut,
            FailureType::All => {
                matches!(status, ExecutionStatus::Failed | ExecutionStatus::TimedOut)
            }
        }
    }
}

/// One `jobExecutionsRetryConfig` criterion: how many times an execution
/// that ends with this failure is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RetryCriterion {
    pub(crate) failure_type: FailureType,
    pub(crate) retries: u32,
}

/// The most retries of a criterion.
pub(crate) const MAX_RETRIES: u32 = 10;

/// A criteria list: `min..=max` of them, each failure type once (`name`
/// gives the failure type of one).
fn check_list<T>(
    what: &str,
    criteria: &[T],
    max: usize,
    name: impl Fn(&T) -> &'static str,
) -> Result<(), AwsError> {
    if criteria.is_empty() || criteria.len() > max {
        return Err(invalid(format!("{what} needs 1 to {max} criteria")));
    }
    for (i, c) in criteria.iter().enumerate() {
        if criteria[..i].iter().any(|o| name(o) == name(c)) {
            return Err(invalid(format!("failureType {} is given twice", name(c))));
        }
    }
    Ok(())
}

/// Retry criteria: 1 or 2, each failure type once, 0 to 10 retries.
pub(crate) fn check_retry(criteria: &[RetryCriterion]) -> Result<(), AwsError> {
    check_list("jobExecutionsRetryConfig", criteria, 2, |c| {
        c.failure_type.name()
    })?;
    if let Some(c) = criteria.iter().find(|c| c.retries > MAX_RETRIES) {
        return Err(invalid(format!(
            "numberOfRetries must be 0 to {MAX_RETRIES}, got {}",
            c.retries
        )));
    }
    Ok(())
}

/// Whether an execution that ended with `status` on attempt `attempt`
/// (0 for the first) is tried again under `criteria`.
pub(crate) fn retries_after(
    criteria: &[RetryCriterion],
    status: ExecutionStatus,
    attempt: u32,
) -> bool {
    criteria
        .iter()
        .any(|c| c.failure_type.covers(status) && attempt < c.retries)
}

/// The failures an abort criterion counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum AbortFailure {
    Failed,
    Rejected,
    TimedOut,
    All,
}

impl AbortFailure {
    pub(crate) fn parse(name: &str) -> Option<AbortFailure> {
        match name {
            "FAILED" => Some(AbortFailure::Failed),
            "REJECTED" => Some(AbortFailure::Rejected),
            "TIMED_OUT" => Some(AbortFailure::TimedOut),
            "ALL" => Some(AbortFailure::All),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            AbortFailure::Failed => "FAILED",
            AbortFailure::Rejected => "REJECTED",
            AbortFailure::TimedOut => "TIMED_OUT",
            AbortFailure::All => "ALL",
        }
    }
}

/// One `abortConfig` criterion (action CANCEL): the job is cancelled once
/// at least `min_executed` executions have ended and this failure is at
/// least `threshold_bp` (hundredths of a percent) of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AbortCriterion {
    pub(crate) failure_type: AbortFailure,
    pub(crate) threshold_bp: u32,
    pub(crate) min_executed: u64,
}

impl AbortCriterion {
    /// Why the job is cancelled, if `counts` meet this criterion. Ended
    /// executions: succeeded, failed, rejected and timed out (a failure that
    /// will be retried is no longer counted once its new attempt is queued).
    pub(crate) fn met(&self, counts: &ProcessDetails) -> Option<String> {
        let executed = counts.succeeded + counts.failed + counts.rejected + counts.timed_out;
        let failures = match self.failure_type {
            AbortFailure::Failed => counts.failed,
            AbortFailure::Rejected => counts.rejected,
            AbortFailure::TimedOut => counts.timed_out,
            AbortFailure::All => counts.failed + counts.rejected + counts.timed_out,
        };
        (executed >= self.min_executed.max(1)
            && failures * 10_000 >= u64::from(self.threshold_bp) * executed)
            .then(|| {
                format!(
                    "Canceled by its abortConfig: {failures} of {executed} executed things ended {}, at least {}%",
                    self.failure_type.name(),
                    f64::from(self.threshold_bp) / 100.0
                )
            })
    }
}

/// Abort criteria: 1 to 4 (one per failure type), thresholds above 0 and at
/// most 100%, at least one executed thing.
pub(crate) fn check_abort(criteria: &[AbortCriterion]) -> Result<(), AwsError> {
    check_list("abortConfig", criteria, 4, |c| c.failure_type.name())?;
    for c in criteria {
        if c.threshold_bp == 0 || c.threshold_bp > 10_000 {
            return Err(invalid(
                "thresholdPercentage must be above 0 and at most 100",
            ));
        }
        if c.min_executed == 0 {
            return Err(invalid("minNumberOfExecutedThings must be at least 1"));
        }
    }
    Ok(())
}

/// What a job's creator set; fixed at creation except the description and
/// the timeout, which UpdateJob may change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Job {
    pub(crate) id: String,
    pub(crate) target_selection: TargetSelection,
    /// Thing and thing-group ARNs, in the order given (AssociateTargetsWithJob
    /// appends).
    pub(crate) targets: Vec<String>,
    pub(crate) document: Option<String>,
    pub(crate) document_source: Option<String>,
    pub(crate) description: Option<String>,
    /// `timeoutConfig.inProgressTimeoutInMinutes`.
    pub(crate) in_progress_timeout_minutes: Option<i64>,
    pub(crate) status: JobStatus,
    /// Whether the job was cancelled or deleted with `force`.
    pub(crate) force_canceled: bool,
    pub(crate) reason_code: Option<String>,
    pub(crate) comment: Option<String>,
    pub(crate) created_ms: i64,
    pub(crate) updated_ms: i64,
    pub(crate) completed_ms: Option<i64>,
    /// The template the job was created from.
    #[serde(default)]
    pub(crate) template_id: Option<String>,
    /// `jobExecutionsRetryConfig`.
    #[serde(default)]
    pub(crate) retry: Vec<RetryCriterion>,
    /// `abortConfig`.
    #[serde(default)]
    pub(crate) abort: Vec<AbortCriterion>,
    /// `jobExecutionsRolloutConfig`.
    #[serde(default)]
    pub(crate) rollout: Option<Rollout>,
    /// `schedulingConfig`.
    #[serde(default)]
    pub(crate) schedule: Option<Schedule>,
}

impl Job {
    /// The names of the thing groups the job targets.
    pub(crate) fn target_groups(&self) -> impl Iterator<Item = &str> {
        self.targets
            .iter()
            .filter_map(|arn| match arn_resource(arn) {
                Some(("thinggroup", name)) => Some(name),
                _ => None,
            })
    }

    /// Whether the job targets thing `name` itself.
    pub(crate) fn targets_thing(&self, name: &str) -> bool {
        self.targets
            .iter()
            .any(|arn| arn_resource(arn) == Some(("thing", name)))
    }
}

/// The resource type and name of an AWS IoT ARN
/// (`arn:aws:iot:<region>:<account>:<type>/<name>`; names may hold `:`).
pub(crate) fn arn_resource(arn: &str) -> Option<(&str, &str)> {
    arn.splitn(6, ':').nth(5)?.split_once('/')
}

/// A job template: what CreateJob may start from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobTemplate {
    pub(crate) id: String,
    pub(crate) description: String,
    pub(crate) document: String,
    pub(crate) in_progress_timeout_minutes: Option<i64>,
    pub(crate) created_ms: i64,
    /// The URL the document was read from.
    #[serde(default)]
    pub(crate) document_source: Option<String>,
    #[serde(default)]
    pub(crate) retry: Vec<RetryCriterion>,
    #[serde(default)]
    pub(crate) abort: Vec<AbortCriterion>,
    #[serde(default)]
    pub(crate) rollout: Option<Rollout>,
}

/// One thing's execution of a job (its latest attempt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Execution {
    pub(crate) job_id: String,
    pub(crate) thing_name: String,
    /// 1 for the first attempt; a new attempt takes the next number.
    pub(crate) execution_number: i64,
    pub(crate) status: ExecutionStatus,
    pub(crate) status_details: StatusDetails,
    /// 1 when queued, one more on every change.
    pub(crate) version: i64,
    pub(crate) force_canceled: bool,
    pub(crate) queued_ms: i64,
    pub(crate) started_ms: Option<i64>,
    pub(crate) updated_ms: i64,
    /// When an IN_PROGRESS execution times out: its job's
    /// `inProgressTimeoutInMinutes` after it started.
    #[serde(default)]
    pub(crate) in_progress_deadline_ms: Option<i64>,
    /// ... or its step timeout after the update that set it.
    #[serde(default)]
    pub(crate) step_deadline_ms: Option<i64>,
    /// 0 for the first attempt, one more for each retry.
    #[serde(default)]
    pub(crate) retry_attempt: u32,
}

impl Execution {
    pub(crate) fn queued(job_id: &str, thing_name: &str, number: i64, now_ms: i64) -> Execution {
        Execution {
            job_id: job_id.to_owned(),
            thing_name: thing_name.to_owned(),
            execution_number: number,
            status: ExecutionStatus::Queued,
            status_details: StatusDetails::new(),
            version: 1,
            force_canceled: false,
            queued_ms: now_ms,
            started_ms: None,
            updated_ms: now_ms,
            in_progress_deadline_ms: None,
            step_deadline_ms: None,
            retry_attempt: 0,
        }
    }

    /// When the execution times out, if it is IN_PROGRESS with a timeout.
    pub(crate) fn deadline_ms(&self) -> Option<i64> {
        if self.status != ExecutionStatus::InProgress {
            return None;
        }
        match (self.in_progress_deadline_ms, self.step_deadline_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves to `status`, counting the change; `details` replace the status
    /// details when given (AWS merges nothing: the map is replaced).
    pub(crate) fn set(
        &mut self,
        status: ExecutionStatus,
        details: Option<StatusDetails>,
        now_ms: i64,
    ) {
        if status == ExecutionStatus::InProgress && self.started_ms.is_none() {
            self.started_ms = Some(now_ms);
        }
        self.status = status;
        if let Some(details) = details {
            self.status_details = details;
        }
        self.version += 1;
        self.updated_ms = now_ms;
    }
}

/// Who asks for an execution's new status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Actor {
    /// The device (UpdateJobExecution, StartNextPendingJobExecution).
    Device,
    /// The service (cancel, remove, time out).
    Service { force: bool },
}

/// Why a status change is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The execution already reached a final status.
    Terminal,
    /// Not a move this actor may make from this status.
    Transition,
}

/// Whether `actor` may move an execution from `from` to `to` ("Job execution
/// states"): the device takes a pending execution to IN_PROGRESS (again, to
/// update its details), SUCCEEDED, FAILED or REJECTED; the service cancels,
/// removes or times out a pending one, an IN_PROGRESS one only cancelled with
/// `force`.
pub(crate) fn transition(
    actor: Actor,
    from: ExecutionStatus,
    to: ExecutionStatus,
) -> Result<(), Refusal> {
    use ExecutionStatus::*;
    if from.is_terminal() {
        return Err(Refusal::Terminal);
    }
    let allowed = match actor {
        Actor::Device => matches!(to, InProgress | Succeeded | Failed | Rejected),
        Actor::Service { force } => match to {
            Canceled => from == Queued || force,
            Removed => true,
            TimedOut => from == InProgress,
            _ => false,
        },
    };
    if allowed {
        Ok(())
    } else {
        Err(Refusal::Transition)
    }
}

/// The counts of a job's executions by status (`jobProcessDetails`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcessDetails {
    pub(crate) queued: u64,
    pub(crate) in_progress: u64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) timed_out: u64,
    pub(crate) rejected: u64,
    pub(crate) removed: u64,
    pub(crate) canceled: u64,
}

impl ProcessDetails {
    /// One more execution with `status`.
    pub(crate) fn count(&mut self, status: ExecutionStatus) {
        *self.slot(status) += 1;
    }

    /// One fewer execution with `status`.
    pub(crate) fn uncount(&mut self, status: ExecutionStatus) {
        let slot = self.slot(status);
        *slot = slot.saturating_sub(1);
    }

    fn slot(&mut self, status: ExecutionStatus) -> &mut u64 {
        match status {
            ExecutionStatus::Queued => &mut self.queued,
            ExecutionStatus::InProgress => &mut self.in_progress,
            ExecutionStatus::Succeeded => &mut self.succeeded,
            ExecutionStatus::Failed => &mut self.failed,
            ExecutionStatus::TimedOut => &mut self.timed_out,
            ExecutionStatus::Rejected => &mut self.rejected,
            ExecutionStatus::Removed => &mut self.removed,
            ExecutionStatus::Canceled => &mut self.canceled,
        }
    }

    pub(crate) fn pending(&self) -> u64 {
        self.queued + self.in_progress
    }
}

/// `jobId`: 1–64 characters `[a-zA-Z0-9_-]`.
pub(crate) fn check_job_id(id: &str) -> Result<(), AwsError> {
    let len = id.chars().count();
    if !(1..=64).contains(&len) {
        return Err(invalid(format!(
            "jobId must be 1 to 64 characters long, got {len}"
        )));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
    {
        return Err(invalid(format!(
            "jobId {id:?} contains the character {bad:?}, which is not allowed"
        )));
    }
    Ok(())
}

/// A job document: at most 32 KiB, and a JSON object (devices parse it as
/// one; AWS refuses a document that is not valid JSON).
pub(crate) fn check_document(document: &str) -> Result<(), AwsError> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(invalid(format!(
            "The job document is {} bytes; the most is {MAX_DOCUMENT_BYTES}",
            document.len()
        )));
    }
    match serde_json::from_str::<serde_json::Value>(document) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        _ => Err(invalid("The job document must be a valid JSON object")),
    }
}

/// `comment`, `description`: no control characters, at most 2,028.
pub(crate) fn check_text(what: &str, text: &str) -> Result<(), AwsError> {
    let len = text.chars().count();
    let max = MAX_COMMENT.max(MAX_DESCRIPTION);
    if len > max {
        return Err(invalid(format!(
            "{what} must be at most {max} characters long, got {len}"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(invalid(format!("{what} contains a control character")));
    }
    Ok(())
}

/// `reasonCode`: `[\p{Upper}\p{Digit}_]+`, at most 128.
pub(crate) fn check_reason_code(code: &str) -> Result<(), AwsError> {
    let len = code.chars().count();
    if !(1..=MAX_REASON_CODE).contains(&len)
        || code
            .chars()
            .any(|c| !(c.is_uppercase() || c.is_numeric() || c == '_'))
    {
        return Err(invalid(format!(
            "reasonCode {code:?} must be 1 to {MAX_REASON_CODE} upper-case letters, digits or underscores"
        )));
    }
    Ok(())
}

/// `statusDetails`: at most 10 entries, keys `[a-zA-Z0-9:_-]+` of at most
/// 128 characters, values of 1–1,024 characters without control characters.
pub(crate) fn check_status_details(details: &StatusDetails) -> Result<(), AwsError> {
    if details.len() > MAX_DETAILS {
        return Err(invalid(format!(
            "statusDetails has {} entries; the most is {MAX_DETAILS}",
            details.len()
        )));
    }
    for (key, value) in details {
        let key_len = key.chars().count();
        if !(1..=MAX_DETAIL_KEY).contains(&key_len)
            || key
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-')))
        {
            return Err(invalid(format!(
                "statusDetails key {key:?} must be 1 to {MAX_DETAIL_KEY} characters of [a-zA-Z0-9:_-]"
            )));
        }
        let value_len = value.chars().count();
        if !(1..=MAX_DETAIL_VALUE).contains(&value_len) || value.chars().any(char::is_control) {
            return Err(invalid(format!(
                "statusDetails value of {key:?} must be 1 to {MAX_DETAIL_VALUE} characters without control characters"
            )));
        }
    }
    Ok(())
}

/// Timeouts in minutes: 1 to 10,080 (a week).
pub(crate) fn check_timeout(what: &str, minutes: i64) -> Result<(), AwsError> {
    if !(1..=MAX_TIMEOUT_MINUTES).contains(&minutes) {
        return Err(invalid(format!(
            "{what} must be between 1 and {MAX_TIMEOUT_MINUTES} minutes, got {minutes}"
        )));
    }
    Ok(())
}

pub(crate) fn invalid_transition(message: impl Into<String>) -> AwsError {
    AwsError::new(ErrorType::InvalidStateTransition, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExecutionStatus::*;

    #[test]
    fn devices_move_pending_executions_forward() {
        for from in [Queued, InProgress] {
            for to in [InProgress, Succeeded, Failed, Rejected] {
                assert_eq!(
                    transition(Actor::Device, from, to),
                    Ok(()),
                    "{from:?} → {to:?}"
                );
            }
            for to in [Queued, TimedOut, Removed, Canceled] {
                assert_eq!(
                    transition(Actor::Device, from, to),
                    Err(Refusal::Transition),
                    "{from:?} → {to:?}"
                );
            }
        }
    }

    #[test]
    fn final_statuses_stay_final() {
        for from in ExecutionStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in ExecutionStatus::ALL {
                assert_eq!(transition(Actor::Device, from, to), Err(Refusal::Terminal));
                assert_eq!(
                    transition(Actor::Service { force: true }, from, to),
                    Err(Refusal::Terminal)
                );
            }
        }
    }

    #[test]
    fn the_service_cancels_in_progress_executions_only_with_force() {
        let plain = Actor::Service { force: false };
        let force = Actor::Service { force: true };
        assert_eq!(transition(plain, Queued, Canceled), Ok(()));
        assert_eq!(
            transition(plain, InProgress, Canceled),
            Err(Refusal::Transition)
        );
        assert_eq!(transition(force, InProgress, Canceled), Ok(()));
        assert_eq!(transition(plain, InProgress, TimedOut), Ok(()));
        assert_eq!(
            transition(plain, Queued, TimedOut),
            Err(Refusal::Transition)
        );
        assert_eq!(transition(plain, InProgress, Removed), Ok(()));
        assert_eq!(
            transition(plain, Queued, Succeeded),
            Err(Refusal::Transition)
        );
    }

    #[test]
    fn executions_count_their_changes() {
        let mut e = Execution::queued("j", "t", 1, 10);
        assert_eq!((e.version, e.started_ms), (1, None));
        e.set(
            InProgress,
            Some(StatusDetails::from([("a".into(), "1".into())])),
            20,
        );
        e.set(InProgress, None, 30);
        assert_eq!((e.version, e.started_ms, e.updated_ms), (3, Some(20), 30));
        assert_eq!(e.status_details.len(), 1);
    }

    #[test]
    fn failures_are_retried_as_often_as_their_criterion_allows() {
        let criteria = [
            RetryCriterion {
                failure_type: FailureType::Failed,
                retries: 2,
            },
            RetryCriterion {
                failure_type: FailureType::TimedOut,
                retries: 0,
            },
        ];
        assert!(check_retry(&criteria).is_ok());
        assert!(retries_after(&criteria, Failed, 0));
        assert!(retries_after(&criteria, Failed, 1));
        assert!(!retries_after(&criteria, Failed, 2));
        assert!(!retries_after(&criteria, TimedOut, 0));
        assert!(!retries_after(&criteria, Rejected, 0));
        let all = [RetryCriterion {
            failure_type: FailureType::All,
            retries: 1,
        }];
        assert!(retries_after(&all, TimedOut, 0));
        assert!(check_retry(&[]).is_err());
        assert!(check_retry(&[criteria[0], criteria[0]]).is_err());
        assert!(
            check_retry(&[RetryCriterion {
                failure_type: FailureType::All,
                retries: 11
            }])
            .is_err()
        );
    }

    #[test]
    fn abort_criteria_count_ended_executions() {
        let half_of_four = AbortCriterion {
            failure_type: AbortFailure::Failed,
            threshold_bp: 5_000,
            min_executed: 4,
        };
        let counts = |succeeded, failed| ProcessDetails {
            succeeded,
            failed,
            queued: 10,
            ..ProcessDetails::default()
        };
        assert_eq!(half_of_four.met(&counts(0, 3)), None, "too few executed");
        assert_eq!(half_of_four.met(&counts(3, 1)), None, "below the threshold");
        assert!(half_of_four.met(&counts(2, 2)).is_some());
        assert!(check_abort(&[half_of_four]).is_ok());
        assert!(check_abort(&[]).is_err());
        assert!(
            check_abort(&[AbortCriterion {
                threshold_bp: 0,
                ..half_of_four
            }])
            .is_err()
        );
        assert!(
            check_abort(&[AbortCriterion {
                threshold_bp: 10_001,
                ..half_of_four
            }])
            .is_err()
        );
        assert!(
            check_abort(&[AbortCriterion {
                min_executed: 0,
                ..half_of_four
            }])
            .is_err()
        );
    }

    #[test]
    fn targets_are_read_from_their_arns() {
        assert_eq!(
            arn_resource("arn:aws:iot:us-east-1:123456789012:thing/a:b"),
            Some(("thing", "a:b"))
        );
        assert_eq!(
            arn_resource("arn:aws:iot:us-east-1:123456789012:thinggroup/g"),
            Some(("thinggroup", "g"))
        );
        assert_eq!(arn_resource("arn:aws:iot:us-east-1:1:thing"), None);
        assert_eq!(arn_resource("nonsense"), None);
    }

    #[test]
    fn job_fields_follow_the_model() {
        assert!(check_job_id("fw-update_2").is_ok());
        assert!(check_job_id("").is_err());
        assert!(check_job_id(&"a".repeat(65)).is_err());
        assert!(check_job_id("a b").is_err());
        assert!(check_job_id("é").is_err());
        assert!(check_document(r#"{"op":"update"}"#).is_ok());
        assert!(check_document("[1]").is_err());
        assert!(check_document("{").is_err());
        let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_DOCUMENT_BYTES));
        assert!(check_document(&big).is_err());
        assert!(check_reason_code("FW_ROLLBACK_2").is_ok());
        assert!(check_reason_code("lower").is_err());
        assert!(check_text("comment", "fine, thanks").is_ok());
        assert!(check_text("comment", "bad\u{7}").is_err());
        assert!(check_timeout("t", 1).is_ok());
        assert!(check_timeout("t", 0).is_err());
        assert!(check_timeout("t", MAX_TIMEOUT_MINUTES + 1).is_err());
        let ok = StatusDetails::from([("step".into(), "2 of 3".into())]);
        assert!(check_status_details(&ok).is_ok());
        let bad_key = StatusDetails::from([("a b".into(), "x".into())]);
        assert!(check_status_details(&bad_key).is_err());
        let empty_value = StatusDetails::from([("a".into(), String::new())]);
        assert!(check_status_details(&empty_value).is_err());
        let many: StatusDetails = (0..11).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(check_status_details(&many).is_err());
    }
}
