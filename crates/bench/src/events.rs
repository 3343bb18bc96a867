//! The `events` bench: how soon a registry mutation's `$aws/events` message
//! reaches MQTT subscribers, and the highest event rate Herald sustains
//! without losing any.
//!
//! Herald (registry, config service, gateway) runs in-process on its own
//! runtime ([`WORKER_THREADS`] workers), with the THING event configuration
//! enabled. [`SUBSCRIBERS`] rumqttc clients on the gateway's plain listener,
//! as the dev user, each subscribe to `$aws/events/thing/+/created` at QoS 1;
//! probe things are created until every one of them has received an event, so
//! the configuration and every subscription are live before anything is
//! measured. A driver then issues CreateThing over the registry's gRPC
//! ([`REGISTRY_CONNECTIONS`] connections) on a schedule, open loop: call `i`
//! is due at `start + i / rate` whatever the calls before it are doing.
//!
//! - **Latency**: at [`RATE`] mutations/s for the phase length (`--secs`, at
//!   most [`MAX_PHASE`]), from the instant the driver saw a CreateThing
//!   acknowledged to the instant each subscriber received its `created` event
//!   (the thing is named in the topic). An event may arrive before its
//!   acknowledgement is seen: such samples count as zero and are reported as
//!   `early`. Every acknowledged mutation's event must reach every subscriber
//!   (`lost` counts the pairs that did not, after a drain).
//!   Next to it, Herald's own share: the gateway's
//!   `herald_gateway_event_latency_seconds` histogram over the same phase
//!   (the commit's timestamp to the PUBLISH written for a subscriber), read
//!   from the process's metrics recorder, as bucket bounds. On a shared
//!   2-core machine the clients' figure is dominated by the load's own
//!   stalls; this one is not.
//! - **Highest sustained rate with no loss**: short phases ([`STEP_PHASE`]) at
//!   [`STEP_RATES`], in order, until one loses an event, fails a call, or the
//!   driver cannot keep its rate ([`KEEP_RATE`] of it, issued and
//!   acknowledged); the highest rate before that is reported, with the
//!   registry's acknowledged mutations per second in each step for context.
//!
//! The clients run on a second runtime in the same process: the figures
//! include the cost of 100 MQTT clients sharing the machine's cores. Each
//! phase reports the cores Herald's threads and the load's kept busy
//! ([`crate::cpu`]), to show when the machine, not Herald, is the limit.

mod load;
mod record;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use herald_proto::config::v1::{UpdateEventConfigurationsRequest, config_client::ConfigClient};
use serde_json::{Value, json};

use self::{
    load::{Drive, Registry, Subscribers},
    record::{Analysis, FILTER, PhaseRecord, Records},
};
use crate::{
    Options,
    cpu::Split,
    mqtt::server::{InProcessHerald, WORKER_THREADS},
    stats::{Latency, per_sec, round},
};

const SUBSCRIBERS: usize = 100;
/// The latency phase's mutations per second.
const RATE: u32 = 1000;
const MAX_PHASE: Duration = Duration::from_secs(20);
/// The rates tried for the highest sustained one, in order, each for `STEP_PHASE`.
const STEP_RATES: [u32; 8] = [1000, 1250, 1500, 2000, 3000, 4000, 6000, 8000];
const STEP_PHASE: Duration = Duration::from_secs(3);
const REGISTRY_CONNECTIONS: usize = 4;
/// A phase keeps its rate when its calls were issued, and acknowledged, at
/// no less than this share of it.
const KEEP_RATE: f64 = 0.95;

const TARGET_P99_MS: f64 = 10.0;

/// The load's threads, by name: the clients' runtime and the main thread
/// (which runs the driver's schedule); every other thread is Herald's.
const LOAD_THREADS: &[&str] = &["bench-client", "herald-bench"];

