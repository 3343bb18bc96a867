//! The config operations' outputs, as botocore's `iot` model names their
//! members (AWS IoT Core API Reference: DescribeEventConfigurations,
//! GetPolicy, DescribeCertificate, ListCertificates, TestAuthorization, ...),
//! each built from the config service's answer.

use std::collections::BTreeMap;

use herald_proto::config::v1 as pb;
use serde::Serialize;

use crate::http::output::{next_page, seconds, sorted};

/// The wire enum to AWS's CertificateStatus name; `null` when unset.
pub(super) fn status_name(status: i32) -> Option<&'static str> {
    match pb::CertificateStatus::try_from(status) {
        Ok(pb::CertificateStatus::Unspecified) | Err(_) => None,
        Ok(status) => Some(status.as_str_name()),
    }
}

/// DescribeEndpoint's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeEndpointOutput {
    pub(super) endpoint_address: String,
}

/// DescribeEventConfigurations' output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeEventConfigurationsOutput {
    creation_date: f64,
    event_configurations: BTreeMap<String, Configuration>,
    last_modified_date: f64,
}

#[derive(Debug, Serialize)]
struct Configuration {
    #[serde(rename = "Enabled")]
    enabled: bool,
}

impl From<pb::DescribeEventConfigurationsResponse> for DescribeEventConfigurationsOutput {
    fn from(described: pb::DescribeEventConfigurationsResponse) -> Self {
        DescribeEventConfigurationsOutput {
            creation_date: seconds(described.creation_date_ms),
            event_configurations: sorted(described.enabled)
                .into_iter()
                .map(|(key, enabled)| (key, Configuration { enabled }))
                .collect(),
            last_modified_date: seconds(described.last_modified_date_ms),
        }
    }
}

/// CreatePolicy's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreatePolicyOutput {
    policy_arn: String,
    policy_document: String,
    policy_name: String,
    policy_version_id: String,
}

impl From<pb::CreatePolicyResponse> for CreatePolicyOutput {
    fn from(created: pb::CreatePolicyResponse) -> Self {
        CreatePolicyOutput {
            policy_arn: created.policy_arn,
            policy_document: created.policy_document,
            policy_name: created.policy_name,
            policy_version_id: created.policy_version_id,
        }
    }
}

/// GetPolicy's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GetPolicyOutput {
    creation_date: f64,
    default_version_id: String,
    generation_id: String,
    last_modified_date: f64,
    policy_arn: String,
    policy_document: String,
    policy_name: String,
}

impl From<pb::GetPolicyResponse> for GetPolicyOutput {
    fn from(policy: pb::GetPolicyResponse) -> Self {
        GetPolicyOutput {
            creation_date: seconds(policy.creation_date_ms),
            default_version_id: policy.default_version_id,
            generation_id: policy.generation_id,
            last_modified_date: seconds(policy.last_modified_date_ms),
            policy_arn: policy.policy_arn,
            policy_document: policy.policy_document,
            policy_name: policy.policy_name,
        }
    }
}

/// A policy as listings and TestAuthorization name it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Policy {
    policy_arn: String,
    policy_name: String,
}

impl From<pb::PolicySummary> for Policy {
    fn from(policy: pb::PolicySummary) -> Self {
        Policy {
            policy_arn: policy.policy_arn,
            policy_name: policy.policy_name,
        }
    }
}

impl From<pb::PolicyRef> for Policy {
    fn from(policy: pb::PolicyRef) -> Self {
        Policy {
            policy_arn: policy.policy_arn,
            policy_name: policy.policy_name,
        }
    }
}

/// The output of ListPolicies, ListAttachedPolicies and ListPrincipalPolicies.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PoliciesOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
    policies: Vec<Policy>,
}

impl PoliciesOutput {
    pub(super) fn new(policies: Vec<pb::PolicySummary>, next_marker: String) -> Self {
        PoliciesOutput {
            next_marker: next_page(next_marker),
            policies: policies.into_iter().map(Policy::from).collect(),
        }
    }
}

/// CreatePolicyVersion's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreatePolicyVersionOutput {
    is_default_version: bool,
    policy_arn: String,
    policy_document: String,
    policy_version_id: String,
}

impl From<pb::CreatePolicyVersionResponse> for CreatePolicyVersionOutput {
    fn from(created: pb::CreatePolicyVersionResponse) -> Self {
        CreatePolicyVersionOutput {
            is_default_version: created.is_default_version,
            policy_arn: created.policy_arn,
            policy_document: created.policy_document,
            policy_version_id: created.policy_version_id,
        }
    }
}

