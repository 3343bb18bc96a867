//! The jobs control plane: create, describe, list, cancel and delete jobs;
//! describe, list, cancel and delete their executions.

use std::collections::BTreeSet;

use herald_proto::error::AwsError;
use herald_store::{Page, Paged, now_ms, prefix};

use super::{
    Registry, clock, counts_key, documents, exec_key, job_event, job_group_key, job_key,
    load_counts, load_execution, load_job, old_exec_key, save_execution, thing_job_key,
    things_under,
};
use crate::{
    domain::{
        ExecutionEventKind, JobEventKind, invalid,
        jobs::{
            AbortCriterion, Actor, Execution, ExecutionStatus, Job, JobStatus, MAX_TARGETS,
            ProcessDetails, Refusal, RetryCriterion, StatusDetails, TargetSelection, check_abort,
            check_document, check_job_id, check_reason_code, check_retry, check_status_details,
            check_text, check_timeout, invalid_transition, transition,
        },
        not_found,
        rollout::{Rollout, Schedule},
    },
    service::{
        check_expected, group_key, load_thing,
        tags::{Tags, check_tags, delete_tags, put_tags},
    },
};

/// The job id that names a thing's next pending execution.
const NEXT: &str = "$next";

/// What CreateJob asks for.
#[derive(Debug, Clone)]
pub(crate) struct NewJob {
    pub(crate) id: String,
    pub(crate) targets: Vec<String>,
    pub(crate) document: Option<String>,
    pub(crate) document_source: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) target_selection: TargetSelection,
    pub(crate) in_progress_timeout_minutes: Option<i64>,
    /// `jobTemplateArn`: the document and timeout where none is given.
    pub(crate) template_arn: Option<String>,
    /// `jobExecutionsRetryConfig`; empty for none.
    pub(crate) retry: Vec<RetryCriterion>,
    /// `abortConfig`; empty for none.
    pub(crate) abort: Vec<AbortCriterion>,
    /// `jobExecutionsRolloutConfig`.
    pub(crate) rollout: Option<Rollout>,
    /// `schedulingConfig`.
    pub(crate) schedule: Option<Schedule>,
    pub(crate) tags: Tags,
}

/// What UpdateJob changes: what is given.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobUpdate {
    pub(crate) description: Option<String>,
    pub(crate) in_progress_timeout_minutes: Option<i64>,
    pub(crate) retry: Option<Vec<RetryCriterion>>,
    pub(crate) abort: Option<Vec<AbortCriterion>>,
    pub(crate) rollout: Option<Rollout>,
}

impl JobUpdate {
    fn check(&self) -> Result<(), AwsError> {
        if let Some(description) = &self.description {
            check_text("description", description)?;
        }
        if let Some(minutes) = self.in_progress_timeout_minutes {
            check_timeout("inProgressTimeoutInMinutes", minutes)?;
        }
        if let Some(retry) = &self.retry {
            check_retry(retry)?;
        }
        if let Some(abort) = &self.abort {
            check_abort(abort)?;
        }
        if let Some(rollout) = &self.rollout {
            rollout.check()?;
        }
        Ok(())
    }
}

/// ListJobs' filters.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobFilter {
    pub(crate) status: Option<JobStatus>,
    pub(crate) target_selection: Option<TargetSelection>,
    pub(crate) thing_group: Option<String>,
}

/// A job target: a thing or a thing group of this account and region.
enum Target {
    Thing(String),
    Group(String),
}

impl NewJob {
    fn check(&self) -> Result<(), AwsError> {
        check_job_id(&self.id)?;
        if self.targets.is_empty() {
            return Err(invalid("A job needs at least one target"));
        }
        if self.targets.len() > MAX_TARGETS {
            return Err(invalid(format!(
                "A job may have at most {MAX_TARGETS} targets, got {}",
                self.targets.len()
            )));
        }
        match &self.document {
            Some(document) => check_document(document)?,
            None => return Err(invalid("A job needs a document or a documentSource")),
        }
        if let Some(description) = &self.description {
            check_text("description", description)?;
        }
        if let Some(minutes) = self.in_progress_timeout_minutes {
            check_timeout("inProgressTimeoutInMinutes", minutes)?;
        }
        if !self.retry.is_empty() {
            check_retry(&self.retry)?;
        }
        if !self.abort.is_empty() {
            check_abort(&self.abort)?;
        }
        if let Some(rollout) = &self.rollout {
            rollout.check()?;
        }
        check_tags(&self.tags)
    }
}

