//! `config internal-pki`: the internal CA the services authenticate each
//! other with (see `herald_runtime::internal_tls`), and one certificate per
//! service.
//!
//! This CA is not the Herald CA that signs device certificates: devices trust
//! the Herald CA, and anyone who may call `CreateKeysAndCertificate` gets a
//! certificate from it, so it must never vouch for a service. The internal
//! CA's private key is used once, here, and never written: to add a name or
//! renew, create a new set and replace every service's files.

use std::{
    fs,
    io::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
    string::Ia5String,
};
use x509_parser::time::ASN1Time;

/// The services that get a certificate, by the name each runs under
/// (binary, Kubernetes Service and StatefulSet).
pub const SERVICES: [&str; 3] = ["registry", "config", "gateway"];

/// The CA certificate's file name in the output folder.
pub const CA_FILE: &str = "ca.pem";

const DAY: Duration = Duration::from_secs(86_400);

/// What `config internal-pki` is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiOptions {
    /// The Kubernetes namespace the services run in, for their
    /// `<name>.<namespace>.svc` names.
    pub namespace: String,
    /// More DNS names, in every service's certificate.
    pub dns: Vec<String>,
    /// How long the CA and the certificates are valid.
    pub days: u32,
}

impl Default for PkiOptions {
    fn default() -> Self {
        PkiOptions {
            namespace: "default".into(),
            dns: Vec::new(),
            days: 730,
        }
    }
}

/// The DNS names a service's certificate carries: `localhost`, its
/// Kubernetes names (the headless Service, its StatefulSet's pod `<name>-0`,
/// with and without the namespace), and the extra ones.
pub fn dns_names(service: &str, options: &PkiOptions) -> Vec<String> {
    let ns = &options.namespace;
    let mut names = vec![
        "localhost".to_owned(),
        service.to_owned(),
        format!("{service}-0.{service}"),
        format!("{service}.{ns}"),
        format!("{service}.{ns}.svc"),
        format!("{service}.{ns}.svc.cluster.local"),
        format!("{service}-0.{service}.{ns}.svc"),
        format!("{service}-0.{service}.{ns}.svc.cluster.local"),
    ];
    for name in &options.dns {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// The files [`create`] writes in `out`, in order: the CA certificate, then
/// each service's certificate and key (`<name>.pem`, `<name>.key`).
pub fn files(out: &Path) -> Vec<PathBuf> {
    let mut files = vec![out.join(CA_FILE)];
    for service in SERVICES {
        files.push(out.join(format!("{service}.pem")));
        files.push(out.join(format!("{service}.key")));
    }
    files
}

/// Creates a new internal CA and a certificate and key for each of
/// [`SERVICES`] in `out` (created if missing); refuses to overwrite any file.
/// Every certificate serves as the service's server and client certificate.
/// Returns the files written.
pub fn create(out: &Path, options: &PkiOptions) -> anyhow::Result<Vec<PathBuf>> {
    if options.days == 0 {
        bail!("--days must be at least 1");
    }
    let namespace_ok = !options.namespace.is_empty()
        && options
            .namespace
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !namespace_ok {
        bail!(
            "the namespace {:?} is not a Kubernetes namespace name",
            options.namespace
        );
    }
    let files = files(out);
    for file in &files {
        if file
            .try_exists()
            .with_context(|| format!("check {}", file.display()))?
        {
            bail!(
                "{} exists: internal-pki never overwrites; choose another --out folder",
                file.display()
            );
        }
    }
    let mut sans = Vec::new();
    for service in SERVICES {
        let mut service_sans = Vec::new();
        for name in dns_names(service, options) {
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*'));
            let name = valid
                .then(|| Ia5String::try_from(name.as_str()).ok())
                .flatten()
                .with_context(|| format!("{name:?} is not a DNS name"))?;
            service_sans.push(SanType::DnsName(name));
        }
        service_sans.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        service_sans.push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        sans.push(service_sans);
    }

    let now = ASN1Time::now().to_datetime();
    let not_before = now - DAY;
    let not_after = now + DAY * options.days;
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generate the CA key")?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "Herald internal CA");
    ca.distinguished_name
        .push(DnType::OrganizationName, "Herald");
    ca.serial_number = Some(random_serial());
    ca.not_before = not_before;
    ca.not_after = not_after;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).context("sign the CA certificate")?;
    let issuer = Issuer::new(ca, ca_key);

    let mut contents = vec![ca_cert.pem()];
    for (service, sans) in SERVICES.into_iter().zip(sans) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .with_context(|| format!("generate the {service} key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, service);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Herald");
        params.subject_alt_names = sans;
        params.serial_number = Some(random_serial());
        params.not_before = not_before;
        params.not_after = not_after;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &issuer)
            .with_context(|| format!("sign the {service} certificate"))?;
        contents.push(cert.pem());
        contents.push(key.serialize_pem());
    }

    let mut dir = fs::DirBuilder::new();
    dir.recursive(true).mode(0o700);
    dir.create(out)
        .with_context(|| format!("create {}", out.display()))?;
    for (file, text) in files.iter().zip(&contents) {
        let is_key = file.extension().is_some_and(|ext| ext == "key");
        let mode = if is_key { 0o600 } else { 0o644 };
        let mut handle = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(file)
            .with_context(|| format!("create {}", file.display()))?;
        handle
            .write_all(text.as_bytes())
            .and_then(|()| handle.sync_all())
            .with_context(|| format!("write {}", file.display()))?;
    }
    Ok(files)
}

