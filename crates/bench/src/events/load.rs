//! The load: MQTT subscribers to `$aws/events/thing/+/created` that record
//! each event's arrival, and an open-loop driver that issues CreateThing on a
//! schedule (call `i` is due at `start + i / rate`, whatever the earlier calls
//! are doing) and records each acknowledgement.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use herald_proto::{
    error::AwsError,
    registry::v1::{CreateThingRequest, registry_client::RegistryClient},
};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::record::{FILTER, PROBE, PhaseRecord, Records, thing_name};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Subscribers connecting at once.
const CONNECT_CONCURRENCY: usize = 50;
/// Probes: one CreateThing every `PROBE_EVERY` until every subscriber has
/// seen one, for at most `PROBE_TIMEOUT`.
const PROBE_EVERY: Duration = Duration::from_millis(200);
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// Calls in flight at most; a driver that needs more falls behind.
const MAX_IN_FLIGHT: usize = 512;
/// Waiting for the calls in flight when the schedule ends.
const CALLS_TIMEOUT: Duration = Duration::from_secs(10);
/// Waiting for the events after the last acknowledgement: until all arrived,
/// or none for `QUIET`, at most `DRAIN_TIMEOUT`.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_secs(1);

pub(super) type Registry = RegistryClient<Channel>;

/// Connected, subscribed MQTT clients.
pub(super) struct Subscribers {
    errors: Arc<AtomicU64>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Subscribers {
    /// Connects `count` clients as the dev user and waits for every SUBACK.
    pub(super) async fn connect(
        addr: SocketAddr,
        count: usize,
        records: Arc<Records>,
    ) -> anyhow::Result<Subscribers> {
        let errors = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<bool>(count.max(1));
        let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
        for index in 0..count {
            let mut options = MqttOptions::new(
                format!("bench-events-{index}"),
                addr.ip().to_string(),
                addr.port(),
            );
            options
                .set_keep_alive(Duration::from_secs(60))
                .set_clean_session(true)
                .set_credentials(
                    herald_gateway::DEV_MQTT_USERNAME,
                    herald_gateway::DEV_MQTT_PASSWORD,
                )
                .set_max_packet_size(64 * 1024, 64 * 1024);
            let (client, eventloop) = AsyncClient::new(options, 16);
            let permit = permits.clone().acquire_owned().await?;
            tasks.spawn(subscriber(
                index,
                client,
                eventloop,
                records.clone(),
                errors.clone(),
                stop.clone(),
                ready_tx.clone(),
                permit,
            ));
        }
        drop(ready_tx);
        let waited = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut ready = 0;
            while ready < count {
                match ready_rx.recv().await {
                    Some(true) => ready += 1,
                    Some(false) | None => break,
                }
            }
            ready
        })
        .await;
        let subscribers = Subscribers {
            errors,
            stop,
            tasks,
        };
        match waited {
            Ok(ready) if ready == count => Ok(subscribers),
            Ok(ready) => {
                subscribers.close().await;
                bail!("only {ready} of {count} subscribers were granted {FILTER} at QoS 1")
            }
            Err(_) => {
                subscribers.close().await;
                bail!("{count} subscribers were not all subscribed within {CONNECT_TIMEOUT:?}")
            }
        }
    }

    pub(super) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub(super) async fn close(mut self) {
        self.stop.cancel();
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if closed.is_err() {
            self.tasks.abort_all();
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn subscriber(
    index: usize,
    client: AsyncClient,
    mut eventloop: EventLoop,
    records: Arc<Records>,
    errors: Arc<AtomicU64>,
    stop: CancellationToken,
    ready: tokio::sync::mpsc::Sender<bool>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let mut permit = Some(permit);
    let mut subscribed = false;
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) if !subscribed => {
                if client.try_subscribe(FILTER, QoS::AtLeastOnce).is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(suback))) if !subscribed => {
                subscribed = true;
                permit = None;
                // 0x80 (or anything but QoS 1) is a refusal.
                let granted = suback.return_codes.iter().all(|code| {
                    matches!(
                        code,
                        rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)
                    )
                });
                let _ = ready.send(granted).await;
                if !granted {
                    errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                records.on_event(index, &publish.topic);
            }
            Ok(_) => {}
            Err(_) => {
                errors.fetch_add(1, Ordering::Relaxed);
                // A subscriber that lost its session would only measure losses.
                break;
            }
        }
    }
    drop(permit);
    let _ = client.try_disconnect();
}

