//! The operations of botocore's `iot` model, to name the ones Herald does not
//! serve: a request no route serves gets a 4xx that names the operation its
//! method and path select in the model, or says that none does.

use axum::{extract::Request, response::IntoResponse};

use super::{ApiError, ErrorKind};

/// Answers a request no handler serves: a 400 naming the operation, never a
/// 5xx (clients retry those). Both the router's fallback and every served
/// path's method fallback (a method the path does not serve).
pub(crate) async fn not_implemented(request: Request) -> impl IntoResponse {
    let method = request.method().as_str();
    let path = request.uri().path();
    match lookup(method, path) {
        Some((name, template)) => ApiError::invalid(format!(
            "Herald does not implement the AWS IoT operation {name} ({method} {template})"
        )),
        None => {
            let others: Vec<String> = OPERATIONS
                .iter()
                .filter(|(_, template, _)| matches(template, path).is_some())
                .map(|(method, _, name)| format!("{method} {name}"))
                .collect();
            let message = if others.is_empty() {
                format!("No AWS IoT operation is served at {method} {path}")
            } else {
                format!(
                    "No AWS IoT operation is served at {method} {path} (this path serves {})",
                    others.join(", ")
                )
            };
            ApiError::new(ErrorKind::UnknownOperation, message)
        }
    }
}

/// The model's operation for `method` and the raw (still percent-encoded)
/// `path`, as (operation name, requestUri template). Where several templates
/// match, the one with the most literal segments wins (`/thing-groups/addThingToThingGroup`
/// over `/thing-groups/{thingGroupName}`).
pub(crate) fn lookup(method: &str, path: &str) -> Option<(&'static str, &'static str)> {
    OPERATIONS
        .iter()
        .filter(|(m, _, _)| m.eq_ignore_ascii_case(method))
        .filter_map(|&(_, template, name)| {
            matches(template, path).map(|literals| (literals, name, template))
        })
        .max_by_key(|&(literals, _, _)| literals)
        .map(|(_, name, template)| (name, template))
}

/// Whether `path` fits `template`: a literal segment must be equal, a label
/// `{name}` takes one non-empty segment, a greedy label `{name+}` one or more.
/// Returns the number of literal segments matched.
fn matches(template: &str, path: &str) -> Option<usize> {
    let template: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let path: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match_segments(&template, &path)
}

fn match_segments(template: &[&str], path: &[&str]) -> Option<usize> {
    let Some((first, rest)) = template.split_first() else {
        return path.is_empty().then_some(0);
    };
    if first.starts_with('{') && first.ends_with("+}") {
        // A greedy label: at least one segment, and not an empty path.
        return (1..=path.len())
            .filter(|&taken| path[..taken].iter().any(|segment| !segment.is_empty()))
            .find_map(|taken| match_segments(rest, &path[taken..]));
    }
    let (segment, path_rest) = path.split_first()?;
    if first.starts_with('{') && first.ends_with('}') {
        if segment.is_empty() {
            return None;
        }
        match_segments(rest, path_rest)
    } else if first == segment {
        match_segments(rest, path_rest).map(|literals| literals + 1)
    } else {
        None
    }
}

