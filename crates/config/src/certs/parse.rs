//! The certificates clients bring (`RegisterCertificate`,
//! `RegisterCertificateWithoutCA`): parsed, checked, and read for what Herald
//! stores and evaluates policies with.

use herald_policy::CertField;
use herald_proto::error::AwsError;
use herald_runtime::x509::{certificate_id, name_fields};
use x509_parser::{certificate::X509Certificate, time::ASN1Time};

use super::{
    not_a_certificate,
    pem::{pem_encode, single_pem_block},
    validation,
};

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

/// Parses a whole DER certificate (no trailing data).
pub(super) fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((rest, _)) if !rest.is_empty() => Err("trailing data after the certificate".into()),
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::test_support::new_ca_in;
    use herald_proto::error::ErrorType;
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, DnValue, KeyPair, PKCS_ECDSA_P256_SHA256,
    };

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
}
