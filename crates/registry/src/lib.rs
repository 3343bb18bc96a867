//! Herald's registry service: the only writer of registry state.
//!
//! Every mutation and the events it causes are written in one sled transaction
//! (entity state plus an append to the change log) on a single writer thread,
//! and acknowledged only once flushed. `WatchChanges` replays the log from a
//! cursor and then follows it live.
//!
//! Reading order: `settings`, `domain` (records and rules), `service`
//! (operations), `grpc` (the wire adapter). Storage, the writer and the log's
//! followers are `herald_store`'s.

mod settings;

mod domain;
mod grpc;
mod service;

use std::time::Duration;

use anyhow::Context as _;
use herald_proto::{FILE_DESCRIPTOR_SET, registry::v1::registry_server::RegistryServer};
pub use settings::{ChangeLogSettings, ENV_PREFIX, GrpcSettings, Settings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Server, server::TcpIncoming};

use herald_store::{Store, Writer};

use crate::{domain::Event, grpc::GrpcRegistry, service::Registry};

/// Serves the registry on `listener` until `shutdown` is cancelled; then stops
/// reporting ready, drains in-flight calls within the grace period, and
/// flushes storage.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let dir = settings.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&dir)).await??;
    let (writer, log, writer_thread) =
        Writer::<Event>::start(store.clone(), "registry-writer").context("start the writer")?;
    let ctx = service::Context {
        account_id: settings.account_id.clone(),
        region: settings.region.clone(),
        thing_type_delete_delay_ms: (settings.thing_type_delete_delay_secs * 1000) as i64,
    };
    let registry = Registry::new(store, writer, ctx, log.clone());

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<RegistryServer<GrpcRegistry>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("build the reflection service")?;
    let retention = tokio::spawn(log.retain(
        Duration::from_secs(settings.changes.retention_secs),
        Duration::from_secs(settings.changes.prune_interval_secs),
        shutdown.clone(),
    ));

    let addr = listener.local_addr().context("read the listen address")?;
    tracing::info!(%addr, data_dir = %settings.data_dir.display(), "grpc listening");
    let grpc = GrpcRegistry::new(registry, shutdown.clone(), settings.test_mode);
    let stop = shutdown.clone();
    let server = Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(RegistryServer::new(grpc))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move {
                stop.cancelled().await;
                health
                    .set_not_serving::<RegistryServer<GrpcRegistry>>()
                    .await;
            },
        );
    let grace = Duration::from_secs(settings.shutdown_grace_secs);
    let mut server = Box::pin(server);
    tokio::select! {
        served = &mut server => served.context("serve grpc")?,
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "calls still in flight after the grace period; stopping anyway");
        }
    }
    drop(server);
    retention.await.context("join retention")?;
    writer_thread.stop(grace).await.context("stop the writer")?;
    tracing::info!("stopped");
    Ok(())
}
