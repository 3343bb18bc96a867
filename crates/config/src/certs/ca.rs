//! The Herald CA: loaded or created at start, and the certificates it signs
//! (client certificates with a new key or for a request, and the gateway's
//! TLS server certificate).

use std::{
    fs,
    io::Write as _,
    net::IpAddr,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, bail};
use herald_proto::error::{AwsError, ErrorType};
use herald_runtime::x509::certificate_id;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use x509_parser::time::ASN1Time;

use super::{
    bad_csr, csr, internal, invalid_request,
    parse::{parse_certificate, parse_der, verify_signed_by},
    pem::{pem_encode, single_pem_block},
};

/// The CA certificate's file name in the data directory.
pub(crate) const CA_CERT_FILE: &str = "ca.pem";
/// The CA private key's file name in the data directory.
pub(crate) const CA_KEY_FILE: &str = "ca.key";

/// The subject common name AWS IoT gives the certificates it issues.
const ISSUED_COMMON_NAME: &str = "AWS IoT Certificate";
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// Herald's certificate authority: signs the certificates Herald issues.
#[derive(Debug)]
pub(crate) struct Ca {
    cert_pem: String,
    id: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate issued with a new key pair (`CreateKeysAndCertificate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issued {
    pub(crate) certificate_pem: String,
    /// PKCS#8 (`-----BEGIN PRIVATE KEY-----`).
    pub(crate) private_key_pem: String,
    /// SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`).
    pub(crate) public_key_pem: String,
}

