//! The `search` bench: fleet indexing at 100,000 things. The registry runs
//! in-process on its own runtime; 64 clients create the things over gRPC
//! (each with three attributes: a unique `serial`, one of 10 `tier`s and one
//! of 20 `region`s), then one client measures SearchIndex latency for
//! selective queries (one thing by attribute, a conjunction, a range, a name
//! prefix), a broad one (`*`, first page) and GetStatistics over a tenth of
//! the fleet.
//!
//! The baseline, in the same run: the selective attribute query answered the
//! way the registry answers it without an index, ListThings with
//! `attributeName`/`attributeValue` (a scan of every thing).
//!
//! Consistency: after each of a series of UpdateThing calls, a search issued
//! once the call is acknowledged must see the new value; stale reads are
//! counted and must be zero (the index waits for the change log's durable
//! head before answering).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald_proto::registry::v1::{
    AggregationRequest, AttributePayload, CreateThingRequest, ListThingsRequest, Page,
    SearchIndexRequest, UpdateIndexingConfigurationRequest, UpdateThingRequest,
    registry_client::RegistryClient,
};
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::{
    Options,
    registry::server::InProcessRegistry,
    stats::{Latency, per_sec, round},
};

type Client = RegistryClient<Channel>;

/// Things in the fleet.
const THINGS: u64 = 100_000;
/// Concurrent clients creating them.
const LOADERS: u64 = 64;
/// Timed runs of each query.
const RUNS: usize = 200;
/// Timed runs of the baseline (a scan each).
const BASELINE_RUNS: usize = 20;
/// UpdateThing → SearchIndex pairs checked for consistency.
const CONSISTENCY_CHECKS: usize = 200;
/// The target for a selective query.
const TARGET_P99_MS: f64 = 20.0;
/// Loading stops after this long.
const MAX_LOAD: Duration = Duration::from_secs(300);

fn thing_name(i: u64) -> String {
    format!("dev-{i:06}")
}

pub(crate) fn run(_options: &Options) -> anyhow::Result<Value> {
    let server = InProcessRegistry::start()?;
    eprintln!("search: registry in-process on {}", server.endpoint());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-client")
        .enable_all()
        .build()
        .context("building the clients' runtime")?;
    let measured = runtime.block_on(measure(&server.endpoint()));
    runtime.shutdown_timeout(Duration::from_secs(5));
    let stopped = server.stop();
    let report = measured?;
    stopped.context("the registry did not shut down cleanly")?;
    Ok(report)
}

async fn connect(endpoint: &str) -> anyhow::Result<Client> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match RegistryClient::connect(endpoint.to_owned()).await {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() > deadline => return Err(e).context("connecting"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn create_req(i: u64) -> CreateThingRequest {
    CreateThingRequest {
        thing_name: thing_name(i),
        attribute_payload: Some(AttributePayload {
            attributes: [
                ("serial".to_owned(), i.to_string()),
                ("tier".to_owned(), format!("t{}", i % 10)),
                ("region".to_owned(), format!("r{}", i % 20)),
            ]
            .into(),
            merge: false,
        }),
        ..Default::default()
    }
}

/// Creates the fleet with [`LOADERS`] clients; returns (created, errors, elapsed).
async fn load(endpoint: &str) -> anyhow::Result<(u64, u64, Duration)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for loader in 0..LOADERS {
        let mut client = connect(endpoint).await?;
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut i = loader;
            while i < THINGS && started.elapsed() < MAX_LOAD {
                match client.create_thing(create_req(i)).await {
                    Ok(_) => ok += 1,
                    Err(_) => errors += 1,
                }
                i += LOADERS;
            }
            (ok, errors)
        }));
    }
    let (mut ok, mut errors) = (0, 0);
    for task in tasks {
        let (o, e) = task.await.context("a loader panicked")?;
        ok += o;
        errors += e;
    }
    Ok((ok, errors, started.elapsed()))
}

fn search_req(query: &str) -> SearchIndexRequest {
    SearchIndexRequest {
        index_name: None,
        query_string: query.into(),
        next_token: String::new(),
        max_results: 100,
    }
}

