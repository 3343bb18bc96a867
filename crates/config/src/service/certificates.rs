//! Certificates: issued by the Herald CA (`CreateKeysAndCertificate`,
//! `CreateCertificateFromCsr`) or registered, their status, and deletion.

use herald_proto::error::{AwsError, ErrorType};
use herald_store::{key, now_ms, prefix};

use super::{
    ConfigService, already_exists, cert_key, generation_id, load_certificate, log_certificate,
};
use crate::{
    certs,
    domain::{
        Certificate, CertificateMode, CertificateStatus, ConfigEvent, check_certificate_id,
        conflict, invalid,
    },
};

/// A certificate issued with a new key pair.
pub(crate) struct NewKeys {
    pub(crate) certificate: Certificate,
    pub(crate) private_key_pem: String,
    pub(crate) public_key_pem: String,
}

impl ConfigService {
    pub(super) fn new_certificate(
        parsed: &certs::ParsedCertificate,
        status: CertificateStatus,
        ca_id: Option<String>,
        mode: CertificateMode,
    ) -> Certificate {
        let now = now_ms();
        Certificate {
            id: parsed.id.clone(),
            pem: parsed.pem.clone(),
            status,
            ca_id,
            mode,
            creation_date_ms: now,
            last_modified_date_ms: now,
            not_before_ms: parsed.not_before_ms,
            not_after_ms: parsed.not_after_ms,
            customer_version: 1,
            generation_id: generation_id(),
        }
    }

    /// Stores a new certificate; one that is already there is refused.
    async fn add_certificate(&self, certificate: Certificate) -> Result<Certificate, AwsError> {
        let arn = self.arns().certificate(&certificate.id);
        self.writer
            .mutate(move |c| {
                if c.exists(&cert_key(&certificate.id))? {
                    return Err(already_exists(
                        "The certificate is already provisioned or registered",
                        &certificate.id,
                        arn,
                    ));
                }
                c.put(cert_key(&certificate.id), &certificate)?;
                log_certificate(c, &certificate);
                Ok(certificate)
            })
            .await
    }

    fn active_or_inactive(set_as_active: bool) -> CertificateStatus {
        if set_as_active {
            CertificateStatus::Active
        } else {
            CertificateStatus::Inactive
        }
    }

    pub(crate) async fn create_keys_and_certificate(
        &self,
        set_as_active: bool,
    ) -> Result<NewKeys, AwsError> {
        let key = tokio::task::spawn_blocking(certs::new_rsa_key)
            .await
            .map_err(|e| {
                AwsError::new(
                    ErrorType::InternalFailure,
                    format!("generating a key failed: {e}"),
                )
            })??;
        let issued = self.ca.issue_with_key(key)?;
        let parsed = certs::parse_certificate(&issued.certificate_pem)?;
        let certificate = Self::new_certificate(
            &parsed,
            Self::active_or_inactive(set_as_active),
            Some(self.ca.id().to_owned()),
            CertificateMode::Default,
        );
        let certificate = self.add_certificate(certificate).await?;
        Ok(NewKeys {
            certificate,
            private_key_pem: issued.private_key_pem,
            public_key_pem: issued.public_key_pem,
        })
    }

    pub(crate) async fn create_certificate_from_csr(
        &self,
        csr: &str,
        set_as_active: bool,
    ) -> Result<Certificate, AwsError> {
        let pem = self.ca.issue_from_csr(csr)?;
        let parsed = certs::parse_certificate(&pem)?;
        let certificate = Self::new_certificate(
            &parsed,
            Self::active_or_inactive(set_as_active),
            Some(self.ca.id().to_owned()),
            CertificateMode::Default,
        );
        self.add_certificate(certificate).await
    }

