//! Herald's gateway: the edge every client talks to.
//!
//! It serves the AWS IoT control-plane HTTP API (REST JSON, SigV4), so that
//! the `aws` CLI and boto3 drive Herald, each call becoming a gRPC call to
//! the registry or the config service; and MQTT 3.1.1 and 5 over TLS and
//! plain TCP, with every packet checked against the client's IoT policies,
//! and `$aws/events/...` carrying the registry's events and the lifecycle
//! events.
//!
//! Reading order, bottom up (ARCHITECTURE.md states the direction of the
//! imports): `settings`, `bus` (the `$aws` bus and topic rules),
//! `config_cache`, `events` (following the change log, rendering and
//! gating), `http` and `mqtt`; [`run`] wires them.

mod settings;

mod backoff;
mod bus;
mod config_cache;
mod events;
pub mod fuzzing;
mod http;
mod limits;
mod mqtt;
mod partition;
pub mod testing;
mod websocket;

use std::time::Duration;

use anyhow::Context as _;
pub use limits::raise_nofile_limit;
pub use settings::{
    AccessKey, DEV_ACCESS_KEY_ID, DEV_MQTT_PASSWORD, DEV_MQTT_POLICY, DEV_MQTT_USERNAME,
    DEV_SECRET_ACCESS_KEY, ENV_PREFIX, HttpSettings, MqttSettings, MqttUser, Settings,
};
use std::sync::Arc;

use herald_proto::config::v1::config_client::ConfigClient;
use herald_runtime::partition::Partition;
use mqtt::{
    partitions::MqttPartitions,
    retained::RetainedLimits,
    router::{Router, RouterSettings},
    server::{Sessions, serve_tcp_limited},
    session::{PasswordCredential, Principal, SessionSettings, password_authenticator},
    tls::{CertificatePrincipal, TlsAcceptor, accept_loop_limited},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Gets the TLS listener's server certificate from the config service,
/// retrying with backoff while it is not up yet.
async fn tls_server_config(
    config: &mut ConfigClient<partition::Tagged>,
    settings: &Settings,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut backoff = backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match mqtt::tls::server_config(config, &settings.mqtt.tls_names, &settings.mqtt.tls_ips)
            .await
        {
            Ok(config) => return Ok(config),
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                backoff = ?backoff.current(),
                "getting a server certificate failed; retrying"
            ),
        }
        tokio::select! {
            () = shutdown.cancelled() => anyhow::bail!("stopped before the config service answered"),
            () = backoff.wait() => {}
        }
    }
}

/// The sockets the gateway serves, bound by the caller.
pub struct Listeners {
    /// The AWS IoT control-plane HTTP API.
    pub http: TcpListener,
    /// MQTT with username/password principals (development).
    pub mqtt: TcpListener,
    /// MQTT over TLS with client certificates.
    pub mqtt_tls: TcpListener,
}

/// Serves the gateway until `shutdown` is cancelled, then lets in-flight
/// requests finish within the grace period.
///
/// If the MQTT routing engine dies, the gateway does not run on half-alive
/// (HTTP answering, MQTT routing nothing): it stops as on shutdown and
/// returns an error, so the process exits non-zero and is restarted.
pub async fn run(
    settings: Settings,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let router = Router::spawn(&RouterSettings {
        max_connections: settings.mqtt.max_routed_sessions,
        ..RouterSettings::default()
    });
    run_with_router(settings, listeners, shutdown, router).await
}

/// Stops the gateway (cancels `shutdown`) if the routing engine dies
/// first; resolves to whether it did.
fn watch_engine(router: Router, shutdown: CancellationToken) -> tokio::task::JoinHandle<bool> {
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = router.stopped() => {
                tracing::error!("the MQTT routing engine stopped; stopping the gateway");
                shutdown.cancel();
                true
            }
        }
    })
}

/// [`run`] over a routing engine the caller spawned: for tests that kill
/// the engine ([`Router::kill_engine_for_tests`]).
#[doc(hidden)]
pub async fn run_with_router(
    settings: Settings,
    listeners: Listeners,
    stop: CancellationToken,
    router: Router,
) -> anyhow::Result<()> {
    // Cancelled by the caller, or by the engine's watchdog.
    let shutdown = stop.child_token();
    let engine = watch_engine(router.clone(), shutdown.clone());
    let served = serve(settings, listeners, shutdown.clone(), router).await;
    shutdown.cancel();
    if engine.await.unwrap_or(false) {
        anyhow::bail!("serve MQTT: the routing engine stopped");
    }
    served
}

