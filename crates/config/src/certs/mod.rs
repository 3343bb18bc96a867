//! The X.509 side of the config service: the Herald CA, the certificates it
//! issues (`CreateKeysAndCertificate`, `CreateCertificateFromCsr`, the
//! gateway's server certificate) and the checks on certificates clients bring
//! (`RegisterCertificate`, `RegisterCertificateWithoutCA`, the TLS peer's).
//!
//! Certificates are identified as AWS IoT does: the certificate id is the
//! lowercase hex SHA-256 of the certificate's DER encoding
//! ([`herald_runtime::x509`], which the gateway shares).
//!
//! `CreateKeysAndCertificate` issues 2048-bit RSA key pairs, as AWS IoT's API
//! reference says; `ring`, rcgen's backend here, signs with RSA keys but
//! can't generate them, so the `rsa` crate does, off the async runtime (a
//! fraction of a second of CPU each). Herald's own keys (its CA, the server
//! certificate) are ECDSA P-256.
//!
//! `ca` is the CA and what it issues, `csr` reads certificate signing
//! requests, `parse` reads and checks the certificates clients bring, `pem`
//! is the PEM encoding.

mod ca;
mod csr;
mod parse;
mod pem;

use herald_proto::error::{AwsError, ErrorType};

pub(crate) use ca::{Ca, new_rsa_key};
pub(crate) use parse::{ParsedCertificate, parse_certificate, verify_signed_by};
pub(crate) use pem::pem_encode;

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

fn internal(what: &str, e: impl std::fmt::Display) -> AwsError {
    tracing::error!(error = %e, "{what}");
    AwsError::new(ErrorType::InternalFailure, format!("{what} failed"))
}

#[cfg(test)]
mod test_support {
    use std::path::Path;

    use herald_policy::CertField;

    use super::Ca;

    pub(super) fn new_ca_in(dir: &Path) -> Ca {
        Ca::load_or_create(dir, None, None).unwrap()
    }

    pub(super) fn field(fields: &[(CertField, String)], wanted: CertField) -> Vec<&str> {
        fields
            .iter()
            .filter(|(f, _)| *f == wanted)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}
