//! The `jobs` bench: a snapshot job on a group of [`THINGS`] things, of
//! which [`DEVICES`] are connected over MQTT (plain listener, the dev user),
//! each subscribed to its `notify-next` and to the answers of its updates.
//!
//! 1. The things and their group memberships are made through the
//!    registry's gRPC API by [`WRITERS`] clients: the registry's own durable
//!    mutation rate in this run, the baseline.
//! 2. CreateJob: the time from its answer until every connected device has
//!    its `notify-next` naming the job (every execution is queued by then:
//!    CreateJob queues them all before it answers).
//! 3. Every connected device publishes `.../jobs/rollout/update` with
//!    SUCCEEDED: updates per second, end to end, until every device has its
//!    `/accepted` and a watcher of `$aws/events/jobExecution/rollout/succeeded`
//!    has every execution's event.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald_proto::config::v1::{UpdateEventConfigurationsRequest, config_client::ConfigClient};
use herald_proto::registry::v1::{
    AddThingToThingGroupRequest, CreateJobRequest, CreateThingGroupRequest, CreateThingRequest,
    JobExecutionStatus, UpdateJobExecutionRequest, jobs_client::JobsClient,
    registry_client::RegistryClient,
};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::{
    Options,
    mqtt::server::InProcessHerald,
    stats::{per_sec, round},
};

/// Things in the job's group.
const THINGS: usize = 10_000;
/// Of which connected over MQTT.
const DEVICES: usize = 1_000;
/// Concurrent registry clients making the things.
const WRITERS: usize = 16;
/// Concurrent CONNECTs.
const CONNECT_CONCURRENCY: usize = 100;
/// Every wait of the bench.
const DEADLINE: Duration = Duration::from_secs(120);
const GROUP_ARN: &str = "arn:aws:iot:us-east-1:123456789012:thinggroup/fleet";
/// Targets of the issue that asked for this bench.
const TARGET_NOTIFY_SECS: f64 = 2.0;
const TARGET_UPDATES_PER_SEC: f64 = 2_000.0;

/// What the devices and the watcher counted.
#[derive(Default)]
struct Counts {
    subscribed: AtomicU64,
    notified: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    events: AtomicU64,
    errors: AtomicU64,
}

fn thing(i: usize) -> String {
    format!("d-{i:05}")
}

pub(crate) fn run(_options: &Options) -> anyhow::Result<Value> {
    let herald = InProcessHerald::start("jobs-data-")?;
    eprintln!("jobs: herald in-process, plain MQTT on {}", herald.mqtt);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-client")
        .enable_all()
        .build()
        .context("building the clients' runtime")?;
    let measured = runtime.block_on(measure(&herald));
    runtime.shutdown_timeout(Duration::from_secs(5));
    let stopped = herald.stop();
    let report = measured?;
    stopped.context("herald did not shut down cleanly")?;
    Ok(report)
}

