//! The X.509 side of the config service: the Herald CA, the certificates it
//! issues (`CreateKeysAndCertificate`, `CreateCertificateFromCsr`, the
//! gateway's server certificate) and the checks on certificates clients bring
//! (`RegisterCertificate`, `RegisterCertificateWithoutCA`, the TLS peer's).
//!
//! Certificates are identified as AWS IoT does: the certificate id is the
//! lowercase hex SHA-256 of the certificate's DER encoding.
//!
//! Keys Herald generates are ECDSA P-256. AWS issues RSA 2048 keys from
//! `CreateKeysAndCertificate`, but AWS IoT accepts P-256 client certificates
//! as well (from `CreateCertificateFromCsr`, say); a P-256 key takes
//! microseconds to generate where an RSA key takes up to hundreds of
//! milliseconds, and `ring`, rcgen's backend here, can't generate RSA keys.

use std::{
    fmt::Write as _,
    fs,
    io::Write as _,
    net::IpAddr,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
    time::Duration,
};

use anyhow::{Context as _, bail};
use herald_policy::CertField;
use herald_proto::error::{AwsError, ErrorType};
use herald_runtime::x509::{certificate_id, name_fields};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    SanType, SerialNumber,
    string::{BmpString, UniversalString},
};
use sha2::{Digest, Sha256};
use x509_parser::{
    asn1_rs::Tag,
    certificate::X509Certificate,
    certification_request::X509CertificationRequest,
    error::X509Error,
    oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    },
    pem::Pem,
    prelude::FromDer,
    time::ASN1Time,
    x509::{AttributeTypeAndValue, SubjectPublicKeyInfo, X509Name},
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

    /// `CreateKeysAndCertificate`: a new P-256 key pair and a client
    /// certificate for it, subject CN "AWS IoT Certificate" as AWS issues.
    pub(crate) fn issue_with_new_key(&self) -> Result<Issued, AwsError> {
        let key = new_key()?;
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
    /// public key and subject. The request's signature must verify; its
    /// requested extensions are ignored (as AWS does). Keys: RSA of 2048 bits
    /// or more, ECDSA P-256 or P-384.
    pub(crate) fn issue_from_csr(&self, csr_pem: &str) -> Result<String, AwsError> {
        let der = single_pem_block(csr_pem, &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"])
            .map_err(bad_csr)?;
        let csr = match X509CertificationRequest::from_der(&der) {
            Ok((rest, _)) if !rest.is_empty() => return Err(bad_csr("trailing data after it")),
            Ok((_, csr)) => csr,
            Err(e) => return Err(bad_csr(format!("not a PKCS#10 request: {e}"))),
        };
        csr.verify_signature().map_err(|e| match e {
            X509Error::SignatureUnsupportedAlgorithm => {
                bad_csr("its signature algorithm is not supported")
            }
            _ => bad_csr("its signature does not verify"),
        })?;
        let info = &csr.certification_request_info;
        check_csr_key(&info.subject_pki)?;
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
            .map_err(|e| bad_csr(format!("unsupported public key: {e}")))?;
        let cert = client_params(rcgen_name(&info.subject)?)
            .signed_by(&public_key, &self.issuer)
            .map_err(|e| internal("signing the certificate", e))?;
        // The certificate must carry the request's subject and key exactly.
        let issued = parse_der(cert.der()).map_err(|e| {
            AwsError::new(
                ErrorType::InternalFailure,
                format!("the issued certificate does not parse: {e}"),
            )
        })?;
        if issued.subject().as_raw() != info.subject.as_raw() {
            return Err(bad_csr("its subject can't be reproduced in a certificate"));
        }
        if issued.public_key().raw != info.subject_pki.raw {
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

/// A certificate as Herald stores and checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedCertificate {
    /// Lowercase hex SHA-256 of the DER.
    pub(crate) id: String,
    /// Normalized: exactly one `CERTIFICATE` block, re-encoded.
    pub(crate) pem: String,
    pub(crate) der: Vec<u8>,
    pub(crate) not_before_ms: i64,
    pub(crate) not_after_ms: i64,
    /// The subject's policy-variable fields, in certificate order.
    pub(crate) subject: Vec<(CertField, String)>,
    /// The issuer's policy-variable fields, in certificate order.
    pub(crate) issuer: Vec<(CertField, String)>,
    /// basicConstraints cA is set.
    pub(crate) is_ca: bool,
}

/// Parses a PEM certificate a client brings: exactly one `CERTIFICATE` block
/// holding a valid, unexpired X.509 certificate; otherwise
/// `CertificateValidationException`.
pub(crate) fn parse_certificate(pem: &str) -> Result<ParsedCertificate, AwsError> {
    let der = single_pem_block(pem, &["CERTIFICATE"]).map_err(not_a_certificate)?;
    parse_certificate_der(&der)
}

/// [`parse_certificate`] for a DER certificate (a TLS peer's, say).
pub(crate) fn parse_certificate_der(der: &[u8]) -> Result<ParsedCertificate, AwsError> {
    let cert = parse_der(der).map_err(not_a_certificate)?;
    let validity = cert.validity();
    if validity.not_after < ASN1Time::now() {
        return Err(validation(format!(
            "The certificate has expired (notAfter {})",
            validity.not_after
        )));
    }
    Ok(ParsedCertificate {
        id: certificate_id(der),
        pem: pem_encode("CERTIFICATE", der),
        der: der.to_vec(),
        not_before_ms: validity.not_before.timestamp().saturating_mul(1000),
        not_after_ms: validity.not_after.timestamp().saturating_mul(1000),
        subject: name_fields(cert.subject()),
        issuer: name_fields(cert.issuer()),
        is_ca: cert.is_ca(),
    })
}

/// Checks that `cert` was issued by the CA certificate `ca_pem`: the CA is a
/// CA, its subject is the certificate's issuer, and its key verifies the
/// certificate's signature. Returns the CA certificate's id.
pub(crate) fn verify_signed_by(cert: &ParsedCertificate, ca_pem: &str) -> Result<String, AwsError> {
    let invalid_ca = |e: String| {
        validation(format!(
            "The CA certificate is not a valid X.509 certificate: {e}"
        ))
    };
    let ca_der = single_pem_block(ca_pem, &["CERTIFICATE"]).map_err(invalid_ca)?;
    let ca = parse_der(&ca_der).map_err(invalid_ca)?;
    let leaf = parse_der(&cert.der).map_err(not_a_certificate)?;
    let signed = ca.is_ca()
        && leaf.issuer().as_raw() == ca.subject().as_raw()
        && leaf.verify_signature(Some(ca.public_key())).is_ok();
    if !signed {
        return Err(validation(
            "The certificate is not signed by the given CA certificate",
        ));
    }
    Ok(certificate_id(&ca_der))
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

/// AWS accepts RSA keys of 2048 bits or more and NIST curves; `ring` (which
/// verifies the request's signature) doesn't do P-521.
fn check_csr_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<(), AwsError> {
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let bits = spki.parsed().map(|key| key.key_size()).unwrap_or(0);
        if bits < 2048 {
            return Err(bad_csr("RSA keys must be at least 2048 bits"));
        }
        return Ok(());
    }
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        if curve.is_some_and(|curve| curve == OID_EC_P256 || curve == OID_NIST_EC_P384) {
            return Ok(());
        }
    }
    Err(bad_csr(
        "unsupported key type (use RSA of 2048 bits or more, or ECDSA P-256 or P-384)",
    ))
}

/// A request's subject as an rcgen name, value string types kept. rcgen's
/// names hold one value per attribute type and one attribute per RDN.
fn rcgen_name(name: &X509Name<'_>) -> Result<DistinguishedName, AwsError> {
    let mut dn = DistinguishedName::new();
    let mut seen = Vec::new();
    for rdn in name.iter() {
        let mut attributes = rdn.iter();
        let (Some(attribute), None) = (attributes.next(), attributes.next()) else {
            return Err(bad_csr("multi-valued subject RDNs are not supported"));
        };
        let oid: Vec<u64> = attribute
            .attr_type()
            .iter()
            .ok_or_else(|| bad_csr("its subject has an invalid attribute type"))?
            .collect();
        let ty = DnType::from_oid(&oid);
        if seen.contains(&ty) {
            return Err(bad_csr(format!(
                "subjects repeating an attribute ({}) are not supported",
                attribute.attr_type()
            )));
        }
        dn.push(ty.clone(), rcgen_value(attribute)?);
        seen.push(ty);
    }
    Ok(dn)
}

fn rcgen_value(attribute: &AttributeTypeAndValue<'_>) -> Result<DnValue, AwsError> {
    let value = attribute.attr_value();
    let unsupported = || {
        bad_csr(format!(
            "unsupported value for subject attribute {}",
            attribute.attr_type()
        ))
    };
    let text = || std::str::from_utf8(value.data).map_err(|_| unsupported());
    Ok(match value.header.tag() {
        Tag::Utf8String => DnValue::Utf8String(text()?.to_owned()),
        Tag::PrintableString => {
            DnValue::PrintableString(text()?.try_into().map_err(|_| unsupported())?)
        }
        Tag::Ia5String => DnValue::Ia5String(text()?.try_into().map_err(|_| unsupported())?),
        Tag::T61String => DnValue::TeletexString(text()?.try_into().map_err(|_| unsupported())?),
        Tag::BmpString => DnValue::BmpString(
            BmpString::from_utf16be(value.data.to_vec()).map_err(|_| unsupported())?,
        ),
        Tag::UniversalString => DnValue::UniversalString(
            UniversalString::from_utf32be(value.data.to_vec()).map_err(|_| unsupported())?,
        ),
        _ => return Err(unsupported()),
    })
}

/// Parses a whole DER certificate (no trailing data).
fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((rest, _)) if !rest.is_empty() => Err("trailing data after the certificate".into()),
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(e.to_string()),
    }
}

