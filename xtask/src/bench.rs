//! `cargo xtask bench <name>`: build `herald-bench` in release mode and run one
//! of its benches from the project root, passing its exit status on.
//!
//! `herald-bench` prints one JSON object as its last line of stdout and writes
//! the same to `target/bench/<name>.json`; it is the authority on bench names.

use std::process::{Command, ExitCode};

use crate::{
    flags,
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
        "MQTT fan-out through the gateway vs Mosquitto: 1 -> 100/1000 subscribers, QoS 0/1, latency",
    ),
];

/// Planned, not written yet.
const PLANNED: &[&str] = &["events"];

pub(crate) fn run(flags: &flags::Bench) -> Result<ExitCode> {
    let Some(name) = &flags.name else {
        list();
        return Ok(ExitCode::SUCCESS);
    };
    let root = util::project_root();
    util::run(util::cargo(&root).args(["build", "--release", "-p", "herald-bench"]))?;
    let bin = util::target_dir(&root).join("release").join("herald-bench");
    let mut cmd = Command::new(&bin);
    cmd.current_dir(&root).arg(name).args(&flags.args);
    let shown = util::show(&cmd);
    eprintln!("$ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("run {}", bin.display()))?;
    Ok(ExitCode::from(util::exit_code(status)))
}

fn list() {
    println!("usage: cargo xtask bench <name> [args for herald-bench, e.g. --secs N]\n\nbenches:");
    for (name, what) in BENCHES {
        println!("  {name:<10} {what}");
    }
    println!("\nplanned: {}", PLANNED.join(", "));
}
