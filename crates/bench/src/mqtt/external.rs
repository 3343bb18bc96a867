//! Herald as separate processes: the release `registry`, `config` and
//! `gateway` binaries next to `herald-bench`, each on port 0 listeners with a
//! temporary data directory, found ready by their `<kind> listening addr=...`
//! log lines. Used where the gateway must not share the bench's process (its
//! memory is measured, and the clients' file descriptors are the bench's).

use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tempfile::TempDir;

const DATA_PARENT: &str = "target/bench";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);

/// One service process and its log file.
struct Service {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// The registry, the config service and the gateway, as child processes;
/// stopped with SIGTERM (gateway first) by [`ExternalHerald::stop`], killed
/// (those PIDs only) on drop.
pub(super) struct ExternalHerald {
    pub(super) mqtt: SocketAddr,
    /// The MQTT TLS listener (mutual TLS).
    pub(super) mqtt_tls: SocketAddr,
    pub(super) config: SocketAddr,
    services: Vec<Service>,
    _dir: TempDir,
}

/// Where the service binaries are: next to this executable (`cargo xtask
/// bench` builds them there, in release mode).
fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding herald-bench's own path")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("herald-bench has no parent directory")
}

/// The directory of the service binaries, once each is found there.
pub(super) fn binaries() -> anyhow::Result<PathBuf> {
    let bins = bin_dir()?;
    for name in ["registry", "config", "gateway"] {
        if !bins.join(name).is_file() {
            bail!(
                "{} is missing: build it with `cargo build --release -p herald-registry \
                 -p herald-config -p herald-gateway` (cargo xtask bench does)",
                bins.join(name).display()
            );
        }
    }
    Ok(bins)
}

impl ExternalHerald {
    /// Starts the three services, the gateway's plain and TLS listeners
    /// taking up to `max_connections` and `max_tls_connections`.
    pub(super) fn start(
        max_connections: usize,
        max_tls_connections: usize,
    ) -> anyhow::Result<ExternalHerald> {
        let bins = binaries()?;
        std::fs::create_dir_all(DATA_PARENT).with_context(|| format!("creating {DATA_PARENT}"))?;
        let dir = tempfile::Builder::new()
            .prefix("mqtt-idle-")
            .tempdir_in(DATA_PARENT)
            .context("creating a data dir")?;
        let root = dir
            .path()
            .canonicalize()
            .context("resolving the data dir")?;
        let mut herald = ExternalHerald {
            mqtt: SocketAddr::from(([127, 0, 0, 1], 0)),
            mqtt_tls: SocketAddr::from(([127, 0, 0, 1], 0)),
            config: SocketAddr::from(([127, 0, 0, 1], 0)),
            services: Vec::new(),
            _dir: dir,
        };
        let data = |name: &str| root.join(name).display().to_string();
        let registry = herald.spawn(
            &bins,
            &root,
            "registry",
            &[
                ("HERALD_REGISTRY__GRPC__LISTEN_ADDR", "127.0.0.1:0".into()),
                ("HERALD_REGISTRY__DATA_DIR", data("registry")),
                ("HERALD_REGISTRY__INTERNAL_TLS__ENABLED", "false".into()),
                (
                    "HERALD_REGISTRY__METRICS__LISTEN_ADDR",
                    "127.0.0.1:0".into(),
                ),
            ],
        )?;
        let registry = herald.wait_listening(registry, "grpc")?;
        let config = herald.spawn(
            &bins,
            &root,
            "config",
            &[
                ("HERALD_CONFIG__GRPC__LISTEN_ADDR", "127.0.0.1:0".into()),
                ("HERALD_CONFIG__DATA_DIR", data("config")),
                ("HERALD_CONFIG__INTERNAL_TLS__ENABLED", "false".into()),
                ("HERALD_CONFIG__METRICS__LISTEN_ADDR", "127.0.0.1:0".into()),
                ("HERALD_CONFIG__REGISTRY_URL", format!("http://{registry}")),
            ],
        )?;
        herald.config = herald.wait_listening(config, "grpc")?;
        let gateway = herald.spawn(
            &bins,
            &root,
            "gateway",
            &[
                ("HERALD_GATEWAY__HTTP__LISTEN_ADDR", "127.0.0.1:0".into()),
                ("HERALD_GATEWAY__METRICS__LISTEN_ADDR", "127.0.0.1:0".into()),
                ("HERALD_GATEWAY__MQTT__LISTEN_ADDR", "127.0.0.1:0".into()),
                (
                    "HERALD_GATEWAY__MQTT__TLS_LISTEN_ADDR",
                    "127.0.0.1:0".into(),
                ),
                ("HERALD_GATEWAY__DATA_DIR", data("gateway")),
                ("HERALD_GATEWAY__INTERNAL_TLS__ENABLED", "false".into()),
                // The caps' sum within the descriptors (the plain listener's
                // default cap is 4,096).
                (
                    "HERALD_GATEWAY__MQTT__MAX_CONNECTIONS",
                    max_connections.to_string(),
                ),
                (
                    "HERALD_GATEWAY__MQTT__MAX_TLS_CONNECTIONS",
                    max_tls_connections.to_string(),
                ),
                ("HERALD_GATEWAY__REGISTRY_URL", format!("http://{registry}")),
                (
                    "HERALD_GATEWAY__CONFIG_URL",
                    format!("http://{}", herald.config),
                ),
            ],
        )?;
        herald.mqtt = herald.wait_listening(gateway, "mqtt")?;
        herald.mqtt_tls = herald.wait_listening(gateway, "mqtt tls")?;
        Ok(herald)
    }

