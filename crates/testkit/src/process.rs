//! A service binary run as a child process, for the tests that kill one:
//! its `HERALD_*` settings only from the test, plain logs, stderr read to
//! the end (so it never blocks on a full pipe) with the last lines kept,
//! and the addresses of its `<kind> listening addr=...` lines.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::timeout;

/// How long a binary may take to log that it listens.
pub const READY: Duration = Duration::from_secs(60);
/// The log lines kept.
const KEPT_LINES: usize = 500;

/// `binary` of this workspace, built beside `sibling` (a binary of the
/// calling test's package, `env!("CARGO_BIN_EXE_...")`); built with
/// `cargo` when a lone `cargo test -p` did not build it.
pub fn workspace_binary(sibling: &str, binary: &str, package: &str) -> PathBuf {
    let path = Path::new(sibling).with_file_name(binary);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--bin", binary, "-p", package])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building {binary} failed");
    }
    path
}

/// A running service binary.
pub struct Process {
    name: String,
    child: Child,
    listening: watch::Receiver<HashMap<String, SocketAddr>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `binary` as service `name` (its settings' prefix is
    /// `HERALD_<NAME>__`) with `settings` (`("GRPC__LISTEN_ADDR", ...)`),
    /// and waits until it logs `ready_kind listening`.
    pub async fn start(
        binary: &Path,
        name: &str,
        settings: &[(&str, String)],
        ready_kind: &str,
    ) -> Process {
        let mut command = Command::new(binary);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HERALD_") {
                command.env_remove(key);
            }
        }
        let prefix = format!("HERALD_{}__", name.to_uppercase());
        // Plain gRPC between the services unless the test's settings turn
        // internal TLS on.
        command
            .env(format!("{prefix}INTERNAL_TLS__ENABLED"), "false")
            .env(format!("{prefix}LOG__FORMAT"), "plain")
            // Metrics on a port of the system's choosing: tests run side by side.
            .env(format!("{prefix}METRICS__LISTEN_ADDR"), "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        for (key, value) in settings {
            command.env(format!("{prefix}{key}"), value);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let (tx, listening) = watch::channel(HashMap::new());
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let task_log = log.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let line = strip_ansi(&String::from_utf8_lossy(&buf))
                    .trim_end()
                    .to_owned();
                if let Some((kind, addr)) = listening_line(&line) {
                    tx.send_modify(|map| {
                        map.insert(kind, addr);
                    });
                }
                let mut log = task_log.lock().unwrap();
                if log.len() >= KEPT_LINES {
                    log.remove(0);
                }
                log.push(line);
            }
        });
        let process = Process {
            name: name.to_owned(),
            child,
            listening,
            log,
        };
        process.addr(ready_kind).await;
        process
    }

    /// The address of its `kind listening` line, waiting for it.
    pub async fn addr(&self, kind: &str) -> SocketAddr {
        let mut listening = self.listening.clone();
        match timeout(READY, listening.wait_for(|map| map.contains_key(kind))).await {
            Ok(Ok(map)) => map[kind],
            _ => panic!(
                "{} never logged `{kind} listening`:\n{}",
                self.name,
                self.log()
            ),
        }
    }

    /// The last lines it logged.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends SIGKILL and waits for the process to die of it.
    pub async fn kill_9(mut self) {
        self.child.start_kill().expect("send SIGKILL");
        let status = self.wait(Duration::from_secs(10)).await;
        assert_eq!(
            status.signal(),
            Some(9),
            "{} should have died of SIGKILL: {status:?}",
            self.name
        );
    }

    /// Sends SIGTERM and returns how the process exited, and its log.
    pub async fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().expect("the process is still running");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM failed: {sent:?}");
        let status = self.wait(Duration::from_secs(30)).await;
        (status, self.log())
    }

    async fn wait(&mut self, deadline: Duration) -> ExitStatus {
        match timeout(deadline, self.child.wait()).await {
            Ok(status) => status.expect("wait for the process"),
            Err(_) => panic!(
                "{} did not exit within {deadline:?}:\n{}",
                self.name,
                self.log()
            ),
        }
    }
}

/// Removes ANSI escape sequences (`ESC [ … final-byte`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// `("mqtt tls", 127.0.0.1:1234)` from `... mqtt tls listening addr=127.0.0.1:1234`.
fn listening_line(line: &str) -> Option<(String, SocketAddr)> {
    let at = line.find(" listening")?;
    let before = &line[..at];
    let kind = ["mqtt tls", "mqtt", "http", "grpc"]
        .into_iter()
        .find(|k| before.ends_with(k))?;
    let rest = &line[at..];
    let token = rest[rest.find("addr=")? + "addr=".len()..]
        .split_whitespace()
        .next()?;
    let addr = token
        .trim_matches(|c: char| !(c.is_ascii_alphanumeric() || "[]:.".contains(c)))
        .parse()
        .ok()?;
    Some((kind.to_owned(), addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines_parse_with_or_without_colour() {
        let addr: SocketAddr = "127.0.0.1:41234".parse().unwrap();
        let plain = "2026-01-01T00:00:00.000000Z  INFO herald_registry: grpc listening addr=127.0.0.1:41234";
        assert_eq!(listening_line(plain), Some(("grpc".into(), addr)));
        let coloured = "\u{1b}[2m2026-01-01T00:00:00Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \u{1b}[2mherald_registry\u{1b}[0m\u{1b}[2m:\u{1b}[0m grpc listening \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:41234\u{1b}[0m";
        assert_eq!(
            listening_line(&strip_ansi(coloured)),
            Some(("grpc".into(), addr))
        );
        let tls = "2026-11-26T10:00:00Z  INFO gateway: mqtt tls listening addr=127.0.0.1:8883";
        assert_eq!(
            listening_line(tls),
            Some(("mqtt tls".into(), "127.0.0.1:8883".parse().unwrap()))
        );
        assert_eq!(listening_line("INFO something else addr=127.0.0.1:1"), None);
    }
}
