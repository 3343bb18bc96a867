//! Herald's config service: event configurations, IoT policies and their
//! versions, certificates (issued by the Herald CA or registered), policy
//! attachments, and `WatchConfig`, which keeps the gateway's cache live.
//!
//! Reading order: `settings`, `domain` (records and rules), `certs` (X.509),
//! `service` (operations), `grpc` (the wire adapter). Storage and the change
//! log are `herald_store`'s; thing groups and principals come from the registry.

mod settings;

mod certs;
mod domain;
mod grpc;
mod service;

use std::time::Duration;

use anyhow::Context as _;
use herald_proto::{
    FILE_DESCRIPTOR_SET, config::v1::config_server::ConfigServer,
    registry::v1::registry_client::RegistryClient,
};
use herald_store::{Store, Writer};
pub use settings::{CaSettings, ChangeLogSettings, ENV_PREFIX, GrpcSettings, Settings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Endpoint, Server, server::TcpIncoming};

use crate::{certs::Ca, domain::ConfigEvent, grpc::GrpcConfig, service::ConfigService};

/// Serves the config service on `listener` until `shutdown` is cancelled; then
/// stops reporting ready, drains in-flight calls within the grace period, and
/// flushes storage.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let dir = settings.data_dir.clone();
    let ca_settings = settings.ca.clone();
    let (store, ca) = tokio::task::spawn_blocking(move || -> anyhow::Result<(Store, Ca)> {
        let store = Store::open(&dir)?;
        let ca = Ca::load_or_create(
            &dir,
            ca_settings.cert_file.as_deref(),
            ca_settings.key_file.as_deref(),
        )
        .context("load the Herald CA")?;
        Ok((store, ca))
    })
    .await??;
    let (writer, log, writer_thread) =
        Writer::<ConfigEvent>::start(store.clone(), "config-writer").context("start the writer")?;
    let registry = RegistryClient::new(
        Endpoint::from_shared(settings.registry_url.clone())
            .with_context(|| format!("read registry_url {:?}", settings.registry_url))?
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy(),
    );
    let ctx = service::Context {
        account_id: settings.account_id.clone(),
        region: settings.region.clone(),
    };
    let service = ConfigService::new(store, writer, log.clone(), ca, ctx, registry);
    service
        .initialize()
        .await
        .context("write the default event configurations")?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ConfigServer<GrpcConfig>>().await;
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
    let grpc = GrpcConfig::new(service, shutdown.clone(), settings.test_mode);
    let stop = shutdown.clone();
    let server = Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(ConfigServer::new(grpc))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move {
                stop.cancelled().await;
                health.set_not_serving::<ConfigServer<GrpcConfig>>().await;
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
