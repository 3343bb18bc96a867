//! At least once across crashes, with the three real binaries: a QoS 1
//! subscriber with a persistent session watches thing creations while
//! clients make 1,000 of them through the registry; the gateway (or, in
//! the other test, the registry) is killed with SIGKILL after 300 and
//! started again on the same data. In the end, the set of distinct
//! eventIds the subscriber received equals the set of events of the
//! acknowledged mutations, as the registry's change log holds them.
//!
//! A mutation the registry did not acknowledge (it was killed meanwhile) is
//! retried with the same thing name: CreateThing of an identical existing
//! thing succeeds without a new event, so in the end every mutation is
//! acknowledged exactly once in the log.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_proto::config::v1::{
    CreatePolicyRequest, UpdateEventConfigurationsRequest, config_client::ConfigClient,
};
use herald_proto::registry::v1::{CreateThingRequest, registry_client::RegistryClient};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

use herald_gateway::{DEV_MQTT_PASSWORD, DEV_MQTT_POLICY, DEV_MQTT_USERNAME};

use crate::support::created_event_ids;

const MUTATIONS: usize = 1000;
const KILL_AFTER: usize = 300;
const WRITERS: usize = 4;
/// How long a service may take to start, and the whole stream to arrive.
const DEADLINE: Duration = Duration::from_secs(60);
const CLIENT_ID: &str = "crash-watcher";

// ---------------------------------------------------------------- binaries

/// A service binary of this workspace, built beside the gateway's (the
/// workspace test run builds every binary; a lone `cargo test -p
/// herald-gateway` builds the other two here).
fn binary(name: &str) -> PathBuf {
    let gateway = PathBuf::from(env!("CARGO_BIN_EXE_gateway"));
    if name == "gateway" {
        return gateway;
    }
    let path = gateway.with_file_name(name);
    if !path.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--bin", name, "-p", &format!("herald-{name}")])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building {name} failed");
    }
    path
}

/// A running binary and the addresses it logged (`<kind> listening addr=`).
struct Proc {
    name: &'static str,
    child: Child,
    listening: watch::Receiver<HashMap<String, SocketAddr>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    async fn start(name: &'static str, env: &[(&str, String)]) -> Proc {
        let mut command = Command::new(binary(name));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HERALD_") {
                command.env_remove(key);
            }
        }
        let prefix = format!("HERALD_{}__", name.to_uppercase());
        command
            .env(format!("{prefix}LOG__FORMAT"), "plain")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        for (key, value) in env {
            command.env(format!("{prefix}{key}"), value);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let (tx, listening) = watch::channel(HashMap::new());
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = child.stderr.take().unwrap();
        let task_log = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(lines).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some((kind, addr)) = listening_line(&line) {
                    tx.send_modify(|map| {
                        map.insert(kind, addr);
                    });
                }
                task_log.lock().unwrap().push(line);
            }
        });
        let proc = Proc {
            name,
            child,
            listening,
            log,
        };
        let ready = if name == "gateway" { "http" } else { "grpc" };
        proc.addr(ready).await;
        proc
    }

    /// The address of the `<kind> listening` line, waiting for it.
    async fn addr(&self, kind: &str) -> SocketAddr {
        let mut listening = self.listening.clone();
        let found = timeout(DEADLINE, listening.wait_for(|map| map.contains_key(kind))).await;
        match found {
            Ok(Ok(map)) => map[kind],
            _ => panic!(
                "{} never logged `{kind} listening`:\n{}",
                self.name,
                self.log.lock().unwrap().join("\n")
            ),
        }
    }

    async fn url(&self) -> String {
        format!("http://{}", self.addr("grpc").await)
    }

    async fn kill_9(mut self) {
        self.child.start_kill().expect("send SIGKILL");
        let status = timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("the process dies")
            .unwrap();
        assert_eq!(status.signal(), Some(9), "{} died of SIGKILL", self.name);
    }

    /// SIGTERM, expecting a clean exit.
    async fn stop(mut self) {
        let pid = self.child.id().expect("still running");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the process stops in time")
            .unwrap();
        assert!(
            status.success(),
            "{} exited with {status:?}:\n{}",
            self.name,
            self.log.lock().unwrap().join("\n")
        );
    }
}

/// `("mqtt tls", 127.0.0.1:1234)` from `... mqtt tls listening addr=127.0.0.1:1234`.
fn listening_line(line: &str) -> Option<(String, SocketAddr)> {
    let at = line.find(" listening")?;
    let before = &line[..at];
    let kind = ["mqtt tls", "mqtt", "http", "grpc"]
        .into_iter()
        .find(|k| before.ends_with(k))?;
    let addr = line[at..].split("addr=").nth(1)?;
    let addr = addr.split_whitespace().next()?.trim_matches('"');
    Some((kind.to_owned(), addr.parse().ok()?))
}

