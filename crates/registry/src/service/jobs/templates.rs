//! Job templates (AWS IoT API Reference: CreateJobTemplate,
//! DescribeJobTemplate, ListJobTemplates, DeleteJobTemplate): a document and
//! the configurations (timeout, retries, aborts, rollout) that CreateJob
//! starts from. State: `jobtemplate/<id>`.

use herald_proto::error::{AwsError, ErrorType};
use herald_store::{Page, Paged, key, now_ms, prefix};

use super::{Registry, documents, load_job};
use crate::domain::{
    invalid,
    jobs::{
        AbortCriterion, JobTemplate, RetryCriterion, arn_resource, check_abort, check_document,
        check_job_id, check_retry, check_text, check_timeout,
    },
    not_found,
    rollout::Rollout,
};
use crate::service::tags::{Tags, check_tags, delete_tags, put_tags};

fn template_key(id: &str) -> Vec<u8> {
    key(&["jobtemplate", id])
}

/// What CreateJobTemplate asks for.
#[derive(Debug, Clone)]
pub(crate) struct NewTemplate {
    pub(crate) id: String,
    pub(crate) description: String,
    pub(crate) document: Option<String>,
    /// An S3 object URL to read the document from (see `documents`).
    pub(crate) document_source: Option<String>,
    /// A job of this account and region to copy the document and
    /// configurations of (those given here win).
    pub(crate) job_arn: Option<String>,
    pub(crate) in_progress_timeout_minutes: Option<i64>,
    pub(crate) retry: Vec<RetryCriterion>,
    pub(crate) abort: Vec<AbortCriterion>,
    pub(crate) rollout: Option<Rollout>,
    pub(crate) tags: Tags,
}

fn check_template_id(id: &str) -> Result<(), AwsError> {
    check_job_id(id).map_err(|_| {
        invalid(format!(
            "jobTemplateId {id:?} must be 1 to 64 characters of [a-zA-Z0-9_-]"
        ))
    })
}

impl Registry {
    pub(crate) fn job_template_arn(&self, id: &str) -> String {
        self.arns().of("jobtemplate", id)
    }

    /// The template a `jobTemplateArn` of this account and region names.
    pub(super) fn template_of_arn(&self, arn: &str) -> Result<JobTemplate, AwsError> {
        let id = self.arns().name_in("jobtemplate", arn).ok_or_else(|| {
            invalid(format!(
                "{arn} is not a job template ARN of this account and region"
            ))
        })?;
        self.describe_job_template(id)
    }

    pub(crate) async fn create_job_template(
        &self,
        mut new: NewTemplate,
    ) -> Result<JobTemplate, AwsError> {
        check_template_id(&new.id)?;
        check_text("description", &new.description)?;
        if let Some(minutes) = new.in_progress_timeout_minutes {
            check_timeout("inProgressTimeoutInMinutes", minutes)?;
        }
        if !new.retry.is_empty() {
            check_retry(&new.retry)?;
        }
        if !new.abort.is_empty() {
            check_abort(&new.abort)?;
        }
        if let Some(rollout) = &new.rollout {
            rollout.check()?;
        }
        check_tags(&new.tags)?;
        let arn = self.job_template_arn(&new.id);
        let job_id = match (&new.document, &new.document_source, &new.job_arn) {
            (Some(document), None, None) => {
                check_document(document)?;
                None
            }
            (None, Some(source), None) => {
                new.document = Some(documents::read(&self.ctx.documents_dir, source).await?);
                None
            }
            (None, None, Some(arn)) => match arn_resource(arn) {
                Some(("job", id)) if self.arns().name_in("job", arn).is_some() => {
                    Some(id.to_owned())
                }
                _ => {
                    return Err(invalid(format!(
                        "jobArn {arn} is not a job ARN of this account and region"
                    )));
                }
            },
            _ => {
                return Err(invalid(
                    "Specify exactly one of document, documentSource and jobArn",
                ));
            }
        };
        self.writer
            .mutate(move |c| {
                if c.exists(&template_key(&new.id))? {
                    return Err(AwsError::new(
                        ErrorType::Conflict,
                        format!("Job template {} already exists.", new.id),
                    ));
                }
                let mut template = JobTemplate {
                    id: new.id,
                    description: new.description,
                    document: new.document.unwrap_or_default(),
                    document_source: new.document_source,
                    in_progress_timeout_minutes: new.in_progress_timeout_minutes,
                    created_ms: now_ms(),
                    retry: new.retry,
                    abort: new.abort,
                    rollout: new.rollout,
                };
                if let Some(job_id) = job_id {
                    let job = load_job(c, &job_id)?;
                    template.document = job.document.unwrap_or_default();
                    template.document_source = job.document_source;
                    template.in_progress_timeout_minutes = template
                        .in_progress_timeout_minutes
                        .or(job.in_progress_timeout_minutes);
                    if template.retry.is_empty() {
                        template.retry = job.retry;
                    }
                    if template.abort.is_empty() {
                        template.abort = job.abort;
                    }
                    template.rollout = template.rollout.or(job.rollout);
                }
                c.put(template_key(&template.id), &template)?;
                put_tags(c, &arn, &new.tags)?;
                Ok(template)
            })
            .await
    }

    pub(crate) fn describe_job_template(&self, id: &str) -> Result<JobTemplate, AwsError> {
        check_template_id(id)?;
        self.store
            .get(&template_key(id))?
            .ok_or_else(|| not_found(format!("Job template {id} cannot be found.")))
    }

    pub(crate) fn list_job_templates(&self, page: Page) -> Result<Paged<JobTemplate>, AwsError> {
        let store = self.store.clone();
        let templates = self
            .store
            .iter(&prefix(&["jobtemplate"]), page.after())
            .map(move |entry| entry.and_then(|(id, bytes)| Ok((id, store.decode(&bytes)?))));
        page.collect(templates)
    }

    pub(crate) async fn delete_job_template(&self, id: String) -> Result<(), AwsError> {
        check_template_id(&id)?;
        let arn = self.job_template_arn(&id);
        self.writer
            .mutate(move |c| {
                if !c.exists(&template_key(&id))? {
                    return Err(not_found(format!("Job template {id} cannot be found.")));
                }
                c.remove(template_key(&id));
                delete_tags(c, &arn)?;
                Ok(())
            })
            .await
    }
}