    /// RegisterCertificate: signed by `ca_pem` when given, else by the Herald CA
    /// (the only CA registered with Herald).
    pub(crate) async fn register_certificate(
        &self,
        pem: &str,
        ca_pem: Option<&str>,
        status: CertificateStatus,
    ) -> Result<Certificate, AwsError> {
        let parsed = certs::parse_certificate(pem)?;
        let ca_id = match ca_pem {
            Some(ca_pem) => certs::verify_signed_by(&parsed, ca_pem)?,
            // Without a CA: the Herald CA, or a CA certificate the account
            // registered.
            None => match certs::verify_signed_by(&parsed, self.ca.cert_pem()) {
                Ok(id) => id,
                Err(err) => self.registered_issuer(&parsed)?.ok_or(err)?.id,
            },
        };
        let certificate =
            Self::new_certificate(&parsed, status, Some(ca_id), CertificateMode::Default);
        self.add_certificate(certificate).await
    }

    pub(crate) async fn register_certificate_without_ca(
        &self,
        pem: &str,
        status: CertificateStatus,
    ) -> Result<Certificate, AwsError> {
        let parsed = certs::parse_certificate(pem)?;
        let certificate = Self::new_certificate(&parsed, status, None, CertificateMode::SniOnly);
        self.add_certificate(certificate).await
    }

    pub(crate) async fn update_certificate(
        &self,
        id: String,
        status: CertificateStatus,
    ) -> Result<(), AwsError> {
        check_certificate_id(&id)?;
        let id = id.to_ascii_lowercase();
        if !matches!(
            status,
            CertificateStatus::Active | CertificateStatus::Inactive | CertificateStatus::Revoked
        ) {
            return Err(invalid(
                "A certificate's status can be set to ACTIVE, INACTIVE or REVOKED",
            ));
        }
        self.writer
            .mutate(move |c| {
                let mut cert = load_certificate(c, &id)?;
                if cert.status == CertificateStatus::Revoked && status != CertificateStatus::Revoked {
                    return Err(AwsError::new(
                        ErrorType::CertificateState,
                        format!("Certificate {id} is revoked; a revoked certificate cannot be reactivated"),
                    ));
                }
                if cert.status != status {
                    cert.status = status;
                    cert.last_modified_date_ms = now_ms();
                    cert.customer_version += 1;
                    cert.generation_id = generation_id();
                    c.put(cert_key(&id), &cert)?;
                    log_certificate(c, &cert);
                }
                Ok(())
            })
            .await
    }

    pub(crate) fn describe_certificate(&self, id: &str) -> Result<Certificate, AwsError> {
        check_certificate_id(id)?;
        load_certificate(&self.reader(), &id.to_ascii_lowercase())
    }

    /// Every certificate, by id.
    pub(crate) fn certificates(&self) -> Result<Vec<Certificate>, AwsError> {
        self.store
            .iter(&prefix(&["cert"]), None)
            .map(|entry| entry.and_then(|(_, bytes)| self.store.decode(&bytes)))
            .collect()
    }

    pub(crate) async fn delete_certificate(&self, id: String, force: bool) -> Result<(), AwsError> {
        check_certificate_id(&id)?;
        let id = id.to_ascii_lowercase();
        let arn = self.arns().certificate(&id);
        let things = self.registry.principal_things(&arn).await?;
        self.writer
            .mutate(move |c| {
                let cert = load_certificate(c, &id)?;
                if cert.status == CertificateStatus::Active {
                    return Err(AwsError::new(
                        ErrorType::CertificateState,
                        "Certificate must be deactivated (not ACTIVE) before deletion.".to_owned(),
                    ));
                }
                if !things.is_empty() {
                    return Err(conflict(format!(
                        "Things must be detached before deletion (arn: {arn})"
                    )));
                }
                let policies = c.keys(&prefix(&["tgt", &arn]))?;
                if !policies.is_empty() && !force {
                    return Err(conflict(format!(
                        "Certificate policies must be detached before deletion (arn: {arn})"
                    )));
                }
                for policy in policies {
                    c.remove(key(&["att", &policy, &arn]));
                    c.remove(key(&["tgt", &arn, &policy]));
                    c.log(ConfigEvent::Detached {
                        policy,
                        target: arn.clone(),
                    });
                }
                c.remove(cert_key(&id));
                c.log(ConfigEvent::CertificateDeleted { id });
                Ok(())
            })
            .await
    }
}
