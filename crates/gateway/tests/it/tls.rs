//! The MQTT TLS listener against the real config service: the server
//! certificate from the Herald CA, mutual TLS with registered client
//! certificates (issued ones and ones registered without a CA), the status
//! check after the handshake, and handshakes that can't hold up the listener.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use herald_gateway::testing::{
    config_cache::{CertificateStatus, ConfigCache},
    tls::{self, CertificatePrincipal, TlsAcceptor, TlsRejection},
};
use herald_policy::CertField;
use herald_proto::config::v1 as pb;
use rustls::{
    ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinHandle,
};
use tokio_rustls::{TlsConnector, client, server};
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// An extra DNS name for the server certificate.
const EXTRA_NAME: &str = "mqtt.herald.test";

/// The services, a ready cache and a server configuration.
struct Setup {
    herald: Herald,
    config: Config,
    cache: ConfigCache,
    shutdown: CancellationToken,
    server_config: Arc<ServerConfig>,
    ca_pem: String,
}

impl Setup {
    async fn start() -> Setup {
        let herald = Herald::start().await;
        let mut config = herald.config().await;
        let shutdown = CancellationToken::new();
        let cache = ConfigCache::spawn(herald.config().await, shutdown.clone());
        tokio::time::timeout(WAIT, cache.ready())
            .await
            .expect("the cache should get its first snapshot");
        let server_config = tls::server_config(&mut config, &[EXTRA_NAME.to_owned()], &[])
            .await
            .unwrap();
        let ca_pem = config
            .get_herald_ca(pb::GetHeraldCaRequest {})
            .await
            .unwrap()
            .into_inner()
            .certificate_pem;
        Setup {
            herald,
            config,
            cache,
            shutdown,
            server_config,
            ca_pem,
        }
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::new(self.server_config.clone())
    }

    /// A client trusting the Herald CA, with `identity` as its certificate.
    fn client(&self, identity: Option<&Device>) -> TlsConnector {
        self.client_with_versions(identity, rustls::DEFAULT_VERSIONS)
    }

    /// [`Setup::client`], speaking only the given TLS versions.
    fn client_with_versions(
        &self,
        identity: Option<&Device>,
        versions: &[&'static SupportedProtocolVersion],
    ) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots);
        let config = match identity {
            Some(device) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(device.cert_pem.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(device.key_pem.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        TlsConnector::from(Arc::new(config))
    }

    /// A new certificate from CreateKeysAndCertificate, once the cache has it.
    async fn issued_device(&mut self, active: bool) -> Device {
        let created = self
            .config
            .create_keys_and_certificate(pb::CreateKeysAndCertificateRequest {
                set_as_active: active,
            })
            .await
            .unwrap()
            .into_inner();
        let device = Device {
            id: created.certificate_id,
            arn: created.certificate_arn,
            cert_pem: created.certificate_pem,
            key_pem: created.key_pair.unwrap().private_key,
        };
        let status = if active {
            CertificateStatus::Active
        } else {
            CertificateStatus::Inactive
        };
        self.cached(&device.id, status).await;
        device
    }

    /// Waits until the cache has certificate `id` with `status`.
    async fn cached(&self, id: &str, status: CertificateStatus) {
        eventually(10, "the cache to have the certificate", || async {
            (self.cache.certificate_status(id) == Some(status)).then_some(())
        })
        .await;
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.herald.stop().await;
    }
}

/// A client certificate and its key.
struct Device {
    id: String,
    arn: String,
    cert_pem: String,
    key_pem: String,
}

/// A self-signed certificate (not registered).
fn self_signed_device() -> Device {
    let certified = rcgen::generate_simple_self_signed(vec!["device-1".to_owned()]).unwrap();
    let cert_pem = certified.cert.pem();
    Device {
        id: tls::certificate_id(certified.cert.der()),
        arn: String::new(),
        cert_pem,
        key_pem: certified.signing_key.serialize_pem(),
    }
}

type Accepted = Result<(server::TlsStream<TcpStream>, CertificatePrincipal), TlsRejection>;

/// A listener on 127.0.0.1 and a task accepting one connection on it.
async fn accept_one(acceptor: TlsAcceptor, cache: ConfigCache) -> (u16, JoinHandle<Accepted>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp, &cache.into()).await
    });
    (port, task)
}

/// Connects to 127.0.0.1:`port` with TLS, verifying the server as `name`.
async fn connect(
    connector: &TlsConnector,
    port: u16,
    name: &str,
) -> std::io::Result<client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("the client handshake should end")
}

/// The result of the server side, promptly.
async fn server_side(task: JoinHandle<Accepted>) -> Accepted {
    tokio::time::timeout(WAIT, task)
        .await
        .expect("the server side should end")
        .unwrap()
}

