//! Idle connections: the resident memory a broker process gains per idle MQTT
//! connection. The broker runs as its own process (the `gateway` binary with
//! its registry and config service, or Mosquitto); its RSS (`VmRSS` of
//! `/proc/<pid>/status`) is read once it has settled after startup, then
//! again once [`CONNECTIONS`] clients have each been answered CONNACK and it
//! has settled again. The clients are raw TCP sockets of this process, each
//! sending one hand-written MQTT 3.1.1 CONNECT (clean session, keep-alive 0,
//! so nothing more is ever sent) and reading its CONNACK.
//!
//! Then the rate of TLS connections: a fresh gateway process set and a fresh
//! Mosquitto with a TLS listener each get [`TLS_CONNECTIONS`] connections,
//! each a full mutual-TLS handshake (see [`super::tls`]) followed by the same
//! CONNECT and CONNACK, and the connections accepted per second are reported.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    task::JoinSet,
};
use tokio_rustls::client::TlsStream;

use super::{
    external::{self, ExternalHerald},
    server::{self, Mosquitto},
    tls::{self, TlsDial},
};
use crate::stats::round;

/// Idle connections opened to each broker.
pub(super) const CONNECTIONS: usize = 10_000;
/// TLS connections opened to each broker.
pub(super) const TLS_CONNECTIONS: usize = 2_000;
/// Waiting for the gateway to know a new client certificate.
const CERTIFICATE_TIMEOUT: Duration = Duration::from_secs(15);
/// CONNECTs (and TLS handshakes) in flight at once.
const CONCURRENCY: usize = 64;
/// One connection's TCP connect, CONNECT and CONNACK.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Opening all of them.
const OPEN_TIMEOUT: Duration = Duration::from_secs(120);
/// RSS readings: every `SETTLE_POLL`, settled when `SETTLE_WINDOW` readings
/// in a row agree (see [`is_stable`]), given up after `SETTLE_TIMEOUT`.
const SETTLE_POLL: Duration = Duration::from_millis(250);
const SETTLE_WINDOW: usize = 6;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Descriptors this process needs besides the clients' sockets.
const SPARE_FDS: u64 = 1024;

/// What one broker's idle run measured.
#[derive(Debug, Clone, Default)]
pub(super) struct Idle {
    pub(super) accepted: u64,
    /// CONNACK with a non-zero return code.
    pub(super) refused: u64,
    /// No CONNACK: connect error, closed socket, timeout.
    pub(super) failed: u64,
    pub(super) first_failure: Option<String>,
    pub(super) open_secs: f64,
    pub(super) rss_before_kib: u64,
    pub(super) rss_after_kib: u64,
    /// The broker process's threads, before and after.
    pub(super) threads_before: u64,
    pub(super) threads_after: u64,
    /// Both readings settled within [`SETTLE_TIMEOUT`].
    pub(super) settled: bool,
}

impl Idle {
    /// KiB of RSS per accepted connection.
    pub(super) fn kib_per_connection(&self) -> Option<f64> {
        (self.accepted > 0).then(|| {
            round(
                self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64
                    / self.accepted as f64,
                2,
            )
        })
    }

    /// Connections accepted (CONNACK 0) per second while they were opened,
    /// [`CONCURRENCY`] connections in flight.
    pub(super) fn accepted_per_sec(&self) -> Option<f64> {
        (self.open_secs > 0.0).then(|| round(self.accepted as f64 / self.open_secs, 0))
    }

    /// How the opening of `tried` connections went, in words.
    fn opened(&self, tried: usize) -> String {
        format!(
            "{} of {tried} connections accepted in {:.1} s: {:?} per s ({} refused, {} failed{})",
            self.accepted,
            self.open_secs,
            self.accepted_per_sec(),
            self.refused,
            self.failed,
            self.first_failure
                .as_deref()
                .map(|e| format!("; first: {e}"))
                .unwrap_or_default()
        )
    }

    /// The figures of a rate-only run (no memory readings).
    pub(super) fn rate_json(&self) -> Value {
        json!({
            "accepted_per_sec": self.accepted_per_sec(),
            "connects_in_flight": CONCURRENCY,
            "accepted": self.accepted,
            "refused": self.refused,
            "failed": self.failed,
            "first_failure": self.first_failure,
            "open_secs": round(self.open_secs, 2),
        })
    }

