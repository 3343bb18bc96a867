//! CA certificates: GetRegistrationCode, RegisterCACertificate,
//! DescribeCACertificate, UpdateCACertificate, DeleteCACertificate,
//! ListCACertificates and ListCertificatesByCA, where botocore's `iot` model
//! puts them.

use axum::{
    Router,
    extract::State,
    routing::{MethodRouter, get, post},
};
use herald_proto::config::v1 as pb;
use serde::{Deserialize, Serialize};

use super::output::{ListCertificatesOutput, RegisterCertificateOutput, status_name};
use super::status_from_name;
use crate::http::extract::{Body, Path, Query, required};
use crate::http::output::{ApiResult, empty, next_page, ok, seconds};
use crate::http::{ApiError, AppState, fallback};

pub(super) fn routes() -> Router<AppState> {
    fn route(methods: MethodRouter<AppState>) -> MethodRouter<AppState> {
        methods.fallback(fallback::not_implemented)
    }
    Router::new()
        .route("/registrationcode", route(get(get_registration_code)))
        .route("/cacertificate", route(post(register_ca_certificate)))
        .route(
            "/cacertificate/{caCertificateId}",
            route(
                get(describe_ca_certificate)
                    .put(update_ca_certificate)
                    .delete(delete_ca_certificate),
            ),
        )
        .route("/cacertificates", route(get(list_ca_certificates)))
        .route(
            "/certificates-by-ca/{caCertificateId}",
            route(get(list_certificates_by_ca)),
        )
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RegistrationCodeOutput {
    registration_code: String,
}

/// GetRegistrationCode: `GET /registrationcode`.
async fn get_registration_code(State(state): State<AppState>) -> ApiResult {
    let code = state
        .config
        .clone()
        .get_registration_code(pb::GetRegistrationCodeRequest {})
        .await?
        .into_inner();
    ok(RegistrationCodeOutput {
        registration_code: code.registration_code,
    })
}

#[derive(Deserialize, Serialize, Default, Debug)]
#[serde(rename_all = "camelCase", default)]
struct RegistrationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    template_body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    template_name: Option<String>,
}

impl From<RegistrationConfig> for pb::RegistrationConfig {
    fn from(c: RegistrationConfig) -> Self {
        pb::RegistrationConfig {
            template_body: c.template_body,
            role_arn: c.role_arn,
            template_name: c.template_name,
        }
    }
}

