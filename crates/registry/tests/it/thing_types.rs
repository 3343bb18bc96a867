//! Thing types: create, describe, update, deprecate, delete and list.

use herald_proto::{error::ErrorType, registry::v1::*};
use herald_registry::Settings;

use crate::{
    support::{Client, TestRegistry, expect_err},
    things::{
        arn, assert_no_events_after, assert_paged, assert_recent_ms, assert_uuid, delete_req,
        describe_thing, events_after, invalid_names, last_sequence, names, page, summary,
        thing_req, thing_type_event, typed_thing_req, update_req, valid_edge_names, walk_pages,
    },
};

// ------------------------------------------------------------ helpers

pub(crate) fn type_req(name: &str) -> CreateThingTypeRequest {
    CreateThingTypeRequest {
        thing_type_name: name.into(),
        ..Default::default()
    }
}

fn props(description: Option<&str>, searchable: &[&str]) -> ThingTypeProperties {
    ThingTypeProperties {
        thing_type_description: description.map(str::to_owned),
        searchable_attributes: searchable.iter().map(|s| s.to_string()).collect(),
        mqtt5_configuration: None,
    }
}

fn propagating() -> Vec<PropagatingAttribute> {
    vec![
        PropagatingAttribute {
            user_property_key: "model".into(),
            thing_attribute: Some("model".into()),
            connection_attribute: None,
        },
        PropagatingAttribute {
            user_property_key: "client".into(),
            thing_attribute: None,
            connection_attribute: Some("iot:ClientId".into()),
        },
    ]
}

fn type_with_props_req(name: &str, properties: ThingTypeProperties) -> CreateThingTypeRequest {
    CreateThingTypeRequest {
        thing_type_properties: Some(properties),
        ..type_req(name)
    }
}

/// Creates a thing type without properties.
pub(crate) async fn create_type(client: &mut Client, name: &str) -> CreateThingTypeResponse {
    client
        .create_thing_type(type_req(name))
        .await
        .unwrap()
        .into_inner()
}

/// Deprecates a thing type (or undoes the deprecation).
pub(crate) async fn deprecate_type(client: &mut Client, name: &str, undo: bool) {
    client
        .deprecate_thing_type(DeprecateThingTypeRequest {
            thing_type_name: name.into(),
            undo_deprecate: undo,
        })
        .await
        .unwrap();
}

pub(crate) async fn describe_type(client: &mut Client, name: &str) -> ThingType {
    client
        .describe_thing_type(describe_type_req(name))
        .await
        .unwrap()
        .into_inner()
}

fn describe_type_req(name: &str) -> DescribeThingTypeRequest {
    DescribeThingTypeRequest {
        thing_type_name: name.into(),
    }
}

fn delete_type_req(name: &str) -> DeleteThingTypeRequest {
    DeleteThingTypeRequest {
        thing_type_name: name.into(),
    }
}

async fn assert_no_type(client: &mut Client, name: &str) {
    expect_err(
        client.describe_thing_type(describe_type_req(name)).await,
        ErrorType::ResourceNotFound,
    );
}

fn metadata(t: &ThingType) -> ThingTypeMetadata {
    t.thing_type_metadata.expect("a thing type has metadata")
}

fn properties(t: &ThingType) -> ThingTypeProperties {
    t.thing_type_properties.clone().unwrap_or_default()
}

async fn type_names(client: &mut Client, req: ListThingTypesRequest) -> Vec<String> {
    let resp = client.list_thing_types(req).await.unwrap().into_inner();
    assert!(resp.next_token.is_empty(), "expected a single page");
    resp.thing_types
        .into_iter()
        .map(|t| t.thing_type_name)
        .collect()
}

// ------------------------------------------------------------ CreateThingType

