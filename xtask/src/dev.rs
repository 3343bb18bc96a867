//! `cargo xtask dev`: build the services, run them with their logs prefixed,
//! wait until each listens, and stop them in reverse order on Ctrl-C or SIGTERM.
//!
//! The children run in their own process group, so a Ctrl-C in the terminal
//! reaches only xtask, which then sends SIGTERM to each child by PID (gateway
//! first, registry last), waits up to 15 s for it, and kills it after that.
//! A second Ctrl-C kills whatever is still running at once.

use std::{
    collections::HashMap,
    io::{self, BufRead, BufReader, Read, Write},
    net::SocketAddr,
    os::unix::process::{CommandExt, ExitStatusExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use crate::{
    cluster, flags,
    services::{self, Endpoint, Service},
    util::{self, Context, Error, Result, bail, format_err},
};

/// How long a service may take to listen after it starts.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How long a service may take to exit after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// How long a stopped service's log pumps may take to drain.
const DRAIN_DEADLINE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(100);

pub(crate) fn run(flags: &flags::Dev) -> Result<()> {
    let root = util::project_root();
    let data_dir = data_dir(&root, flags.data_dir.as_deref())?;
    let services = services::present(&root);
    if services.is_empty() {
        bail!("no service crates under {}", root.display());
    }

    // Resolve every address first, so a bad override fails before anything starts.
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let mut plan = Vec::new();
    for svc in &services {
        let addrs = svc.listen_addrs(&env)?;
        if let Some((endpoint, _)) = addrs.iter().find(|(_, addr)| addr.port() == 0) {
            bail!(
                "{}: dev needs fixed ports, but {} is port 0",
                svc.name,
                svc.env_key(endpoint.setting)
            );
        }
        plan.push(Planned {
            svc,
            name: svc.name,
            addrs,
            env: Vec::new(),
        });
    }
    let cluster = if flags.cluster {
        Some(cluster::plan(&mut plan, &data_dir)?)
    } else {
        None
    };

    let mut build = util::cargo(&root);
    build.args(["build", "--bins"]);
    for svc in &services {
        build.args(["-p", svc.package]);
    }
    util::run(&mut build)?;
    std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;

    let signals = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&signals);
    ctrlc::set_handler(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    })
    .context("install the Ctrl-C and SIGTERM handler")?;

    let bin_dir = util::target_dir(&root).join("debug");
    let mut running = Vec::new();
    // PostgreSQL and NATS first, stopped (when dropped) after the services.
    let backends = match &cluster {
        Some(cluster) => Some(cluster.start(&data_dir)?),
        None => None,
    };
    let reason = match start_all(&plan, &root, &bin_dir, &data_dir, &signals, &mut running) {
        Ok(()) => {
            announce(&plan, &data_dir);
            if let Some(backends) = &backends {
                backends.announce();
            }
            supervise(&mut running, &signals)
        }
        Err(stop) => stop,
    };
    if let Stop::Failed(err) = &reason
        && running.iter_mut().any(|child| child.poll().is_none())
    {
        eprintln!("xtask: {err}; stopping the others");
    }
    let clean = stop_all(&mut running, &signals);
    drop(backends);
    match reason {
        Stop::Signal if clean => Ok(()),
        Stop::Signal => bail!("not every service exited cleanly"),
        Stop::Failed(err) => Err(err),
    }
}

/// Why the services are being stopped.
enum Stop {
    /// Ctrl-C or SIGTERM: a clean exit of every service is a success.
    Signal,
    /// A service failed to start or exited on its own.
    Failed(Error),
}

