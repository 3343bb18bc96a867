//! The six registry event families: topic and payload of each (AWS IoT Core Developer Guide: "Registry events").
//!
//! Each payload is a typed struct whose fields serialize in the order of the
//! spec's example, with the nulls the AWS documentation shows (`thingTypeName`,
//! `deprecationDate`, `parentGroupName`, `parentGroupId`,
//! `dynamicGroupMappingId`) written as `null`, never left out. Attribute maps
//! are written in key order so the same event always has the same bytes.

use std::collections::{BTreeMap, HashMap};

use herald_proto::registry::v1::{self as pb, ChangeEvent, change_event::Event};
use serde::Serialize;

use super::RenderError;

/// A registry operation, checked against its family by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Created,
    Updated,
    Deleted,
    Added,
    Removed,
}

impl Op {
    /// `None` for `OPERATION_UNSPECIFIED` and unknown values.
    pub(super) fn from_proto(raw: i32) -> Option<Op> {
        match pb::Operation::try_from(raw).ok()? {
            pb::Operation::Unspecified => None,
            pb::Operation::Created => Some(Op::Created),
            pb::Operation::Updated => Some(Op::Updated),
            pb::Operation::Deleted => Some(Op::Deleted),
            pb::Operation::Added => Some(Op::Added),
            pb::Operation::Removed => Some(Op::Removed),
        }
    }

    pub(super) fn is_crud(self) -> bool {
        matches!(self, Op::Created | Op::Updated | Op::Deleted)
    }

    /// The payload's `operation` value.
    fn literal(self) -> &'static str {
        match self {
            Op::Created => "CREATED",
            Op::Updated => "UPDATED",
            Op::Deleted => "DELETED",
            Op::Added => "ADDED",
            Op::Removed => "REMOVED",
        }
    }

    /// The topic's last level.
    fn suffix(self) -> &'static str {
        match self {
            Op::Created => "created",
            Op::Updated => "updated",
            Op::Deleted => "deleted",
            Op::Added => "added",
            Op::Removed => "removed",
        }
    }
}

/// The topic and the JSON payload of `event`, whose operation `op` fits the
/// family of `body`.
pub(super) fn message(
    event: &ChangeEvent,
    op: Op,
    body: &Event,
) -> Result<(String, Vec<u8>), RenderError> {
    let seq = event.sequence;
    let h = Header {
        event_id: &event.event_id,
        timestamp: event.timestamp_ms,
        operation: op.literal(),
        account_id: &event.account_id,
    };
    let s = op.suffix();
    match body {
        Event::Thing(b) => {
            let topic = format!(
                "$aws/events/thing/{}/{s}",
                topic_level(seq, "thingName", &b.thing_name)?
            );
            Ok((topic, to_json(&thing(&h, b))))
        }
        Event::ThingType(b) => {
            let topic = format!(
                "$aws/events/thingType/{}/{s}",
                topic_level(seq, "thingTypeName", &b.thing_type_name)?
            );
            Ok((topic, to_json(&thing_type(&h, b))))
        }
        Event::ThingTypeAssociation(b) => {
            let topic = format!(
                "$aws/events/thingTypeAssociation/thing/{}/thingType/{}/{s}",
                topic_level(seq, "thingName", &b.thing_name)?,
                topic_level(seq, "thingTypeName", &b.thing_type_name)?
            );
            Ok((topic, to_json(&thing_type_association(&h, b))))
        }
        Event::ThingGroup(b) => {
            let topic = format!(
                "$aws/events/thingGroup/{}/{s}",
                topic_level(seq, "thingGroupName", &b.thing_group_name)?
            );
            Ok((topic, to_json(&thing_group(&h, b))))
        }
        Event::ThingGroupMembership(b) => {
            let topic = format!(
                "$aws/events/thingGroupMembership/thingGroup/{}/thing/{}/{s}",
                topic_level(seq, "thingGroupName", &b.thing_group_name)?,
                topic_level(seq, "thingName", &b.thing_name)?
            );
            Ok((topic, to_json(&thing_group_membership(&h, b))))
        }
        Event::ThingGroupHierarchy(b) => {
            let topic = format!(
                "$aws/events/thingGroupHierarchy/thingGroup/{}/childThingGroup/{}/{s}",
                topic_level(seq, "thingGroupName", &b.thing_group_name)?,
                topic_level(seq, "childGroupName", &b.child_group_name)?
            );
            Ok((topic, to_json(&thing_group_hierarchy(&h, b))))
        }
        // Rendered by `events::jobs`, which `render` calls for them.
        Event::Job(_) | Event::JobExecution(_) | Event::JobsNotify(_) => {
            Err(RenderError::MissingBody { sequence: seq })
        }
    }
}

