//! The command line: `cargo xtask <command> [options]`.

use std::{ffi::OsString, path::PathBuf};

use crate::util::{Result, bail};

pub(crate) const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  dev [--data-dir DIR] [--cluster]
                         build the services, run them with logs prefixed by service,
                         stop them on Ctrl-C or SIGTERM (data in DIR/<service>, default .herald);
                         --cluster: PostgreSQL (port 55432) and NATS (4222) too, the registry
                         and config on PostgreSQL, and a second gateway (8081, 1884, 8884)
  test                   cargo fmt --check, gen-operations --check, clippy -D warnings,
                         nextest (or cargo test), then the end-to-end suites if there are any
  e2e                    build the binaries and run the end-to-end suites
  bench [NAME [ARGS...]] build herald-bench in release mode and run bench NAME;
                         without NAME, list the benches
  fuzz [--secs N]        fuzz each target (policy, SigV4, MQTT) for N seconds (default 60)
                         (install it once: cargo install cargo-fuzz --locked)
  gen-operations [--check]
                         write the gateway's AWS IoT operation table from the installed
                         botocore's model; with --check, fail if the committed one differs
  help                   print this message

Each service reads HERALD_<SERVICE>__<SECTION>__<KEY> overrides from the environment,
e.g. HERALD_REGISTRY__GRPC__LISTEN_ADDR=127.0.0.1:50061 cargo xtask dev";

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cmd {
    Help,
    Dev(Dev),
    Test,
    E2e,
    Bench(Bench),
    Fuzz(Fuzz),
    GenOperations(GenOperations),
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct GenOperations {
    /// Compare with the committed file instead of writing it.
    pub(crate) check: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Fuzz {
    pub(crate) secs: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Dev {
    pub(crate) data_dir: Option<PathBuf>,
    /// PostgreSQL, NATS and two gateways.
    pub(crate) cluster: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Bench {
    /// None: list the benches.
    pub(crate) name: Option<OsString>,
    /// Passed to `herald-bench` after the name.
    pub(crate) args: Vec<OsString>,
}

/// Parses the arguments after `xtask`.
pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cmd> {
    let mut args = args.into_iter();
    let Some(cmd) = args.next() else {
        return Ok(Cmd::Help);
    };
    let rest: Vec<OsString> = args.collect();
    if cmd != "bench" && rest.iter().any(|arg| arg == "-h" || arg == "--help") {
        return Ok(Cmd::Help);
    }
    let parsed = match cmd.to_string_lossy().as_ref() {
        "help" | "-h" | "--help" => Cmd::Help,
        "dev" => Cmd::Dev(parse_dev(rest)?),
        "test" => {
            no_arguments("test", &rest)?;
            Cmd::Test
        }
        "e2e" => {
            no_arguments("e2e", &rest)?;
            Cmd::E2e
        }
        "fuzz" => Cmd::Fuzz(parse_fuzz(rest)?),
        "gen-operations" => Cmd::GenOperations(parse_gen_operations(&rest)?),
        "bench" => {
            let mut rest = rest.into_iter();
            match rest.next() {
                None => Cmd::Bench(Bench {
                    name: None,
                    args: Vec::new(),
                }),
                Some(flag) if flag == "-h" || flag == "--help" || flag == "--list" => {
                    Cmd::Bench(Bench {
                        name: None,
                        args: Vec::new(),
                    })
                }
                Some(flag) if flag.to_string_lossy().starts_with('-') => {
                    bail!(
                        "bench: the bench name comes first, before {}; see `cargo xtask help`",
                        flag.to_string_lossy()
                    )
                }
                Some(name) => Cmd::Bench(Bench {
                    name: Some(name),
                    args: rest.collect(),
                }),
            }
        }
        other => bail!("unknown command {other:?}; see `cargo xtask help`"),
    };
    Ok(parsed)
}

fn parse_dev(args: Vec<OsString>) -> Result<Dev> {
    let mut data_dir = None;
    let mut cluster = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--cluster" {
            cluster = true;
        } else if text == "--data-dir" {
            let Some(dir) = args.next() else {
                bail!("dev: --data-dir needs a directory")
            };
            data_dir = Some(PathBuf::from(dir));
        } else if let Some(dir) = text.strip_prefix("--data-dir=") {
            data_dir = Some(PathBuf::from(dir));
        } else {
            bail!("dev: unknown argument {text:?}; see `cargo xtask help`");
        }
    }
    Ok(Dev { data_dir, cluster })
}

fn no_arguments(cmd: &str, rest: &[OsString]) -> Result<()> {
    if let Some(arg) = rest.first() {
        bail!(
            "{cmd} takes no arguments, got {:?}; see `cargo xtask help`",
            arg.to_string_lossy()
        );
    }
    Ok(())
}

fn parse_gen_operations(args: &[OsString]) -> Result<GenOperations> {
    match args {
        [] => Ok(GenOperations { check: false }),
        [flag] if flag == "--check" => Ok(GenOperations { check: true }),
        [arg, ..] => bail!(
            "gen-operations: unknown argument {:?}; usage: cargo xtask gen-operations [--check]",
            arg.to_string_lossy()
        ),
    }
}

fn parse_fuzz(args: Vec<OsString>) -> Result<Fuzz> {
    let mut secs = 60;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg != "--secs" {
            bail!("fuzz: unknown argument {arg:?}; usage: cargo xtask fuzz [--secs N]");
        }
        let value = args.next().unwrap_or_default();
        secs = match value.to_string_lossy().parse() {
            Ok(n) if n > 0 => n,
            _ => bail!("fuzz: --secs takes a whole number of seconds, not {value:?}"),
        };
    }
    Ok(Fuzz { secs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Cmd> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parse_str(&[]).unwrap(), Cmd::Help);
        assert_eq!(parse_str(&["help"]).unwrap(), Cmd::Help);
        assert_eq!(parse_str(&["test", "--help"]).unwrap(), Cmd::Help);
        assert_eq!(parse_str(&["test"]).unwrap(), Cmd::Test);
        assert_eq!(parse_str(&["e2e"]).unwrap(), Cmd::E2e);
        assert_eq!(
            parse_str(&["dev"]).unwrap(),
            Cmd::Dev(Dev {
                data_dir: None,
                cluster: false
            })
        );
        assert_eq!(
            parse_str(&["dev", "--cluster"]).unwrap(),
            Cmd::Dev(Dev {
                data_dir: None,
                cluster: true
            })
        );
        assert_eq!(
            parse_str(&["dev", "--data-dir", "/tmp/h"]).unwrap(),
            Cmd::Dev(Dev {
                data_dir: Some("/tmp/h".into()),
                cluster: false
            })
        );
        assert_eq!(
            parse_str(&["dev", "--data-dir=rel"]).unwrap(),
            Cmd::Dev(Dev {
                data_dir: Some("rel".into()),
                cluster: false
            })
        );
        assert_eq!(
            parse_str(&["gen-operations"]).unwrap(),
            Cmd::GenOperations(GenOperations { check: false })
        );
        assert_eq!(
            parse_str(&["gen-operations", "--check"]).unwrap(),
            Cmd::GenOperations(GenOperations { check: true })
        );
        assert_eq!(
            parse_str(&["bench"]).unwrap(),
            Cmd::Bench(Bench {
                name: None,
                args: vec![]
            })
        );
        assert_eq!(
            parse_str(&["bench", "registry", "--secs", "2"]).unwrap(),
            Cmd::Bench(Bench {
                name: Some("registry".into()),
                args: vec!["--secs".into(), "2".into()]
            })
        );
    }

    #[test]
    fn mistakes_are_refused() {
        for args in [
            &["frobnicate"][..],
            &["dev", "--data-dir"],
            &["dev", "--port", "1"],
            &["test", "x"],
            &["bench", "--secs", "2"],
            &["gen-operations", "--write"],
            &["gen-operations", "--check", "--check"],
        ] {
            assert!(parse_str(args).is_err(), "{args:?} parsed");
        }
    }
}