/// A service to start: which binary, under which name (its log prefix and
/// data folder), where it listens, and settings of its own.
pub(crate) struct Planned {
    pub(crate) svc: &'static Service,
    pub(crate) name: &'static str,
    pub(crate) addrs: Vec<(&'static Endpoint, SocketAddr)>,
    pub(crate) env: Vec<(String, String)>,
}

/// A service process that xtask started.
struct Running {
    name: &'static str,
    child: Child,
    status: Option<ExitStatus>,
    pumps: Vec<JoinHandle<()>>,
}

impl Running {
    /// The exit status, once the process has exited (reaped here, and only here,
    /// so its PID cannot be reused while we may still signal it).
    fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.status = Some(status);
        }
        self.status
    }

    /// Waits a little for the log pumps to pass on the last lines.
    fn drain_logs(&mut self) {
        let deadline = Instant::now() + DRAIN_DEADLINE;
        while Instant::now() < deadline && !self.pumps.iter().all(JoinHandle::is_finished) {
            thread::sleep(Duration::from_millis(20));
        }
        for pump in std::mem::take(&mut self.pumps) {
            if pump.is_finished() {
                let _ = pump.join();
            }
        }
    }
}

fn start_all(
    plan: &[Planned],
    root: &Path,
    bin_dir: &Path,
    data_dir: &Path,
    signals: &AtomicUsize,
    running: &mut Vec<Running>,
) -> Result<(), Stop> {
    for planned in plan {
        for (endpoint, addr) in &planned.addrs {
            if util::accepts_tcp(*addr) {
                return Err(Stop::Failed(format_err!(
                    "{}: {addr} is already in use; stop what listens there or set {}",
                    planned.name,
                    planned.svc.env_key(endpoint.setting)
                )));
            }
        }
        let mut links = upstream_env(planned.svc, plan);
        links.extend(planned.env.iter().cloned());
        let child = spawn(planned, root, bin_dir, data_dir, &links).map_err(Stop::Failed)?;
        running.push(child);
        let child = running.last_mut().expect("just pushed");
        wait_ready(child, &planned.addrs, signals)?;
        eprintln!("xtask: {} is ready", planned.name);
    }
    Ok(())
}

/// What only a development run sets, unless the environment already does:
/// internal TLS off, so the services talk plain gRPC on loopback (and
/// `grpcurl -plaintext` works).
fn dev_only_env(svc: &Service) -> Vec<(String, String)> {
    let key = svc.env_key(INTERNAL_TLS_ENABLED);
    if std::env::var_os(&key).is_some() {
        return Vec::new();
    }
    vec![(key, "false".to_owned())]
}

/// The setting that turns internal TLS on or off, below a service's prefix.
const INTERNAL_TLS_ENABLED: &str = "INTERNAL_TLS__ENABLED";

/// The settings that point `svc` at the services it calls, unless already set.
fn upstream_env(svc: &Service, plan: &[Planned]) -> Vec<(String, String)> {
    svc.upstreams
        .iter()
        .filter(|(setting, _)| std::env::var_os(svc.env_key(setting)).is_none())
        .filter_map(|(setting, name)| {
            let other = plan.iter().find(|other| other.name == *name)?;
            let (_, addr) = other.addrs.first()?;
            Some((svc.env_key(setting), format!("http://{addr}")))
        })
        .collect()
}

fn spawn(
    planned: &Planned,
    root: &Path,
    bin_dir: &Path,
    data_dir: &Path,
    links: &[(String, String)],
) -> Result<Running> {
    let (svc, name) = (planned.svc, planned.name);
    let bin = bin_dir.join(svc.name);
    let mut cmd = Command::new(&bin);
    cmd.current_dir(root)
        .env(svc.env_key("DATA_DIR"), data_dir.join(name))
        // Where it listens, as planned (a listener off by default, such as
        // MQTT over WebSockets, is turned on here).
        .envs(
            planned
                .addrs
                .iter()
                .map(|(endpoint, addr)| (svc.env_key(endpoint.setting), addr.to_string())),
        )
        .envs(links.iter().map(|(k, v)| (k, v)))
        .envs(dev_only_env(svc))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: the terminal's Ctrl-C goes to xtask only.
        .process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    eprintln!("xtask: started {name} (pid {})", child.id());
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(pump(name, out, Sink::Stdout));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(pump(name, err, Sink::Stderr));
    }
    Ok(Running {
        name,
        child,
        status: None,
        pumps,
    })
}

/// Where a child's output lines go.
enum Sink {
    Stdout,
    Stderr,
    /// Kept for a test to look at.
    #[cfg(test)]
    Lines(Arc<std::sync::Mutex<Vec<String>>>),
}