async fn measure(herald: &InProcessHerald) -> anyhow::Result<Value> {
    let registry_url = format!("http://{}", herald.registry);
    let mut registry = RegistryClient::connect(registry_url.clone()).await?;
    let mut jobs = JobsClient::connect(registry_url.clone()).await?;
    let mut config = ConfigClient::connect(format!("http://{}", herald.config)).await?;
    config
        .update_event_configurations(UpdateEventConfigurationsRequest {
            enabled: [("JOB_EXECUTION".to_owned(), true)].into(),
        })
        .await?;

    // 1. The things, in their group.
    registry
        .create_thing_group(CreateThingGroupRequest {
            thing_group_name: "fleet".into(),
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut writers = JoinSet::new();
    for w in 0..WRITERS {
        let mut registry = registry.clone();
        writers.spawn(async move {
            for i in (w..THINGS).step_by(WRITERS) {
                registry
                    .create_thing(CreateThingRequest {
                        thing_name: thing(i),
                        ..Default::default()
                    })
                    .await?;
                registry
                    .add_thing_to_thing_group(AddThingToThingGroupRequest {
                        thing_group_name: Some("fleet".into()),
                        thing_name: Some(thing(i)),
                        ..Default::default()
                    })
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    let setup = started.elapsed();
    let mutations_per_sec = per_sec(2 * THINGS as u64, setup);
    eprintln!(
        "jobs: {THINGS} things made and grouped in {:.1} s: {mutations_per_sec} durable mutations/s ({WRITERS} clients)",
        setup.as_secs_f64()
    );

    // The devices and the watcher.
    let counts = Arc::new(Counts::default());
    let mut clients = Vec::with_capacity(DEVICES);
    let mut loops = JoinSet::new();
    for i in 0..DEVICES {
        let (client, eventloop) = AsyncClient::new(options(herald, &format!("dev-{i}")), 16);
        let filters = vec![
            format!("$aws/things/{}/jobs/notify-next", thing(i)),
            format!("$aws/things/{}/jobs/rollout/update/+", thing(i)),
        ];
        loops.spawn(device(client.clone(), eventloop, filters, counts.clone()));
        clients.push(client);
        if i % CONNECT_CONCURRENCY == CONNECT_CONCURRENCY - 1 {
            wait_for(&counts.subscribed, (i + 1) as u64, "devices subscribed").await?;
        }
    }
    let (watcher, watcher_loop) = AsyncClient::new(options(herald, "jobs-watcher"), 16);
    loops.spawn(device(
        watcher.clone(),
        watcher_loop,
        vec!["$aws/events/jobExecution/+/succeeded".into()],
        counts.clone(),
    ));
    wait_for(&counts.subscribed, DEVICES as u64 + 1, "every subscription").await?;
    // The event configuration reaches the gateway asynchronously: a probe
    // job's event must arrive before the measured one starts.
    registry
        .create_thing(CreateThingRequest {
            thing_name: "probe".into(),
            ..Default::default()
        })
        .await?;
    probe(&mut jobs, &counts, "probe-before").await?;
    counts.events.store(0, Ordering::SeqCst);

    // 2. CreateJob → every connected device's notify-next.
    let created = Instant::now();
    jobs.create_job(CreateJobRequest {
        job_id: "rollout".into(),
        targets: vec![GROUP_ARN.into()],
        document: Some(r#"{"operation":"update"}"#.into()),
        ..Default::default()
    })
    .await?;
    let acknowledged = created.elapsed();
    wait_for(&counts.notified, DEVICES as u64, "every notify-next").await?;
    let notified = created.elapsed();
    eprintln!(
        "jobs: CreateJob for {THINGS} things answered in {:.0} ms; {DEVICES} notify-next delivered {:.0} ms after the answer",
        acknowledged.as_secs_f64() * 1e3,
        (notified - acknowledged).as_secs_f64() * 1e3
    );

    // The change log holds CreateJob's notifications for every thing, not
    // only the connected ones: the updates are measured once the gateway has
    // published them all (a probe's event comes after them in the log).
    probe(&mut jobs, &counts, "probe-after").await?;
    counts.events.store(0, Ordering::SeqCst);

    // 3. Every device completes its execution.
    let started = Instant::now();
    for (i, client) in clients.iter().enumerate() {
        client
            .publish(
                format!("$aws/things/{}/jobs/rollout/update", thing(i)),
                QoS::AtLeastOnce,
                false,
                json!({"status": "SUCCEEDED", "clientToken": format!("t-{i}")}).to_string(),
            )
            .await?;
    }
    wait_for(&counts.accepted, DEVICES as u64, "every /accepted").await?;
    wait_for(&counts.events, DEVICES as u64, "every succeeded event").await?;
    let updating = started.elapsed();
    let updates_per_sec = per_sec(DEVICES as u64, updating);
    eprintln!(
        "jobs: {DEVICES} updates accepted and their events received in {:.2} s: {updates_per_sec} updates/s ({} rejected)",
        updating.as_secs_f64(),
        counts.rejected.load(Ordering::SeqCst)
    );
    for client in clients.iter().chain([&watcher]) {
        let _ = client.try_disconnect();
    }
    loops.abort_all();

    let notify_secs = round((notified - acknowledged).as_secs_f64(), 3);
    Ok(json!({
        "bench": "jobs",
        "things": THINGS,
        "connected_devices": DEVICES,
        "registry_mutations_per_sec": mutations_per_sec,
        "create_job_ms": round(acknowledged.as_secs_f64() * 1e3, 1),
        "notify_next_all_delivered_secs_after_ack": notify_secs,
        "updates_per_sec": updates_per_sec,
        "updates_vs_registry_mutations": round(updates_per_sec / mutations_per_sec.max(1.0), 2),
        "rejected": counts.rejected.load(Ordering::SeqCst),
        "client_errors": counts.errors.load(Ordering::SeqCst),
        "targets": {
            "notify_secs_max": TARGET_NOTIFY_SECS,
            "notify_met": notify_secs <= TARGET_NOTIFY_SECS,
            "updates_per_sec_min": TARGET_UPDATES_PER_SEC,
            "updates_met": updates_per_sec >= TARGET_UPDATES_PER_SEC,
        },
    }))
}

/// Runs a job on thing `probe` to SUCCEEDED (again, under new ids, until
/// the watcher gets its event); the probe's events are counted with the
/// others.
async fn probe(
    jobs: &mut JobsClient<tonic::transport::Channel>,
    counts: &Counts,
    name: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + DEADLINE;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let before = counts.events.load(Ordering::SeqCst);
        let job_id = format!("{name}-{attempt}");
        jobs.create_job(CreateJobRequest {
            job_id: job_id.clone(),
            targets: vec!["arn:aws:iot:us-east-1:123456789012:thing/probe".into()],
            document: Some("{}".into()),
            ..Default::default()
        })
        .await?;
        jobs.update_job_execution(UpdateJobExecutionRequest {
            job_id,
            thing_name: "probe".into(),
            status: JobExecutionStatus::Succeeded as i32,
            ..Default::default()
        })
        .await?;
        if wait_for_within(&counts.events, before + 1, Duration::from_secs(5)).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no job execution event arrived for {name}");
        }
    }
}

pub(crate) fn options(herald: &InProcessHerald, client_id: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, herald.mqtt.ip().to_string(), herald.mqtt.port());
    options
        .set_credentials(
            herald_gateway::DEV_MQTT_USERNAME,
            herald_gateway::DEV_MQTT_PASSWORD,
        )
        .set_keep_alive(Duration::from_secs(60))
        .set_clean_session(true);
    options
}

/// One client: subscribes to `filters` once connected and counts what
/// arrives, until the bench aborts it.
async fn device(
    client: AsyncClient,
    mut eventloop: EventLoop,
    filters: Vec<String>,
    counts: Arc<Counts>,
) {
    let mut pending = filters.len();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                for filter in &filters {
                    if client.subscribe(filter, QoS::AtLeastOnce).await.is_err() {
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                pending = pending.saturating_sub(1);
                if pending == 0 {
                    counts.subscribed.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let topic = publish.topic.as_str();
                let counter = if topic.ends_with("/notify-next") {
                    let value: Value = serde_json::from_slice(&publish.payload).unwrap_or_default();
                    (value["execution"]["jobId"] == "rollout").then_some(&counts.notified)
                } else if topic.ends_with("/accepted") {
                    Some(&counts.accepted)
                } else if topic.ends_with("/rejected") {
                    Some(&counts.rejected)
                } else if topic.contains("/jobExecution/") {
                    // The rollout's events, or before them a probe's.
                    Some(&counts.events)
                } else {
                    None
                };
                if let Some(counter) = counter {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(_) => {}
            Err(_) => {
                counts.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Waits until `counter` reaches `target`, within [`DEADLINE`].
pub(crate) async fn wait_for(counter: &AtomicU64, target: u64, what: &str) -> anyhow::Result<()> {
    if wait_for_within(counter, target, DEADLINE).await {
        Ok(())
    } else {
        bail!(
            "{what}: {} of {target} within {DEADLINE:?}",
            counter.load(Ordering::SeqCst)
        )
    }
}

async fn wait_for_within(counter: &AtomicU64, target: u64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while counter.load(Ordering::SeqCst) < target {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}
