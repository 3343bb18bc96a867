//! The config service's operations: event configurations, policies,
//! certificates, attachments, authorization.
//!
//! Each handler reads the request where botocore's `iot` model puts it (path,
//! query string, header or JSON body member), calls the config service, and
//! answers with the model's output shape. Timestamps leave as epoch seconds.

mod ca;
mod output;

use std::collections::HashMap;

use axum::{
    Router,
    extract::State,
    http::HeaderMap,
    routing::{MethodRouter, get, patch, post, put},
};
use herald_proto::config::v1 as pb;
use serde::Deserialize;

use self::output::{
    CreateCertificateFromCsrOutput, CreateKeysAndCertificateOutput, CreatePolicyOutput,
    CreatePolicyVersionOutput, DescribeCertificateOutput, DescribeEndpointOutput,
    DescribeEventConfigurationsOutput, GetEffectivePoliciesOutput, GetPolicyOutput,
    GetPolicyVersionOutput, ListCertificatesOutput, ListPolicyPrincipalsOutput,
    ListPolicyVersionsOutput, ListTargetsForPolicyOutput, PoliciesOutput,
    RegisterCertificateOutput, TestAuthorizationOutput,
};
use super::extract::{Body, Path, Query, header, required};
use super::output::{ApiResult, empty, ok};
use super::{ApiError, AppState};

pub(crate) fn routes() -> Router<AppState> {
    /// Every path answers a method it does not serve with the operations table's 4xx.
    fn route(methods: MethodRouter<AppState>) -> MethodRouter<AppState> {
        methods.fallback(super::fallback::not_implemented)
    }
    Router::new()
        .merge(ca::routes())
        .route(
            "/event-configurations",
            route(patch(update_event_configurations).get(describe_event_configurations)),
        )
        .route("/endpoint", route(get(describe_endpoint)))
        .route("/policies", route(get(list_policies)))
        .route(
            "/policies/{policyName}",
            route(post(create_policy).get(get_policy).delete(delete_policy)),
        )
        .route(
            "/policies/{policyName}/version",
            route(post(create_policy_version).get(list_policy_versions)),
        )
        .route(
            "/policies/{policyName}/version/{policyVersionId}",
            route(
                get(get_policy_version)
                    .patch(set_default_policy_version)
                    .delete(delete_policy_version),
            ),
        )
        .route(
            "/keys-and-certificate",
            route(post(create_keys_and_certificate)),
        )
        .route(
            "/certificates",
            route(post(create_certificate_from_csr).get(list_certificates)),
        )
        .route("/certificate/register", route(post(register_certificate)))
        .route(
            "/certificate/register-no-ca",
            route(post(register_certificate_without_ca)),
        )
        .route(
            "/certificates/{certificateId}",
            route(
                put(update_certificate)
                    .get(describe_certificate)
                    .delete(delete_certificate),
            ),
        )
        .route(
            "/target-policies/{policyName}",
            route(put(attach_policy).post(detach_policy)),
        )
        .route(
            "/attached-policies/{target}",
            route(post(list_attached_policies)),
        )
        .route(
            "/policy-targets/{policyName}",
            route(post(list_targets_for_policy)),
        )
        .route("/effective-policies", route(post(get_effective_policies)))
        .route("/test-authorization", route(post(test_authorization)))
        .route(
            "/principal-policies/{policyName}",
            route(put(attach_principal_policy).delete(detach_principal_policy)),
        )
        .route("/principal-policies", route(get(list_principal_policies)))
        .route("/policy-principals", route(get(list_policy_principals)))
}

// ---------------------------------------------------------------- certificate status