/// A random positive 20-byte serial number.
fn random_serial() -> SerialNumber {
    let mut serial = Vec::with_capacity(32);
    serial.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    serial.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    serial.truncate(20);
    serial[0] = (serial[0] & 0x7f) | 0x40;
    SerialNumber::from(serial)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_runtime::internal_tls::{InternalTls, InternalTlsSettings};

    #[test]
    fn creates_usable_files_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pki");
        let options = PkiOptions {
            dns: vec!["herald.example.com".into()],
            ..PkiOptions::default()
        };
        let written = create(&out, &options).unwrap();
        assert_eq!(written.len(), 7);
        for service in SERVICES {
            // Each service's files load as its internal TLS (chain, key, clientAuth).
            let settings = InternalTlsSettings::from_files(
                &out.join(CA_FILE),
                &out.join(format!("{service}.pem")),
                &out.join(format!("{service}.key")),
            );
            InternalTls::load(&settings).unwrap().unwrap();
            let pem = fs::read_to_string(out.join(format!("{service}.pem"))).unwrap();
            let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
            let cert = block.parse_x509().unwrap();
            let san = cert.subject_alternative_name().unwrap().unwrap();
            let names = format!("{:?}", san.value.general_names);
            for expected in [
                "localhost".to_owned(),
                format!("{service}-0.{service}"),
                format!("{service}.default.svc"),
                "herald.example.com".to_owned(),
            ] {
                assert!(names.contains(&expected), "{expected} in {names}");
            }
            let mode = fs::metadata(out.join(format!("{service}.key")))
                .unwrap()
                .permissions();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
                0o600
            );
        }
        assert!(!out.join("ca.key").exists(), "the CA key is never written");
        let before = fs::read(out.join(CA_FILE)).unwrap();
        let err = create(&out, &options).unwrap_err().to_string();
        assert!(err.contains("never overwrites"), "{err}");
        assert_eq!(fs::read(out.join(CA_FILE)).unwrap(), before);
    }

    #[test]
    fn bad_names_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pki");
        let options = PkiOptions {
            dns: vec!["not a name".into()],
            ..PkiOptions::default()
        };
        assert!(create(&out, &options).is_err());
        assert!(!out.exists());
        let options = PkiOptions {
            namespace: "Bad/NS".into(),
            ..PkiOptions::default()
        };
        assert!(create(&out, &options).is_err());
    }
}
