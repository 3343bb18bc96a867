//! The gateway's MQTT-over-TLS listener: mutual TLS the way AWS IoT Core
//! does it, with Herald's CA as the server's issuer.
//!
//! - [`server_config`] asks the config service for the Herald CA and a server
//!   certificate (for `localhost`, `127.0.0.1` and the configured names) and
//!   builds a rustls [`ServerConfig`] that **requires** a client certificate.
//!   Exactly one crypto provider, ring, is named explicitly (no process-wide
//!   default is needed, so nothing can panic over two providers).
//! - [`TlsAcceptor`] runs one handshake under a timeout, then identifies the
//!   client by its certificate id (the lowercase SHA-256 hex of the leaf's
//!   DER) and its subject and issuer fields, read by [`herald_runtime::x509`]
//!   as the config service reads them, and requires that certificate to be
//!   registered and `ACTIVE` in the [`ConfigCache`].
//! - A certificate Herald does not know, or holds as `PENDING_ACTIVATION`,
//!   goes to just-in-time registration ([`Jitr`], when the acceptor has it)
//!   before the connection is refused: signed by a registered CA with
//!   auto-registration on, it is registered and its event published.
//! - [`accept_loop`] accepts TCP connections and runs each handshake in its
//!   own task, so a peer that connects and never sends a ClientHello delays
//!   nobody else (rumqttd's listener, which handshakes inline, does).
//!
//! # Why the client certificate is not chain-verified
//!
//! AWS IoT accepts any client certificate that is *registered* and active:
//! certificates it issued, certificates signed by a registered CA, and
//! certificates registered without a CA (`RegisterCertificateWithoutCA`,
//! often self-signed), which chain to nothing the server knows. So trust
//! comes from the registry, not from a chain. The TLS layer's job is only to
//! prove that the client holds the private key of the certificate it shows;
//! rustls does that by checking the handshake signature (TLS 1.2
//! CertificateVerify, TLS 1.3 CertificateVerify) against the certificate's
//! public key, which [`RegisteredCertificateVerifier`] delegates to the ring
//! provider. The certificate itself must parse and be within its validity
//! period.
//!
//! The registration and status check happens *after* the handshake, not in
//! the verifier: rustls calls the verifier on the Certificate message, before
//! the client has proven possession of the key, so a check there would let
//! anyone who has seen a (public) certificate learn whether it is registered
//! and active. After the handshake the peer is known to hold the key; a
//! rejected peer is simply disconnected.
//!
//! The check runs on every accepted connection, resumed TLS sessions
//! included (rustls keeps the client's certificate with the session), so a
//! certificate deactivated or revoked since is turned away all the same.
//!
//! No root hints (`certificate_authorities`) are sent: a device with a
//! self-signed certificate must not be led to think that its certificate is
//! unwanted.

use std::{fmt, sync::Arc, time::Duration};

use anyhow::Context as _;
use herald_policy::CertField;
use herald_proto::config::v1::{self as pb, config_client::ConfigClient};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error as RustlsError, ServerConfig,
    SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject},
    server::danger::{ClientCertVerified, ClientCertVerifier},
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use x509_parser::certificate::X509Certificate;

use crate::config_cache::{CertificateStatus, ConfigCache};
use crate::limits::{ConnectionLimit, ConnectionPermit};
use crate::mqtt::partitions::{Located, MqttPartitions};
use herald_runtime::partition::Partition;

/// The certificate id of a DER certificate (lowercase hex SHA-256), computed
/// as the config service computes it.
pub use herald_runtime::x509::certificate_id;
use herald_runtime::x509::name_fields;

/// How long a client gets to complete the TLS handshake, by default.
pub(crate) const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The DNS name the server certificate always covers.
const LOCALHOST: &str = "localhost";
/// The IP address the server certificate always covers.
const LOOPBACK: &str = "127.0.0.1";

/// The ring crypto provider, the only one Herald uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ------------------------------------------------------------ server config

/// A TLS server configuration for the MQTT listener: a server certificate
/// from the config service's Herald CA for `localhost`, `127.0.0.1` and
/// `names` (DNS names) and `ips` (IP addresses), and a required client
/// certificate, checked as the [module documentation](self) says.
pub async fn server_config(
    config: &mut ConfigClient<crate::partition::Tagged>,
    names: &[String],
    ips: &[String],
) -> anyhow::Result<Arc<ServerConfig>> {
    issued_server_config(config, names, ips, true).await
}

/// [`server_config`] without client certificates: for MQTT over
/// WebSockets, whose clients authenticate with a SigV4 signature.
pub(crate) async fn websocket_server_config(
    config: &mut ConfigClient<crate::partition::Tagged>,
    names: &[String],
    ips: &[String],
) -> anyhow::Result<Arc<ServerConfig>> {
    issued_server_config(config, names, ips, false).await
}

