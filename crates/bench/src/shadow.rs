//! The `shadow` bench: Device Shadow updates per second, end to end, with
//! [`DEVICES`] devices on MQTT (plain listener, the dev user), against the
//! registry's durable mutation rate in the same run.
//!
//! 1. The baseline: [`WRITERS`] registry clients call UpdateThing (a new
//!    attribute value each time) in a closed loop for one phase: durable
//!    registry mutations per second.
//! 2. The shadow service alone: [`WRITERS`] clients call the registry's
//!    `Shadows.UpdateShadow` directly in a closed loop for one phase, each
//!    over 100 things (a thing may make 20 shadow requests a second).
//! 3. End to end: every device, subscribed to its shadow's
//!    `update/accepted` and `update/delta`, publishes an update of its
//!    desired state on `$aws/things/{thing}/shadow/update` and waits for both
//!    answers before the next, for one phase: updates per second, and the
//!    latency from the publish to the second answer.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};
use std::time::{Duration, Instant};

use anyhow::Context;
use herald_proto::registry::v1::{
    AttributePayload, CreateThingRequest, ShadowRequest, UpdateThingRequest,
    registry_client::RegistryClient, shadows_client::ShadowsClient,
};
use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS};
use serde_json::{Value, json};
use tokio::{sync::watch, task::JoinSet};

use crate::{
    Options,
    jobs::{options, wait_for},
    mqtt::server::InProcessHerald,
    stats::{Latency, per_sec, round},
};

/// Devices on MQTT, each updating its own classic shadow.
const DEVICES: usize = 1_000;
/// Concurrent gRPC clients of phases 1 and 2.
const WRITERS: usize = 64;
/// Concurrent CONNECTs.
const CONNECT_CONCURRENCY: usize = 100;
/// How long after the phase the last answers may take.
const DRAIN: Duration = Duration::from_secs(30);

/// What the devices counted.
#[derive(Default)]
struct Counts {
    subscribed: AtomicU64,
    updated: AtomicU64,
    rejected: AtomicU64,
    errors: AtomicU64,
}

fn thing(i: usize) -> String {
    format!("s-{i:04}")
}

pub(crate) fn run(options: &Options) -> anyhow::Result<Value> {
    let herald = InProcessHerald::start("shadow-data-")?;
    eprintln!("shadow: herald in-process, plain MQTT on {}", herald.mqtt);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-client")
        .enable_all()
        .build()
        .context("building the clients' runtime")?;
    let measured = runtime.block_on(measure(&herald, options.phase));
    runtime.shutdown_timeout(Duration::from_secs(5));
    let stopped = herald.stop();
    let report = measured?;
    stopped.context("herald did not shut down cleanly")?;
    Ok(report)
}