#[tokio::test]
async fn create_thing_type_answers_uuid_and_arn_and_describe_shows_its_properties() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;
    let given = ThingTypeProperties {
        mqtt5_configuration: Some(Mqtt5Configuration {
            propagating_attributes: propagating(),
        }),
        ..props(Some("Light bulbs"), &["model", "watts"])
    };

    let created = client
        .create_thing_type(type_with_props_req("bulb", given.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.thing_type_name, "bulb");
    assert_uuid(&created.thing_type_id);
    assert_eq!(
        created.thing_type_arn,
        "arn:aws:iot:us-east-1:123456789012:thingtype/bulb"
    );

    let described = describe_type(&mut client, "bulb").await;
    assert_eq!(described.thing_type_name, "bulb");
    assert_eq!(described.thing_type_id, created.thing_type_id);
    assert_eq!(described.thing_type_arn, created.thing_type_arn);
    assert_eq!(properties(&described), given);
    let meta = metadata(&described);
    assert!(!meta.deprecated);
    assert_eq!(meta.deprecation_date_ms, None);
    assert_recent_ms(meta.creation_date_ms);

    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING_TYPE CREATED"]);
    assert_eq!(events[0].account_id, crate::things::ACCOUNT);
    assert_eq!(
        thing_type_event(&events[0]),
        &ThingTypeEvent {
            thing_type_id: created.thing_type_id,
            thing_type_name: "bulb".into(),
            is_deprecated: false,
            deprecation_date_ms: None,
            searchable_attributes: vec!["model".into(), "watts".into()],
            propagating_attributes: propagating(),
            description: "Light bulbs".into(),
        }
    );
    registry.stop().await;
}

#[tokio::test]
async fn create_thing_type_without_properties_logs_an_empty_description() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let created = create_type(&mut client, "bare").await;
    let events = events_after(&mut client, 0).await;
    assert_eq!(summary(&events), ["THING_TYPE CREATED"]);
    let event = thing_type_event(&events[0]);
    assert_eq!(event.thing_type_id, created.thing_type_id);
    assert_eq!(event.description, "");
    assert!(event.searchable_attributes.is_empty());
    assert!(event.propagating_attributes.is_empty());
    assert!(!event.is_deprecated);
    registry.stop().await;
}

#[tokio::test]
async fn create_thing_type_again_with_same_properties_returns_same_id_without_event() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let req = type_with_props_req("bulb", props(Some("Light bulbs"), &["model"]));
    let first = client
        .create_thing_type(req.clone())
        .await
        .unwrap()
        .into_inner();
    let described = describe_type(&mut client, "bulb").await;
    let before = last_sequence(&mut client).await;

    let again = client.create_thing_type(req).await.unwrap().into_inner();
    assert_eq!(again, first);
    assert_eq!(describe_type(&mut client, "bulb").await, described);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn create_thing_type_again_with_different_properties_is_refused_with_resource_id_and_arn() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let created = client
        .create_thing_type(type_with_props_req(
            "bulb",
            props(Some("Light bulbs"), &["model"]),
        ))
        .await
        .unwrap()
        .into_inner();
    let described = describe_type(&mut client, "bulb").await;
    let before = last_sequence(&mut client).await;

    for different in [
        props(Some("Other"), &["model"]),
        props(Some("Light bulbs"), &["model", "watts"]),
        props(None, &[]),
        ThingTypeProperties {
            mqtt5_configuration: Some(Mqtt5Configuration {
                propagating_attributes: propagating(),
            }),
            ..props(Some("Light bulbs"), &["model"])
        },
    ] {
        let err = expect_err(
            client
                .create_thing_type(type_with_props_req("bulb", different.clone()))
                .await,
            ErrorType::ResourceAlreadyExists,
        );
        assert_eq!(
            err.resource_id.as_deref(),
            Some(created.thing_type_id.as_str()),
            "{different:?}"
        );
        assert_eq!(
            err.resource_arn.as_deref(),
            Some(created.thing_type_arn.as_str()),
            "{different:?}"
        );
    }
    assert_eq!(describe_type(&mut client, "bulb").await, described);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn create_thing_type_with_more_than_three_searchable_attributes_is_refused() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    client
        .create_thing_type(type_with_props_req("three", props(None, &["a", "b", "c"])))
        .await
        .unwrap();
    assert_eq!(
        properties(&describe_type(&mut client, "three").await).searchable_attributes,
        ["a", "b", "c"]
    );

    let before = last_sequence(&mut client).await;
    expect_err(
        client
            .create_thing_type(type_with_props_req(
                "four",
                props(None, &["a", "b", "c", "d"]),
            ))
            .await,
        ErrorType::InvalidRequest,
    );
    assert_no_type(&mut client, "four").await;
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn create_thing_type_with_invalid_name_is_refused_and_valid_edge_names_are_accepted() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;
    for name in invalid_names() {
        let result = client.create_thing_type(type_req(&name)).await;
        assert!(result.is_err(), "{name:?} was accepted");
        expect_err(result, ErrorType::InvalidRequest);
    }
    assert!(
        type_names(&mut client, ListThingTypesRequest::default())
            .await
            .is_empty()
    );
    assert_no_events_after(&mut client, before).await;

    for name in valid_edge_names() {
        let created = create_type(&mut client, &name).await;
        assert_eq!(created.thing_type_arn, arn("thingtype", &name));
    }
    registry.stop().await;
}