async fn issued_server_config(
    config: &mut ConfigClient<crate::partition::Tagged>,
    names: &[String],
    ips: &[String],
    client_certificates: bool,
) -> anyhow::Result<Arc<ServerConfig>> {
    let ca = config
        .get_herald_ca(pb::GetHeraldCaRequest {})
        .await
        .context("GetHeraldCa")?
        .into_inner();
    let mut dns_names = vec![LOCALHOST.to_owned()];
    for name in names {
        if !dns_names.contains(name) {
            dns_names.push(name.clone());
        }
    }
    let mut ip_addresses = vec![LOOPBACK.to_owned()];
    for ip in ips {
        if !ip_addresses.contains(ip) {
            ip_addresses.push(ip.clone());
        }
    }
    let issued = config
        .issue_server_certificate(pb::IssueServerCertificateRequest {
            dns_names: dns_names.clone(),
            ip_addresses: ip_addresses.clone(),
        })
        .await
        .context("IssueServerCertificate")?
        .into_inner();
    let chain = vec![
        CertificateDer::from_pem_slice(issued.certificate_pem.as_bytes())
            .context("the issued server certificate")?,
    ];
    let key = PrivateKeyDer::from_pem_slice(issued.private_key_pem.as_bytes())
        .context("the issued server key")?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("the TLS protocol versions")?;
    let builder = if client_certificates {
        builder.with_client_cert_verifier(Arc::new(RegisteredCertificateVerifier::new(provider())))
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(chain, key)
        .context("the server certificate and key")?;
    tracing::info!(
        ca_certificate_id = ca.ca_certificate_id,
        ?dns_names,
        ?ip_addresses,
        "MQTT TLS server certificate issued by the Herald CA"
    );
    Ok(Arc::new(config))
}

/// Accepts any client certificate that parses as X.509 and is within its
/// validity period, and checks the handshake signatures that prove the
/// client holds its key. Whether the certificate is registered and active is
/// checked after the handshake ([`TlsAcceptor::accept`]); see the
/// [module documentation](self) for why.
#[derive(Debug)]
struct RegisteredCertificateVerifier {
    provider: Arc<CryptoProvider>,
}

impl RegisteredCertificateVerifier {
    fn new(provider: Arc<CryptoProvider>) -> RegisteredCertificateVerifier {
        RegisteredCertificateVerifier { provider }
    }
}

impl ClientCertVerifier for RegisteredCertificateVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, RustlsError> {
        let cert = parse_certificate(end_entity).ok_or(RustlsError::InvalidCertificate(
            CertificateError::BadEncoding,
        ))?;
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let validity = cert.validity();
        if now < validity.not_before.timestamp() {
            return Err(RustlsError::InvalidCertificate(
                CertificateError::NotValidYet,
            ));
        }
        if now > validity.not_after.timestamp() {
            return Err(RustlsError::InvalidCertificate(CertificateError::Expired));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Parses a whole DER certificate (no trailing data).
fn parse_certificate(der: &[u8]) -> Option<X509Certificate<'_>> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Some(cert),
        _ => None,
    }
}

// ------------------------------------------------------------ the principal

/// Who a TLS client is: its registered, active certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePrincipal {
    /// Lowercase hex SHA-256 of the leaf certificate's DER.
    pub certificate_id: String,
    /// `arn:aws:iot:{region}:{account}:cert/{certificate_id}`, as registered.
    pub certificate_arn: String,
    /// The subject's policy-variable fields, in certificate order
    /// (`iot:Certificate.Subject.<field>`).
    pub subject: Vec<(CertField, String)>,
    /// The issuer's policy-variable fields, in certificate order
    /// (`iot:Certificate.Issuer.<field>`).
    pub issuer: Vec<(CertField, String)>,
    /// The partition it is registered in (`None`: the gateway's own, or
    /// the one cache the acceptor was given).
    pub partition: Option<Partition>,
}

/// Where the acceptor looks a client certificate up: one config cache (the
/// gateway's own partition, without just-in-time registration), or every
/// partition's (each registering unknown certificates its CAs signed, see
/// [`Jitr`]).
#[derive(Clone)]
pub struct Directory(DirectoryKind);

#[derive(Clone)]
enum DirectoryKind {
    One(ConfigCache),
    Partitions(MqttPartitions),
}

impl From<ConfigCache> for Directory {
    fn from(cache: ConfigCache) -> Directory {
        Directory(DirectoryKind::One(cache))
    }
}

impl From<MqttPartitions> for Directory {
    fn from(partitions: MqttPartitions) -> Directory {
        Directory(DirectoryKind::Partitions(partitions))
    }
}

