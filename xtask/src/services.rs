//! Herald's service binaries, in start order, and the endpoints each listens on.

use std::{collections::HashMap, net::SocketAddr, path::Path};

use crate::util::{Context, Result};

#[derive(Debug)]
pub(crate) struct Service {
    /// The short name: the binary, the log prefix, the data subdirectory.
    pub(crate) name: &'static str,
    /// The Cargo package that builds the binary.
    pub(crate) package: &'static str,
    /// The package's directory; a service whose directory is missing is not built yet.
    pub(crate) dir: &'static str,
    /// The prefix of the service's environment overrides, without the trailing `__`.
    pub(crate) env_prefix: &'static str,
    /// What it listens on; the first one is the main endpoint.
    pub(crate) endpoints: &'static [Endpoint],
    /// Settings naming another service's main endpoint as `http://ADDR`, by
    /// setting (below the prefix) and service name.
    pub(crate) upstreams: &'static [(&'static str, &'static str)],
}

#[derive(Debug)]
pub(crate) struct Endpoint {
    /// The URL scheme printed for it: `grpc`, `http`, `mqtt`, `mqtts`.
    pub(crate) scheme: &'static str,
    /// The setting, as an environment key below the prefix (`GRPC__LISTEN_ADDR`).
    pub(crate) setting: &'static str,
    /// The service's own default for that setting.
    pub(crate) default: &'static str,
}

/// Start order: the gateway depends on the other two, so it comes last (and stops first).
pub(crate) const SERVICES: &[Service] = &[
    Service {
        name: "registry",
        package: "herald-registry",
        dir: "crates/registry",
        env_prefix: "HERALD_REGISTRY",
        endpoints: &[Endpoint {
            scheme: "grpc",
            setting: "GRPC__LISTEN_ADDR",
            default: "127.0.0.1:50051",
        }],
        upstreams: &[],
    },
    Service {
        name: "config",
        package: "herald-config",
        dir: "crates/config",
        env_prefix: "HERALD_CONFIG",
        endpoints: &[Endpoint {
            scheme: "grpc",
            setting: "GRPC__LISTEN_ADDR",
            default: "127.0.0.1:50052",
        }],
        upstreams: &[("REGISTRY_URL", "registry")],
    },
    Service {
        name: "gateway",
        package: "herald-gateway",
        dir: "crates/gateway",
        env_prefix: "HERALD_GATEWAY",
        endpoints: &[
            Endpoint {
                scheme: "http",
                setting: "HTTP__LISTEN_ADDR",
                default: "127.0.0.1:8080",
            },
            Endpoint {
                scheme: "mqtt",
                setting: "MQTT__LISTEN_ADDR",
                default: "127.0.0.1:1883",
            },
            Endpoint {
                scheme: "mqtts",
                setting: "MQTT__TLS_LISTEN_ADDR",
                default: "127.0.0.1:8883",
            },
            // MQTT over WebSockets (off in the gateway unless set).
            Endpoint {
                scheme: "wss",
                setting: "MQTT__WEBSOCKET_LISTEN_ADDR",
                default: "127.0.0.1:8443",
            },
        ],
        upstreams: &[("REGISTRY_URL", "registry"), ("CONFIG_URL", "config")],
    },
];

/// The services whose crates exist under `root`, in start order.
pub(crate) fn present(root: &Path) -> Vec<&'static Service> {
    SERVICES
        .iter()
        .filter(|svc| root.join(svc.dir).is_dir())
        .collect()
}

impl Service {
    /// The full name of one of this service's environment overrides.
    pub(crate) fn env_key(&self, setting: &str) -> String {
        format!("{}__{setting}", self.env_prefix)
    }

    /// Where each endpoint will listen: the override in `env` if there is one,
    /// else the service's default.
    pub(crate) fn listen_addrs(
        &self,
        env: &HashMap<String, String>,
    ) -> Result<Vec<(&'static Endpoint, SocketAddr)>> {
        self.endpoints
            .iter()
            .map(|endpoint| {
                let key = self.env_key(endpoint.setting);
                let (value, source) = match env.get(&key) {
                    Some(value) => (value.as_str(), key.as_str()),
                    None => (endpoint.default, "the default"),
                };
                let addr: SocketAddr = value
                    .parse()
                    .with_context(|| format!("{}: {value:?} from {source}", self.name))?;
                Ok((endpoint, addr))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_unless_the_environment_overrides_them() {
        let registry = &SERVICES[0];
        let addrs = registry.listen_addrs(&HashMap::new()).unwrap();
        assert_eq!(addrs[0].1, "127.0.0.1:50051".parse().unwrap());

        let env = HashMap::from([(
            "HERALD_REGISTRY__GRPC__LISTEN_ADDR".to_owned(),
            "127.0.0.1:6000".to_owned(),
        )]);
        let addrs = registry.listen_addrs(&env).unwrap();
        assert_eq!(addrs[0].1, "127.0.0.1:6000".parse().unwrap());

        let env = HashMap::from([(
            "HERALD_REGISTRY__GRPC__LISTEN_ADDR".to_owned(),
            "localhost".to_owned(),
        )]);
        let err = registry.listen_addrs(&env).unwrap_err().to_string();
        assert!(err.contains("HERALD_REGISTRY__GRPC__LISTEN_ADDR"), "{err}");
    }

    #[test]
    fn the_registry_is_present_and_starts_first() {
        let present = present(&crate::util::project_root());
        assert_eq!(present.first().map(|svc| svc.name), Some("registry"));
    }
}