#[tokio::test]
async fn create_thing_type_with_too_long_or_unprintable_description_is_refused() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;
    let too_long = "d".repeat(2029);
    for (i, description) in [too_long.as_str(), "line\nbreak", "tab\there", "bell\u{7}"]
        .into_iter()
        .enumerate()
    {
        let name = format!("bad-{i}");
        expect_err(
            client
                .create_thing_type(type_with_props_req(&name, props(Some(description), &[])))
                .await,
            ErrorType::InvalidRequest,
        );
        assert_no_type(&mut client, &name).await;
    }
    assert_no_events_after(&mut client, before).await;

    let longest = format!("{} ~!{{}}", "d".repeat(2023));
    assert_eq!(longest.len(), 2028);
    client
        .create_thing_type(type_with_props_req("good", props(Some(&longest), &[])))
        .await
        .unwrap();
    assert_eq!(
        properties(&describe_type(&mut client, "good").await)
            .thing_type_description
            .as_deref(),
        Some(longest.as_str())
    );
    registry.stop().await;
}

#[tokio::test]
async fn describe_missing_thing_type_is_not_found() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    assert_no_type(&mut client, "nope").await;
    create_type(&mut client, "other").await;
    assert_no_type(&mut client, "nope").await;
    registry.stop().await;
}

// ------------------------------------------------------------ UpdateThingType

#[tokio::test]
async fn update_thing_type_replaces_the_given_properties_and_logs_updated() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let created = client
        .create_thing_type(type_with_props_req("bulb", props(Some("old"), &["model"])))
        .await
        .unwrap()
        .into_inner();
    let before = last_sequence(&mut client).await;

    let all = ThingTypeProperties {
        mqtt5_configuration: Some(Mqtt5Configuration {
            propagating_attributes: propagating(),
        }),
        ..props(Some("new"), &["model", "watts"])
    };
    client
        .update_thing_type(UpdateThingTypeRequest {
            thing_type_name: "bulb".into(),
            thing_type_properties: Some(all.clone()),
        })
        .await
        .unwrap();
    let described = describe_type(&mut client, "bulb").await;
    assert_eq!(properties(&described), all);
    assert_eq!(described.thing_type_id, created.thing_type_id);
    assert!(!metadata(&described).deprecated);

    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING_TYPE UPDATED"]);
    assert_eq!(
        thing_type_event(&events[0]),
        &ThingTypeEvent {
            thing_type_id: created.thing_type_id,
            thing_type_name: "bulb".into(),
            is_deprecated: false,
            deprecation_date_ms: None,
            searchable_attributes: vec!["model".into(), "watts".into()],
            propagating_attributes: propagating(),
            description: "new".into(),
        }
    );

    registry.stop().await;
}

