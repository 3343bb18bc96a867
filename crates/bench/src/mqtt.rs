//! The `mqtt` bench: fan-out throughput through the gateway's MQTT session
//! layer against Mosquitto and against raw rumqttd 0.20 (the routing engine
//! the gateway embeds, with its own listener and no policies) in the same
//! run: one publisher, 100 and 1000 subscribers, QoS 0 and QoS 1 (each
//! phase on a topic of its own, subscribed at its QoS), 200-byte payloads; then the latency of a paced run (200
//! messages/s to 100 subscribers, QoS 0). The ratio to raw rumqttd is the
//! gateway's own cost.
//!
//! Herald (registry, config service, gateway) runs in-process on its own
//! runtime ([`server::WORKER_THREADS`] workers) and is reached over loopback
//! on its plain MQTT listener as the dev user; Mosquitto is a child process on
//! a free loopback port. The clients (rumqttc) run on a second runtime.
//! Deliveries per second count every PUBLISH received by every subscriber
//! during the phase.
//!
//! Then idle connections ([`idle`]): a fresh `gateway` process (the release
//! binary next to `herald-bench`, with its `registry` and `config` processes)
//! and a fresh Mosquitto each get 10,000 idle MQTT connections from this
//! process, and the resident memory each broker process gains per connection
//! is reported, against a target of at most
//! [`TARGET_IDLE_KIB_PER_CONNECTION`] KiB, with how many connections each
//! accepted per second while they were opened. Last, the same for TLS:
//! another fresh gateway and Mosquitto each get [`idle::TLS_CONNECTIONS`]
//! mutual-TLS connections, and the connections accepted per second are
//! reported (plain against a target of [`TARGET_PLAIN_ACCEPTS_PER_SEC`]).

mod external;
mod idle;
pub(crate) mod load;
pub(crate) mod server;
mod tls;

use std::time::{Duration, Instant};

use anyhow::Context;
use rumqttc::QoS;
use serde_json::{Map, Value, json};

use self::{
    idle::Measured,
    load::{Broker, Pace, Phase, Subscribers},
    server::{InProcessHerald, Mosquitto, RawRumqttd},
};
use crate::{
    Options,
    stats::{Latency, per_sec, round},
};

/// Subscriber counts measured, in order.
const FANOUTS: [usize; 2] = [100, 1000];
/// The paced run: messages per second, to `LATENCY_SUBSCRIBERS`.
const LATENCY_RATE: u32 = 200;
const LATENCY_SUBSCRIBERS: usize = 100;
/// No phase lasts longer than this, whatever `--secs` says: fifteen phases
/// (five per broker) keep the fan-out part under four minutes.
const MAX_PHASE: Duration = Duration::from_secs(12);

const TARGET_FANOUT_RATIO: f64 = 1.0;
/// Herald ÷ raw rumqttd at 1000 subscribers, QoS 1.
const TARGET_RUMQTTD_RATIO: f64 = 0.8;
const TARGET_IDLE_KIB_PER_CONNECTION: f64 = 4.0;
/// Plain connections (CONNECT and CONNACK) the gateway accepts per second.
const TARGET_PLAIN_ACCEPTS_PER_SEC: f64 = 10_000.0;

/// The figures of one broker.
#[derive(Default)]
struct BrokerFigures {
    /// (subscribers, qos) → phase.
    fanout: Vec<(usize, u8, Phase)>,
    latency: Option<Phase>,
    subscriber_errors: u64,
}

impl BrokerFigures {
    fn per_sec(&self, subscribers: usize, qos: u8) -> Option<f64> {
        self.fanout
            .iter()
            .find(|(n, q, _)| *n == subscribers && *q == qos)
            .map(|(_, _, phase)| per_sec(phase.delivered, phase.elapsed))
    }
}