impl Registry {
    fn target(&self, arn: &str) -> Result<Target, AwsError> {
        let arns = self.arns();
        if let Some(name) = arns.name_in("thing", arn) {
            return Ok(Target::Thing(name.to_owned()));
        }
        if let Some(name) = arns.name_in("thinggroup", arn) {
            return Ok(Target::Group(name.to_owned()));
        }
        Err(invalid(format!(
            "Target {arn} is not the ARN of a thing or a thing group of account {} in {}",
            arns.account, arns.region
        )))
    }

    pub(crate) async fn create_job(&self, mut new: NewJob) -> Result<Job, AwsError> {
        if new.document.is_some() && new.document_source.is_some() {
            return Err(invalid(
                "Specify either document or documentSource, not both",
            ));
        }
        let template = match &new.template_arn {
            Some(arn) => {
                let template = self.template_of_arn(arn)?;
                if new.document.is_none() && new.document_source.is_none() {
                    new.document = Some(template.document.clone());
                    new.document_source = template.document_source.clone();
                }
                new.in_progress_timeout_minutes = new
                    .in_progress_timeout_minutes
                    .or(template.in_progress_timeout_minutes);
                if new.retry.is_empty() {
                    new.retry = template.retry.clone();
                }
                if new.abort.is_empty() {
                    new.abort = template.abort.clone();
                }
                new.rollout = new.rollout.or(template.rollout);
                Some(template.id)
            }
            None => None,
        };
        if new.document.is_none()
            && let Some(source) = &new.document_source
        {
            new.document = Some(documents::read(&self.ctx.documents_dir, source).await?);
        }
        new.check()?;
        if let Some(schedule) = &new.schedule {
            schedule.check(
                now_ms(),
                self.ctx.job_minute_ms,
                self.ctx.schedule_lead_minutes,
            )?;
        }
        let minute_ms = self.ctx.job_minute_ms;
        let arn = self.job_arn(&new.id);
        let targets = new
            .targets
            .iter()
            .map(|arn| self.target(arn))
            .collect::<Result<Vec<_>, _>>()?;
        self.writer
            .mutate(move |c| {
                if c.exists(&job_key(&new.id))? {
                    return Err(AwsError::new(
                        herald_proto::error::ErrorType::ResourceAlreadyExists,
                        format!("Job {} already exists.", new.id),
                    ));
                }
                for target in &targets {
                    match target {
                        Target::Thing(name) => {
                            load_thing(c, name)?;
                        }
                        Target::Group(name) => {
                            if !c.exists(&group_key(name))? {
                                return Err(not_found(format!(
                                    "Thing group {name} cannot be found."
                                )));
                            }
                        }
                    }
                }
                let now = now_ms();
                let scheduled = new.schedule.as_ref().is_some_and(|s| s.start_ms.is_some());
                let job = Job {
                    id: new.id,
                    target_selection: new.target_selection,
                    targets: new.targets,
                    document: new.document,
                    document_source: new.document_source,
                    description: new.description,
                    in_progress_timeout_minutes: new.in_progress_timeout_minutes,
                    status: if scheduled {
                        JobStatus::Scheduled
                    } else {
                        JobStatus::InProgress
                    },
                    force_canceled: false,
                    reason_code: None,
                    comment: None,
                    created_ms: now,
                    updated_ms: now,
                    completed_ms: None,
                    template_id: template,
                    retry: new.retry,
                    abort: new.abort,
                    rollout: new.rollout,
                    schedule: new.schedule,
                };
                c.put(job_key(&job.id), &job)?;
                put_tags(c, &arn, &new.tags)?;
                c.put(counts_key(&job.id), &ProcessDetails::default())?;
                for target in &targets {
                    if let Target::Group(group) = target {
                        c.put(job_group_key(group, &job.id), &())?;
                    }
                }
                clock::start_clock(c, &job, minute_ms)?;
                if job.status == JobStatus::InProgress {
                    for thing in clock::targeted_things(c, &job)? {
                        clock::reach(c, &job, &thing)?;
                    }
                }
                // Starts the rollout or schedules the start; a snapshot job
                // with nothing to run is complete at once.
                clock::tick(c, &job.id, now)?;
                load_job(c, &job.id)
            })
            .await
    }