    /// The rate figures and the memory readings.
    pub(super) fn json(&self) -> Value {
        let mut value = self.rate_json();
        if let Value::Object(fields) = &mut value {
            let memory = json!({
                "rss_before_kib": self.rss_before_kib,
                "rss_after_kib": self.rss_after_kib,
                "threads_before": self.threads_before,
                "threads_after": self.threads_after,
                "kib_per_connection": self.kib_per_connection(),
                "settled": self.settled,
            });
            if let Value::Object(memory) = memory {
                fields.extend(memory);
            }
        }
        value
    }
}

/// Checks, before anything is measured, that [`measure`] can run: the
/// service binaries are built and enough file descriptors can be opened.
pub(super) fn preflight() -> anyhow::Result<()> {
    external::binaries()?;
    ensure_fd_limit(CONNECTIONS as u64 + SPARE_FDS)
}

/// What [`measure`] measured: idle connections, then TLS connection rates.
pub(super) struct Measured {
    pub(super) herald: Idle,
    pub(super) mosquitto: Idle,
    pub(super) herald_tls: Idle,
    pub(super) mosquitto_tls: Idle,
}

/// Measures idle connections to the gateway (a fresh process set), then to
/// a fresh Mosquitto; then TLS connections to another fresh gateway process
/// set and another fresh Mosquitto.
pub(super) fn measure() -> anyhow::Result<Measured> {
    ensure_fd_limit(CONNECTIONS as u64 + SPARE_FDS)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-idle")
        .enable_all()
        .build()
        .context("building the idle clients' runtime")?;

    let herald = ExternalHerald::start(CONNECTIONS + 1_000, TLS_CONNECTIONS + 1_000)?;
    eprintln!(
        "mqtt: idle: gateway process {} (plain MQTT on {})",
        herald.gateway_pid(),
        herald.mqtt
    );
    let credentials = Some((
        herald_gateway::DEV_MQTT_USERNAME,
        herald_gateway::DEV_MQTT_PASSWORD,
    ));
    let gateway = runtime
        .block_on(async {
            server::create_dev_policy(herald.config).await?;
            server::wait_dev_user_accepted(herald.mqtt).await?;
            measure_one("herald", herald.gateway_pid(), herald.mqtt, credentials).await
        })
        .context("idle connections to the gateway");
    let stopped = herald.stop();
    let gateway = gateway?;
    stopped.context("the gateway's processes did not stop cleanly")?;

    let mosquitto = Mosquitto::start()?;
    eprintln!(
        "mqtt: idle: mosquitto process {} on {}",
        mosquitto.pid(),
        mosquitto.addr
    );
    let broker = runtime
        .block_on(measure_one(
            "mosquitto",
            mosquitto.pid(),
            mosquitto.addr,
            None,
        ))
        .context("idle connections to mosquitto");
    drop(mosquitto);
    let broker = broker?;

    let (herald_tls, mosquitto_tls) = runtime.block_on(measure_tls())?;
    runtime.shutdown_timeout(Duration::from_secs(5));
    Ok(Measured {
        herald: gateway,
        mosquitto: broker,
        herald_tls,
        mosquitto_tls,
    })
}

