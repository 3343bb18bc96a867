//! The registry operations' outputs, as botocore's `iot` model names their
//! members (AWS IoT Core API Reference: CreateThing, DescribeThing,
//! ListThings, DescribeThingType, DescribeThingGroup, ...), each built from
//! the registry's answer.

use std::collections::BTreeMap;

use herald_proto::registry::v1 as pb;
use serde::Serialize;

use crate::http::output::{next_page, seconds, sorted};

/// CreateThing's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateThingOutput {
    thing_arn: String,
    thing_id: String,
    thing_name: String,
}

impl From<pb::CreateThingResponse> for CreateThingOutput {
    fn from(created: pb::CreateThingResponse) -> Self {
        CreateThingOutput {
            thing_arn: created.thing_arn,
            thing_id: created.thing_id,
            thing_name: created.thing_name,
        }
    }
}

/// DescribeThing's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeThingOutput {
    attributes: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    billing_group_name: Option<String>,
    default_client_id: String,
    thing_arn: String,
    thing_id: String,
    thing_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    thing_type_name: Option<String>,
    version: i64,
}

impl From<pb::Thing> for DescribeThingOutput {
    fn from(thing: pb::Thing) -> Self {
        DescribeThingOutput {
            attributes: sorted(thing.attributes),
            billing_group_name: thing.billing_group_name,
            default_client_id: thing.default_client_id,
            thing_arn: thing.thing_arn,
            thing_id: thing.thing_id,
            thing_name: thing.thing_name,
            thing_type_name: thing.thing_type_name,
            version: thing.version,
        }
    }
}

/// ListThings' output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListThingsOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
    things: Vec<ThingAttribute>,
}

/// A thing as ListThings lists it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ThingAttribute {
    attributes: BTreeMap<String, String>,
    thing_arn: String,
    thing_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    thing_type_name: Option<String>,
    version: i64,
}

impl From<pb::ListThingsResponse> for ListThingsOutput {
    fn from(listed: pb::ListThingsResponse) -> Self {
        ListThingsOutput {
            next_token: next_page(listed.next_token),
            things: listed
                .things
                .into_iter()
                .map(|thing| ThingAttribute {
                    attributes: sorted(thing.attributes),
                    thing_arn: thing.thing_arn,
                    thing_name: thing.thing_name,
                    thing_type_name: thing.thing_type_name,
                    version: thing.version,
                })
                .collect(),
        }
    }
}

/// CreateThingType's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateThingTypeOutput {
    thing_type_arn: String,
    thing_type_id: String,
    thing_type_name: String,
}

impl From<pb::CreateThingTypeResponse> for CreateThingTypeOutput {
    fn from(created: pb::CreateThingTypeResponse) -> Self {
        CreateThingTypeOutput {
            thing_type_arn: created.thing_type_arn,
            thing_type_id: created.thing_type_id,
            thing_type_name: created.thing_type_name,
        }
    }
}

