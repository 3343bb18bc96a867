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
//!
//! The same for a job rollout: 1,000 things of a group each run their
//! execution of a snapshot job to SUCCEEDED through the registry's `Jobs`
//! service while the subscriber watches `$aws/events/jobExecution/+/succeeded`;
//! an update whose answer the crash lost is retried, and finds its
//! execution already final (`InvalidStateTransitionException`), so each execution
//! succeeds once.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_proto::config::v1::{
    CreatePolicyRequest, UpdateEventConfigurationsRequest, config_client::ConfigClient,
};
use herald_proto::registry::v1::{
    AddThingToThingGroupRequest, CreateJobRequest, CreateThingGroupRequest, CreateThingRequest,
    JobExecutionStatus, UpdateJobExecutionRequest, jobs_client::JobsClient,
    registry_client::RegistryClient,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

use herald_gateway::{DEV_MQTT_PASSWORD, DEV_MQTT_POLICY, DEV_MQTT_USERNAME};

use herald_testkit::process::{Process, workspace_binary};

use crate::support::{created_event_ids, succeeded_execution_event_ids};

const MUTATIONS: usize = 1000;
const KILL_AFTER: usize = 300;
const WRITERS: usize = 4;
/// How long a service may take to start, and the whole stream to arrive.
const DEADLINE: Duration = Duration::from_secs(60);
const CLIENT_ID: &str = "crash-watcher";

// ---------------------------------------------------------------- binaries

/// Starts service binary `name` of this workspace with `settings`.
async fn start(name: &str, settings: &[(&str, String)]) -> Process {
    let gateway = env!("CARGO_BIN_EXE_gateway");
    let binary = workspace_binary(gateway, name, &format!("herald-{name}"));
    let ready = if name == "gateway" { "http" } else { "grpc" };
    Process::start(&binary, name, settings, ready).await
}

async fn url(process: &Process) -> String {
    format!("http://{}", process.addr("grpc").await)
}

// ---------------------------------------------------------------- Herald

struct Services {
    dir: PathBuf,
    registry: Option<Process>,
    registry_addr: SocketAddr,
    config: Process,
    gateway: Option<Process>,
}

impl Services {
    async fn start(dir: &Path) -> Services {
        let registry = Services::start_registry(dir, "127.0.0.1:0").await;
        let registry_addr = registry.addr("grpc").await;
        let config = start(
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

    async fn start_registry(dir: &Path, listen: &str) -> Process {
        start(
            "registry",
            &[
                ("GRPC__LISTEN_ADDR", listen.into()),
                ("DATA_DIR", dir.join("registry").display().to_string()),
            ],
        )
        .await
    }

    async fn start_gateway(&mut self) {
        let gateway = start(
            "gateway",
            &[
                ("HTTP__LISTEN_ADDR", "127.0.0.1:0".into()),
                ("MQTT__LISTEN_ADDR", "127.0.0.1:0".into()),
                ("MQTT__TLS_LISTEN_ADDR", "127.0.0.1:0".into()),
                ("DATA_DIR", self.dir.join("gateway").display().to_string()),
                ("REGISTRY_URL", format!("http://{}", self.registry_addr)),
                ("CONFIG_URL", url(&self.config).await),
            ],
        )
        .await;
        self.gateway = Some(gateway);
    }

    async fn mqtt_addr(&self) -> SocketAddr {
        self.gateway.as_ref().unwrap().addr("mqtt").await
    }

    async fn registry_client(&self) -> RegistryClient<herald_gateway::testing::partition::Tagged> {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", self.registry_addr))
                .unwrap()
                .connect()
                .await
                .unwrap();
        RegistryClient::new(herald_gateway::testing::partition::tagged(channel, None))
    }

    async fn stop(mut self) {
        let mut stopped = Vec::new();
        if let Some(gateway) = self.gateway.take() {
            stopped.push(gateway.terminate().await);
        }
        stopped.push(self.config.terminate().await);
        if let Some(registry) = self.registry.take() {
            stopped.push(registry.terminate().await);
        }
        for (status, log) in stopped {
            assert!(status.success(), "a service exited with {status:?}:\n{log}");
        }
    }
}

/// The development user may do anything; thing and job execution events
/// are on.
async fn configure(services: &Services) {
    let mut config = ConfigClient::connect(url(&services.config).await)
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
            enabled: [
                ("THING".to_owned(), true),
                ("JOB_EXECUTION".to_owned(), true),
            ]
            .into(),
        })
        .await
        .unwrap();
}

// ---------------------------------------------------------------- the subscriber

/// What the subscriber watches: a topic filter, and the payload field
/// that names what each message is about.
#[derive(Clone, Copy)]
struct Watch {
    filter: &'static str,
    /// Gives the name (`thingName`, or the thing of a `thingArn`).
    name: fn(&Value) -> String,
}

const THINGS_CREATED: Watch = Watch {
    filter: "$aws/events/thing/+/created",
    name: |value| value["thingName"].as_str().unwrap().to_owned(),
};

const EXECUTIONS_SUCCEEDED: Watch = Watch {
    filter: "$aws/events/jobExecution/+/succeeded",
    name: |value| {
        let arn = value["thingArn"].as_str().unwrap();
        arn.rsplit_once("thing/").unwrap().1.to_owned()
    },
};

/// What the subscriber saw.
#[derive(Default)]
struct Seen {
    /// name → the eventIds received for it.
    created: HashMap<String, HashSet<String>>,
    connections: usize,
    /// Reconnections that found the session still there.
    resumed: usize,
}

/// Runs a persistent QoS 1 subscriber of thing creations, connecting to
/// the address in `addr` (and again, after each failure, to the address
/// it holds then), until `stop`.
fn subscriber(
    what: Watch,
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
                                .subscribe(what.filter, QoS::AtLeastOnce)
                                .await
                                .unwrap();
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        subscribed.store(true, Ordering::SeqCst);
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let value: Value = serde_json::from_slice(&publish.payload).unwrap();
                        let name = (what.name)(&value);
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
    let watcher = subscriber(
        THINGS_CREATED,
        addr_rx,
        seen.clone(),
        subscribed.clone(),
        stop.clone(),
    );

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
            let mut registry =
                RegistryClient::new(herald_gateway::testing::partition::tagged(channel, None));
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
    let killed_at = crash_after(&acknowledged, victim, &mut services, dir.path(), &addr_tx).await;
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
    let what = format!("{victim:?} killed after {killed_at} mutations ({retries} retries)");
    assert_received_exactly(&seen, &log, "m-", what).await;
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

/// The crash once `acknowledged` reaches [`KILL_AFTER`]: SIGKILL of
/// `victim`, started again on the same data (and address, for the
/// registry); the subscriber follows a new gateway's address.
async fn crash_after(
    acknowledged: &AtomicUsize,
    victim: Victim,
    services: &mut Services,
    dir: &Path,
    addr_tx: &watch::Sender<SocketAddr>,
) -> usize {
    let deadline = Instant::now() + DEADLINE;
    while acknowledged.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(Instant::now() < deadline, "the writes stalled");
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
            services.registry = Some(Services::start_registry(dir, &listen).await);
        }
    }
    acknowledged.load(Ordering::SeqCst)
}

