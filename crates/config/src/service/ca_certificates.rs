//! CA certificates the account registers (AWS IoT developer guide: "Manage
//! your CA certificates", "Just-in-time registration of client
//! certificates"): the registration code, RegisterCACertificate with its
//! verification certificate, describe, update, delete, the listings, and the
//! registration of an unknown certificate a device presents.

use herald_policy::CertField;
use herald_proto::error::{AwsError, ErrorType};
use herald_proto::tags::check_tags;
use herald_store::{key, now_ms, prefix};
use sha2::{Digest, Sha256};

use super::tags::{Tags, delete_tags, put_tags};
use super::{
    ConfigService, already_exists, cert_key, generation_id, load_certificate, log_certificate,
};
use crate::{
    certs,
    domain::{
        CaCertificate, Certificate, CertificateMode, CertificateStatus, RegistrationConfig,
        check_certificate_id, invalid, not_found,
    },
};

fn ca_key(id: &str) -> Vec<u8> {
    key(&["cacert", id])
}

const REGISTRATION_CODE_KEY: &[&str] = &["regcode"];

fn load_ca(c: &super::Changes<'_>, id: &str) -> Result<CaCertificate, AwsError> {
    c.get(&ca_key(id))?
        .ok_or_else(|| not_found(format!("CA certificate {id} cannot be found.")))
}

/// What RegisterCACertificate asks for.
pub(crate) struct NewCa {
    pub(crate) ca_pem: String,
    pub(crate) verification_pem: Option<String>,
    pub(crate) set_as_active: bool,
    pub(crate) allow_auto_registration: bool,
    pub(crate) registration_config: RegistrationConfig,
    pub(crate) mode: CertificateMode,
    pub(crate) tags: Tags,
}

/// What UpdateCACertificate changes; `None` leaves a field as it is.
pub(crate) struct CaUpdate {
    pub(crate) status: Option<CertificateStatus>,
    pub(crate) auto_registration: Option<bool>,
    pub(crate) registration_config: Option<RegistrationConfig>,
    pub(crate) remove_auto_registration: bool,
}

/// A certificate registered (or found pending) for a device.
pub(crate) struct AutoRegistered {
    pub(crate) certificate: Certificate,
    pub(crate) ca_id: String,
    pub(crate) registered: bool,
}