/// Asserts that the server closed the client's connection (or failed it).
async fn assert_closed(stream: &mut client::TlsStream<TcpStream>) {
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .expect("the server should close the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "read {read:?}");
}

#[tokio::test]
async fn an_active_issued_certificate_is_accepted() {
    let mut setup = Setup::start().await;
    let device = setup.issued_device(true).await;
    let (port, task) = accept_one(setup.acceptor(), setup.cache.clone()).await;
    let mut client = connect(&setup.client(Some(&device)), port, "localhost")
        .await
        .unwrap();
    let (mut stream, principal) = server_side(task).await.unwrap();
    assert_eq!(principal.certificate_id, device.id);
    assert_eq!(principal.certificate_arn, device.arn);
    assert_eq!(principal.certificate_arn, arn("cert", &device.id));
    assert_eq!(
        principal.subject,
        vec![(CertField::CommonName, "AWS IoT Certificate".to_owned())]
    );
    assert!(!principal.issuer.is_empty());

    // The streams work both ways.
    client.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    stream.write_all(b"pong").await.unwrap();
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
    setup.stop().await;
}

#[tokio::test]
async fn a_tls12_client_is_accepted_and_a_tls12_client_without_a_certificate_is_not() {
    let mut setup = Setup::start().await;
    let device = setup.issued_device(true).await;
    let tls12 = [&rustls::version::TLS12];

    let (port, task) = accept_one(setup.acceptor(), setup.cache.clone()).await;
    let client = connect(
        &setup.client_with_versions(Some(&device), &tls12),
        port,
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(
        client.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let (_stream, principal) = server_side(task).await.unwrap();
    assert_eq!(principal.certificate_id, device.id);

    // With TLS 1.2 the server's refusal ends the client's handshake too.
    let (port, task) = accept_one(setup.acceptor(), setup.cache.clone()).await;
    connect(&setup.client_with_versions(None, &tls12), port, "localhost")
        .await
        .expect_err("the handshake should fail without a client certificate");
    let rejection = server_side(task).await.unwrap_err();
    assert!(
        matches!(rejection, TlsRejection::Handshake(_)),
        "{rejection:?}"
    );
    setup.stop().await;
}

#[tokio::test]
async fn an_inactive_certificate_is_rejected_after_the_handshake() {
    let mut setup = Setup::start().await;
    let device = setup.issued_device(false).await;
    let (port, task) = accept_one(setup.acceptor(), setup.cache.clone()).await;
    // The handshake itself succeeds: the client proves it holds the key.
    let mut client = connect(&setup.client(Some(&device)), port, "localhost")
        .await
        .unwrap();
    match server_side(task).await {
        Err(TlsRejection::InactiveCertificate {
            certificate_id,
            status,
        }) => {
            assert_eq!(certificate_id, device.id);
            assert_eq!(status, CertificateStatus::Inactive);
        }
        other => panic!("expected an inactive rejection, got {other:?}"),
    }
    assert_closed(&mut client).await;
    setup.stop().await;
}

#[tokio::test]
async fn a_revoked_certificate_is_rejected() {
    let mut setup = Setup::start().await;
    let device = setup.issued_device(true).await;
    set_status(
        &mut setup.config,
        &device.id,
        pb::CertificateStatus::Revoked,
    )
    .await;
    setup.cached(&device.id, CertificateStatus::Revoked).await;
    let (port, task) = accept_one(setup.acceptor(), setup.cache.clone()).await;
    let mut client = connect(&setup.client(Some(&device)), port, "localhost")
        .await
        .unwrap();
    let rejection = server_side(task).await.unwrap_err();
    assert!(
        matches!(&rejection, TlsRejection::RevokedCertificate { certificate_id } if *certificate_id == device.id),
        "{rejection:?}"
    );
    assert_closed(&mut client).await;
    setup.stop().await;
}

#[tokio::test]
async fn an_unregistered_certificate_is_rejected() {
    let setup = Setup::start().await;
    let device = self_signed_device();
    let (port, task) = accept_one(setup.acceptor(), setup.cache.clone()).await;
    let mut client = connect(&setup.client(Some(&device)), port, "localhost")
        .await
        .unwrap();
    let rejection = server_side(task).await.unwrap_err();
    assert!(
        matches!(&rejection, TlsRejection::UnknownCertificate { certificate_id } if *certificate_id == device.id),
        "{rejection:?}"
    );
    assert_eq!(rejection.certificate_id(), Some(device.id.as_str()));
    assert_closed(&mut client).await;
    setup.stop().await;
}

#[tokio::test]
async fn a_client_without_a_certificate_fails_the_handshake() {
    let setup = Setup::start().await;
    let (port, task) = accept_one(setup.acceptor(), setup.cache.clone()).await;
    // With TLS 1.3 the client's side may complete before the server has seen
    // (the absence of) its certificate; the server's alert then ends it.
    let client = connect(&setup.client(None), port, "localhost").await;
    let rejection = server_side(task).await.unwrap_err();
    assert!(
        matches!(rejection, TlsRejection::Handshake(_)),
        "{rejection:?}"
    );
    if let Ok(mut client) = client {
        assert_closed(&mut client).await;
    }
    setup.stop().await;
}

#[tokio::test]
async fn a_certificate_registered_without_a_ca_is_accepted() {
    let mut setup = Setup::start().await;
    let mut device = self_signed_device();
    let registered = setup
        .config
        .register_certificate_without_ca(pb::RegisterCertificateWithoutCaRequest {
            certificate_pem: device.cert_pem.clone(),
            status: Some(pb::CertificateStatus::Active as i32),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(registered.certificate_id, device.id);
    device.arn = registered.certificate_arn;
    setup.cached(&device.id, CertificateStatus::Active).await;

    let (port, task) = accept_one(setup.acceptor(), setup.cache.clone()).await;
    let _client = connect(&setup.client(Some(&device)), port, "127.0.0.1")
        .await
        .unwrap();
    let (_stream, principal) = server_side(task).await.unwrap();
    assert_eq!(principal.certificate_id, device.id);
    assert_eq!(principal.certificate_arn, device.arn);
    setup.stop().await;
}

#[tokio::test]
async fn a_silent_handshake_times_out() {
    let setup = Setup::start().await;
    let acceptor = setup
        .acceptor()
        .with_handshake_timeout(Duration::from_millis(300));
    assert_eq!(acceptor.handshake_timeout(), Duration::from_millis(300));
    let (port, task) = accept_one(acceptor, setup.cache.clone()).await;
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let rejection = server_side(task).await.unwrap_err();
    assert!(
        matches!(rejection, TlsRejection::Timeout(t) if t == Duration::from_millis(300)),
        "{rejection:?}"
    );
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(WAIT, silent.read(&mut buf))
        .await
        .expect("the silent peer should be disconnected");
    assert!(matches!(read, Ok(0) | Err(_)), "read {read:?}");
    setup.stop().await;
}

/// The accept loop on a new listener; accepted principals arrive on the
/// receiver (their streams are kept open by the loop's callback).
async fn start_loop(
    setup: &Setup,
    acceptor: TlsAcceptor,
) -> (
    u16,
    mpsc::UnboundedReceiver<CertificatePrincipal>,
    JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(tls::accept_loop(
        listener,
        acceptor,
        setup.cache.clone(),
        move |stream, principal| {
            // Keep the connection open a while, as a session would.
            tokio::spawn(async move {
                let _stream = stream;
                tokio::time::sleep(WAIT).await;
            });
            let _ = tx.send(principal);
        },
        setup.shutdown.clone(),
    ));
    (port, rx, task)
}

#[tokio::test]
async fn a_silent_peer_delays_no_one() {
    let mut setup = Setup::start().await;
    let device = setup.issued_device(true).await;
    let handshake_timeout = Duration::from_millis(1500);
    let acceptor = setup.acceptor().with_handshake_timeout(handshake_timeout);
    let (port, mut accepted, task) = start_loop(&setup, acceptor).await;

    // A peer that connects and never sends a ClientHello...
    let silent_since = Instant::now();
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    // ...does not hold up a legitimate client.
    let started = Instant::now();
    let client = connect(&setup.client(Some(&device)), port, "localhost")
        .await
        .unwrap();
    let principal = tokio::time::timeout(Duration::from_secs(1), accepted.recv())
        .await
        .expect("the legitimate client should be accepted within a second")
        .unwrap();
    assert_eq!(principal.certificate_id, device.id);
    assert!(started.elapsed() < Duration::from_secs(1));

    // The silent peer is still connected (its handshake has time left)...
    let mut buf = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(100), silent.read(&mut buf))
            .await
            .is_err(),
        "the silent peer should still be waiting"
    );
    // ...until its handshake times out.
    let read = tokio::time::timeout(WAIT, silent.read(&mut buf))
        .await
        .expect("the silent peer should be disconnected");
    assert!(matches!(read, Ok(0) | Err(_)), "read {read:?}");
    assert!(silent_since.elapsed() >= handshake_timeout - Duration::from_millis(100));
    drop(client);

    // The loop ends on shutdown.
    setup.shutdown.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("the accept loop should end on shutdown")
        .unwrap();
    setup.stop().await;
}

#[tokio::test]
async fn the_server_certificate_verifies_against_the_herald_ca() {
    let mut setup = Setup::start().await;
    let device = setup.issued_device(true).await;
    let (port, mut accepted, _task) = start_loop(&setup, setup.acceptor()).await;
    let connector = setup.client(Some(&device));
    for name in ["localhost", "127.0.0.1", EXTRA_NAME] {
        let _client = connect(&connector, port, name)
            .await
            .unwrap_or_else(|e| panic!("the server should verify as {name}: {e}"));
        let principal = tokio::time::timeout(WAIT, accepted.recv())
            .await
            .expect("the client should be accepted")
            .unwrap();
        assert_eq!(principal.certificate_id, device.id);
    }
    // A name the certificate doesn't cover fails the client's verification.
    let error = connect(&connector, port, "other.example")
        .await
        .expect_err("the server should not verify as other.example");
    assert!(
        error.to_string().contains("certificate"),
        "unexpected error: {error}"
    );
    setup.stop().await;
}
