//! The registry's settings: defaults, then a TOML file, then `HERALD_REGISTRY__*`.

use std::{net::SocketAddr, path::PathBuf};

use herald_runtime::{
    internal_tls::InternalTlsSettings, metrics::MetricsSettings, telemetry::LogSettings,
};
use serde::{Deserialize, Serialize};

/// The environment prefix: `HERALD_REGISTRY__GRPC__LISTEN_ADDR` sets `grpc.listen_addr`.
pub const ENV_PREFIX: &str = "HERALD_REGISTRY";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where sled keeps the registry's data.
    pub data_dir: PathBuf,
    /// Where the state is kept: `"sled"` (embedded, in `data_dir`), or a
    /// `postgres://` URL (PostgreSQL, shared by the service's replicas, one
    /// of which writes while the others stand by; `data_dir` then holds
    /// only a cache).
    pub store: String,
    /// The CA that signs PostgreSQL's server certificate, for TLS to it.
    pub store_ca_file: Option<PathBuf>,
    /// The account that ARNs and events name.
    pub account_id: String,
    /// The region that ARNs name.
    pub region: String,
    pub grpc: GrpcSettings,
    /// Mutual TLS with the other services (on by default).
    pub internal_tls: InternalTlsSettings,
    pub changes: ChangeLogSettings,
    pub jobs: JobsSettings,
    pub shadows: ShadowSettings,
    /// How long after deprecation a thing type may be deleted (AWS: five minutes).
    pub thing_type_delete_delay_secs: u64,
    /// How long shutdown waits for in-flight calls and streams.
    pub shutdown_grace_secs: u64,
    /// Serves `Reset`, which wipes all state: for test suites only.
    pub test_mode: bool,
    /// Prometheus metrics (`GET /metrics`) on an admin listener of their own.
    pub metrics: MetricsSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcSettings {
    pub listen_addr: SocketAddr,
    /// Also serves `grpc.health.v1` alone, in plain gRPC, here (for probes
    /// that can't present a certificate); none by default.
    pub health_listen_addr: Option<SocketAddr>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChangeLogSettings {
    /// Events older than this are removed from the change log; 0 keeps them forever.
    pub retention_secs: u64,
    /// How often retention runs.
    pub prune_interval_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsSettings {
    /// How long one minute of a job's clock lasts, in milliseconds: 60,000
    /// but in tests. It times timeouts (`inProgressTimeoutInMinutes`,
    /// `stepTimeoutInMinutes`), rollout rates (`maximumPerMinute`) and the
    /// schedule's minimum lead; a job keeps the minute it was created with.
    pub minute_ms: u64,
    /// How often the registry times out the executions past their deadline
    /// and moves the rollouts and schedules that are due.
    pub timer_interval_ms: u64,
    /// How many minutes ahead a `schedulingConfig.startTime` must be, and
    /// how long after it an `endTime`: 30, as on AWS IoT.
    pub schedule_lead_minutes: u64,
    /// Where `documentSource` URLs are read from, as `<bucket>/<key>`:
    /// Herald's stand-in for Amazon S3. Default: `documents` in the data
    /// directory.
    pub documents_dir: Option<PathBuf>,
}

impl Default for JobsSettings {
    fn default() -> Self {
        JobsSettings {
            minute_ms: 60_000,
            timer_interval_ms: 1_000,
            schedule_lead_minutes: 30,
            documents_dir: None,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from(".herald/registry"),
            store: "sled".into(),
            store_ca_file: None,
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            grpc: GrpcSettings::default(),
            internal_tls: InternalTlsSettings::default(),
            changes: ChangeLogSettings::default(),
            jobs: JobsSettings::default(),
            shadows: ShadowSettings::default(),
            thing_type_delete_delay_secs: 300,
            shutdown_grace_secs: 10,
            test_mode: false,
            metrics: MetricsSettings::on(9464),
            log: LogSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShadowSettings {
    /// Device Shadow requests (get, update, delete; classic and named
    /// shadows together) a thing may make per second, in bursts of as many;
    /// more are rejected with 429, as AWS IoT's quota (20) does. 0: no limit.
    pub requests_per_thing_per_sec: u32,
}

impl Default for ShadowSettings {
    fn default() -> Self {
        ShadowSettings {
            requests_per_thing_per_sec: 20,
        }
    }
}

impl Default for GrpcSettings {
    fn default() -> Self {
        GrpcSettings {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            health_listen_addr: None,
        }
    }
}

impl Default for ChangeLogSettings {
    fn default() -> Self {
        ChangeLogSettings {
            retention_secs: 7 * 24 * 3600,
            prune_interval_secs: 60,
        }
    }
}

impl Settings {
    /// Settings for a test: data under `data_dir`, thing types deletable at once.
    pub fn for_test(data_dir: impl Into<PathBuf>) -> Settings {
        Settings {
            data_dir: data_dir.into(),
            thing_type_delete_delay_secs: 0,
            grpc: GrpcSettings {
                listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                health_listen_addr: None,
            },
            internal_tls: InternalTlsSettings::disabled(),
            test_mode: true,
            metrics: MetricsSettings::off(),
            ..Settings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../registry.example.toml");
        let settings: Settings =
            herald_runtime::settings::from_sources(Some(text), &Default::default(), ENV_PREFIX)
                .unwrap();
        assert_eq!(
            settings.grpc.listen_addr,
            SocketAddr::from(([127, 0, 0, 1], 50051))
        );
        assert_eq!(settings.changes.retention_secs, 604800);
    }
}
