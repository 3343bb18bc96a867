//! The registry's operations: things, thing types, thing groups, membership,
//! billing groups (`billing`), fleet indexing (`indexing`), thing principals.
//!
//! Each handler takes the operation's input where botocore's `iot` model puts
//! it (path labels, query string, `x-amzn-principal` header, JSON body), calls
//! the registry, and answers the model's output members (timestamps as epoch
//! seconds; absent optional members omitted; `nextToken` only when there is a
//! next page). A malformed input is an `InvalidRequestException`.

mod billing;
mod indexing;
mod output;

use std::collections::HashMap;

use axum::{
    Router,
    extract::{FromRequest, Request, State},
    http::HeaderMap,
    response::IntoResponse,
    routing::{MethodRouter, get, post},
};
use herald_proto::registry::v1 as pb;
use serde::Deserialize;

use self::output::{
    CreateDynamicThingGroupOutput, CreateThingGroupOutput, CreateThingOutput,
    CreateThingTypeOutput, DescribeThingGroupOutput, DescribeThingOutput,
    ListPrincipalThingsV2Output, ListTagsOutput, ListThingPrincipalsOutput,
    ListThingPrincipalsV2Output, ListThingTypesOutput, ListThingsOutput, ThingGroupsOutput,
    ThingNamesOutput, ThingTypeOutput, UpdateThingGroupOutput,
};
use super::extract::{Body, Path, Query, header, required};
use super::output::{ApiResult, empty, ok};
use super::{ApiError, AppState, fallback};

pub(crate) fn routes() -> Router<AppState> {
    // Every served path names the operation of a method it does not serve.
    fn served(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
        route.fallback(fallback::not_implemented)
    }
    Router::new()
        .merge(billing::routes())
        .merge(indexing::routes())
        .route("/things", served(get(list_things)))
        .route(
            "/things/{thingName}",
            served(
                post(create_thing)
                    .get(describe_thing)
                    .patch(update_thing)
                    .delete(delete_thing),
            ),
        )
        .route(
            "/things/{thingName}/thing-groups",
            served(get(list_thing_groups_for_thing)),
        )
        .route(
            "/things/{thingName}/principals",
            served(
                get(list_thing_principals)
                    .put(attach_thing_principal)
                    .delete(detach_thing_principal),
            ),
        )
        .route(
            "/things/{thingName}/principals-v2",
            served(get(list_thing_principals_v2)),
        )
        .route("/principals/things", served(get(list_principal_things)))
        .route(
            "/principals/things-v2",
            served(get(list_principal_things_v2)),
        )
        .route("/thing-types", served(get(list_thing_types)))
        .route(
            "/thing-types/{thingTypeName}",
            served(
                post(create_thing_type)
                    .get(describe_thing_type)
                    .patch(update_thing_type)
                    .delete(delete_thing_type),
            ),
        )
        .route(
            "/thing-types/{thingTypeName}/deprecate",
            served(post(deprecate_thing_type)),
        )
        .route("/thing-groups", served(get(list_thing_groups)))
        .route(
            "/thing-groups/{thingGroupName}",
            served(
                post(create_thing_group)
                    .get(describe_thing_group)
                    .patch(update_thing_group)
                    .delete(delete_thing_group)
                    .put(thing_group_put),
            ),
        )
        .route(
            "/dynamic-thing-groups/{thingGroupName}",
            served(
                post(create_dynamic_thing_group)
                    .patch(update_dynamic_thing_group)
                    .delete(delete_dynamic_thing_group),
            ),
        )
        .route(
            "/thing-groups/{thingGroupName}/things",
            served(get(list_things_in_thing_group)),
        )
        .route(
            "/tags",
            served(get(list_tags_for_resource).post(tag_resource)),
        )
        .route("/untag", served(post(untag_resource)))
}

// ---------------------------------------------------------------- paging

/// A listing's `nextToken` and `maxResults`, checked.
pub(super) fn page(query: &Query) -> Result<Option<pb::Page>, ApiError> {
    let paging = query.token_page()?;
    Ok(Some(pb::Page {
        next_token: paging.token,
        max_results: paging.size,
    }))
}