/// A thing type as DescribeThingType answers it, and, without
/// `thingTypeId`, as ListThingTypes lists it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ThingTypeOutput {
    thing_type_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    thing_type_id: Option<String>,
    thing_type_metadata: ThingTypeMetadata,
    thing_type_name: String,
    thing_type_properties: ThingTypeProperties,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ThingTypeMetadata {
    creation_date: f64,
    deprecated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    deprecation_date: Option<f64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ThingTypeProperties {
    #[serde(skip_serializing_if = "Option::is_none")]
    mqtt5_configuration: Option<Mqtt5Configuration>,
    searchable_attributes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thing_type_description: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Mqtt5Configuration {
    propagating_attributes: Vec<PropagatingAttribute>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PropagatingAttribute {
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_attribute: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thing_attribute: Option<String>,
    user_property_key: String,
}

impl ThingTypeOutput {
    /// DescribeThingType's output.
    pub(super) fn described(thing_type: pb::ThingType) -> Self {
        ThingTypeOutput::new(thing_type, true)
    }

    /// A ListThingTypes item.
    fn listed(thing_type: pb::ThingType) -> Self {
        ThingTypeOutput::new(thing_type, false)
    }

    fn new(thing_type: pb::ThingType, with_id: bool) -> Self {
        let properties = thing_type.thing_type_properties.unwrap_or_default();
        let metadata = thing_type.thing_type_metadata.unwrap_or_default();
        ThingTypeOutput {
            thing_type_arn: thing_type.thing_type_arn,
            thing_type_id: with_id.then_some(thing_type.thing_type_id),
            thing_type_metadata: ThingTypeMetadata {
                creation_date: seconds(metadata.creation_date_ms),
                deprecated: metadata.deprecated,
                deprecation_date: metadata.deprecation_date_ms.map(seconds),
            },
            thing_type_name: thing_type.thing_type_name,
            thing_type_properties: ThingTypeProperties {
                mqtt5_configuration: properties.mqtt5_configuration.map(|mqtt5| {
                    Mqtt5Configuration {
                        propagating_attributes: mqtt5
                            .propagating_attributes
                            .into_iter()
                            .map(|attribute| PropagatingAttribute {
                                connection_attribute: attribute.connection_attribute,
                                thing_attribute: attribute.thing_attribute,
                                user_property_key: attribute.user_property_key,
                            })
                            .collect(),
                    }
                }),
                searchable_attributes: properties.searchable_attributes,
                thing_type_description: properties.thing_type_description,
            },
        }
    }
}

/// ListThingTypes' output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListThingTypesOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
    thing_types: Vec<ThingTypeOutput>,
}

impl From<pb::ListThingTypesResponse> for ListThingTypesOutput {
    fn from(listed: pb::ListThingTypesResponse) -> Self {
        ListThingTypesOutput {
            next_token: next_page(listed.next_token),
            thing_types: listed
                .thing_types
                .into_iter()
                .map(ThingTypeOutput::listed)
                .collect(),
        }
    }
}

/// CreateThingGroup's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateThingGroupOutput {
    thing_group_arn: String,
    thing_group_id: String,
    thing_group_name: String,
}

impl From<pb::CreateThingGroupResponse> for CreateThingGroupOutput {
    fn from(created: pb::CreateThingGroupResponse) -> Self {
        CreateThingGroupOutput {
            thing_group_arn: created.thing_group_arn,
            thing_group_id: created.thing_group_id,
            thing_group_name: created.thing_group_name,
        }
    }
}

/// DescribeThingGroup's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DescribeThingGroupOutput {
    thing_group_arn: String,
    thing_group_id: String,
    thing_group_metadata: ThingGroupMetadata,
    thing_group_name: String,
    thing_group_properties: ThingGroupProperties,
    version: i64,
    /// A dynamic group's query and status.
    #[serde(skip_serializing_if = "Option::is_none")]
    index_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_string: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
}

/// CreateDynamicThingGroup's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreateDynamicThingGroupOutput {
    thing_group_name: String,
    thing_group_arn: String,
    thing_group_id: String,
    index_name: String,
    query_string: String,
    query_version: String,
}

impl From<pb::ThingGroup> for CreateDynamicThingGroupOutput {
    fn from(group: pb::ThingGroup) -> Self {
        let dynamic = group.dynamic.unwrap_or_default();
        CreateDynamicThingGroupOutput {
            thing_group_name: group.thing_group_name,
            thing_group_arn: group.thing_group_arn,
            thing_group_id: group.thing_group_id,
            index_name: dynamic.index_name,
            query_string: dynamic.query_string,
            query_version: dynamic.query_version,
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ThingGroupMetadata {
    creation_date: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_group_name: Option<String>,
    root_to_parent_thing_groups: Vec<GroupNameAndArn>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ThingGroupProperties {
    attribute_payload: AttributePayload,
    #[serde(skip_serializing_if = "Option::is_none")]
    thing_group_description: Option<String>,
}

#[derive(Debug, Serialize)]
struct AttributePayload {
    attributes: BTreeMap<String, String>,
}

impl From<pb::ThingGroup> for DescribeThingGroupOutput {
    fn from(group: pb::ThingGroup) -> Self {
        let properties = group.thing_group_properties.unwrap_or_default();
        let metadata = group.thing_group_metadata.unwrap_or_default();
        DescribeThingGroupOutput {
            thing_group_arn: group.thing_group_arn,
            thing_group_id: group.thing_group_id,
            thing_group_metadata: ThingGroupMetadata {
                creation_date: seconds(metadata.creation_date_ms),
                parent_group_name: metadata.parent_group_name,
                root_to_parent_thing_groups: metadata
                    .root_to_parent_thing_groups
                    .into_iter()
                    .map(GroupNameAndArn::from)
                    .collect(),
            },
            thing_group_name: group.thing_group_name,
            thing_group_properties: ThingGroupProperties {
                attribute_payload: AttributePayload {
                    attributes: sorted(
                        properties
                            .attribute_payload
                            .map(|payload| payload.attributes)
                            .unwrap_or_default(),
                    ),
                },
                thing_group_description: properties.thing_group_description,
            },
            version: group.version,
            index_name: group.dynamic.as_ref().map(|d| d.index_name.clone()),
            query_string: group.dynamic.as_ref().map(|d| d.query_string.clone()),
            query_version: group.dynamic.as_ref().map(|d| d.query_version.clone()),
            status: group.dynamic.map(|d| d.status),
        }
    }
}

/// UpdateThingGroup's output.
#[derive(Debug, Serialize)]
pub(super) struct UpdateThingGroupOutput {
    version: i64,
}

impl From<pb::UpdateThingGroupResponse> for UpdateThingGroupOutput {
    fn from(updated: pb::UpdateThingGroupResponse) -> Self {
        UpdateThingGroupOutput {
            version: updated.version,
        }
    }
}

/// A thing group as listings name it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GroupNameAndArn {
    group_arn: String,
    group_name: String,
}

impl From<pb::GroupNameAndArn> for GroupNameAndArn {
    fn from(group: pb::GroupNameAndArn) -> Self {
        GroupNameAndArn {
            group_arn: group.group_arn,
            group_name: group.group_name,
        }
    }
}

/// The output of ListThingGroups and ListThingGroupsForThing.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ThingGroupsOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
    thing_groups: Vec<GroupNameAndArn>,
}

impl ThingGroupsOutput {
    pub(super) fn new(groups: Vec<pb::GroupNameAndArn>, next_token: String) -> Self {
        ThingGroupsOutput {
            next_token: next_page(next_token),
            thing_groups: groups.into_iter().map(GroupNameAndArn::from).collect(),
        }
    }
}

/// The output of ListThingsInThingGroup and ListPrincipalThings: thing names.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ThingNamesOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
    things: Vec<String>,
}

impl ThingNamesOutput {
    pub(super) fn new(things: Vec<String>, next_token: String) -> Self {
        ThingNamesOutput {
            next_token: next_page(next_token),
            things,
        }
    }
}

/// ListTagsForResource's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListTagsOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
    tags: Vec<TagOutput>,
}