/// [`TLS_CONNECTIONS`] mutual-TLS connections to a fresh gateway process set
/// (with a certificate its config service issued), then to a fresh Mosquitto.
async fn measure_tls() -> anyhow::Result<(Idle, Idle)> {
    let herald = ExternalHerald::start(CONNECTIONS + 1_000, TLS_CONNECTIONS + 1_000)?;
    eprintln!(
        "mqtt: tls: gateway process {} (MQTT over TLS on {})",
        herald.gateway_pid(),
        herald.mqtt_tls
    );
    let gateway = async {
        server::create_dev_policy(herald.config).await?;
        let dial = tls::herald_client(herald.config).await?;
        // The gateway learns of the certificate and its policy from the
        // config service's change stream: wait until it accepts one.
        let deadline = Instant::now() + CERTIFICATE_TIMEOUT;
        loop {
            match connect_one(herald.mqtt_tls, Some(&dial), "bench-tls-probe", None).await {
                Ok(Ok(_)) => break,
                outcome if Instant::now() > deadline => {
                    let why = match outcome {
                        Ok(Err(Refused(code))) => format!("CONNACK return code {code}"),
                        Err(err) => err,
                        Ok(Ok(_)) => unreachable!("handled above"),
                    };
                    bail!("the gateway did not accept the new certificate within {CERTIFICATE_TIMEOUT:?}: {why}");
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        Ok(measure_rate("herald", herald.mqtt_tls, &dial).await)
    }
    .await
    .context("TLS connections to the gateway");
    let stopped = herald.stop();
    let gateway = gateway?;
    stopped.context("the gateway's processes did not stop cleanly")?;

    let (files, dial) = tls::mosquitto_pki()?;
    let mosquitto = Mosquitto::start_tls(&files)?;
    eprintln!(
        "mqtt: tls: mosquitto process {} (MQTT over TLS on {})",
        mosquitto.pid(),
        mosquitto.addr
    );
    let broker = measure_rate("mosquitto", mosquitto.addr, &dial).await;
    drop(mosquitto);
    Ok((gateway, broker))
}

/// Opens [`TLS_CONNECTIONS`] TLS connections and closes them; the rate only.
async fn measure_rate(name: &str, addr: SocketAddr, dial: &TlsDial) -> Idle {
    let started = Instant::now();
    let (streams, mut idle) = open(addr, Some(dial), None, TLS_CONNECTIONS).await;
    idle.open_secs = started.elapsed().as_secs_f64();
    eprintln!("mqtt: tls: {name}: {}", idle.opened(TLS_CONNECTIONS));
    drop(streams);
    idle
}

async fn measure_one(
    name: &str,
    pid: u32,
    addr: SocketAddr,
    credentials: Option<(&str, &str)>,
) -> anyhow::Result<Idle> {
    let (rss_before_kib, settled_before) = settle(pid).await?;
    let threads_before = proc_status(pid, "Threads")?;
    let started = Instant::now();
    let (streams, mut idle) = open(addr, None, credentials, CONNECTIONS).await;
    idle.open_secs = started.elapsed().as_secs_f64();
    eprintln!("mqtt: idle: {name}: {}", idle.opened(CONNECTIONS));
    let (rss_after_kib, settled_after) = settle(pid).await?;
    idle.threads_before = threads_before;
    idle.threads_after = proc_status(pid, "Threads")?;
    idle.rss_before_kib = rss_before_kib;
    idle.rss_after_kib = rss_after_kib;
    idle.settled = settled_before && settled_after;
    eprintln!(
        "mqtt: idle: {name}: RSS {rss_before_kib} KiB before, {rss_after_kib} KiB after: {:?} KiB per connection ({} threads before, {} after)",
        idle.kib_per_connection(),
        idle.threads_before,
        idle.threads_after
    );
    drop(streams);
    Ok(idle)
}

/// One open connection, plain or TLS (kept only to be held open).
enum Connection {
    Plain(#[allow(dead_code)] TcpStream),
    Tls(#[allow(dead_code)] Box<TlsStream<TcpStream>>),
}

/// Opens `count` connections (over TLS with `tls`), [`CONCURRENCY`] at a
/// time; keeps those answered with an accepting CONNACK open (returned) and
/// counts the rest.
async fn open(
    addr: SocketAddr,
    tls: Option<&TlsDial>,
    credentials: Option<(&str, &str)>,
    count: usize,
) -> (Vec<Connection>, Idle) {
    let credentials: Arc<Option<(String, String)>> =
        Arc::new(credentials.map(|(user, password)| (user.to_owned(), password.to_owned())));
    let deadline = Instant::now() + OPEN_TIMEOUT;
    let mut idle = Idle::default();
    let mut streams = Vec::with_capacity(count);
    let mut tasks = JoinSet::new();
    let mut next = 0;
    while next < count || !tasks.is_empty() {
        if next < count && Instant::now() >= deadline {
            idle.failed += (count - next) as u64;
            idle.first_failure.get_or_insert_with(|| {
                format!("opening took over {OPEN_TIMEOUT:?}; the rest were not tried")
            });
            next = count;
        }
        if next < count && tasks.len() < CONCURRENCY {
            let client_id = format!("bench-idle-{next:05}");
            let credentials = credentials.clone();
            let tls = tls.cloned();
            tasks.spawn(async move {
                let credentials = credentials
                    .as_ref()
                    .as_ref()
                    .map(|(user, password)| (user.as_str(), password.as_str()));
                let attempt = connect_one(addr, tls.as_ref(), &client_id, credentials);
                match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(format!("no CONNACK within {CONNECT_TIMEOUT:?}")),
                }
            });
            next += 1;
            continue;
        }
        let outcome = match tasks.join_next().await {
            Some(Ok(outcome)) => outcome,
            Some(Err(err)) => Err(format!("connection task failed: {err}")),
            None => continue,
        };
        match outcome {
            Ok(Ok(stream)) => {
                idle.accepted += 1;
                streams.push(stream);
            }
            Ok(Err(Refused(code))) => {
                idle.refused += 1;
                idle.first_failure
                    .get_or_insert_with(|| format!("CONNACK return code {code}"));
            }
            Err(err) => {
                idle.failed += 1;
                idle.first_failure.get_or_insert(err);
            }
        }
    }
    (streams, idle)
}

/// A CONNACK with this non-zero return code.
struct Refused(u8);

/// TCP connect, the TLS handshake with `tls`, CONNECT and CONNACK.
async fn connect_one(
    addr: SocketAddr,
    tls: Option<&TlsDial>,
    client_id: &str,
    credentials: Option<(&str, &str)>,
) -> Result<Result<Connection, Refused>, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    Ok(match tls {
        None => mqtt_connect(stream, client_id, credentials)
            .await?
            .map(Connection::Plain),
        Some(dial) => {
            let stream = dial
                .connector
                .connect(dial.name.clone(), stream)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            mqtt_connect(stream, client_id, credentials)
                .await?
                .map(|stream| Connection::Tls(Box::new(stream)))
        }
    })
}

/// CONNECT and CONNACK over an open stream.
async fn mqtt_connect<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    client_id: &str,
    credentials: Option<(&str, &str)>,
) -> Result<Result<S, Refused>, String> {
    stream
        .write_all(&connect_packet(client_id, credentials, 0))
        .await
        .map_err(|e| format!("writing CONNECT: {e}"))?;
    let mut connack = [0u8; 4];
    stream
        .read_exact(&mut connack)
        .await
        .map_err(|e| format!("reading CONNACK: {e}"))?;
    match connack_code(connack) {
        Some(0) => Ok(Ok(stream)),
        Some(code) => Ok(Err(Refused(code))),
        None => Err(format!("not a CONNACK: {connack:02x?}")),
    }
}

/// An MQTT 3.1.1 CONNECT: clean session, the given keep-alive (seconds) and
/// optional username and password.
fn connect_packet(client_id: &str, credentials: Option<(&str, &str)>, keep_alive: u16) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, value: &str) {
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    let mut body = Vec::with_capacity(64);
    string(&mut body, "MQTT");
    body.push(4); // protocol level: 3.1.1
    let mut flags = 0x02; // clean session
    if credentials.is_some() {
        flags |= 0x80 | 0x40; // username, password
    }
    body.push(flags);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    string(&mut body, client_id);
    if let Some((user, password)) = credentials {
        string(&mut body, user);
        string(&mut body, password);
    }
    let mut packet = vec![0x10];
    let mut remaining = body.len();
    loop {
        let mut byte = (remaining % 128) as u8;
        remaining /= 128;
        if remaining > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if remaining == 0 {
            break;
        }
    }
    packet.extend_from_slice(&body);
    packet
}

/// The return code of a CONNACK, `None` if the bytes are not one.
fn connack_code(bytes: [u8; 4]) -> Option<u8> {
    (bytes[0] == 0x20 && bytes[1] == 0x02).then_some(bytes[3])
}

/// The number of field `key` (`VmRSS`, `Threads`) of a `/proc/<pid>/status`
/// text; sizes must be in kB (KiB).
fn status_value(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|line| {
        line.strip_prefix(key)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    let mut fields = line[key.len() + 1..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

fn proc_status(pid: u32, key: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status_value(&status, key).with_context(|| format!("no {key} in {path}"))
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    proc_status(pid, "VmRSS")
}

/// Readings agree when they span at most 1% of the largest, or 64 KiB.
fn is_stable(window: &[u64]) -> bool {
    let (Some(min), Some(max)) = (window.iter().min(), window.iter().max()) else {
        return false;
    };
    max - min <= (max / 100).max(64)
}

/// Polls the RSS until [`SETTLE_WINDOW`] readings in a row agree; returns
/// the last reading and whether it settled within [`SETTLE_TIMEOUT`].
async fn settle(pid: u32) -> anyhow::Result<(u64, bool)> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut window = Vec::with_capacity(SETTLE_WINDOW);
    loop {
        let rss = rss_kib(pid)?;
        if window.len() == SETTLE_WINDOW {
            window.remove(0);
        }
        window.push(rss);
        if window.len() == SETTLE_WINDOW && is_stable(&window) {
            return Ok((rss, true));
        }
        if Instant::now() > deadline {
            return Ok((rss, false));
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

/// The soft and hard `Max open files` of a `/proc/<pid>/limits` text
/// (`None` for unlimited is reported as `u64::MAX`).
fn nofile_limits(limits: &str) -> Option<(u64, u64)> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let parse = |field: &str| match field {
        "unlimited" => Some(u64::MAX),
        value => value.parse().ok(),
    };
    Some((parse(fields.next()?)?, parse(fields.next()?)?))
}

fn read_nofile() -> anyhow::Result<(u64, u64)> {
    let limits =
        std::fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    nofile_limits(&limits).context("no `Max open files` in /proc/self/limits")
}

/// Makes sure this process (and so the brokers it starts, which inherit it)
/// may open `needed` descriptors: raises the soft limit to the hard one with
/// `prlimit` (util-linux) if it is lower, since the workspace forbids the
/// `unsafe` a direct `setrlimit` would need.
fn ensure_fd_limit(needed: u64) -> anyhow::Result<()> {
    let (soft, hard) = read_nofile()?;
    if soft >= needed {
        return Ok(());
    }
    if hard < needed {
        bail!(
            "{needed} file descriptors are needed but the hard limit is {hard}: raise `ulimit -Hn`"
        );
    }
    let target = if hard == u64::MAX {
        "unlimited".to_owned()
    } else {
        hard.to_string()
    };
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={target}:"),
        ])
        .status();
    let (raised, _) = read_nofile()?;
    if raised < needed {
        bail!(
            "{needed} file descriptors are needed; the soft limit is {soft} and \
             `prlimit` could not raise it ({status:?}): run with `ulimit -n {hard}`"
        );
    }
    eprintln!("mqtt: idle: raised the open-files soft limit from {soft} to {raised}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_packets_are_mqtt_3_1_1() {
        let packet = connect_packet("c1", None, 0);
        assert_eq!(
            packet,
            [
                0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 2, b'c', b'1'
            ]
        );
        let packet = connect_packet("c", Some(("u", "pw")), 60);
        assert_eq!(
            packet,
            [
                0x10, 20, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xc2, 0, 60, 0, 1, b'c', 0, 1, b'u', 0,
                2, b'p', b'w'
            ]
        );
        // A remaining length over 127 takes two bytes.
        let long = "x".repeat(200);
        let packet = connect_packet(&long, None, 0);
        assert_eq!(packet[1..3], [(212 % 128) as u8 | 0x80, 1]);
        assert_eq!(packet.len(), 3 + 212);
    }

    #[test]
    fn connacks_give_their_return_code() {
        assert_eq!(connack_code([0x20, 2, 0, 0]), Some(0));
        assert_eq!(connack_code([0x20, 2, 0, 5]), Some(5));
        assert_eq!(connack_code([0x30, 2, 0, 0]), None);
    }

    #[test]
    fn rss_is_read_from_proc_status() {
        let status = "Name:\tgateway\nVmPeak:\t  100 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 1 kB\nThreads:\t7\n";
        assert_eq!(status_value(status, "VmRSS"), Some(12345));
        assert_eq!(status_value(status, "Threads"), Some(7));
        assert_eq!(status_value(status, "VmRS"), None);
        assert_eq!(status_value("Name:\tx\n", "VmRSS"), None);
        assert_eq!(status_value("VmRSS:\t12 MB\n", "VmRSS"), None);
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn stability_allows_one_percent_or_64_kib() {
        assert!(is_stable(&[10_000, 10_050, 10_010]));
        assert!(is_stable(&[100_000, 100_900]));
        assert!(!is_stable(&[100_000, 101_100]));
        assert!(!is_stable(&[1_000, 1_100]));
        assert!(!is_stable(&[]));
    }

    #[test]
    fn open_file_limits_are_parsed() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63432                63432                processes \n\
                      Max open files            1024                 20000                files     \n";
        assert_eq!(nofile_limits(limits), Some((1024, 20000)));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(nofile_limits(unlimited), Some((u64::MAX, u64::MAX)));
        assert_eq!(nofile_limits("Max processes 1 1\n"), None);
    }
}