/// A name substituted verbatim into the topic must stay one level: not empty,
/// and none of the MQTT separators or wildcards (or NUL, which MQTT forbids).
pub(super) fn topic_level<'a>(
    sequence: u64,
    field: &'static str,
    value: &'a str,
) -> Result<&'a str, RenderError> {
    if value.is_empty() || value.contains(['/', '+', '#', '\0']) {
        return Err(RenderError::InvalidTopicLevel {
            sequence,
            field,
            value: value.to_owned(),
        });
    }
    Ok(value)
}

fn to_json<T: Serialize>(payload: &T) -> Vec<u8> {
    // The payloads hold only strings, integers, booleans and string-keyed
    // maps, which JSON always represents.
    serde_json::to_vec(payload).expect("a registry event payload serializes to JSON")
}

/// What every family takes from the change event itself.
struct Header<'a> {
    event_id: &'a str,
    timestamp: i64,
    operation: &'static str,
    account_id: &'a str,
}

/// An optional proto string as a JSON string or `null`; an empty string counts
/// as absent.
fn nullable(value: Option<&String>) -> Option<&str> {
    value.map(String::as_str).filter(|v| !v.is_empty())
}

fn sorted(attributes: &HashMap<String, String>) -> BTreeMap<&str, &str> {
    attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// "Thing events" `THING_EVENT`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ThingPayload<'a> {
    event_type: &'static str,
    event_id: &'a str,
    timestamp: i64,
    operation: &'static str,
    account_id: &'a str,
    thing_id: &'a str,
    thing_name: &'a str,
    version_number: i64,
    thing_type_name: Option<&'a str>,
    attributes: BTreeMap<&'a str, &'a str>,
}

fn thing<'a>(h: &Header<'a>, b: &'a pb::ThingEvent) -> ThingPayload<'a> {
    ThingPayload {
        event_type: "THING_EVENT",
        event_id: h.event_id,
        timestamp: h.timestamp,
        operation: h.operation,
        account_id: h.account_id,
        thing_id: &b.thing_id,
        thing_name: &b.thing_name,
        version_number: b.version_number,
        thing_type_name: nullable(b.thing_type_name.as_ref()),
        attributes: sorted(&b.attributes),
    }
}

/// "Thing type events" `THING_TYPE_EVENT`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ThingTypePayload<'a> {
    event_type: &'static str,
    event_id: &'a str,
    timestamp: i64,
    operation: &'static str,
    account_id: &'a str,
    thing_type_id: &'a str,
    thing_type_name: &'a str,
    is_deprecated: bool,
    /// Epoch milliseconds.
    deprecation_date: Option<i64>,
    searchable_attributes: &'a [String],
    propagating_attributes: Vec<PropagatingAttribute<'a>>,
    description: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PropagatingAttribute<'a> {
    user_property_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thing_attribute: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_attribute: Option<&'a str>,
}

fn thing_type<'a>(h: &Header<'a>, b: &'a pb::ThingTypeEvent) -> ThingTypePayload<'a> {
    ThingTypePayload {
        event_type: "THING_TYPE_EVENT",
        event_id: h.event_id,
        timestamp: h.timestamp,
        operation: h.operation,
        account_id: h.account_id,
        thing_type_id: &b.thing_type_id,
        thing_type_name: &b.thing_type_name,
        is_deprecated: b.is_deprecated,
        deprecation_date: b.deprecation_date_ms,
        searchable_attributes: &b.searchable_attributes,
        propagating_attributes: b
            .propagating_attributes
            .iter()
            .map(|p| PropagatingAttribute {
                user_property_key: &p.user_property_key,
                thing_attribute: p.thing_attribute.as_deref(),
                connection_attribute: p.connection_attribute.as_deref(),
            })
            .collect(),
        description: &b.description,
    }
}

/// "Thing type associated or disassociated with a thing" `THING_TYPE_ASSOCIATION_EVENT`: no `accountId`, and the AWS documentation
/// example's own key order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ThingTypeAssociationPayload<'a> {
    event_id: &'a str,
    event_type: &'static str,
    operation: &'static str,
    thing_id: &'a str,
    thing_name: &'a str,
    thing_type_name: &'a str,
    timestamp: i64,
}

fn thing_type_association<'a>(
    h: &Header<'a>,
    b: &'a pb::ThingTypeAssociationEvent,
) -> ThingTypeAssociationPayload<'a> {
    ThingTypeAssociationPayload {
        event_id: h.event_id,
        event_type: "THING_TYPE_ASSOCIATION_EVENT",
        operation: h.operation,
        thing_id: &b.thing_id,
        thing_name: &b.thing_name,
        thing_type_name: &b.thing_type_name,
        timestamp: h.timestamp,
    }
}

/// "Thing group events" `THING_GROUP_EVENT`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ThingGroupPayload<'a> {
    event_type: &'static str,
    event_id: &'a str,
    timestamp: i64,
    operation: &'static str,
    account_id: &'a str,
    thing_group_id: &'a str,
    thing_group_name: &'a str,
    version_number: i64,
    parent_group_name: Option<&'a str>,
    parent_group_id: Option<&'a str>,
    description: &'a str,
    root_to_parent_thing_groups: Vec<GroupIdAndArn<'a>>,
    attributes: BTreeMap<&'a str, &'a str>,
    dynamic_group_mapping_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupIdAndArn<'a> {
    group_arn: &'a str,
    group_id: &'a str,
}