    pub(crate) fn describe_job(&self, id: &str) -> Result<(Job, ProcessDetails), AwsError> {
        check_job_id(id)?;
        let c = self.reader();
        Ok((load_job(&c, id)?, load_counts(&c, id)?))
    }

    pub(crate) fn get_job_document(&self, id: &str) -> Result<String, AwsError> {
        let (job, _) = self.describe_job(id)?;
        Ok(job.document.unwrap_or_default())
    }

    pub(crate) fn list_jobs(&self, page: Page, filter: JobFilter) -> Result<Paged<Job>, AwsError> {
        let group_jobs = match &filter.thing_group {
            Some(group) => {
                crate::domain::check_name("thing group name", group)?;
                Some(
                    self.store
                        .keys(&prefix(&["jobgroup", group]))?
                        .into_iter()
                        .collect::<BTreeSet<_>>(),
                )
            }
            None => None,
        };
        let store = self.store.clone();
        let jobs = self
            .store
            .iter(&prefix(&["job"]), page.after())
            .map(move |entry| entry.and_then(|(id, bytes)| Ok((id, store.decode::<Job>(&bytes)?))))
            .filter(move |entry| {
                entry.as_ref().map_or(true, |(id, job)| {
                    filter.status.is_none_or(|s| s == job.status)
                        && filter
                            .target_selection
                            .is_none_or(|s| s == job.target_selection)
                        && group_jobs.as_ref().is_none_or(|ids| ids.contains(id))
                })
            });
        page.collect(jobs)
    }

    /// UpdateJob: a new description, in-progress timeout (for the
    /// executions that start afterwards), retry, abort or rollout
    /// configuration; each given replaces the job's.
    pub(crate) async fn update_job(&self, id: String, update: JobUpdate) -> Result<(), AwsError> {
        check_job_id(&id)?;
        update.check()?;
        let minute_ms = self.ctx.job_minute_ms;
        self.writer
            .mutate(move |c| {
                let mut job = load_job(c, &id)?;
                if job.status == JobStatus::DeletionInProgress {
                    return Err(invalid(format!("Job {id} is being deleted")));
                }
                let JobUpdate {
                    description,
                    in_progress_timeout_minutes,
                    retry,
                    abort,
                    rollout,
                } = update;
                job.description = description.or(job.description);
                job.in_progress_timeout_minutes =
                    in_progress_timeout_minutes.or(job.in_progress_timeout_minutes);
                job.retry = retry.unwrap_or(job.retry);
                job.abort = abort.unwrap_or(job.abort);
                if rollout.is_some() {
                    job.rollout = rollout;
                    if clock::load_clock(c, &id)?.is_none() {
                        clock::start_clock(c, &job, minute_ms)?;
                    }
                }
                job.updated_ms = now_ms();
                c.put(job_key(&id), &job)?;
                // A new abort configuration may already be met.
                super::abort_if_due(c, &id)
            })
            .await
    }