/// GetPolicyVersion's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GetPolicyVersionOutput {
    creation_date: f64,
    generation_id: String,
    is_default_version: bool,
    last_modified_date: f64,
    policy_arn: String,
    policy_document: String,
    policy_name: String,
    policy_version_id: String,
}

impl From<pb::GetPolicyVersionResponse> for GetPolicyVersionOutput {
    fn from(version: pb::GetPolicyVersionResponse) -> Self {
        GetPolicyVersionOutput {
            creation_date: seconds(version.creation_date_ms),
            generation_id: version.generation_id,
            is_default_version: version.is_default_version,
            last_modified_date: seconds(version.last_modified_date_ms),
            policy_arn: version.policy_arn,
            policy_document: version.policy_document,
            policy_name: version.policy_name,
            policy_version_id: version.policy_version_id,
        }
    }
}

/// ListPolicyVersions' output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListPolicyVersionsOutput {
    policy_versions: Vec<PolicyVersion>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyVersion {
    create_date: f64,
    is_default_version: bool,
    version_id: String,
}

impl From<pb::ListPolicyVersionsResponse> for ListPolicyVersionsOutput {
    fn from(listed: pb::ListPolicyVersionsResponse) -> Self {
        ListPolicyVersionsOutput {
            policy_versions: listed
                .policy_versions
                .into_iter()
                .map(|version| PolicyVersion {
                    create_date: seconds(version.create_date_ms),
                    is_default_version: version.is_default_version,
                    version_id: version.version_id,
                })
                .collect(),
        }
    }
}

/// CreateKeysAndCertificate's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateKeysAndCertificateOutput {
    certificate_arn: String,
    certificate_id: String,
    certificate_pem: String,
    key_pair: KeyPair,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyPair {
    private_key: String,
    public_key: String,
}

impl From<pb::CreateKeysAndCertificateResponse> for CreateKeysAndCertificateOutput {
    fn from(created: pb::CreateKeysAndCertificateResponse) -> Self {
        let key_pair = created.key_pair.unwrap_or_default();
        CreateKeysAndCertificateOutput {
            certificate_arn: created.certificate_arn,
            certificate_id: created.certificate_id,
            certificate_pem: created.certificate_pem,
            key_pair: KeyPair {
                private_key: key_pair.private_key,
                public_key: key_pair.public_key,
            },
        }
    }
}

/// CreateCertificateFromCsr's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateCertificateFromCsrOutput {
    certificate_arn: String,
    certificate_id: String,
    certificate_pem: String,
}

impl From<pb::CreateCertificateFromCsrResponse> for CreateCertificateFromCsrOutput {
    fn from(created: pb::CreateCertificateFromCsrResponse) -> Self {
        CreateCertificateFromCsrOutput {
            certificate_arn: created.certificate_arn,
            certificate_id: created.certificate_id,
            certificate_pem: created.certificate_pem,
        }
    }
}

/// The output of RegisterCertificate and RegisterCertificateWithoutCA.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RegisterCertificateOutput {
    certificate_arn: String,
    certificate_id: String,
}

impl From<pb::RegisterCertificateResponse> for RegisterCertificateOutput {
    fn from(registered: pb::RegisterCertificateResponse) -> Self {
        RegisterCertificateOutput {
            certificate_arn: registered.certificate_arn,
            certificate_id: registered.certificate_id,
        }
    }
}

