//! The gateway's settings: defaults, then a TOML file, then `HERALD_GATEWAY__*`.

use std::{net::SocketAddr, path::PathBuf};

use herald_runtime::{
    internal_tls::InternalTlsSettings, metrics::MetricsSettings, telemetry::LogSettings,
};
use serde::{Deserialize, Serialize};

/// The regions of AWS's `aws` partition (ARNs `arn:aws:...`), which the
/// gateway serves by default.
pub(crate) const AWS_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-south-1",
    "eu-south-2",
    "eu-north-1",
    "il-central-1",
    "me-south-1",
    "me-central-1",
    "mx-central-1",
    "sa-east-1",
];

/// The environment prefix: `HERALD_GATEWAY__HTTP__LISTEN_ADDR` sets `http.listen_addr`.
pub const ENV_PREFIX: &str = "HERALD_GATEWAY";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the gateway keeps its own state (the event pump's cursor,
    /// sessions, retained messages).
    pub data_dir: PathBuf,
    /// The default partition: the account and region of the MQTT side, and
    /// of HTTP requests signed for this region with a key of this account.
    pub account_id: String,
    pub region: String,
    /// The regions HTTP requests may be signed for; each (account of the
    /// access key, region) is a partition of its own. Default: every
    /// region of the `aws` partition.
    pub served_regions: Vec<String>,
    /// How this gateway reaches the other replicas: `"local"` (it is the
    /// only one), or a `nats://` URL (the NATS server, with JetStream, that
    /// every replica shares; see `docs/cluster.md`).
    pub bus: String,
    /// The registry's and the config service's gRPC addresses.
    pub registry_url: String,
    pub config_url: String,
    /// Mutual TLS with the registry and the config service (on by default).
    pub internal_tls: InternalTlsSettings,
    pub http: HttpSettings,
    pub mqtt: MqttSettings,
    /// The host names DescribeEndpoint answers.
    pub endpoints: EndpointSettings,
    /// Who may call the HTTP API: SigV4 access keys.
    pub access_keys: Vec<AccessKey>,
    /// Serves `POST /_herald/reset`, which wipes every service's state. Off by
    /// default; for external test suites only.
    pub test_mode: bool,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace_secs: u64,
    /// Lets the gateway start with the built-in development key or MQTT user
    /// while one of its listeners is on a non-loopback address. Off by default:
    /// such a gateway refuses to start.
    pub allow_dev_credentials: bool,
    /// Prometheus metrics (`GET /metrics`) on an admin listener of their own.
    pub metrics: MetricsSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    pub listen_addr: SocketAddr,
    /// How many connections the HTTP listener holds at once; further
    /// clients wait in the kernel's accept queue until one closes.
    pub max_connections: usize,
    /// How long a connection may take to send a whole request head, from
    /// the moment it is accepted or its previous response was sent: so it
    /// is also the keep-alive idle timeout.
    pub header_read_timeout_ms: u64,
    /// How long one request (its body included) may take end to end.
    pub request_timeout_secs: u64,
    /// How long writing a response may make no progress (a client that
    /// does not read) before the connection is closed.
    pub write_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttSettings {
    /// MQTT over TLS with client certificates registered with Herald.
    pub tls_listen_addr: SocketAddr,
    /// Plain MQTT with the username/password principals of `users`, for development.
    pub listen_addr: SocketAddr,
    /// MQTT over WebSockets (TLS, path `/mqtt`, subprotocol `mqtt`),
    /// authenticated by a SigV4 presigned query with an access key; off
    /// unless set (`cargo xtask dev` serves it on 127.0.0.1:8443).
    pub websocket_listen_addr: Option<SocketAddr>,
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
    /// The most retained messages kept at once (one per topic); a retained
    /// PUBLISH beyond it is refused (MQTT 5: PUBACK 0x97; MQTT 3.1.1: routed
    /// live, not retained).
    pub retained_max_count: usize,
    /// The most bytes of retained messages kept at once, counting each
    /// message's topic and payload.
    pub retained_max_bytes: usize,
    /// The shortest MQTT keep-alive granted, in seconds (AWS IoT: 30);
    /// shorter ones are raised to it, 0 and above 1200 become 1200.
    pub min_keep_alive_secs: u64,
    /// How many persistent sessions (`clean_session=false`) one principal
    /// (certificate or user) may hold; a CONNECT for one more is refused.
    pub max_persistent_sessions_per_principal: usize,
    /// How many connections the plain listener holds at once.
    pub max_connections: usize,
    /// How many connections the TLS listener holds at once, handshakes
    /// in progress included.
    pub max_tls_connections: usize,
}

/// The addresses DescribeEndpoint answers for each `endpointType`: where
/// devices reach this Herald. AWS IoT answers a host name (devices add port
/// 8883 or 443); a Herald on another port may answer `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointSettings {
    /// `iot:Data-ATS`: MQTT over TLS with the Herald CA's server certificate.
    pub data_ats: String,
    /// `iot:Data`: the legacy data endpoint; Herald serves both on one listener.
    pub data: String,
    /// `iot:CredentialProvider`.
    pub credential_provider: String,
    /// `iot:Jobs`: the jobs data plane over HTTP.
    pub jobs: String,
}

