//! Serving a service's gRPC API the way every Herald service does: with
//! `grpc.health.v1` (the service's own name reports readiness and turns
//! NOT_SERVING as shutdown begins) and reflection, over mutual TLS when
//! internal TLS is on, draining in-flight calls for at most a grace period
//! once shutdown is asked for.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{
    service::Routes,
    transport::{Server, server::TcpIncoming},
};
use tonic_health::ServingStatus;

use crate::internal_tls::InternalTls;

/// How a service's gRPC API is served, besides what it serves.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Mutual TLS: every connection must present a certificate of the internal CA.
    pub tls: Option<InternalTls>,
    /// Also serve `grpc.health.v1`, and nothing else, in plain gRPC on this
    /// address: for probes that can't present a certificate (Kubernetes'
    /// native gRPC probes can't).
    pub health_listen_addr: Option<SocketAddr>,
    /// How long in-flight calls may run on after shutdown is asked for.
    pub grace: Duration,
}

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
    options: ServeOptions,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(name, ServingStatus::Serving)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(descriptors)
        .build_v1()
        .context("build the reflection service")?;

    // The plain health listener, bound first so that a wrong address fails the start.
    let health_stop = CancellationToken::new();
    let health_task = match options.health_listen_addr {
        Some(addr) => {
            let health_listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("bind the health listener {addr}"))?;
            let addr = health_listener
                .local_addr()
                .context("read the health listen address")?;
            tracing::info!(%addr, "grpc health listening");
            let stop = health_stop.clone();
            let server = Server::builder()
                .add_service(health_service.clone())
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(health_listener).with_nodelay(Some(true)),
                    async move { stop.cancelled().await },
                );
            Some(tokio::spawn(server))
        }
        None => None,
    };

    let routes = routes.add_service(health_service).add_service(reflection);
    let addr = listener.local_addr().context("read the listen address")?;
    let mut builder = Server::builder();
    match &options.tls {
        Some(tls) => {
            builder = builder
                .tls_config(tls.server_config())
                .context("set up internal TLS")?;
            tracing::info!(%addr, tls = "mutual", "grpc listening");
        }
        None => tracing::info!(%addr, tls = "off", "grpc listening"),
    }
    let stop = shutdown.clone();
    let server = builder.add_routes(routes).serve_with_incoming_shutdown(
        TcpIncoming::from(listener).with_nodelay(Some(true)),
        async move {
            stop.cancelled().await;
            health
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        },
    );
    let grace = options.grace;
    let served = tokio::select! {
        served = server => served.context("serve grpc"),
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "calls still in flight after the grace period; stopping anyway");
            Ok(())
        }
    };
    health_stop.cancel();
    if let Some(task) = health_task {
        match tokio::time::timeout(grace, task).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the health listener failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the health listener panicked"),
            Ok(Ok(Ok(()))) | Err(_) => {}
        }
    }
    served
}

/// Where a service listens: a listener its caller bound, or an address it
/// binds only once it is ready to serve (a replica that stood by). The
/// address may still be held for a moment by the replica it takes over
/// from, so binding is retried for up to [`BIND_WAIT`].
pub enum Listen {
    Bound(TcpListener),
    Later(SocketAddr),
}

impl From<TcpListener> for Listen {
    fn from(listener: TcpListener) -> Listen {
        Listen::Bound(listener)
    }
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Listen {
        Listen::Later(addr)
    }
}

/// How long [`Listen::Later`] retries an address in use.
pub const BIND_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl Listen {
    pub async fn listener(self) -> anyhow::Result<TcpListener> {
        let addr = match self {
            Listen::Bound(listener) => return Ok(listener),
            Listen::Later(addr) => addr,
        };
        let deadline = tokio::time::Instant::now() + BIND_WAIT;
        loop {
            match TcpListener::bind(addr).await {
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                bound => return bound.with_context(|| format!("bind {addr}")),
            }
        }
    }
}