/// Why a TLS client was turned away.
#[derive(Debug, thiserror::Error)]
pub enum TlsRejection {
    /// The handshake did not complete within the handshake timeout.
    #[error("the TLS handshake timed out after {0:?}")]
    Timeout(Duration),
    /// The handshake failed (no client certificate, a bad signature, a
    /// protocol error, the peer went away...).
    #[error("the TLS handshake failed: {0}")]
    Handshake(#[source] std::io::Error),
    /// The handshake completed without a client certificate (can't happen
    /// with [`server_config`]'s configuration, which requires one).
    #[error("no client certificate")]
    NoCertificate,
    /// The client certificate is not registered.
    #[error("certificate {certificate_id} is not registered")]
    UnknownCertificate { certificate_id: String },
    /// The client certificate is registered but not active (`INACTIVE`,
    /// `PENDING_TRANSFER`, `REGISTER_INACTIVE`, `PENDING_ACTIVATION`).
    #[error("certificate {certificate_id} is not active ({status:?})")]
    InactiveCertificate {
        certificate_id: String,
        status: CertificateStatus,
    },
    /// The client certificate is revoked.
    #[error("certificate {certificate_id} is revoked")]
    RevokedCertificate { certificate_id: String },
    /// The client certificate is registered in several partitions and the
    /// TLS server name does not say which one the device means.
    #[error(
        "certificate {certificate_id} is registered in {partitions:?}; the server name {server_name:?} names none of them"
    )]
    AmbiguousCertificate {
        certificate_id: String,
        partitions: Vec<String>,
        server_name: Option<String>,
    },
}

impl TlsRejection {
    /// The certificate id, for the rejections that come after the handshake.
    pub fn certificate_id(&self) -> Option<&str> {
        match self {
            TlsRejection::UnknownCertificate { certificate_id }
            | TlsRejection::InactiveCertificate { certificate_id, .. }
            | TlsRejection::RevokedCertificate { certificate_id }
            | TlsRejection::AmbiguousCertificate { certificate_id, .. } => Some(certificate_id),
            _ => None,
        }
    }
}

// ------------------------------------------------------------ the acceptor

/// Runs server-side TLS handshakes under a timeout and identifies the client
/// by its registered certificate. Cheap to clone.
#[derive(Clone)]
pub struct TlsAcceptor {
    inner: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// An acceptor for `config` (normally from [`server_config`]) with the
    /// default handshake timeout, [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub fn new(config: Arc<ServerConfig>) -> TlsAcceptor {
        TlsAcceptor {
            inner: tokio_rustls::TlsAcceptor::from(config),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// The same acceptor with another handshake timeout.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> TlsAcceptor {
        self.handshake_timeout = timeout;
        self
    }

    /// How long a client gets to complete the handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Runs the handshake on `tcp` (under the handshake timeout), then
    /// requires the client certificate to be registered and `ACTIVE` in
    /// `directory` (in one partition: the one the TLS server name asks
    /// for, when it is registered in several). On a rejection the
    /// connection is dropped (closed).
    pub async fn accept(
        &self,
        tcp: TcpStream,
        directory: &Directory,
    ) -> Result<(TlsStream<TcpStream>, CertificatePrincipal), TlsRejection> {
        let stream = tokio::time::timeout(self.handshake_timeout, self.inner.accept(tcp))
            .await
            .map_err(|_| TlsRejection::Timeout(self.handshake_timeout))?
            .map_err(TlsRejection::Handshake)?;
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .ok_or(TlsRejection::NoCertificate)?;
        let certificate_id = certificate_id(leaf);
        let server_name = stream.get_ref().1.server_name();
        let (cached, partition, jitr) = match &directory.0 {
            DirectoryKind::One(cache) => match cache.certificate(&certificate_id) {
                Some(cached) => (cached, None, None),
                None => return Err(TlsRejection::UnknownCertificate { certificate_id }),
            },
            DirectoryKind::Partitions(partitions) => {
                match partitions.locate(&certificate_id, server_name).await {
                    Located::Registered(found) => {
                        let (world, cached) = *found;
                        (cached, world.partition, Some(world.jitr))
                    }
                    Located::Unknown(candidates) => {
                        // The first partition with a CA that signed it
                        // registers it.
                        for world in candidates {
                            if world.jitr.presented(leaf).await {
                                break;
                            }
                        }
                        return Err(TlsRejection::UnknownCertificate { certificate_id });
                    }
                    Located::Ambiguous(partitions) => {
                        return Err(TlsRejection::AmbiguousCertificate {
                            certificate_id,
                            partitions: partitions.iter().map(Partition::name).collect(),
                            server_name: server_name.map(str::to_owned),
                        });
                    }
                }
            }
        };
        match cached.status {
            CertificateStatus::Active => {}
            CertificateStatus::PendingActivation => {
                if let Some(jitr) = &jitr {
                    jitr.presented(leaf).await;
                }
                return Err(TlsRejection::InactiveCertificate {
                    certificate_id,
                    status: CertificateStatus::PendingActivation,
                });
            }
            CertificateStatus::Revoked => {
                return Err(TlsRejection::RevokedCertificate { certificate_id });
            }
            status => {
                return Err(TlsRejection::InactiveCertificate {
                    certificate_id,
                    status,
                });
            }
        }
        // The verifier parsed it already; a failure here can't happen.
        let (subject, issuer) = parse_certificate(leaf)
            .map(|cert| (name_fields(cert.subject()), name_fields(cert.issuer())))
            .unwrap_or_default();
        let principal = CertificatePrincipal {
            certificate_id,
            certificate_arn: cached.arn,
            subject,
            issuer,
            partition,
        };
        Ok((stream, principal))
    }
}