    /// The gateway's PID.
    pub(super) fn gateway_pid(&self) -> u32 {
        self.services
            .iter()
            .find(|service| service.name == "gateway")
            .map_or(0, |service| service.child.id())
    }

    /// Starts one binary, its output into `<root>/<name>.log`; returns its index.
    fn spawn(
        &mut self,
        bins: &Path,
        root: &Path,
        name: &'static str,
        settings: &[(&str, String)],
    ) -> anyhow::Result<usize> {
        let log = root.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("sharing the log file")?;
        let mut cmd = Command::new(bins.join(name));
        // Nothing from our environment may point the service elsewhere.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HERALD_") {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .current_dir(root)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .envs(settings.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", bins.join(name).display()))?;
        self.services.push(Service { name, child, log });
        Ok(self.services.len() - 1)
    }

    /// Waits for the `<kind> listening addr=...` line of service `index`.
    fn wait_listening(&mut self, index: usize, kind: &str) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let service = &mut self.services[index];
        loop {
            let text = std::fs::read_to_string(&service.log).unwrap_or_default();
            if let Some(addr) = text.lines().find_map(|line| listening_addr(line, kind)) {
                return Ok(addr);
            }
            if let Some(status) = service.child.try_wait().context("polling a service")? {
                bail!(
                    "{} exited ({status}) before listening; its log:\n{}",
                    service.name,
                    tail(&text)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not log `{kind} listening` within {READY_TIMEOUT:?}; its log:\n{}",
                    service.name,
                    tail(&text)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGTERM to each service (gateway first), waiting for each to exit;
    /// an error names those that did not exit 0 in time.
    pub(super) fn stop(mut self) -> anyhow::Result<()> {
        let mut failures = Vec::new();
        while let Some(mut service) = self.services.pop() {
            if let Err(err) = terminate(&mut service.child) {
                failures.push(format!("{}: {err:#}", service.name));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            bail!("{}", failures.join("; "))
        }
    }
}

/// Sends SIGTERM (by PID, with `kill`) and waits; kills after [`STOP_TIMEOUT`].
fn terminate(child: &mut Child) -> anyhow::Result<()> {
    if child.try_wait()?.is_none() {
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -TERM failed ({status})");
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            return if status.success() {
                Ok(())
            } else {
                bail!("exited with {status}")
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("still running {STOP_TIMEOUT:?} after SIGTERM; killed");
        }
        std::thread::sleep(POLL);
    }
}

impl Drop for ExternalHerald {
    fn drop(&mut self) {
        // Kills only the processes started above (after `stop`, none are left).
        for service in &mut self.services {
            let _ = service.child.kill();
            let _ = service.child.wait();
        }
    }
}

/// The last lines of a log, for an error message.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The address of a `<kind> listening ... addr=HOST:PORT` log line (plain
/// tracing format), where `kind` is for example `grpc` or `mqtt` (which does
/// not match `mqtt tls listening`).
fn listening_addr(line: &str, kind: &str) -> Option<SocketAddr> {
    let at = line.find(&format!("{kind} listening"))?;
    // The kind must start a word: `grpc` must not match `xgrpc`.
    if line[..at]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric())
    {
        return None;
    }
    let rest = &line[at..];
    let value = &rest[rest.find("addr=")? + "addr=".len()..];
    let value = value
        .split(|c: char| c.is_whitespace() || c == ',')
        .next()?
        .trim_matches('"');
    value.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines_give_their_address() {
        let line = "2026-11-26T09:00:00.000Z  INFO herald_runtime::grpc: grpc listening addr=127.0.0.1:40123";
        assert_eq!(
            listening_addr(line, "grpc"),
            Some("127.0.0.1:40123".parse().unwrap())
        );
        assert_eq!(listening_addr(line, "mqtt"), None);
        let tls = "INFO herald_gateway: mqtt tls listening addr=127.0.0.1:5000 names=[]";
        assert_eq!(listening_addr(tls, "mqtt"), None);
        assert_eq!(
            listening_addr(tls, "mqtt tls"),
            Some("127.0.0.1:5000".parse().unwrap())
        );
        let plain = "INFO herald_gateway::mqtt::server: mqtt listening addr=127.0.0.1:5001";
        assert_eq!(
            listening_addr(plain, "mqtt"),
            Some("127.0.0.1:5001".parse().unwrap())
        );
        assert_eq!(listening_addr("mqtt listening addr=nowhere", "mqtt"), None);
    }
}