    /// AssociateTargetsWithJob: more thing and group targets for a
    /// CONTINUOUS job in progress; the things they reach get executions.
    pub(crate) async fn associate_targets_with_job(
        &self,
        id: String,
        targets: Vec<String>,
        comment: Option<String>,
    ) -> Result<Job, AwsError> {
        check_job_id(&id)?;
        if targets.is_empty() {
            return Err(invalid(
                "targets must name at least one thing or thing group",
            ));
        }
        if let Some(comment) = &comment {
            check_text("comment", comment)?;
        }
        let resolved = targets
            .iter()
            .map(|arn| self.target(arn).map(|t| (arn.clone(), t)))
            .collect::<Result<Vec<_>, _>>()?;
        self.writer
            .mutate(move |c| {
                let mut job = load_job(c, &id)?;
                if job.target_selection != TargetSelection::Continuous {
                    return Err(invalid(format!(
                        "Job {id} is a SNAPSHOT job; targets can only be added to a CONTINUOUS job"
                    )));
                }
                if !matches!(job.status, JobStatus::InProgress | JobStatus::Scheduled) {
                    return Err(invalid(format!("Job {id} is not in progress")));
                }
                // Each ARN once, however often the request names it.
                let mut new: Vec<(String, Target)> = Vec::new();
                for (arn, target) in resolved {
                    if !job.targets.contains(&arn) && !new.iter().any(|(a, _)| *a == arn) {
                        new.push((arn, target));
                    }
                }
                if job.targets.len() + new.len() > MAX_TARGETS {
                    return Err(AwsError::new(
                        herald_proto::error::ErrorType::LimitExceeded,
                        format!("A job may have at most {MAX_TARGETS} targets"),
                    ));
                }
                let mut things = BTreeSet::new();
                for (_, target) in &new {
                    match target {
                        Target::Thing(name) => {
                            load_thing(c, name)?;
                            things.insert(name.clone());
                        }
                        Target::Group(name) => {
                            if !c.exists(&group_key(name))? {
                                return Err(not_found(format!(
                                    "Thing group {name} cannot be found."
                                )));
                            }
                            c.put(job_group_key(name, &id), &())?;
                            things.extend(things_under(c, name)?);
                        }
                    }
                }
                job.targets.extend(new.into_iter().map(|(arn, _)| arn));
                job.comment = comment.or(job.comment);
                let now = now_ms();
                job.updated_ms = now;
                c.put(job_key(&id), &job)?;
                // A scheduled job reaches its things when it starts.
                if job.status == JobStatus::InProgress {
                    for thing in &things {
                        clock::reach(c, &job, thing)?;
                    }
                    clock::tick(c, &id, now)?;
                }
                Ok(job)
            })
            .await
    }

    /// CancelJob: the job becomes CANCELED; its QUEUED executions (and with
    /// `force` its IN_PROGRESS ones) are cancelled. Logs
    /// `cancellation_in_progress`, each execution's `canceled`, then the
    /// job's `canceled`. A cancelled job may be cancelled again with `force`
    /// to cancel what is still in progress.
    pub(crate) async fn cancel_job(
        &self,
        id: String,
        reason_code: Option<String>,
        comment: Option<String>,
        force: bool,
    ) -> Result<Job, AwsError> {
        check_job_id(&id)?;
        if let Some(code) = &reason_code {
            check_reason_code(code)?;
        }
        if let Some(comment) = &comment {
            check_text("comment", comment)?;
        }
        self.writer
            .mutate(move |c| {
                let job = load_job(c, &id)?;
                match job.status {
                    JobStatus::InProgress | JobStatus::Scheduled => {}
                    JobStatus::Canceled if force && !job.force_canceled => {}
                    JobStatus::Canceled => return Ok(job),
                    other => {
                        return Err(invalid(format!(
                            "Job {id} is {other:?}; only a job in progress can be canceled"
                        )));
                    }
                }
                super::cancel(c, job, force, reason_code, comment)
            })
            .await
    }