impl Default for EndpointSettings {
    fn default() -> Self {
        EndpointSettings {
            data_ats: "localhost".into(),
            data: "localhost".into(),
            credential_provider: "localhost".into(),
            jobs: "localhost".into(),
        }
    }
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
            websocket_listen_addr: None,
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
            retained_max_count: 10_000,
            retained_max_bytes: 64 * 1024 * 1024,
            min_keep_alive_secs: 30,
            max_persistent_sessions_per_principal: 1000,
            max_connections: 4_096,
            max_tls_connections: 16_384,
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
            served_regions: AWS_REGIONS.iter().map(|r| (*r).to_owned()).collect(),
            bus: "local".into(),
            registry_url: "http://127.0.0.1:50051".into(),
            config_url: "http://127.0.0.1:50052".into(),
            internal_tls: InternalTlsSettings::default(),
            http: HttpSettings::default(),
            mqtt: MqttSettings::default(),
            endpoints: EndpointSettings::default(),
            access_keys: vec![AccessKey {
                access_key_id: DEV_ACCESS_KEY_ID.into(),
                secret_access_key: DEV_SECRET_ACCESS_KEY.into(),
                account_id: "123456789012".into(),
            }],
            test_mode: false,
            shutdown_grace_secs: 10,
            allow_dev_credentials: false,
            metrics: MetricsSettings::on(9466),
            log: LogSettings::default(),
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_connections: 1_024,
            header_read_timeout_ms: 10_000,
            request_timeout_secs: 60,
            write_timeout_ms: 10_000,
        }
    }
}