// ---------------------------------------------------------------- common inputs

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AttributePayload {
    attributes: HashMap<String, String>,
    merge: bool,
}

impl From<AttributePayload> for pb::AttributePayload {
    fn from(payload: AttributePayload) -> pb::AttributePayload {
        pb::AttributePayload {
            attributes: payload.attributes,
            merge: payload.merge,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct Tag {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value", default)]
    value: String,
}

pub(super) fn tags(tags: Vec<Tag>) -> Vec<pb::Tag> {
    tags.into_iter()
        .map(|tag| pb::Tag {
            key: tag.key,
            value: tag.value,
        })
        .collect()
}

// ---------------------------------------------------------------- things

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
    Body(body): Body<CreateThing>,
) -> ApiResult {
    let created = state
        .registry
        .clone()
        .create_thing(pb::CreateThingRequest {
            thing_name,
            thing_type_name: body.thing_type_name,
            attribute_payload: body.attribute_payload.map(Into::into),
            billing_group_name: body.billing_group_name,
        })
        .await?
        .into_inner();
    ok(CreateThingOutput::from(created))
}

/// DescribeThing: `GET /things/{thingName}`.
async fn describe_thing(
    State(state): State<AppState>,
    Path(thing_name): Path<String>,
) -> ApiResult {
    let thing = state
        .registry
        .clone()
        .describe_thing(pb::DescribeThingRequest { thing_name })
        .await?
        .into_inner();
    ok(DescribeThingOutput::from(thing))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct UpdateThing {
    thing_type_name: Option<String>,
    attribute_payload: Option<AttributePayload>,
    expected_version: Option<i64>,
    remove_thing_type: bool,
}

/// UpdateThing: `PATCH /things/{thingName}`.
async fn update_thing(
    State(state): State<AppState>,
    Path(thing_name): Path<String>,
    Body(body): Body<UpdateThing>,
) -> ApiResult {
    state
        .registry
        .clone()
        .update_thing(pb::UpdateThingRequest {
            thing_name,
            thing_type_name: body.thing_type_name,
            attribute_payload: body.attribute_payload.map(Into::into),
            expected_version: body.expected_version,
            remove_thing_type: body.remove_thing_type,
        })
        .await?;
    empty()
}

/// DeleteThing: `DELETE /things/{thingName}?expectedVersion=`.
async fn delete_thing(
    State(state): State<AppState>,
    Path(thing_name): Path<String>,
    query: Query,
) -> ApiResult {
    state
        .registry
        .clone()
        .delete_thing(pb::DeleteThingRequest {
            thing_name,
            expected_version: query.integer("expectedVersion")?,
        })
        .await?;
    empty()
}

/// ListThings: `GET /things`.
async fn list_things(State(state): State<AppState>, query: Query) -> ApiResult {
    let listed = state
        .registry
        .clone()
        .list_things(pb::ListThingsRequest {
            page: page(&query)?,
            attribute_name: query.string("attributeName"),
            attribute_value: query.string("attributeValue"),
            thing_type_name: query.string("thingTypeName"),
            use_prefix_attribute_value: query.flag("usePrefixAttributeValue")?,
        })
        .await?
        .into_inner();
    ok(ListThingsOutput::from(listed))
}

// ---------------------------------------------------------------- thing types

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ThingTypeProperties {
    thing_type_description: Option<String>,
    searchable_attributes: Vec<String>,
    mqtt5_configuration: Option<Mqtt5Configuration>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Mqtt5Configuration {
    propagating_attributes: Vec<PropagatingAttribute>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PropagatingAttribute {
    user_property_key: String,
    thing_attribute: Option<String>,
    connection_attribute: Option<String>,
}

impl From<ThingTypeProperties> for pb::ThingTypeProperties {
    fn from(properties: ThingTypeProperties) -> pb::ThingTypeProperties {
        pb::ThingTypeProperties {
            thing_type_description: properties.thing_type_description,
            searchable_attributes: properties.searchable_attributes,
            mqtt5_configuration: properties.mqtt5_configuration.map(|mqtt5| {
                pb::Mqtt5Configuration {
                    propagating_attributes: mqtt5
                        .propagating_attributes
                        .into_iter()
                        .map(|attribute| pb::PropagatingAttribute {
                            user_property_key: attribute.user_property_key,
                            thing_attribute: attribute.thing_attribute,
                            connection_attribute: attribute.connection_attribute,
                        })
                        .collect(),
                }
            }),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreateThingType {
    thing_type_properties: Option<ThingTypeProperties>,
    tags: Vec<Tag>,
}

/// CreateThingType: `POST /thing-types/{thingTypeName}`.
async fn create_thing_type(
    State(state): State<AppState>,
    Path(thing_type_name): Path<String>,
    Body(body): Body<CreateThingType>,
) -> ApiResult {
    let created = state
        .registry
        .clone()
        .create_thing_type(pb::CreateThingTypeRequest {
            thing_type_name,
            thing_type_properties: body.thing_type_properties.map(Into::into),
            tags: tags(body.tags),
        })
        .await?
        .into_inner();
    ok(CreateThingTypeOutput::from(created))
}

/// DescribeThingType: `GET /thing-types/{thingTypeName}`.
async fn describe_thing_type(
    State(state): State<AppState>,
    Path(thing_type_name): Path<String>,
) -> ApiResult {
    let thing_type = state
        .registry
        .clone()
        .describe_thing_type(pb::DescribeThingTypeRequest { thing_type_name })
        .await?
        .into_inner();
    ok(ThingTypeOutput::described(thing_type))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct UpdateThingType {
    thing_type_properties: Option<ThingTypeProperties>,
}

/// UpdateThingType: `PATCH /thing-types/{thingTypeName}`.
async fn update_thing_type(
    State(state): State<AppState>,
    Path(thing_type_name): Path<String>,
    Body(body): Body<UpdateThingType>,
) -> ApiResult {
    state
        .registry
        .clone()
        .update_thing_type(pb::UpdateThingTypeRequest {
            thing_type_name,
            thing_type_properties: body.thing_type_properties.map(Into::into),
        })
        .await?;
    empty()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct DeprecateThingType {
    undo_deprecate: bool,
}

/// DeprecateThingType: `POST /thing-types/{thingTypeName}/deprecate`.
async fn deprecate_thing_type(
    State(state): State<AppState>,
    Path(thing_type_name): Path<String>,
    Body(body): Body<DeprecateThingType>,
) -> ApiResult {
    state
        .registry
        .clone()
        .deprecate_thing_type(pb::DeprecateThingTypeRequest {
            thing_type_name,
            undo_deprecate: body.undo_deprecate,
        })
        .await?;
    empty()
}

/// DeleteThingType: `DELETE /thing-types/{thingTypeName}`.
async fn delete_thing_type(
    State(state): State<AppState>,
    Path(thing_type_name): Path<String>,
) -> ApiResult {
    state
        .registry
        .clone()
        .delete_thing_type(pb::DeleteThingTypeRequest { thing_type_name })
        .await?;
    empty()
}

/// ListThingTypes: `GET /thing-types`.
async fn list_thing_types(State(state): State<AppState>, query: Query) -> ApiResult {
    let listed = state
        .registry
        .clone()
        .list_thing_types(pb::ListThingTypesRequest {
            page: page(&query)?,
            thing_type_name: query.string("thingTypeName"),
        })
        .await?
        .into_inner();
    ok(ListThingTypesOutput::from(listed))
}

// ---------------------------------------------------------------- thing groups

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ThingGroupProperties {
    thing_group_description: Option<String>,
    attribute_payload: Option<AttributePayload>,
}

impl From<ThingGroupProperties> for pb::ThingGroupProperties {
    fn from(properties: ThingGroupProperties) -> pb::ThingGroupProperties {
        pb::ThingGroupProperties {
            thing_group_description: properties.thing_group_description,
            attribute_payload: properties.attribute_payload.map(Into::into),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreateThingGroup {
    parent_group_name: Option<String>,
    thing_group_properties: Option<ThingGroupProperties>,
    tags: Vec<Tag>,
}

/// CreateThingGroup: `POST /thing-groups/{thingGroupName}`.
async fn create_thing_group(
    State(state): State<AppState>,
    Path(thing_group_name): Path<String>,
    Body(body): Body<CreateThingGroup>,
) -> ApiResult {
    let created = state
        .registry
        .clone()
        .create_thing_group(pb::CreateThingGroupRequest {
            thing_group_name,
            parent_group_name: body.parent_group_name,
            thing_group_properties: body.thing_group_properties.map(Into::into),
            tags: tags(body.tags),
        })
        .await?
        .into_inner();
    ok(CreateThingGroupOutput::from(created))
}

/// DescribeThingGroup: `GET /thing-groups/{thingGroupName}`.
async fn describe_thing_group(
    State(state): State<AppState>,
    Path(thing_group_name): Path<String>,
) -> ApiResult {
    let group = state
        .registry
        .clone()
        .describe_thing_group(pb::DescribeThingGroupRequest { thing_group_name })
        .await?
        .into_inner();
    ok(DescribeThingGroupOutput::from(group))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct UpdateThingGroup {
    thing_group_properties: Option<ThingGroupProperties>,
    expected_version: Option<i64>,
}

/// UpdateThingGroup: `PATCH /thing-groups/{thingGroupName}`.
async fn update_thing_group(
    State(state): State<AppState>,
    Path(thing_group_name): Path<String>,
    Body(body): Body<UpdateThingGroup>,
) -> ApiResult {
    let properties = required(body.thing_group_properties, "thingGroupProperties")?;
    let updated = state
        .registry
        .clone()
        .update_thing_group(pb::UpdateThingGroupRequest {
            thing_group_name,
            thing_group_properties: Some(properties.into()),
            expected_version: body.expected_version,
        })
        .await?
        .into_inner();
    ok(UpdateThingGroupOutput::from(updated))
}

/// DeleteThingGroup: `DELETE /thing-groups/{thingGroupName}?expectedVersion=`.
async fn delete_thing_group(
    State(state): State<AppState>,
    Path(thing_group_name): Path<String>,
    query: Query,
) -> ApiResult {
    delete_group(state, thing_group_name, &query, false).await
}

/// DeleteThingGroup, or DeleteDynamicThingGroup when `dynamic`.
async fn delete_group(
    state: AppState,
    thing_group_name: String,
    query: &Query,
    dynamic: bool,
) -> ApiResult {
    let request = pb::DeleteThingGroupRequest {
        thing_group_name,
        expected_version: query.integer("expectedVersion")?,
    };
    let mut registry = state.registry.clone();
    if dynamic {
        registry.delete_dynamic_thing_group(request).await?;
    } else {
        registry.delete_thing_group(request).await?;
    }
    empty()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct DynamicThingGroup {
    thing_group_properties: Option<ThingGroupProperties>,
    index_name: Option<String>,
    query_string: Option<String>,
    query_version: Option<String>,
    tags: Vec<Tag>,
    expected_version: Option<i64>,
}

/// CreateDynamicThingGroup: `POST /dynamic-thing-groups/{thingGroupName}`.
async fn create_dynamic_thing_group(
    State(state): State<AppState>,
    Path(thing_group_name): Path<String>,
    Body(body): Body<DynamicThingGroup>,
) -> ApiResult {
    let created = state
        .registry
        .clone()
        .create_dynamic_thing_group(pb::CreateDynamicThingGroupRequest {
            thing_group_name,
            thing_group_properties: body.thing_group_properties.map(Into::into),
            index_name: body.index_name,
            query_string: required(body.query_string, "queryString")?,
            query_version: body.query_version,
            tags: tags(body.tags),
        })
        .await?
        .into_inner();
    ok(CreateDynamicThingGroupOutput::from(created))
}

/// UpdateDynamicThingGroup: `PATCH /dynamic-thing-groups/{thingGroupName}`.
async fn update_dynamic_thing_group(
    State(state): State<AppState>,
    Path(thing_group_name): Path<String>,
    Body(body): Body<DynamicThingGroup>,
) -> ApiResult {
    let properties = required(body.thing_group_properties, "thingGroupProperties")?;
    let updated = state
        .registry
        .clone()
        .update_dynamic_thing_group(pb::UpdateDynamicThingGroupRequest {
            thing_group_name,
            thing_group_properties: Some(properties.into()),
            expected_version: body.expected_version,
            index_name: body.index_name,
            query_string: body.query_string,
            query_version: body.query_version,
        })
        .await?
        .into_inner();
    ok(UpdateThingGroupOutput::from(updated))
}

/// DeleteDynamicThingGroup: `DELETE /dynamic-thing-groups/{thingGroupName}?expectedVersion=`.
async fn delete_dynamic_thing_group(
    State(state): State<AppState>,
    Path(thing_group_name): Path<String>,
    query: Query,
) -> ApiResult {
    delete_group(state, thing_group_name, &query, true).await
}

/// ListThingGroups: `GET /thing-groups`.
async fn list_thing_groups(State(state): State<AppState>, query: Query) -> ApiResult {
    let listed = state
        .registry
        .clone()
        .list_thing_groups(pb::ListThingGroupsRequest {
            page: page(&query)?,
            parent_group: query.string("parentGroup"),
            name_prefix_filter: query.string("namePrefixFilter"),
            // AWS IoT lists descendants at every depth unless told otherwise.
            recursive: query.optional_flag("recursive")?.unwrap_or(true),
        })
        .await?
        .into_inner();
    ok(ThingGroupsOutput::new(
        listed.thing_groups,
        listed.next_token,
    ))
}

// ---------------------------------------------------------------- membership

/// `PUT /thing-groups/{segment}`: the model's three membership operations
/// live at fixed paths under `/thing-groups/`, the only PUTs there.
async fn thing_group_put(
    State(state): State<AppState>,
    Path(segment): Path<String>,
    request: Request,
) -> ApiResult {
    match segment.as_str() {
        "addThingToThingGroup" => {
            let Body(body) = Body::from_request(request, &state).await?;
            add_thing_to_thing_group(state, body).await
        }
        "removeThingFromThingGroup" => {
            let Body(body) = Body::from_request(request, &state).await?;
            remove_thing_from_thing_group(state, body).await
        }
        "updateThingGroupsForThing" => {
            let Body(body) = Body::from_request(request, &state).await?;
            update_thing_groups_for_thing(state, body).await
        }
        _ => Ok(fallback::not_implemented(request).await.into_response()),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Membership {
    thing_group_name: Option<String>,
    thing_group_arn: Option<String>,
    thing_name: Option<String>,
    thing_arn: Option<String>,
    override_dynamic_groups: bool,
}

/// AddThingToThingGroup: `PUT /thing-groups/addThingToThingGroup`.
async fn add_thing_to_thing_group(state: AppState, body: Membership) -> ApiResult {
    state
        .registry
        .clone()
        .add_thing_to_thing_group(pb::AddThingToThingGroupRequest {
            thing_group_name: body.thing_group_name,
            thing_group_arn: body.thing_group_arn,
            thing_name: body.thing_name,
            thing_arn: body.thing_arn,
            override_dynamic_groups: body.override_dynamic_groups,
        })
        .await?;
    empty()
}

/// RemoveThingFromThingGroup: `PUT /thing-groups/removeThingFromThingGroup`.
async fn remove_thing_from_thing_group(state: AppState, body: Membership) -> ApiResult {
    state
        .registry
        .clone()
        .remove_thing_from_thing_group(pb::RemoveThingFromThingGroupRequest {
            thing_group_name: body.thing_group_name,
            thing_group_arn: body.thing_group_arn,
            thing_name: body.thing_name,
            thing_arn: body.thing_arn,
        })
        .await?;
    empty()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct UpdateThingGroupsForThing {
    thing_name: Option<String>,
    thing_groups_to_add: Vec<String>,
    thing_groups_to_remove: Vec<String>,
    override_dynamic_groups: bool,
}

/// UpdateThingGroupsForThing: `PUT /thing-groups/updateThingGroupsForThing`.
async fn update_thing_groups_for_thing(
    state: AppState,
    body: UpdateThingGroupsForThing,
) -> ApiResult {
    let thing_name = required(body.thing_name, "thingName")?;
    state
        .registry
        .clone()
        .update_thing_groups_for_thing(pb::UpdateThingGroupsForThingRequest {
            thing_name,
            thing_groups_to_add: body.thing_groups_to_add,
            thing_groups_to_remove: body.thing_groups_to_remove,
            override_dynamic_groups: body.override_dynamic_groups,
        })
        .await?;
    empty()
}

/// ListThingsInThingGroup: `GET /thing-groups/{thingGroupName}/things`.
async fn list_things_in_thing_group(
    State(state): State<AppState>,
    Path(thing_group_name): Path<String>,
    query: Query,
) -> ApiResult {
    let listed = state
        .registry
        .clone()
        .list_things_in_thing_group(pb::ListThingsInThingGroupRequest {
            thing_group_name,
            recursive: query.flag("recursive")?,
            page: page(&query)?,
        })
        .await?
        .into_inner();
    ok(ThingNamesOutput::new(listed.things, listed.next_token))
}

/// ListThingGroupsForThing: `GET /things/{thingName}/thing-groups`.
async fn list_thing_groups_for_thing(
    State(state): State<AppState>,
    Path(thing_name): Path<String>,
    query: Query,
) -> ApiResult {
    let listed = state
        .registry
        .clone()
        .list_thing_groups_for_thing(pb::ListThingGroupsForThingRequest {
            thing_name,
            page: page(&query)?,
        })
        .await?
        .into_inner();
    ok(ThingGroupsOutput::new(
        listed.thing_groups,
        listed.next_token,
    ))
}

// ---------------------------------------------------------------- principals

/// AttachThingPrincipal: `PUT /things/{thingName}/principals?thingPrincipalType=`,
/// the principal in `x-amzn-principal`.
async fn attach_thing_principal(
    State(state): State<AppState>,
    Path(thing_name): Path<String>,
    query: Query,
    headers: HeaderMap,
) -> ApiResult {
    let principal = header(&headers, "x-amzn-principal", "principal")?;
    state
        .registry
        .clone()
        .attach_thing_principal(pb::AttachThingPrincipalRequest {
            thing_name,
            principal,
            thing_principal_type: query.string("thingPrincipalType").unwrap_or_default(),
        })
        .await?;
    empty()
}

/// DetachThingPrincipal: `DELETE /things/{thingName}/principals`, the
/// principal in `x-amzn-principal`.
async fn detach_thing_principal(
    State(state): State<AppState>,
    Path(thing_name): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let principal = header(&headers, "x-amzn-principal", "principal")?;
    state
        .registry
        .clone()
        .detach_thing_principal(pb::DetachThingPrincipalRequest {
            thing_name,
            principal,
        })
        .await?;
    empty()
}

/// One page of a thing's principals; `typed` reads the V2 operations'
/// `thingPrincipalType` filter.
async fn thing_principals(
    state: AppState,
    thing_name: String,
    query: &Query,
    typed: bool,
) -> Result<pb::ListThingPrincipalsResponse, ApiError> {
    let only = typed.then(|| query.string("thingPrincipalType")).flatten();
    Ok(state
        .registry
        .clone()
        .list_thing_principals(pb::ListThingPrincipalsRequest {
            thing_name,
            page: page(query)?,
            thing_principal_type: only.unwrap_or_default(),
        })
        .await?
        .into_inner())
}

/// One page of a principal's things (the principal in `x-amzn-principal`);
/// `typed` as for [`thing_principals`].
async fn principal_things(
    state: AppState,
    headers: &HeaderMap,
    query: &Query,
    typed: bool,
) -> Result<pb::ListPrincipalThingsResponse, ApiError> {
    let principal = header(headers, "x-amzn-principal", "principal")?;
    let only = typed.then(|| query.string("thingPrincipalType")).flatten();
    Ok(state
        .registry
        .clone()
        .list_principal_things(pb::ListPrincipalThingsRequest {
            principal,
            page: page(query)?,
            thing_principal_type: only.unwrap_or_default(),
        })
        .await?
        .into_inner())
}

/// ListThingPrincipals: `GET /things/{thingName}/principals`.
async fn list_thing_principals(
    State(state): State<AppState>,
    Path(thing_name): Path<String>,
    query: Query,
) -> ApiResult {
    let listed = thing_principals(state, thing_name, &query, false).await?;
    ok(ListThingPrincipalsOutput::from(listed))
}

/// ListThingPrincipalsV2: `GET /things/{thingName}/principals-v2`, each
/// principal with its attachment type, optionally of one type only.
async fn list_thing_principals_v2(
    State(state): State<AppState>,
    Path(thing_name): Path<String>,
    query: Query,
) -> ApiResult {
    let listed = thing_principals(state, thing_name, &query, true).await?;
    ok(ListThingPrincipalsV2Output::from(listed))
}

/// ListPrincipalThings: `GET /principals/things`.
async fn list_principal_things(
    State(state): State<AppState>,
    query: Query,
    headers: HeaderMap,
) -> ApiResult {
    let listed = principal_things(state, &headers, &query, false).await?;
    ok(ThingNamesOutput::new(listed.things, listed.next_token))
}

/// ListPrincipalThingsV2: `GET /principals/things-v2`, each thing with its
/// attachment type, optionally of one type only.
async fn list_principal_things_v2(
    State(state): State<AppState>,
    query: Query,
    headers: HeaderMap,
) -> ApiResult {
    let listed = principal_things(state, &headers, &query, true).await?;
    ok(ListPrincipalThingsV2Output::from(listed))
}

// ---------------------------------------------------------------- tags

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct TagResource {
    resource_arn: Option<String>,
    tags: Vec<Tag>,
}

/// Whether the config service keeps the tags of the resource `arn`
/// (policies and CA certificates); the registry keeps the others'.
fn tags_kept_by_config(arn: &str) -> bool {
    let resource = arn.splitn(6, ':').nth(5).unwrap_or_default();
    resource.starts_with("policy/") || resource.starts_with("cacert/")
}

/// TagResource: `POST /tags`.
async fn tag_resource(State(state): State<AppState>, Body(body): Body<TagResource>) -> ApiResult {
    let request = pb::TagResourceRequest {
        resource_arn: required(body.resource_arn, "resourceArn")?,
        tags: tags(body.tags),
    };
    if tags_kept_by_config(&request.resource_arn) {
        state.config.clone().tag_resource(request).await?;
    } else {
        state.registry.clone().tag_resource(request).await?;
    }
    empty()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct UntagResource {
    resource_arn: Option<String>,
    tag_keys: Vec<String>,
}

/// UntagResource: `POST /untag`.
async fn untag_resource(
    State(state): State<AppState>,
    Body(body): Body<UntagResource>,
) -> ApiResult {
    let request = pb::UntagResourceRequest {
        resource_arn: required(body.resource_arn, "resourceArn")?,
        tag_keys: body.tag_keys,
    };
    if tags_kept_by_config(&request.resource_arn) {
        state.config.clone().untag_resource(request).await?;
    } else {
        state.registry.clone().untag_resource(request).await?;
    }
    empty()
}

/// ListTagsForResource: `GET /tags?resourceArn=`.
async fn list_tags_for_resource(State(state): State<AppState>, query: Query) -> ApiResult {
    let paging = query.token_page()?;
    let request = pb::ListTagsForResourceRequest {
        resource_arn: required(query.string("resourceArn"), "resourceArn")?,
        next_token: paging.token,
        max_results: paging.size,
    };
    let listed = if tags_kept_by_config(&request.resource_arn) {
        state.config.clone().list_tags_for_resource(request).await?
    } else {
        state
            .registry
            .clone()
            .list_tags_for_resource(request)
            .await?
    };
    ok(ListTagsOutput::from(listed.into_inner()))
}