impl Ca {
    /// Loads or creates the Herald CA.
    ///
    /// With `cert_file` and `key_file` (both or neither), loads that CA: a PEM
    /// certificate (exactly one) and a PEM PKCS#8 private key, which must
    /// match. Otherwise loads `dir/ca.pem` and `dir/ca.key`, or, when neither
    /// exists, creates a new CA (ECDSA P-256, CN "Herald CA", valid 10 years)
    /// and writes them (the key with mode 0600). Either way `dir/ca.pem` ends
    /// up holding the CA certificate.
    pub(crate) fn load_or_create(
        dir: &Path,
        cert_file: Option<&Path>,
        key_file: Option<&Path>,
    ) -> anyhow::Result<Ca> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        match (cert_file, key_file) {
            (Some(cert_file), Some(key_file)) => {
                let ca = Ca::load(cert_file, key_file)?;
                write_file(&cert_path, ca.cert_pem.as_bytes(), 0o644)?;
                tracing::info!(id = %ca.id, cert = %cert_file.display(), "loaded the CA");
                Ok(ca)
            }
            (None, None) => match (exists(&cert_path)?, exists(&key_path)?) {
                (true, true) => {
                    let ca = Ca::load(&cert_path, &key_path)?;
                    tracing::info!(id = %ca.id, dir = %dir.display(), "loaded the CA");
                    Ok(ca)
                }
                (true, false) => bail!(
                    "{} exists but {} does not: restore the CA key, configure the CA's \
                     certificate and key files, or remove {} to create a new CA",
                    cert_path.display(),
                    key_path.display(),
                    cert_path.display(),
                ),
                // A key without a certificate is left over from an interrupted
                // creation: nothing was ever signed with it.
                (false, _) => {
                    let (cert_pem, key_pem) = new_ca()?;
                    let ca = Ca::from_pem(&cert_pem, &key_pem)?;
                    write_file(&key_path, key_pem.as_bytes(), 0o600)?;
                    write_file(&cert_path, ca.cert_pem.as_bytes(), 0o644)?;
                    tracing::info!(id = %ca.id, dir = %dir.display(), "created a new CA");
                    Ok(ca)
                }
            },
            _ => bail!("the CA certificate file and key file must be configured together"),
        }
    }

    fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<Ca> {
        let cert_pem = fs::read_to_string(cert_file)
            .with_context(|| format!("reading {}", cert_file.display()))?;
        let key_pem = fs::read_to_string(key_file)
            .with_context(|| format!("reading {}", key_file.display()))?;
        Ca::from_pem(&cert_pem, &key_pem)
            .with_context(|| format!("loading the CA from {}", cert_file.display()))
    }

    fn from_pem(cert_pem: &str, key_pem: &str) -> anyhow::Result<Ca> {
        let der = single_pem_block(cert_pem, &["CERTIFICATE"])
            .map_err(|e| anyhow::anyhow!("the CA certificate is not valid: {e}"))?;
        let cert =
            parse_der(&der).map_err(|e| anyhow::anyhow!("the CA certificate is not valid: {e}"))?;
        if !cert.is_ca() {
            bail!("the CA certificate is not a CA certificate (basicConstraints cA is not set)");
        }
        if cert.validity().not_after < ASN1Time::now() {
            bail!(
                "the CA certificate expired on {}",
                cert.validity().not_after
            );
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| {
            anyhow::anyhow!(
                "the CA key is not a PEM PKCS#8 P-256, P-384, Ed25519 or RSA private key: {e}"
            )
        })?;
        if rcgen::PublicKeyData::subject_public_key_info(&key) != cert.public_key().raw {
            bail!("the CA key does not match the CA certificate");
        }
        let issuer = Issuer::from_ca_cert_der(&der.as_slice().into(), key)
            .map_err(|e| anyhow::anyhow!("can't sign with the CA certificate: {e}"))?;
        let ca = Ca {
            cert_pem: pem_encode("CERTIFICATE", &der),
            id: certificate_id(&der),
            issuer,
        };
        // rcgen rebuilds the issuer name from the CA certificate and can't
        // represent every name (repeated or multi-valued attributes): make
        // sure what it signs chains to the CA.
        let probe = ca
            .issue_with_new_key()
            .and_then(|issued| parse_certificate(&issued.certificate_pem))
            .and_then(|probe| verify_signed_by(&probe, &ca.cert_pem));
        if let Err(e) = probe {
            bail!("certificates signed with this CA don't chain to it: {e}");
        }
        Ok(ca)
    }

    /// The CA certificate, PEM.
    pub(crate) fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate's id (lowercase hex SHA-256 of its DER).
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// A client certificate for a new P-256 key pair (the CA's own probe,
    /// and tests).
    pub(crate) fn issue_with_new_key(&self) -> Result<Issued, AwsError> {
        self.issue_with_key(new_key()?)
    }

    /// `CreateKeysAndCertificate`: a client certificate for `key` (see
    /// [`new_rsa_key`]), subject CN "AWS IoT Certificate" as AWS issues.
    pub(crate) fn issue_with_key(&self, key: KeyPair) -> Result<Issued, AwsError> {
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, ISSUED_COMMON_NAME);
        let cert = client_params(subject)
            .signed_by(&key, &self.issuer)
            .map_err(|e| internal("signing the certificate", e))?;
        Ok(Issued {
            certificate_pem: pem_encode("CERTIFICATE", cert.der()),
            private_key_pem: key.serialize_pem(),
            public_key_pem: key.public_key_pem(),
        })
    }

    /// `CreateCertificateFromCsr`: a client certificate for the request's
    /// public key and subject (see [`csr::read_request`] for what a request
    /// must be).
    pub(crate) fn issue_from_csr(&self, csr_pem: &str) -> Result<String, AwsError> {
        let request = csr::read_request(csr_pem)?;
        let cert = client_params(request.subject)
            .signed_by(&request.public_key, &self.issuer)
            .map_err(|e| internal("signing the certificate", e))?;
        // The certificate must carry the request's subject and key exactly.
        let issued = parse_der(cert.der()).map_err(|e| {
            AwsError::new(
                ErrorType::InternalFailure,
                format!("the issued certificate does not parse: {e}"),
            )
        })?;
        if issued.subject().as_raw() != request.subject_der {
            return Err(bad_csr("its subject can't be reproduced in a certificate"));
        }
        if issued.public_key().raw != request.public_key_der {
            return Err(bad_csr("its public key encoding is not supported"));
        }
        Ok(pem_encode("CERTIFICATE", cert.der()))
    }

    /// A TLS server certificate (EKU serverAuth, valid one year) for the
    /// given DNS names and IP addresses, with a new P-256 key. Returns the
    /// certificate PEM (without the CA) and the PKCS#8 key PEM.
    pub(crate) fn issue_server(
        &self,
        dns_names: &[String],
        ip_addresses: &[String],
    ) -> Result<(String, String), AwsError> {
        let mut sans = Vec::with_capacity(dns_names.len() + ip_addresses.len());
        for name in dns_names {
            let valid = !name.is_empty() && !name.contains(|c: char| c.is_whitespace());
            let name = valid
                .then(|| rcgen::string::Ia5String::try_from(name.as_str()).ok())
                .flatten()
                .ok_or_else(|| invalid_request(format!("Invalid DNS name: {name:?}")))?;
            sans.push(SanType::DnsName(name));
        }
        for ip in ip_addresses {
            let ip: IpAddr = ip
                .trim()
                .parse()
                .map_err(|_| invalid_request(format!("Invalid IP address: {ip:?}")))?;
            sans.push(SanType::IpAddress(ip));
        }
        let common_name = dns_names
            .first()
            .or(ip_addresses.first())
            .ok_or_else(|| {
                invalid_request("A server certificate needs a DNS name or an IP address")
            })?
            .trim();
        let key = new_key()?;
        let now = ASN1Time::now().to_datetime();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = sans;
        params.serial_number = Some(random_serial());
        params.not_before = now - HOUR;
        params.not_after = now + 365 * DAY;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| internal("signing the server certificate", e))?;
        Ok((pem_encode("CERTIFICATE", cert.der()), key.serialize_pem()))
    }
}