    /// DeleteJob: a job in progress needs `force`. Logs
    /// `deletion_in_progress`, each execution's `deleted`, then `deleted`.
    pub(crate) async fn delete_job(&self, id: String, force: bool) -> Result<(), AwsError> {
        check_job_id(&id)?;
        let arn = self.job_arn(&id);
        self.writer
            .mutate(move |c| {
                let Some(mut job) = c.get::<Job>(&job_key(&id))? else {
                    return Err(not_found(format!("Job {id} cannot be found.")));
                };
                if job.status == JobStatus::InProgress && !force {
                    return Err(invalid_transition(format!(
                        "Job {id} is in progress; delete it with force, or cancel it first"
                    )));
                }
                job.status = JobStatus::DeletionInProgress;
                job.updated_ms = now_ms();
                job_event(c, JobEventKind::DeletionInProgress, &job)?;
                for thing in c.keys(&prefix(&["jobexec", &id]))? {
                    let execution = load_execution(c, &id, &thing)?;
                    let pending_before = super::pending_ids(c, &thing)?;
                    super::move_deadline(c, Some(&execution), None)?;
                    super::execution_event(c, ExecutionEventKind::Deleted, &execution);
                    c.remove(exec_key(&id, &thing));
                    c.remove(thing_job_key(&thing, &id));
                    super::notify_if_changed(c, &thing, &pending_before)?;
                }
                for old in c.keys(&prefix(&["jobexecold", &id]))? {
                    let mut key = prefix(&["jobexecold", &id]);
                    key.extend_from_slice(old.as_bytes());
                    c.remove(key);
                }
                for group in job.target_groups() {
                    c.remove(job_group_key(group, &id));
                }
                job_event(c, JobEventKind::Deleted, &job)?;
                clock::delete_clock(c, &id)?;
                delete_tags(c, &arn)?;
                c.remove(counts_key(&id));
                c.remove(job_key(&id));
                Ok(())
            })
            .await
    }

    /// An execution (the latest attempt, or attempt `number`) and its job;
    /// job id `$next` names the thing's next pending execution (the device
    /// side's DescribeJobExecution).
    pub(crate) fn describe_job_execution(
        &self,
        job_id: &str,
        thing: &str,
        number: Option<i64>,
    ) -> Result<(Execution, Job), AwsError> {
        crate::domain::check_name("thing name", thing)?;
        let c = self.reader();
        let next;
        let job_id = if job_id == NEXT {
            let pending = super::pending(&c, thing)?;
            next = pending
                .in_progress
                .into_iter()
                .chain(pending.queued)
                .next()
                .ok_or_else(|| not_found(format!("Thing {thing} has no pending job execution.")))?
                .job_id;
            next.as_str()
        } else {
            job_id
        };
        check_job_id(job_id)?;
        let job = load_job(&c, job_id)?;
        let latest = load_execution(&c, job_id, thing)?;
        let execution = match number {
            None => latest,
            Some(n) if n == latest.execution_number => latest,
            Some(n) => c.get(&old_exec_key(job_id, thing, n))?.ok_or_else(|| {
                not_found(format!(
                    "Job execution {n} of job {job_id} on thing {thing} cannot be found."
                ))
            })?,
        };
        Ok((execution, job))
    }

    pub(crate) fn list_job_executions_for_job(
        &self,
        job_id: &str,
        status: Option<ExecutionStatus>,
        page: Page,
    ) -> Result<Paged<Execution>, AwsError> {
        check_job_id(job_id)?;
        load_job(&self.reader(), job_id)?;
        let store = self.store.clone();
        let executions = self
            .store
            .iter(&prefix(&["jobexec", job_id]), page.after())
            .map(move |entry| {
                entry.and_then(|(thing, bytes)| Ok((thing, store.decode::<Execution>(&bytes)?)))
            })
            .filter(move |entry| {
                entry
                    .as_ref()
                    .map_or(true, |(_, e)| status.is_none_or(|s| s == e.status))
            });
        page.collect(executions)
    }

    pub(crate) fn list_job_executions_for_thing(
        &self,
        thing: &str,
        status: Option<ExecutionStatus>,
        job_id: Option<&str>,
        page: Page,
    ) -> Result<Paged<Execution>, AwsError> {
        crate::domain::check_name("thing name", thing)?;
        let c = self.reader();
        load_thing(&c, thing)?;
        let mut found = Vec::new();
        for job in c.keys(&prefix(&["thingjob", thing]))? {
            if job_id.is_some_and(|wanted| wanted != job) {
                continue;
            }
            if page.after().is_some_and(|after| job.as_str() <= after) {
                continue;
            }
            if let Some(execution) = c.get::<Execution>(&exec_key(&job, thing))?
                && status.is_none_or(|s| s == execution.status)
            {
                found.push(Ok::<_, AwsError>((job, execution)));
            }
        }
        page.collect(found.into_iter())
    }

