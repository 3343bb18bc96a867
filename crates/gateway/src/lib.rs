//! Herald's gateway: the edge every client talks to.
//!
//! Today it serves the AWS IoT control-plane HTTP API (REST JSON, SigV4), so
//! that the `aws` CLI and boto3 drive Herald; each call becomes a gRPC call to
//! the registry or the config service. MQTT sessions and `$aws/events` delivery
//! come next.
//!
//! Reading order: `settings`, `http` (router, errors, SigV4, the operations).

mod settings;

pub mod config_cache;
pub mod events;
mod http;
pub mod mqtt;

use std::time::Duration;

use anyhow::Context as _;
pub use settings::{
    AccessKey, DEV_ACCESS_KEY_ID, DEV_MQTT_PASSWORD, DEV_MQTT_POLICY, DEV_MQTT_USERNAME,
    DEV_SECRET_ACCESS_KEY, ENV_PREFIX, HttpSettings, MqttSettings, MqttUser, Settings,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The sockets the gateway serves, bound by the caller.
pub struct Listeners {
    /// The AWS IoT control-plane HTTP API.
    pub http: TcpListener,
}

/// Serves the gateway until `shutdown` is cancelled, then lets in-flight
/// requests finish within the grace period.
pub async fn run(
    settings: Settings,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Some(key) = settings
        .access_keys
        .iter()
        .find(|k| k.account_id != settings.account_id)
    {
        anyhow::bail!(
            "access key {} is for account {}, but this gateway serves account {}",
            key.access_key_id,
            key.account_id,
            settings.account_id
        );
    }
    let state = http::AppState::connect(&settings).context("set up the upstream clients")?;
    let app = http::router(state);
    let addr = listeners
        .http
        .local_addr()
        .context("read the HTTP listen address")?;
    tracing::info!(%addr, "http listening");
    let stop = shutdown.clone();
    let server = axum::serve(listeners.http, app)
        .with_graceful_shutdown(async move { stop.cancelled().await });
    let grace = Duration::from_secs(settings.shutdown_grace_secs);
    tokio::select! {
        served = server => served.context("serve http")?,
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "requests still in flight after the grace period; stopping anyway");
        }
    }
    tracing::info!("stopped");
    Ok(())
}
