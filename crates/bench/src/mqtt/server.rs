//! The brokers under test: Herald (registry, config service and gateway
//! in-process on a runtime of their own) and a Mosquitto child process.

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use herald_proto::config::v1::{CreatePolicyRequest, config_client::ConfigClient};
use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet};
use serde_json::json;
use tempfile::TempDir;
use tokio::{net::TcpListener, runtime::Runtime, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::tls::ServerFiles;

/// Herald's runtime gets this many worker threads (the machine's cores).
pub(crate) const WORKER_THREADS: usize = 2;
const DATA_PARENT: &str = "target/bench";
const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

type Task = JoinHandle<anyhow::Result<()>>;

/// The registry, the config service and the gateway, in this process.
pub(crate) struct InProcessHerald {
    /// The gateway's plain MQTT listener.
    pub(crate) mqtt: SocketAddr,
    /// A second gateway's, joined to the first over NATS
    /// ([`InProcessHerald::start_cluster`]).
    pub(crate) mqtt_b: Option<SocketAddr>,
    /// The registry's and the config service's gRPC listeners.
    pub(crate) registry: SocketAddr,
    pub(crate) config: SocketAddr,
    runtime: Runtime,
    shutdown: CancellationToken,
    tasks: Vec<(&'static str, Task)>,
    _dir: TempDir,
}

async fn bind() -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a loopback listener")?;
    let addr = listener.local_addr().context("reading its address")?;
    Ok((listener, addr))
}

impl InProcessHerald {
    /// Starts the services, with their data in a temporary directory named
    /// `<prefix>...` under `target/bench`, and creates the dev user's policy.
    pub(crate) fn start(prefix: &str) -> anyhow::Result<InProcessHerald> {
        InProcessHerald::start_with(prefix, None)
    }

    /// [`InProcessHerald::start`] with two gateways joined over the NATS
    /// server at `nats`.
    pub(crate) fn start_cluster(prefix: &str, nats: &str) -> anyhow::Result<InProcessHerald> {
        InProcessHerald::start_with(prefix, Some(nats))
    }

    fn start_with(prefix: &str, nats: Option<&str>) -> anyhow::Result<InProcessHerald> {
        std::fs::create_dir_all(DATA_PARENT).with_context(|| format!("creating {DATA_PARENT}"))?;
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(DATA_PARENT)
            .context("creating a data dir")?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("herald")
            .enable_all()
            .build()
            .context("building Herald's runtime")?;
        let shutdown = CancellationToken::new();
        let root = dir.path().to_path_buf();
        let (tasks, mqtt, registry_addr, config_addr) = runtime.block_on(async {
            let (registry_listener, registry_addr) = bind().await?;
            let registry_url = format!("http://{registry_addr}");
            let registry = tokio::spawn(herald_registry::run(
                herald_registry::Settings::for_test(root.join("registry")),
                registry_listener,
                shutdown.clone(),
            ));
            let (config_listener, config_addr) = bind().await?;
            let config_url = format!("http://{config_addr}");
            let config = tokio::spawn(herald_config::run(
                herald_config::Settings::for_test(root.join("config"), registry_url.clone()),
                config_listener,
                shutdown.clone(),
            ));
            let mut tasks: Vec<(&'static str, Task)> = Vec::new();
            let mut mqtt_addrs = Vec::new();
            let names: &[&'static str] = if nats.is_some() {
                &["gateway-b", "gateway"]
            } else {
                &["gateway"]
            };
            for name in names {
                let mut settings =
                    herald_gateway::Settings::for_test(registry_url.clone(), config_url.clone());
                settings.data_dir = root.join(name);
                settings.shutdown_grace_secs = 5;
                if let Some(nats) = nats {
                    settings.bus = nats.to_owned();
                }
                let (http, _) = bind().await?;
                let (mqtt, mqtt_addr) = bind().await?;
                let (mqtt_tls, _) = bind().await?;
                let listeners = herald_gateway::Listeners {
                    http,
                    mqtt,
                    mqtt_tls,
                };
                let gateway =
                    tokio::spawn(herald_gateway::run(settings, listeners, shutdown.clone()));
                tasks.push((name, gateway));
                mqtt_addrs.push(mqtt_addr);
            }
            tasks.push(("config", config));
            tasks.push(("registry", registry));
            anyhow::Ok((tasks, mqtt_addrs, registry_addr, config_addr))
        })?;
        // The first gateway is the last started; the second, if any, the first.
        let mqtt_b = (mqtt.len() > 1).then(|| mqtt[0]);
        let mqtt = *mqtt.last().context("a gateway")?;
        let herald = InProcessHerald {
            mqtt,
            mqtt_b,
            registry: registry_addr,
            config: config_addr,
            runtime,
            shutdown,
            tasks,
            _dir: dir,
        };
        herald
            .runtime
            .block_on(async {
                create_dev_policy(config_addr).await?;
                if let Some(b) = mqtt_b {
                    wait_dev_user_accepted(b).await?;
                }
                wait_dev_user_accepted(mqtt).await
            })
            .context("creating the dev user's policy")?;
        Ok(herald)
    }

    /// Runs `future` on Herald's runtime (for setup calls).
    pub(crate) fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Cancels every service and waits for each to return.
    pub(crate) fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let mut failures = Vec::new();
        for (name, task) in self.tasks {
            match self.runtime.block_on(task) {
                Ok(Ok(())) => {}
                Ok(Err(err)) => failures.push(format!("{name}: {err:#}")),
                Err(err) => failures.push(format!("{name} panicked: {err}")),
            }
        }
        self.runtime.shutdown_timeout(Duration::from_secs(5));
        if failures.is_empty() {
            Ok(())
        } else {
            bail!("{}", failures.join("; "))
        }
    }
}

/// `herald-dev` gets every action on everything, retrying while the config
/// service starts.
pub(super) async fn create_dev_policy(config: SocketAddr) -> anyhow::Result<()> {
    let document = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}],
    })
    .to_string();
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        let attempt = async {
            let mut client = ConfigClient::connect(format!("http://{config}")).await?;
            client
                .create_policy(CreatePolicyRequest {
                    policy_name: herald_gateway::DEV_MQTT_POLICY.into(),
                    policy_document: document.clone(),
                    tags: vec![],
                })
                .await?;
            anyhow::Ok(())
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(err) if Instant::now() > deadline => return Err(err),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Waits until the gateway whose plain MQTT listener is `mqtt` accepts the
/// dev user: it learns of the policy [`create_dev_policy`] made from the
/// config service's change stream, and refuses the dev user until then.
pub(super) async fn wait_dev_user_accepted(mqtt: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        let mut options = MqttOptions::new(
            format!("bench-probe-{attempt}"),
            mqtt.ip().to_string(),
            mqtt.port(),
        );
        options.set_clean_session(true).set_credentials(
            herald_gateway::DEV_MQTT_USERNAME,
            herald_gateway::DEV_MQTT_PASSWORD,
        );
        let (_client, mut eventloop) = AsyncClient::new(options, 1);
        let outcome = tokio::time::timeout(STARTUP_TIMEOUT, eventloop.poll()).await;
        if let Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) = &outcome
            && ack.code == ConnectReturnCode::Success
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the gateway did not accept the dev user within {STARTUP_TIMEOUT:?}: {outcome:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Mosquitto process on a free loopback port; killed (that PID only) on drop.
pub(super) struct Mosquitto {
    pub(super) addr: SocketAddr,
    pub(super) version: String,
    child: Child,
    _dir: TempDir,
}

impl Mosquitto {
    /// Mosquitto with a plain listener.
    pub(super) fn start() -> anyhow::Result<Mosquitto> {
        Mosquitto::start_with(None)
    }

    /// Mosquitto with a TLS listener that requires a client certificate
    /// signed by `files.ca_pem`.
    pub(super) fn start_tls(files: &ServerFiles) -> anyhow::Result<Mosquitto> {
        Mosquitto::start_with(Some(files))
    }

    fn start_with(tls: Option<&ServerFiles>) -> anyhow::Result<Mosquitto> {
        if !std::path::Path::new(MOSQUITTO).exists() {
            eprintln!("mqtt: {MOSQUITTO} is missing; apt-get install -y -qq mosquitto");
            let status = Command::new("apt-get")
                .args(["install", "-y", "-qq", "mosquitto"])
                .stdout(Stdio::null())
                .status()
                .context("running apt-get")?;
            if !status.success() || !std::path::Path::new(MOSQUITTO).exists() {
                bail!("could not install mosquitto ({status})");
            }
        }
        let version = Command::new(MOSQUITTO)
            .arg("-h")
            .output()
            .ok()
            .and_then(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .next()
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port")?
            .port();
        let dir = tempfile::tempdir().context("creating mosquitto's temp dir")?;
        let conf = dir.path().join("mosquitto.conf");
        let mut text = format!("listener {port} 127.0.0.1\n");
        if let Some(files) = tls {
            // The listener's own settings follow its `listener` line.
            for (name, setting, pem) in [
                ("ca.pem", "cafile", &files.ca_pem),
                ("server.pem", "certfile", &files.cert_pem),
                ("server.key", "keyfile", &files.key_pem),
            ] {
                let path = dir.path().join(name);
                std::fs::write(&path, pem).with_context(|| format!("writing {name}"))?;
                text.push_str(&format!("{setting} {}\n", path.display()));
            }
            text.push_str("require_certificate true\n");
        }
        text.push_str(
            "max_connections -1\nallow_anonymous true\nmax_queued_messages 10000\npersistence false\n",
        );
        std::fs::write(&conf, text).context("writing mosquitto.conf")?;
        let log = std::fs::File::create(dir.path().join("mosquitto.log"))
            .context("creating mosquitto.log")?;
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting mosquitto")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut mosquitto = Mosquitto {
            addr,
            version,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            if let Some(status) = mosquitto.child.try_wait().context("polling mosquitto")? {
                bail!("mosquitto exited at once ({status})");
            }
            if Instant::now() > deadline {
                bail!("mosquitto did not listen on {addr} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(mosquitto)
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        // Kills only the process started above.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// rumqttd 0.20's own broker (the routing engine the gateway embeds, with
/// its own MQTT 3.1.1 listener and no policies), on a thread of its own,
/// configured as the gateway configures its router. The baseline of the
/// gateway's cost: it runs until the process ends (rumqttd has no stop).
pub(crate) struct RawRumqttd {
    pub(crate) addr: SocketAddr,
}

impl RawRumqttd {
    pub(crate) fn start() -> anyhow::Result<RawRumqttd> {
        use std::collections::HashMap;

        use rumqttd::{Config, ConnectionSettings, RouterConfig, ServerSettings};

        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("picking a free port for rumqttd")?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let engine = herald_gateway::testing::router::RouterSettings::default();
        let server = ServerSettings {
            name: "bench".into(),
            listen: addr,
            tls: None,
            next_connection_delay_ms: 0,
            connections: ConnectionSettings {
                connection_timeout_ms: 10_000,
                max_payload_size: 128 * 1024 + 512,
                max_inflight_count: 100,
                auth: None,
                external_auth: None,
                dynamic_filters: true,
            },
        };
        let config = Config {
            id: 0,
            router: RouterConfig {
                max_connections: engine.max_connections,
                max_outgoing_packet_count: engine.max_outgoing_packet_count,
                max_segment_size: engine.max_segment_size,
                max_segment_count: engine.max_segment_count,
                custom_segment: None,
                initialized_filters: None,
                shared_subscriptions_strategy: Default::default(),
            },
            v4: Some(HashMap::from([("bench".to_owned(), server)])),
            ..Config::default()
        };
        std::thread::Builder::new()
            .name("rumqttd".into())
            .spawn(move || {
                let mut broker = rumqttd::Broker::new(config);
                if let Err(e) = broker.start() {
                    eprintln!("mqtt: rumqttd stopped: {e}");
                }
            })
            .context("starting rumqttd's thread")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                bail!("rumqttd did not listen on {addr} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(RawRumqttd { addr })
    }
}
