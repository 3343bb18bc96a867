//! Starts the registry and the config service in-process for a test (the
//! config service behind a TCP proxy the test controls, so that a client's
//! connection can be cut or the service restarted on a new port behind a
//! fixed address), and the helpers the tests share.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use herald_proto::{
    config::v1::{self as pb, config_client::ConfigClient},
    registry::v1::{self as reg, registry_client::RegistryClient},
};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

use herald_gateway::testing::partition::{Tagged, tagged};
use herald_testkit::Service;
pub(crate) use herald_testkit::eventually;

pub(crate) type Config = ConfigClient<Tagged>;
pub(crate) type Registry = RegistryClient<Tagged>;

/// A connected channel to `url`, naming no partition (the default one).
async fn connect(url: String) -> Tagged {
    let channel = Endpoint::from_shared(url).unwrap().connect().await.unwrap();
    tagged(channel, None)
}

/// The account and region the services name in ARNs (their defaults).
pub(crate) const ACCOUNT: &str = "123456789012";
pub(crate) const REGION: &str = "us-east-1";

/// How long a test waits for something that should happen promptly.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------ services

/// The registry and the config service (pointed at it), both in-process,
/// with their data in one temporary folder; the config service is reached
/// through a [`Proxy`] at a fixed address.
pub(crate) struct Herald {
    registry: Service,
    config: Option<Service>,
    config_settings: herald_config::Settings,
    proxy: Proxy,
    _dir: TempDir,
}

impl Herald {
    pub(crate) async fn start() -> Herald {
        Herald::start_with(|_| {}).await
    }

    /// Starts with the config service's test settings changed by `tweak`.
    pub(crate) async fn start_with(tweak: impl FnOnce(&mut herald_config::Settings)) -> Herald {
        let dir = tempfile::tempdir().unwrap();
        let registry_settings = herald_registry::Settings::for_test(dir.path().join("registry"));
        let registry = Service::spawn(|listener, shutdown| {
            herald_registry::run(registry_settings, listener, shutdown)
        })
        .await;
        let mut config_settings = herald_config::Settings::for_test(
            dir.path().join("config"),
            format!("http://{}", registry.addr),
        );
        tweak(&mut config_settings);
        let config = Herald::spawn_config(config_settings.clone()).await;
        let proxy = Proxy::start(config.addr).await;
        Herald {
            registry,
            config: Some(config),
            config_settings,
            proxy,
            _dir: dir,
        }
    }

    async fn spawn_config(settings: herald_config::Settings) -> Service {
        Service::spawn(|listener, shutdown| herald_config::run(settings, listener, shutdown)).await
    }

    /// Cuts every connection through the proxy and refuses new ones, until
    /// [`Herald::reconnect_config`]; the service keeps running.
    pub(crate) async fn disconnect_config(&self) {
        self.proxy.disconnect().await;
    }

    /// Lets connections through the proxy reach the config service again.
    pub(crate) fn reconnect_config(&self) {
        let addr = self.config.as_ref().expect("the config service runs").addr;
        self.proxy.set_backend(Some(addr));
    }