    /// CancelJobExecution: QUEUED, or IN_PROGRESS with `force`, to CANCELED.
    pub(crate) async fn cancel_job_execution(
        &self,
        job_id: String,
        thing: String,
        force: bool,
        expected_version: Option<i64>,
        details: Option<StatusDetails>,
    ) -> Result<(), AwsError> {
        check_job_id(&job_id)?;
        crate::domain::check_name("thing name", &thing)?;
        if let Some(details) = &details {
            check_status_details(details)?;
        }
        self.writer
            .mutate(move |c| {
                load_job(c, &job_id)?;
                let mut execution = load_execution(c, &job_id, &thing)?;
                check_expected(
                    expected_version,
                    execution.version,
                    "job execution",
                    &format!("{job_id} on {thing}"),
                )?;
                let before = execution.status;
                transition(Actor::Service { force }, before, ExecutionStatus::Canceled).map_err(
                    |refusal| {
                        invalid_transition(match refusal {
                            Refusal::Terminal => {
                                format!("The job execution is {}, a final status", before.name())
                            }
                            Refusal::Transition => format!(
                                "The job execution is {}; cancel it with force",
                                before.name()
                            ),
                        })
                    },
                )?;
                execution.force_canceled = force;
                execution.set(ExecutionStatus::Canceled, details, now_ms());
                save_execution(c, Some(before), &execution)
            })
            .await
    }

    /// DeleteJobExecution: attempt `number`; a pending one needs `force`.
    pub(crate) async fn delete_job_execution(
        &self,
        job_id: String,
        thing: String,
        number: i64,
        force: bool,
    ) -> Result<(), AwsError> {
        check_job_id(&job_id)?;
        crate::domain::check_name("thing name", &thing)?;
        self.writer
            .mutate(move |c| {
                load_job(c, &job_id)?;
                let missing = || {
                    not_found(format!(
                        "Job execution {number} of job {job_id} on thing {thing} cannot be found."
                    ))
                };
                let latest = c.get::<Execution>(&exec_key(&job_id, &thing))?;
                let (execution, is_latest) = match latest {
                    Some(e) if e.execution_number == number => (e, true),
                    _ => (
                        c.get::<Execution>(&old_exec_key(&job_id, &thing, number))?
                            .ok_or_else(missing)?,
                        false,
                    ),
                };
                if !execution.status.is_terminal() && !force {
                    return Err(invalid_transition(format!(
                        "The job execution is {}; delete it with force",
                        execution.status.name()
                    )));
                }
                super::execution_event(c, ExecutionEventKind::Deleted, &execution);
                if is_latest {
                    let pending_before = super::pending_ids(c, &thing)?;
                    super::move_deadline(c, Some(&execution), None)?;
                    let mut counts = load_counts(c, &job_id)?;
                    counts.uncount(execution.status);
                    c.put(counts_key(&job_id), &counts)?;
                    c.remove(exec_key(&job_id, &thing));
                    c.remove(thing_job_key(&thing, &job_id));
                    // The thing's earlier attempts go with its latest: nothing
                    // would find them, and a new execution would reuse their
                    // numbers.
                    let old = prefix(&["jobexecold", &job_id, &thing]);
                    for number in c.keys(&old)? {
                        let mut key = old.clone();
                        key.extend_from_slice(number.as_bytes());
                        c.remove(key);
                    }
                    super::notify_if_changed(c, &thing, &pending_before)?;
                    super::complete_if_done(c, &job_id)?;
                } else {
                    c.remove(old_exec_key(&job_id, &thing, number));
                }
                Ok(())
            })
            .await
    }
}