/// Waits until the subscriber has every event of `log` for the names
/// `<prefix>0` .. `<prefix>999`, and asserts it received exactly those.
async fn assert_received_exactly(
    seen: &Mutex<Seen>,
    log: &HashMap<String, String>,
    prefix: &str,
    what: String,
) {
    let expected: HashSet<String> = (0..MUTATIONS)
        .map(|i| {
            log.get(&format!("{prefix}{i}"))
                .unwrap_or_else(|| {
                    panic!("{prefix}{i} was acknowledged but its event is not in the log")
                })
                .clone()
        })
        .collect();
    let received = || -> HashSet<String> {
        let seen = seen.lock().unwrap();
        seen.created
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
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
        "{what}: {} missing, {} unexpected, e.g. {:?} {:?}",
        missing.len(),
        unexpected.len(),
        missing.first(),
        unexpected.first()
    );
}

/// SIGKILL of `victim` during a 1,000-thing job rollout: every execution's
/// SUCCEEDED event reaches the persistent QoS 1 subscriber.
async fn kill_during_rollout(victim: Victim) {
    let dir = tempfile::tempdir().unwrap();
    let mut services = Services::start(dir.path()).await;
    configure(&services).await;
    let mut registry = services.registry_client().await;
    registry
        .create_thing_group(CreateThingGroupRequest {
            thing_group_name: "fleet".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..MUTATIONS {
        let thing_name = format!("d-{i}");
        registry
            .create_thing(CreateThingRequest {
                thing_name: thing_name.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        registry
            .add_thing_to_thing_group(AddThingToThingGroupRequest {
                thing_group_name: Some("fleet".into()),
                thing_name: Some(thing_name),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    let seen = Arc::new(Mutex::new(Seen::default()));
    let (addr_tx, addr_rx) = watch::channel(services.mqtt_addr().await);
    let subscribed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = subscriber(
        EXECUTIONS_SUCCEEDED,
        addr_rx,
        seen.clone(),
        subscribed.clone(),
        stop.clone(),
    );
    let jobs_url = format!("http://{}", services.registry_addr);
    let mut jobs = JobsClient::connect(jobs_url.clone()).await.unwrap();
    // The subscription is live once a probe job's execution arrives.
    let deadline = Instant::now() + DEADLINE;
    registry
        .create_thing(CreateThingRequest {
            thing_name: "probe".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    for probe in 0.. {
        assert!(Instant::now() < deadline, "no probe event arrived");
        if !subscribed.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let job_id = format!("probe-{probe}");
        jobs.create_job(CreateJobRequest {
            job_id: job_id.clone(),
            targets: vec!["arn:aws:iot:us-east-1:123456789012:thing/probe".into()],
            document: Some("{}".into()),
            ..Default::default()
        })
        .await
        .unwrap();
        jobs.update_job_execution(UpdateJobExecutionRequest {
            job_id,
            thing_name: "probe".into(),
            status: JobExecutionStatus::Succeeded as i32,
            ..Default::default()
        })
        .await
        .unwrap();
        let arrived = timeout(Duration::from_secs(2), async {
            while !seen.lock().unwrap().created.contains_key("probe") {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        if arrived.is_ok() {
            break;
        }
    }
    jobs.create_job(CreateJobRequest {
        job_id: "rollout".into(),
        targets: vec!["arn:aws:iot:us-east-1:123456789012:thinggroup/fleet".into()],
        document: Some(r#"{"op":"update"}"#.into()),
        ..Default::default()
    })
    .await
    .unwrap();

    // Each device runs its execution to SUCCEEDED, retried until answered.
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let url = jobs_url.clone();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            let channel = tonic::transport::Endpoint::from_shared(url)
                .unwrap()
                .connect_lazy();
            let mut jobs = JobsClient::new(channel);
            let mut retries = 0;
            for i in (w..MUTATIONS).step_by(WRITERS) {
                let deadline = Instant::now() + DEADLINE;
                loop {
                    let done = jobs
                        .update_job_execution(UpdateJobExecutionRequest {
                            job_id: "rollout".into(),
                            thing_name: format!("d-{i}"),
                            status: JobExecutionStatus::Succeeded as i32,
                            ..Default::default()
                        })
                        .await;
                    match done {
                        Ok(_) => break,
                        // Committed before the crash; its answer was lost.
                        Err(status)
                            if herald_proto::error::AwsError::from_status(&status).error_type
                                == herald_proto::error::ErrorType::InvalidStateTransition =>
                        {
                            break;
                        }
                        Err(status) => {
                            assert!(
                                Instant::now() < deadline,
                                "d-{i} never acknowledged: {status}"
                            );
                            retries += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                acknowledged.fetch_add(1, Ordering::SeqCst);
            }
            retries
        }));
    }
    let killed_at = crash_after(&acknowledged, victim, &mut services, dir.path(), &addr_tx).await;
    let mut retries = 0;
    for writer in writers {
        retries += writer.await.unwrap();
    }
    assert!(
        killed_at < MUTATIONS,
        "the kill came before the last update ({killed_at})"
    );

    let mut registry = services.registry_client().await;
    let log = succeeded_execution_event_ids(&mut registry).await;
    let what = format!("{victim:?} killed after {killed_at} updates ({retries} retries)");
    assert_received_exactly(&seen, &log, "d-", what).await;
    if victim == Victim::Gateway {
        let seen = seen.lock().unwrap();
        assert!(
            seen.resumed >= 1,
            "the subscriber's session was resumed after the crash"
        );
    }
    stop.store(true, Ordering::SeqCst);
    watcher.abort();
    services.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_gateway_during_a_1000_thing_job_rollout_loses_no_event() {
    kill_during_rollout(Victim::Gateway).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_registry_during_a_1000_thing_job_rollout_loses_no_event() {
    kill_during_rollout(Victim::Registry).await;
}