#[tokio::test]
async fn update_thing_type_keeps_the_properties_that_are_not_given() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let given = ThingTypeProperties {
        mqtt5_configuration: Some(Mqtt5Configuration {
            propagating_attributes: propagating(),
        }),
        ..props(Some("old"), &["model", "watts"])
    };
    client
        .create_thing_type(type_with_props_req("bulb", given))
        .await
        .unwrap();
    let before = last_sequence(&mut client).await;

    // Only the description (and the same searchable attributes) given: the MQTT 5 configuration stays.
    client
        .update_thing_type(UpdateThingTypeRequest {
            thing_type_name: "bulb".into(),
            thing_type_properties: Some(props(Some("newer"), &["model", "watts"])),
        })
        .await
        .unwrap();
    let props_now = properties(&describe_type(&mut client, "bulb").await);
    assert_eq!(props_now.thing_type_description.as_deref(), Some("newer"));
    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING_TYPE UPDATED"]);
    assert_eq!(thing_type_event(&events[0]).description, "newer");
    assert_eq!(
        props_now.mqtt5_configuration,
        Some(Mqtt5Configuration {
            propagating_attributes: propagating()
        }),
        "an MQTT 5 configuration that was not given must not be dropped"
    );
    assert_eq!(
        thing_type_event(&events[0]).propagating_attributes,
        propagating()
    );
    registry.stop().await;
}

#[tokio::test]
async fn update_missing_thing_type_is_not_found() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;
    expect_err(
        client
            .update_thing_type(UpdateThingTypeRequest {
                thing_type_name: "nope".into(),
                thing_type_properties: Some(props(Some("d"), &[])),
            })
            .await,
        ErrorType::ResourceNotFound,
    );
    assert_no_type(&mut client, "nope").await;
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn update_thing_type_with_invalid_properties_is_refused_and_changes_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    client
        .create_thing_type(type_with_props_req("bulb", props(Some("d"), &["a"])))
        .await
        .unwrap();
    let described = describe_type(&mut client, "bulb").await;
    let before = last_sequence(&mut client).await;

    let too_long = "d".repeat(2029);
    for bad in [
        props(Some("d"), &["a", "b", "c", "d"]),
        props(Some(&too_long), &["a"]),
    ] {
        expect_err(
            client
                .update_thing_type(UpdateThingTypeRequest {
                    thing_type_name: "bulb".into(),
                    thing_type_properties: Some(bad),
                })
                .await,
            ErrorType::InvalidRequest,
        );
    }
    assert_eq!(describe_type(&mut client, "bulb").await, described);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

// ------------------------------------------------------------ DeprecateThingType

#[tokio::test]
async fn deprecate_thing_type_sets_deprecated_and_date_and_undo_clears_both_each_logging_updated() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let created = client
        .create_thing_type(type_with_props_req("bulb", props(Some("d"), &["model"])))
        .await
        .unwrap()
        .into_inner();
    let before = last_sequence(&mut client).await;

    deprecate_type(&mut client, "bulb", false).await;
    let meta = metadata(&describe_type(&mut client, "bulb").await);
    assert!(meta.deprecated);
    let date = meta
        .deprecation_date_ms
        .expect("a deprecated type has a deprecation date");
    assert_recent_ms(date);
    assert!(date >= meta.creation_date_ms);

    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING_TYPE UPDATED"]);
    assert_eq!(
        thing_type_event(&events[0]),
        &ThingTypeEvent {
            thing_type_id: created.thing_type_id.clone(),
            thing_type_name: "bulb".into(),
            is_deprecated: true,
            deprecation_date_ms: Some(date),
            searchable_attributes: vec!["model".into()],
            propagating_attributes: vec![],
            description: "d".into(),
        }
    );

    let before = last_sequence(&mut client).await;
    deprecate_type(&mut client, "bulb", true).await;
    let described = describe_type(&mut client, "bulb").await;
    let meta = metadata(&described);
    assert!(!meta.deprecated);
    assert_eq!(meta.deprecation_date_ms, None);
    assert_eq!(properties(&described), props(Some("d"), &["model"]));

    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING_TYPE UPDATED"]);
    let event = thing_type_event(&events[0]);
    assert!(!event.is_deprecated);
    assert_eq!(event.deprecation_date_ms, None);
    assert_eq!(event.thing_type_id, created.thing_type_id);
    registry.stop().await;
}

