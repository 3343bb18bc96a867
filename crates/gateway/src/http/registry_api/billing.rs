//! Billing groups: CreateBillingGroup, DescribeBillingGroup,
//! UpdateBillingGroup, DeleteBillingGroup, ListBillingGroups,
//! AddThingToBillingGroup, RemoveThingFromBillingGroup and
//! ListThingsInBillingGroup, where botocore's `iot` model puts them.

use axum::{
    Router,
    extract::{FromRequest, Request, State},
    response::IntoResponse,
    routing::{MethodRouter, get, post},
};
use herald_proto::registry::v1 as pb;
use serde::{Deserialize, Serialize};

use super::output::{GroupNameAndArn, ThingNamesOutput};
use super::{Tag, page, tags};
use crate::http::extract::{Body, Path, Query, required};
use crate::http::output::{ApiResult, empty, next_page, ok, seconds};
use crate::http::{AppState, fallback};

pub(super) fn routes() -> Router<AppState> {
    fn served(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
        route.fallback(fallback::not_implemented)
    }
    Router::new()
        .route("/billing-groups", served(get(list_billing_groups)))
        .route(
            "/billing-groups/{billingGroupName}",
            served(
                post(create_billing_group)
                    .get(describe_billing_group)
                    .patch(update_billing_group)
                    .delete(delete_billing_group)
                    .put(billing_group_put),
            ),
        )
        .route(
            "/billing-groups/{billingGroupName}/things",
            served(get(list_things_in_billing_group)),
        )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct BillingGroupProperties {
    billing_group_description: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreateBillingGroup {
    billing_group_properties: Option<BillingGroupProperties>,
    tags: Vec<Tag>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateBillingGroupOutput {
    billing_group_name: String,
    billing_group_arn: String,
    billing_group_id: String,
}

/// CreateBillingGroup: `POST /billing-groups/{billingGroupName}`.
async fn create_billing_group(
    State(state): State<AppState>,
    Path(billing_group_name): Path<String>,
    Body(body): Body<CreateBillingGroup>,
) -> ApiResult {
    let created = state
        .registry
        .clone()
        .create_billing_group(pb::CreateBillingGroupRequest {
            billing_group_name,
            billing_group_description: body
                .billing_group_properties
                .and_then(|p| p.billing_group_description),
            tags: tags(body.tags),
        })
        .await?
        .into_inner();
    ok(CreateBillingGroupOutput {
        billing_group_name: created.billing_group_name,
        billing_group_arn: created.billing_group_arn,
        billing_group_id: created.billing_group_id,
    })
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DescribeBillingGroupOutput {
    billing_group_name: String,
    billing_group_id: String,
    billing_group_arn: String,
    version: i64,
    billing_group_properties: PropertiesOutput,
    billing_group_metadata: MetadataOutput,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PropertiesOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    billing_group_description: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MetadataOutput {
    creation_date: f64,
}

/// DescribeBillingGroup: `GET /billing-groups/{billingGroupName}`.
async fn describe_billing_group(
    State(state): State<AppState>,
    Path(billing_group_name): Path<String>,
) -> ApiResult {
    let g = state
        .registry
        .clone()
        .describe_billing_group(pb::DescribeBillingGroupRequest { billing_group_name })
        .await?
        .into_inner();
    ok(DescribeBillingGroupOutput {
        billing_group_name: g.billing_group_name,
        billing_group_id: g.billing_group_id,
        billing_group_arn: g.billing_group_arn,
        version: g.version,
        billing_group_properties: PropertiesOutput {
            billing_group_description: g.billing_group_description,
        },
        billing_group_metadata: MetadataOutput {
            creation_date: seconds(g.creation_date_ms),
        },
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct UpdateBillingGroup {
    billing_group_properties: Option<BillingGroupProperties>,
    expected_version: Option<i64>,
}

#[derive(Debug, Serialize)]
struct UpdateBillingGroupOutput {
    version: i64,
}

/// UpdateBillingGroup: `PATCH /billing-groups/{billingGroupName}`.
async fn update_billing_group(
    State(state): State<AppState>,
    Path(billing_group_name): Path<String>,
    Body(body): Body<UpdateBillingGroup>,
) -> ApiResult {
    let properties = required(body.billing_group_properties, "billingGroupProperties")?;
    let updated = state
        .registry
        .clone()
        .update_billing_group(pb::UpdateBillingGroupRequest {
            billing_group_name,
            billing_group_description: properties.billing_group_description,
            expected_version: body.expected_version,
        })
        .await?
        .into_inner();
    ok(UpdateBillingGroupOutput {
        version: updated.version,
    })
}

/// DeleteBillingGroup: `DELETE /billing-groups/{billingGroupName}?expectedVersion=`.
async fn delete_billing_group(
    State(state): State<AppState>,
    Path(billing_group_name): Path<String>,
    query: Query,
) -> ApiResult {
    state
        .registry
        .clone()
        .delete_billing_group(pb::DeleteBillingGroupRequest {
            billing_group_name,
            expected_version: query.integer("expectedVersion")?,
        })
        .await?;
    empty()
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ListBillingGroupsOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
    billing_groups: Vec<GroupNameAndArn>,
}

/// ListBillingGroups: `GET /billing-groups?namePrefixFilter=`.
async fn list_billing_groups(State(state): State<AppState>, query: Query) -> ApiResult {
    let listed = state
        .registry
        .clone()
        .list_billing_groups(pb::ListBillingGroupsRequest {
            page: page(&query)?,
            name_prefix_filter: query.string("namePrefixFilter"),
        })
        .await?
        .into_inner();
    ok(ListBillingGroupsOutput {
        next_token: next_page(listed.next_token),
        billing_groups: listed
            .billing_groups
            .into_iter()
            .map(GroupNameAndArn::from)
            .collect(),
    })
}

/// ListThingsInBillingGroup: `GET /billing-groups/{billingGroupName}/things`.
async fn list_things_in_billing_group(
    State(state): State<AppState>,
    Path(billing_group_name): Path<String>,
    query: Query,
) -> ApiResult {
    let listed = state
        .registry
        .clone()
        .list_things_in_billing_group(pb::ListThingsInBillingGroupRequest {
            billing_group_name,
            page: page(&query)?,
        })
        .await?
        .into_inner();
    ok(ThingNamesOutput::new(listed.things, listed.next_token))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Membership {
    billing_group_name: Option<String>,
    billing_group_arn: Option<String>,
    thing_name: Option<String>,
    thing_arn: Option<String>,
}

impl From<Membership> for pb::BillingGroupMembershipRequest {
    fn from(m: Membership) -> Self {
        pb::BillingGroupMembershipRequest {
            billing_group_name: m.billing_group_name,
            billing_group_arn: m.billing_group_arn,
            thing_name: m.thing_name,
            thing_arn: m.thing_arn,
        }
    }
}

/// `PUT /billing-groups/{segment}`: AddThingToBillingGroup and
/// RemoveThingFromBillingGroup live at fixed paths under `/billing-groups/`,
/// the only PUTs there.
async fn billing_group_put(
    State(state): State<AppState>,
    Path(segment): Path<String>,
    request: Request,
) -> ApiResult {
    let mut registry = state.registry.clone();
    match segment.as_str() {
        "addThingToBillingGroup" => {
            let Body(body) = Body::<Membership>::from_request(request, &state).await?;
            registry
                .add_thing_to_billing_group(pb::BillingGroupMembershipRequest::from(body))
                .await?;
            empty()
        }
        "removeThingFromBillingGroup" => {
            let Body(body) = Body::<Membership>::from_request(request, &state).await?;
            registry
                .remove_thing_from_billing_group(pb::BillingGroupMembershipRequest::from(body))
                .await?;
            empty()
        }
        _ => Ok(fallback::not_implemented(request).await.into_response()),
    }
}
