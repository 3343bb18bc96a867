//! Certificate signing requests (`CreateCertificateFromCsr`): PKCS#10, read
//! into what the CA signs.

use herald_proto::error::AwsError;
use rcgen::{
    DistinguishedName, DnType, DnValue,
    string::{BmpString, UniversalString},
};
use x509_parser::{
    asn1_rs::Tag,
    certification_request::X509CertificationRequest,
    error::X509Error,
    oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    },
    prelude::FromDer,
    x509::{AttributeTypeAndValue, SubjectPublicKeyInfo, X509Name},
};

use super::{bad_csr, pem::single_pem_block};

/// A certificate signing request, as the CA signs it.
pub(super) struct Request {
    /// The subject, value string types kept.
    pub(super) subject: DistinguishedName,
    /// The subject as the request encodes it.
    pub(super) subject_der: Vec<u8>,
    pub(super) public_key: rcgen::SubjectPublicKeyInfo,
    /// The SubjectPublicKeyInfo as the request encodes it.
    pub(super) public_key_der: Vec<u8>,
}

/// Reads a PEM certificate signing request: exactly one PKCS#10 block whose
/// signature verifies; its requested extensions are ignored (as AWS does).
/// Keys: RSA of 2048 bits or more, ECDSA P-256 or P-384.
pub(super) fn read_request(csr_pem: &str) -> Result<Request, AwsError> {
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
    Ok(Request {
        subject: rcgen_name(&info.subject)?,
        subject_der: info.subject.as_raw().to_vec(),
        public_key,
        public_key_der: info.subject_pki.raw.to_vec(),
    })
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

#[cfg(test)]
mod tests {
    use herald_policy::CertField;
    use herald_proto::error::ErrorType;
    use rcgen::{
        CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue, KeyPair,
        PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
    };

    use crate::certs::{
        parse_certificate,
        pem::pem_encode,
        test_support::{field, new_ca_in},
        verify_signed_by,
    };

    fn csr_pem(params: &CertificateParams, key: &KeyPair) -> String {
        params.serialize_request(key).unwrap().pem().unwrap()
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
}