#[tokio::test]
async fn deprecate_missing_thing_type_is_not_found() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;
    for undo in [false, true] {
        expect_err(
            client
                .deprecate_thing_type(DeprecateThingTypeRequest {
                    thing_type_name: "nope".into(),
                    undo_deprecate: undo,
                })
                .await,
            ErrorType::ResourceNotFound,
        );
    }
    assert_no_type(&mut client, "nope").await;
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn deprecated_type_keeps_its_things_but_refuses_new_ones_until_undeprecated() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_type(&mut client, "bulb").await;
    client
        .create_thing(typed_thing_req("old-lamp", "bulb"))
        .await
        .unwrap();
    client.create_thing(thing_req("plain")).await.unwrap();
    deprecate_type(&mut client, "bulb", false).await;

    // Existing associations are unchanged, and the thing can still be updated otherwise.
    let lamp = describe_thing(&mut client, "old-lamp").await;
    assert_eq!(lamp.thing_type_name.as_deref(), Some("bulb"));
    client
        .update_thing(UpdateThingRequest {
            attribute_payload: crate::things::merge(&[("a", "1")]),
            ..update_req("old-lamp")
        })
        .await
        .unwrap();
    assert_eq!(describe_thing(&mut client, "old-lamp").await.version, 2);

    let plain = describe_thing(&mut client, "plain").await;
    let before = last_sequence(&mut client).await;
    expect_err(
        client
            .create_thing(typed_thing_req("new-lamp", "bulb"))
            .await,
        ErrorType::InvalidRequest,
    );
    expect_err(
        client
            .update_thing(UpdateThingRequest {
                thing_type_name: Some("bulb".into()),
                ..update_req("plain")
            })
            .await,
        ErrorType::InvalidRequest,
    );
    assert_eq!(describe_thing(&mut client, "plain").await, plain);
    expect_err(
        client
            .describe_thing(crate::things::describe_req("new-lamp"))
            .await,
        ErrorType::ResourceNotFound,
    );
    assert_no_events_after(&mut client, before).await;

    deprecate_type(&mut client, "bulb", true).await;
    client
        .create_thing(typed_thing_req("new-lamp", "bulb"))
        .await
        .unwrap();
    client
        .update_thing(UpdateThingRequest {
            thing_type_name: Some("bulb".into()),
            ..update_req("plain")
        })
        .await
        .unwrap();
    assert_eq!(
        describe_thing(&mut client, "plain")
            .await
            .thing_type_name
            .as_deref(),
        Some("bulb")
    );
    registry.stop().await;
}

// ------------------------------------------------------------ DeleteThingType

#[tokio::test]
async fn delete_thing_type_that_is_not_deprecated_is_refused_and_changes_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_type(&mut client, "bulb").await;
    let described = describe_type(&mut client, "bulb").await;
    let before = last_sequence(&mut client).await;
    expect_err(
        client.delete_thing_type(delete_type_req("bulb")).await,
        ErrorType::InvalidRequest,
    );
    assert_eq!(describe_type(&mut client, "bulb").await, described);
    assert_no_events_after(&mut client, before).await;

    // Deprecated, then undeprecated: still not deletable.
    deprecate_type(&mut client, "bulb", false).await;
    deprecate_type(&mut client, "bulb", true).await;
    let described = describe_type(&mut client, "bulb").await;
    let before = last_sequence(&mut client).await;
    expect_err(
        client.delete_thing_type(delete_type_req("bulb")).await,
        ErrorType::InvalidRequest,
    );
    assert_eq!(describe_type(&mut client, "bulb").await, described);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn delete_deprecated_thing_type_still_used_by_a_thing_is_refused_until_the_thing_is_gone() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let created = create_type(&mut client, "bulb").await;
    client
        .create_thing(typed_thing_req("lamp", "bulb"))
        .await
        .unwrap();
    client
        .create_thing(typed_thing_req("lamp2", "bulb"))
        .await
        .unwrap();
    deprecate_type(&mut client, "bulb", false).await;
    let described = describe_type(&mut client, "bulb").await;
    let before = last_sequence(&mut client).await;

    expect_err(
        client.delete_thing_type(delete_type_req("bulb")).await,
        ErrorType::InvalidRequest,
    );
    assert_eq!(describe_type(&mut client, "bulb").await, described);
    assert_no_events_after(&mut client, before).await;

    // One thing drops the type, the other is deleted: then the type may go.
    client
        .update_thing(UpdateThingRequest {
            remove_thing_type: true,
            ..update_req("lamp")
        })
        .await
        .unwrap();
    expect_err(
        client.delete_thing_type(delete_type_req("bulb")).await,
        ErrorType::InvalidRequest,
    );
    client.delete_thing(delete_req("lamp2")).await.unwrap();

    let before = last_sequence(&mut client).await;
    client
        .delete_thing_type(delete_type_req("bulb"))
        .await
        .unwrap();
    assert_no_type(&mut client, "bulb").await;
    assert!(
        type_names(&mut client, ListThingTypesRequest::default())
            .await
            .is_empty()
    );
    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING_TYPE DELETED"]);
    let event = thing_type_event(&events[0]);
    assert_eq!(event.thing_type_id, created.thing_type_id);
    assert_eq!(event.thing_type_name, "bulb");
    assert!(event.is_deprecated);
    registry.stop().await;
}