pub(crate) fn run(options: &Options) -> anyhow::Result<Value> {
    let phase = options.phase.min(MAX_PHASE);
    // Fail now rather than after the fan-out phases.
    idle::preflight()?;
    // Herald records its metrics as it does when serving them: the
    // in-process gateway's figures include their cost.
    herald_runtime::metrics::install().context("installing the metrics recorder")?;
    let mosquitto = Mosquitto::start()?;
    eprintln!(
        "mqtt: mosquitto ({}) on {}",
        mosquitto.version, mosquitto.addr
    );
    let rumqttd = RawRumqttd::start()?;
    eprintln!("mqtt: raw rumqttd 0.20 on {}", rumqttd.addr);
    let herald = InProcessHerald::start("mqtt-data-")?;
    eprintln!(
        "mqtt: herald in-process, plain MQTT on {} ({} worker threads); {} s per phase",
        herald.mqtt,
        server::WORKER_THREADS,
        phase.as_secs()
    );
    let brokers = [
        Broker {
            name: "herald",
            addr: herald.mqtt,
            credentials: Some((
                herald_gateway::DEV_MQTT_USERNAME.into(),
                herald_gateway::DEV_MQTT_PASSWORD.into(),
            )),
        },
        Broker {
            name: "mosquitto",
            addr: mosquitto.addr,
            credentials: None,
        },
        Broker {
            name: "rumqttd",
            addr: rumqttd.addr,
            credentials: None,
        },
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-client")
        .enable_all()
        .build()
        .context("building the clients' runtime")?;
    let measured = runtime.block_on(async {
        let mut figures = Vec::new();
        for broker in &brokers {
            figures.push(measure(broker, phase).await?);
        }
        anyhow::Ok(figures)
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop(mosquitto);
    let stopped = herald.stop();
    let figures = match (measured, stopped) {
        (Ok(figures), Ok(())) => figures,
        (Ok(_), Err(err)) => return Err(err.context("herald did not shut down cleanly")),
        (Err(err), Ok(())) => return Err(err),
        (Err(err), Err(stopped)) => {
            return Err(err.context(format!("herald stopped with: {stopped:#}")));
        }
    };
    eprintln!("mqtt: herald stopped cleanly, mosquitto stopped");
    eprintln!(
        "mqtt: idle: {} connections to a gateway process, then to a Mosquitto process",
        idle::CONNECTIONS
    );
    let idle = idle::measure()?;
    Ok(report(&figures[0], &figures[1], &figures[2], &idle, phase))
}

async fn measure(broker: &Broker, phase: Duration) -> anyhow::Result<BrokerFigures> {
    let base = Instant::now();
    let mut figures = BrokerFigures::default();
    for subscribers in FANOUTS {
        let started = Instant::now();
        let subs = Subscribers::connect(broker, subscribers, base)
            .await
            .with_context(|| format!("{}: connecting {subscribers} subscribers", broker.name))?;
        eprintln!(
            "mqtt: {}: {subscribers} subscribers connected and subscribed in {:.2} s",
            broker.name,
            started.elapsed().as_secs_f64()
        );
        for (qos, level) in [(0u8, QoS::AtMostOnce), (1, QoS::AtLeastOnce)] {
            let tag = format!("{subscribers}-q{qos}");
            let outcome =
                load::publish_phase(broker, &subs, level, Pace::Saturate, phase, &tag).await?;
            eprintln!(
                "mqtt: {}: {subscribers} subscribers, QoS {qos}: {} msgs published, {} deliveries/s",
                broker.name,
                outcome.published,
                per_sec(outcome.delivered, outcome.elapsed)
            );
            figures.fanout.push((subscribers, qos, outcome));
        }
        if subscribers == LATENCY_SUBSCRIBERS {
            let outcome = load::publish_phase(
                broker,
                &subs,
                QoS::AtMostOnce,
                Pace::Rate(LATENCY_RATE),
                phase,
                "paced",
            )
            .await?;
            let latency = Latency::of(&mut outcome.latencies.clone());
            eprintln!(
                "mqtt: {}: paced {LATENCY_RATE} msgs/s × {subscribers}: {} deliveries/s, p50 {} ms, p99 {} ms",
                broker.name,
                per_sec(outcome.delivered, outcome.elapsed),
                latency.p50_ms,
                latency.p99_ms
            );
            figures.latency = Some(outcome);
        }
        figures.subscriber_errors += subs.errors();
        subs.close().await;
    }
    Ok(figures)
}

fn fanout_json(figures: &BrokerFigures) -> Value {
    let mut by_count = Map::new();
    for subscribers in FANOUTS {
        by_count.insert(
            subscribers.to_string(),
            json!({
                "qos0": figures.per_sec(subscribers, 0),
                "qos1": figures.per_sec(subscribers, 1),
            }),
        );
    }
    Value::Object(by_count)
}

fn ratio(herald: Option<f64>, mosquitto: Option<f64>) -> Option<f64> {
    match (herald, mosquitto) {
        (Some(h), Some(m)) if m > 0.0 => Some(round(h / m, 2)),
        _ => None,
    }
}

fn latency_json(figures: &BrokerFigures) -> Value {
    match &figures.latency {
        Some(phase) => {
            let latency = Latency::of(&mut phase.latencies.clone());
            json!({
                "p50": latency.p50_ms,
                "p99": latency.p99_ms,
                "samples": phase.latencies.len(),
                "deliveries_per_sec": per_sec(phase.delivered, phase.elapsed),
            })
        }
        None => Value::Null,
    }
}

/// The idle figures, and whether Herald met its target: every connection
/// accepted, settled readings, at most the target per connection.
fn idle_json(measured: &Measured) -> (Value, bool) {
    let (herald, mosquitto) = (&measured.herald, &measured.mosquitto);
    let per_connection = herald.kib_per_connection();
    let met = herald.accepted == idle::CONNECTIONS as u64
        && herald.settled
        && per_connection.is_some_and(|kib| kib <= TARGET_IDLE_KIB_PER_CONNECTION);
    eprintln!(
        "mqtt: idle: herald {per_connection:?} KiB per connection, mosquitto {:?} (target ≤ {TARGET_IDLE_KIB_PER_CONNECTION}: {})",
        mosquitto.kib_per_connection(),
        if met { "met" } else { "NOT met" }
    );
    eprintln!(
        "mqtt: plain connections accepted per second: herald {:?}, mosquitto {:?}",
        herald.accepted_per_sec(),
        mosquitto.accepted_per_sec()
    );
    let value = json!({
        "connections": idle::CONNECTIONS,
        "accepted_per_sec_ratio": ratio(herald.accepted_per_sec(), mosquitto.accepted_per_sec()),
        "herald": herald.json(),
        "mosquitto": mosquitto.json(),
        "ratio": ratio(per_connection, mosquitto.kib_per_connection()),
    });
    (value, met)
}

/// Connections accepted per second, plain (from the idle run) and TLS, and
/// whether Herald's plain rate met its target.
fn accepts_json(measured: &Measured) -> (Value, bool) {
    let (tls_herald, tls_mosquitto) = (&measured.herald_tls, &measured.mosquitto_tls);
    eprintln!(
        "mqtt: TLS connections accepted per second: herald {:?}, mosquitto {:?}",
        tls_herald.accepted_per_sec(),
        tls_mosquitto.accepted_per_sec()
    );
    let plain = measured.herald.accepted_per_sec();
    let met = measured.herald.failed == 0
        && measured.herald.refused == 0
        && plain.is_some_and(|rate| rate >= TARGET_PLAIN_ACCEPTS_PER_SEC);
    let value = json!({
        "plain": {
            "connections": idle::CONNECTIONS,
            "herald": plain,
            "mosquitto": measured.mosquitto.accepted_per_sec(),
            "ratio": ratio(plain, measured.mosquitto.accepted_per_sec()),
        },
        "tls": {
            "connections": idle::TLS_CONNECTIONS,
            "herald": tls_herald.rate_json(),
            "mosquitto": tls_mosquitto.rate_json(),
            "ratio": ratio(tls_herald.accepted_per_sec(), tls_mosquitto.accepted_per_sec()),
        },
    });
    (value, met)
}

fn report(
    herald: &BrokerFigures,
    mosquitto: &BrokerFigures,
    rumqttd: &BrokerFigures,
    idle: &Measured,
    phase: Duration,
) -> Value {
    let (idle_connections, idle_met) = idle_json(idle);
    let (accepts, plain_accepts_met) = accepts_json(idle);
    let mut ratios = Map::new();
    let mut min_ratio: Option<f64> = None;
    for subscribers in FANOUTS {
        let mut by_qos = Map::new();
        for qos in [0u8, 1] {
            let r = ratio(
                herald.per_sec(subscribers, qos),
                mosquitto.per_sec(subscribers, qos),
            );
            if let Some(r) = r {
                min_ratio = Some(min_ratio.map_or(r, |m| m.min(r)));
            }
            by_qos.insert(format!("qos{qos}"), json!(r));
        }
        ratios.insert(subscribers.to_string(), Value::Object(by_qos));
    }
    let meets = min_ratio.is_some_and(|r| r >= TARGET_FANOUT_RATIO);
    let mut vs_rumqttd = Map::new();
    for subscribers in FANOUTS {
        let mut by_qos = Map::new();
        for qos in [0u8, 1] {
            let r = ratio(
                herald.per_sec(subscribers, qos),
                rumqttd.per_sec(subscribers, qos),
            );
            by_qos.insert(format!("qos{qos}"), json!(r));
        }
        vs_rumqttd.insert(subscribers.to_string(), Value::Object(by_qos));
    }
    let rumqttd_1000_q1 = ratio(herald.per_sec(1000, 1), rumqttd.per_sec(1000, 1));
    let rumqttd_met = rumqttd_1000_q1.is_some_and(|r| r >= TARGET_RUMQTTD_RATIO);
    eprintln!(
        "mqtt: herald/rumqttd at 1000 subscribers, QoS 1: {rumqttd_1000_q1:?} (target ≥ {TARGET_RUMQTTD_RATIO}: {})",
        if rumqttd_met { "met" } else { "NOT met" }
    );
    eprintln!(
        "mqtt: lowest herald/mosquitto ratio {min_ratio:?} (target ≥ {TARGET_FANOUT_RATIO}: {})",
        if meets { "met" } else { "NOT met" }
    );
    json!({
        "bench": "mqtt",
        "phase_secs": phase.as_secs(),
        "payload_bytes": load::PAYLOAD_BYTES,
        "topics": load::TOPICS.map(|(_, topic)| topic),
        "herald_worker_threads": server::WORKER_THREADS,
        "fanout": {
            "herald": fanout_json(herald),
            "mosquitto": fanout_json(mosquitto),
            "rumqttd": fanout_json(rumqttd),
            "ratio": Value::Object(ratios),
            "ratio_min": min_ratio,
            "ratio_vs_rumqttd": Value::Object(vs_rumqttd),
        },
        "latency_ms": {
            "rate_msgs_per_sec": LATENCY_RATE,
            "subscribers": LATENCY_SUBSCRIBERS,
            "qos": 0,
            "herald": latency_json(herald),
            "mosquitto": latency_json(mosquitto),
            "rumqttd": latency_json(rumqttd),
        },
        "idle_connections": idle_connections,
        "accepts_per_sec": accepts,
        "subscriber_errors": {
            "herald": herald.subscriber_errors,
            "mosquitto": mosquitto.subscriber_errors,
            "rumqttd": rumqttd.subscriber_errors,
        },
        "targets": {
            "fanout_ratio_min": TARGET_FANOUT_RATIO,
            "fanout_ratio_met": meets,
            "fanout_vs_rumqttd_1000_qos1_min": TARGET_RUMQTTD_RATIO,
            "fanout_vs_rumqttd_1000_qos1_met": rumqttd_met,
            "idle_kib_per_connection_max": TARGET_IDLE_KIB_PER_CONNECTION,
            "idle_kib_per_connection_met": idle_met,
            "plain_accepts_per_sec_min": TARGET_PLAIN_ACCEPTS_PER_SEC,
            "plain_accepts_per_sec_met": plain_accepts_met,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_need_both_figures() {
        assert_eq!(ratio(Some(50.0), Some(100.0)), Some(0.5));
        assert_eq!(ratio(Some(50.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
    }
}
