//! The config service's records and rules. No I/O, no wire types.

use std::collections::BTreeMap;

use herald_proto::error::{AwsError, ErrorType};
use herald_store::StoreError;
use serde::{Deserialize, Serialize};

/// AWS IoT's EventType values, in the model's order.
pub(crate) const EVENT_TYPES: [&str; 11] = [
    "THING",
    "THING_GROUP",
    "THING_TYPE",
    "THING_GROUP_MEMBERSHIP",
    "THING_GROUP_HIERARCHY",
    "THING_TYPE_ASSOCIATION",
    "JOB",
    "JOB_EXECUTION",
    "POLICY",
    "CERTIFICATE",
    "CA_CERTIFICATE",
];

/// Versions a policy may have at once.
pub(crate) const MAX_POLICY_VERSIONS: usize = 5;
/// Policies one target may have attached.
pub(crate) const MAX_POLICIES_PER_TARGET: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EventConfigurations {
    pub(crate) enabled: BTreeMap<String, bool>,
    pub(crate) creation_date_ms: i64,
    pub(crate) last_modified_date_ms: i64,
}

impl EventConfigurations {
    pub(crate) fn new(now_ms: i64) -> EventConfigurations {
        EventConfigurations {
            enabled: EVENT_TYPES.iter().map(|k| (k.to_string(), false)).collect(),
            creation_date_ms: now_ms,
            last_modified_date_ms: now_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Policy {
    pub(crate) name: String,
    pub(crate) default_version: u32,
    /// The id the next version gets; ids are never reused.
    pub(crate) next_version: u32,
    pub(crate) creation_date_ms: i64,
    pub(crate) last_modified_date_ms: i64,
    pub(crate) generation_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PolicyVersion {
    pub(crate) version: u32,
    pub(crate) document: String,
    pub(crate) creation_date_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CertificateStatus {
    Active,
    Inactive,
    Revoked,
    PendingTransfer,
    RegisterInactive,
    PendingActivation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CertificateMode {
    Default,
    SniOnly,
}

impl CertificateMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CertificateMode::Default => "DEFAULT",
            CertificateMode::SniOnly => "SNI_ONLY",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Certificate {
    pub(crate) id: String,
    pub(crate) pem: String,
    pub(crate) status: CertificateStatus,
    pub(crate) ca_id: Option<String>,
    pub(crate) mode: CertificateMode,
    pub(crate) creation_date_ms: i64,
    pub(crate) last_modified_date_ms: i64,
    pub(crate) not_before_ms: i64,
    pub(crate) not_after_ms: i64,
    pub(crate) customer_version: i32,
    pub(crate) generation_id: String,
}

/// A CA certificate registered by the account (RegisterCACertificate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CaCertificate {
    pub(crate) id: String,
    pub(crate) pem: String,
    /// ACTIVE or INACTIVE.
    pub(crate) status: CertificateStatus,
    /// Whether unknown certificates it signed are registered when a device
    /// presents them (just-in-time registration).
    pub(crate) auto_registration: bool,
    pub(crate) mode: CertificateMode,
    pub(crate) registration_config: RegistrationConfig,
    pub(crate) creation_date_ms: i64,
    pub(crate) last_modified_date_ms: i64,
    pub(crate) not_before_ms: i64,
    pub(crate) not_after_ms: i64,
    pub(crate) customer_version: i32,
    pub(crate) generation_id: String,
}

/// A CA's provisioning template, kept and answered as given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RegistrationConfig {
    pub(crate) template_body: Option<String>,
    pub(crate) role_arn: Option<String>,
    pub(crate) template_name: Option<String>,
}

/// What the change log records, and `WatchConfig` streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ConfigEvent {
    PolicyPut {
        name: String,
        default_version: u32,
        document: String,
    },
    PolicyDeleted {
        name: String,
    },
    CertificatePut {
        id: String,
        status: CertificateStatus,
        pem: String,
    },
    CertificateDeleted {
        id: String,
    },
    Attached {
        policy: String,
        target: String,
    },
    Detached {
        policy: String,
        target: String,
    },
    EventConfigurations {
        enabled: BTreeMap<String, bool>,
    },
}

/// A storage failure as the AWS error clients see: `InternalFailureException`,
/// `ServiceUnavailableException` while the service shuts down, and
/// `InvalidRequestException` for a bad `nextToken` or `maxResults`.
pub(crate) fn store_error(err: StoreError) -> AwsError {
    let error_type = match err {
        StoreError::Storage(_) => ErrorType::InternalFailure,
        StoreError::ShuttingDown => ErrorType::ServiceUnavailable,
        StoreError::InvalidPage(_) => ErrorType::InvalidRequest,
    };
    AwsError::new(error_type, err.to_string())
}

pub(crate) fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::new(ErrorType::InvalidRequest, message)
}

pub(crate) fn not_found(message: impl Into<String>) -> AwsError {
    AwsError::new(ErrorType::ResourceNotFound, message)
}

pub(crate) fn conflict(message: impl Into<String>) -> AwsError {
    AwsError::new(ErrorType::DeleteConflict, message)
}

/// Policy names: `[\w+=,.@-]+`, 1 to 128.
pub(crate) fn check_policy_name(name: &str) -> Result<(), AwsError> {
    let ok = (1..=128).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "_+=,.@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{name:?} is not a valid policy name: use 1 to 128 of [\\w+=,.@-]"
        )))
    }
}