async fn measure(herald: &InProcessHerald, phase: Duration) -> anyhow::Result<Value> {
    let registry_url = format!("http://{}", herald.registry);
    let registry = RegistryClient::connect(registry_url.clone()).await?;
    let shadows = ShadowsClient::connect(registry_url).await?;

    // 1. The registry's durable mutations.
    for w in 0..WRITERS {
        registry
            .clone()
            .create_thing(CreateThingRequest {
                thing_name: thing(w),
                ..Default::default()
            })
            .await?;
    }
    let mut writers = JoinSet::new();
    let end = Instant::now() + phase;
    let started = Instant::now();
    for w in 0..WRITERS {
        let mut registry = registry.clone();
        writers.spawn(async move {
            let mut done = 0u64;
            while Instant::now() < end {
                registry
                    .update_thing(UpdateThingRequest {
                        thing_name: thing(w),
                        attribute_payload: Some(AttributePayload {
                            attributes: [("n".to_owned(), done.to_string())].into(),
                            merge: true,
                        }),
                        ..Default::default()
                    })
                    .await?;
                done += 1;
            }
            anyhow::Ok(done)
        });
    }
    let mut mutations = 0;
    while let Some(done) = writers.join_next().await {
        mutations += done??;
    }
    let mutations_per_sec = per_sec(mutations, started.elapsed());
    eprintln!(
        "shadow: registry UpdateThing, {WRITERS} clients: {mutations_per_sec} durable mutations/s"
    );

    // 2. The shadow service alone, over gRPC.
    let end = Instant::now() + phase;
    let started = Instant::now();
    for w in 0..WRITERS {
        let mut shadows = shadows.clone();
        writers.spawn(async move {
            let mut done = 0u64;
            while Instant::now() < end {
                let reply = shadows
                    .update_shadow(ShadowRequest {
                        // Spread over things: each may make 20 requests a second.
                        thing_name: format!("grpc-{w}-{}", done % 100),
                        shadow_name: String::new(),
                        payload: update(done).into_bytes(),
                    })
                    .await?
                    .into_inner();
                anyhow::ensure!(reply.code == 0, "{}", String::from_utf8_lossy(&reply.body));
                done += 1;
            }
            anyhow::Ok(done)
        });
    }
    let mut direct = 0;
    while let Some(done) = writers.join_next().await {
        direct += done??;
    }
    let direct_per_sec = per_sec(direct, started.elapsed());
    eprintln!("shadow: UpdateShadow over gRPC, {WRITERS} clients: {direct_per_sec} updates/s");

    // 3. End to end, over MQTT.
    let counts = Arc::new(Counts::default());
    let (go, ready) = watch::channel(None::<Instant>);
    let mut devices = JoinSet::new();
    let mut clients = Vec::with_capacity(DEVICES);
    for i in 0..DEVICES {
        let (client, eventloop) = AsyncClient::new(options(herald, &thing(i)), 16);
        devices.spawn(device(
            thing(i),
            client.clone(),
            eventloop,
            ready.clone(),
            counts.clone(),
        ));
        clients.push(client);
        if i % CONNECT_CONCURRENCY == CONNECT_CONCURRENCY - 1 {
            wait_for(&counts.subscribed, (i + 1) as u64, "devices subscribed").await?;
        }
    }
    wait_for(
        &counts.subscribed,
        DEVICES as u64,
        "every device subscribed",
    )
    .await?;
    let started = Instant::now();
    go.send_replace(Some(started + phase));
    let mut latencies = Vec::new();
    let drained = tokio::time::timeout(phase + DRAIN, async {
        while let Some(done) = devices.join_next().await {
            latencies.extend(done?);
        }
        anyhow::Ok(())
    })
    .await;
    let elapsed = started.elapsed();
    match drained {
        Ok(done) => done?,
        Err(_) => {
            // A device still waits for an answer: counted as failed.
            let stuck = devices.len() as u64;
            counts.errors.fetch_add(stuck, Ordering::SeqCst);
            devices.abort_all();
        }
    }
    let updated = counts.updated.load(Ordering::SeqCst);
    let updates_per_sec = per_sec(updated, elapsed);
    let latency = Latency::of(&mut latencies);
    eprintln!(
        "shadow: {DEVICES} devices over MQTT: {updated} updates answered (accepted and delta) in {:.2} s: {updates_per_sec} updates/s, p50 {} ms, p99 {} ms",
        elapsed.as_secs_f64(),
        latency.p50_ms,
        latency.p99_ms
    );
    for client in &clients {
        let _ = client.try_disconnect();
    }
    let rejected = counts.rejected.load(Ordering::SeqCst);
    let client_errors = counts.errors.load(Ordering::SeqCst);
    Ok(json!({
        "bench": "shadow",
        "devices": DEVICES,
        "phase_secs": phase.as_secs(),
        "registry_mutations_per_sec": mutations_per_sec,
        "shadow_grpc_updates_per_sec": direct_per_sec,
        "shadow_updates_per_sec": updates_per_sec,
        "shadow_update_latency_ms": { "p50": latency.p50_ms, "p99": latency.p99_ms },
        "shadow_updates_vs_registry_mutations": round(updates_per_sec / mutations_per_sec.max(1.0), 2),
        "rejected": rejected,
        "client_errors": client_errors,
        "errors": rejected + client_errors,
    }))
}

/// An update of the desired state that differs from the last: AWS publishes
/// a delta for it.
fn update(n: u64) -> String {
    json!({"state": {"desired": {"level": n}}}).to_string()
}

/// One device: subscribes, waits for the start, then updates its shadow in
/// a closed loop until the end the start named; answers each update's
/// latencies.
async fn device(
    thing: String,
    client: AsyncClient,
    mut eventloop: EventLoop,
    mut start: watch::Receiver<Option<Instant>>,
    counts: Arc<Counts>,
) -> Vec<Duration> {
    let prefix = format!("$aws/things/{thing}/shadow/update");
    let filters = [
        format!("{prefix}/accepted"),
        format!("{prefix}/delta"),
        format!("{prefix}/rejected"),
    ];
    let mut latencies = Vec::new();
    let mut pending_subacks = filters.len();
    let mut end = None;
    // The update in flight: when it was sent, and which answers came.
    let mut in_flight: Option<(Instant, bool, bool)> = None;
    let mut sent = 0u64;
    loop {
        if let (Some(end), None) = (end, in_flight) {
            if Instant::now() >= end {
                return latencies;
            }
            if client
                .publish(&prefix, QoS::AtLeastOnce, false, update(sent))
                .await
                .is_err()
            {
                counts.errors.fetch_add(1, Ordering::Relaxed);
                return latencies;
            }
            sent += 1;
            in_flight = Some((Instant::now(), false, false));
        }
        let event = tokio::select! {
            event = eventloop.poll() => event,
            changed = start.changed(), if end.is_none() => {
                if changed.is_err() {
                    return latencies;
                }
                end = *start.borrow();
                continue;
            }
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                for filter in &filters {
                    if client.subscribe(filter, QoS::AtLeastOnce).await.is_err() {
                        counts.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                pending_subacks = pending_subacks.saturating_sub(1);
                if pending_subacks == 0 {
                    counts.subscribed.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let Some((at, mut accepted, mut delta)) = in_flight else {
                    continue;
                };
                if publish.topic.ends_with("/accepted") {
                    accepted = true;
                } else if publish.topic.ends_with("/delta") {
                    delta = true;
                } else if publish.topic.ends_with("/rejected") {
                    counts.rejected.fetch_add(1, Ordering::Relaxed);
                    in_flight = None;
                    continue;
                }
                in_flight = if accepted && delta {
                    latencies.push(at.elapsed());
                    counts.updated.fetch_add(1, Ordering::Relaxed);
                    None
                } else {
                    Some((at, accepted, delta))
                };
            }
            Ok(_) => {}
            Err(_) => {
                counts.errors.fetch_add(1, Ordering::Relaxed);
                return latencies;
            }
        }
    }
}
