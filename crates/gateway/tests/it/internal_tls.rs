//! Mutual TLS between the services (`[internal_tls]`), with the registry,
//! the config service and the gateway in-process and certificates made by
//! `config internal-pki`'s code: the services work together over it, and
//! the registry's and the config service's gRPC APIs refuse every client
//! that is not a Herald service: no TLS, TLS without a certificate, a device
//! certificate from the Herald CA, a certificate from another CA.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use herald_config::internal_pki::{self, PkiOptions};
use herald_gateway::testing::partition::{Tagged, tagged};
use herald_gateway::{DEV_MQTT_PASSWORD, DEV_MQTT_POLICY, DEV_MQTT_USERNAME, Listeners, Settings};
use herald_proto::{
    config::v1::{self as pb, config_client::ConfigClient},
    error::ErrorType,
    registry::v1::{self as reg, registry_client::RegistryClient},
};
use herald_runtime::internal_tls::InternalTlsSettings;
use herald_testkit::{Service, expect_err};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::support::{WAIT, create_policy, eventually, set_events};

/// A new internal PKI (the CA and one certificate per service) in `dir`.
fn new_pki(dir: &Path) -> PathBuf {
    let out = dir.join("pki");
    internal_pki::create(&out, &PkiOptions::default()).unwrap();
    out
}

/// `service`'s internal TLS settings from the PKI in `pki`.
fn tls_settings(pki: &Path, service: &str) -> InternalTlsSettings {
    InternalTlsSettings::from_files(
        &pki.join(internal_pki::CA_FILE),
        &pki.join(format!("{service}.pem")),
        &pki.join(format!("{service}.key")),
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// The registry and the config service with internal TLS on.
struct Services {
    registry: Service,
    config: Service,
    pki: PathBuf,
    dir: TempDir,
}

impl Services {
    async fn start() -> Services {
        let dir = tempfile::tempdir().unwrap();
        let pki = new_pki(dir.path());
        let mut registry_settings =
            herald_registry::Settings::for_test(dir.path().join("registry"));
        registry_settings.internal_tls = tls_settings(&pki, "registry");
        let registry = Service::spawn(|listener, shutdown| {
            herald_registry::run(registry_settings, listener, shutdown)
        })
        .await;
        // An http:// URL: with internal TLS on, it is used as https://.
        let mut config_settings =
            herald_config::Settings::for_test(dir.path().join("config"), registry.url());
        config_settings.internal_tls = tls_settings(&pki, "config");
        let config = Service::spawn(|listener, shutdown| {
            herald_config::run(config_settings, listener, shutdown)
        })
        .await;
        Services {
            registry,
            config,
            pki,
            dir,
        }
    }

    /// A channel to `addr` as a Herald service would open it: the internal
    /// CA trusted, `identity` (a PKI file stem) presented.
    fn service_channel(&self, addr: SocketAddr, identity: &str) -> Channel {
        let identity = Identity::from_pem(
            read(&self.pki.join(format!("{identity}.pem"))),
            read(&self.pki.join(format!("{identity}.key"))),
        );
        tls_channel(addr, &self.pki, Some(identity))
    }

    fn registry(&self) -> RegistryClient<Tagged> {
        RegistryClient::new(tagged(
            self.service_channel(self.registry.addr, "gateway"),
            None,
        ))
    }

    fn config(&self) -> ConfigClient<Tagged> {
        ConfigClient::new(tagged(
            self.service_channel(self.config.addr, "gateway"),
            None,
        ))
    }

    async fn stop(self) {
        self.config.stop().await;
        self.registry.stop().await;
    }
}

/// A TLS channel to `addr` trusting the internal CA in `pki`, presenting
/// `identity` if any.
fn tls_channel(addr: SocketAddr, pki: &Path, identity: Option<Identity>) -> Channel {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(
            &pki.join(internal_pki::CA_FILE),
        )))
        .domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy()
}

/// A plain gRPC channel to `addr`.
fn plain_channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy()
}

fn create_thing_request(name: &str) -> reg::CreateThingRequest {
    reg::CreateThingRequest {
        thing_name: name.into(),
        ..Default::default()
    }
}

fn create_policy_request(name: &str) -> pb::CreatePolicyRequest {
    pb::CreatePolicyRequest {
        policy_name: name.into(),
        policy_document:
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}"#
                .into(),
        tags: vec![],
    }
}