#[tokio::test]
async fn delete_missing_thing_type_is_not_found() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;
    expect_err(
        client.delete_thing_type(delete_type_req("nope")).await,
        ErrorType::ResourceNotFound,
    );
    assert_no_events_after(&mut client, before).await;

    // Deleting twice: the second time it is gone.
    create_type(&mut client, "once").await;
    deprecate_type(&mut client, "once", false).await;
    client
        .delete_thing_type(delete_type_req("once"))
        .await
        .unwrap();
    let before = last_sequence(&mut client).await;
    expect_err(
        client.delete_thing_type(delete_type_req("once")).await,
        ErrorType::ResourceNotFound,
    );
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn delete_thing_type_deprecated_less_than_the_delay_ago_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_test(dir.path().join("registry"));
    settings.thing_type_delete_delay_secs = 300;
    let registry = TestRegistry::start_in(dir, settings).await;
    let mut client = registry.client().await;
    create_type(&mut client, "bulb").await;
    deprecate_type(&mut client, "bulb", false).await;
    let described = describe_type(&mut client, "bulb").await;
    let before = last_sequence(&mut client).await;

    expect_err(
        client.delete_thing_type(delete_type_req("bulb")).await,
        ErrorType::InvalidRequest,
    );
    assert_eq!(describe_type(&mut client, "bulb").await, described);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

// ------------------------------------------------------------ ListThingTypes

#[tokio::test]
async fn list_thing_types_is_sorted_paged_and_filters_by_name() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    for name in [
        "type5", "type2", "type7", "type1", "type6", "type3", "type4",
    ] {
        create_type(&mut client, name).await;
    }
    deprecate_type(&mut client, "type3", false).await;

    let pages = walk_pages(|token| {
        let mut client = client.clone();
        async move {
            let resp = client
                .list_thing_types(ListThingTypesRequest {
                    page: page(3, &token),
                    thing_type_name: None,
                })
                .await
                .unwrap()
                .into_inner();
            (
                resp.thing_types
                    .into_iter()
                    .map(|t| t.thing_type_name)
                    .collect(),
                resp.next_token,
            )
        }
    })
    .await;
    assert_paged(&pages, 3, &names("type", 7));

    // The listed types are the described ones, metadata included.
    let filtered = client
        .list_thing_types(ListThingTypesRequest {
            page: None,
            thing_type_name: Some("type3".into()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        filtered.thing_types,
        [describe_type(&mut client, "type3").await]
    );
    assert!(metadata(&filtered.thing_types[0]).deprecated);
    registry.stop().await;
}

#[tokio::test]
async fn list_thing_types_refuses_bad_max_results_and_foreign_next_tokens() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    for name in names("type", 3) {
        create_type(&mut client, &name).await;
    }
    let list = |max: u32, token: &str| ListThingTypesRequest {
        page: page(max, token),
        thing_type_name: None,
    };
    assert_eq!(
        client
            .list_thing_types(list(250, ""))
            .await
            .unwrap()
            .into_inner()
            .thing_types
            .len(),
        3
    );
    assert_eq!(
        client
            .list_thing_types(list(1, ""))
            .await
            .unwrap()
            .into_inner()
            .thing_types
            .len(),
        1
    );
    expect_err(
        client.list_thing_types(list(251, "")).await,
        ErrorType::InvalidRequest,
    );
    expect_err(
        client.list_thing_types(list(2, "garbage")).await,
        ErrorType::InvalidRequest,
    );
    registry.stop().await;
}