/// DescribeCertificate's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeCertificateOutput {
    certificate_description: CertificateDescription,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CertificateDescription {
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_certificate_id: Option<String>,
    certificate_arn: String,
    certificate_id: String,
    certificate_mode: String,
    certificate_pem: String,
    creation_date: f64,
    customer_version: i32,
    generation_id: String,
    last_modified_date: f64,
    owned_by: String,
    status: Option<&'static str>,
    validity: Validity,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Validity {
    not_after: f64,
    not_before: f64,
}

impl From<pb::CertificateDescription> for DescribeCertificateOutput {
    fn from(c: pb::CertificateDescription) -> Self {
        DescribeCertificateOutput {
            certificate_description: CertificateDescription {
                ca_certificate_id: c.ca_certificate_id,
                certificate_arn: c.certificate_arn,
                certificate_id: c.certificate_id,
                certificate_mode: c.certificate_mode,
                certificate_pem: c.certificate_pem,
                creation_date: seconds(c.creation_date_ms),
                customer_version: c.customer_version,
                generation_id: c.generation_id,
                last_modified_date: seconds(c.last_modified_date_ms),
                owned_by: c.owned_by,
                status: status_name(c.status),
                validity: Validity {
                    not_after: seconds(c.not_after_ms),
                    not_before: seconds(c.not_before_ms),
                },
            },
        }
    }
}

/// ListCertificates' output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListCertificatesOutput {
    certificates: Vec<Certificate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Certificate {
    certificate_arn: String,
    certificate_id: String,
    certificate_mode: String,
    creation_date: f64,
    status: Option<&'static str>,
}

impl From<pb::ListCertificatesResponse> for ListCertificatesOutput {
    fn from(listed: pb::ListCertificatesResponse) -> Self {
        ListCertificatesOutput {
            certificates: listed
                .certificates
                .into_iter()
                .map(|c| Certificate {
                    certificate_arn: c.certificate_arn,
                    certificate_id: c.certificate_id,
                    certificate_mode: c.certificate_mode,
                    creation_date: seconds(c.creation_date_ms),
                    status: status_name(c.status),
                })
                .collect(),
            next_marker: next_page(listed.next_marker),
        }
    }
}

/// ListTargetsForPolicy's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListTargetsForPolicyOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
    targets: Vec<String>,
}

impl From<pb::ListTargetsForPolicyResponse> for ListTargetsForPolicyOutput {
    fn from(listed: pb::ListTargetsForPolicyResponse) -> Self {
        ListTargetsForPolicyOutput {
            next_marker: next_page(listed.next_marker),
            targets: listed.targets,
        }
    }
}

/// ListPolicyPrincipals' output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListPolicyPrincipalsOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
    principals: Vec<String>,
}

impl ListPolicyPrincipalsOutput {
    pub(super) fn new(principals: Vec<String>, next_marker: String) -> Self {
        ListPolicyPrincipalsOutput {
            next_marker: next_page(next_marker),
            principals,
        }
    }
}

/// GetEffectivePolicies' output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GetEffectivePoliciesOutput {
    effective_policies: Vec<EffectivePolicy>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EffectivePolicy {
    policy_arn: String,
    policy_document: String,
    policy_name: String,
}

impl From<pb::GetEffectivePoliciesResponse> for GetEffectivePoliciesOutput {
    fn from(effective: pb::GetEffectivePoliciesResponse) -> Self {
        GetEffectivePoliciesOutput {
            effective_policies: effective
                .effective_policies
                .into_iter()
                .map(|policy| EffectivePolicy {
                    policy_arn: policy.policy_arn,
                    policy_document: policy.policy_document,
                    policy_name: policy.policy_name,
                })
                .collect(),
        }
    }
}

