//! The registry's operations: things, thing types, thing groups, membership,
//! thing principals.

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::post,
};
use herald_proto::registry::v1 as pb;
use serde::Deserialize;
use serde_json::json;

use super::{ApiResult, AppState, ok};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/things/{thingName}", post(create_thing))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AttributePayload {
    attributes: std::collections::HashMap<String, String>,
    merge: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreateThing {
    thing_type_name: Option<String>,
    attribute_payload: Option<AttributePayload>,
    billing_group_name: Option<String>,
}

/// CreateThing: `POST /things/{thingName}`.
async fn create_thing(
    State(state): State<AppState>,
    Path(thing_name): Path<String>,
    body: Option<Json<CreateThing>>,
) -> ApiResult {
    let Json(body) = body.unwrap_or_default();
    let created = state
        .registry
        .clone()
        .create_thing(pb::CreateThingRequest {
            thing_name,
            thing_type_name: body.thing_type_name,
            attribute_payload: body.attribute_payload.map(|p| pb::AttributePayload {
                attributes: p.attributes,
                merge: p.merge,
            }),
            billing_group_name: body.billing_group_name,
        })
        .await?
        .into_inner();
    ok(json!({
        "thingName": created.thing_name,
        "thingArn": created.thing_arn,
        "thingId": created.thing_id,
    }))
}
