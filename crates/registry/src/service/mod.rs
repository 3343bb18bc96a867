//! The registry's operations with AWS semantics. Reads go straight to the
//! store; mutations run on the single writer and log their events.
//!
//! This module holds what every resource shares (the service, its keys and
//! loaders); the operations are in one module per resource: `things`,
//! `thing_types`, `groups`, `membership` (things in groups, and the policy
//! targets a thing's groups make), `billing` (billing groups and their
//! things), `indexing` (fleet indexing: its configuration, searches and
//! aggregations over [`crate::index`]), `principals`, and `jobs` (jobs and
//! their executions).

mod billing;
mod dynamic;
mod groups;
mod indexing;
mod jobs;
mod membership;
mod principals;
mod shadows;
mod tags;
mod thing_types;
mod things;

use std::sync::Arc;

use herald_proto::error::{AwsError, ErrorType};
use herald_store::{ChangeLog, key};

use crate::domain::{
    Arns, Attributes, BillingGroup, Event, EventBody, Operation, Thing, ThingGroup, ThingType,
    not_found,
};
use crate::index::Index;

pub(crate) use dynamic::DynamicUpdate;
pub(crate) use indexing::{
    GeoLocation, GroupIndexing, IndexingField, MAX_SEARCH_RESULTS, ThingIndexing,
};
pub(crate) use jobs::{DeviceUpdate, JobFilter, JobUpdate, NewJob, NewTemplate};
pub(crate) use membership::NameOrArn;
pub(crate) use principals::ThingPrincipalType;
pub(crate) use shadows::ShadowAnswer;
pub(crate) use tags::Tags;
pub(crate) use things::ThingFilter;

type Changes<'a> = herald_store::Changes<'a, Event, AwsError>;
type Store = herald_store::Store<AwsError>;
type Writer = herald_store::Writer<Event, AwsError>;

/// Logs a registry event with a change.
trait Emit {
    fn emit(&mut self, operation: Operation, body: EventBody);
}

impl Emit for Changes<'_> {
    fn emit(&mut self, operation: Operation, body: EventBody) {
        self.log(Event {
            operation: Some(operation),
            body,
        });
    }
}

/// What the operations need besides storage.
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) account_id: String,
    pub(crate) region: String,
    pub(crate) thing_type_delete_delay_ms: i64,
    /// One minute of a job's clock, in milliseconds.
    pub(crate) job_minute_ms: i64,
    /// `jobs.schedule_lead_minutes`.
    pub(crate) schedule_lead_minutes: i64,
    /// Where `documentSource` documents are read from.
    pub(crate) documents_dir: std::path::PathBuf,
    /// `shadows.requests_per_thing_per_sec`.
    pub(crate) shadow_requests_per_sec: u32,
}

impl Context {
    pub(crate) fn arns(&self) -> Arns<'_> {
        Arns {
            region: &self.region,
            account: &self.account_id,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Registry {
    store: Store,
    writer: Writer,
    ctx: Arc<Context>,
    log: ChangeLog,
    index: Index,
    /// The shadow requests each thing may still make.
    shadow_rate: Arc<shadows::ThingRate>,
}

/// An attribute payload: the attributes given and whether to merge them.
#[derive(Debug, Clone, Default)]
pub(crate) struct AttributePayload {
    pub(crate) attributes: Attributes,
    pub(crate) merge: bool,
}

fn thing_key(name: &str) -> Vec<u8> {
    key(&["thing", name])
}

fn type_key(name: &str) -> Vec<u8> {
    key(&["type", name])
}

fn group_key(name: &str) -> Vec<u8> {
    key(&["group", name])
}

fn load_thing(c: &Changes<'_>, name: &str) -> Result<Thing, AwsError> {
    c.get(&thing_key(name))?
        .ok_or_else(|| not_found(format!("Thing {name} cannot be found.")))
}

fn load_type(c: &Changes<'_>, name: &str) -> Result<ThingType, AwsError> {
    c.get(&type_key(name))?
        .ok_or_else(|| not_found(format!("Thing type {name} cannot be found.")))
}

fn billing_key(name: &str) -> Vec<u8> {
    key(&["bgroup", name])
}

fn load_billing_group(c: &Changes<'_>, name: &str) -> Result<BillingGroup, AwsError> {
    c.get(&billing_key(name))?
        .ok_or_else(|| not_found(format!("Billing group {name} cannot be found.")))
}

fn load_group(c: &Changes<'_>, name: &str) -> Result<ThingGroup, AwsError> {
    c.get(&group_key(name))?
        .ok_or_else(|| not_found(format!("Thing group {name} cannot be found.")))
}

fn version_conflict(kind: &str, name: &str) -> AwsError {
    AwsError::new(
        ErrorType::VersionConflict,
        format!("The version for {kind} {name} does not match the expected version."),
    )
}

fn already_exists(message: String, id: &str, arn: String) -> AwsError {
    let mut err = AwsError::new(ErrorType::ResourceAlreadyExists, message);
    err.resource_id = Some(id.to_owned());
    err.resource_arn = Some(arn);
    err
}

fn check_expected(
    expected: Option<i64>,
    version: i64,
    kind: &str,
    name: &str,
) -> Result<(), AwsError> {
    match expected {
        Some(expected) if expected != version => Err(version_conflict(kind, name)),
        _ => Ok(()),
    }
}

impl Registry {
    pub(crate) fn new(
        store: Store,
        writer: Writer,
        ctx: Context,
        log: ChangeLog,
        index: Index,
    ) -> Registry {
        Registry {
            store,
            writer,
            shadow_rate: Arc::new(shadows::ThingRate::new(ctx.shadow_requests_per_sec)),
            ctx: Arc::new(ctx),
            log,
            index,
        }
    }

    pub(crate) fn arns(&self) -> Arns<'_> {
        self.ctx.arns()
    }

    pub(crate) fn account_id(&self) -> &str {
        &self.ctx.account_id
    }

    pub(crate) fn log(&self) -> &ChangeLog {
        &self.log
    }

    fn reader(&self) -> Changes<'_> {
        Changes::new(&self.store)
    }

    /// Removes all state, logging nothing (test mode).
    pub(crate) async fn reset(&self) -> Result<(), AwsError> {
        self.writer.mutate(|c| c.remove_all_state()).await?;
        self.shadow_rate.clear();
        self.index.clear().await
    }
}