/// Copies `from` line by line to our stdout or stderr, each line prefixed `[name] `.
fn pump(name: &'static str, from: impl Read + Send + 'static, sink: Sink) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut from = BufReader::new(from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match from.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']);
            // A closed terminal or pipe must not stop the child: ignore write errors.
            let _ = match &sink {
                Sink::Stdout => writeln!(io::stdout().lock(), "[{name}] {text}"),
                Sink::Stderr => writeln!(io::stderr().lock(), "[{name}] {text}"),
                #[cfg(test)]
                Sink::Lines(lines) => {
                    lines.lock().unwrap().push(format!("[{name}] {text}"));
                    Ok(())
                }
            };
        }
    })
}

/// Polls each of the service's listen addresses with a TCP connect until all
/// accept, the process exits, a signal arrives, or the deadline passes.
fn wait_ready(
    running: &mut Running,
    addrs: &[(&'static Endpoint, SocketAddr)],
    signals: &AtomicUsize,
) -> Result<(), Stop> {
    let name = running.name;
    let deadline = Instant::now() + READY_DEADLINE;
    let mut waiting: Vec<SocketAddr> = addrs.iter().map(|(_, addr)| *addr).collect();
    loop {
        if signals.load(Ordering::SeqCst) > 0 {
            return Err(Stop::Signal);
        }
        if let Some(status) = running.poll() {
            return Err(Stop::Failed(format_err!(
                "{name} exited early ({})",
                util::describe(status)
            )));
        }
        waiting.retain(|addr| !util::accepts_tcp(*addr));
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Stop::Failed(format_err!(
                "{name} is not listening on {} after {}s",
                waiting[0],
                READY_DEADLINE.as_secs()
            )));
        }
        thread::sleep(POLL);
    }
}

fn announce(plan: &[Planned], data_dir: &Path) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "\nherald is running (Ctrl-C stops it):");
    for planned in plan {
        for (endpoint, addr) in &planned.addrs {
            let _ = writeln!(
                out,
                "  {:<9} {}://{}",
                planned.name,
                endpoint.scheme,
                util::connect_addr(*addr)
            );
        }
    }
    let _ = writeln!(out, "  {:<9} {}\n", "data", data_dir.display());
}

/// Waits for a signal, or for a service to exit on its own.
fn supervise(running: &mut [Running], signals: &AtomicUsize) -> Stop {
    loop {
        if signals.load(Ordering::SeqCst) > 0 {
            eprintln!("xtask: stopping the services");
            return Stop::Signal;
        }
        for child in running.iter_mut() {
            if let Some(status) = child.poll() {
                return Stop::Failed(format_err!(
                    "{} exited unexpectedly ({})",
                    child.name,
                    util::describe(status)
                ));
            }
        }
        thread::sleep(POLL);
    }
}

/// Stops every service still running, last started first; true when every one
/// of them exited with status 0.
fn stop_all(running: &mut [Running], signals: &AtomicUsize) -> bool {
    let signals_before = signals.load(Ordering::SeqCst);
    let mut clean = true;
    for child in running.iter_mut().rev() {
        let status = match child.poll() {
            Some(status) => status,
            None => stop(child, signals, signals_before),
        };
        child.drain_logs();
        if status.success() {
            eprintln!("xtask: {} stopped", child.name);
        } else {
            eprintln!(
                "xtask: {} ended with {}",
                child.name,
                util::describe(status)
            );
            clean = false;
        }
    }
    clean
}

