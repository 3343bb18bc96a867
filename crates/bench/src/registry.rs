//! The `registry` bench: durable mutations per second over gRPC at 1, 16 and
//! 64 concurrent clients, then change log replay throughput over WatchChanges.
//!
//! The registry runs in-process on its own runtime ([`server::WORKER_THREADS`]
//! workers); the clients run on a second runtime and reach it over loopback.
//! Every client has its own connection. A call is acknowledged only once its
//! mutation is durable, so acknowledged calls per second are durable mutations
//! per second.

mod baseline;
pub(crate) mod load;
mod replay;
pub(crate) mod server;

use std::time::Duration;

use anyhow::Context;
use serde_json::{Map, Value, json};

use self::{
    load::{Mix, Outcome, Phase},
    replay::Replay,
    server::InProcessRegistry,
};
use crate::{
    Options,
    stats::{Latency, per_sec, round},
};

/// The concurrency levels measured, in order.
const LEVELS: [usize; 3] = [1, 16, 64];
/// No phase issues more calls than this, whatever its duration.
const MAX_CALLS_PER_PHASE: u64 = 1_000_000;
/// Replay measures at least this many records: the log is topped up first.
const MIN_REPLAY_RECORDS: u64 = 200_000;
const TOP_UP_CLIENTS: usize = 64;
/// Topping up stops after this long even if short of the minimum.
const MAX_TOP_UP: Duration = Duration::from_secs(120);
/// How long the registry gets to answer its first call.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

const TARGET_MUTATIONS_PER_SEC: f64 = 5_000.0;
const TARGET_CLIENTS: usize = 64;
const TARGET_REPLAY_PER_SEC: f64 = 200_000.0;

/// One measured concurrency level.
struct Level {
    clients: usize,
    outcome: Outcome,
    latency: Latency,
}

impl Level {
    fn per_sec(&self) -> f64 {
        per_sec(self.outcome.ok, self.outcome.elapsed)
    }
}

struct Figures {
    levels: Vec<Level>,
    top_up: Outcome,
    replay: Replay,
}

impl Figures {
    fn errors(&self) -> u64 {
        self.levels
            .iter()
            .map(|level| level.outcome.errors)
            .sum::<u64>()
            + self.top_up.errors
    }

    fn per_sec_at(&self, clients: usize) -> Option<f64> {
        let level = self.levels.iter().find(|level| level.clients == clients)?;
        Some(level.per_sec())
    }
}

pub(crate) fn run(options: &Options) -> anyhow::Result<Value> {
    // On the same disk as the registry's data (not /tmp, which may be memory).
    let scratch = server::data_dir()?;
    let baseline = baseline::measure(scratch.path(), options.phase)?;
    drop(scratch);
    eprintln!(
        "registry: baseline, raw sled on this disk: {} durable writes/s flushing each, {} /s flushing every 64",
        baseline.flush_per_write, baseline.batch_of_64
    );
    let server = InProcessRegistry::start()?;
    eprintln!(
        "registry: in-process on {} ({} worker threads, data in {}), {} cores here",
        server.endpoint(),
        server::WORKER_THREADS,
        server.data_dir().display(),
        cores(),
    );
    let measured = measure_on_client_runtime(&server.endpoint(), options.phase);
    let stopped = server.stop();
    let figures = match (measured, stopped) {
        (Ok(figures), Ok(())) => figures,
        (Ok(_), Err(err)) => return Err(err.context("the registry did not shut down cleanly")),
        (Err(err), Ok(())) => return Err(err),
        (Err(err), Err(server)) => {
            return Err(err.context(format!("the registry stopped with: {server:#}")));
        }
    };
    eprintln!("registry: stopped cleanly");
    Ok(report(&figures, &baseline, options))
}

/// Runs the clients on a runtime of their own, shut down (closing every
/// connection) before the registry is stopped.
fn measure_on_client_runtime(endpoint: &str, phase: Duration) -> anyhow::Result<Figures> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-client")
        .enable_all()
        .build()
        .context("building the clients' runtime")?;
    let figures = runtime.block_on(measure(endpoint, phase));
    runtime.shutdown_timeout(Duration::from_secs(5));
    figures
}

async fn measure(endpoint: &str, phase: Duration) -> anyhow::Result<Figures> {
    wait_until_serving(endpoint).await?;
    let mut levels = Vec::with_capacity(LEVELS.len());
    for clients in LEVELS {
        levels.push(measure_level(endpoint, clients, phase).await?);
    }
    let top_up = top_up(endpoint).await?;
    eprintln!("registry: replaying the change log over WatchChanges…");
    let replay = replay::replay(endpoint).await?;
    eprintln!(
        "registry: replay: {} records in {:.2} s = {} records/s (target ≥ {TARGET_REPLAY_PER_SEC}: {})",
        replay.records,
        replay.elapsed.as_secs_f64(),
        per_sec(replay.records, replay.elapsed),
        verdict(per_sec(replay.records, replay.elapsed) >= TARGET_REPLAY_PER_SEC),
    );
    Ok(Figures {
        levels,
        top_up,
        replay,
    })
}

