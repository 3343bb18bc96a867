//! The gateway's settings: defaults, then a TOML file, then `HERALD_GATEWAY__*`.

use std::{net::SocketAddr, path::PathBuf};

use herald_runtime::{internal_tls::InternalTlsSettings, telemetry::LogSettings};
use serde::{Deserialize, Serialize};

/// The environment prefix: `HERALD_GATEWAY__HTTP__LISTEN_ADDR` sets `http.listen_addr`.
pub const ENV_PREFIX: &str = "HERALD_GATEWAY";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the gateway keeps its own state (the event pump's cursor, sessions).
    pub data_dir: PathBuf,
    /// The account and region that ARNs name and requests are signed for.
    pub account_id: String,
    pub region: String,
    /// The registry's and the config service's gRPC addresses.
    pub registry_url: String,
    pub config_url: String,
    /// Mutual TLS with the registry and the config service (on by default).
    pub internal_tls: InternalTlsSettings,
    pub http: HttpSettings,
    pub mqtt: MqttSettings,
    /// Who may call the HTTP API: SigV4 access keys.
    pub access_keys: Vec<AccessKey>,
    /// Serves `POST /_herald/reset`, which wipes every service's state. Off by
    /// default; for external test suites only.
    pub test_mode: bool,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace_secs: u64,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    pub listen_addr: SocketAddr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttSettings {
    /// MQTT over TLS with client certificates registered with Herald.
    pub tls_listen_addr: SocketAddr,
    /// Plain MQTT with the username/password principals of `users`, for development.
    pub listen_addr: SocketAddr,
    /// Names and addresses the TLS server certificate is issued for, besides
    /// `localhost` and `127.0.0.1`.
    pub tls_names: Vec<String>,
    pub tls_ips: Vec<String>,
    /// How long a TLS handshake may take before the connection is dropped.
    pub tls_handshake_timeout_ms: u64,
    /// The plain listener's principals.
    pub users: Vec<MqttUser>,
    /// How long a persistent session (`clean_session=false`) is kept after
    /// its client disconnects (AWS IoT's default: one hour).
    pub persistent_session_expiry_secs: u64,
    /// How many sessions may use ordinary (non-`$`) topics at once: the
    /// routing engine's connection table, allocated at start.
    pub max_routed_sessions: usize,
}

/// A username/password principal of the plain MQTT listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttUser {
    pub username: String,
    pub password: String,
    /// The IoT policies, by name, that apply to its connections.
    pub policies: Vec<String>,
}

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings {
            tls_listen_addr: SocketAddr::from(([127, 0, 0, 1], 8883)),
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 1883)),
            tls_names: Vec::new(),
            tls_ips: Vec::new(),
            tls_handshake_timeout_ms: 10_000,
            users: vec![MqttUser {
                username: DEV_MQTT_USERNAME.into(),
                password: DEV_MQTT_PASSWORD.into(),
                policies: vec![DEV_MQTT_POLICY.into()],
            }],
            persistent_session_expiry_secs: 3600,
            max_routed_sessions: 10_000,
        }
    }
}

/// The documented development MQTT user, and the policy that applies to it.
pub const DEV_MQTT_USERNAME: &str = "herald-dev";
pub const DEV_MQTT_PASSWORD: &str = "herald-dev-secret";
pub const DEV_MQTT_POLICY: &str = "herald-dev";

/// An access key id, its secret, and the account it acts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub account_id: String,
}

/// The documented development key pair.
pub const DEV_ACCESS_KEY_ID: &str = "HERALDDEVKEY";
pub const DEV_SECRET_ACCESS_KEY: &str = "herald-dev-secret";

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from(".herald/gateway"),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            registry_url: "http://127.0.0.1:50051".into(),
            config_url: "http://127.0.0.1:50052".into(),
            internal_tls: InternalTlsSettings::default(),
            http: HttpSettings::default(),
            mqtt: MqttSettings::default(),
            access_keys: vec![AccessKey {
                access_key_id: DEV_ACCESS_KEY_ID.into(),
                secret_access_key: DEV_SECRET_ACCESS_KEY.into(),
                account_id: "123456789012".into(),
            }],
            test_mode: false,
            shutdown_grace_secs: 10,
            log: LogSettings::default(),
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

impl Settings {
    /// Settings for a test: the given upstreams, test mode on.
    pub fn for_test(registry_url: impl Into<String>, config_url: impl Into<String>) -> Settings {
        Settings {
            registry_url: registry_url.into(),
            config_url: config_url.into(),
            internal_tls: InternalTlsSettings::disabled(),
            http: HttpSettings {
                listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            },
            mqtt: MqttSettings {
                tls_listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                ..MqttSettings::default()
            },
            test_mode: true,
            ..Settings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../gateway.example.toml");
        let settings: Settings =
            herald_runtime::settings::from_sources(Some(text), &Default::default(), ENV_PREFIX)
                .unwrap();
        assert_eq!(
            settings.http.listen_addr,
            SocketAddr::from(([127, 0, 0, 1], 8080))
        );
        assert_eq!(settings.access_keys[0].access_key_id, DEV_ACCESS_KEY_ID);
        assert!(!settings.test_mode);
    }
}