impl From<pb::RegistrationConfig> for RegistrationConfig {
    fn from(c: pb::RegistrationConfig) -> Self {
        RegistrationConfig {
            template_body: c.template_body,
            role_arn: c.role_arn,
            template_name: c.template_name,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RegisterCaCertificate {
    ca_certificate: Option<String>,
    verification_certificate: Option<String>,
    registration_config: Option<RegistrationConfig>,
    certificate_mode: Option<String>,
    tags: Vec<super::Tag>,
}

/// RegisterCACertificate: `POST /cacertificate?setAsActive&allowAutoRegistration`.
async fn register_ca_certificate(
    State(state): State<AppState>,
    query: Query,
    Body(body): Body<RegisterCaCertificate>,
) -> ApiResult {
    let registered = state
        .config
        .clone()
        .register_ca_certificate(pb::RegisterCaCertificateRequest {
            ca_certificate: required(body.ca_certificate, "caCertificate")?,
            verification_certificate: body.verification_certificate,
            set_as_active: query.flag("setAsActive")?,
            allow_auto_registration: query.flag("allowAutoRegistration")?,
            registration_config: body.registration_config.map(Into::into),
            certificate_mode: body.certificate_mode.unwrap_or_default(),
            tags: body.tags.into_iter().map(super::Tag::into_wire).collect(),
        })
        .await?
        .into_inner();
    ok(RegisterCertificateOutput::from(registered))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DescribeCaCertificateOutput {
    certificate_description: CaCertificateDescription,
    registration_config: RegistrationConfig,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CaCertificateDescription {
    certificate_arn: String,
    certificate_id: String,
    status: Option<&'static str>,
    certificate_pem: String,
    owned_by: String,
    creation_date: f64,
    auto_registration_status: String,
    last_modified_date: f64,
    customer_version: i32,
    generation_id: String,
    validity: Validity,
    certificate_mode: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Validity {
    not_before: f64,
    not_after: f64,
}

/// DescribeCACertificate: `GET /cacertificate/{caCertificateId}`.
async fn describe_ca_certificate(
    State(state): State<AppState>,
    Path(certificate_id): Path<String>,
) -> ApiResult {
    let ca = state
        .config
        .clone()
        .describe_ca_certificate(pb::DescribeCaCertificateRequest { certificate_id })
        .await?
        .into_inner();
    ok(DescribeCaCertificateOutput {
        registration_config: ca.registration_config.unwrap_or_default().into(),
        certificate_description: CaCertificateDescription {
            certificate_arn: ca.certificate_arn,
            certificate_id: ca.certificate_id,
            status: status_name(ca.status),
            certificate_pem: ca.certificate_pem,
            owned_by: ca.owned_by,
            creation_date: seconds(ca.creation_date_ms),
            auto_registration_status: ca.auto_registration_status,
            last_modified_date: seconds(ca.last_modified_date_ms),
            customer_version: ca.customer_version,
            generation_id: ca.generation_id,
            validity: Validity {
                not_before: seconds(ca.not_before_ms),
                not_after: seconds(ca.not_after_ms),
            },
            certificate_mode: ca.certificate_mode,
        },
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct UpdateCaCertificate {
    registration_config: Option<RegistrationConfig>,
    remove_auto_registration: bool,
}

/// UpdateCACertificate: `PUT /cacertificate/{caCertificateId}?newStatus&newAutoRegistrationStatus`.
async fn update_ca_certificate(
    State(state): State<AppState>,
    Path(certificate_id): Path<String>,
    query: Query,
    Body(body): Body<UpdateCaCertificate>,
) -> ApiResult {
    let new_status = match query.string("newStatus") {
        Some(status) => match status.as_str() {
            "ACTIVE" | "INACTIVE" => Some(status_from_name(&status, "newStatus")? as i32),
            other => {
                return Err(ApiError::invalid(format!(
                    "newStatus {other:?} is not one of ACTIVE, INACTIVE"
                )));
            }
        },
        None => None,
    };
    state
        .config
        .clone()
        .update_ca_certificate(pb::UpdateCaCertificateRequest {
            certificate_id,
            new_status,
            new_auto_registration_status: query.string("newAutoRegistrationStatus"),
            registration_config: body.registration_config.map(Into::into),
            remove_auto_registration: body.remove_auto_registration,
        })
        .await?;
    empty()
}

/// DeleteCACertificate: `DELETE /cacertificate/{caCertificateId}`.
async fn delete_ca_certificate(
    State(state): State<AppState>,
    Path(certificate_id): Path<String>,
) -> ApiResult {
    state
        .config
        .clone()
        .delete_ca_certificate(pb::DeleteCaCertificateRequest { certificate_id })
        .await?;
    empty()
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ListCaCertificatesOutput {
    certificates: Vec<CaCertificateSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CaCertificateSummary {
    certificate_arn: String,
    certificate_id: String,
    status: Option<&'static str>,
    creation_date: f64,
}

/// ListCACertificates: `GET /cacertificates?pageSize&marker&isAscendingOrder&templateName`.
async fn list_ca_certificates(State(state): State<AppState>, query: Query) -> ApiResult {
    let page = query.marker_page()?;
    let listed = state
        .config
        .clone()
        .list_ca_certificates(pb::ListCaCertificatesRequest {
            marker: page.token,
            page_size: page.size,
            ascending_order: query.flag("isAscendingOrder")?,
            template_name: query.string("templateName"),
        })
        .await?
        .into_inner();
    ok(ListCaCertificatesOutput {
        certificates: listed
            .certificates
            .into_iter()
            .map(|c| CaCertificateSummary {
                certificate_arn: c.certificate_arn,
                certificate_id: c.certificate_id,
                status: status_name(c.status),
                creation_date: seconds(c.creation_date_ms),
            })
            .collect(),
        next_marker: next_page(listed.next_marker),
    })
}

/// ListCertificatesByCA: `GET /certificates-by-ca/{caCertificateId}`.
async fn list_certificates_by_ca(
    State(state): State<AppState>,
    Path(ca_certificate_id): Path<String>,
    query: Query,
) -> ApiResult {
    let page = query.marker_page()?;
    let listed = state
        .config
        .clone()
        .list_certificates_by_ca(pb::ListCertificatesByCaRequest {
            ca_certificate_id,
            marker: page.token,
            page_size: page.size,
            ascending_order: query.flag("isAscendingOrder")?,
        })
        .await?
        .into_inner();
    ok(ListCertificatesOutput::from(listed))
}