/// The DER content of the only PEM block of `text`, whose label must be one
/// of `labels`. Lines are trimmed first (PEM pasted with indentation or CRLF
/// line ends is fine); text outside the block is ignored.
fn single_pem_block(text: &str, labels: &[&str]) -> Result<Vec<u8>, String> {
    let normalized: String = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .flat_map(|line| [line, "\n"])
        .collect();
    let mut blocks = Pem::iter_from_buffer(normalized.as_bytes());
    let block = match blocks.next() {
        None => return Err(format!("no PEM {} block found", labels[0])),
        Some(Err(e)) => return Err(format!("invalid PEM: {e}")),
        Some(Ok(block)) => block,
    };
    if blocks.next().is_some() {
        return Err(format!(
            "expected exactly one PEM {} block, found several",
            labels[0]
        ));
    }
    if !labels.contains(&block.label.as_str()) {
        return Err(format!(
            "expected a PEM {} block, found {}",
            labels[0], block.label
        ));
    }
    if block.contents.is_empty() {
        return Err(format!("the PEM {} block is empty", labels[0]));
    }
    Ok(block.contents)
}

/// PEM-encodes `der`: base64 in lines of 64 characters, LF line ends.
fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut base64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let bits = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                base64.push(char::from(ALPHABET[(bits >> (18 - 6 * i)) as usize & 63]));
            } else {
                base64.push('=');
            }
        }
    }
    let mut pem = format!("-----BEGIN {label}-----\n");
    for (i, c) in base64.chars().enumerate() {
        if i > 0 && i % 64 == 0 {
            pem.push('\n');
        }
        pem.push(c);
    }
    let _ = writeln!(pem, "\n-----END {label}-----");
    pem
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

