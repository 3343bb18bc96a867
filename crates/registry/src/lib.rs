//! Herald's registry service: the only writer of registry state.
//!
//! Every mutation and the events it causes are written in one sled transaction
//! (entity state plus an append to the change log) on a single writer thread,
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

use std::time::Duration;

use anyhow::Context as _;
use herald_proto::{
    FILE_DESCRIPTOR_SET,
    registry::v1::{jobs_server::JobsServer, registry_server::RegistryServer},
};
use herald_runtime::{grpc::ServeOptions, internal_tls::InternalTls};
pub use settings::{ChangeLogSettings, ENV_PREFIX, GrpcSettings, JobsSettings, Settings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{server::NamedService, service::Routes};

use herald_store::Store;

use crate::{
    grpc::{GrpcJobs, GrpcRegistry},
    partition::PartitionSettings,
};

/// Serves the registry on `listener` until `shutdown` is cancelled; then stops
/// reporting ready, drains in-flight calls within the grace period, and
/// flushes storage.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tls = InternalTls::load(&settings.internal_tls).context("load the internal TLS files")?;
    let dir = settings.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&dir))
        .await??
        .with_errors(domain::store_error);
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

    let watched = partitions.clone();
    let refresh = herald_runtime::metrics::refresh(move || {
        for (partition, registry) in watched.all_named() {
            registry.log().report_metrics("registry", partition.name());
        }
    });
    herald_runtime::metrics::spawn(settings.metrics.listen_addr, refresh, shutdown.clone()).await?;
    tracing::info!(data_dir = %settings.data_dir.display(), "serving");
    let jobs = GrpcJobs::new(partitions.clone());
    let grpc = GrpcRegistry::new(partitions.clone(), shutdown.clone(), settings.test_mode);
    let routes = Routes::new(RegistryServer::new(grpc)).add_service(JobsServer::new(jobs));
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
        shutdown,
        options,
    )
    .await?;
    partitions.stop(grace).await?;
    tracing::info!("stopped");
    Ok(())
}
