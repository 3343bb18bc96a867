//! Herald's config service: event configurations, IoT policies and their
//! versions, certificates (issued by the Herald CA or registered), policy
//! attachments, and `WatchConfig`, which keeps the gateway's cache live.
//!
//! Reading order: `settings`, `domain` (records and rules), `certs` (X.509),
//! `service` (operations), `grpc` (the wire adapter). Storage and the change
//! log are `herald_store`'s; thing groups and principals come from the
//! registry, through `registry` (its gRPC client, in this service's types).
//! `internal_pki` creates the certificates the services authenticate each
//! other with (`config internal-pki`).

mod settings;

pub mod internal_pki;

mod certs;
mod domain;
mod grpc;
mod partition;
mod registry;
mod service;

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use herald_proto::{FILE_DESCRIPTOR_SET, config::v1::config_server::ConfigServer, error::AwsError};
use herald_runtime::partition::Partition;
use herald_runtime::{
    grpc::ServeOptions,
    internal_tls::{self, InternalTls},
};
use herald_store::Store;
pub use settings::{CaSettings, ChangeLogSettings, ENV_PREFIX, GrpcSettings, Settings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{server::NamedService, service::Routes};

use crate::{certs::Ca, grpc::GrpcConfig, registry::Registry};

/// Serves the config service on `listener` until `shutdown` is cancelled; then
/// stops reporting ready, drains in-flight calls within the grace period, and
/// flushes storage.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tls = InternalTls::load(&settings.internal_tls).context("load the internal TLS files")?;
    let dir = settings.data_dir.clone();
    let ca_settings = settings.ca.clone();
    let (store, ca) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(Store<AwsError>, Ca)> {
            let store = Store::open(&dir)?.with_errors(domain::store_error);
            let ca = Ca::load_or_create(
                &dir,
                ca_settings.cert_file.as_deref(),
                ca_settings.key_file.as_deref(),
            )
            .context("load the Herald CA")?;
            Ok((store, ca))
        })
        .await??;
    let registry = Registry::new(
        internal_tls::endpoint(&settings.registry_url, tls.as_ref())
            .context("read registry_url")?
            .connect_lazy(),
    );
    let default = Partition::new(&settings.account_id, &settings.region)
        .context("the settings' account_id and region")?;
    let partitions = partition::open(
        store,
        default,
        partition::Shared {
            ca: Arc::new(ca),
            registry,
            retention: Duration::from_secs(settings.changes.retention_secs),
            prune_interval: Duration::from_secs(settings.changes.prune_interval_secs),
        },
        shutdown.clone(),
    )?;
    for service in partitions.all() {
        service
            .initialize()
            .await
            .context("write the default event configurations")?;
    }

    let watched = partitions.clone();
    let refresh = herald_runtime::metrics::refresh(move || {
        for (partition, service) in watched.all_named() {
            service.log().report_metrics("config", partition.name());
        }
    });
    herald_runtime::metrics::spawn(settings.metrics.listen_addr, refresh, shutdown.clone()).await?;
    tracing::info!(data_dir = %settings.data_dir.display(), "serving");
    let grpc = GrpcConfig::new(partitions.clone(), shutdown.clone(), settings.test_mode);
    let routes = Routes::new(ConfigServer::new(grpc));
    let grace = Duration::from_secs(settings.shutdown_grace_secs);
    let name = <ConfigServer<GrpcConfig> as NamedService>::NAME;
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