/// One measured phase.
struct Phase {
    rate: u32,
    length: Duration,
    things: usize,
    drive: Drive,
    analysis: Analysis,
    latency: Latency,
    /// Cores kept busy during the phase (schedule and drain): (Herald's
    /// threads, the load's).
    cores: (f64, f64),
    /// Herald's own share of the latency over the phase.
    herald_share: HeraldShare,
}

impl Phase {
    fn kept_rate(&self) -> bool {
        keeps_rate(&self.drive, self.rate, self.things)
    }

    /// No call failed, no event lost, the rate kept.
    fn passed(&self) -> bool {
        self.kept_rate() && self.drive.errors == 0 && self.analysis.lost == 0
    }

    fn mutations_per_sec(&self) -> f64 {
        per_sec(self.drive.acked, self.drive.ack_elapsed)
    }

    fn json(&self) -> Value {
        json!({
            "rate_per_sec": self.rate,
            "secs": self.length.as_secs_f64(),
            "issued": self.drive.issued,
            "acknowledged": self.drive.acked,
            "errors": self.drive.errors,
            "first_error": self.drive.first_error,
            "unfinished": self.drive.unfinished,
            "mutations_per_sec": self.mutations_per_sec(),
            "max_driver_lag_ms": round(self.drive.max_lag.as_secs_f64() * 1000.0, 3),
            "deliveries": self.analysis.latencies.len(),
            "lost": self.analysis.lost,
            "early": self.analysis.early,
            "duplicates": self.analysis.duplicates,
            "p50_ms": self.latency.p50_ms,
            "p99_ms": self.latency.p99_ms,
            "kept_rate": self.kept_rate(),
            "passed": self.passed(),
            "cpu_cores_busy": {"herald": self.cores.0, "load": self.cores.1},
            "herald_commit_to_socket": self.herald_share.json(),
        })
    }
}

/// Did the driver keep `rate`: every one of `things` calls issued and
/// finished, issued and acknowledged at no less than [`KEEP_RATE`] of it?
fn keeps_rate(drive: &Drive, rate: u32, things: usize) -> bool {
    let floor = f64::from(rate) * KEEP_RATE;
    // The last call is due (things - 1) / rate after the first.
    let span = |elapsed: Duration| elapsed.as_secs_f64().max(1.0 / f64::from(rate.max(1)));
    let issued_rate = (drive.issued.saturating_sub(1)) as f64 / span(drive.issue_elapsed);
    let acked_rate = (drive.acked.saturating_sub(1)) as f64 / span(drive.ack_elapsed);
    drive.issued == things as u64
        && drive.unfinished == 0
        && issued_rate >= floor
        && acked_rate >= floor
}

/// The highest rate of the steps that passed before the first that did not.
fn highest_without_loss(steps: &[(u32, bool)]) -> Option<u32> {
    steps
        .iter()
        .take_while(|(_, passed)| *passed)
        .map(|(rate, _)| *rate)
        .max()
}

pub(crate) fn run(options: &Options) -> anyhow::Result<Value> {
    let length = options.phase.min(MAX_PHASE);
    // Herald's own figures: the gateway's commit-to-socket histogram.
    herald_runtime::metrics::install().context("installing the metrics recorder")?;
    let herald = InProcessHerald::start("events-data-")?;
    eprintln!(
        "events: herald in-process, plain MQTT on {}, registry on {} ({WORKER_THREADS} worker threads)",
        herald.mqtt, herald.registry
    );
    herald
        .block_on(enable_thing_events(herald.config))
        .context("enabling THING events")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-client")
        .enable_all()
        .build()
        .context("building the clients' runtime")?;
    let measured = runtime.block_on(measure(&herald, length));
    runtime.shutdown_timeout(Duration::from_secs(5));
    let stopped = herald.stop();
    let (main, steps, subscriber_errors) = match (measured, stopped) {
        (Ok(figures), Ok(())) => figures,
        (Ok(_), Err(err)) => return Err(err.context("herald did not shut down cleanly")),
        (Err(err), Ok(())) => return Err(err),
        (Err(err), Err(stopped)) => {
            return Err(err.context(format!("herald stopped with: {stopped:#}")));
        }
    };
    eprintln!("events: herald stopped cleanly");
    Ok(report(&main, &steps, subscriber_errors, length))
}

