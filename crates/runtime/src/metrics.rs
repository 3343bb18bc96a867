//! Prometheus metrics. Every service records through the `metrics` facade
//! into one recorder per process ([`install`]), and serves what it holds as
//! `GET /metrics`, in Prometheus's text exposition format, on an admin
//! listener of its own ([`serve`]), apart from the ports clients use.
//!
//! Each scrape first refreshes the process basics (`process_*`: resident
//! memory, CPU seconds, open file descriptors, start time, from `/proc`
//! where there is one), the Tokio runtime's (`tokio_*`: workers, alive
//! tasks, global queue depth) and whatever the service's own `refresh`
//! hook sets (gauges that are cheaper to read than to keep current).
//!
//! Histograms whose name ends in `_seconds` have latency buckets (0.1 ms to
//! 10 s); those ending in `_size` power-of-two buckets (1 to 4096).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::{Router, http::header, response::IntoResponse, routing::get};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The latency buckets, in seconds.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The size buckets (batches, counts).
const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// Where a service serves its metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// The admin listener's address (`GET /metrics`); none turns metrics
    /// serving off.
    pub listen_addr: Option<SocketAddr>,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings::off()
    }
}

impl MetricsSettings {
    /// Served on 127.0.0.1:`port`.
    pub fn on(port: u16) -> MetricsSettings {
        MetricsSettings {
            listen_addr: Some(SocketAddr::from(([127, 0, 0, 1], port))),
        }
    }

    /// Not served.
    pub fn off() -> MetricsSettings {
        MetricsSettings { listen_addr: None }
    }
}

/// What a service sets right before each scrape (bounded by the scrape's
/// own time; see [`refresh`] for one without I/O).
pub type Refresh = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A [`Refresh`] that sets gauges from memory, without waiting.
pub fn refresh(set: impl Fn() + Send + Sync + 'static) -> Refresh {
    Arc::new(move || {
        set();
        Box::pin(std::future::ready(()))
    })
}

/// How long a scrape waits for the service's [`Refresh`].
const REFRESH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder, once; later calls return the same
/// handle. `None` when another recorder was installed first (then this
/// process's metrics go there, and `/metrics` answers 503).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_size".into()), SIZE_BUCKETS)
                })
                .map(PrometheusBuilder::build_recorder);
            let recorder = match recorder {
                Ok(recorder) => recorder,
                Err(e) => {
                    tracing::error!(error = %e, "metrics recorder not built");
                    return None;
                }
            };
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "another metrics recorder is installed");
                    None
                }
            }
        })
        .clone()
}

/// What the process's recorder holds now, in the exposition format; `None`
/// before [`install`] (or when another recorder was installed).
pub fn render() -> Option<String> {
    HANDLE
        .get()
        .cloned()
        .flatten()
        .map(|handle| handle.render())
}

fn describe() {
    metrics::describe_gauge!(
        "process_resident_memory_bytes",
        metrics::Unit::Bytes,
        "Resident memory size."
    );
    metrics::describe_counter!(
        "process_cpu_seconds_total",
        metrics::Unit::Seconds,
        "User and system CPU time spent."
    );
    metrics::describe_gauge!("process_open_fds", "Open file descriptors.");
    metrics::describe_gauge!(
        "process_start_time_seconds",
        metrics::Unit::Seconds,
        "Start time of the process since the Unix epoch."
    );
    metrics::describe_gauge!("tokio_workers", "Worker threads of the Tokio runtime.");
    metrics::describe_gauge!("tokio_alive_tasks", "Tasks alive in the Tokio runtime.");
    metrics::describe_gauge!(
        "tokio_global_queue_depth",
        "Tasks waiting in the Tokio runtime's global queue."
    );
}

/// When the process started, as the recorder first saw it.
fn start_time() -> f64 {
    static START: OnceLock<f64> = OnceLock::new();
    *START.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    })
}

