//! The load: subscribers that count (and optionally time) deliveries, and a
//! publisher that paces itself on its event loop and on what was delivered.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, SubscribeFilter};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The topics of the QoS 0 and the QoS 1 phases. Each subscriber holds
/// both, each at its phase's QoS, so that every broker delivers a phase at
/// the QoS it is published at: raw rumqttd delivers at the subscription's
/// QoS whatever the publish's, where the gateway and Mosquitto deliver at
/// the lower of the two.
pub(super) const TOPICS: [(QoS, &str); 2] = [
    (QoS::AtMostOnce, "bench/fanout/qos0"),
    (QoS::AtLeastOnce, "bench/fanout/qos1"),
];

/// The topic of the phase at `qos`.
fn topic(qos: QoS) -> &'static str {
    match qos {
        QoS::AtMostOnce => TOPICS[0].1,
        QoS::AtLeastOnce | QoS::ExactlyOnce => TOPICS[1].1,
    }
}
pub(super) const PAYLOAD_BYTES: usize = 200;
/// At most this many messages published but not yet delivered to every
/// subscriber (QoS 0 and QoS 1 alike).
const PUBLISH_WINDOW: u64 = 256;
/// The publisher's unacknowledged QoS 1 messages.
const PUBLISHER_INFLIGHT: u16 = 100;
/// Kept latency samples, at most.
const MAX_SAMPLES: usize = 2_000_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Subscribers connecting at once.
const CONNECT_CONCURRENCY: usize = 100;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Where to connect, and as whom.
#[derive(Clone)]
pub(crate) struct Broker {
    pub(crate) name: &'static str,
    pub(crate) addr: SocketAddr,
    pub(crate) credentials: Option<(String, String)>,
}

impl Broker {
    fn options(&self, client_id: String) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, self.addr.ip().to_string(), self.addr.port());
        options
            .set_keep_alive(Duration::from_secs(60))
            .set_clean_session(true)
            .set_inflight(PUBLISHER_INFLIGHT)
            .set_request_channel_capacity(64)
            .set_max_packet_size(64 * 1024, 64 * 1024);
        if let Some((user, password)) = &self.credentials {
            options.set_credentials(user, password);
        }
        options
    }
}

/// What subscribers share.
#[derive(Default)]
struct Shared {
    delivered: AtomicU64,
    errors: AtomicU64,
    record: AtomicBool,
    samples: Mutex<Vec<Duration>>,
}

/// A set of connected, subscribed clients.
pub(crate) struct Subscribers {
    pub(super) count: usize,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
    base: Instant,
}

impl Subscribers {
    /// Connects `count` subscribers to [`TOPICS`] and waits for every
    /// SUBACK.
    pub(super) async fn connect(
        broker: &Broker,
        count: usize,
        base: Instant,
    ) -> anyhow::Result<Subscribers> {
        Subscribers::connect_spread(std::slice::from_ref(broker), count, base).await
    }

    /// [`Subscribers::connect`], the subscribers spread over `brokers` in
    /// turn (gateway replicas).
    pub(crate) async fn connect_spread(
        brokers: &[Broker],
        count: usize,
        base: Instant,
    ) -> anyhow::Result<Subscribers> {
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        // Each subscriber reports its SUBACK, or why it has none.
        let (ready_tx, mut ready_rx) =
            tokio::sync::mpsc::channel::<Result<(), String>>(count.max(1));
        let permits = Arc::new(tokio::sync::Semaphore::new(CONNECT_CONCURRENCY));
        for i in 0..count {
            let broker = &brokers[i % brokers.len()];
            let options = broker.options(format!("bench-sub-{}-{count}-{i}", broker.name));
            let (client, eventloop) = AsyncClient::new(options, 16);
            let permit = permits.clone().acquire_owned().await?;
            tasks.spawn(subscriber(
                client,
                eventloop,
                shared.clone(),
                stop.clone(),
                ready_tx.clone(),
                permit,
                base,
            ));
        }
        drop(ready_tx);
        let waited = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut ready = 0;
            while ready < count {
                match ready_rx.recv().await {
                    Some(Ok(())) => ready += 1,
                    Some(Err(why)) => return Err(why),
                    None => break,
                }
            }
            Ok(ready)
        })
        .await;
        let subscribers = Subscribers {
            count,
            shared,
            stop,
            tasks,
            base,
        };
        match waited {
            Ok(Ok(ready)) if ready == count => Ok(subscribers),
            Ok(Err(why)) => {
                subscribers.close().await;
                bail!("a subscriber got no SUBACK: {why}")
            }
            Ok(Ok(ready)) => {
                subscribers.close().await;
                bail!("only {ready} of {count} subscribers got their SUBACK")
            }
            Err(_) => {
                subscribers.close().await;
                bail!("{count} subscribers were not all subscribed within {CONNECT_TIMEOUT:?}")
            }
        }
    }

    pub(super) fn delivered(&self) -> u64 {
        self.shared.delivered.load(Ordering::Relaxed)
    }

    pub(super) fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::Relaxed)
    }

    fn set_recording(&self, on: bool) {
        self.shared.record.store(on, Ordering::Relaxed);
    }

    fn take_samples(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.shared.samples.lock().expect("samples lock"))
    }

    /// Waits until deliveries stop arriving (or `expected` is reached).
    async fn drain(&self, expected: u64) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        let mut last = self.delivered();
        let mut still_since = Instant::now();
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.delivered();
            if now >= expected {
                return;
            }
            if now != last {
                last = now;
                still_since = Instant::now();
            } else if still_since.elapsed() > Duration::from_millis(500) {
                return;
            }
        }
    }

    pub(crate) async fn close(mut self) {
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

async fn subscriber(
    client: AsyncClient,
    mut eventloop: EventLoop,
    shared: Arc<Shared>,
    stop: CancellationToken,
    ready: tokio::sync::mpsc::Sender<Result<(), String>>,
    permit: tokio::sync::OwnedSemaphorePermit,
    base: Instant,
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
                let filters = TOPICS.map(|(qos, topic)| SubscribeFilter::new(topic.into(), qos));
                if let Err(err) = client.try_subscribe_many(filters) {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    let _ = ready.send(Err(format!("SUBSCRIBE: {err}"))).await;
                    break;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) if !subscribed => {
                subscribed = true;
                permit = None;
                let _ = ready.send(Ok(())).await;
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                if shared.record.load(Ordering::Relaxed)
                    && let Some(sent) = publish.payload.get(..8)
                {
                    let sent = u64::from_le_bytes(sent.try_into().expect("8 bytes"));
                    let now = base.elapsed().as_nanos() as u64;
                    let mut samples = shared.samples.lock().expect("samples lock");
                    if samples.len() < MAX_SAMPLES {
                        samples.push(Duration::from_nanos(now.saturating_sub(sent)));
                    }
                }
            }
            Ok(_) => {}
            Err(err) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                if !subscribed {
                    let _ = ready.send(Err(format!("{err}"))).await;
                }
                // A subscriber that lost its session would measure nothing.
                break;
            }
        }
    }
    drop(permit);
    let _ = client.try_disconnect();
}