/// Mutation acknowledged to event received at [`RATE`] for `length`, the
/// subscribers on the gateway at `subscribers_at` (the second of two
/// replicas, for the `cluster` bench): (p50 ms, p99 ms, acknowledged, lost).
pub(crate) async fn latency_at(
    herald: &InProcessHerald,
    subscribers_at: std::net::SocketAddr,
    length: Duration,
) -> anyhow::Result<(f64, f64, u64, u64)> {
    enable_thing_events(herald.config).await?;
    let records = Arc::new(Records::new(1, SUBSCRIBERS));
    let subscribers = Subscribers::connect(subscribers_at, SUBSCRIBERS, records.clone())
        .await
        .context("connecting the subscribers")?;
    let clients = load::registry_clients(herald.registry, REGISTRY_CONNECTIONS).await?;
    load::probe(&mut clients[0].clone(), &records).await?;
    let phase = run_phase(&clients, &records, 0, RATE, length.min(MAX_PHASE)).await;
    subscribers.close().await;
    if phase.drive.errors > 0 {
        anyhow::bail!(
            "{} CreateThing calls failed: {:?}",
            phase.drive.errors,
            phase.drive.first_error
        );
    }
    Ok((
        phase.latency.p50_ms,
        phase.latency.p99_ms,
        phase.drive.acked,
        phase.analysis.lost,
    ))
}

async fn enable_thing_events(config: std::net::SocketAddr) -> anyhow::Result<()> {
    let mut client = ConfigClient::connect(format!("http://{config}"))
        .await
        .context("connecting to the config service")?;
    client
        .update_event_configurations(UpdateEventConfigurationsRequest {
            enabled: [("THING".to_owned(), true)].into(),
        })
        .await
        .context("UpdateEventConfigurations")?;
    Ok(())
}