impl Settings {
    /// Refuses settings that would make the gateway serve nothing: a
    /// timeout or a limit of zero.
    pub fn check_limits(&self) -> anyhow::Result<()> {
        let zero = [
            ("http.max_connections", self.http.max_connections as u64),
            (
                "http.header_read_timeout_ms",
                self.http.header_read_timeout_ms,
            ),
            ("http.request_timeout_secs", self.http.request_timeout_secs),
            ("http.write_timeout_ms", self.http.write_timeout_ms),
            ("mqtt.max_connections", self.mqtt.max_connections as u64),
            (
                "mqtt.max_tls_connections",
                self.mqtt.max_tls_connections as u64,
            ),
            (
                "mqtt.tls_handshake_timeout_ms",
                self.mqtt.tls_handshake_timeout_ms,
            ),
            ("mqtt.min_keep_alive_secs", self.mqtt.min_keep_alive_secs),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, value)| *value == 0) {
            anyhow::bail!("{name} is 0: it must be at least 1");
        }
        if self.mqtt.min_keep_alive_secs > 1200 {
            anyhow::bail!(
                "mqtt.min_keep_alive_secs is {}: it must be at most 1200, the longest keep-alive granted",
                self.mqtt.min_keep_alive_secs
            );
        }
        Ok(())
    }

    /// Refuses the built-in development credentials (the documented access key
    /// or MQTT user, which anyone can read) when any of `listening` is beyond
    /// loopback, unless `allow_dev_credentials` is set.
    pub fn check_dev_credentials(&self, listening: &[SocketAddr]) -> anyhow::Result<()> {
        if self.allow_dev_credentials {
            return Ok(());
        }
        let Some(exposed) = listening.iter().find(|addr| !addr.ip().is_loopback()) else {
            return Ok(());
        };
        let mut found = Vec::new();
        if let Some(key) = self.access_keys.iter().find(|k| {
            k.access_key_id == DEV_ACCESS_KEY_ID || k.secret_access_key == DEV_SECRET_ACCESS_KEY
        }) {
            found.push(format!(
                "the development access key ({}) in access_keys",
                key.access_key_id
            ));
        }
        if let Some(user) = self
            .mqtt
            .users
            .iter()
            .find(|u| u.password == DEV_MQTT_PASSWORD)
        {
            found.push(format!(
                "the development MQTT user's password ({}) in mqtt.users",
                user.username
            ));
        }
        if found.is_empty() {
            return Ok(());
        }
        anyhow::bail!(
            "refusing to start: listening on {exposed}, beyond loopback, with {}, which is \
             published in Herald's documentation. Give your own [[access_keys]] and \
             [[mqtt.users]] (mqtt.users = [] for none), for instance in a second --config \
             file, or set allow_dev_credentials = true",
            found.join(" and ")
        )
    }

    /// Settings for a test: the given upstreams, test mode on.
    pub fn for_test(registry_url: impl Into<String>, config_url: impl Into<String>) -> Settings {
        Settings {
            registry_url: registry_url.into(),
            config_url: config_url.into(),
            internal_tls: InternalTlsSettings::disabled(),
            http: HttpSettings {
                listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                ..HttpSettings::default()
            },
            mqtt: MqttSettings {
                tls_listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                ..MqttSettings::default()
            },
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
        assert!(!settings.allow_dev_credentials);
    }

    #[test]
    fn a_zero_timeout_or_cap_is_refused_by_name() {
        Settings::default().check_limits().unwrap();
        let mut zero = Settings::default();
        zero.http.header_read_timeout_ms = 0;
        let e = zero.check_limits().unwrap_err().to_string();
        assert!(e.contains("http.header_read_timeout_ms is 0"), "{e}");
        let mut zero = Settings::default();
        zero.mqtt.max_tls_connections = 0;
        let e = zero.check_limits().unwrap_err().to_string();
        assert!(e.contains("mqtt.max_tls_connections is 0"), "{e}");
        let mut long = Settings::default();
        long.mqtt.min_keep_alive_secs = 1201;
        assert!(long.check_limits().is_err());
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn dev_credentials_are_refused_beyond_loopback() {
        let dev = Settings::default();
        // On loopback (IPv4 or IPv6), as `cargo xtask dev` runs it: allowed.
        dev.check_dev_credentials(&[addr("127.0.0.1:8080"), addr("[::1]:1883")])
            .unwrap();
        // Any listener beyond loopback: refused, naming the address and both credentials.
        for exposed in ["0.0.0.0:8080", "[::]:8883", "10.0.0.7:1883"] {
            let err = dev
                .check_dev_credentials(&[addr("127.0.0.1:8080"), addr(exposed)])
                .unwrap_err()
                .to_string();
            assert!(err.contains(exposed), "{err}");
            assert!(err.contains(DEV_ACCESS_KEY_ID), "{err}");
            assert!(err.contains(DEV_MQTT_USERNAME), "{err}");
            assert!(err.contains("allow_dev_credentials"), "{err}");
        }
        let exposed = [addr("0.0.0.0:8080")];
        // Unless explicitly allowed.
        let allowed = Settings {
            allow_dev_credentials: true,
            ..Settings::default()
        };
        allowed.check_dev_credentials(&exposed).unwrap();
        // Own credentials: allowed.
        let own_key = AccessKey {
            access_key_id: "AKIAOWNKEY".into(),
            secret_access_key: "a-long-random-secret".into(),
            account_id: "123456789012".into(),
        };
        let mut own = Settings {
            access_keys: vec![own_key.clone()],
            ..Settings::default()
        };
        own.mqtt.users.clear();
        own.check_dev_credentials(&exposed).unwrap();
        // The development secret under another key id, or the development MQTT
        // user's password under another name, is still refused.
        let mut renamed = own.clone();
        renamed.access_keys[0].secret_access_key = DEV_SECRET_ACCESS_KEY.into();
        assert!(renamed.check_dev_credentials(&exposed).is_err());
        let mut user = own.clone();
        user.mqtt.users = vec![MqttUser {
            username: "someone".into(),
            password: DEV_MQTT_PASSWORD.into(),
            policies: vec![],
        }];
        let err = user
            .check_dev_credentials(&exposed)
            .unwrap_err()
            .to_string();
        assert!(err.contains("mqtt.users"), "{err}");
        assert!(!err.contains("development access key"), "{err}");
    }
}