/// Every operation of botocore's `iot` 2015-05-28 model (botocore 1.43.11), as
/// (method, requestUri template without its query part, operation name),
/// sorted by template. Generated once from `data/iot/2015-05-28/service-2.json.gz`.
const OPERATIONS: &[(&str, &str, &str)] = &[
    (
        "PATCH",
        "/accept-certificate-transfer/{certificateId}",
        "AcceptCertificateTransfer",
    ),
    ("GET", "/active-violations", "ListActiveViolations"),
    (
        "POST",
        "/attached-policies/{target}",
        "ListAttachedPolicies",
    ),
    (
        "DELETE",
        "/audit/configuration",
        "DeleteAccountAuditConfiguration",
    ),
    (
        "GET",
        "/audit/configuration",
        "DescribeAccountAuditConfiguration",
    ),
    (
        "PATCH",
        "/audit/configuration",
        "UpdateAccountAuditConfiguration",
    ),
    ("POST", "/audit/findings", "ListAuditFindings"),
    ("GET", "/audit/findings/{findingId}", "DescribeAuditFinding"),
    (
        "GET",
        "/audit/mitigationactions/executions",
        "ListAuditMitigationActionsExecutions",
    ),
    (
        "GET",
        "/audit/mitigationactions/tasks",
        "ListAuditMitigationActionsTasks",
    ),
    (
        "GET",
        "/audit/mitigationactions/tasks/{taskId}",
        "DescribeAuditMitigationActionsTask",
    ),
    (
        "POST",
        "/audit/mitigationactions/tasks/{taskId}",
        "StartAuditMitigationActionsTask",
    ),
    (
        "PUT",
        "/audit/mitigationactions/tasks/{taskId}/cancel",
        "CancelAuditMitigationActionsTask",
    ),
    (
        "GET",
        "/audit/relatedResources",
        "ListRelatedResourcesForAuditFinding",
    ),
    ("GET", "/audit/scheduledaudits", "ListScheduledAudits"),
    (
        "DELETE",
        "/audit/scheduledaudits/{scheduledAuditName}",
        "DeleteScheduledAudit",
    ),
    (
        "GET",
        "/audit/scheduledaudits/{scheduledAuditName}",
        "DescribeScheduledAudit",
    ),
    (
        "PATCH",
        "/audit/scheduledaudits/{scheduledAuditName}",
        "UpdateScheduledAudit",
    ),
    (
        "POST",
        "/audit/scheduledaudits/{scheduledAuditName}",
        "CreateScheduledAudit",
    ),
    (
        "POST",
        "/audit/suppressions/create",
        "CreateAuditSuppression",
    ),
    (
        "POST",
        "/audit/suppressions/delete",
        "DeleteAuditSuppression",
    ),
    (
        "POST",
        "/audit/suppressions/describe",
        "DescribeAuditSuppression",
    ),
    ("POST", "/audit/suppressions/list", "ListAuditSuppressions"),
    (
        "PATCH",
        "/audit/suppressions/update",
        "UpdateAuditSuppression",
    ),
    ("GET", "/audit/tasks", "ListAuditTasks"),
    ("POST", "/audit/tasks", "StartOnDemandAuditTask"),
    ("GET", "/audit/tasks/{taskId}", "DescribeAuditTask"),
    ("PUT", "/audit/tasks/{taskId}/cancel", "CancelAuditTask"),
    ("DELETE", "/authorizer/{authorizerName}", "DeleteAuthorizer"),
    ("GET", "/authorizer/{authorizerName}", "DescribeAuthorizer"),
    ("POST", "/authorizer/{authorizerName}", "CreateAuthorizer"),
    ("PUT", "/authorizer/{authorizerName}", "UpdateAuthorizer"),
    (
        "POST",
        "/authorizer/{authorizerName}/test",
        "TestInvokeAuthorizer",
    ),
    ("GET", "/authorizers/", "ListAuthorizers"),
    (
        "GET",
        "/behavior-model-training/summaries",
        "GetBehaviorModelTrainingSummaries",
    ),
    ("GET", "/billing-groups", "ListBillingGroups"),
    (
        "PUT",
        "/billing-groups/addThingToBillingGroup",
        "AddThingToBillingGroup",
    ),
    (
        "PUT",
        "/billing-groups/removeThingFromBillingGroup",
        "RemoveThingFromBillingGroup",
    ),
    (
        "DELETE",
        "/billing-groups/{billingGroupName}",
        "DeleteBillingGroup",
    ),
    (
        "GET",
        "/billing-groups/{billingGroupName}",
        "DescribeBillingGroup",
    ),
    (
        "PATCH",
        "/billing-groups/{billingGroupName}",
        "UpdateBillingGroup",
    ),
    (
        "POST",
        "/billing-groups/{billingGroupName}",
        "CreateBillingGroup",
    ),
    (
        "GET",
        "/billing-groups/{billingGroupName}/things",
        "ListThingsInBillingGroup",
    ),
    ("POST", "/cacertificate", "RegisterCACertificate"),
    (
        "DELETE",
        "/cacertificate/{caCertificateId}",
        "DeleteCACertificate",
    ),
    (
        "GET",
        "/cacertificate/{caCertificateId}",
        "DescribeCACertificate",
    ),
    (
        "PUT",
        "/cacertificate/{caCertificateId}",
        "UpdateCACertificate",
    ),
    ("GET", "/cacertificates", "ListCACertificates"),
    (
        "PATCH",
        "/cancel-certificate-transfer/{certificateId}",
        "CancelCertificateTransfer",
    ),
    ("GET", "/certificate-providers/", "ListCertificateProviders"),
    (
        "DELETE",
        "/certificate-providers/{certificateProviderName}",
        "DeleteCertificateProvider",
    ),
    (
        "GET",
        "/certificate-providers/{certificateProviderName}",
        "DescribeCertificateProvider",
    ),
    (
        "POST",
        "/certificate-providers/{certificateProviderName}",
        "CreateCertificateProvider",
    ),
    (
        "PUT",
        "/certificate-providers/{certificateProviderName}",
        "UpdateCertificateProvider",
    ),
    ("POST", "/certificate/register", "RegisterCertificate"),
    (
        "POST",
        "/certificate/register-no-ca",
        "RegisterCertificateWithoutCA",
    ),
    ("GET", "/certificates", "ListCertificates"),
    ("POST", "/certificates", "CreateCertificateFromCsr"),
    (
        "GET",
        "/certificates-by-ca/{caCertificateId}",
        "ListCertificatesByCA",
    ),
    ("GET", "/certificates-out-going", "ListOutgoingCertificates"),
    (
        "DELETE",
        "/certificates/{certificateId}",
        "DeleteCertificate",
    ),
    (
        "GET",
        "/certificates/{certificateId}",
        "DescribeCertificate",
    ),
    ("PUT", "/certificates/{certificateId}", "UpdateCertificate"),
    ("POST", "/command-executions", "ListCommandExecutions"),
    (
        "DELETE",
        "/command-executions/{executionId}",
        "DeleteCommandExecution",
    ),
    (
        "GET",
        "/command-executions/{executionId}",
        "GetCommandExecution",
    ),
    ("GET", "/commands", "ListCommands"),
    ("DELETE", "/commands/{commandId}", "DeleteCommand"),
    ("GET", "/commands/{commandId}", "GetCommand"),
    ("PATCH", "/commands/{commandId}", "UpdateCommand"),
    ("PUT", "/commands/{commandId}", "CreateCommand"),
    (
        "GET",
        "/confirmdestination/{confirmationToken+}",
        "ConfirmTopicRuleDestination",
    ),
    (
        "DELETE",
        "/custom-metric/{metricName}",
        "DeleteCustomMetric",
    ),
    ("GET", "/custom-metric/{metricName}", "DescribeCustomMetric"),
    ("PATCH", "/custom-metric/{metricName}", "UpdateCustomMetric"),
    ("POST", "/custom-metric/{metricName}", "CreateCustomMetric"),
    ("GET", "/custom-metrics", "ListCustomMetrics"),
    ("DELETE", "/default-authorizer", "ClearDefaultAuthorizer"),
    ("GET", "/default-authorizer", "DescribeDefaultAuthorizer"),
    ("POST", "/default-authorizer", "SetDefaultAuthorizer"),
    ("GET", "/destinations", "ListTopicRuleDestinations"),
    ("PATCH", "/destinations", "UpdateTopicRuleDestination"),
    ("POST", "/destinations", "CreateTopicRuleDestination"),
    (
        "DELETE",
        "/destinations/{arn+}",
        "DeleteTopicRuleDestination",
    ),
    ("GET", "/destinations/{arn+}", "GetTopicRuleDestination"),
    (
        "GET",
        "/detect/mitigationactions/executions",
        "ListDetectMitigationActionsExecutions",
    ),
    (
        "GET",
        "/detect/mitigationactions/tasks",
        "ListDetectMitigationActionsTasks",
    ),
    (
        "GET",
        "/detect/mitigationactions/tasks/{taskId}",
        "DescribeDetectMitigationActionsTask",
    ),
    (
        "PUT",
        "/detect/mitigationactions/tasks/{taskId}",
        "StartDetectMitigationActionsTask",
    ),
    (
        "PUT",
        "/detect/mitigationactions/tasks/{taskId}/cancel",
        "CancelDetectMitigationActionsTask",
    ),
    ("GET", "/dimensions", "ListDimensions"),
    ("DELETE", "/dimensions/{name}", "DeleteDimension"),
    ("GET", "/dimensions/{name}", "DescribeDimension"),
    ("PATCH", "/dimensions/{name}", "UpdateDimension"),
    ("POST", "/dimensions/{name}", "CreateDimension"),
    ("GET", "/domainConfigurations", "ListDomainConfigurations"),
    (
        "DELETE",
        "/domainConfigurations/{domainConfigurationName}",
        "DeleteDomainConfiguration",
    ),
    (
        "GET",
        "/domainConfigurations/{domainConfigurationName}",
        "DescribeDomainConfiguration",
    ),
    (
        "POST",
        "/domainConfigurations/{domainConfigurationName}",
        "CreateDomainConfiguration",
    ),
    (
        "PUT",
        "/domainConfigurations/{domainConfigurationName}",
        "UpdateDomainConfiguration",
    ),
    (
        "DELETE",
        "/dynamic-thing-groups/{thingGroupName}",
        "DeleteDynamicThingGroup",
    ),
    (
        "PATCH",
        "/dynamic-thing-groups/{thingGroupName}",
        "UpdateDynamicThingGroup",
    ),
    (
        "POST",
        "/dynamic-thing-groups/{thingGroupName}",
        "CreateDynamicThingGroup",
    ),
    ("POST", "/effective-policies", "GetEffectivePolicies"),
    (
        "GET",
        "/encryption-configuration",
        "DescribeEncryptionConfiguration",
    ),
    (
        "PATCH",
        "/encryption-configuration",
        "UpdateEncryptionConfiguration",
    ),
    ("GET", "/endpoint", "DescribeEndpoint"),
    (
        "GET",
        "/event-configurations",
        "DescribeEventConfigurations",
    ),
    (
        "PATCH",
        "/event-configurations",
        "UpdateEventConfigurations",
    ),
    ("DELETE", "/fleet-metric/{metricName}", "DeleteFleetMetric"),
    ("GET", "/fleet-metric/{metricName}", "DescribeFleetMetric"),
    ("PATCH", "/fleet-metric/{metricName}", "UpdateFleetMetric"),
    ("PUT", "/fleet-metric/{metricName}", "CreateFleetMetric"),
    ("GET", "/fleet-metrics", "ListFleetMetrics"),
    ("GET", "/indexing/config", "GetIndexingConfiguration"),
    ("POST", "/indexing/config", "UpdateIndexingConfiguration"),
    ("GET", "/indices", "ListIndices"),
    ("POST", "/indices/buckets", "GetBucketsAggregation"),
    ("POST", "/indices/cardinality", "GetCardinality"),
    ("POST", "/indices/percentiles", "GetPercentiles"),
    ("POST", "/indices/search", "SearchIndex"),
    ("POST", "/indices/statistics", "GetStatistics"),
    ("GET", "/indices/{indexName}", "DescribeIndex"),
    ("GET", "/job-templates", "ListJobTemplates"),
    (
        "DELETE",
        "/job-templates/{jobTemplateId}",
        "DeleteJobTemplate",
    ),
    (
        "GET",
        "/job-templates/{jobTemplateId}",
        "DescribeJobTemplate",
    ),
    ("PUT", "/job-templates/{jobTemplateId}", "CreateJobTemplate"),
    ("GET", "/jobs", "ListJobs"),
    ("DELETE", "/jobs/{jobId}", "DeleteJob"),
    ("GET", "/jobs/{jobId}", "DescribeJob"),
    ("PATCH", "/jobs/{jobId}", "UpdateJob"),
    ("PUT", "/jobs/{jobId}", "CreateJob"),
    ("PUT", "/jobs/{jobId}/cancel", "CancelJob"),
    ("GET", "/jobs/{jobId}/job-document", "GetJobDocument"),
    ("POST", "/jobs/{jobId}/targets", "AssociateTargetsWithJob"),
    ("GET", "/jobs/{jobId}/things", "ListJobExecutionsForJob"),
    ("POST", "/keys-and-certificate", "CreateKeysAndCertificate"),
    ("GET", "/loggingOptions", "GetLoggingOptions"),
    ("POST", "/loggingOptions", "SetLoggingOptions"),
    ("GET", "/managed-job-templates", "ListManagedJobTemplates"),
    (
        "GET",
        "/managed-job-templates/{templateName}",
        "DescribeManagedJobTemplate",
    ),
    ("GET", "/metric-values", "ListMetricValues"),
    ("GET", "/mitigationactions/actions", "ListMitigationActions"),
    (
        "DELETE",
        "/mitigationactions/actions/{actionName}",
        "DeleteMitigationAction",
    ),
    (
        "GET",
        "/mitigationactions/actions/{actionName}",
        "DescribeMitigationAction",
    ),
    (
        "PATCH",
        "/mitigationactions/actions/{actionName}",
        "UpdateMitigationAction",
    ),
    (
        "POST",
        "/mitigationactions/actions/{actionName}",
        "CreateMitigationAction",
    ),
    ("GET", "/otaUpdates", "ListOTAUpdates"),
    ("DELETE", "/otaUpdates/{otaUpdateId}", "DeleteOTAUpdate"),
    ("GET", "/otaUpdates/{otaUpdateId}", "GetOTAUpdate"),
    ("POST", "/otaUpdates/{otaUpdateId}", "CreateOTAUpdate"),
    ("GET", "/package-configuration", "GetPackageConfiguration"),
    (
        "PATCH",
        "/package-configuration",
        "UpdatePackageConfiguration",
    ),
    ("GET", "/packages", "ListPackages"),
    ("DELETE", "/packages/{packageName}", "DeletePackage"),
    ("GET", "/packages/{packageName}", "GetPackage"),
    ("PATCH", "/packages/{packageName}", "UpdatePackage"),
    ("PUT", "/packages/{packageName}", "CreatePackage"),
    (
        "GET",
        "/packages/{packageName}/versions",
        "ListPackageVersions",
    ),
    (
        "DELETE",
        "/packages/{packageName}/versions/{versionName}",
        "DeletePackageVersion",
    ),
    (
        "GET",
        "/packages/{packageName}/versions/{versionName}",
        "GetPackageVersion",
    ),
    (
        "PATCH",
        "/packages/{packageName}/versions/{versionName}",
        "UpdatePackageVersion",
    ),
    (
        "PUT",
        "/packages/{packageName}/versions/{versionName}",
        "CreatePackageVersion",
    ),
    (
        "DELETE",
        "/packages/{packageName}/versions/{versionName}/sbom",
        "DisassociateSbomFromPackageVersion",
    ),
    (
        "PUT",
        "/packages/{packageName}/versions/{versionName}/sbom",
        "AssociateSbomWithPackageVersion",
    ),
    (
        "GET",
        "/packages/{packageName}/versions/{versionName}/sbom-validation-results",
        "ListSbomValidationResults",
    ),
    ("GET", "/policies", "ListPolicies"),
    ("DELETE", "/policies/{policyName}", "DeletePolicy"),
    ("GET", "/policies/{policyName}", "GetPolicy"),
    ("POST", "/policies/{policyName}", "CreatePolicy"),
    (
        "GET",
        "/policies/{policyName}/version",
        "ListPolicyVersions",
    ),
    (
        "POST",
        "/policies/{policyName}/version",
        "CreatePolicyVersion",
    ),
    (
        "DELETE",
        "/policies/{policyName}/version/{policyVersionId}",
        "DeletePolicyVersion",
    ),
    (
        "GET",
        "/policies/{policyName}/version/{policyVersionId}",
        "GetPolicyVersion",
    ),
    (
        "PATCH",
        "/policies/{policyName}/version/{policyVersionId}",
        "SetDefaultPolicyVersion",
    ),
    ("GET", "/policy-principals", "ListPolicyPrincipals"),
    (
        "POST",
        "/policy-targets/{policyName}",
        "ListTargetsForPolicy",
    ),
    ("GET", "/principal-policies", "ListPrincipalPolicies"),
    (
        "DELETE",
        "/principal-policies/{policyName}",
        "DetachPrincipalPolicy",
    ),
    (
        "PUT",
        "/principal-policies/{policyName}",
        "AttachPrincipalPolicy",
    ),
    ("GET", "/principals/things", "ListPrincipalThings"),
    ("GET", "/principals/things-v2", "ListPrincipalThingsV2"),
    (
        "GET",
        "/provisioning-templates",
        "ListProvisioningTemplates",
    ),
    (
        "POST",
        "/provisioning-templates",
        "CreateProvisioningTemplate",
    ),
    (
        "DELETE",
        "/provisioning-templates/{templateName}",
        "DeleteProvisioningTemplate",
    ),
    (
        "GET",
        "/provisioning-templates/{templateName}",
        "DescribeProvisioningTemplate",
    ),
    (
        "PATCH",
        "/provisioning-templates/{templateName}",
        "UpdateProvisioningTemplate",
    ),
    (
        "POST",
        "/provisioning-templates/{templateName}/provisioning-claim",
        "CreateProvisioningClaim",
    ),
    (
        "GET",
        "/provisioning-templates/{templateName}/versions",
        "ListProvisioningTemplateVersions",
    ),
    (
        "POST",
        "/provisioning-templates/{templateName}/versions",
        "CreateProvisioningTemplateVersion",
    ),
    (
        "DELETE",
        "/provisioning-templates/{templateName}/versions/{versionId}",
        "DeleteProvisioningTemplateVersion",
    ),
    (
        "GET",
        "/provisioning-templates/{templateName}/versions/{versionId}",
        "DescribeProvisioningTemplateVersion",
    ),
    ("DELETE", "/registrationcode", "DeleteRegistrationCode"),
    ("GET", "/registrationcode", "GetRegistrationCode"),
    (
        "PATCH",
        "/reject-certificate-transfer/{certificateId}",
        "RejectCertificateTransfer",
    ),
    ("GET", "/role-aliases", "ListRoleAliases"),
    ("DELETE", "/role-aliases/{roleAlias}", "DeleteRoleAlias"),
    ("GET", "/role-aliases/{roleAlias}", "DescribeRoleAlias"),
    ("POST", "/role-aliases/{roleAlias}", "CreateRoleAlias"),
    ("PUT", "/role-aliases/{roleAlias}", "UpdateRoleAlias"),
    ("GET", "/rules", "ListTopicRules"),
    ("DELETE", "/rules/{ruleName}", "DeleteTopicRule"),
    ("GET", "/rules/{ruleName}", "GetTopicRule"),
    ("PATCH", "/rules/{ruleName}", "ReplaceTopicRule"),
    ("POST", "/rules/{ruleName}", "CreateTopicRule"),
    ("POST", "/rules/{ruleName}/disable", "DisableTopicRule"),
    ("POST", "/rules/{ruleName}/enable", "EnableTopicRule"),
    (
        "POST",
        "/security-profile-behaviors/validate",
        "ValidateSecurityProfileBehaviors",
    ),
    ("GET", "/security-profiles", "ListSecurityProfiles"),
    (
        "GET",
        "/security-profiles-for-target",
        "ListSecurityProfilesForTarget",
    ),
    (
        "DELETE",
        "/security-profiles/{securityProfileName}",
        "DeleteSecurityProfile",
    ),
    (
        "GET",
        "/security-profiles/{securityProfileName}",
        "DescribeSecurityProfile",
    ),
    (
        "PATCH",
        "/security-profiles/{securityProfileName}",
        "UpdateSecurityProfile",
    ),
    (
        "POST",
        "/security-profiles/{securityProfileName}",
        "CreateSecurityProfile",
    ),
    (
        "DELETE",
        "/security-profiles/{securityProfileName}/targets",
        "DetachSecurityProfile",
    ),
    (
        "GET",
        "/security-profiles/{securityProfileName}/targets",
        "ListTargetsForSecurityProfile",
    ),
    (
        "PUT",
        "/security-profiles/{securityProfileName}/targets",
        "AttachSecurityProfile",
    ),
    ("GET", "/streams", "ListStreams"),
    ("DELETE", "/streams/{streamId}", "DeleteStream"),
    ("GET", "/streams/{streamId}", "DescribeStream"),
    ("POST", "/streams/{streamId}", "CreateStream"),
    ("PUT", "/streams/{streamId}", "UpdateStream"),
    ("GET", "/tags", "ListTagsForResource"),
    ("POST", "/tags", "TagResource"),
    ("POST", "/target-policies/{policyName}", "DetachPolicy"),
    ("PUT", "/target-policies/{policyName}", "AttachPolicy"),
    ("POST", "/test-authorization", "TestAuthorization"),
    ("GET", "/thing-groups", "ListThingGroups"),
    (
        "PUT",
        "/thing-groups/addThingToThingGroup",
        "AddThingToThingGroup",
    ),
    (
        "PUT",
        "/thing-groups/removeThingFromThingGroup",
        "RemoveThingFromThingGroup",
    ),
    (
        "PUT",
        "/thing-groups/updateThingGroupsForThing",
        "UpdateThingGroupsForThing",
    ),
    (
        "DELETE",
        "/thing-groups/{thingGroupName}",
        "DeleteThingGroup",
    ),
    (
        "GET",
        "/thing-groups/{thingGroupName}",
        "DescribeThingGroup",
    ),
    (
        "PATCH",
        "/thing-groups/{thingGroupName}",
        "UpdateThingGroup",
    ),
    ("POST", "/thing-groups/{thingGroupName}", "CreateThingGroup"),
    (
        "GET",
        "/thing-groups/{thingGroupName}/things",
        "ListThingsInThingGroup",
    ),
    (
        "GET",
        "/thing-registration-tasks",
        "ListThingRegistrationTasks",
    ),
    (
        "POST",
        "/thing-registration-tasks",
        "StartThingRegistrationTask",
    ),
    (
        "GET",
        "/thing-registration-tasks/{taskId}",
        "DescribeThingRegistrationTask",
    ),
    (
        "PUT",
        "/thing-registration-tasks/{taskId}/cancel",
        "StopThingRegistrationTask",
    ),
    (
        "GET",
        "/thing-registration-tasks/{taskId}/reports",
        "ListThingRegistrationTaskReports",
    ),
    ("GET", "/thing-types", "ListThingTypes"),
    ("DELETE", "/thing-types/{thingTypeName}", "DeleteThingType"),
    ("GET", "/thing-types/{thingTypeName}", "DescribeThingType"),
    ("PATCH", "/thing-types/{thingTypeName}", "UpdateThingType"),
    ("POST", "/thing-types/{thingTypeName}", "CreateThingType"),
    (
        "POST",
        "/thing-types/{thingTypeName}/deprecate",
        "DeprecateThingType",
    ),
    ("GET", "/things", "ListThings"),
    ("POST", "/things", "RegisterThing"),
    ("DELETE", "/things/{thingName}", "DeleteThing"),
    ("GET", "/things/{thingName}", "DescribeThing"),
    ("PATCH", "/things/{thingName}", "UpdateThing"),
    ("POST", "/things/{thingName}", "CreateThing"),
    (
        "POST",
        "/things/{thingName}/connectivity-data",
        "GetThingConnectivityData",
    ),
    (
        "GET",
        "/things/{thingName}/jobs",
        "ListJobExecutionsForThing",
    ),
    (
        "GET",
        "/things/{thingName}/jobs/{jobId}",
        "DescribeJobExecution",
    ),
    (
        "PUT",
        "/things/{thingName}/jobs/{jobId}/cancel",
        "CancelJobExecution",
    ),
    (
        "DELETE",
        "/things/{thingName}/jobs/{jobId}/executionNumber/{executionNumber}",
        "DeleteJobExecution",
    ),
    (
        "DELETE",
        "/things/{thingName}/principals",
        "DetachThingPrincipal",
    ),
    (
        "GET",
        "/things/{thingName}/principals",
        "ListThingPrincipals",
    ),
    (
        "PUT",
        "/things/{thingName}/principals",
        "AttachThingPrincipal",
    ),
    (
        "GET",
        "/things/{thingName}/principals-v2",
        "ListThingPrincipalsV2",
    ),
    (
        "GET",
        "/things/{thingName}/thing-groups",
        "ListThingGroupsForThing",
    ),
    (
        "PATCH",
        "/transfer-certificate/{certificateId}",
        "TransferCertificate",
    ),
    ("POST", "/untag", "UntagResource"),
    ("DELETE", "/v2LoggingLevel", "DeleteV2LoggingLevel"),
    ("GET", "/v2LoggingLevel", "ListV2LoggingLevels"),
    ("POST", "/v2LoggingLevel", "SetV2LoggingLevel"),
    ("GET", "/v2LoggingOptions", "GetV2LoggingOptions"),
    ("POST", "/v2LoggingOptions", "SetV2LoggingOptions"),
    ("GET", "/violation-events", "ListViolationEvents"),
    (
        "POST",
        "/violations/verification-state/{violationId}",
        "PutVerificationStateOnViolation",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_operations() {
        assert_eq!(lookup("GET", "/jobs"), Some(("ListJobs", "/jobs")));
        assert_eq!(
            lookup("GET", "/jobs/my-job"),
            Some(("DescribeJob", "/jobs/{jobId}"))
        );
        assert_eq!(
            lookup("POST", "/things/x"),
            Some(("CreateThing", "/things/{thingName}"))
        );
        assert_eq!(
            lookup("GET", "/things/x"),
            Some(("DescribeThing", "/things/{thingName}"))
        );
        assert_eq!(
            lookup("PUT", "/thing-groups/addThingToThingGroup"),
            Some(("AddThingToThingGroup", "/thing-groups/addThingToThingGroup"))
        );
        assert_eq!(
            lookup("GET", "/thing-groups/addThingToThingGroup"),
            Some(("DescribeThingGroup", "/thing-groups/{thingGroupName}"))
        );
        assert_eq!(
            lookup("GET", "/principals/things"),
            Some(("ListPrincipalThings", "/principals/things"))
        );
        assert_eq!(
            lookup("DELETE", "/things/x/principals"),
            Some(("DetachThingPrincipal", "/things/{thingName}/principals"))
        );
        assert_eq!(
            lookup("PUT", "/things/x/principals"),
            Some(("AttachThingPrincipal", "/things/{thingName}/principals"))
        );
    }

    #[test]
    fn greedy_labels() {
        assert_eq!(
            lookup(
                "GET",
                "/destinations/arn:aws:iot:us-east-1:1:ruledestination/http/abc"
            ),
            Some(("GetTopicRuleDestination", "/destinations/{arn+}"))
        );
        assert_eq!(
            lookup("GET", "/confirmdestination/a/b/c"),
            Some((
                "ConfirmTopicRuleDestination",
                "/confirmdestination/{confirmationToken+}"
            ))
        );
        assert_eq!(lookup("GET", "/destinations/"), None);
        assert_eq!(
            lookup("GET", "/destinations"),
            Some(("ListTopicRuleDestinations", "/destinations"))
        );
    }

    #[test]
    fn no_operation() {
        assert_eq!(lookup("GET", "/xyz"), None);
        assert_eq!(lookup("GET", "/things/"), None);
        assert_eq!(lookup("GET", "/things/x/y/z"), None);
        assert_eq!(lookup("PUT", "/things"), None);
        assert_eq!(
            lookup("POST", "/things"),
            Some(("RegisterThing", "/things"))
        );
        assert_eq!(lookup("GET", "/"), None);
    }

    #[test]
    fn table_is_whole_and_unambiguous() {
        assert!(OPERATIONS.len() > 250);
        for (method, template, name) in OPERATIONS {
            assert!(
                template.starts_with('/') && !template.contains('?'),
                "{name}"
            );
            assert_eq!(lookup(method, template), Some((*name, *template)), "{name}");
        }
    }
}
