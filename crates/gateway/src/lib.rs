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
use std::{future::IntoFuture, sync::Arc};

use config_cache::ConfigCache;
use events::EventPump;
use herald_proto::config::v1::config_client::ConfigClient;
use mqtt::{
    bus::Bus,
    lifecycle::VersionCounter,
    persist::SessionStore,
    router::{Router, RouterSettings},
    server::{Sessions, serve_tcp},
    session::{
        PasswordCredential, Principal, SessionContext, SessionSettings, password_authenticator,
    },
    tls::{CertificatePrincipal, TlsAcceptor, accept_loop},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Gets the TLS listener's server certificate from the config service,
/// retrying with backoff while it is not up yet.
async fn tls_server_config(
    config: &mut ConfigClient<Channel>,
    settings: &Settings,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match mqtt::tls::server_config(config, &settings.mqtt.tls_names, &settings.mqtt.tls_ips)
            .await
        {
            Ok(config) => return Ok(config),
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                ?backoff,
                "getting a server certificate failed; retrying"
            ),
        }
        tokio::select! {
            () = shutdown.cancelled() => anyhow::bail!("stopped before the config service answered"),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Forgets expired persistent sessions, checking a few times per expiry
/// period (at least once a minute), until `shutdown`.
async fn expire_sessions(ctx: SessionContext, expiry: Duration, shutdown: CancellationToken) {
    let period = (expiry / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                ctx.expire_sessions();
            }
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
    let listening = [&listeners.http, &listeners.mqtt, &listeners.mqtt_tls]
        .map(|l| l.local_addr().context("read a listen address"))
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    settings.check_dev_credentials(&listening)?;
    let state = http::AppState::connect(&settings).context("set up the upstream clients")?;
    let (registry, mut config) = (state.registry.clone(), state.config.clone());
    let app = http::router(state);
    let addr = listeners
        .http
        .local_addr()
        .context("read the HTTP listen address")?;
    tracing::info!(%addr, "http listening");
    let stop = shutdown.clone();
    let http = tokio::spawn(
        axum::serve(listeners.http, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .into_future(),
    );

    // The MQTT side: the live config, the $aws bus, rumqttd's router underneath.
    let cache = ConfigCache::spawn(config.clone(), shutdown.clone());
    let bus = Bus::new();
    let router = Router::spawn(&RouterSettings {
        max_connections: settings.mqtt.max_routed_sessions,
        ..RouterSettings::default()
    });

    // Registry changes become $aws/events messages; sessions check
    // iot:Receive on every delivery. Persistent sessions are stored beside
    // the pump's cursor, and outlive the sessions' shutdown.
    let (pump_dir, sessions_dir) = (
        settings.data_dir.join("pump"),
        settings.data_dir.join("sessions"),
    );
    let (pump_store, sessions_store) = tokio::task::spawn_blocking(move || {
        anyhow::Ok((
            herald_store::Store::open(&pump_dir)?,
            herald_store::Store::open(&sessions_dir)?,
        ))
    })
    .await??;
    let sessions_stop = CancellationToken::new();
    let (session_store, stored_sessions) =
        SessionStore::open(sessions_store, sessions_stop.clone())
            .context("open the session store")?;
    tracing::info!(
        persistent_sessions = stored_sessions.len(),
        "session store open"
    );
    let pump = EventPump::spawn(
        registry.clone(),
        cache.clone(),
        bus.clone(),
        pump_store,
        Arc::new(|_, _| true),
        shutdown.clone(),
    )
    .context("start the event pump")?;

    let ctx = SessionContext::new(
        cache.clone(),
        bus.clone(),
        Arc::new(VersionCounter::new()),
        &settings.region,
        &settings.account_id,
        router,
        SessionSettings {
            persistent_session_expiry: Duration::from_secs(
                settings.mqtt.persistent_session_expiry_secs,
            ),
            ..SessionSettings::default()
        },
    )
    .with_registry(registry)
    .with_session_store(session_store.clone(), stored_sessions)
    .with_event_pump(pump.clone());
    tokio::spawn(expire_sessions(
        ctx.clone(),
        Duration::from_secs(settings.mqtt.persistent_session_expiry_secs),
        shutdown.clone(),
    ));
    let users = settings.mqtt.users.iter().map(|u| PasswordCredential {
        username: u.username.clone(),
        password: u.password.clone(),
        principal_id: u.username.clone(),
        policy_names: u.policies.clone(),
    });
    let authenticate = password_authenticator(users.collect());
    let mqtt = tokio::spawn(serve_tcp(
        listeners.mqtt,
        ctx.clone(),
        authenticate.clone(),
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
    let (sessions, tls_sessions_done) = Sessions::new(ctx, authenticate, shutdown.clone());
    let on_connection = move |stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
                              cert: CertificatePrincipal| {
        let peer = stream
            .get_ref()
            .0
            .peer_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
        let principal = Principal::certificate(
            cert.certificate_id,
            cert.certificate_arn,
            cert.subject,
            cert.issuer,
        );
        sessions.spawn(stream, peer, Some(principal));
    };
    let mqtt_tls = tokio::spawn(accept_loop(
        listeners.mqtt_tls,
        acceptor,
        cache.clone(),
        on_connection,
        shutdown.clone(),
    ));

    shutdown.cancelled().await;
    let grace = Duration::from_secs(settings.shutdown_grace_secs);
    let drained = tokio::time::timeout(grace, async {
        let (http, mqtt, mqtt_tls) = tokio::join!(http, mqtt, mqtt_tls);
        tls_sessions_done.wait().await;
        sessions_stop.cancel();
        session_store.stopped().await;
        pump.stopped().await;
        http??;
        mqtt??;
        mqtt_tls?;
        anyhow::Ok(())
    })
    .await;
    match drained {
        Ok(result) => result?,
        Err(_) => tracing::warn!(
            ?grace,
            "connections still open after the grace period; stopping anyway"
        ),
    }
    tracing::info!("stopped");
    Ok(())
}