/// A new self-signed CA: (certificate PEM, PKCS#8 key PEM).
fn new_ca() -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| anyhow::anyhow!("generating the CA key: {e}"))?;
    let now = ASN1Time::now().to_datetime();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "Herald CA");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Herald");
    params.serial_number = Some(random_serial());
    params.not_before = now - HOUR;
    params.not_after = now + 3652 * DAY;
    // Herald signs only end-entity certificates.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params
        .self_signed(&key)
        .map_err(|e| anyhow::anyhow!("signing the CA certificate: {e}"))?;
    Ok((pem_encode("CERTIFICATE", cert.der()), key.serialize_pem()))
}

fn new_key() -> Result<KeyPair, AwsError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| internal("generating a key", e))
}

/// A new 2048-bit RSA key pair, what AWS IoT's CreateKeysAndCertificate
/// issues. `ring` signs with RSA keys but can't make them: the `rsa` crate
/// finds the primes. Takes a fraction of a second of CPU: call it off the
/// async runtime.
pub(crate) fn new_rsa_key() -> Result<KeyPair, AwsError> {
    use rsa::pkcs8::EncodePrivateKey as _;
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)
        .map_err(|e| internal("generating an RSA key", e))?;
    let der = key
        .to_pkcs8_der()
        .map_err(|e| internal("encoding an RSA key", e))?;
    KeyPair::try_from(der.as_bytes()).map_err(|e| internal("loading an RSA key", e))
}

/// The parameters of a client certificate: valid from an hour ago (clock skew)
/// to 2049-12-31T23:59:59Z like AWS's, digitalSignature, clientAuth.
fn client_params(subject: DistinguishedName) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject;
    params.serial_number = Some(random_serial());
    params.not_before = ASN1Time::now().to_datetime() - HOUR;
    params.not_after = rcgen::date_time_ymd(2049, 12, 31) + (DAY - Duration::from_secs(1));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params
}

/// A random positive 20-byte serial number. The randomness is two v4 UUIDs
/// (the OS generator, through `getrandom`) hashed together.
fn random_serial() -> SerialNumber {
    let mut hasher = Sha256::new();
    hasher.update(uuid::Uuid::new_v4().as_bytes());
    hasher.update(uuid::Uuid::new_v4().as_bytes());
    let mut serial = hasher.finalize()[..20].to_vec();
    // Positive, and no leading zero byte, so it encodes in exactly 20 bytes.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    SerialNumber::from(serial)
}

fn exists(path: &Path) -> anyhow::Result<bool> {
    path.try_exists()
        .with_context(|| format!("checking {}", path.display()))
}