fn thing_group<'a>(h: &Header<'a>, b: &'a pb::ThingGroupEvent) -> ThingGroupPayload<'a> {
    ThingGroupPayload {
        event_type: "THING_GROUP_EVENT",
        event_id: h.event_id,
        timestamp: h.timestamp,
        operation: h.operation,
        account_id: h.account_id,
        thing_group_id: &b.thing_group_id,
        thing_group_name: &b.thing_group_name,
        version_number: b.version_number,
        parent_group_name: nullable(b.parent_group_name.as_ref()),
        parent_group_id: nullable(b.parent_group_id.as_ref()),
        description: &b.description,
        root_to_parent_thing_groups: b
            .root_to_parent_thing_groups
            .iter()
            .map(|g| GroupIdAndArn {
                group_arn: &g.group_arn,
                group_id: &g.group_id,
            })
            .collect(),
        attributes: sorted(&b.attributes),
        dynamic_group_mapping_id: nullable(b.dynamic_group_mapping_id.as_ref()),
    }
}

/// "Thing added to or removed from a thing group" `THING_GROUP_MEMBERSHIP_EVENT`: the names are in the topic only.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ThingGroupMembershipPayload<'a> {
    event_type: &'static str,
    event_id: &'a str,
    timestamp: i64,
    operation: &'static str,
    account_id: &'a str,
    group_arn: &'a str,
    group_id: &'a str,
    thing_arn: &'a str,
    thing_id: &'a str,
    membership_id: &'a str,
}

fn thing_group_membership<'a>(
    h: &Header<'a>,
    b: &'a pb::ThingGroupMembershipEvent,
) -> ThingGroupMembershipPayload<'a> {
    ThingGroupMembershipPayload {
        event_type: "THING_GROUP_MEMBERSHIP_EVENT",
        event_id: h.event_id,
        timestamp: h.timestamp,
        operation: h.operation,
        account_id: h.account_id,
        group_arn: &b.group_arn,
        group_id: &b.group_id,
        thing_arn: &b.thing_arn,
        thing_id: &b.thing_id,
        membership_id: &b.membership_id,
    }
}

/// "Thing group added to or deleted from a thing group" `THING_GROUP_HIERARCHY_EVENT`: `thingGroup*` is the parent.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ThingGroupHierarchyPayload<'a> {
    event_type: &'static str,
    event_id: &'a str,
    timestamp: i64,
    operation: &'static str,
    account_id: &'a str,
    thing_group_id: &'a str,
    thing_group_name: &'a str,
    child_group_id: &'a str,
    child_group_name: &'a str,
}

fn thing_group_hierarchy<'a>(
    h: &Header<'a>,
    b: &'a pb::ThingGroupHierarchyEvent,
) -> ThingGroupHierarchyPayload<'a> {
    ThingGroupHierarchyPayload {
        event_type: "THING_GROUP_HIERARCHY_EVENT",
        event_id: h.event_id,
        timestamp: h.timestamp,
        operation: h.operation,
        account_id: h.account_id,
        thing_group_id: &b.thing_group_id,
        thing_group_name: &b.thing_group_name,
        child_group_id: &b.child_group_id,
        child_group_name: &b.child_group_name,
    }
}

#[cfg(test)]
mod tests {
    use herald_proto::registry::v1::{GroupIdAndArn, Operation, PropagatingAttribute};
    use serde_json::{Value, json};

    use super::*;
    use crate::events::{EventGate, render};

    fn change(
        event_id: &str,
        account_id: &str,
        timestamp_ms: i64,
        op: Operation,
        body: Event,
    ) -> ChangeEvent {
        ChangeEvent {
            sequence: 7,
            event_id: event_id.to_owned(),
            timestamp_ms,
            account_id: account_id.to_owned(),
            region: "us-east-1".to_owned(),
            operation: op as i32,
            event: Some(body),
        }
    }

    /// Renders and parses the payload back.
    fn rendered(event: &ChangeEvent) -> (String, Value) {
        let r = render(event).unwrap();
        let payload: Value = serde_json::from_slice(&r.payload).unwrap();
        (r.topic, payload)
    }