/// Sends what an intruder on `channel` would: a CreateThing to the registry
/// (`registry`) or a CreatePolicy and a server certificate request to the
/// config service; every call must fail, and nothing may change, which a
/// Herald service then checks.
async fn assert_refused(services: &Services, registry: Channel, config: Channel, who: &str) {
    let name = format!("intruder-{}", who.replace(' ', "-"));
    let attempt = RegistryClient::new(registry)
        .create_thing(create_thing_request(&name))
        .await;
    assert!(attempt.is_err(), "{who}: the registry accepted {attempt:?}");
    let mut intruder = ConfigClient::new(config);
    let attempt = intruder.create_policy(create_policy_request(&name)).await;
    assert!(
        attempt.is_err(),
        "{who}: the config service accepted {attempt:?}"
    );
    let attempt = intruder
        .issue_server_certificate(pb::IssueServerCertificateRequest {
            dns_names: vec!["evil.example".into()],
            ip_addresses: vec![],
        })
        .await;
    assert!(
        attempt.is_err(),
        "{who}: the config service issued {attempt:?}"
    );

    let described = services
        .registry()
        .describe_thing(reg::DescribeThingRequest {
            thing_name: name.clone(),
        })
        .await;
    expect_err(described, ErrorType::ResourceNotFound);
    let got = services
        .config()
        .get_policy(pb::GetPolicyRequest {
            policy_name: name.clone(),
        })
        .await;
    expect_err(got, ErrorType::ResourceNotFound);
}

#[tokio::test]
async fn a_client_without_tls_or_without_a_certificate_is_refused() {
    let services = Services::start().await;
    // A Herald service gets through, so the refusals below are about the client.
    services
        .registry()
        .create_thing(create_thing_request("by-a-service"))
        .await
        .unwrap();
    services
        .config()
        .create_policy(create_policy_request("by-a-service"))
        .await
        .unwrap();

    assert_refused(
        &services,
        plain_channel(services.registry.addr),
        plain_channel(services.config.addr),
        "plain gRPC",
    )
    .await;
    assert_refused(
        &services,
        tls_channel(services.registry.addr, &services.pki, None),
        tls_channel(services.config.addr, &services.pki, None),
        "TLS without a certificate",
    )
    .await;
    services.stop().await;
}

#[tokio::test]
async fn a_device_certificate_from_the_herald_ca_is_refused() {
    let services = Services::start().await;
    // What any caller of CreateKeysAndCertificate gets: a client certificate
    // signed by the Herald CA that devices trust.
    let device = services
        .config()
        .create_keys_and_certificate(pb::CreateKeysAndCertificateRequest {
            set_as_active: true,
        })
        .await
        .unwrap()
        .into_inner();
    let key = device.key_pair.unwrap().private_key;
    let identity = || Identity::from_pem(&device.certificate_pem, &key);
    assert_refused(
        &services,
        tls_channel(services.registry.addr, &services.pki, Some(identity())),
        tls_channel(services.config.addr, &services.pki, Some(identity())),
        "device certificate",
    )
    .await;
    services.stop().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let services = Services::start().await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = new_pki(other_dir.path());
    // The same service names, from a CA Herald was not given.
    let identity = || {
        Identity::from_pem(
            read(&other.join("gateway.pem")),
            read(&other.join("gateway.key")),
        )
    };
    assert_refused(
        &services,
        tls_channel(services.registry.addr, &services.pki, Some(identity())),
        tls_channel(services.config.addr, &services.pki, Some(identity())),
        "another CA",
    )
    .await;
    services.stop().await;
}

#[tokio::test]
async fn a_service_does_not_trust_a_server_from_another_ca() {
    let services = Services::start().await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = new_pki(other_dir.path());
    // A gateway given another PKI: it can't verify the registry, so its call fails.
    let identity = Identity::from_pem(
        read(&other.join("gateway.pem")),
        read(&other.join("gateway.key")),
    );
    let attempt = RegistryClient::new(tls_channel(services.registry.addr, &other, Some(identity)))
        .create_thing(create_thing_request("unverified"))
        .await;
    assert!(attempt.is_err(), "{attempt:?}");
    services.stop().await;
}

/// Connects the development user over plain MQTT, retrying while the new
/// gateway refuses CONNECTs (its policy cache not loaded yet).
async fn connect_dev_user(addr: SocketAddr) -> (AsyncClient, rumqttc::EventLoop) {
    let mut options = MqttOptions::new("tls-watcher", addr.ip().to_string(), addr.port());
    options.set_credentials(DEV_MQTT_USERNAME, DEV_MQTT_PASSWORD);
    options.set_keep_alive(Duration::from_secs(30));
    eventually(10, "a CONNACK from the gateway", || {
        let options = options.clone();
        async move {
            let (client, mut eventloop) = AsyncClient::new(options, 10);
            loop {
                match tokio::time::timeout(WAIT, eventloop.poll()).await {
                    Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                        return Some((client, eventloop));
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) | Err(_) => return None,
                }
            }
        }
    })
    .await
}

