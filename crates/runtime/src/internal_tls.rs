//! Mutual TLS between Herald's services (the `[internal_tls]` settings).
//!
//! Every service's gRPC server asks each client for a certificate chaining to
//! the internal CA (`ca_file`) and refuses the connection without one; every
//! service's gRPC client verifies the server against the same CA and presents
//! its own certificate (`cert_file`, `key_file`). The internal CA is not the
//! Herald CA that signs device certificates: a device certificate never
//! authenticates as a service. `config internal-pki` creates the internal CA
//! and one certificate per service (see `docs/internal-tls.md`).
//!
//! On by default; `cargo xtask dev` and the test helpers turn it off.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, bail};
use rustls::{
    RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject as _},
    server::WebPkiClientVerifier,
};
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// Where the files are looked for unless the settings name others: the
/// names `kubectl create secret tls` and cert-manager give them, in one folder.
pub const DEFAULT_CA_FILE: &str = "/etc/herald/tls/ca.crt";
pub const DEFAULT_CERT_FILE: &str = "/etc/herald/tls/tls.crt";
pub const DEFAULT_KEY_FILE: &str = "/etc/herald/tls/tls.key";

/// How long a peer may take over the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What to do when a service cannot use its internal TLS files.
const HINT: &str = "set internal_tls.ca_file, internal_tls.cert_file and internal_tls.key_file \
     (`config internal-pki --out DIR` creates them), or internal_tls.enabled=false for local \
     development";

/// `[internal_tls]`: the same in every service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InternalTlsSettings {
    /// Mutual TLS on every gRPC connection between services, served and opened.
    pub enabled: bool,
    /// The internal CA's certificate (PEM): a peer's certificate must chain to it.
    pub ca_file: PathBuf,
    /// This service's certificate (PEM, leaf first), used as server and as client.
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl Default for InternalTlsSettings {
    fn default() -> Self {
        InternalTlsSettings {
            enabled: true,
            ca_file: DEFAULT_CA_FILE.into(),
            cert_file: DEFAULT_CERT_FILE.into(),
            key_file: DEFAULT_KEY_FILE.into(),
        }
    }
}

impl InternalTlsSettings {
    /// Turned off: plain gRPC (local development and tests).
    pub fn disabled() -> Self {
        InternalTlsSettings {
            enabled: false,
            ..InternalTlsSettings::default()
        }
    }

    /// Turned on with the given files.
    pub fn from_files(ca_file: &Path, cert_file: &Path, key_file: &Path) -> Self {
        InternalTlsSettings {
            enabled: true,
            ca_file: ca_file.to_path_buf(),
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
        }
    }
}

/// The loaded and checked internal TLS material of one service.
#[derive(Clone)]
pub struct InternalTls {
    ca_pem: Arc<[u8]>,
    cert_pem: Arc<[u8]>,
    key_pem: Arc<[u8]>,
}

impl std::fmt::Debug for InternalTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalTls").finish_non_exhaustive()
    }
}

impl InternalTls {
    /// Reads and checks the files: `None` when internal TLS is off. Fails,
    /// saying what to set, when a file is missing or unusable, or when the
    /// service's own certificate does not chain to the CA.
    pub fn load(settings: &InternalTlsSettings) -> anyhow::Result<Option<InternalTls>> {
        if !settings.enabled {
            tracing::warn!(
                "internal_tls is off: the gRPC API is served and called without authentication"
            );
            return Ok(None);
        }
        let read = |what: &str, path: &Path| {
            std::fs::read(path).with_context(|| {
                format!(
                    "internal_tls is on but its {what} {} can't be read: {HINT}",
                    path.display()
                )
            })
        };
        let tls = InternalTls {
            ca_pem: read("ca_file", &settings.ca_file)?.into(),
            cert_pem: read("cert_file", &settings.cert_file)?.into(),
            key_pem: read("key_file", &settings.key_file)?.into(),
        };
        tls.check()
            .with_context(|| format!("internal_tls: {HINT}"))?;
        Ok(Some(tls))
    }