async fn measure(
    herald: &InProcessHerald,
    length: Duration,
) -> anyhow::Result<(Phase, Vec<Phase>, u64)> {
    let records = Arc::new(Records::new(1 + STEP_RATES.len(), SUBSCRIBERS));
    let started = Instant::now();
    let subscribers = Subscribers::connect(herald.mqtt, SUBSCRIBERS, records.clone())
        .await
        .context("connecting the subscribers")?;
    let clients = load::registry_clients(herald.registry, REGISTRY_CONNECTIONS).await?;
    load::probe(&mut clients[0].clone(), &records).await?;
    eprintln!(
        "events: {SUBSCRIBERS} subscribers on {FILTER}, all receiving, in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let main = run_phase(&clients, &records, 0, RATE, length).await;
    eprintln!(
        "events: Herald's own share, commit to PUBLISH written (the gateway's histogram, bucket bounds): p50 <= {:?} ms, p99 <= {:?} ms over {} deliveries",
        main.herald_share.quantile_ms(0.5),
        main.herald_share.quantile_ms(0.99),
        main.herald_share.total()
    );
    eprintln!(
        "events: {RATE} mutations/s for {} s: {} acknowledged ({} errors), p50 {} ms, p99 {} ms, {} lost, {} early; cores busy: herald {}, load {}",
        length.as_secs(),
        main.drive.acked,
        main.drive.errors,
        main.latency.p50_ms,
        main.latency.p99_ms,
        main.analysis.lost,
        main.analysis.early,
        main.cores.0,
        main.cores.1
    );
    let mut steps = Vec::new();
    for (i, rate) in STEP_RATES.into_iter().enumerate() {
        let step = run_phase(&clients, &records, 1 + i, rate, STEP_PHASE).await;
        eprintln!(
            "events: step {rate}/s: {} mutations/s acknowledged, {} lost, {} errors, p99 {} ms, cores busy: herald {}, load {}; rate {}: {}",
            step.mutations_per_sec(),
            step.analysis.lost,
            step.drive.errors,
            step.latency.p99_ms,
            step.cores.0,
            step.cores.1,
            if step.kept_rate() { "kept" } else { "NOT kept" },
            if step.passed() { "passed" } else { "failed" }
        );
        let passed = step.passed();
        steps.push(step);
        if !passed {
            break;
        }
    }
    let subscriber_errors = subscribers.errors();
    subscribers.close().await;
    Ok((main, steps, subscriber_errors))
}

async fn run_phase(
    clients: &[Registry],
    records: &Arc<Records>,
    index: usize,
    rate: u32,
    length: Duration,
) -> Phase {
    let things = ((f64::from(rate) * length.as_secs_f64()) as usize).max(1);
    let record = records.phases[index].get_or_init(|| PhaseRecord::new(things, SUBSCRIBERS));
    let cpu_before = Split::now(LOAD_THREADS);
    let share_before = HeraldShare::read();
    let started = Instant::now();
    let drive = load::drive(clients, index, rate, records.clone()).await;
    load::drain(record, record.acked() * SUBSCRIBERS as u64).await;
    let (load_cores, herald_cores) =
        Split::now(LOAD_THREADS).cores_since(&cpu_before, started.elapsed());
    let mut analysis = record.analyse();
    let latency = Latency::of(&mut analysis.latencies);
    Phase {
        rate,
        length,
        things,
        drive,
        analysis,
        latency,
        cores: (herald_cores, load_cores),
        herald_share: HeraldShare::read().since(&share_before),
    }
}

/// The gateway's `herald_gateway_event_latency_seconds` histogram: a
/// registry event's commit (the registry's timestamp, in milliseconds) to
/// its PUBLISH written for a subscriber, inside Herald, without the
/// clients' own stalls. Cumulative bucket counts by upper bound.
#[derive(Debug, Default, Clone)]
struct HeraldShare {
    buckets: Vec<(f64, u64)>,
}

impl HeraldShare {
    const BUCKET: &str = "herald_gateway_event_latency_seconds_bucket{le=\"";

    /// The histogram as the process's recorder holds it now.
    fn read() -> HeraldShare {
        let text = herald_runtime::metrics::render().unwrap_or_default();
        let buckets = text
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(Self::BUCKET)?;
                let (le, count) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count.trim().parse::<f64>().ok()? as u64))
            })
            .collect();
        HeraldShare { buckets }
    }

    /// What was recorded after `before`.
    fn since(&self, before: &HeraldShare) -> HeraldShare {
        let earlier = |le: f64| {
            before
                .buckets
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0, |(_, c)| *c)
        };
        HeraldShare {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, count)| (le, count.saturating_sub(earlier(le))))
                .collect(),
        }
    }

    fn total(&self) -> u64 {
        self.buckets.last().map_or(0, |(_, c)| *c)
    }

    /// The upper bound, in milliseconds, of the bucket holding quantile `q`.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil() as u64;
        self.buckets
            .iter()
            .find(|(_, count)| *count >= rank)
            .map(|(le, _)| le * 1000.0)
    }

    fn json(&self) -> Value {
        json!({
            "deliveries": self.total(),
            "p50_ms_at_most": self.quantile_ms(0.5).filter(|v| v.is_finite()),
            "p99_ms_at_most": self.quantile_ms(0.99).filter(|v| v.is_finite()),
        })
    }
}