/// Writes a file atomically (temporary file, then rename) with `mode`.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    let write = || -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(tmp)?;
        // The mode above only applies to a file the call creates.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(tmp, path)
    };
    write().with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::test_support::{field, new_ca_in};
    use herald_policy::CertField;
    use x509_parser::extensions::GeneralName;

    #[test]
    fn ca_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Ca>();
    }

    #[test]
    fn create_then_reload_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca_in(dir.path());
        let cert_path = dir.path().join(CA_CERT_FILE);
        let key_path = dir.path().join(CA_KEY_FILE);
        assert_eq!(fs::read_to_string(&cert_path).unwrap(), ca.cert_pem());
        let mode = fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let parsed = parse_certificate(ca.cert_pem()).unwrap();
        assert_eq!(parsed.id, ca.id());
        assert!(parsed.is_ca);
        assert_eq!(parsed.pem, ca.cert_pem());
        assert_eq!(field(&parsed.subject, CertField::CommonName), ["Herald CA"]);
        assert_eq!(field(&parsed.subject, CertField::Organization), ["Herald"]);
        let years = (parsed.not_after_ms - parsed.not_before_ms) / (365 * 86_400_000);
        assert_eq!(years, 10);
        let (_, x509) = x509_parser::parse_x509_certificate(&parsed.der).unwrap();
        let ku = x509.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        x509.verify_signature(None).unwrap();

        let again = new_ca_in(dir.path());
        assert_eq!(again.id(), ca.id());
        assert_eq!(again.cert_pem(), ca.cert_pem());
        // Certificates issued before the reload still verify.
        let issued = parse_certificate(&ca.issue_with_new_key().unwrap().certificate_pem).unwrap();
        assert_eq!(
            verify_signed_by(&issued, again.cert_pem()).unwrap(),
            ca.id()
        );
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        new_ca_in(dir.path());
        fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
        let err = Ca::load_or_create(dir.path(), None, None).unwrap_err();
        assert!(err.to_string().contains("ca.key"), "{err:#}");
    }

    #[test]
    fn load_the_ca_from_explicit_files() {
        let source = tempfile::tempdir().unwrap();
        let original = new_ca_in(source.path());
        let data = tempfile::tempdir().unwrap();
        let cert_file = source.path().join(CA_CERT_FILE);
        let key_file = source.path().join(CA_KEY_FILE);
        let ca = Ca::load_or_create(data.path(), Some(&cert_file), Some(&key_file)).unwrap();
        assert_eq!(ca.id(), original.id());
        assert_eq!(
            fs::read_to_string(data.path().join(CA_CERT_FILE)).unwrap(),
            original.cert_pem()
        );
        assert!(!data.path().join(CA_KEY_FILE).exists());

        let issued = parse_certificate(&ca.issue_with_new_key().unwrap().certificate_pem).unwrap();
        assert_eq!(
            verify_signed_by(&issued, original.cert_pem()).unwrap(),
            ca.id()
        );

        assert!(Ca::load_or_create(data.path(), Some(&cert_file), None).is_err());
    }

    #[test]
    fn a_mismatched_certificate_and_key_are_refused() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        new_ca_in(a.path());
        new_ca_in(b.path());
        let data = tempfile::tempdir().unwrap();
        let err = Ca::load_or_create(
            data.path(),
            Some(&a.path().join(CA_CERT_FILE)),
            Some(&b.path().join(CA_KEY_FILE)),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("does not match"), "{err:#}");
    }

    #[test]
    fn a_leaf_certificate_is_not_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca_in(dir.path());
        let issued = ca.issue_with_new_key().unwrap();
        let err = Ca::from_pem(&issued.certificate_pem, &issued.private_key_pem).unwrap_err();
        assert!(err.to_string().contains("not a CA"), "{err:#}");
    }

    #[test]
    fn create_keys_issues_a_2048_bit_rsa_key_whose_certificate_chains_to_the_ca() {
        use x509_parser::public_key::PublicKey;
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca_in(dir.path());
        let issued = ca.issue_with_key(new_rsa_key().unwrap()).unwrap();
        assert!(
            issued
                .private_key_pem
                .starts_with("-----BEGIN PRIVATE KEY-----\n")
        );
        let parsed = parse_certificate(&issued.certificate_pem).unwrap();
        verify_signed_by(&parsed, ca.cert_pem()).unwrap();
        let (_, x509) = x509_parser::parse_x509_certificate(&parsed.der).unwrap();
        match x509.public_key().parsed().unwrap() {
            PublicKey::RSA(key) => assert_eq!(key.key_size(), 2048),
            other => panic!("not an RSA key: {other:?}"),
        }
        // The private key is the certificate's.
        let key = KeyPair::from_pem(&issued.private_key_pem).unwrap();
        assert_eq!(
            rcgen::PublicKeyData::subject_public_key_info(&key),
            x509.public_key().raw
        );
        assert_eq!(key.public_key_pem(), issued.public_key_pem);
    }

    #[test]
    fn issue_with_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca_in(dir.path());
        let issued = ca.issue_with_new_key().unwrap();
        assert!(
            issued
                .private_key_pem
                .starts_with("-----BEGIN PRIVATE KEY-----\n")
        );
        assert!(
            issued
                .public_key_pem
                .starts_with("-----BEGIN PUBLIC KEY-----\n")
        );

        let parsed = parse_certificate(&issued.certificate_pem).unwrap();
        assert_eq!(parsed.pem, issued.certificate_pem);
        let digest = Sha256::digest(&parsed.der);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parsed.id, hex);
        assert_eq!(parsed.id, certificate_id(&parsed.der));
        assert!(!parsed.is_ca);
        assert_eq!(field(&parsed.issuer, CertField::CommonName), ["Herald CA"]);
        assert_eq!(
            field(&parsed.subject, CertField::CommonName),
            ["AWS IoT Certificate"]
        );
        // 2049-12-31T23:59:59Z, like AWS's.
        assert_eq!(parsed.not_after_ms, 2_524_607_999_000);
        let now_ms = ASN1Time::now().timestamp() * 1000;
        assert!(parsed.not_before_ms < now_ms && parsed.not_before_ms > now_ms - 2 * 3_600_000);
        assert_eq!(verify_signed_by(&parsed, ca.cert_pem()).unwrap(), ca.id());

        let (_, x509) = x509_parser::parse_x509_certificate(&parsed.der).unwrap();
        assert_eq!(x509.raw_serial().len(), 20);
        assert!(x509.key_usage().unwrap().unwrap().value.digital_signature());
        let eku = x509.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(!x509.basic_constraints().unwrap().unwrap().value.ca);

        // The key pair is the certificate's.
        let key = KeyPair::from_pem(&issued.private_key_pem).unwrap();
        assert_eq!(key.public_key_pem(), issued.public_key_pem);
        assert_eq!(
            rcgen::PublicKeyData::subject_public_key_info(&key),
            x509.public_key().raw
        );

        // Every certificate is new.
        let other = parse_certificate(&ca.issue_with_new_key().unwrap().certificate_pem).unwrap();
        assert_ne!(other.id, parsed.id);
    }

    #[test]
    fn server_certificates_have_the_sans() {
        let ca = new_ca_in(tempfile::tempdir().unwrap().path());
        let (cert_pem, key_pem) = ca
            .issue_server(
                &["localhost".to_owned(), "herald.example".to_owned()],
                &["127.0.0.1".to_owned(), "::1".to_owned()],
            )
            .unwrap();
        let parsed = parse_certificate(&cert_pem).unwrap();
        assert_eq!(verify_signed_by(&parsed, ca.cert_pem()).unwrap(), ca.id());
        assert_eq!(field(&parsed.subject, CertField::CommonName), ["localhost"]);
        let days = (parsed.not_after_ms - parsed.not_before_ms) / 86_400_000;
        assert_eq!(days, 365);

        let (_, x509) = x509_parser::parse_x509_certificate(&parsed.der).unwrap();
        let sans = &x509
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names;
        let mut loopback6 = [0; 16];
        loopback6[15] = 1;
        assert_eq!(
            sans.as_slice(),
            [
                GeneralName::DNSName("localhost"),
                GeneralName::DNSName("herald.example"),
                GeneralName::IPAddress(&[127, 0, 0, 1]),
                GeneralName::IPAddress(&loopback6),
            ]
        );
        let eku = x509.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        let key = KeyPair::from_pem(&key_pem).unwrap();
        assert_eq!(
            rcgen::PublicKeyData::subject_public_key_info(&key),
            x509.public_key().raw
        );

        // An IP address alone names the certificate.
        let (cert_pem, _) = ca.issue_server(&[], &["10.0.0.1".to_owned()]).unwrap();
        let parsed = parse_certificate(&cert_pem).unwrap();
        assert_eq!(field(&parsed.subject, CertField::CommonName), ["10.0.0.1"]);

        for (dns, ips) in [
            (vec![], vec!["not an ip".to_owned()]),
            (vec!["bad name".to_owned()], vec![]),
            (vec!["".to_owned()], vec![]),
            (vec![], vec![]),
        ] {
            let err = ca.issue_server(&dns, &ips).unwrap_err();
            assert_eq!(err.error_type, ErrorType::InvalidRequest, "{dns:?} {ips:?}");
        }
    }
}