    /// A client of the config service through the proxy, connecting lazily
    /// (as the gateway does).
    pub(crate) fn proxied_config(&self) -> Config {
        let channel = Endpoint::from_shared(format!("http://{}", self.proxy.addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        ConfigClient::new(tagged(channel, None))
    }

    /// A client of the config service itself, for the test's own calls.
    pub(crate) async fn config(&self) -> Config {
        let addr = self.config.as_ref().expect("the config service runs").addr;
        ConfigClient::new(connect(format!("http://{addr}")).await)
    }

    /// The registry's URL.
    pub(crate) fn registry_url(&self) -> String {
        format!("http://{}", self.registry.addr)
    }

    /// The config service's URL, through the proxy.
    pub(crate) fn config_url(&self) -> String {
        format!("http://{}", self.proxy.addr)
    }

    pub(crate) async fn registry(&self) -> Registry {
        RegistryClient::new(connect(format!("http://{}", self.registry.addr)).await)
    }

    /// Stops the config service, asserting a clean shutdown; the proxy
    /// refuses connections until [`Herald::start_config`].
    pub(crate) async fn stop_config(&mut self) {
        self.proxy.set_backend(None);
        self.config
            .take()
            .expect("the config service runs")
            .stop()
            .await;
    }

    /// Starts the config service again on the same data folder (on a new
    /// port, behind the same proxy address).
    pub(crate) async fn start_config(&mut self) {
        assert!(self.config.is_none(), "the config service runs already");
        let config = Herald::spawn_config(self.config_settings.clone()).await;
        self.proxy.set_backend(Some(config.addr));
        self.config = Some(config);
    }

    /// Stops everything, asserting that each service shut down cleanly.
    pub(crate) async fn stop(mut self) {
        self.proxy.stop().await;
        if let Some(config) = self.config.take() {
            config.stop().await;
        }
        self.registry.stop().await;
    }
}

// ------------------------------------------------------------ the proxy

/// A TCP proxy on 127.0.0.1 that forwards each connection to the current
/// backend, and can refuse new connections or cut the open ones.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    backend: Arc<Mutex<Option<SocketAddr>>>,
    /// Cancelled to cut every connection opened since the last cut.
    cut: Arc<Mutex<CancellationToken>>,
    /// How many connections are open.
    open: watch::Sender<usize>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Proxy {
    async fn start(backend: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backend = Arc::new(Mutex::new(Some(backend)));
        let cut = Arc::new(Mutex::new(CancellationToken::new()));
        let open = watch::Sender::new(0);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(Proxy::serve(
            listener,
            backend.clone(),
            cut.clone(),
            open.clone(),
            shutdown.clone(),
        ));
        Proxy {
            addr,
            backend,
            cut,
            open,
            shutdown,
            task,
        }
    }

    async fn serve(
        listener: TcpListener,
        backend: Arc<Mutex<Option<SocketAddr>>>,
        cut: Arc<Mutex<CancellationToken>>,
        open: watch::Sender<usize>,
        shutdown: CancellationToken,
    ) {
        loop {
            let mut inbound = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted.unwrap().0,
            };
            // No backend: the connection is closed at once.
            let Some(backend) = *backend.lock().unwrap() else {
                continue;
            };
            let cut = cut.lock().unwrap().clone();
            open.send_modify(|n| *n += 1);
            let open = open.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(backend).await {
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = cut.cancelled() => {}
                    }
                }
                // Both sockets are closed before the count drops.
                drop(inbound);
                open.send_modify(|n| *n -= 1);
            });
        }
    }

    /// Where new connections go; `None` refuses them.
    fn set_backend(&self, backend: Option<SocketAddr>) {
        *self.backend.lock().unwrap() = backend;
    }

    /// Refuses new connections, closes the open ones and waits until they are.
    pub(crate) async fn disconnect(&self) {
        self.set_backend(None);
        {
            let mut cut = self.cut.lock().unwrap();
            cut.cancel();
            *cut = CancellationToken::new();
        }
        let mut open = self.open.subscribe();
        tokio::time::timeout(WAIT, open.wait_for(|n| *n == 0))
            .await
            .expect("the proxied connections close")
            .unwrap();
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        (&mut self.task).await.unwrap();
        self.disconnect().await;
    }
}

// ------------------------------------------------------------ waiting

// ------------------------------------------------------------ ARNs and documents

pub(crate) fn arn(kind: &str, name: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:{kind}/{name}")
}

pub(crate) fn group_arn(name: &str) -> String {
    arn("thinggroup", name)
}

/// A valid 2012-10-17 document whose text tells policies and versions apart.
pub(crate) fn publish_doc(topic: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": "iot:Publish",
            "Resource": arn("topic", topic),
        }],
    })
    .to_string()
}

/// A document's JSON, to compare documents whatever their formatting.
pub(crate) fn json_of(document: &str) -> Value {
    serde_json::from_str(document).unwrap()
}

// ------------------------------------------------------------ config calls

pub(crate) async fn create_policy(c: &mut Config, name: &str, doc: &str) {
    c.create_policy(pb::CreatePolicyRequest {
        policy_name: name.into(),
        policy_document: doc.into(),
        tags: vec![],
    })
    .await
    .unwrap();
}

/// A new policy version; returns its id.
pub(crate) async fn create_version(
    c: &mut Config,
    name: &str,
    doc: &str,
    set_as_default: bool,
) -> String {
    c.create_policy_version(pb::CreatePolicyVersionRequest {
        policy_name: name.into(),
        policy_document: doc.into(),
        set_as_default,
    })
    .await
    .unwrap()
    .into_inner()
    .policy_version_id
}

pub(crate) async fn set_default_version(c: &mut Config, name: &str, version: &str) {
    c.set_default_policy_version(pb::SetDefaultPolicyVersionRequest {
        policy_name: name.into(),
        policy_version_id: version.into(),
    })
    .await
    .unwrap();
}

pub(crate) async fn delete_version(c: &mut Config, name: &str, version: &str) {
    c.delete_policy_version(pb::DeletePolicyVersionRequest {
        policy_name: name.into(),
        policy_version_id: version.into(),
    })
    .await
    .unwrap();
}