/// Accepts connections on `listener` until `shutdown` is cancelled. Each
/// connection's handshake and certificate check ([`TlsAcceptor::accept`])
/// run in a task of its own, so a slow or silent peer delays no one; an
/// accepted one is handed to `on_connection` (from that task), a rejected one
/// is logged and closed. Handshakes still running when `shutdown` is
/// cancelled are abandoned (their connections closed).
pub async fn accept_loop<F>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    directory: impl Into<Directory>,
    on_connection: F,
    shutdown: CancellationToken,
) where
    F: Fn(TlsStream<TcpStream>, CertificatePrincipal) + Send + Sync + 'static,
{
    accept_loop_limited(
        listener,
        acceptor,
        directory.into(),
        ConnectionLimit::unlimited("mqtt_tls"),
        move |stream, principal, _permit| on_connection(stream, principal),
        shutdown,
    )
    .await;
}

/// [`accept_loop`] holding at most `limit` connections at once, TLS
/// handshakes in progress included: a place is taken before `accept`, and
/// `on_connection` gets it with the stream, to hold as long as the
/// connection lives.
pub(crate) async fn accept_loop_limited<F>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    directory: Directory,
    limit: ConnectionLimit,
    on_connection: F,
    shutdown: CancellationToken,
) where
    F: Fn(TlsStream<TcpStream>, CertificatePrincipal, ConnectionPermit) + Send + Sync + 'static,
{
    let on_connection = Arc::new(on_connection);
    while let Some((tcp, peer, permit)) = limit.accept(&listener, &shutdown).await {
        let acceptor = acceptor.clone();
        let directory = directory.clone();
        let on_connection = on_connection.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let result = tokio::select! {
                () = shutdown.cancelled() => return,
                result = acceptor.accept(tcp, &directory) => result,
            };
            match result {
                Ok((stream, principal)) => {
                    tracing::debug!(
                        %peer,
                        certificate_id = principal.certificate_id,
                        "MQTT TLS client accepted"
                    );
                    on_connection(stream, principal, permit);
                }
                Err(
                    rejection @ (TlsRejection::Timeout(_)
                    | TlsRejection::Handshake(_)
                    | TlsRejection::NoCertificate),
                ) => {
                    tracing::debug!(%peer, %rejection, "MQTT TLS handshake failed");
                }
                Err(rejection) => {
                    tracing::info!(
                        %peer,
                        certificate_id = rejection.certificate_id(),
                        %rejection,
                        "MQTT TLS client rejected"
                    );
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> UnixTime {
        UnixTime::now()
    }

    #[test]
    fn only_certificates_within_their_validity_are_accepted() {
        let verifier = RegisteredCertificateVerifier::new(provider());
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["device".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let expired = params.self_signed(&key).unwrap().der().clone();
        assert!(matches!(
            verifier.verify_client_cert(&expired, &[], now()),
            Err(RustlsError::InvalidCertificate(CertificateError::Expired))
        ));
        params.not_before = rcgen::date_time_ymd(2999, 1, 1);
        params.not_after = rcgen::date_time_ymd(3000, 1, 1);
        let future = params.self_signed(&key).unwrap().der().clone();
        assert!(matches!(
            verifier.verify_client_cert(&future, &[], now()),
            Err(RustlsError::InvalidCertificate(
                CertificateError::NotValidYet
            ))
        ));
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        let valid = params.self_signed(&key).unwrap().der().clone();
        assert!(verifier.verify_client_cert(&valid, &[], now()).is_ok());
    }

    #[test]
    fn garbage_is_not_a_client_certificate() {
        let verifier = RegisteredCertificateVerifier::new(provider());
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        assert!(matches!(
            verifier.verify_client_cert(&garbage, &[], now()),
            Err(RustlsError::InvalidCertificate(
                CertificateError::BadEncoding
            ))
        ));
        assert!(verifier.client_auth_mandatory());
        assert!(verifier.root_hint_subjects().is_empty());
        assert!(!verifier.supported_verify_schemes().is_empty());
    }
}