#[tokio::test]
async fn the_services_work_together_over_mutual_tls() {
    let services = Services::start().await;
    let mut config = services.config();
    create_policy(
        &mut config,
        DEV_MQTT_POLICY,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}"#,
    )
    .await;
    set_events(&mut config, &[("THING", true)]).await;

    // The gateway with its own certificate: its start needs the config
    // service (the MQTT TLS listener's server certificate), its policy
    // cache follows the config service, its event pump the registry.
    let mut settings = Settings::for_test(services.registry.url(), services.config.url());
    settings.data_dir = services.dir.path().join("gateway");
    settings.internal_tls = tls_settings(&services.pki, "gateway");
    let bind = || TcpListener::bind("127.0.0.1:0");
    let listeners = Listeners {
        http: bind().await.unwrap(),
        mqtt: bind().await.unwrap(),
        mqtt_tls: bind().await.unwrap(),
    };
    let mqtt = listeners.mqtt.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let gateway = tokio::spawn(herald_gateway::run(settings, listeners, shutdown.clone()));

    let (client, mut eventloop) = connect_dev_user(mqtt).await;
    client
        .subscribe("$aws/events/thing/+/created", QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        let event = tokio::time::timeout(WAIT, eventloop.poll())
            .await
            .expect("a SUBACK in time")
            .unwrap();
        if let Event::Incoming(Packet::SubAck(ack)) = event {
            assert!(
                ack.return_codes
                    .iter()
                    .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_))),
                "{ack:?}"
            );
            break;
        }
    }
    services
        .registry()
        .create_thing(create_thing_request("over-mtls"))
        .await
        .unwrap();
    let publish = loop {
        let event = tokio::time::timeout(WAIT, eventloop.poll())
            .await
            .expect("the thing's event in time")
            .unwrap();
        if let Event::Incoming(Packet::Publish(publish)) = event {
            break publish;
        }
    };
    assert_eq!(publish.topic, "$aws/events/thing/over-mtls/created");
    let body: serde_json::Value = serde_json::from_slice(&publish.payload).unwrap();
    assert_eq!(body["thingName"], "over-mtls");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), gateway)
        .await
        .expect("the gateway stops in time")
        .unwrap()
        .unwrap();
    services.stop().await;
}

#[tokio::test]
async fn probes_get_health_in_plain_grpc_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let pki = new_pki(dir.path());
    // A free port for the health listener.
    let health_addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut settings = herald_registry::Settings::for_test(dir.path().join("registry"));
    settings.internal_tls = tls_settings(&pki, "registry");
    settings.grpc.health_listen_addr = Some(health_addr);
    let registry =
        Service::spawn(|listener, shutdown| herald_registry::run(settings, listener, shutdown))
            .await;
    let health = tonic_health::pb::health_client::HealthClient::new(plain_channel(health_addr));
    let status = eventually(10, "the health listener", || {
        let mut health = health.clone();
        async move {
            health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: "herald.registry.v1.Registry".into(),
                })
                .await
                .ok()
        }
    })
    .await
    .into_inner()
    .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    // The API is not there.
    let status = RegistryClient::new(plain_channel(health_addr))
        .create_thing(create_thing_request("through-health"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    registry.stop().await;
}

#[tokio::test]
async fn a_service_with_internal_tls_on_and_no_files_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let tls = tls_settings(&missing, "registry");
    let hint = "internal_tls.enabled=false";

    let mut registry = herald_registry::Settings::for_test(dir.path().join("registry"));
    registry.internal_tls = tls.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = herald_registry::run(registry, listener, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains(hint), "{err:#}");

    let mut config =
        herald_config::Settings::for_test(dir.path().join("config"), "http://127.0.0.1:9");
    config.internal_tls = tls.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = herald_config::run(config, listener, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains(hint), "{err:#}");

    let mut gateway = Settings::for_test("http://127.0.0.1:9", "http://127.0.0.1:9");
    gateway.data_dir = dir.path().join("gateway");
    gateway.internal_tls = tls;
    let bind = || TcpListener::bind("127.0.0.1:0");
    let listeners = Listeners {
        http: bind().await.unwrap(),
        mqtt: bind().await.unwrap(),
        mqtt_tls: bind().await.unwrap(),
    };
    let err = herald_gateway::run(gateway, listeners, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains(hint), "{err:#}");

    // The binary with its defaults: internal TLS on, /etc/herald/tls/... absent here.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env_clear()
        .env("HERALD_GATEWAY__HTTP__LISTEN_ADDR", "127.0.0.1:0")
        .env("HERALD_GATEWAY__MQTT__LISTEN_ADDR", "127.0.0.1:0")
        .env("HERALD_GATEWAY__MQTT__TLS_LISTEN_ADDR", "127.0.0.1:0")
        .env("HERALD_GATEWAY__METRICS__LISTEN_ADDR", "127.0.0.1:0")
        .env("HERALD_GATEWAY__DATA_DIR", dir.path().join("gateway-bin"))
        .env(
            "HERALD_GATEWAY__INTERNAL_TLS__CA_FILE",
            missing.join("ca.crt"),
        )
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(hint), "{stderr}");
}