/// One query shape, timed [`RUNS`] times; `query` makes the i-th query.
struct Shape {
    name: &'static str,
    selective: bool,
    query: fn(u64) -> String,
    /// How many things the i-th query matches (checked on every run).
    expected: fn(u64) -> usize,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "one thing by attribute (attributes.serial:N)",
        selective: true,
        query: |i| format!("attributes.serial:{}", (i * 7919) % THINGS),
        expected: |_| 1,
    },
    Shape {
        name: "conjunction (attributes.tier:tA AND attributes.region:rB AND attributes.serial<N)",
        selective: true,
        query: |i| {
            format!(
                "attributes.tier:t{} AND attributes.region:r{} AND attributes.serial<2000",
                (i % 2) * 2,
                (i % 2) * 2
            )
        },
        expected: |_| 100,
    },
    Shape {
        name: "range (attributes.serial:[N TO N+49])",
        selective: true,
        query: |i| {
            let low = (i * 499) % (THINGS - 50);
            format!("attributes.serial:[{low} TO {}]", low + 49)
        },
        expected: |_| 50,
    },
    Shape {
        name: "name prefix (thingName:dev-0NNNN*)",
        selective: true,
        query: |i| format!("thingName:{}*", &thing_name((i * 10) % THINGS)[..9]),
        expected: |_| 10,
    },
    Shape {
        name: "everything (*), first page",
        selective: false,
        query: |_| "*".into(),
        expected: |_| 100,
    },
];

async fn time_shape(client: &mut Client, shape: &Shape) -> anyhow::Result<Latency> {
    let mut latencies = Vec::with_capacity(RUNS);
    for i in 0..RUNS as u64 {
        let query = (shape.query)(i);
        let started = Instant::now();
        let found = client.search_index(search_req(&query)).await?.into_inner();
        latencies.push(started.elapsed());
        let expected = (shape.expected)(i);
        if found.things.len() != expected {
            bail!(
                "{query:?} found {} things, not {expected}",
                found.things.len()
            );
        }
    }
    Ok(Latency::of(&mut latencies))
}

/// The baseline: ListThings filtered by attribute, a scan of every thing.
async fn time_scan(client: &mut Client) -> anyhow::Result<Latency> {
    let mut latencies = Vec::with_capacity(BASELINE_RUNS);
    for i in 0..BASELINE_RUNS as u64 {
        let serial = ((i * 7919) % THINGS).to_string();
        let started = Instant::now();
        let mut next_token = String::new();
        let mut found = 0;
        loop {
            let page = client
                .list_things(ListThingsRequest {
                    page: Some(Page {
                        next_token,
                        max_results: 250,
                    }),
                    attribute_name: Some("serial".into()),
                    attribute_value: Some(serial.clone()),
                    ..Default::default()
                })
                .await?
                .into_inner();
            found += page.things.len();
            if page.next_token.is_empty() {
                break;
            }
            next_token = page.next_token;
        }
        latencies.push(started.elapsed());
        if found != 1 {
            bail!("ListThings serial={serial} found {found} things, not 1");
        }
    }
    Ok(Latency::of(&mut latencies))
}

/// UpdateThing, then at once SearchIndex for the new value: how many
/// searches missed it.
async fn stale_reads(client: &mut Client) -> anyhow::Result<u64> {
    let mut stale = 0;
    for i in 0..CONSISTENCY_CHECKS as u64 {
        let name = thing_name((i * 104_729) % THINGS);
        let marker = format!("m{i}");
        client
            .update_thing(UpdateThingRequest {
                thing_name: name.clone(),
                attribute_payload: Some(AttributePayload {
                    attributes: [("tier".to_owned(), marker.clone())].into(),
                    merge: true,
                }),
                ..Default::default()
            })
            .await?;
        let found = client
            .search_index(search_req(&format!("attributes.tier:{marker}")))
            .await?
            .into_inner();
        if found.things.len() != 1 || found.things[0].thing_name != name {
            stale += 1;
        }
    }
    Ok(stale)
}