/// One measured phase.
pub(crate) struct Phase {
    pub(crate) published: u64,
    pub(crate) delivered: u64,
    pub(crate) elapsed: Duration,
    pub(super) latencies: Vec<Duration>,
}

/// How the publisher sends.
#[derive(Clone, Copy)]
pub(crate) enum Pace {
    /// As fast as the broker takes it, within the window.
    Saturate,
    /// This many messages per second.
    Rate(u32),
}

/// One publisher sends to the topic of `qos` for `length`; deliveries are counted over
/// the same window, then the subscribers drain.
pub(crate) async fn publish_phase(
    broker: &Broker,
    subscribers: &Subscribers,
    qos: QoS,
    pace: Pace,
    length: Duration,
    tag: &str,
) -> anyhow::Result<Phase> {
    let options = broker.options(format!("bench-pub-{}-{tag}", broker.name));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    // Connect first: the window starts with a connected publisher.
    let connected = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(err) => return Err(err),
            }
        }
    })
    .await;
    match connected {
        Ok(Ok(())) => {}
        Ok(Err(err)) => return Err(err).context("the publisher could not connect"),
        Err(_) => bail!("the publisher did not connect within 10 s"),
    }
    let sent = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    // Set once DISCONNECT is queued: the broker closing the socket is expected.
    let leaving = Arc::new(AtomicBool::new(false));
    let driver = {
        let sent = sent.clone();
        let stop = stop.clone();
        let leaving = leaving.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    event = eventloop.poll() => event,
                };
                match event {
                    Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => return Ok(()),
                    Ok(_) => {}
                    Err(_) if leaving.load(Ordering::Relaxed) => return Ok(()),
                    Err(err) => return Err(err),
                }
            }
        })
    };

    let fanout = subscribers.count as u64;
    subscribers.set_recording(matches!(pace, Pace::Rate(_)));
    let delivered_before = subscribers.delivered();
    let start = Instant::now();
    let deadline = start + length;
    let mut published = 0u64;
    let mut payload = vec![b'x'; PAYLOAD_BYTES];
    let mut ticker = match pace {
        Pace::Rate(rate) => {
            let mut ticker =
                tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            Some(ticker)
        }
        Pace::Saturate => None,
    };
    while Instant::now() < deadline {
        if let Some(ticker) = &mut ticker {
            ticker.tick().await;
        } else {
            // The window: wait while too much is published but not delivered.
            let mut spins = 0u32;
            while published.saturating_sub((subscribers.delivered() - delivered_before) / fanout)
                > PUBLISH_WINDOW
                && Instant::now() < deadline
                && spins < 100_000
            {
                spins += 1;
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        let stamp = subscribers.base.elapsed();
        payload[..8].copy_from_slice(&(stamp.as_nanos() as u64).to_le_bytes());
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(
            remaining,
            client.publish(topic(qos), qos, false, payload.clone()),
        )
        .await
        {
            Ok(Ok(())) => published += 1,
            Ok(Err(err)) => return Err(err).context("publishing"),
            Err(_) => break,
        }
    }
    let delivered = subscribers.delivered() - delivered_before;
    let elapsed = start.elapsed();
    // Let what was sent arrive before the next phase.
    subscribers
        .drain(delivered_before + sent.load(Ordering::Relaxed).max(published) * fanout)
        .await;
    subscribers.set_recording(false);
    let latencies = subscribers.take_samples();
    leaving.store(true, Ordering::Relaxed);
    let _ = client.try_disconnect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.cancel();
    match driver.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => eprintln!(
            "mqtt: {}: the publisher's connection failed: {err}",
            broker.name
        ),
        Err(err) => bail!("the publisher's event loop panicked: {err}"),
    }
    Ok(Phase {
        published,
        delivered,
        elapsed,
        latencies,
    })
}