async fn serve(
    settings: Settings,
    listeners: Listeners,
    shutdown: CancellationToken,
    router: Router,
) -> anyhow::Result<()> {
    // Each access key acts in its own account: keys of several accounts
    // are several partitions. An account id must be 12 digits.
    if let Some(key) = settings.access_keys.iter().find(|k| {
        herald_runtime::partition::Partition::new(&k.account_id, &settings.region).is_none()
    }) {
        anyhow::bail!(
            "access key {}: account {:?} is not 12 digits",
            key.access_key_id,
            key.account_id
        );
    }
    let listening = [&listeners.http, &listeners.mqtt, &listeners.mqtt_tls]
        .map(|l| l.local_addr().context("read a listen address"))
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    settings.check_dev_credentials(&listening)?;
    settings.check_limits()?;
    let mut settings = settings;
    // Each listener's cap is its share of the file descriptors.
    limits::fit_caps(
        &mut [
            ("http", &mut settings.http.max_connections),
            ("mqtt", &mut settings.mqtt.max_connections),
            ("mqtt_tls", &mut settings.mqtt.max_tls_connections),
        ],
        limits::nofile_limit(),
    );
    // Metrics first: what is recorded before the recorder is lost. The
    // partitions report once they are open.
    let reported: Arc<std::sync::OnceLock<MqttPartitions>> = Arc::default();
    let reporting = reported.clone();
    let refresh: herald_runtime::metrics::Refresh = Arc::new(move || {
        let partitions = reporting.get().cloned();
        Box::pin(async move {
            if let Some(partitions) = partitions {
                partitions.report_metrics().await;
            }
        })
    });
    herald_runtime::metrics::spawn(settings.metrics.listen_addr, refresh, shutdown.clone())
        .await
        .context("serve metrics")?;
    // The counters that may stay at zero exist from the start.
    for counter in [
        "herald_gateway_messages_in_total",
        "herald_gateway_messages_out_total",
        "herald_gateway_deliveries_refused_total",
        "herald_gateway_deliveries_expired_total",
    ] {
        metrics::counter!(counter).increment(0);
    }
    let (state, upstream) =
        http::AppState::connect(&settings).context("set up the upstream clients")?;
    let mut config = ConfigClient::new(partition::tagged(upstream.config.clone(), None));
    // The iot-data API reaches MQTT subscribers once the MQTT side runs.
    let broker = state.broker.clone();
    let app = http::router(state);
    let addr = listeners
        .http
        .local_addr()
        .context("read the HTTP listen address")?;
    tracing::info!(%addr, max_connections = settings.http.max_connections, "http listening");
    let http = tokio::spawn(http::serve(
        listeners.http,
        app,
        http::ServeOptions {
            limit: limits::ConnectionLimit::new("http", settings.http.max_connections),
            header_read_timeout: Duration::from_millis(settings.http.header_read_timeout_ms),
            write_timeout: Duration::from_millis(settings.http.write_timeout_ms),
        },
        shutdown.clone(),
    ));

    // The MQTT side, per (account, region) partition: the live config, the
    // $aws bus and the event pump (registry changes become $aws/events
    // messages; sessions check iot:Receive on every delivery), persistent
    // sessions and retained messages (which outlive the sessions'
    // shutdown), over rumqttd's router, shared.
    let Some(own_partition) = Partition::new(&settings.account_id, &settings.region) else {
        anyhow::bail!(
            "account_id {:?} is not 12 digits, or region {:?} is not a region name",
            settings.account_id,
            settings.region
        );
    };
    let sessions_stop = CancellationToken::new();
    let nats = match settings.bus.as_str() {
        "local" => None,
        url if url.starts_with("nats://") || url.starts_with("tls://") => Some(
            mqtt::cluster::Nats::connect(url)
                .await
                .context("join the other gateway replicas")?,
        ),
        other => anyhow::bail!("bus must be \"local\" or a nats:// URL, not {other:?}"),
    };
    if let Some(nats) = &nats {
        // Ready (GET /ready on the metrics listener) while NATS is reachable.
        let nats = Arc::clone(nats);
        herald_runtime::metrics::set_ready_check(move || nats.connected());
    }
    let setup = mqtt::partitions::Setup {
        data_dir: settings.data_dir.clone(),
        registry: upstream.registry.clone(),
        config: upstream.config.clone(),
        router,
        retained_limits: RetainedLimits {
            max_count: settings.mqtt.retained_max_count,
            max_bytes: settings.mqtt.retained_max_bytes,
        },
        session_settings: SessionSettings {
            persistent_session_expiry: Duration::from_secs(
                settings.mqtt.persistent_session_expiry_secs,
            ),
            min_keep_alive: Duration::from_secs(settings.mqtt.min_keep_alive_secs),
            max_persistent_sessions_per_principal: settings
                .mqtt
                .max_persistent_sessions_per_principal,
            ..SessionSettings::default()
        },
        shutdown: shutdown.clone(),
        stores_stop: sessions_stop.clone(),
        nats,
    };
    let mut regions = settings.served_regions.clone();
    regions.push(settings.region.clone());
    let partitions = MqttPartitions::open(setup, own_partition, regions)
        .await
        .context("open the MQTT side of the partitions")?;
    let ctx = partitions.own().ctx.clone();
    let _ = reported.set(partitions.clone());
    let _ = broker.set(Arc::new(partitions.clone()));
    let users = settings.mqtt.users.iter().map(|u| PasswordCredential {
        username: u.username.clone(),
        password: u.password.clone(),
        principal_id: u.username.clone(),
        policy_names: u.policies.clone(),
    });
    let authenticate = password_authenticator(users.collect());
    let mqtt = tokio::spawn(serve_tcp_limited(
        listeners.mqtt,
        ctx.clone(),
        authenticate.clone(),
        limits::ConnectionLimit::new("mqtt", settings.mqtt.max_connections),
        shutdown.clone(),
    ));

    let tls_config = tls_server_config(&mut config, &settings, &shutdown).await?;
    let acceptor = TlsAcceptor::new(tls_config).with_handshake_timeout(Duration::from_millis(
        settings.mqtt.tls_handshake_timeout_ms,
    ));
    let tls_addr = listeners
        .mqtt_tls
        .local_addr()
        .context("read the MQTT TLS listen address")?;
    tracing::info!(addr = %tls_addr, "mqtt tls listening");
    let (sessions, tls_sessions_done) = Sessions::new(ctx, authenticate.clone(), shutdown.clone());
    let in_partitions = partitions.clone();
    let on_connection = move |stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
                              cert: CertificatePrincipal,
                              permit: limits::ConnectionPermit| {
        let peer = stream
            .get_ref()
            .0
            .peer_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
        // Located among the open partitions: it is open.
        let Some(world) = in_partitions.get(cert.partition.as_ref()) else {
            return;
        };
        let stream = limits::Limited::new(stream, permit);
        let principal = Principal::certificate(
            cert.certificate_id,
            cert.certificate_arn,
            cert.subject,
            cert.issuer,
        );
        sessions.spawn_in(world.ctx, stream, peer, Some(principal));
    };
    let mqtt_tls = tokio::spawn(accept_loop_limited(
        listeners.mqtt_tls,
        acceptor,
        partitions.clone().into(),
        limits::ConnectionLimit::new("mqtt_tls", settings.mqtt.max_tls_connections),
        on_connection,
        shutdown.clone(),
    ));

    // MQTT over WebSockets, when configured.
    let (websockets, ws_sessions_done) = match settings.mqtt.websocket_listen_addr {
        None => (None, None),
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("bind the MQTT WebSocket listener {addr}"))?;
            let tls = mqtt::tls::websocket_server_config(
                &mut config,
                &settings.mqtt.tls_names,
                &settings.mqtt.tls_ips,
            )
            .await
            .context("the WebSocket listener's TLS certificate")?;
            let mut regions = settings.served_regions.clone();
            regions.push(settings.region.clone());
            let (ws_sessions, done) = Sessions::new(
                partitions.own().ctx.clone(),
                authenticate.clone(),
                shutdown.clone(),
            );
            let setup = websocket::WebSockets {
                tls,
                handshake_timeout: Duration::from_millis(settings.mqtt.tls_handshake_timeout_ms),
                access_keys: settings.access_keys.clone().into(),
                regions: regions.into(),
                partitions: partitions.clone(),
                sessions: ws_sessions,
                limit: limits::ConnectionLimit::new(
                    "mqtt_websocket",
                    settings.mqtt.max_tls_connections,
                ),
            };
            (
                Some(tokio::spawn(websocket::serve(
                    listener,
                    setup,
                    shutdown.clone(),
                ))),
                Some(done),
            )
        }
    };

    shutdown.cancelled().await;
    let grace = Duration::from_secs(settings.shutdown_grace_secs);
    let deadline = tokio::time::Instant::now() + grace;
    // HTTP drains on its own: a slow HTTP client never keeps the MQTT
    // sessions' stores from being written and closed.
    let (http, sessions) = tokio::join!(tokio::time::timeout_at(deadline, http), async {
        let drained = tokio::time::timeout_at(deadline, async {
            let (mqtt, mqtt_tls) = tokio::join!(mqtt, mqtt_tls);
            tls_sessions_done.wait().await;
            if let Some(websockets) = websockets {
                let _ = websockets.await;
            }
            if let Some(done) = ws_sessions_done {
                done.wait().await;
            }
            (mqtt, mqtt_tls)
        })
        .await;
        // Whether or not every session ended in time, the stores write
        // what they hold and close.
        sessions_stop.cancel();
        partitions.stopped().await;
        drained
    });
    match (http, sessions) {
        (Ok(http), Ok((mqtt, mqtt_tls))) => {
            http??;
            mqtt??;
            mqtt_tls?;
        }
        _ => tracing::warn!(
            ?grace,
            "connections still open after the grace period; stopping anyway"
        ),
    }
    tracing::info!("stopped");
    Ok(())
}