fn report(main: &Phase, steps: &[Phase], subscriber_errors: u64, length: Duration) -> Value {
    let outcomes: Vec<(u32, bool)> = steps.iter().map(|s| (s.rate, s.passed())).collect();
    let highest = highest_without_loss(&outcomes);
    let at_highest = highest.and_then(|rate| {
        steps
            .iter()
            .find(|s| s.rate == rate)
            .map(Phase::mutations_per_sec)
    });
    let first_failed = steps.iter().find(|s| !s.passed());
    let no_loss = main.analysis.lost == 0 && main.drive.errors == 0;
    let met = no_loss && main.kept_rate() && main.latency.p99_ms <= TARGET_P99_MS;
    eprintln!(
        "events: p99 {} ms at {RATE}/s (target ≤ {TARGET_P99_MS} ms with no loss: {}); highest rate with no loss {highest:?}/s",
        main.latency.p99_ms,
        if met { "met" } else { "NOT met" }
    );
    json!({
        "bench": "events",
        "phase_secs": length.as_secs(),
        "subscribers": SUBSCRIBERS,
        "filter": FILTER,
        "qos": 1,
        "herald_worker_threads": WORKER_THREADS,
        "registry_connections": REGISTRY_CONNECTIONS,
        "latency": main.json(),
        "sustained": {
            "step_secs": STEP_PHASE.as_secs(),
            "steps": steps.iter().map(Phase::json).collect::<Vec<_>>(),
            "highest_rate_no_loss": highest,
            "mutations_per_sec_at_highest": at_highest,
            "first_failed_rate": first_failed.map(|s| s.rate),
            "mutations_per_sec_at_first_failed": first_failed.map(Phase::mutations_per_sec),
        },
        "errors": main.drive.errors,
        "subscriber_errors": subscriber_errors,
        "targets": {
            "rate_per_sec": RATE,
            "p99_ms_max": TARGET_P99_MS,
            "no_loss": no_loss,
            "p99_met": met,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn herald_share_quantiles_are_bucket_bounds_of_what_came_since() {
        let before = HeraldShare {
            buckets: vec![(0.001, 5), (0.0025, 5), (f64::INFINITY, 5)],
        };
        let after = HeraldShare {
            buckets: vec![(0.001, 55), (0.0025, 104), (f64::INFINITY, 105)],
        };
        let share = after.since(&before);
        assert_eq!(share.total(), 100);
        assert_eq!(share.quantile_ms(0.5), Some(1.0));
        assert_eq!(share.quantile_ms(0.99), Some(2.5));
        assert_eq!(share.quantile_ms(1.0), Some(f64::INFINITY));
        assert_eq!(HeraldShare::default().quantile_ms(0.5), None);
    }

    fn drive(issued: u64, acked: u64, issue_ms: u64, ack_ms: u64) -> Drive {
        Drive {
            issued,
            acked,
            issue_elapsed: Duration::from_millis(issue_ms),
            ack_elapsed: Duration::from_millis(ack_ms),
            ..Drive::default()
        }
    }

    #[test]
    fn a_rate_is_kept_when_issued_and_acknowledged_on_schedule() {
        // 1000 calls at 1000/s: the last is due at 999 ms.
        assert!(keeps_rate(&drive(1000, 1000, 999, 1001), 1000, 1000));
        // Issued late: 1000 calls over 1.2 s.
        assert!(!keeps_rate(&drive(1000, 1000, 1200, 1201), 1000, 1000));
        // Acknowledged late.
        assert!(!keeps_rate(&drive(1000, 1000, 999, 1300), 1000, 1000));
        // Not every call issued.
        assert!(!keeps_rate(&drive(900, 900, 899, 900), 1000, 1000));
        let mut unfinished = drive(1000, 990, 999, 1000);
        unfinished.unfinished = 10;
        assert!(!keeps_rate(&unfinished, 1000, 1000));
    }

    #[test]
    fn the_highest_rate_is_the_last_passed_before_a_failure() {
        assert_eq!(
            highest_without_loss(&[(1000, true), (2000, true), (4000, false)]),
            Some(2000)
        );
        assert_eq!(
            highest_without_loss(&[(1000, true), (2000, false), (4000, true)]),
            Some(1000)
        );
        assert_eq!(highest_without_loss(&[(1000, false)]), None);
        assert_eq!(highest_without_loss(&[]), None);
    }
}
