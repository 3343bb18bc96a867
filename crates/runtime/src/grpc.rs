//! Serving a service's gRPC API the way every Herald service does: with
//! `grpc.health.v1` (the service's own name reports readiness and turns
//! NOT_SERVING as shutdown begins) and reflection, draining in-flight calls
//! for at most a grace period once shutdown is asked for.

use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{
    service::Routes,
    transport::{Server, server::TcpIncoming},
};
use tonic_health::ServingStatus;

/// Serves `routes` on `listener` until `shutdown` is cancelled. `name` is the
/// gRPC service name that readiness probes ask for (e.g.
/// `herald.registry.v1.Registry`); `descriptors` the encoded file descriptor
/// set for reflection.
pub async fn serve(
    name: &'static str,
    descriptors: &'static [u8],
    routes: Routes,
    listener: TcpListener,
    shutdown: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(name, ServingStatus::Serving)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(descriptors)
        .build_v1()
        .context("build the reflection service")?;
    let routes = routes.add_service(health_service).add_service(reflection);
    let addr = listener.local_addr().context("read the listen address")?;
    tracing::info!(%addr, "grpc listening");
    let stop = shutdown.clone();
    let server = Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move {
                stop.cancelled().await;
                health
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            },
        );
    tokio::select! {
        served = server => served.context("serve grpc")?,
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "calls still in flight after the grace period; stopping anyway");
        }
    }
    Ok(())
}
