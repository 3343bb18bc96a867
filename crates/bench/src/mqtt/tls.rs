//! The TLS side of the connection-rate measurement: for Herald, a client
//! certificate issued by its config service (CreateKeysAndCertificate, the
//! dev policy attached) and a client that trusts the Herald CA; for
//! Mosquitto, a throwaway CA with a server and a client certificate. Both
//! servers present ECDSA P-256 certificates and require the client's (mutual
//! TLS, as AWS IoT's device endpoint does), and the clients never resume a
//! session, so every connection is a full handshake on both sides.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use herald_proto::config::v1::{
    AttachPolicyRequest, CreateKeysAndCertificateRequest, GetHeraldCaRequest,
    config_client::ConfigClient,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::{
    ClientConfig, RootCertStore,
    client::Resumption,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};
use tokio_rustls::TlsConnector;

/// The name the clients expect in both servers' certificates (Herald's
/// server certificate is issued for `localhost` and `127.0.0.1`).
const SERVER_NAME: &str = "localhost";

/// A client's TLS settings and the server name it asks for.
#[derive(Clone)]
pub(super) struct TlsDial {
    pub(super) connector: TlsConnector,
    pub(super) name: ServerName<'static>,
}

/// A server's certificate, key and the CA it trusts for client certificates
/// (PEM), as Mosquitto's `certfile`, `keyfile` and `cafile`.
pub(super) struct ServerFiles {
    pub(super) ca_pem: String,
    pub(super) cert_pem: String,
    pub(super) key_pem: String,
}

/// A client certificate from Herald's config service, with the dev policy
/// (which allows `iot:Connect`) attached, and a client trusting the Herald CA.
pub(super) async fn herald_client(config: SocketAddr) -> anyhow::Result<TlsDial> {
    let mut client = ConfigClient::connect(format!("http://{config}"))
        .await
        .context("connecting to the config service")?;
    let created = client
        .create_keys_and_certificate(CreateKeysAndCertificateRequest {
            set_as_active: true,
        })
        .await
        .context("CreateKeysAndCertificate")?
        .into_inner();
    client
        .attach_policy(AttachPolicyRequest {
            policy_name: herald_gateway::DEV_MQTT_POLICY.into(),
            target: created.certificate_arn.clone(),
        })
        .await
        .context("attaching the dev policy to the certificate")?;
    let ca_pem = client
        .get_herald_ca(GetHeraldCaRequest {})
        .await
        .context("GetHeraldCa")?
        .into_inner()
        .certificate_pem;
    let key_pem = created
        .key_pair
        .context("CreateKeysAndCertificate returned no key pair")?
        .private_key;
    dial(&ca_pem, &created.certificate_pem, &key_pem)
}

/// A new CA, a server certificate for `localhost` and `127.0.0.1` signed by
/// it, and a client that trusts the CA and presents a client certificate
/// also signed by it.
pub(super) fn mosquitto_pki() -> anyhow::Result<(ServerFiles, TlsDial)> {
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "herald-bench CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .context("signing the CA certificate")?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().context("generating the server key")?;
    let mut server_params =
        CertificateParams::new(vec![SERVER_NAME.to_owned(), "127.0.0.1".to_owned()])
            .context("the server certificate's names")?;
    server_params.is_ca = IsCa::ExplicitNoCa;
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .context("signing the server certificate")?;

    let client_key = KeyPair::generate().context("generating the client key")?;
    let mut client_params = CertificateParams::default();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "herald-bench client");
    client_params.is_ca = IsCa::ExplicitNoCa;
    client_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params
        .signed_by(&client_key, &issuer)
        .context("signing the client certificate")?;

    let files = ServerFiles {
        ca_pem: ca_cert.pem(),
        cert_pem: server_cert.pem(),
        key_pem: server_key.serialize_pem(),
    };
    let dial = dial(
        &files.ca_pem,
        &client_cert.pem(),
        &client_key.serialize_pem(),
    )?;
    Ok((files, dial))
}

/// A client trusting `ca_pem` only, presenting `cert_pem` with `key_pem`,
/// with session resumption off.
fn dial(ca_pem: &str, cert_pem: &str, key_pem: &str) -> anyhow::Result<TlsDial> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("reading the CA")?)
        .context("trusting the CA")?;
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .context("reading the client certificate")?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("reading the client key")?;
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("the client's TLS versions")?
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![cert], key)
            .context("the client certificate")?;
    config.resumption = Resumption::disabled();
    Ok(TlsDial {
        connector: TlsConnector::from(Arc::new(config)),
        name: ServerName::try_from(SERVER_NAME).context("the server name")?,
    })
}
