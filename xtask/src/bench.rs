//! `cargo xtask bench <name>`: build `herald-bench` and the service binaries
//! (`registry`, `config`, `gateway`, which some benches start as processes of
//! their own, from next to `herald-bench`) in release mode, and run one of
//! its benches from the project root, passing its exit status on.
//!
//! `herald-bench` prints one JSON object as its last line of stdout and writes
//! the same to `target/bench/<name>.json`; it is the authority on bench names.

use std::process::{Command, ExitCode};

use crate::{
    flags,
    postgres::{self, Postgres},
    util::{self, Context, Result},
};

/// The benches `herald-bench` knows, with what each measures.
const BENCHES: &[(&str, &str)] = &[
    (
        "registry",
        "registry gRPC over loopback: closed-loop mutation load, then change log replay",
    ),
    (
        "policy",
        "policy engine: decisions per second on one core, 10-statement policy with variables",
    ),
    (
        "mqtt",
        "MQTT through the gateway vs Mosquitto: fan-out 1 -> 100/1000 subscribers, QoS 0/1, latency; memory per idle connection at 10,000; plain and TLS connections accepted per second",
    ),
    (
        "jobs",
        "a snapshot job on 10,000 things, 1,000 of them on MQTT: CreateJob to every notify-next; device updates/s end to end; vs the registry's mutations/s",
    ),
    (
        "search",
        "fleet indexing at 100,000 things: SearchIndex p50/p99 for selective and broad queries, GetStatistics, vs a ListThings scan; stale reads after acknowledged updates",
    ),
    (
        "events",
        "$aws/events latency, mutation acknowledged -> event received (1,000/s, 100 subscribers); highest rate with no loss",
    ),
    (
        "cluster",
        "beyond one machine: durable mutations/s at 64 clients on PostgreSQL vs sled; QoS 1 fan-out to 1,000 subscribers over two gateways joined by NATS vs one gateway (starts PostgreSQL; needs nats-server)",
    ),
    (
        "shadow",
        "Device Shadow: updates/s end to end (MQTT update -> /accepted and update/delta) with 1,000 devices, and over gRPC alone, vs the registry's durable mutations/s (UpdateThing, 64 clients)",
    ),
];

/// Planned, not written yet.
const PLANNED: &[&str] = &[];

/// The packages built in release mode before a bench runs: the bench and the
/// services it may start as processes.
const PACKAGES: &[&str] = &[
    "herald-bench",
    "herald-registry",
    "herald-config",
    "herald-gateway",
];

pub(crate) fn run(flags: &flags::Bench) -> Result<ExitCode> {
    let Some(name) = &flags.name else {
        list();
        return Ok(ExitCode::SUCCESS);
    };
    let root = util::project_root();
    let mut build = util::cargo(&root);
    build.args(["build", "--release"]);
    for package in PACKAGES {
        build.args(["-p", package]);
    }
    util::run(&mut build)?;
    let bin = util::target_dir(&root).join("release").join("herald-bench");
    let mut cmd = Command::new(&bin);
    cmd.current_dir(&root).arg(name).args(&flags.args);
    // The cluster bench gets a PostgreSQL server of its own, with an empty
    // database, for this run.
    let mut postgres_run = None;
    if name == "cluster" {
        let dir =
            std::env::temp_dir().join(format!("herald-bench-postgres-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let server = Postgres::start(&dir, postgres::free_port()?)?;
        server.create_database("herald_bench")?;
        cmd.env("HERALD_BENCH_POSTGRES", server.url("herald_bench"));
        postgres_run = Some((server, dir));
    }
    let shown = util::show(&cmd);
    eprintln!("$ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("run {}", bin.display()))?;
    if let Some((mut server, dir)) = postgres_run {
        server.stop_now();
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(ExitCode::from(util::exit_code(status)))
}

fn list() {
    println!("usage: cargo xtask bench <name> [args for herald-bench, e.g. --secs N]\n\nbenches:");
    for (name, what) in BENCHES {
        println!("  {name:<10} {what}");
    }
    if !PLANNED.is_empty() {
        println!("\nplanned: {}", PLANNED.join(", "));
    }
}
