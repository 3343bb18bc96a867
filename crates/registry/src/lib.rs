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
mod service;

use std::time::Duration;

use anyhow::Context as _;
use herald_proto::{
    FILE_DESCRIPTOR_SET,
    error::AwsError,
    registry::v1::{jobs_server::JobsServer, registry_server::RegistryServer},
};
use herald_runtime::{grpc::ServeOptions, internal_tls::InternalTls};
pub use settings::{ChangeLogSettings, ENV_PREFIX, GrpcSettings, JobsSettings, Settings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{server::NamedService, service::Routes};

use herald_store::{Store, Writer};

use crate::{
    domain::Event,
    grpc::{GrpcJobs, GrpcRegistry},
    service::Registry,
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
    let (writer, log, writer_thread) =
        Writer::<Event, AwsError>::start(store.clone(), "registry-writer")
            .context("start the writer")?;
    let ctx = service::Context {
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
    let index = index::Index::load(&store, log.clone())
        .map_err(|e| anyhow::anyhow!("load the fleet index: {}", e.message))?;
    let index_follower = tokio::spawn(index.clone().follow(shutdown.clone()));
    let registry = Registry::new(store, writer, ctx, log.clone(), index);

    let retention = tokio::spawn(log.retain(
        Duration::from_secs(settings.changes.retention_secs),
        Duration::from_secs(settings.changes.prune_interval_secs),
        shutdown.clone(),
    ));

    let dynamic_groups = tokio::spawn(registry.clone().run_dynamic_groups(shutdown.clone()));
    let job_timer = tokio::spawn(registry.clone().run_job_timers(
        Duration::from_millis(settings.jobs.timer_interval_ms.max(1)),
        shutdown.clone(),
    ));

    tracing::info!(data_dir = %settings.data_dir.display(), "serving");
    let jobs = GrpcJobs::new(registry.clone());
    let grpc = GrpcRegistry::new(registry, shutdown.clone(), settings.test_mode);
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
    retention.await.context("join retention")?;
    job_timer.await.context("join the job timer")?;
    index_follower.await.context("join the fleet index")?;
    dynamic_groups.await.context("join the dynamic groups")?;
    writer_thread.stop(grace).await.context("stop the writer")?;
    tracing::info!("stopped");
    Ok(())
}
