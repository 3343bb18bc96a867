//! Herald's registry service: the only writer of registry state.
//!
//! Every mutation and the events it causes are written in one transaction
//! (entity state plus an append to the change log, in sled or PostgreSQL) on
//! a single writer thread,
//! and acknowledged only once flushed. `WatchChanges` replays the log from a
//! cursor and then follows it live. The same process serves AWS IoT Jobs
//! (the `Jobs` gRPC service): jobs and their executions are registry state,
//! and their events go into the same change log.
//!
//! Reading order: `settings`, `domain` (records and rules), `index` (the
//! fleet index kept from the change log), `service` (operations), `grpc`
//! (the wire adapter). Storage, the writer and the log's
//! followers are `herald_store`'s.

mod settings;

mod domain;
pub mod fuzzing;
mod grpc;
mod index;
mod partition;
mod service;

pub use herald_runtime::partition::PARTITION_METADATA;

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use anyhow::Context as _;
use herald_proto::{
    FILE_DESCRIPTOR_SET,
    registry::v1::{
        jobs_server::JobsServer, registry_server::RegistryServer, shadows_server::ShadowsServer,
    },
};
use herald_runtime::{
    grpc::{Listen, ServeOptions},
    internal_tls::InternalTls,
};
pub use settings::{ChangeLogSettings, ENV_PREFIX, GrpcSettings, JobsSettings, Settings};
use tokio_util::sync::CancellationToken;
use tonic::{server::NamedService, service::Routes};

use herald_store::{Backend, Store};

use crate::{
    grpc::{GrpcJobs, GrpcRegistry, GrpcShadows},
    partition::PartitionSettings,
};

/// Serves the registry on `listen` until `shutdown` is cancelled (or, with
/// PostgreSQL, this replica stops being the writer); then stops
/// reporting ready, drains in-flight calls within the grace period, and
/// flushes storage.
///
/// `listen` is a bound listener, or (for one of several replicas sharing a
/// PostgreSQL store) an address bound only once this replica is the
/// writer, so that replicas may share one address, as on one host, and a
/// standby never looks ready.
pub async fn run(
    settings: Settings,
    listen: impl Into<Listen>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listen = listen.into();
    let tls = InternalTls::load(&settings.internal_tls).context("load the internal TLS files")?;
    // Metrics first: a standby replica is alive (and says so) while it waits.
    let watched: Arc<OnceLock<partition::Partitions>> = Arc::default();
    let refresh = {
        let watched = Arc::clone(&watched);
        herald_runtime::metrics::refresh(move || {
            if let Some(partitions) = watched.get() {
                for (partition, registry) in partitions.all_named() {
                    registry.log().report_metrics("registry", partition.name());
                }
            }
        })
    };
    herald_runtime::metrics::spawn(settings.metrics.listen_addr, refresh, shutdown.clone()).await?;
    let backend = Backend::parse(&settings.store, settings.store_ca_file.clone())?;
    let store = Store::open_with(&backend, &settings.data_dir, "registry", &shutdown).await?;
    // With PostgreSQL, serving ends when this replica stops being the writer.
    let serving = store.serving_until_lost(&shutdown);
    let lost = store.lost();
    let store = store.with_errors(domain::store_error);
    let context = service::Context {
        account_id: settings.account_id.clone(),
        region: settings.region.clone(),
        thing_type_delete_delay_ms: (settings.thing_type_delete_delay_secs * 1000) as i64,
        job_minute_ms: i64::try_from(settings.jobs.minute_ms.max(1)).unwrap_or(60_000),
        schedule_lead_minutes: i64::try_from(settings.jobs.schedule_lead_minutes)
            .unwrap_or(i64::MAX),
        documents_dir: settings
            .jobs
            .documents_dir
            .clone()
            .unwrap_or_else(|| settings.data_dir.join("documents")),
        shadow_requests_per_sec: settings.shadows.requests_per_thing_per_sec,
    };
    let partitions = partition::open(
        store,
        PartitionSettings {
            context,
            retention: Duration::from_secs(settings.changes.retention_secs),
            prune_interval: Duration::from_secs(settings.changes.prune_interval_secs),
            timer_interval: Duration::from_millis(settings.jobs.timer_interval_ms.max(1)),
        },
        shutdown.clone(),
    )?;

    let _ = watched.set(partitions.clone());
    let listener = listen.listener().await?;
    tracing::info!(data_dir = %settings.data_dir.display(), "serving");
    let jobs = GrpcJobs::new(partitions.clone());
    let grpc = GrpcRegistry::new(partitions.clone(), shutdown.clone(), settings.test_mode);
    let shadows = GrpcShadows::new(partitions.clone());
    let routes = Routes::new(RegistryServer::new(grpc))
        .add_service(JobsServer::new(jobs))
        .add_service(ShadowsServer::new(shadows));
    let grace = Duration::from_secs(settings.shutdown_grace_secs);
    let name = <RegistryServer<GrpcRegistry> as NamedService>::NAME;
    let options = ServeOptions {
        tls,
        health_listen_addr: settings.grpc.health_listen_addr,
        grace,
    };
    herald_runtime::grpc::serve(
        name,
        FILE_DESCRIPTOR_SET,
        routes,
        listener,
        serving,
        options,
    )
    .await?;
    // Read before the partitions stop: their connections close then.
    let lost = lost.is_cancelled();
    partitions.stop(grace).await?;
    anyhow::ensure!(!lost, "this replica is no longer the registry's writer");
    tracing::info!("stopped");
    Ok(())
}