/// Policy version ids: decimal digits.
pub(crate) fn parse_version_id(id: &str) -> Result<u32, AwsError> {
    if id.is_empty() || id.len() > 9 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!("{id:?} is not a valid policy version id")));
    }
    id.parse()
        .map_err(|_| invalid(format!("{id:?} is not a valid policy version id")))
}

/// Certificate ids: 64 hexadecimal characters.
pub(crate) fn check_certificate_id(id: &str) -> Result<(), AwsError> {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{id:?} is not a valid certificate id: 64 hexadecimal characters"
        )))
    }
}

/// Checks a policy document as AWS IoT would, with the policy engine.
pub(crate) fn check_document(
    name: &str,
    document: &str,
) -> Result<herald_policy::Policy, AwsError> {
    herald_policy::Policy::parse(name, document)
        .map_err(|e| AwsError::new(ErrorType::MalformedPolicy, e.message().to_owned()))
}

pub(crate) struct Arns<'a> {
    pub(crate) region: &'a str,
    pub(crate) account: &'a str,
}

/// What a policy can be attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Certificate(String),
    ThingGroup(String),
}

impl Arns<'_> {
    pub(crate) fn of(&self, kind: &str, name: &str) -> String {
        format!("arn:aws:iot:{}:{}:{kind}/{name}", self.region, self.account)
    }

    pub(crate) fn policy(&self, name: &str) -> String {
        self.of("policy", name)
    }

    pub(crate) fn certificate(&self, id: &str) -> String {
        self.of("cert", id)
    }

    pub(crate) fn ca_certificate(&self, id: &str) -> String {
        self.of("cacert", id)
    }

    /// Reads a target ARN of this account and region.
    pub(crate) fn target(&self, arn: &str) -> Result<Target, AwsError> {
        let cert = self.of("cert", "");
        let group = self.of("thinggroup", "");
        if let Some(id) = arn.strip_prefix(cert.as_str()) {
            check_certificate_id(id)?;
            Ok(Target::Certificate(id.to_ascii_lowercase()))
        } else if let Some(name) = arn.strip_prefix(group.as_str()).filter(|n| !n.is_empty()) {
            Ok(Target::ThingGroup(name.to_owned()))
        } else {
            Err(invalid(format!(
                "{arn:?} is not a certificate or thing group ARN of account {} in {}",
                self.account, self.region
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_checked() {
        assert!(check_policy_name("my-policy_1.v2@x+=,").is_ok());
        assert!(check_policy_name("").is_err());
        assert!(check_policy_name("a/b").is_err());
        assert_eq!(parse_version_id("12").unwrap(), 12);
        assert!(parse_version_id("v1").is_err());
        assert!(check_certificate_id(&"a".repeat(64)).is_ok());
        assert!(check_certificate_id(&"g".repeat(64)).is_err());
    }

    #[test]
    fn targets_are_certificates_or_thing_groups() {
        let arns = Arns {
            region: "us-east-1",
            account: "123456789012",
        };
        let id = "ab".repeat(32);
        assert_eq!(
            arns.target(&arns.certificate(&id)).unwrap(),
            Target::Certificate(id)
        );
        assert_eq!(
            arns.target(&arns.of("thinggroup", "g1")).unwrap(),
            Target::ThingGroup("g1".into())
        );
        assert!(arns.target(&arns.of("thing", "t")).is_err());
        assert!(
            arns.target("arn:aws:iot:eu-west-1:123456789012:thinggroup/g1")
                .is_err()
        );
    }

    #[test]
    fn storage_failures_keep_their_aws_error_types() {
        let cases = [
            (
                StoreError::Storage("disk full".into()),
                ErrorType::InternalFailure,
                "storage failure: disk full",
            ),
            (
                StoreError::ShuttingDown,
                ErrorType::ServiceUnavailable,
                "the service is shutting down",
            ),
            (
                StoreError::InvalidPage("The nextToken is not valid".into()),
                ErrorType::InvalidRequest,
                "The nextToken is not valid",
            ),
        ];
        for (err, error_type, message) in cases {
            assert_eq!(store_error(err), AwsError::new(error_type, message));
        }
    }
}
