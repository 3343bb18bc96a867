use std::net::SocketAddr;

use anyhow::Context;
use herald_gateway::{Listeners, Settings};
use tokio::net::TcpListener;

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {addr}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings =
        herald_runtime::settings::load(herald_gateway::ENV_PREFIX).context("load settings")?;
    herald_runtime::telemetry::init(&settings.log).context("set up logging")?;
    // Room for every listener's connection cap (see `limits`).
    herald_gateway::raise_nofile_limit();
    let listeners = Listeners {
        http: bind(settings.http.listen_addr).await?,
        mqtt: bind(settings.mqtt.listen_addr).await?,
        mqtt_tls: bind(settings.mqtt.tls_listen_addr).await?,
    };
    let shutdown = herald_runtime::shutdown::on_signal()?;
    herald_gateway::run(settings, listeners, shutdown)
        .await
        .inspect_err(|e| tracing::error!("failed to {e:#}"))
}
