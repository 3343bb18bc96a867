//! The config service's settings: defaults, then a TOML file, then `HERALD_CONFIG__*`.

use std::{net::SocketAddr, path::PathBuf};

use herald_runtime::{
    internal_tls::InternalTlsSettings, metrics::MetricsSettings, telemetry::LogSettings,
};
use serde::{Deserialize, Serialize};

/// The environment prefix: `HERALD_CONFIG__GRPC__LISTEN_ADDR` sets `grpc.listen_addr`.
pub const ENV_PREFIX: &str = "HERALD_CONFIG";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where sled keeps the config service's data; the CA's certificate is written here as `ca.pem`.
    pub data_dir: PathBuf,
    /// Where the state is kept: `"sled"` (embedded, in `data_dir`), or a
    /// `postgres://` URL (PostgreSQL, shared by the service's replicas, one
    /// of which writes while the others stand by; `data_dir` then holds
    /// only a cache).
    pub store: String,
    /// The CA that signs PostgreSQL's server certificate, for TLS to it.
    pub store_ca_file: Option<PathBuf>,
    /// The account and region that ARNs name.
    pub account_id: String,
    pub region: String,
    /// The registry's gRPC address (thing groups and thing principals).
    pub registry_url: String,
    pub grpc: GrpcSettings,
    /// Mutual TLS with the other services (on by default).
    pub internal_tls: InternalTlsSettings,
    pub ca: CaSettings,
    pub changes: ChangeLogSettings,
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

/// The Herald CA: created at first start and kept in the data folder, unless
/// both files are given.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaSettings {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChangeLogSettings {
    /// Changes older than this leave the log; a watcher further behind gets a new snapshot.
    pub retention_secs: u64,
    pub prune_interval_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from(".herald/config"),
            store: "sled".into(),
            store_ca_file: None,
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            registry_url: "http://127.0.0.1:50051".into(),
            grpc: GrpcSettings::default(),
            internal_tls: InternalTlsSettings::default(),
            ca: CaSettings::default(),
            changes: ChangeLogSettings::default(),
            shutdown_grace_secs: 10,
            test_mode: false,
            metrics: MetricsSettings::on(9465),
            log: LogSettings::default(),
        }
    }
}

impl Default for GrpcSettings {
    fn default() -> Self {
        GrpcSettings {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 50052)),
            health_listen_addr: None,
        }
    }
}

impl Default for ChangeLogSettings {
    fn default() -> Self {
        ChangeLogSettings {
            retention_secs: 24 * 3600,
            prune_interval_secs: 60,
        }
    }
}

impl Settings {
    /// Settings for a test: data under `data_dir`, the registry at `registry_url`.
    pub fn for_test(data_dir: impl Into<PathBuf>, registry_url: impl Into<String>) -> Settings {
        Settings {
            data_dir: data_dir.into(),
            registry_url: registry_url.into(),
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
        let text = include_str!("../config.example.toml");
        let settings: Settings =
            herald_runtime::settings::from_sources(Some(text), &Default::default(), ENV_PREFIX)
                .unwrap();
        assert_eq!(
            settings.grpc.listen_addr,
            SocketAddr::from(([127, 0, 0, 1], 50052))
        );
        assert_eq!(settings.registry_url, "http://127.0.0.1:50051");
    }
}