#[test]
fn listening_lines_parse() {
    let line = "2026-11-26T10:00:00Z  INFO gateway: mqtt tls listening addr=127.0.0.1:8883";
    assert_eq!(
        listening_line(line),
        Some(("mqtt tls".into(), "127.0.0.1:8883".parse().unwrap()))
    );
    let line = "2026-11-26T10:00:00Z  INFO grpc listening addr=127.0.0.1:1";
    assert_eq!(listening_line(line).unwrap().0, "grpc");
    assert_eq!(listening_line("nothing here"), None);
}

// ---------------------------------------------------------------- Herald

struct Services {
    dir: PathBuf,
    registry: Option<Proc>,
    registry_addr: SocketAddr,
    config: Proc,
    gateway: Option<Proc>,
}

impl Services {
    async fn start(dir: &Path) -> Services {
        let registry = Services::start_registry(dir, "127.0.0.1:0").await;
        let registry_addr = registry.addr("grpc").await;
        let config = Proc::start(
            "config",
            &[
                ("GRPC__LISTEN_ADDR", "127.0.0.1:0".into()),
                ("DATA_DIR", dir.join("config").display().to_string()),
                ("REGISTRY_URL", format!("http://{registry_addr}")),
            ],
        )
        .await;
        let mut services = Services {
            dir: dir.to_path_buf(),
            registry: Some(registry),
            registry_addr,
            config,
            gateway: None,
        };
        services.start_gateway().await;
        services
    }

    async fn start_registry(dir: &Path, listen: &str) -> Proc {
        Proc::start(
            "registry",
            &[
                ("GRPC__LISTEN_ADDR", listen.into()),
                ("DATA_DIR", dir.join("registry").display().to_string()),
            ],
        )
        .await
    }

    async fn start_gateway(&mut self) {
        let gateway = Proc::start(
            "gateway",
            &[
                ("HTTP__LISTEN_ADDR", "127.0.0.1:0".into()),
                ("MQTT__LISTEN_ADDR", "127.0.0.1:0".into()),
                ("MQTT__TLS_LISTEN_ADDR", "127.0.0.1:0".into()),
                ("DATA_DIR", self.dir.join("gateway").display().to_string()),
                ("REGISTRY_URL", format!("http://{}", self.registry_addr)),
                ("CONFIG_URL", self.config.url().await),
            ],
        )
        .await;
        self.gateway = Some(gateway);
    }

    async fn mqtt_addr(&self) -> SocketAddr {
        self.gateway.as_ref().unwrap().addr("mqtt").await
    }

    async fn registry_client(&self) -> RegistryClient<tonic::transport::Channel> {
        RegistryClient::connect(format!("http://{}", self.registry_addr))
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.stop().await;
        }
        self.config.stop().await;
        if let Some(registry) = self.registry.take() {
            registry.stop().await;
        }
    }
}

/// The development user may do anything; thing events are on.
async fn configure(services: &Services) {
    let mut config = ConfigClient::connect(services.config.url().await)
        .await
        .unwrap();
    config
        .create_policy(CreatePolicyRequest {
            policy_name: DEV_MQTT_POLICY.into(),
            policy_document: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}"#.into(),
            tags: vec![],
        })
        .await
        .unwrap();
    config
        .update_event_configurations(UpdateEventConfigurationsRequest {
            enabled: [("THING".to_owned(), true)].into(),
        })
        .await
        .unwrap();
}

// ---------------------------------------------------------------- the subscriber

/// What the subscriber saw.
#[derive(Default)]
struct Seen {
    /// thingName → the eventIds received for its creation.
    created: HashMap<String, HashSet<String>>,
    connections: usize,
    /// Reconnections that found the session still there.
    resumed: usize,
}

/// Runs a persistent QoS 1 subscriber of thing creations, connecting to
/// the address in `addr` (and again, after each failure, to the address
/// it holds then), until `stop`.
fn subscriber(
    mut addr: watch::Receiver<SocketAddr>,
    seen: Arc<Mutex<Seen>>,
    subscribed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            let target = *addr.borrow_and_update();
            let mut options = MqttOptions::new(CLIENT_ID, target.ip().to_string(), target.port());
            options.set_credentials(DEV_MQTT_USERNAME, DEV_MQTT_PASSWORD);
            options.set_keep_alive(Duration::from_secs(30));
            options.set_clean_session(false);
            let (client, mut eventloop) = AsyncClient::new(options, 100);
            loop {
                let event = tokio::select! {
                    event = eventloop.poll() => event,
                    // The gateway moved: reconnect there.
                    _ = addr.changed() => break,
                };
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        {
                            let mut seen = seen.lock().unwrap();
                            seen.connections += 1;
                            if ack.session_present {
                                seen.resumed += 1;
                            }
                        }
                        if !subscribed.load(Ordering::SeqCst) {
                            client
                                .subscribe("$aws/events/thing/+/created", QoS::AtLeastOnce)
                                .await
                                .unwrap();
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        subscribed.store(true, Ordering::SeqCst);
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let value: Value = serde_json::from_slice(&publish.payload).unwrap();
                        let name = value["thingName"].as_str().unwrap().to_owned();
                        let id = value["eventId"].as_str().unwrap().to_owned();
                        seen.lock()
                            .unwrap()
                            .created
                            .entry(name)
                            .or_default()
                            .insert(id);
                    }
                    Ok(_) => {}
                    // Refused while the gateway starts, or the gateway died:
                    // try again (the address may change meanwhile).
                    Err(_) => {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        tokio::select! {
                            _ = addr.changed() => {}
                            () = tokio::time::sleep(Duration::from_millis(50)) => {}
                        }
                        break;
                    }
                }
            }
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    Gateway,
    Registry,
}