/// The process basics, from `/proc/self` (nothing where it is missing).
fn refresh_process() {
    metrics::gauge!("process_start_time_seconds").set(start_time());
    // statm: sizes in pages; the second is the resident set.
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
        && let Some(resident) = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<f64>().ok())
    {
        metrics::gauge!("process_resident_memory_bytes").set(resident * 4096.0);
    }
    // stat: utime and stime are the 14th and 15th fields, in clock ticks;
    // the command (2nd) may hold spaces, so count after its closing `)`.
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some((_, rest)) = stat.rsplit_once(')')
    {
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        if let (Some(user), Some(system)) = (ticks(11), ticks(12)) {
            // Linux's USER_HZ is 100 on every architecture it runs on.
            metrics::counter!("process_cpu_seconds_total").absolute((user + system) / 100);
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("process_open_fds").set(fds.count() as f64);
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let m = runtime.metrics();
        metrics::gauge!("tokio_workers").set(m.num_workers() as f64);
        metrics::gauge!("tokio_alive_tasks").set(m.num_alive_tasks() as f64);
        metrics::gauge!("tokio_global_queue_depth").set(m.global_queue_depth() as f64);
    }
}

/// What `GET /ready` on the admin listener answers with: ready unless a
/// check says otherwise ([`set_ready_check`]).
static READY: std::sync::OnceLock<Box<dyn Fn() -> bool + Send + Sync>> = std::sync::OnceLock::new();

/// Makes `GET /ready` on the admin listener answer 200 while `check`
/// holds and 503 otherwise (for a readiness probe that follows a backend
/// connection, such as the gateway's to NATS). Only the first check set is
/// used.
pub fn set_ready_check(check: impl Fn() -> bool + Send + Sync + 'static) {
    let _ = READY.set(Box::new(check));
}

fn ready() -> (axum::http::StatusCode, &'static str) {
    if READY.get().is_none_or(|check| check()) {
        (axum::http::StatusCode::OK, "ready\n")
    } else {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Serves `GET /metrics` (and `GET /ready`) on `listener` until `shutdown`
/// is cancelled, calling `refresh` before each scrape. Logs `metrics
/// listening addr=...`.
pub async fn serve(
    listener: TcpListener,
    refresh: Refresh,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let handle = install();
    let addr = listener
        .local_addr()
        .context("read the metrics listen address")?;
    tracing::info!(%addr, "metrics listening");
    let app = Router::new()
        .route("/ready", get(|| async { ready() }))
        .route(
            "/metrics",
            get(move || {
                let (handle, refresh) = (handle.clone(), refresh.clone());
                async move {
                    let Some(handle) = handle else {
                        return (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "another metrics recorder is installed in this process\n",
                        )
                            .into_response();
                    };
                    refresh_process();
                    let _ = tokio::time::timeout(REFRESH_TIMEOUT, refresh()).await;
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        handle.render(),
                    )
                        .into_response()
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("serve metrics")
}

/// Installs the recorder, binds `addr` and spawns [`serve`] on it; `None`
/// when there is no address (metrics off: nothing is recorded). Fails when
/// the address can't be bound. Call it before the service records
/// anything.
pub async fn spawn(
    addr: Option<SocketAddr>,
    refresh: Refresh,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<SocketAddr>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    // Before anything is recorded: what comes before the recorder is lost.
    install();
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind the metrics listener {addr}"))?;
    let bound = listener.local_addr().context("read the metrics address")?;
    tokio::spawn(async move {
        if let Err(e) = serve(listener, refresh, shutdown).await {
            tracing::error!(error = format!("{e:#}"), "metrics listener failed");
        }
    });
    Ok(Some(bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn metrics_are_served_in_the_exposition_format() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        install();
        let refresh = refresh(|| metrics::gauge!("herald_test_refreshed").set(7.0));
        let server = tokio::spawn(serve(listener, refresh, shutdown.clone()));
        metrics::counter!("herald_test_things_total", "kind" => "a").increment(3);
        metrics::histogram!("herald_test_wait_seconds").record(0.002);

        let body = scrape(addr).await;
        for line in [
            "herald_test_things_total{kind=\"a\"} 3",
            "herald_test_refreshed 7",
            "herald_test_wait_seconds_bucket{le=\"0.0025\"} 1",
            "herald_test_wait_seconds_count 1",
            "# TYPE process_open_fds gauge",
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "{line:?} missing from\n{body}"
            );
        }
        assert!(body.contains("\nprocess_resident_memory_bytes "), "{body}");
        assert!(body.contains("\ntokio_workers "), "{body}");
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }

    /// `GET /metrics` over a plain TCP connection; the body.
    async fn scrape(addr: SocketAddr) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8(answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let (_, body) = answer.split_once("\r\n\r\n").unwrap();
        body.to_owned()
    }
}