/// TestAuthorization's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TestAuthorizationOutput {
    auth_results: Vec<AuthResult>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthResult {
    allowed: Policies,
    auth_decision: String,
    auth_info: AuthInfo,
    denied: Denied,
    missing_context_values: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    action_type: Option<String>,
    resources: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Denied {
    explicit_deny: Policies,
    implicit_deny: Policies,
}

#[derive(Debug, Serialize)]
struct Policies {
    policies: Vec<Policy>,
}

impl From<Vec<pb::PolicyRef>> for Policies {
    fn from(policies: Vec<pb::PolicyRef>) -> Self {
        Policies {
            policies: policies.into_iter().map(Policy::from).collect(),
        }
    }
}

impl From<pb::TestAuthorizationResponse> for TestAuthorizationOutput {
    fn from(tested: pb::TestAuthorizationResponse) -> Self {
        TestAuthorizationOutput {
            auth_results: tested
                .auth_results
                .into_iter()
                .map(|result| {
                    let info = result.auth_info.unwrap_or_default();
                    AuthResult {
                        allowed: result.allowed.into(),
                        auth_decision: result.auth_decision,
                        auth_info: AuthInfo {
                            action_type: (!info.action_type.is_empty()).then_some(info.action_type),
                            resources: info.resources,
                        },
                        denied: Denied {
                            explicit_deny: result.explicit_deny.into(),
                            implicit_deny: result.implicit_deny.into(),
                        },
                        missing_context_values: result.missing_context_values,
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(output: impl Serialize) -> String {
        serde_json::to_string(&output).unwrap()
    }

    #[test]
    fn a_certificate_without_a_status_says_null() {
        let certificate = pb::CertificateDescription {
            certificate_arn: "a".into(),
            certificate_id: "i".into(),
            status: pb::CertificateStatus::Active as i32,
            ca_certificate_id: Some("ca".into()),
            certificate_pem: "pem".into(),
            owned_by: "123".into(),
            creation_date_ms: 1,
            last_modified_date_ms: 2,
            not_before_ms: 3,
            not_after_ms: 4_000_000_000_001,
            certificate_mode: "DEFAULT".into(),
            customer_version: 1,
            generation_id: "g".into(),
        };
        assert_eq!(
            json(DescribeCertificateOutput::from(certificate.clone())),
            r#"{"certificateDescription":{"caCertificateId":"ca","certificateArn":"a","certificateId":"i","certificateMode":"DEFAULT","certificatePem":"pem","creationDate":0.001,"customerVersion":1,"generationId":"g","lastModifiedDate":0.002,"ownedBy":"123","status":"ACTIVE","validity":{"notAfter":4000000000.001,"notBefore":0.003}}}"#
        );
        let unset = pb::CertificateDescription {
            status: 0,
            ca_certificate_id: None,
            ..certificate
        };
        assert!(
            json(DescribeCertificateOutput::from(unset))
                .contains(r#""ownedBy":"123","status":null,"#)
        );
    }

    #[test]
    fn list_certificates_puts_next_marker_after_the_certificates() {
        let listed = pb::ListCertificatesResponse {
            certificates: vec![pb::CertificateSummary {
                certificate_arn: "a".into(),
                certificate_id: "i".into(),
                status: pb::CertificateStatus::Revoked as i32,
                certificate_mode: "SNI_ONLY".into(),
                creation_date_ms: 77,
            }],
            next_marker: "h1.69".into(),
        };
        assert_eq!(
            json(ListCertificatesOutput::from(listed)),
            r#"{"certificates":[{"certificateArn":"a","certificateId":"i","certificateMode":"SNI_ONLY","creationDate":0.077,"status":"REVOKED"}],"nextMarker":"h1.69"}"#
        );
        let policies = vec![pb::PolicySummary {
            policy_name: "p".into(),
            policy_arn: "pa".into(),
        }];
        assert_eq!(
            json(PoliciesOutput::new(policies, "m".into())),
            r#"{"nextMarker":"m","policies":[{"policyArn":"pa","policyName":"p"}]}"#
        );
    }

    #[test]
    fn event_configurations_and_key_pairs_keep_aws_capitals() {
        let described = pb::DescribeEventConfigurationsResponse {
            enabled: [
                ("THING".to_owned(), true),
                ("CA_CERTIFICATE".to_owned(), false),
            ]
            .into_iter()
            .collect(),
            creation_date_ms: 1,
            last_modified_date_ms: 1_715_938_200_999,
        };
        assert_eq!(
            json(DescribeEventConfigurationsOutput::from(described)),
            r#"{"creationDate":0.001,"eventConfigurations":{"CA_CERTIFICATE":{"Enabled":false},"THING":{"Enabled":true}},"lastModifiedDate":1715938200.999}"#
        );
        let created = pb::CreateKeysAndCertificateResponse {
            certificate_arn: "a".into(),
            certificate_id: "i".into(),
            certificate_pem: "pem".into(),
            key_pair: Some(pb::KeyPair {
                public_key: "pub".into(),
                private_key: "priv".into(),
            }),
        };
        assert_eq!(
            json(CreateKeysAndCertificateOutput::from(created)),
            r#"{"certificateArn":"a","certificateId":"i","certificatePem":"pem","keyPair":{"PrivateKey":"priv","PublicKey":"pub"}}"#
        );
    }

    #[test]
    fn an_auth_result_leaves_out_an_empty_action_type() {
        let tested = pb::TestAuthorizationResponse {
            auth_results: vec![pb::AuthResult {
                auth_info: Some(pb::AuthInfo {
                    action_type: String::new(),
                    resources: vec!["r".into()],
                }),
                allowed: vec![],
                implicit_deny: vec![pb::PolicyRef {
                    policy_name: "p".into(),
                    policy_arn: "pa".into(),
                }],
                explicit_deny: vec![],
                auth_decision: "IMPLICIT_DENY".into(),
                missing_context_values: vec![],
            }],
        };
        assert_eq!(
            json(TestAuthorizationOutput::from(tested)),
            r#"{"authResults":[{"allowed":{"policies":[]},"authDecision":"IMPLICIT_DENY","authInfo":{"resources":["r"]},"denied":{"explicitDeny":{"policies":[]},"implicitDeny":{"policies":[{"policyArn":"pa","policyName":"p"}]}},"missingContextValues":[]}]}"#
        );
    }
}