    fn attributes(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    // ------------------------------------------------------------ "Thing events" THING

    fn spec_thing() -> Event {
        Event::Thing(pb::ThingEvent {
            thing_id: "b604f69c-aa9a-4d4a-829e-c480e958a0b5".to_owned(),
            thing_name: "MyThing".to_owned(),
            version_number: 1,
            thing_type_name: None,
            attributes: attributes(&[
                ("attribute3", "value3"),
                ("attribute1", "value1"),
                ("attribute2", "value2"),
            ]),
        })
    }

    fn spec_thing_change(op: Operation) -> ChangeEvent {
        change(
            "f5ae9b94-8b8e-4d8e-8c8f-b3266dd89853",
            "123456789012",
            1_234_567_890_123,
            op,
            spec_thing(),
        )
    }

    #[test]
    fn thing_event_matches_the_spec_example_for_each_operation() {
        for (op, literal, suffix) in [
            (Operation::Created, "CREATED", "created"),
            (Operation::Updated, "UPDATED", "updated"),
            (Operation::Deleted, "DELETED", "deleted"),
        ] {
            let (topic, payload) = rendered(&spec_thing_change(op));
            assert_eq!(topic, format!("$aws/events/thing/MyThing/{suffix}"));
            assert_eq!(
                payload,
                json!({
                    "eventType" : "THING_EVENT",
                    "eventId" : "f5ae9b94-8b8e-4d8e-8c8f-b3266dd89853",
                    "timestamp" : 1234567890123_i64,
                    "operation" : literal,
                    "accountId" : "123456789012",
                    "thingId" : "b604f69c-aa9a-4d4a-829e-c480e958a0b5",
                    "thingName" : "MyThing",
                    "versionNumber" : 1,
                    "thingTypeName" : null,
                    "attributes": {
                        "attribute3": "value3",
                        "attribute1": "value1",
                        "attribute2": "value2"
                    }
                })
            );
        }
    }

    #[test]
    fn thing_event_nulls_and_empty_attributes_are_written() {
        let body = Event::Thing(pb::ThingEvent {
            thing_id: "id".to_owned(),
            thing_name: "Bare".to_owned(),
            version_number: 4,
            thing_type_name: Some(String::new()),
            attributes: HashMap::new(),
        });
        let r = render(&change("e", "123456789012", 1, Operation::Updated, body)).unwrap();
        let text = std::str::from_utf8(&r.payload).unwrap();
        assert!(text.contains(r#""thingTypeName":null"#), "{text}");
        assert!(text.contains(r#""attributes":{}"#), "{text}");

        let typed = Event::Thing(pb::ThingEvent {
            thing_name: "Typed".to_owned(),
            thing_type_name: Some("Sensor".to_owned()),
            ..Default::default()
        });
        let (_, payload) = rendered(&change("e", "1", 1, Operation::Created, typed));
        assert_eq!(payload["thingTypeName"], "Sensor");
    }

    #[test]
    fn attributes_are_written_in_key_order() {
        let r = render(&spec_thing_change(Operation::Created)).unwrap();
        let text = std::str::from_utf8(&r.payload).unwrap();
        assert!(text.ends_with(
            r#""attributes":{"attribute1":"value1","attribute2":"value2","attribute3":"value3"}}"#
        ));
    }

    // -------------------------------------------------------- "Thing type events" THING_TYPE

    fn spec_thing_type(deprecated: Option<i64>) -> Event {
        Event::ThingType(pb::ThingTypeEvent {
            thing_type_id: "c530ae83-32aa-4592-94d3-da29879d1aac".to_owned(),
            thing_type_name: "MyThingType".to_owned(),
            is_deprecated: deprecated.is_some(),
            deprecation_date_ms: deprecated,
            searchable_attributes: vec![
                "attribute1".to_owned(),
                "attribute2".to_owned(),
                "attribute3".to_owned(),
            ],
            propagating_attributes: vec![
                PropagatingAttribute {
                    user_property_key: "key".to_owned(),
                    thing_attribute: Some("model".to_owned()),
                    connection_attribute: None,
                },
                PropagatingAttribute {
                    user_property_key: "key".to_owned(),
                    thing_attribute: None,
                    connection_attribute: Some("iot:ClientId".to_owned()),
                },
            ],
            description: "My thing type".to_owned(),
        })
    }

    #[test]
    fn thing_type_event_matches_the_spec_example_for_each_operation() {
        for (op, literal, suffix) in [
            (Operation::Created, "CREATED", "created"),
            (Operation::Updated, "UPDATED", "updated"),
            (Operation::Deleted, "DELETED", "deleted"),
        ] {
            let event = change(
                "8827376c-4b05-49a3-9b3b-733729df7ed5",
                "123456789012",
                1_234_567_890_123,
                op,
                spec_thing_type(None),
            );
            let (topic, payload) = rendered(&event);
            assert_eq!(topic, format!("$aws/events/thingType/MyThingType/{suffix}"));
            assert_eq!(
                payload,
                json!({
                  "eventType": "THING_TYPE_EVENT",
                  "eventId": "8827376c-4b05-49a3-9b3b-733729df7ed5",
                  "timestamp": 1234567890123_i64,
                  "operation": literal,
                  "accountId": "123456789012",
                  "thingTypeId": "c530ae83-32aa-4592-94d3-da29879d1aac",
                  "thingTypeName": "MyThingType",
                  "isDeprecated": false,
                  "deprecationDate": null,
                  "searchableAttributes": ["attribute1", "attribute2", "attribute3"],
                  "propagatingAttributes": [
                      {"userPropertyKey": "key", "thingAttribute": "model"},
                      {"userPropertyKey": "key", "connectionAttribute": "iot:ClientId"}
                  ],
                  "description": "My thing type"
                })
            );
        }
    }

    #[test]
    fn a_deprecated_thing_type_carries_its_deprecation_date_in_ms() {
        let event = change(
            "e",
            "123456789012",
            1_700_000_000_500,
            Operation::Updated,
            spec_thing_type(Some(1_700_000_000_123)),
        );
        let (topic, payload) = rendered(&event);
        assert_eq!(topic, "$aws/events/thingType/MyThingType/updated");
        assert_eq!(payload["isDeprecated"], true);
        assert_eq!(payload["deprecationDate"], json!(1_700_000_000_123_i64));
    }

    #[test]
    fn a_bare_thing_type_has_empty_lists_and_description() {
        let body = Event::ThingType(pb::ThingTypeEvent {
            thing_type_id: "id".to_owned(),
            thing_type_name: "Bare".to_owned(),
            ..Default::default()
        });
        let (_, payload) = rendered(&change("e", "1", 1, Operation::Created, body));
        assert_eq!(payload["deprecationDate"], Value::Null);
        assert!(payload.as_object().unwrap().contains_key("deprecationDate"));
        assert_eq!(payload["searchableAttributes"], json!([]));
        assert_eq!(payload["propagatingAttributes"], json!([]));
        assert_eq!(payload["description"], "");
    }

    #[test]
    fn a_propagating_attribute_writes_only_its_present_keys() {
        let body = Event::ThingType(pb::ThingTypeEvent {
            thing_type_name: "T".to_owned(),
            propagating_attributes: vec![
                PropagatingAttribute {
                    user_property_key: "only".to_owned(),
                    ..Default::default()
                },
                PropagatingAttribute {
                    user_property_key: "both".to_owned(),
                    thing_attribute: Some("a".to_owned()),
                    connection_attribute: Some("iot:Thing.ThingName".to_owned()),
                },
            ],
            ..Default::default()
        });
        let (_, payload) = rendered(&change("e", "1", 1, Operation::Updated, body));
        assert_eq!(
            payload["propagatingAttributes"],
            json!([
                {"userPropertyKey": "only"},
                {"userPropertyKey": "both", "thingAttribute": "a", "connectionAttribute": "iot:Thing.ThingName"}
            ])
        );
    }

    // ---------------------------------------------- "Thing type associated or disassociated with a thing" THING_TYPE_ASSOCIATION

    fn spec_association(op: Operation) -> ChangeEvent {
        change(
            "87f8e095-531c-47b3-aab5-5171364d138d",
            "123456789012",
            1_234_567_890_123,
            op,
            Event::ThingTypeAssociation(pb::ThingTypeAssociationEvent {
                thing_id: "b604f69c-aa9a-4d4a-829e-c480e958a0b5".to_owned(),
                thing_name: "myThing".to_owned(),
                thing_type_name: "MyThingType".to_owned(),
            }),
        )
    }

    #[test]
    fn thing_type_association_event_matches_the_spec_example_for_each_operation() {
        for (op, literal, suffix) in [
            (Operation::Added, "ADDED", "added"),
            (Operation::Removed, "REMOVED", "removed"),
        ] {
            let (topic, payload) = rendered(&spec_association(op));
            assert_eq!(
                topic,
                format!(
                    "$aws/events/thingTypeAssociation/thing/myThing/thingType/MyThingType/{suffix}"
                )
            );
            assert_eq!(
                payload,
                json!({
                    "eventId" : "87f8e095-531c-47b3-aab5-5171364d138d",
                    "eventType" : "THING_TYPE_ASSOCIATION_EVENT",
                    "operation" : literal,
                    "thingId" : "b604f69c-aa9a-4d4a-829e-c480e958a0b5",
                    "thingName": "myThing",
                    "thingTypeName" : "MyThingType",
                    "timestamp" : 1234567890123_i64
                })
            );
            assert!(!payload.as_object().unwrap().contains_key("accountId"));
        }
    }

    // ---------------------------------------------------- "Thing group events" THING_GROUP

    fn spec_thing_group() -> Event {
        let root = [
            ("TgTopLevel", "36aa0482-f80d-4e13-9bff-1c0a75c055f6"),
            ("Tg_level1", "bc1643e1-5a85-4eac-b45a-92509cbe2a77"),
            ("Tg_level2", "0476f3d2-9beb-48bb-ae2c-ea8bd6458158"),
            ("Tg_level3", "1d9d4ffe-a6b0-48d6-9de6-2e54d1eae78f"),
            ("Tg_level4", "5fce366a-7875-4c0e-870b-79d8d1dce119"),
        ];
        Event::ThingGroup(pb::ThingGroupEvent {
            thing_group_id: "8757eec8-bb37-4cca-a6fa-403b003d139f".to_owned(),
            thing_group_name: "Tg_level5".to_owned(),
            version_number: 3,
            parent_group_name: Some("Tg_level4".to_owned()),
            parent_group_id: Some("5fce366a-7875-4c0e-870b-79d8d1dce119".to_owned()),
            description: "New description for Tg_level5".to_owned(),
            root_to_parent_thing_groups: root
                .iter()
                .map(|(name, id)| GroupIdAndArn {
                    group_arn: format!("arn:aws:iot:us-west-2:571EXAMPLE833:thinggroup/{name}"),
                    group_id: (*id).to_owned(),
                })
                .collect(),
            attributes: attributes(&[
                ("attribute1", "value1"),
                ("attribute3", "value3"),
                ("attribute2", "value2"),
            ]),
            dynamic_group_mapping_id: None,
        })
    }

    #[test]
    fn thing_group_event_matches_the_spec_example_for_each_operation() {
        for (op, literal, suffix) in [
            (Operation::Created, "CREATED", "created"),
            (Operation::Updated, "UPDATED", "updated"),
            (Operation::Deleted, "DELETED", "deleted"),
        ] {
            let event = change(
                "8b9ea8626aeaa1e42100f3f32b975899",
                "571EXAMPLE833",
                1_603_995_417_409,
                op,
                spec_thing_group(),
            );
            let (topic, payload) = rendered(&event);
            assert_eq!(topic, format!("$aws/events/thingGroup/Tg_level5/{suffix}"));
            assert_eq!(
                payload,
                json!({
                  "eventType": "THING_GROUP_EVENT",
                  "eventId": "8b9ea8626aeaa1e42100f3f32b975899",
                  "timestamp": 1603995417409_i64,
                  "operation": literal,
                  "accountId": "571EXAMPLE833",
                  "thingGroupId": "8757eec8-bb37-4cca-a6fa-403b003d139f",
                  "thingGroupName": "Tg_level5",
                  "versionNumber": 3,
                  "parentGroupName": "Tg_level4",
                  "parentGroupId": "5fce366a-7875-4c0e-870b-79d8d1dce119",
                  "description": "New description for Tg_level5",
                  "rootToParentThingGroups": [
                    { "groupArn": "arn:aws:iot:us-west-2:571EXAMPLE833:thinggroup/TgTopLevel", "groupId": "36aa0482-f80d-4e13-9bff-1c0a75c055f6" },
                    { "groupArn": "arn:aws:iot:us-west-2:571EXAMPLE833:thinggroup/Tg_level1",  "groupId": "bc1643e1-5a85-4eac-b45a-92509cbe2a77" },
                    { "groupArn": "arn:aws:iot:us-west-2:571EXAMPLE833:thinggroup/Tg_level2",  "groupId": "0476f3d2-9beb-48bb-ae2c-ea8bd6458158" },
                    { "groupArn": "arn:aws:iot:us-west-2:571EXAMPLE833:thinggroup/Tg_level3",  "groupId": "1d9d4ffe-a6b0-48d6-9de6-2e54d1eae78f" },
                    { "groupArn": "arn:aws:iot:us-west-2:571EXAMPLE833:thinggroup/Tg_level4",  "groupId": "5fce366a-7875-4c0e-870b-79d8d1dce119" }
                  ],
                  "attributes": { "attribute1": "value1", "attribute3": "value3", "attribute2": "value2" },
                  "dynamicGroupMappingId": null
                })
            );
        }
    }

    #[test]
    fn a_root_thing_group_has_null_parents_and_no_ancestors() {
        let body = Event::ThingGroup(pb::ThingGroupEvent {
            thing_group_id: "36aa0482-f80d-4e13-9bff-1c0a75c055f6".to_owned(),
            thing_group_name: "TgTopLevel".to_owned(),
            version_number: 1,
            ..Default::default()
        });
        let r = render(&change("e", "123456789012", 5, Operation::Created, body)).unwrap();
        assert_eq!(r.topic, "$aws/events/thingGroup/TgTopLevel/created");
        let text = std::str::from_utf8(&r.payload).unwrap();
        for written in [
            r#""parentGroupName":null"#,
            r#""parentGroupId":null"#,
            r#""description":"""#,
            r#""rootToParentThingGroups":[]"#,
            r#""attributes":{}"#,
            r#""dynamicGroupMappingId":null"#,
        ] {
            assert!(text.contains(written), "{written} in {text}");
        }
    }

    #[test]
    fn a_dynamic_group_mapping_id_passes_through() {
        let body = Event::ThingGroup(pb::ThingGroupEvent {
            thing_group_name: "Dyn".to_owned(),
            dynamic_group_mapping_id: Some("mapping-1".to_owned()),
            ..Default::default()
        });
        let (_, payload) = rendered(&change("e", "1", 1, Operation::Updated, body));
        assert_eq!(payload["dynamicGroupMappingId"], "mapping-1");
    }

    // ------------------------------------------ "Thing added to or removed from a thing group" THING_GROUP_MEMBERSHIP

    fn spec_membership(op: Operation) -> ChangeEvent {
        change(
            "d684bd5f-6f6e-48e1-950c-766ac7f02fd1",
            "123456789012",
            1_234_567_890_123,
            op,
            Event::ThingGroupMembership(pb::ThingGroupMembershipEvent {
                group_arn: "arn:aws:iot:ap-northeast-2:123456789012:thinggroup/MyChildThingGroup"
                    .to_owned(),
                group_id: "06838589-373f-4312-b1f2-53f2192291c4".to_owned(),
                thing_arn: "arn:aws:iot:ap-northeast-2:123456789012:thing/MyThing".to_owned(),
                thing_id: "b604f69c-aa9a-4d4a-829e-c480e958a0b5".to_owned(),
                membership_id: "8505ebf8-4d32-4286-80e9-c23a4a16bbd8".to_owned(),
                thing_group_name: "MyChildThingGroup".to_owned(),
                thing_name: "MyThing".to_owned(),
            }),
        )
    }

    #[test]
    fn thing_group_membership_event_matches_the_spec_example_for_each_operation() {
        for (op, literal, suffix) in [
            (Operation::Added, "ADDED", "added"),
            (Operation::Removed, "REMOVED", "removed"),
        ] {
            let (topic, payload) = rendered(&spec_membership(op));
            assert_eq!(
                topic,
                format!(
                    "$aws/events/thingGroupMembership/thingGroup/MyChildThingGroup/thing/MyThing/{suffix}"
                )
            );
            assert_eq!(
                payload,
                json!({
                    "eventType" : "THING_GROUP_MEMBERSHIP_EVENT",
                    "eventId" : "d684bd5f-6f6e-48e1-950c-766ac7f02fd1",
                    "timestamp" : 1234567890123_i64,
                    "operation" : literal,
                    "accountId" : "123456789012",
                    "groupArn" : "arn:aws:iot:ap-northeast-2:123456789012:thinggroup/MyChildThingGroup",
                    "groupId" : "06838589-373f-4312-b1f2-53f2192291c4",
                    "thingArn" : "arn:aws:iot:ap-northeast-2:123456789012:thing/MyThing",
                    "thingId" : "b604f69c-aa9a-4d4a-829e-c480e958a0b5",
                    "membershipId" : "8505ebf8-4d32-4286-80e9-c23a4a16bbd8"
                })
            );
        }
    }

    // ------------------------------------------- "Thing group added to or deleted from a thing group" THING_GROUP_HIERARCHY

    fn spec_hierarchy(op: Operation) -> ChangeEvent {
        change(
            "264192c7-b573-46ef-ab7b-489fcd47da41",
            "123456789012",
            1_234_567_890_123,
            op,
            Event::ThingGroupHierarchy(pb::ThingGroupHierarchyEvent {
                thing_group_id: "8f82a106-6b1d-4331-8984-a84db5f6f8cb".to_owned(),
                thing_group_name: "MyRootThingGroup".to_owned(),
                child_group_id: "06838589-373f-4312-b1f2-53f2192291c4".to_owned(),
                child_group_name: "MyChildThingGroup".to_owned(),
            }),
        )
    }

    #[test]
    fn thing_group_hierarchy_event_matches_the_spec_example_for_each_operation() {
        for (op, literal, suffix) in [
            (Operation::Added, "ADDED", "added"),
            (Operation::Removed, "REMOVED", "removed"),
        ] {
            let (topic, payload) = rendered(&spec_hierarchy(op));
            assert_eq!(
                topic,
                format!(
                    "$aws/events/thingGroupHierarchy/thingGroup/MyRootThingGroup/childThingGroup/MyChildThingGroup/{suffix}"
                )
            );
            assert_eq!(
                payload,
                json!({
                    "eventType" : "THING_GROUP_HIERARCHY_EVENT",
                    "eventId" : "264192c7-b573-46ef-ab7b-489fcd47da41",
                    "timestamp" : 1234567890123_i64,
                    "operation" : literal,
                    "accountId" : "123456789012",
                    "thingGroupId" : "8f82a106-6b1d-4331-8984-a84db5f6f8cb",
                    "thingGroupName" : "MyRootThingGroup",
                    "childGroupId" : "06838589-373f-4312-b1f2-53f2192291c4",
                    "childGroupName" : "MyChildThingGroup"
                })
            );
        }
    }

    // ------------------------------------------------------------ all families

    /// Every family's documented top-level keys, in the order of the AWS documentation's example.
    const DOCUMENTED_KEYS: [(EventGate, &[&str]); 6] = [
        (
            EventGate::Thing,
            &[
                "eventType",
                "eventId",
                "timestamp",
                "operation",
                "accountId",
                "thingId",
                "thingName",
                "versionNumber",
                "thingTypeName",
                "attributes",
            ],
        ),
        (
            EventGate::ThingType,
            &[
                "eventType",
                "eventId",
                "timestamp",
                "operation",
                "accountId",
                "thingTypeId",
                "thingTypeName",
                "isDeprecated",
                "deprecationDate",
                "searchableAttributes",
                "propagatingAttributes",
                "description",
            ],
        ),
        (
            EventGate::ThingTypeAssociation,
            &[
                "eventId",
                "eventType",
                "operation",
                "thingId",
                "thingName",
                "thingTypeName",
                "timestamp",
            ],
        ),
        (
            EventGate::ThingGroup,
            &[
                "eventType",
                "eventId",
                "timestamp",
                "operation",
                "accountId",
                "thingGroupId",
                "thingGroupName",
                "versionNumber",
                "parentGroupName",
                "parentGroupId",
                "description",
                "rootToParentThingGroups",
                "attributes",
                "dynamicGroupMappingId",
            ],
        ),
        (
            EventGate::ThingGroupMembership,
            &[
                "eventType",
                "eventId",
                "timestamp",
                "operation",
                "accountId",
                "groupArn",
                "groupId",
                "thingArn",
                "thingId",
                "membershipId",
            ],
        ),
        (
            EventGate::ThingGroupHierarchy,
            &[
                "eventType",
                "eventId",
                "timestamp",
                "operation",
                "accountId",
                "thingGroupId",
                "thingGroupName",
                "childGroupId",
                "childGroupName",
            ],
        ),
    ];

    #[test]
    fn payloads_have_exactly_the_documented_keys_in_the_spec_order() {
        let bare = |body: Event, op| change("e", "1", 1, op, body);
        let events = [
            spec_thing_change(Operation::Created),
            bare(
                Event::Thing(pb::ThingEvent {
                    thing_name: "T".to_owned(),
                    ..Default::default()
                }),
                Operation::Deleted,
            ),
            bare(spec_thing_type(Some(9)), Operation::Updated),
            bare(
                Event::ThingType(pb::ThingTypeEvent {
                    thing_type_name: "T".to_owned(),
                    ..Default::default()
                }),
                Operation::Created,
            ),
            spec_association(Operation::Added),
            bare(spec_thing_group(), Operation::Updated),
            bare(
                Event::ThingGroup(pb::ThingGroupEvent {
                    thing_group_name: "G".to_owned(),
                    ..Default::default()
                }),
                Operation::Created,
            ),
            spec_membership(Operation::Removed),
            spec_hierarchy(Operation::Added),
        ];
        for event in &events {
            let r = render(event).unwrap();
            let (_, keys) = DOCUMENTED_KEYS
                .iter()
                .find(|(gate, _)| *gate == r.gate)
                .unwrap();
            let payload: Value = serde_json::from_slice(&r.payload).unwrap();
            let mut written: Vec<&str> = payload
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let mut documented = keys.to_vec();
            written.sort_unstable();
            documented.sort_unstable();
            assert_eq!(written, documented, "{}", r.gate.key());

            // The bytes follow the order of the AWS documentation's example.
            let text = std::str::from_utf8(&r.payload).unwrap();
            let positions: Vec<usize> = keys
                .iter()
                .map(|k| text.find(&format!("\"{k}\":")).unwrap())
                .collect();
            assert!(positions.is_sorted(), "{} order: {text}", r.gate.key());
        }
    }

    #[test]
    fn timestamps_are_integer_milliseconds() {
        for event in [
            spec_thing_change(Operation::Created),
            spec_association(Operation::Removed),
            spec_membership(Operation::Added),
        ] {
            let (_, payload) = rendered(&event);
            assert_eq!(payload["timestamp"].as_i64(), Some(1_234_567_890_123));
        }
    }

    #[test]
    fn the_deepest_topics_have_exactly_seven_slashes() {
        for event in [
            spec_association(Operation::Added),
            spec_membership(Operation::Removed),
            spec_hierarchy(Operation::Added),
        ] {
            let r = render(&event).unwrap();
            assert_eq!(r.topic.matches('/').count(), 7, "{}", r.topic);
        }
    }

    #[test]
    fn topic_levels_are_checked_in_every_family() {
        let association = Event::ThingTypeAssociation(pb::ThingTypeAssociationEvent {
            thing_name: "t".to_owned(),
            thing_type_name: "a/b".to_owned(),
            ..Default::default()
        });
        let membership = Event::ThingGroupMembership(pb::ThingGroupMembershipEvent {
            thing_group_name: "g".to_owned(),
            thing_name: "+".to_owned(),
            ..Default::default()
        });
        let hierarchy = Event::ThingGroupHierarchy(pb::ThingGroupHierarchyEvent {
            thing_group_name: "p".to_owned(),
            child_group_name: String::new(),
            ..Default::default()
        });
        for (body, field) in [
            (association, "thingTypeName"),
            (membership, "thingName"),
            (hierarchy, "childGroupName"),
        ] {
            let err = render(&change("e", "1", 1, Operation::Added, body)).unwrap_err();
            assert!(
                matches!(err, RenderError::InvalidTopicLevel { sequence: 7, field: f, .. } if f == field),
                "{err}"
            );
        }
    }
}
