use anyhow::Context;
use herald_gateway::{Listeners, Settings};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings =
        herald_runtime::settings::load(herald_gateway::ENV_PREFIX).context("load settings")?;
    herald_runtime::telemetry::init(&settings.log).context("set up logging")?;
    let addr = settings.http.listen_addr;
    let http = TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {addr}"))?;
    let shutdown = herald_runtime::shutdown::on_signal()?;
    herald_gateway::run(settings, Listeners { http }, shutdown)
        .await
        .inspect_err(|e| tracing::error!("failed to {e:#}"))
}