impl ConfigService {
    /// The account's registration code, made on first use: 64 hexadecimal
    /// characters, as AWS IoT's are.
    pub(crate) async fn registration_code(&self) -> Result<String, AwsError> {
        let code_key = key(REGISTRATION_CODE_KEY);
        if let Some(code) = self.reader().get::<String>(&code_key)? {
            return Ok(code);
        }
        self.writer
            .mutate(move |c| {
                if let Some(code) = c.get::<String>(&code_key)? {
                    return Ok(code);
                }
                let seed = format!("{}{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
                let code: String = Sha256::digest(seed.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                c.put(code_key, &code)?;
                Ok(code)
            })
            .await
    }

    pub(crate) async fn register_ca_certificate(
        &self,
        new: NewCa,
    ) -> Result<CaCertificate, AwsError> {
        check_tags(&new.tags)?;
        let parsed = certs::parse_certificate(&new.ca_pem)?;
        if !parsed.is_ca {
            return Err(AwsError::new(
                ErrorType::CertificateValidation,
                "The certificate is not a CA certificate (basicConstraints cA is not set)",
            ));
        }
        if new.mode == CertificateMode::Default {
            let Some(verification) = &new.verification_pem else {
                return Err(invalid(
                    "A verificationCertificate is required to register a CA certificate in DEFAULT mode",
                ));
            };
            let verification = certs::parse_certificate(verification)?;
            certs::verify_signed_by(&verification, &parsed.pem).map_err(|_| {
                AwsError::new(
                    ErrorType::CertificateValidation,
                    "The verification certificate is not signed by the CA certificate",
                )
            })?;
            let code = self.registration_code().await?;
            let common_names: Vec<&str> = verification
                .subject
                .iter()
                .filter(|(field, _)| *field == CertField::CommonName)
                .map(|(_, value)| value.as_str())
                .collect();
            if common_names != [code.as_str()] {
                return Err(AwsError::new(
                    ErrorType::RegistrationCodeValidation,
                    "The verification certificate's common name is not the registration code",
                ));
            }
        }
        let now = now_ms();
        let ca = CaCertificate {
            id: parsed.id.clone(),
            pem: parsed.pem.clone(),
            status: if new.set_as_active {
                CertificateStatus::Active
            } else {
                CertificateStatus::Inactive
            },
            auto_registration: new.allow_auto_registration,
            mode: new.mode,
            registration_config: new.registration_config,
            creation_date_ms: now,
            last_modified_date_ms: now,
            not_before_ms: parsed.not_before_ms,
            not_after_ms: parsed.not_after_ms,
            customer_version: 1,
            generation_id: generation_id(),
        };
        let arn = self.arns().ca_certificate(&ca.id);
        let tags = new.tags;
        self.writer
            .mutate(move |c| {
                if c.exists(&ca_key(&ca.id))? {
                    return Err(already_exists(
                        "The CA certificate is already registered",
                        &ca.id,
                        arn,
                    ));
                }
                c.put(ca_key(&ca.id), &ca)?;
                put_tags(c, &arn, &tags)?;
                Ok(ca)
            })
            .await
    }

    pub(crate) fn describe_ca_certificate(&self, id: &str) -> Result<CaCertificate, AwsError> {
        check_certificate_id(id)?;
        load_ca(&self.reader(), &id.to_ascii_lowercase())
    }

    pub(crate) async fn update_ca_certificate(
        &self,
        id: String,
        update: CaUpdate,
    ) -> Result<(), AwsError> {
        check_certificate_id(&id)?;
        if let Some(status) = update.status
            && !matches!(
                status,
                CertificateStatus::Active | CertificateStatus::Inactive
            )
        {
            return Err(invalid(
                "A CA certificate's status can be ACTIVE or INACTIVE",
            ));
        }
        let id = id.to_ascii_lowercase();
        self.writer
            .mutate(move |c| {
                let mut ca = load_ca(c, &id)?;
                if let Some(status) = update.status {
                    ca.status = status;
                }
                if let Some(auto) = update.auto_registration {
                    ca.auto_registration = auto;
                }
                if update.remove_auto_registration {
                    ca.registration_config = RegistrationConfig::default();
                } else if let Some(config) = update.registration_config {
                    ca.registration_config = config;
                }
                ca.last_modified_date_ms = now_ms();
                ca.customer_version += 1;
                ca.generation_id = generation_id();
                c.put(ca_key(&id), &ca)
            })
            .await
    }

    /// Deletes an INACTIVE CA certificate; the certificates it signed stay.
    pub(crate) async fn delete_ca_certificate(&self, id: String) -> Result<(), AwsError> {
        check_certificate_id(&id)?;
        let id = id.to_ascii_lowercase();
        let arn = self.arns().ca_certificate(&id);
        self.writer
            .mutate(move |c| {
                let ca = load_ca(c, &id)?;
                if ca.status == CertificateStatus::Active {
                    return Err(AwsError::new(
                        ErrorType::CertificateState,
                        "Certificate must be deactivated (not ACTIVE) before deletion.",
                    ));
                }
                c.remove(ca_key(&id));
                delete_tags(c, &arn)
            })
            .await
    }

    /// Every registered CA certificate, by id.
    pub(crate) fn ca_certificates(&self) -> Result<Vec<CaCertificate>, AwsError> {
        self.store
            .iter(&prefix(&["cacert"]), None)
            .map(|entry| entry.and_then(|(_, bytes)| self.store.decode(&bytes)))
            .collect()
    }

    /// The certificates a CA certificate signed, as registered.
    pub(crate) fn certificates_by_ca(&self, ca_id: &str) -> Result<Vec<Certificate>, AwsError> {
        check_certificate_id(ca_id)?;
        let ca_id = ca_id.to_ascii_lowercase();
        Ok(self
            .certificates()?
            .into_iter()
            .filter(|c| c.ca_id.as_deref() == Some(ca_id.as_str()))
            .collect())
    }

    /// The registered CA certificate that signed `parsed`, if any.
    pub(crate) fn registered_issuer(
        &self,
        parsed: &certs::ParsedCertificate,
    ) -> Result<Option<CaCertificate>, AwsError> {
        Ok(self
            .ca_certificates()?
            .into_iter()
            .find(|ca| certs::verify_signed_by(parsed, &ca.pem).is_ok()))
    }

    /// Just-in-time registration: a device presented `pem`. Registers it as
    /// PENDING_ACTIVATION when a registered, ACTIVE CA certificate with
    /// auto-registration enabled signed it; a certificate already
    /// PENDING_ACTIVATION from such a CA is answered as it is (AWS IoT
    /// publishes its event again on each such connection).
    pub(crate) async fn auto_register(&self, pem: &str) -> Result<AutoRegistered, AwsError> {
        let parsed = certs::parse_certificate(pem)?;
        let no_ca = || {
            not_found(
                "No registered CA certificate with auto-registration enabled signed this certificate",
            )
        };
        let ca = self
            .registered_issuer(&parsed)?
            .filter(|ca| ca.status == CertificateStatus::Active && ca.auto_registration)
            .ok_or_else(no_ca)?;
        if let Some(existing) = self.reader().get::<Certificate>(&cert_key(&parsed.id))? {
            if existing.status != CertificateStatus::PendingActivation {
                return Err(AwsError::new(
                    ErrorType::CertificateState,
                    format!(
                        "Certificate {} is registered and {:?}, not PENDING_ACTIVATION",
                        existing.id, existing.status
                    ),
                ));
            }
            return Ok(AutoRegistered {
                certificate: existing,
                ca_id: ca.id,
                registered: false,
            });
        }
        let certificate = Self::new_certificate(
            &parsed,
            CertificateStatus::PendingActivation,
            Some(ca.id.clone()),
            CertificateMode::Default,
        );
        let ca_id = ca.id;
        self.writer
            .mutate(move |c| {
                // Another connection may have registered it meanwhile.
                if let Ok(existing) = load_certificate(c, &certificate.id) {
                    return Ok(AutoRegistered {
                        registered: false,
                        certificate: existing,
                        ca_id,
                    });
                }
                c.put(cert_key(&certificate.id), &certificate)?;
                log_certificate(c, &certificate);
                Ok(AutoRegistered {
                    certificate,
                    ca_id,
                    registered: true,
                })
            })
            .await
    }
}