async fn wait_until_serving(endpoint: &str) -> anyhow::Result<()> {
    let first_call = async {
        let mut client = load::connect(endpoint).await?;
        replay::log_info(&mut client).await
    };
    tokio::time::timeout(STARTUP_TIMEOUT, first_call)
        .await
        .with_context(|| format!("the registry did not answer within {STARTUP_TIMEOUT:?}"))?
        .context("the registry is not serving")?;
    Ok(())
}

async fn measure_level(
    endpoint: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Level> {
    let phase = Phase {
        label: format!("c{clients}"),
        clients,
        mix: Mix::CreateAndUpdate,
        duration,
        max_calls: MAX_CALLS_PER_PHASE,
    };
    let mut outcome = load::run_phase(endpoint, &phase).await?;
    let latency = Latency::of(&mut outcome.latencies);
    let level = Level {
        clients,
        outcome,
        latency,
    };
    print_level(&level);
    Ok(level)
}

fn print_level(level: &Level) {
    let target = if level.clients == TARGET_CLIENTS {
        format!(
            " (target ≥ {TARGET_MUTATIONS_PER_SEC}: {})",
            verdict(level.per_sec() >= TARGET_MUTATIONS_PER_SEC)
        )
    } else {
        String::new()
    };
    eprintln!(
        "registry: {:>2} clients: {} durable mutations in {:.2} s = {} /s{target}; p50 {} ms, p99 {} ms; {} errors",
        level.clients,
        level.outcome.ok,
        level.outcome.elapsed.as_secs_f64(),
        level.per_sec(),
        level.latency.p50_ms,
        level.latency.p99_ms,
        level.outcome.errors,
    );
    if let Some(error) = &level.outcome.first_error {
        eprintln!("registry:    first error: {error}");
    }
}

/// Creates things until the log holds [`MIN_REPLAY_RECORDS`] events (or
/// [`MAX_TOP_UP`] passes); each CreateThing without a thing type logs one.
async fn top_up(endpoint: &str) -> anyhow::Result<Outcome> {
    let mut client = load::connect(endpoint).await?;
    let retained = replay::retained(&replay::log_info(&mut client).await?);
    if retained >= MIN_REPLAY_RECORDS {
        return Ok(Outcome::default());
    }
    let missing = MIN_REPLAY_RECORDS - retained;
    eprintln!(
        "registry: the log holds {retained} events; creating {missing} more things with {TOP_UP_CLIENTS} clients…"
    );
    let phase = Phase {
        label: "fill".into(),
        clients: TOP_UP_CLIENTS,
        mix: Mix::CreateOnly,
        duration: MAX_TOP_UP,
        max_calls: missing,
    };
    let outcome = load::run_phase(endpoint, &phase).await?;
    eprintln!(
        "registry: topped up {} things in {:.2} s = {} /s; {} errors",
        outcome.ok,
        outcome.elapsed.as_secs_f64(),
        per_sec(outcome.ok, outcome.elapsed),
        outcome.errors,
    );
    if let Some(error) = &outcome.first_error {
        eprintln!("registry:    first error: {error}");
    }
    Ok(outcome)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn report(figures: &Figures, baseline: &baseline::Baseline, options: &Options) -> Value {
    let mut rates = Map::new();
    let mut latencies = Map::new();
    let mut calls = Map::new();
    for level in &figures.levels {
        let key = level.clients.to_string();
        rates.insert(key.clone(), json!(level.per_sec()));
        latencies.insert(
            key.clone(),
            json!({ "p50": level.latency.p50_ms, "p99": level.latency.p99_ms }),
        );
        calls.insert(
            key,
            json!({ "ok": level.outcome.ok, "errors": level.outcome.errors }),
        );
    }
    let at_target = figures.per_sec_at(TARGET_CLIENTS).unwrap_or(0.0);
    let replay_rate = per_sec(figures.replay.records, figures.replay.elapsed);
    json!({
        "bench": "registry",
        "mutations_per_sec": rates,
        "latency_ms": latencies,
        "calls": calls,
        "errors": figures.errors(),
        "replay": {
            "records": figures.replay.records,
            "records_per_sec": replay_rate,
            "secs": round(figures.replay.elapsed.as_secs_f64(), 3),
            "topped_up": figures.top_up.ok,
            "top_up_creates_per_sec": per_sec(figures.top_up.ok, figures.top_up.elapsed),
        },
        "baseline": {
            "what": "raw sled in the same run: insert + flush per write, and 64 inserts per flush",
            "sled_flush_per_write_per_sec": baseline.flush_per_write,
            "sled_batch_of_64_per_sec": baseline.batch_of_64,
            "ratio_1_client_to_flush_per_write": round(figures.per_sec_at(1).unwrap_or(0.0) / baseline.flush_per_write.max(1.0), 3),
            "ratio_64_clients_to_batch_of_64": round(at_target / baseline.batch_of_64.max(1.0), 3),
        },
        "targets": {
            "mutations_per_sec_64": TARGET_MUTATIONS_PER_SEC,
            "replay_records_per_sec": TARGET_REPLAY_PER_SEC,
            "mutations_met": at_target >= TARGET_MUTATIONS_PER_SEC,
            "replay_met": replay_rate >= TARGET_REPLAY_PER_SEC,
        },
        "machine": { "cores": cores(), "registry_worker_threads": server::WORKER_THREADS },
        "connections": "one per client",
        "secs_per_level": options.phase.as_secs(),
    })
}