async fn measure(endpoint: &str) -> anyhow::Result<Value> {
    let mut client = connect(endpoint).await?;
    client
        .update_indexing_configuration(UpdateIndexingConfigurationRequest {
            thing_indexing_mode: Some("REGISTRY".into()),
            thing_connectivity_indexing_mode: Some("STATUS".into()),
            thing_group_indexing_mode: Some("ON".into()),
            ..Default::default()
        })
        .await
        .context("enabling the index")?;
    eprintln!("search: creating {THINGS} things with {LOADERS} clients…");
    let (created, load_errors, load_time) = load(endpoint).await?;
    eprintln!(
        "search: {created} things in {:.1} s = {} /s; {load_errors} errors",
        load_time.as_secs_f64(),
        round(per_sec(created, load_time), 0)
    );
    if created != THINGS {
        bail!("only {created} of {THINGS} things were created");
    }

    let mut shapes = Vec::new();
    let mut worst_selective_p99: f64 = 0.0;
    let mut by_attribute_p50 = 0.0;
    for shape in SHAPES {
        let latency = time_shape(&mut client, shape).await?;
        eprintln!(
            "search: {}: p50 {} ms, p99 {} ms",
            shape.name, latency.p50_ms, latency.p99_ms
        );
        if shape.selective {
            worst_selective_p99 = worst_selective_p99.max(latency.p99_ms);
        }
        if by_attribute_p50 == 0.0 {
            by_attribute_p50 = latency.p50_ms;
        }
        shapes.push(json!({
            "query": shape.name,
            "selective": shape.selective,
            "p50_ms": latency.p50_ms,
            "p99_ms": latency.p99_ms,
        }));
    }

    let mut statistics = Vec::with_capacity(RUNS);
    for i in 0..RUNS {
        let started = Instant::now();
        let stats = client
            .get_statistics(AggregationRequest {
                index_name: None,
                query_string: format!("attributes.region:r{}", i % 20),
                aggregation_field: "attributes.serial".into(),
            })
            .await?
            .into_inner();
        statistics.push(started.elapsed());
        if stats.count != (THINGS / 20) as i64 {
            bail!(
                "GetStatistics counted {} things, not {}",
                stats.count,
                THINGS / 20
            );
        }
    }
    let statistics = Latency::of(&mut statistics);
    eprintln!(
        "search: GetStatistics over 5,000 things: p50 {} ms, p99 {} ms",
        statistics.p50_ms, statistics.p99_ms
    );

    eprintln!("search: baseline, ListThings by attribute (a scan of {THINGS} things)…");
    let scan = time_scan(&mut client).await?;
    // How many times faster the index answers the same question.
    let speedup = if by_attribute_p50 > 0.0 {
        round(scan.p50_ms / by_attribute_p50, 1)
    } else {
        0.0
    };
    let stale = stale_reads(&mut client).await?;
    let met = worst_selective_p99 <= TARGET_P99_MS;
    eprintln!(
        "search: scan p50 {} ms, p99 {} ms; worst selective p99 {worst_selective_p99} ms (target ≤ {TARGET_P99_MS}: {}); stale reads after an acknowledged update: {stale} of {CONSISTENCY_CHECKS}",
        scan.p50_ms,
        scan.p99_ms,
        if met { "met" } else { "MISSED" },
    );
    Ok(json!({
        "bench": "search",
        "things": THINGS,
        "load_per_sec": round(per_sec(created, load_time), 0),
        "queries": shapes,
        "statistics_5000": { "p50_ms": statistics.p50_ms, "p99_ms": statistics.p99_ms },
        "baseline_scan": { "p50_ms": scan.p50_ms, "p99_ms": scan.p99_ms },
        "scan_over_indexed_p50": speedup,
        "worst_selective_p99_ms": worst_selective_p99,
        "target_p99_ms": TARGET_P99_MS,
        "target_met": met,
        "stale_reads": stale,
        "consistency_checks": CONSISTENCY_CHECKS,
        "errors": load_errors + stale,
    }))
}