/// AWS's CertificateStatus name to the wire enum; an unknown name is an
/// `InvalidRequestException`.
pub(super) fn status_from_name(
    name: &str,
    member: &str,
) -> Result<pb::CertificateStatus, ApiError> {
    use pb::CertificateStatus as S;
    Ok(match name {
        "ACTIVE" => S::Active,
        "INACTIVE" => S::Inactive,
        "REVOKED" => S::Revoked,
        "PENDING_TRANSFER" => S::PendingTransfer,
        "REGISTER_INACTIVE" => S::RegisterInactive,
        "PENDING_ACTIVATION" => S::PendingActivation,
        _ => {
            return Err(ApiError::invalid(format!(
                "{member} {name:?} is not one of ACTIVE, INACTIVE, REVOKED, PENDING_TRANSFER, \
                 REGISTER_INACTIVE, PENDING_ACTIVATION"
            )));
        }
    })
}

// ---------------------------------------------------------------- event configurations

#[derive(Deserialize, Default)]
#[serde(default)]
struct Configuration {
    #[serde(rename = "Enabled")]
    enabled: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct UpdateEventConfigurations {
    event_configurations: HashMap<String, Configuration>,
}

/// UpdateEventConfigurations: `PATCH /event-configurations`.
async fn update_event_configurations(
    State(state): State<AppState>,
    Body(body): Body<UpdateEventConfigurations>,
) -> ApiResult {
    state
        .config
        .clone()
        .update_event_configurations(pb::UpdateEventConfigurationsRequest {
            enabled: body
                .event_configurations
                .into_iter()
                .map(|(k, c)| (k, c.enabled))
                .collect(),
        })
        .await?;
    empty()
}

/// DescribeEventConfigurations: `GET /event-configurations`.
async fn describe_event_configurations(State(state): State<AppState>) -> ApiResult {
    let described = state
        .config
        .clone()
        .describe_event_configurations(pb::DescribeEventConfigurationsRequest {})
        .await?
        .into_inner();
    ok(DescribeEventConfigurationsOutput::from(described))
}

// ---------------------------------------------------------------- policies

#[derive(Deserialize)]
struct Tag {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value", default)]
    value: Option<String>,
}

impl Tag {
    fn into_wire(self) -> pb::Tag {
        pb::Tag {
            key: self.key,
            value: self.value.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreatePolicy {
    policy_document: Option<String>,
    tags: Vec<Tag>,
}

/// CreatePolicy: `POST /policies/{policyName}`.
async fn create_policy(
    State(state): State<AppState>,
    Path(policy_name): Path<String>,
    Body(body): Body<CreatePolicy>,
) -> ApiResult {
    let created = state
        .config
        .clone()
        .create_policy(pb::CreatePolicyRequest {
            policy_name,
            policy_document: required(body.policy_document, "policyDocument")?,
            tags: body.tags.into_iter().map(Tag::into_wire).collect(),
        })
        .await?
        .into_inner();
    ok(CreatePolicyOutput::from(created))
}

/// GetPolicy: `GET /policies/{policyName}`.
async fn get_policy(State(state): State<AppState>, Path(policy_name): Path<String>) -> ApiResult {
    let policy = state
        .config
        .clone()
        .get_policy(pb::GetPolicyRequest { policy_name })
        .await?
        .into_inner();
    ok(GetPolicyOutput::from(policy))
}

/// ListPolicies: `GET /policies?marker&pageSize&isAscendingOrder`.
async fn list_policies(State(state): State<AppState>, query: Query) -> ApiResult {
    let page = query.marker_page()?;
    let listed = state
        .config
        .clone()
        .list_policies(pb::ListPoliciesRequest {
            marker: page.token,
            page_size: page.size,
            ascending_order: query.flag("isAscendingOrder")?,
        })
        .await?
        .into_inner();
    ok(PoliciesOutput::new(listed.policies, listed.next_marker))
}

/// DescribeEndpoint: `GET /endpoint?endpointType=...`, Herald's own
/// addresses from its settings. Without a type, AWS IoT answers the legacy
/// `iot:Data` endpoint.
async fn describe_endpoint(State(state): State<AppState>, query: Query) -> ApiResult {
    let endpoints = &state.endpoints;
    let endpoint_type = query.string("endpointType");
    let address = match endpoint_type.as_deref().unwrap_or("iot:Data") {
        "iot:Data-ATS" => &endpoints.data_ats,
        "iot:Data" => &endpoints.data,
        "iot:CredentialProvider" => &endpoints.credential_provider,
        "iot:Jobs" => &endpoints.jobs,
        other => {
            return Err(ApiError::invalid(format!(
                "Endpoint type {other} is not valid. Valid types are iot:Data, iot:Data-ATS, iot:CredentialProvider and iot:Jobs."
            )));
        }
    };
    ok(DescribeEndpointOutput {
        endpoint_address: address.clone(),
    })
}

/// DeletePolicy: `DELETE /policies/{policyName}`.
async fn delete_policy(
    State(state): State<AppState>,
    Path(policy_name): Path<String>,
) -> ApiResult {
    state
        .config
        .clone()
        .delete_policy(pb::DeletePolicyRequest { policy_name })
        .await?;
    empty()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreatePolicyVersion {
    policy_document: Option<String>,
}

/// CreatePolicyVersion: `POST /policies/{policyName}/version?setAsDefault`.
async fn create_policy_version(
    State(state): State<AppState>,
    Path(policy_name): Path<String>,
    query: Query,
    Body(body): Body<CreatePolicyVersion>,
) -> ApiResult {
    let created = state
        .config
        .clone()
        .create_policy_version(pb::CreatePolicyVersionRequest {
            policy_name,
            policy_document: required(body.policy_document, "policyDocument")?,
            set_as_default: query.flag("setAsDefault")?,
        })
        .await?
        .into_inner();
    ok(CreatePolicyVersionOutput::from(created))
}

/// GetPolicyVersion: `GET /policies/{policyName}/version/{policyVersionId}`.
async fn get_policy_version(
    State(state): State<AppState>,
    Path((policy_name, policy_version_id)): Path<(String, String)>,
) -> ApiResult {
    let version = state
        .config
        .clone()
        .get_policy_version(pb::GetPolicyVersionRequest {
            policy_name,
            policy_version_id,
        })
        .await?
        .into_inner();
    ok(GetPolicyVersionOutput::from(version))
}

/// ListPolicyVersions: `GET /policies/{policyName}/version`.
async fn list_policy_versions(
    State(state): State<AppState>,
    Path(policy_name): Path<String>,
) -> ApiResult {
    let listed = state
        .config
        .clone()
        .list_policy_versions(pb::ListPolicyVersionsRequest { policy_name })
        .await?
        .into_inner();
    ok(ListPolicyVersionsOutput::from(listed))
}

/// SetDefaultPolicyVersion: `PATCH /policies/{policyName}/version/{policyVersionId}`.
async fn set_default_policy_version(
    State(state): State<AppState>,
    Path((policy_name, policy_version_id)): Path<(String, String)>,
) -> ApiResult {
    state
        .config
        .clone()
        .set_default_policy_version(pb::SetDefaultPolicyVersionRequest {
            policy_name,
            policy_version_id,
        })
        .await?;
    empty()
}

/// DeletePolicyVersion: `DELETE /policies/{policyName}/version/{policyVersionId}`.
async fn delete_policy_version(
    State(state): State<AppState>,
    Path((policy_name, policy_version_id)): Path<(String, String)>,
) -> ApiResult {
    state
        .config
        .clone()
        .delete_policy_version(pb::DeletePolicyVersionRequest {
            policy_name,
            policy_version_id,
        })
        .await?;
    empty()
}

// ---------------------------------------------------------------- certificates

/// CreateKeysAndCertificate: `POST /keys-and-certificate?setAsActive`.
async fn create_keys_and_certificate(State(state): State<AppState>, query: Query) -> ApiResult {
    let created = state
        .config
        .clone()
        .create_keys_and_certificate(pb::CreateKeysAndCertificateRequest {
            set_as_active: query.flag("setAsActive")?,
        })
        .await?
        .into_inner();
    ok(CreateKeysAndCertificateOutput::from(created))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreateCertificateFromCsr {
    certificate_signing_request: Option<String>,
}

/// CreateCertificateFromCsr: `POST /certificates?setAsActive`.
async fn create_certificate_from_csr(
    State(state): State<AppState>,
    query: Query,
    Body(body): Body<CreateCertificateFromCsr>,
) -> ApiResult {
    let created = state
        .config
        .clone()
        .create_certificate_from_csr(pb::CreateCertificateFromCsrRequest {
            certificate_signing_request: required(
                body.certificate_signing_request,
                "certificateSigningRequest",
            )?,
            set_as_active: query.flag("setAsActive")?,
        })
        .await?
        .into_inner();
    ok(CreateCertificateFromCsrOutput::from(created))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RegisterCertificate {
    certificate_pem: Option<String>,
    ca_certificate_pem: Option<String>,
    /// The model has it in the query string; accepted here too.
    set_as_active: Option<bool>,
    status: Option<String>,
}

/// RegisterCertificate: `POST /certificate/register?setAsActive`.
async fn register_certificate(
    State(state): State<AppState>,
    query: Query,
    Body(body): Body<RegisterCertificate>,
) -> ApiResult {
    let set_as_active = if query.has("setAsActive") {
        query.flag("setAsActive")?
    } else {
        body.set_as_active.unwrap_or(false)
    };
    let status = match body.status.as_deref() {
        Some(s) => Some(status_from_name(s, "status")? as i32),
        None => None,
    };
    let registered = state
        .config
        .clone()
        .register_certificate(pb::RegisterCertificateRequest {
            certificate_pem: required(body.certificate_pem, "certificatePem")?,
            ca_certificate_pem: body.ca_certificate_pem,
            set_as_active,
            status,
        })
        .await?
        .into_inner();
    ok(RegisterCertificateOutput::from(registered))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RegisterCertificateWithoutCa {
    certificate_pem: Option<String>,
    status: Option<String>,
}

/// RegisterCertificateWithoutCA: `POST /certificate/register-no-ca`.
async fn register_certificate_without_ca(
    State(state): State<AppState>,
    Body(body): Body<RegisterCertificateWithoutCa>,
) -> ApiResult {
    let status = match body.status.as_deref() {
        Some(s) => Some(status_from_name(s, "status")? as i32),
        None => None,
    };
    let registered = state
        .config
        .clone()
        .register_certificate_without_ca(pb::RegisterCertificateWithoutCaRequest {
            certificate_pem: required(body.certificate_pem, "certificatePem")?,
            status,
        })
        .await?
        .into_inner();
    ok(RegisterCertificateOutput::from(registered))
}

/// UpdateCertificate: `PUT /certificates/{certificateId}?newStatus`.
async fn update_certificate(
    State(state): State<AppState>,
    Path(certificate_id): Path<String>,
    query: Query,
) -> ApiResult {
    let new_status = required(query.string("newStatus"), "newStatus")?;
    state
        .config
        .clone()
        .update_certificate(pb::UpdateCertificateRequest {
            certificate_id,
            new_status: status_from_name(&new_status, "newStatus")? as i32,
        })
        .await?;
    empty()
}

/// DescribeCertificate: `GET /certificates/{certificateId}`.
async fn describe_certificate(
    State(state): State<AppState>,
    Path(certificate_id): Path<String>,
) -> ApiResult {
    let c = state
        .config
        .clone()
        .describe_certificate(pb::DescribeCertificateRequest { certificate_id })
        .await?
        .into_inner();
    ok(DescribeCertificateOutput::from(c))
}

/// ListCertificates: `GET /certificates?pageSize&marker&isAscendingOrder`.
async fn list_certificates(State(state): State<AppState>, query: Query) -> ApiResult {
    let page = query.marker_page()?;
    let listed = state
        .config
        .clone()
        .list_certificates(pb::ListCertificatesRequest {
            marker: page.token,
            page_size: page.size,
            ascending_order: query.flag("isAscendingOrder")?,
        })
        .await?
        .into_inner();
    ok(ListCertificatesOutput::from(listed))
}

/// DeleteCertificate: `DELETE /certificates/{certificateId}?forceDelete`.
async fn delete_certificate(
    State(state): State<AppState>,
    Path(certificate_id): Path<String>,
    query: Query,
) -> ApiResult {
    state
        .config
        .clone()
        .delete_certificate(pb::DeleteCertificateRequest {
            certificate_id,
            force_delete: query.flag("forceDelete")?,
        })
        .await?;
    empty()
}

// ---------------------------------------------------------------- attachments

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PolicyTarget {
    target: Option<String>,
}

/// AttachPolicy: `PUT /target-policies/{policyName}`.
async fn attach_policy(
    State(state): State<AppState>,
    Path(policy_name): Path<String>,
    Body(body): Body<PolicyTarget>,
) -> ApiResult {
    attach(state, policy_name, required(body.target, "target")?).await
}

/// DetachPolicy: `POST /target-policies/{policyName}`.
async fn detach_policy(
    State(state): State<AppState>,
    Path(policy_name): Path<String>,
    Body(body): Body<PolicyTarget>,
) -> ApiResult {
    detach(state, policy_name, required(body.target, "target")?).await
}

/// AttachPrincipalPolicy (deprecated): `PUT /principal-policies/{policyName}`
/// with the principal in `x-amzn-iot-principal`; AttachPolicy to that target.
async fn attach_principal_policy(
    State(state): State<AppState>,
    Path(policy_name): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let principal = header(&headers, "x-amzn-iot-principal", "principal")?;
    attach(state, policy_name, principal).await
}

/// DetachPrincipalPolicy (deprecated): `DELETE /principal-policies/{policyName}`
/// with the principal in `x-amzn-iot-principal`; DetachPolicy from that target.
async fn detach_principal_policy(
    State(state): State<AppState>,
    Path(policy_name): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let principal = header(&headers, "x-amzn-iot-principal", "principal")?;
    detach(state, policy_name, principal).await
}

async fn attach(state: AppState, policy_name: String, target: String) -> ApiResult {
    state
        .config
        .clone()
        .attach_policy(pb::AttachPolicyRequest {
            policy_name,
            target,
        })
        .await?;
    empty()
}

async fn detach(state: AppState, policy_name: String, target: String) -> ApiResult {
    state
        .config
        .clone()
        .detach_policy(pb::DetachPolicyRequest {
            policy_name,
            target,
        })
        .await?;
    empty()
}

/// ListAttachedPolicies: `POST /attached-policies/{target}?recursive&marker&pageSize`;
/// the target ARN arrives percent-encoded in the path.
async fn list_attached_policies(
    State(state): State<AppState>,
    Path(target): Path<String>,
    query: Query,
) -> ApiResult {
    let page = query.marker_page()?;
    let listed = state
        .config
        .clone()
        .list_attached_policies(pb::ListAttachedPoliciesRequest {
            target,
            recursive: query.flag("recursive")?,
            marker: page.token,
            page_size: page.size,
        })
        .await?
        .into_inner();
    ok(PoliciesOutput::new(listed.policies, listed.next_marker))
}

/// ListPrincipalPolicies (deprecated): `GET /principal-policies` with the
/// principal in `x-amzn-iot-principal`; ListAttachedPolicies of that target.
/// `isAscendingOrder` is accepted and ignored: listings are in name order.
async fn list_principal_policies(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Query,
) -> ApiResult {
    let page = query.marker_page()?;
    let target = header(&headers, "x-amzn-iot-principal", "principal")?;
    query.flag("isAscendingOrder")?;
    let listed = state
        .config
        .clone()
        .list_attached_policies(pb::ListAttachedPoliciesRequest {
            target,
            recursive: false,
            marker: page.token,
            page_size: page.size,
        })
        .await?
        .into_inner();
    ok(PoliciesOutput::new(listed.policies, listed.next_marker))
}

/// ListTargetsForPolicy: `POST /policy-targets/{policyName}?marker&pageSize`.
async fn list_targets_for_policy(
    State(state): State<AppState>,
    Path(policy_name): Path<String>,
    query: Query,
) -> ApiResult {
    let page = query.marker_page()?;
    let listed = state
        .config
        .clone()
        .list_targets_for_policy(pb::ListTargetsForPolicyRequest {
            policy_name,
            marker: page.token,
            page_size: page.size,
        })
        .await?
        .into_inner();
    ok(ListTargetsForPolicyOutput::from(listed))
}

/// ListPolicyPrincipals (deprecated): `GET /policy-principals` with the policy
/// name in `x-amzn-iot-policy`; ListTargetsForPolicy, keeping the principals
/// (certificate ARNs), not thing groups. `isAscendingOrder` is ignored.
async fn list_policy_principals(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Query,
) -> ApiResult {
    let page = query.marker_page()?;
    let policy_name = header(&headers, "x-amzn-iot-policy", "policyName")?;
    query.flag("isAscendingOrder")?;
    let listed = state
        .config
        .clone()
        .list_targets_for_policy(pb::ListTargetsForPolicyRequest {
            policy_name,
            marker: page.token,
            page_size: page.size,
        })
        .await?
        .into_inner();
    let principals: Vec<String> = listed
        .targets
        .into_iter()
        .filter(|t| !t.contains(":thinggroup/"))
        .collect();
    ok(ListPolicyPrincipalsOutput::new(
        principals,
        listed.next_marker,
    ))
}

/// Herald knows no Cognito identities.
fn no_cognito(pool: Option<String>) -> Result<(), ApiError> {
    match pool {
        Some(_) => Err(ApiError::invalid(
            "Herald does not support Cognito identities: cognitoIdentityPoolId must be left out",
        )),
        None => Ok(()),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct GetEffectivePolicies {
    principal: Option<String>,
    cognito_identity_pool_id: Option<String>,
}

/// GetEffectivePolicies: `POST /effective-policies?thingName`.
async fn get_effective_policies(
    State(state): State<AppState>,
    query: Query,
    Body(body): Body<GetEffectivePolicies>,
) -> ApiResult {
    no_cognito(body.cognito_identity_pool_id)?;
    let effective = state
        .config
        .clone()
        .get_effective_policies(pb::GetEffectivePoliciesRequest {
            principal: body.principal,
            thing_name: query.string("thingName"),
        })
        .await?
        .into_inner();
    ok(GetEffectivePoliciesOutput::from(effective))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AuthInfo {
    action_type: Option<String>,
    resources: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct TestAuthorization {
    principal: Option<String>,
    cognito_identity_pool_id: Option<String>,
    auth_infos: Option<Vec<AuthInfo>>,
    policy_names_to_add: Vec<String>,
    policy_names_to_skip: Vec<String>,
}

/// TestAuthorization: `POST /test-authorization?clientId`.
async fn test_authorization(
    State(state): State<AppState>,
    query: Query,
    Body(body): Body<TestAuthorization>,
) -> ApiResult {
    no_cognito(body.cognito_identity_pool_id)?;
    let auth_infos = required(body.auth_infos, "authInfos")?
        .into_iter()
        .map(|info| {
            Ok(pb::AuthInfo {
                action_type: info.action_type.unwrap_or_default(),
                resources: required(info.resources, "authInfos[].resources")?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let tested = state
        .config
        .clone()
        .test_authorization(pb::TestAuthorizationRequest {
            principal: body.principal,
            client_id: query.string("clientId"),
            auth_infos,
            policy_names_to_add: body.policy_names_to_add,
            policy_names_to_skip: body.policy_names_to_skip,
        })
        .await?
        .into_inner();
    ok(TestAuthorizationOutput::from(tested))
}