    /// The checks rustls would make at the first connection, made at start.
    fn check(&self) -> anyhow::Result<()> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pems = |pem: &[u8], what: &str| -> anyhow::Result<Vec<CertificateDer<'static>>> {
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("{what} is not PEM: {e:?}"))?;
            if certs.is_empty() {
                bail!("{what} holds no CERTIFICATE");
            }
            Ok(certs)
        };
        let mut roots = RootCertStore::empty();
        for ca in pems(&self.ca_pem, "ca_file")? {
            roots
                .add(ca)
                .map_err(|e| anyhow::anyhow!("ca_file holds an unusable certificate: {e}"))?;
        }
        let chain = pems(&self.cert_pem, "cert_file")?;
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| anyhow::anyhow!("key_file holds no PEM private key: {e:?}"))?;
        rustls::sign::CertifiedKey::from_der(chain.clone(), key, &provider)
            .map_err(|e| anyhow::anyhow!("cert_file and key_file do not go together: {e}"))?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .context("build the client certificate verifier")?;
        let (leaf, intermediates) = chain.split_first().context("cert_file is empty")?;
        verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|e| {
                anyhow::anyhow!(
                    "cert_file is not a client certificate of the CA in ca_file \
                     (it must chain to it, be valid now and allow clientAuth): {e}"
                )
            })?;
        Ok(())
    }

    /// The server side: this service's certificate, and a client certificate
    /// chaining to the CA required of every connection.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&*self.cert_pem, &*self.key_pem))
            .client_ca_root(Certificate::from_pem(&*self.ca_pem))
            .client_auth_optional(false)
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// The client side: servers verified against the CA, this service's
    /// certificate presented.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&*self.ca_pem))
            .identity(Identity::from_pem(&*self.cert_pem, &*self.key_pem))
            .timeout(HANDSHAKE_TIMEOUT)
    }
}

/// A lazily connecting gRPC endpoint for another service's `url`. With
/// internal TLS, an `http://` URL is switched to `https://` (so one URL
/// serves with TLS on or off, and a scheme can never turn TLS off); without
/// it, an `https://` URL is refused.
pub fn endpoint(url: &str, tls: Option<&InternalTls>) -> anyhow::Result<Endpoint> {
    let url = url.trim();
    let endpoint = match (tls, url.split_once("://")) {
        (Some(tls), Some((scheme, rest)))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            Endpoint::from_shared(format!("https://{rest}"))
                .with_context(|| format!("read the URL {url:?}"))?
                .tls_config(tls.client_config())
                .with_context(|| format!("set up TLS for {url:?}"))?
        }
        (None, Some((scheme, _))) if scheme.eq_ignore_ascii_case("http") => {
            Endpoint::from_shared(url.to_owned())
                .with_context(|| format!("read the URL {url:?}"))?
        }
        (None, Some((scheme, _))) if scheme.eq_ignore_ascii_case("https") => bail!(
            "{url:?} is https:// but internal_tls is off: use http://, or turn internal_tls on"
        ),
        _ => bail!("{url:?} is not an http:// or https:// URL"),
    };
    Ok(endpoint.connect_timeout(Duration::from_secs(5)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_without_files_says_what_to_set() {
        let dir = tempfile::tempdir().unwrap();
        let settings = InternalTlsSettings::from_files(
            &dir.path().join("ca.pem"),
            &dir.path().join("tls.pem"),
            &dir.path().join("tls.key"),
        );
        let err = format!("{:#}", InternalTls::load(&settings).unwrap_err());
        assert!(err.contains("internal_tls.enabled=false"), "{err}");
        assert!(err.contains("ca.pem"), "{err}");
        let default = InternalTlsSettings::default();
        assert!(default.enabled);
    }

    #[test]
    fn garbage_files_are_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["ca.pem", "tls.pem", "tls.key"] {
            std::fs::write(dir.path().join(name), "not pem\n").unwrap();
        }
        let settings = InternalTlsSettings::from_files(
            &dir.path().join("ca.pem"),
            &dir.path().join("tls.pem"),
            &dir.path().join("tls.key"),
        );
        let err = format!("{:#}", InternalTls::load(&settings).unwrap_err());
        assert!(err.contains("ca_file holds no CERTIFICATE"), "{err}");
    }

    #[test]
    fn disabled_loads_nothing_and_keeps_plain_urls() {
        assert!(
            InternalTls::load(&InternalTlsSettings::disabled())
                .unwrap()
                .is_none()
        );
        let plain = endpoint("http://127.0.0.1:50051", None).unwrap();
        assert_eq!(plain.uri().scheme_str(), Some("http"));
        assert!(endpoint("https://127.0.0.1:50051", None).is_err());
        assert!(endpoint("127.0.0.1:50051", None).is_err());
    }
}