async fn kill_during_mutations(victim: Victim) {
    let dir = tempfile::tempdir().unwrap();
    let mut services = Services::start(dir.path()).await;
    configure(&services).await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let (addr_tx, addr_rx) = watch::channel(services.mqtt_addr().await);
    let subscribed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = subscriber(addr_rx, seen.clone(), subscribed.clone(), stop.clone());

    // The subscription is live once a probe's creation arrives.
    let mut registry = services.registry_client().await;
    let deadline = Instant::now() + DEADLINE;
    for probe in 0.. {
        assert!(Instant::now() < deadline, "no probe event arrived");
        if subscribed.load(Ordering::SeqCst) {
            let name = format!("probe-{probe}");
            registry
                .create_thing(CreateThingRequest {
                    thing_name: name.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
            let arrived = timeout(Duration::from_secs(2), async {
                while !seen.lock().unwrap().created.contains_key(&name) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
            if arrived.is_ok() {
                break;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // The mutations, each retried until acknowledged.
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let url = format!("http://{}", services.registry_addr);
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            let channel = tonic::transport::Endpoint::from_shared(url)
                .unwrap()
                .connect_lazy();
            let mut registry = RegistryClient::new(channel);
            let mut retries = 0;
            for i in (w..MUTATIONS).step_by(WRITERS) {
                let deadline = Instant::now() + DEADLINE;
                while let Err(status) = registry
                    .create_thing(CreateThingRequest {
                        thing_name: format!("m-{i}"),
                        ..Default::default()
                    })
                    .await
                {
                    assert!(
                        Instant::now() < deadline,
                        "m-{i} never acknowledged: {status}"
                    );
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                acknowledged.fetch_add(1, Ordering::SeqCst);
            }
            retries
        }));
    }

    // The crash, after KILL_AFTER acknowledged mutations.
    while acknowledged.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(Instant::now() < deadline, "the mutations stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    match victim {
        Victim::Gateway => {
            services.gateway.take().unwrap().kill_9().await;
            services.start_gateway().await;
            addr_tx.send_replace(services.mqtt_addr().await);
        }
        Victim::Registry => {
            services.registry.take().unwrap().kill_9().await;
            let listen = services.registry_addr.to_string();
            services.registry = Some(Services::start_registry(dir.path(), &listen).await);
        }
    }
    let killed_at = acknowledged.load(Ordering::SeqCst);
    let mut retries = 0;
    for writer in writers {
        retries += writer.await.unwrap();
    }
    assert!(
        killed_at < MUTATIONS,
        "the kill came before the last mutation ({killed_at})"
    );

    // Every acknowledged mutation's event arrives; nothing else does.
    let mut registry = services.registry_client().await;
    let log = created_event_ids(&mut registry).await;
    let expected: HashSet<String> = (0..MUTATIONS)
        .map(|i| {
            log.get(&format!("m-{i}"))
                .unwrap_or_else(|| panic!("m-{i} was acknowledged but its event is not in the log"))
                .clone()
        })
        .collect();
    let received = || -> HashSet<String> {
        let seen = seen.lock().unwrap();
        seen.created
            .iter()
            .filter(|(name, _)| name.starts_with("m-"))
            .flat_map(|(_, ids)| ids.iter().cloned())
            .collect()
    };
    let deadline = Instant::now() + DEADLINE;
    while received().len() < expected.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = received();
    let missing: Vec<&String> = expected.difference(&received).collect();
    let unexpected: Vec<&String> = received.difference(&expected).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "{victim:?} killed after {killed_at} mutations ({retries} retries): {} missing, {} unexpected, e.g. {:?} {:?}",
        missing.len(),
        unexpected.len(),
        missing.first(),
        unexpected.first()
    );
    {
        let seen = seen.lock().unwrap();
        match victim {
            Victim::Gateway => {
                assert!(seen.connections >= 2, "the subscriber reconnected");
                assert!(seen.resumed >= 1, "its session was resumed after the crash");
            }
            Victim::Registry => assert!(retries > 0, "the crash failed some mutations"),
        }
    }

    stop.store(true, Ordering::SeqCst);
    watcher.abort();
    services.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_gateway_during_1000_mutations_loses_no_event() {
    kill_during_mutations(Victim::Gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_registry_during_1000_mutations_loses_no_event() {
    kill_during_mutations(Victim::Registry).await;
}
