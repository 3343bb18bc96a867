use anyhow::Context;
use herald_registry::Settings;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings =
        herald_runtime::settings::load(herald_registry::ENV_PREFIX).context("load settings")?;
    herald_runtime::telemetry::init(&settings.log).context("set up logging")?;
    let shutdown = herald_runtime::shutdown::on_signal()?;
    let served = if settings.store == "sled" {
        let addr = settings.grpc.listen_addr;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind {addr}"))?;
        herald_registry::run(settings, listener, shutdown).await
    } else {
        // One of several replicas: bind once this one is the writer.
        let addr = settings.grpc.listen_addr;
        herald_registry::run(settings, addr, shutdown).await
    };
    served.inspect_err(|e| tracing::error!("failed to {e:#}"))
}