/// SIGTERM, then up to [`STOP_DEADLINE`] for a graceful exit, then SIGKILL.
fn stop(child: &mut Running, signals: &AtomicUsize, signals_before: usize) -> ExitStatus {
    let name = child.name;
    let pid = child.child.id();
    eprintln!("xtask: sending SIGTERM to {name} (pid {pid})");
    let mut kill = Command::new("kill");
    kill.args(["-s", "TERM", &pid.to_string()]);
    if util::succeeds(&mut kill) {
        let deadline = Instant::now() + STOP_DEADLINE;
        loop {
            if let Some(status) = child.poll() {
                return status;
            }
            if signals.load(Ordering::SeqCst) > signals_before {
                eprintln!("xtask: signalled again; killing {name}");
                break;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "xtask: {name} still running after {}s; killing it",
                    STOP_DEADLINE.as_secs()
                );
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
    } else {
        eprintln!("xtask: could not send SIGTERM to {name}; killing it");
    }
    let _ = child.child.kill();
    // If even waiting fails, report it as what it most likely was: killed (raw wait status 9).
    let status = child
        .child
        .wait()
        .unwrap_or_else(|_| ExitStatus::from_raw(9));
    child.status = Some(status);
    status
}

/// `--data-dir` made absolute (relative to where xtask was started), or `.herald`
/// at the project root.
fn data_dir(root: &Path, flag: Option<&Path>) -> Result<PathBuf> {
    match flag {
        Some(dir) => std::path::absolute(dir).with_context(|| format!("resolve {}", dir.display())),
        None => Ok(root.join(".herald")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_turns_internal_tls_off_for_every_service() {
        for svc in crate::services::SERVICES {
            let key = svc.env_key(INTERNAL_TLS_ENABLED);
            if std::env::var_os(&key).is_some() {
                continue;
            }
            assert_eq!(dev_only_env(svc), vec![(key, "false".to_owned())]);
        }
    }

    #[test]
    fn data_dirs_are_absolute() {
        let root = util::project_root();
        assert_eq!(data_dir(&root, None).unwrap(), root.join(".herald"));
        assert!(
            data_dir(&root, Some(Path::new("rel/dir")))
                .unwrap()
                .is_absolute()
        );
    }

    static FAKE: Service = Service {
        name: "fake",
        package: "fake",
        dir: "fake",
        env_prefix: "HERALD_FAKE",
        endpoints: &[],
        upstreams: &[],
    };

    /// Starts `script` under `sh` as a stand-in service, its output captured,
    /// and waits until it has printed `ready`.
    fn fake_service(script: &str) -> (Running, Arc<std::sync::Mutex<Vec<String>>>) {
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let lines = Arc::default();
        let pumps = vec![
            pump(
                "fake",
                child.stdout.take().unwrap(),
                Sink::Lines(Arc::clone(&lines)),
            ),
            pump(
                "fake",
                child.stderr.take().unwrap(),
                Sink::Lines(Arc::clone(&lines)),
            ),
        ];
        let deadline = Instant::now() + Duration::from_secs(10);
        while !lines
            .lock()
            .unwrap()
            .iter()
            .any(|line| line == "[fake] ready")
        {
            assert!(Instant::now() < deadline, "the stand-in never got ready");
            thread::sleep(Duration::from_millis(10));
        }
        (
            Running {
                name: FAKE.name,
                child,
                status: None,
                pumps,
            },
            lines,
        )
    }

    #[test]
    fn sigterm_stops_a_service_and_its_last_lines_are_kept() {
        let (running, lines) = fake_service(
            "trap 'echo bye >&2; exit 0' TERM; echo ready; while :; do sleep 0.05; done",
        );
        let mut running = vec![running];
        let started = Instant::now();
        assert!(stop_all(&mut running, &AtomicUsize::new(1)));
        assert!(
            started.elapsed() < STOP_DEADLINE,
            "waited for the deadline instead of the exit"
        );
        assert!(running[0].status.is_some_and(|status| status.success()));
        assert_eq!(*lines.lock().unwrap(), ["[fake] ready", "[fake] bye"]);
    }

    #[test]
    fn a_second_signal_kills_a_service_that_ignores_sigterm() {
        let (running, _lines) =
            fake_service("trap '' TERM; echo ready; while :; do sleep 0.05; done");
        let mut running = vec![running];
        let signals = Arc::new(AtomicUsize::new(1));
        let again = Arc::clone(&signals);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            again.fetch_add(1, Ordering::SeqCst);
        });
        let started = Instant::now();
        assert!(
            !stop_all(&mut running, &signals),
            "a killed service is not a clean stop"
        );
        assert!(started.elapsed() < STOP_DEADLINE);
        assert_eq!(
            running[0].status.and_then(|status| status.signal()),
            Some(9)
        );
    }
}
