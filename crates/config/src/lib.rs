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

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use anyhow::Context as _;
use herald_proto::{FILE_DESCRIPTOR_SET, config::v1::config_server::ConfigServer, error::AwsError};
use herald_runtime::partition::Partition;
use herald_runtime::{
    grpc::{Listen, ServeOptions},
    internal_tls::{self, InternalTls},
};
use herald_store::{Backend, Store};
pub use settings::{CaSettings, ChangeLogSettings, ENV_PREFIX, GrpcSettings, Settings};
use tokio_util::sync::CancellationToken;
use tonic::{server::NamedService, service::Routes};

use crate::{certs::Ca, grpc::GrpcConfig, registry::Registry};

/// Serves the config service on `listen` until `shutdown` is cancelled (or,
/// with PostgreSQL, this replica stops being the writer); then
/// stops reporting ready, drains in-flight calls within the grace period, and
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
    let watched: Arc<OnceLock<herald_runtime::partition::Partitions<service::ConfigService>>> =
        Arc::default();
    let refresh = {
        let watched = Arc::clone(&watched);
        herald_runtime::metrics::refresh(move || {
            if let Some(partitions) = watched.get() {
                for (partition, service) in partitions.all_named() {
                    service.log().report_metrics("config", partition.name());
                }
            }
        })
    };
    herald_runtime::metrics::spawn(settings.metrics.listen_addr, refresh, shutdown.clone()).await?;
    let dir = settings.data_dir.clone();
    let ca_settings = settings.ca.clone();
    let backend = Backend::parse(&settings.store, settings.store_ca_file.clone())?;
    if backend != Backend::Sled && ca_settings.cert_file.is_none() {
        tracing::warn!(
            "with PostgreSQL and no ca.cert_file, the Herald CA is this replica's own \
             (in data_dir): give every replica the same ca.cert_file and ca.key_file"
        );
    }
    let store = Store::open_with(&backend, &dir, "config", &shutdown).await?;
    // With PostgreSQL, serving ends when this replica stops being the writer.
    let serving = store.serving_until_lost(&shutdown);
    let lost = store.lost();
    let store: Store<AwsError> = store.with_errors(domain::store_error);
    let ca = tokio::task::spawn_blocking(move || -> anyhow::Result<Ca> {
        Ca::load_or_create(
            &dir,
            ca_settings.cert_file.as_deref(),
            ca_settings.key_file.as_deref(),
        )
        .context("load the Herald CA")
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

    let _ = watched.set(partitions.clone());
    let listener = listen.listener().await?;
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
        serving,
        options,
    )
    .await?;
    // Read before the partitions stop: their connections close then.
    let lost = lost.is_cancelled();
    partitions.stop(grace).await?;
    anyhow::ensure!(
        !lost,
        "this replica is no longer the config service's writer"
    );
    tracing::info!("stopped");
    Ok(())
}