pub(crate) async fn delete_policy(c: &mut Config, name: &str) {
    c.delete_policy(pb::DeletePolicyRequest {
        policy_name: name.into(),
    })
    .await
    .unwrap();
}

/// A new certificate from the Herald CA; returns (id, ARN, PEM).
pub(crate) async fn create_cert(c: &mut Config, active: bool) -> (String, String, String) {
    let created = c
        .create_keys_and_certificate(pb::CreateKeysAndCertificateRequest {
            set_as_active: active,
        })
        .await
        .unwrap()
        .into_inner();
    (
        created.certificate_id,
        created.certificate_arn,
        created.certificate_pem,
    )
}

pub(crate) async fn set_status(c: &mut Config, id: &str, status: pb::CertificateStatus) {
    c.update_certificate(pb::UpdateCertificateRequest {
        certificate_id: id.into(),
        new_status: status as i32,
    })
    .await
    .unwrap();
}

pub(crate) async fn delete_cert(c: &mut Config, id: &str, force_delete: bool) {
    c.delete_certificate(pb::DeleteCertificateRequest {
        certificate_id: id.into(),
        force_delete,
    })
    .await
    .unwrap();
}

pub(crate) async fn attach(c: &mut Config, policy: &str, target: &str) {
    c.attach_policy(pb::AttachPolicyRequest {
        policy_name: policy.into(),
        target: target.into(),
    })
    .await
    .unwrap();
}

pub(crate) async fn detach(c: &mut Config, policy: &str, target: &str) {
    c.detach_policy(pb::DetachPolicyRequest {
        policy_name: policy.into(),
        target: target.into(),
    })
    .await
    .unwrap();
}

pub(crate) async fn set_events(c: &mut Config, enabled: &[(&str, bool)]) {
    c.update_event_configurations(pb::UpdateEventConfigurationsRequest {
        enabled: enabled.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    })
    .await
    .unwrap();
}

/// The revision of a fresh `WatchConfig` snapshot: the service's current one.
pub(crate) async fn current_revision(c: &mut Config) -> u64 {
    let mut stream = c
        .watch_config(pb::WatchConfigRequest { after_revision: 0 })
        .await
        .unwrap()
        .into_inner();
    let update = tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("timed out waiting for a snapshot")
        .unwrap()
        .expect("the watch ended");
    assert!(matches!(
        update.change,
        Some(pb::config_update::Change::Snapshot(_))
    ));
    update.revision
}

// ------------------------------------------------------------ registry calls

pub(crate) async fn create_group(r: &mut Registry, name: &str) {
    r.create_thing_group(reg::CreateThingGroupRequest {
        thing_group_name: name.into(),
        parent_group_name: None,
        thing_group_properties: None,
        tags: vec![],
    })
    .await
    .unwrap();
}

/// thingName → eventId of every thing creation in the registry's change
/// log (a thing created twice fails the test).
pub(crate) async fn created_event_ids(
    registry: &mut Registry,
) -> std::collections::HashMap<String, String> {
    logged_event_ids(registry, |event| match event {
        reg::ChangeEvent {
            operation,
            event: Some(reg::change_event::Event::Thing(thing)),
            ..
        } if *operation == reg::Operation::Created as i32 => Some(thing.thing_name.clone()),
        _ => None,
    })
    .await
}

/// The event id of each thing's SUCCEEDED job execution event in the
/// registry's change log, by thing name.
pub(crate) async fn succeeded_execution_event_ids(
    registry: &mut Registry,
) -> std::collections::HashMap<String, String> {
    logged_event_ids(registry, |event| match &event.event {
        Some(reg::change_event::Event::JobExecution(e))
            if e.kind == reg::JobExecutionEventKind::Succeeded as i32 =>
        {
            e.execution.as_ref().map(|x| x.thing_name.clone())
        }
        _ => None,
    })
    .await
}

/// The event id of every change event of the log that `key` names, by
/// that name (each name once).
async fn logged_event_ids(
    registry: &mut Registry,
    key: impl Fn(&reg::ChangeEvent) -> Option<String>,
) -> std::collections::HashMap<String, String> {
    let last = registry
        .get_change_log_info(reg::GetChangeLogInfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .last_sequence;
    let mut stream = registry
        .watch_changes(reg::WatchChangesRequest { after_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut created = std::collections::HashMap::new();
    let mut sequence = 0;
    while sequence < last {
        let batch = stream
            .message()
            .await
            .unwrap()
            .expect("the stream stays open");
        for event in batch.events {
            sequence = event.sequence;
            if let Some(name) = key(&event) {
                let previous = created.insert(name.clone(), event.event_id);
                assert!(previous.is_none(), "{name} logged twice");
            }
        }
    }
    created
}