/// Opens `count` registry connections (one HTTP/2 connection each).
pub(super) async fn registry_clients(
    addr: SocketAddr,
    count: usize,
) -> anyhow::Result<Vec<Registry>> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        clients.push(
            RegistryClient::connect(format!("http://{addr}"))
                .await
                .with_context(|| format!("connecting to the registry on {addr}"))?,
        );
    }
    Ok(clients)
}

/// Creates probe things until every subscriber has received one's event:
/// then the event configuration reached the gateway and every subscription
/// is live.
pub(super) async fn probe(registry: &mut Registry, records: &Records) -> anyhow::Result<()> {
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let mut n = 0;
    loop {
        registry
            .create_thing(CreateThingRequest {
                thing_name: format!("{PROBE}{n}"),
                ..Default::default()
            })
            .await
            .map_err(|status| anyhow::anyhow!(AwsError::from_status(&status).to_string()))
            .context("creating a probe thing")?;
        n += 1;
        let next = Instant::now() + PROBE_EVERY;
        while Instant::now() < next {
            if records.probed() == records.probed.len() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {} subscribers received a probe's event within {PROBE_TIMEOUT:?}",
                records.probed(),
                records.probed.len()
            );
        }
    }
}

/// What the driver did in one phase.
#[derive(Debug, Default)]
pub(super) struct Drive {
    pub(super) issued: u64,
    pub(super) acked: u64,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
    /// From the first call's due time to the last call issued.
    pub(super) issue_elapsed: Duration,
    /// From the first call's due time to the last acknowledgement.
    pub(super) ack_elapsed: Duration,
    /// The most a call was issued after its due time.
    pub(super) max_lag: Duration,
    /// Calls still in flight after [`CALLS_TIMEOUT`].
    pub(super) unfinished: u64,
}

/// Issues the phase's `things()` CreateThings at `rate` per second, spread
/// over `clients`, recording every acknowledgement in the phase's record
/// (which must be set).
pub(super) async fn drive(
    clients: &[Registry],
    phase: usize,
    rate: u32,
    records: Arc<Records>,
) -> Drive {
    let total = records.phases[phase].get().map_or(0, PhaseRecord::things);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let acked = Arc::new(AtomicU64::new(0));
    let last_ack = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new((0u64, None::<String>)));
    let mut drive = Drive::default();
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for seq in 0..total {
        let due = start + interval.mul_f64(seq as f64);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = match in_flight.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => break,
        };
        drive.max_lag = drive
            .max_lag
            .max(Instant::now().saturating_duration_since(due));
        let mut client = clients[seq % clients.len()].clone();
        let records = records.clone();
        let acked = acked.clone();
        let last_ack = last_ack.clone();
        let failures = failures.clone();
        tasks.spawn(async move {
            let request = CreateThingRequest {
                thing_name: thing_name(phase, seq),
                ..Default::default()
            };
            match client.create_thing(request).await {
                Ok(_) => {
                    let at = records.now();
                    if let Some(record) = records.phases[phase].get() {
                        record.ack(seq, at);
                    }
                    acked.fetch_add(1, Ordering::Relaxed);
                    last_ack.fetch_max(at, Ordering::Relaxed);
                }
                Err(status) => {
                    let mut failures = failures.lock().expect("failures lock");
                    failures.0 += 1;
                    failures
                        .1
                        .get_or_insert_with(|| AwsError::from_status(&status).to_string());
                }
            }
            drop(permit);
        });
        drive.issued += 1;
        // Reap finished calls as we go, so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    drive.issue_elapsed = start.elapsed();
    let finished = tokio::time::timeout(CALLS_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        drive.unfinished = tasks.len() as u64;
        tasks.abort_all();
    }
    drive.acked = acked.load(Ordering::Relaxed);
    let start_at = start.duration_since(records.base).as_nanos() as u64 + 1;
    drive.ack_elapsed =
        Duration::from_nanos(last_ack.load(Ordering::Relaxed).saturating_sub(start_at));
    let failures = failures.lock().expect("failures lock");
    drive.errors = failures.0;
    drive.first_error = failures.1.clone();
    drive
}

/// Waits until every acknowledged thing's event reached every subscriber, or
/// none arrived for [`QUIET`], at most [`DRAIN_TIMEOUT`].
pub(super) async fn drain(record: &PhaseRecord, expected: u64) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut last = record.delivered();
    let mut still_since = Instant::now();
    while Instant::now() < deadline {
        let now = record.delivered();
        if now >= expected {
            return;
        }
        if now != last {
            last = now;
            still_since = Instant::now();
        } else if still_since.elapsed() > QUIET {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