#[derive(Debug, Serialize)]
struct TagOutput {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value")]
    value: String,
}

impl From<pb::ListTagsForResourceResponse> for ListTagsOutput {
    fn from(listed: pb::ListTagsForResourceResponse) -> Self {
        ListTagsOutput {
            next_token: next_page(listed.next_token),
            tags: listed
                .tags
                .into_iter()
                .map(|t| TagOutput {
                    key: t.key,
                    value: t.value,
                })
                .collect(),
        }
    }
}

/// ListThingPrincipals' output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListThingPrincipalsOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
    principals: Vec<String>,
}

impl From<pb::ListThingPrincipalsResponse> for ListThingPrincipalsOutput {
    fn from(listed: pb::ListThingPrincipalsResponse) -> Self {
        ListThingPrincipalsOutput {
            next_token: next_page(listed.next_token),
            principals: listed.principals,
        }
    }
}

/// ListThingPrincipalsV2's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListThingPrincipalsV2Output {
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
    thing_principal_objects: Vec<ThingPrincipalObject>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ThingPrincipalObject {
    principal: String,
    thing_principal_type: String,
}

impl From<pb::ListThingPrincipalsResponse> for ListThingPrincipalsV2Output {
    fn from(listed: pb::ListThingPrincipalsResponse) -> Self {
        ListThingPrincipalsV2Output {
            next_token: next_page(listed.next_token),
            thing_principal_objects: listed
                .attachments
                .into_iter()
                .map(|a| ThingPrincipalObject {
                    principal: a.name,
                    thing_principal_type: a.thing_principal_type,
                })
                .collect(),
        }
    }
}

/// ListPrincipalThingsV2's output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListPrincipalThingsV2Output {
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
    principal_thing_objects: Vec<PrincipalThingObject>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PrincipalThingObject {
    thing_name: String,
    thing_principal_type: String,
}