fn invalid_request(message: impl Into<String>) -> AwsError {
    AwsError::new(ErrorType::InvalidRequest, message)
}

fn bad_csr(reason: impl std::fmt::Display) -> AwsError {
    invalid_request(format!(
        "The certificate signing request is not valid: {reason}"
    ))
}

fn validation(message: impl Into<String>) -> AwsError {
    AwsError::new(ErrorType::CertificateValidation, message)
}

fn not_a_certificate(reason: String) -> AwsError {
    validation(format!(
        "The certificate is not a valid X.509 certificate: {reason}"
    ))
}

fn internal(what: &str, e: rcgen::Error) -> AwsError {
    tracing::error!(error = %e, "{what}");
    AwsError::new(ErrorType::InternalFailure, format!("{what} failed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CustomExtension, PKCS_ECDSA_P384_SHA384, PKCS_ED25519};
    use x509_parser::extensions::GeneralName;

    fn new_ca_in(dir: &Path) -> Ca {
        Ca::load_or_create(dir, None, None).unwrap()
    }

    fn field(fields: &[(CertField, String)], wanted: CertField) -> Vec<&str> {
        fields
            .iter()
            .filter(|(f, _)| *f == wanted)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn csr_pem(params: &CertificateParams, key: &KeyPair) -> String {
        params.serialize_request(key).unwrap().pem().unwrap()
    }

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
    fn a_certificate_from_another_ca_does_not_verify() {
        let a = new_ca_in(tempfile::tempdir().unwrap().path());
        let b = new_ca_in(tempfile::tempdir().unwrap().path());
        // Same subject ("Herald CA"), different keys.
        let from_b = parse_certificate(&b.issue_with_new_key().unwrap().certificate_pem).unwrap();
        let err = verify_signed_by(&from_b, a.cert_pem()).unwrap_err();
        assert_eq!(err.error_type, ErrorType::CertificateValidation);
        assert_eq!(
            err.message,
            "The certificate is not signed by the given CA certificate"
        );
        assert_eq!(verify_signed_by(&from_b, b.cert_pem()).unwrap(), b.id());

        // A leaf is no CA, even for itself.
        let err = verify_signed_by(&from_b, &from_b.pem).unwrap_err();
        assert_eq!(err.error_type, ErrorType::CertificateValidation);
        // Nor is garbage.
        let err = verify_signed_by(&from_b, "nope").unwrap_err();
        assert_eq!(err.error_type, ErrorType::CertificateValidation);
        assert!(err.message.starts_with("The CA certificate is not a valid"));
    }

    #[test]
    fn certificate_from_csr_keeps_the_subject_and_key() {
        let ca = new_ca_in(tempfile::tempdir().unwrap().path());
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["device.example".to_owned()]).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CountryName,
            DnValue::PrintableString("US".try_into().unwrap()),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Acme");
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, "Sensors");
        params
            .distinguished_name
            .push(DnType::CommonName, "my-device");
        params
            .distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 5]), "SN-42");
        // An extension rcgen's own CSR parser would refuse.
        params.custom_extensions =
            vec![CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![5, 0])];
        let csr = csr_pem(&params, &key);
        assert!(rcgen::CertificateSigningRequestParams::from_pem(&csr).is_err());

        let pem = ca.issue_from_csr(&csr).unwrap();
        let parsed = parse_certificate(&pem).unwrap();
        assert_eq!(parsed.pem, pem);
        assert_eq!(
            parsed.subject,
            [
                (CertField::Country, "US".to_owned()),
                (CertField::Organization, "Acme".to_owned()),
                (CertField::OrganizationalUnit, "Sensors".to_owned()),
                (CertField::CommonName, "my-device".to_owned()),
                (CertField::SerialNumber, "SN-42".to_owned()),
            ]
        );
        assert_eq!(verify_signed_by(&parsed, ca.cert_pem()).unwrap(), ca.id());
        let (_, x509) = x509_parser::parse_x509_certificate(&parsed.der).unwrap();
        assert_eq!(
            x509.public_key().raw,
            rcgen::PublicKeyData::subject_public_key_info(&key)
        );
        let eku = x509.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth);
        // The requested SAN is not copied.
        assert!(x509.subject_alternative_name().unwrap().is_none());
        assert_eq!(parsed.not_after_ms, 2_524_607_999_000);

        // P-384 works too.
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let pem = ca.issue_from_csr(&csr_pem(&params, &key)).unwrap();
        let parsed = parse_certificate(&pem).unwrap();
        assert_eq!(field(&parsed.subject, CertField::CommonName), ["my-device"]);
    }

    #[test]
    fn invalid_csrs_are_refused() {
        let ca = new_ca_in(tempfile::tempdir().unwrap().path());
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "tampered");
        let csr = params.serialize_request(&key).unwrap();

        // A flipped bit in the signature.
        let mut der = csr.der().to_vec();
        *der.last_mut().unwrap() ^= 0x01;
        let err = ca
            .issue_from_csr(&pem_encode("CERTIFICATE REQUEST", &der))
            .unwrap_err();
        assert_eq!(err.error_type, ErrorType::InvalidRequest);
        assert!(err.message.contains("signature does not verify"), "{err}");

        // A changed subject under the original signature.
        let mut der = csr.der().to_vec();
        let at = der.windows(8).position(|w| w == b"tampered").unwrap();
        der[at] = b'T';
        let err = ca
            .issue_from_csr(&pem_encode("CERTIFICATE REQUEST", &der))
            .unwrap_err();
        assert_eq!(err.error_type, ErrorType::InvalidRequest);

        for garbage in [
            "",
            "garbage",
            "-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        ] {
            let err = ca.issue_from_csr(garbage).unwrap_err();
            assert_eq!(err.error_type, ErrorType::InvalidRequest, "{garbage:?}");
            assert!(
                err.message
                    .starts_with("The certificate signing request is not valid: ")
            );
        }

        // A certificate is not a request.
        let err = ca.issue_from_csr(ca.cert_pem()).unwrap_err();
        assert_eq!(err.error_type, ErrorType::InvalidRequest);

        // Two requests.
        let pem = csr.pem().unwrap();
        let err = ca.issue_from_csr(&format!("{pem}{pem}")).unwrap_err();
        assert_eq!(err.error_type, ErrorType::InvalidRequest);

        // Ed25519 is not a key type AWS IoT takes.
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let err = ca.issue_from_csr(&csr_pem(&params, &key)).unwrap_err();
        assert_eq!(err.error_type, ErrorType::InvalidRequest);
        assert!(err.message.contains("unsupported key type"), "{err}");
    }

    #[test]
    fn invalid_certificates_are_refused() {
        let ca = new_ca_in(tempfile::tempdir().unwrap().path());
        let issued = ca.issue_with_new_key().unwrap().certificate_pem;
        let invalid = [
            String::new(),
            "garbage".to_owned(),
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".to_owned(),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned(),
            "-----BEGIN CERTIFICATE-----\nMIIB\n".to_owned(),
            format!("{issued}{}", ca.cert_pem()),
            issued.replace("CERTIFICATE", "PUBLIC KEY"),
        ];
        for pem in &invalid {
            let err = parse_certificate(pem).unwrap_err();
            assert_eq!(err.error_type, ErrorType::CertificateValidation, "{pem:?}");
            assert!(
                err.message
                    .starts_with("The certificate is not a valid X.509 certificate: "),
                "{err}"
            );
        }
        let err = parse_certificate_der(b"\x30\x03\x02\x01\x00").unwrap_err();
        assert_eq!(err.error_type, ErrorType::CertificateValidation);
        // Trailing data after the DER.
        let mut der = parse_certificate(&issued).unwrap().der;
        der.push(0);
        let err = parse_certificate_der(&der).unwrap_err();
        assert_eq!(err.error_type, ErrorType::CertificateValidation);
    }

    #[test]
    fn pem_is_normalized() {
        let ca = new_ca_in(tempfile::tempdir().unwrap().path());
        let issued = ca.issue_with_new_key().unwrap().certificate_pem;
        let messy = format!(
            "subject=CN = AWS IoT Certificate\r\n\r\n{}\r\n",
            issued
                .lines()
                .map(|line| format!("  {line}  "))
                .collect::<Vec<_>>()
                .join("\r\n")
        );
        let parsed = parse_certificate(&messy).unwrap();
        assert_eq!(parsed.pem, issued);
        assert_eq!(parsed.id, parse_certificate(&issued).unwrap().id);
    }

    #[test]
    fn expired_certificates_are_refused() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let err = parse_certificate(&cert.pem()).unwrap_err();
        assert_eq!(err.error_type, ErrorType::CertificateValidation);
        assert!(err.message.contains("expired"), "{err}");
        let err = parse_certificate_der(cert.der()).unwrap_err();
        assert_eq!(err.error_type, ErrorType::CertificateValidation);
    }

    #[test]
    fn subject_and_issuer_fields_in_order() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        let custom = |n: u64| DnType::CustomDnType(vec![2, 5, 4, n]);
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CountryName,
            DnValue::PrintableString("FR".try_into().unwrap()),
        );
        dn.push(DnType::StateOrProvinceName, "Bretagne");
        dn.push(DnType::LocalityName, "Rennes"); // not a policy variable
        dn.push(DnType::OrganizationName, "Org");
        dn.push(DnType::OrganizationalUnitName, "Unit");
        dn.push(custom(5), "serial");
        dn.push(custom(12), "title");
        dn.push(custom(4), "surname");
        dn.push(custom(42), "given");
        dn.push(custom(43), "GN");
        dn.push(custom(65), "pseudo");
        dn.push(custom(44), "Jr.");
        dn.push(custom(46), "dnq");
        dn.push(
            DnType::CommonName,
            DnValue::BmpString("Zoë".try_into().unwrap()),
        );
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).unwrap();
        let parsed = parse_certificate(&cert.pem()).unwrap();
        let expected = [
            (CertField::Country, "FR"),
            (CertField::State, "Bretagne"),
            (CertField::Organization, "Org"),
            (CertField::OrganizationalUnit, "Unit"),
            (CertField::SerialNumber, "serial"),
            (CertField::Title, "title"),
            (CertField::Surname, "surname"),
            (CertField::GivenName, "given"),
            (CertField::Initials, "GN"),
            (CertField::Pseudonym, "pseudo"),
            (CertField::GenerationQualifier, "Jr."),
            (CertField::DistinguishedNameQualifier, "dnq"),
            (CertField::CommonName, "Zoë"),
        ]
        .map(|(field, value)| (field, value.to_owned()));
        assert_eq!(parsed.subject, expected);
        // Self-signed: the issuer is the subject.
        assert_eq!(parsed.issuer, expected);
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

    #[test]
    fn pem_encoding_matches_rcgen() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = CertificateParams::default().self_signed(&key).unwrap();
        assert_eq!(pem_encode("CERTIFICATE", cert.der()), cert.pem());
        for len in 0..8 {
            let data: Vec<u8> = (0..len).map(|i| i as u8 * 37).collect();
            let pem = pem_encode("X", &data);
            if len > 0 {
                assert_eq!(single_pem_block(&pem, &["X"]).unwrap(), data);
            }
        }
    }
}
