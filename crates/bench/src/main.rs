//! Herald's load generator: `herald-bench <name> [--secs N]`.
//!
//! Each bench prints human-readable progress to stderr and, as the last line
//! of stdout, one JSON object with its figures; the same JSON is written to
//! `target/bench/<name>.json` under the current directory.

mod cluster;
mod cpu;
mod events;
mod jobs;
mod mqtt;
mod policy;
mod registry;
mod search;
mod shadow;
mod stats;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use serde_json::Value;

/// What every bench is given.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Options {
    /// The bench to run.
    name: String,
    /// How long each measured phase (for example each concurrency level) lasts.
    phase: Duration,
}

type Bench = fn(&Options) -> anyhow::Result<Value>;

/// The known benches, by name.
const BENCHES: &[(&str, Bench)] = &[
    ("registry", registry::run),
    ("policy", policy::run),
    ("mqtt", mqtt::run),
    ("events", events::run),
    ("jobs", jobs::run),
    ("search", search::run),
    ("cluster", cluster::run),
    ("shadow", shadow::run),
];

const DEFAULT_SECS: u64 = 5;
const USAGE: &str = "usage: herald-bench <name> [--secs N]";

fn main() -> anyhow::Result<()> {
    let options = parse_args(std::env::args().skip(1))?;
    let bench = find_bench(&options.name)?;
    let report = bench(&options)?;
    let path = write_report(&options.name, &report)?;
    eprintln!("{}: report written to {}", options.name, path.display());
    print_report(&report)?;
    fail_on_errors(&report)
}

fn parse_args(args: impl IntoIterator<Item = String>) -> anyhow::Result<Options> {
    let mut name = None;
    let mut secs = DEFAULT_SECS;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--secs" => {
                let value = args.next().context("--secs needs a value")?;
                secs = value.parse().with_context(|| {
                    format!("--secs: {value:?} is not a whole number of seconds")
                })?;
                if secs == 0 {
                    bail!("--secs must be at least 1");
                }
            }
            "-h" | "--help" => bail!("{USAGE}; benches: {}", known_names()),
            flag if flag.starts_with('-') => bail!("unknown option {flag:?}; {USAGE}"),
            _ if name.is_some() => bail!("only one bench name may be given; {USAGE}"),
            _ => name = Some(arg),
        }
    }
    let name = name.with_context(|| format!("{USAGE}; benches: {}", known_names()))?;
    Ok(Options {
        name,
        phase: Duration::from_secs(secs),
    })
}

fn find_bench(name: &str) -> anyhow::Result<Bench> {
    match BENCHES.iter().find(|(known, _)| *known == name) {
        Some((_, bench)) => Ok(*bench),
        None => bail!("unknown bench {name:?}; known benches: {}", known_names()),
    }
}

fn known_names() -> String {
    let names: Vec<&str> = BENCHES.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

/// Writes the report to `target/bench/<name>.json` under the current directory.
fn write_report(name: &str, report: &Value) -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from("target").join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(report).context("encoding the report")?;
    std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Prints the report as one JSON line on stdout: the bench's output protocol.
#[allow(clippy::print_stdout)]
fn print_report(report: &Value) -> anyhow::Result<()> {
    let line = serde_json::to_string(report).context("encoding the report")?;
    println!("{line}");
    Ok(())
}

/// A run whose calls failed measured something else: exit non-zero.
fn fail_on_errors(report: &Value) -> anyhow::Result<()> {
    match report.get("errors").and_then(Value::as_u64) {
        Some(errors) if errors > 0 => bail!("{errors} calls failed; the figures are not valid"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn parses_a_name_and_the_phase_length() {
        let options = parse_args(args(&["registry", "--secs", "2"])).unwrap();
        assert_eq!(
            options,
            Options {
                name: "registry".into(),
                phase: Duration::from_secs(2)
            }
        );
        let options = parse_args(args(&["registry"])).unwrap();
        assert_eq!(options.phase, Duration::from_secs(DEFAULT_SECS));
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(parse_args(args(&[])).is_err());
        assert!(parse_args(args(&["registry", "--secs"])).is_err());
        assert!(parse_args(args(&["registry", "--secs", "0"])).is_err());
        assert!(parse_args(args(&["registry", "--fast"])).is_err());
        assert!(parse_args(args(&["registry", "policy"])).is_err());
    }

    #[test]
    fn an_unknown_bench_lists_the_known_ones() {
        let err = find_bench("nope").err().unwrap().to_string();
        assert!(err.contains("registry"), "{err}");
        assert!(find_bench("registry").is_ok());
    }
}