impl From<pb::ListPrincipalThingsResponse> for ListPrincipalThingsV2Output {
    fn from(listed: pb::ListPrincipalThingsResponse) -> Self {
        ListPrincipalThingsV2Output {
            next_token: next_page(listed.next_token),
            principal_thing_objects: listed
                .attachments
                .into_iter()
                .map(|a| PrincipalThingObject {
                    thing_name: a.name,
                    thing_principal_type: a.thing_principal_type,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn json(output: impl Serialize) -> String {
        serde_json::to_string(&output).unwrap()
    }

    #[test]
    fn a_thing_leaves_out_what_it_does_not_have_and_sorts_its_attributes() {
        let thing = pb::Thing {
            thing_name: "n".into(),
            thing_id: "i".into(),
            thing_arn: "a".into(),
            thing_type_name: Some("tt".into()),
            attributes: HashMap::from([
                ("k2".to_owned(), "v".to_owned()),
                ("k10".to_owned(), "w".to_owned()),
            ]),
            version: 7,
            default_client_id: "n".into(),
            billing_group_name: Some("bg".into()),
        };
        assert_eq!(
            json(DescribeThingOutput::from(thing.clone())),
            r#"{"attributes":{"k10":"w","k2":"v"},"billingGroupName":"bg","defaultClientId":"n","thingArn":"a","thingId":"i","thingName":"n","thingTypeName":"tt","version":7}"#
        );
        let bare = pb::Thing {
            thing_type_name: None,
            billing_group_name: None,
            attributes: HashMap::new(),
            ..thing
        };
        assert_eq!(
            json(DescribeThingOutput::from(bare)),
            r#"{"attributes":{},"defaultClientId":"n","thingArn":"a","thingId":"i","thingName":"n","version":7}"#
        );
    }

    #[test]
    fn a_listing_has_a_next_token_only_before_its_last_page() {
        let names = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(
            json(ThingNamesOutput::new(names.clone(), "h1.62".into())),
            r#"{"nextToken":"h1.62","things":["a","b"]}"#
        );
        assert_eq!(
            json(ThingNamesOutput::new(names, String::new())),
            r#"{"things":["a","b"]}"#
        );
    }

    #[test]
    fn a_thing_type_has_its_id_when_described_not_when_listed() {
        let thing_type = pb::ThingType {
            thing_type_name: "n".into(),
            thing_type_id: "i".into(),
            thing_type_arn: "a".into(),
            thing_type_properties: Some(pb::ThingTypeProperties {
                thing_type_description: Some("d".into()),
                searchable_attributes: vec!["x".into()],
                mqtt5_configuration: Some(pb::Mqtt5Configuration {
                    propagating_attributes: vec![pb::PropagatingAttribute {
                        user_property_key: "u".into(),
                        thing_attribute: None,
                        connection_attribute: Some("iot:ClientId".into()),
                    }],
                }),
            }),
            thing_type_metadata: Some(pb::ThingTypeMetadata {
                deprecated: true,
                deprecation_date_ms: Some(1_715_938_200_123),
                creation_date_ms: 1_715_938_200_000,
            }),
        };
        assert_eq!(
            json(ThingTypeOutput::described(thing_type.clone())),
            r#"{"thingTypeArn":"a","thingTypeId":"i","thingTypeMetadata":{"creationDate":1715938200.0,"deprecated":true,"deprecationDate":1715938200.123},"thingTypeName":"n","thingTypeProperties":{"mqtt5Configuration":{"propagatingAttributes":[{"connectionAttribute":"iot:ClientId","userPropertyKey":"u"}]},"searchableAttributes":["x"],"thingTypeDescription":"d"}}"#
        );
        let listed = pb::ListThingTypesResponse {
            thing_types: vec![pb::ThingType {
                thing_type_properties: None,
                thing_type_metadata: None,
                ..thing_type
            }],
            next_token: String::new(),
        };
        assert_eq!(
            json(ListThingTypesOutput::from(listed)),
            r#"{"thingTypes":[{"thingTypeArn":"a","thingTypeMetadata":{"creationDate":0.0,"deprecated":false},"thingTypeName":"n","thingTypeProperties":{"searchableAttributes":[]}}]}"#
        );
    }

    #[test]
    fn a_thing_group_always_has_its_attribute_payload() {
        let group = pb::ThingGroup {
            thing_group_name: "n".into(),
            thing_group_id: "i".into(),
            thing_group_arn: "a".into(),
            version: 3,
            thing_group_properties: None,
            thing_group_metadata: Some(pb::ThingGroupMetadata {
                parent_group_name: Some("p".into()),
                root_to_parent_thing_groups: vec![pb::GroupNameAndArn {
                    group_name: "p".into(),
                    group_arn: "pa".into(),
                }],
                creation_date_ms: 1_000_001,
            }),
            dynamic: None,
        };
        assert_eq!(
            json(DescribeThingGroupOutput::from(group.clone())),
            r#"{"thingGroupArn":"a","thingGroupId":"i","thingGroupMetadata":{"creationDate":1000.001,"parentGroupName":"p","rootToParentThingGroups":[{"groupArn":"pa","groupName":"p"}]},"thingGroupName":"n","thingGroupProperties":{"attributePayload":{"attributes":{}}},"version":3}"#
        );
        // A dynamic group adds its query and status.
        let dynamic = pb::ThingGroup {
            dynamic: Some(pb::DynamicGroupQuery {
                index_name: "AWS_Things".into(),
                query_string: "attributes.x:1".into(),
                query_version: "2017-09-30".into(),
                status: "ACTIVE".into(),
            }),
            ..group
        };
        assert!(json(DescribeThingGroupOutput::from(dynamic)).ends_with(
            r#""version":3,"indexName":"AWS_Things","queryString":"attributes.x:1","queryVersion":"2017-09-30","status":"ACTIVE"}"#
        ));
    }
}
