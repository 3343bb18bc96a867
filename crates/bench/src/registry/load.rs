//! Closed-loop mutation load: each client has its own connection and keeps one
//! call in flight, until the phase's deadline or its shared call budget.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use herald_proto::{
    error::AwsError,
    registry::v1::{
        AttributePayload, CreateThingRequest, UpdateThingRequest, registry_client::RegistryClient,
    },
};
use tokio::task::JoinSet;
use tonic::{Status, transport::Channel};

pub(super) type Client = RegistryClient<Channel>;

/// Which mutations a phase issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mix {
    /// Alternates CreateThing and an attribute-merging UpdateThing of the
    /// thing the client created last.
    CreateAndUpdate,
    /// CreateThing only.
    CreateOnly,
}

#[derive(Debug, Clone)]
pub(crate) struct Phase {
    /// Part of every thing name, so names stay unique across phases.
    pub(crate) label: String,
    pub(crate) clients: usize,
    pub(crate) mix: Mix,
    pub(crate) duration: Duration,
    /// At most this many calls in the whole phase, over all clients.
    pub(crate) max_calls: u64,
}

/// What a phase (or one client of it) achieved.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    /// From the start of the first call to the end of the last one.
    pub(crate) elapsed: Duration,
    /// One per acknowledged call.
    pub(crate) latencies: Vec<Duration>,
    pub(crate) first_error: Option<String>,
}

impl Outcome {
    fn absorb(&mut self, other: Outcome) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.latencies.extend(other.latencies);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Opens a connection of its own: a `Channel` from `connect` is one HTTP/2 connection.
pub(crate) async fn connect(endpoint: &str) -> anyhow::Result<Client> {
    RegistryClient::connect(endpoint.to_owned())
        .await
        .with_context(|| format!("connecting to {endpoint}"))
}

/// Connects every client first, then runs them all until the phase ends.
pub(crate) async fn run_phase(endpoint: &str, phase: &Phase) -> anyhow::Result<Outcome> {
    let mut clients = Vec::with_capacity(phase.clients);
    for _ in 0..phase.clients {
        clients.push(connect(endpoint).await?);
    }
    let budget = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (id, client) in clients.into_iter().enumerate() {
        let worker = Worker {
            client,
            name_prefix: format!("bench-{}-{id}", phase.label),
            mix: phase.mix,
            budget: Arc::clone(&budget),
            max_calls: phase.max_calls,
            deadline: started + phase.duration,
        };
        tasks.spawn(worker.run());
    }
    let mut outcome = Outcome::default();
    while let Some(joined) = tasks.join_next().await {
        outcome.absorb(joined.context("a load client panicked")?);
    }
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

struct Worker {
    client: Client,
    name_prefix: String,
    mix: Mix,
    budget: Arc<AtomicU64>,
    max_calls: u64,
    deadline: Instant,
}

impl Worker {
    async fn run(mut self) -> Outcome {
        let mut outcome = Outcome::default();
        let mut last_created = None;
        let mut call = 0;
        while self.may_call() {
            let started = Instant::now();
            match self.mutate(call, &mut last_created).await {
                Ok(()) => {
                    outcome.ok += 1;
                    outcome.latencies.push(started.elapsed());
                }
                Err(status) => {
                    outcome.errors += 1;
                    outcome.first_error.get_or_insert_with(|| describe(&status));
                }
            }
            call += 1;
        }
        outcome
    }

    fn may_call(&self) -> bool {
        Instant::now() < self.deadline
            && self.budget.fetch_add(1, Ordering::Relaxed) < self.max_calls
    }

    /// Issues call number `call`; every acknowledged call is a durable mutation.
    async fn mutate(&mut self, call: u64, last_created: &mut Option<String>) -> Result<(), Status> {
        match (self.mix, last_created.as_ref()) {
            (Mix::CreateAndUpdate, Some(name)) if call % 2 == 1 => {
                self.client.update_thing(update_request(name, call)).await?;
            }
            _ => {
                let name = format!("{}-{call}", self.name_prefix);
                self.client
                    .create_thing(create_request(&name, call))
                    .await?;
                *last_created = Some(name);
            }
        }
        Ok(())
    }
}

/// A thing with two attributes and no thing type: exactly one logged event.
fn create_request(name: &str, call: u64) -> CreateThingRequest {
    let attributes = HashMap::from([
        ("model".to_owned(), "bench".to_owned()),
        ("serial".to_owned(), format!("{name}/{call}")),
    ]);
    CreateThingRequest {
        thing_name: name.to_owned(),
        attribute_payload: Some(AttributePayload {
            attributes,
            merge: false,
        }),
        ..Default::default()
    }
}

/// Merges one attribute into the thing: exactly one logged event.
fn update_request(name: &str, call: u64) -> UpdateThingRequest {
    let attributes = HashMap::from([("firmware".to_owned(), format!("v{call}"))]);
    UpdateThingRequest {
        thing_name: name.to_owned(),
        attribute_payload: Some(AttributePayload {
            attributes,
            merge: true,
        }),
        ..Default::default()
    }
}

fn describe(status: &Status) -> String {
    format!("{:?}: {}", status.code(), AwsError::from_status(status))
}
