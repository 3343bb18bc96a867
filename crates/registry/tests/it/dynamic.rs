//! Dynamic thing groups through the gRPC API: membership following the
//! query with its events in the change log, and `overrideDynamicGroups`.

use herald_proto::{error::ErrorType, registry::v1::*};

use crate::{
    groups::create_group,
    membership::{add_req, things_in},
    support::{Client, TestRegistry, eventually, expect_err},
    things::{events_after, last_sequence, summary, thing_req},
};

async fn enable(client: &mut Client) {
    client
        .update_indexing_configuration(UpdateIndexingConfigurationRequest {
            thing_indexing_mode: Some("REGISTRY".into()),
            thing_connectivity_indexing_mode: None,
            thing_group_indexing_mode: None,
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn create_with(client: &mut Client, name: &str, key: &str, value: &str) {
    client
        .create_thing(CreateThingRequest {
            attribute_payload: Some(AttributePayload {
                attributes: [(key.to_owned(), value.to_owned())].into(),
                merge: false,
            }),
            ..thing_req(name)
        })
        .await
        .unwrap();
}

fn dynamic_req(name: &str, query: &str) -> CreateDynamicThingGroupRequest {
    CreateDynamicThingGroupRequest {
        thing_group_name: name.into(),
        thing_group_properties: None,
        index_name: None,
        query_string: query.into(),
        query_version: None,
        tags: vec![],
    }
}

pub(crate) async fn wait_members(client: &mut Client, group: &str, expected: &[&str]) {
    let expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    eventually(10, &format!("{group} = {expected:?}"), || {
        let mut client = client.clone();
        let expected = expected.clone();
        let group = group.to_owned();
        async move { (things_in(&mut client, &group, false).await == expected).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn membership_follows_the_query_and_logs_its_events() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    expect_err(
        client
            .create_dynamic_thing_group(dynamic_req("hot", "*"))
            .await,
        ErrorType::ResourceNotFound,
    );
    enable(&mut client).await;
    create_with(&mut client, "s1", "temp", "80").await;
    create_with(&mut client, "s2", "temp", "20").await;
    let before = last_sequence(&mut client).await;
    let created = client
        .create_dynamic_thing_group(dynamic_req("hot", "attributes.temp>50"))
        .await
        .unwrap()
        .into_inner();
    let dynamic = created.dynamic.unwrap();
    assert_eq!(
        (
            dynamic.index_name.as_str(),
            dynamic.query_version.as_str(),
            dynamic.status.as_str()
        ),
        ("AWS_Things", "2017-09-30", "ACTIVE")
    );
    wait_members(&mut client, "hot", &["s1"]).await;
    client
        .update_thing(UpdateThingRequest {
            thing_name: "s2".into(),
            attribute_payload: Some(AttributePayload {
                attributes: [("temp".to_owned(), "90".to_owned())].into(),
                merge: true,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    wait_members(&mut client, "hot", &["s1", "s2"]).await;
    client
        .update_dynamic_thing_group(UpdateDynamicThingGroupRequest {
            thing_group_name: "hot".into(),
            thing_group_properties: Some(ThingGroupProperties::default()),
            expected_version: Some(1),
            index_name: None,
            query_string: Some("attributes.temp>85".into()),
            query_version: None,
        })
        .await
        .unwrap();
    wait_members(&mut client, "hot", &["s2"]).await;
    // The last membership change may be read before it is durable in the
    // log: wait for the log to hold it.
    let expected = [
        "THING_GROUP CREATED",
        "THING_GROUP_MEMBERSHIP ADDED",
        "THING UPDATED",
        "THING_GROUP_MEMBERSHIP ADDED",
        "THING_GROUP UPDATED",
        "THING_GROUP_MEMBERSHIP REMOVED",
    ];
    eventually(10, "the membership events", || {
        let mut client = client.clone();
        async move { (summary(&events_after(&mut client, before).await) == expected).then_some(()) }
    })
    .await;
    expect_err(
        client.add_thing_to_thing_group(add_req("hot", "s1")).await,
        ErrorType::InvalidRequest,
    );
    registry.stop().await;
}

#[tokio::test]
async fn override_dynamic_groups_makes_room_for_a_static_one() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    enable(&mut client).await;
    create_with(&mut client, "busy", "kind", "x").await;
    client
        .create_dynamic_thing_group(dynamic_req("all-x", "attributes.kind:x"))
        .await
        .unwrap();
    wait_members(&mut client, "all-x", &["busy"]).await;
    for i in 0..9 {
        let group = format!("g{i}");
        create_group(&mut client, &group, None).await;
        client
            .add_thing_to_thing_group(add_req(&group, "busy"))
            .await
            .unwrap();
    }
    create_group(&mut client, "g9", None).await;
    expect_err(
        client.add_thing_to_thing_group(add_req("g9", "busy")).await,
        ErrorType::LimitExceeded,
    );
    client
        .add_thing_to_thing_group(AddThingToThingGroupRequest {
            override_dynamic_groups: true,
            ..add_req("g9", "busy")
        })
        .await
        .unwrap();
    assert!(things_in(&mut client, "all-x", false).await.is_empty());
    assert_eq!(things_in(&mut client, "g9", false).await, ["busy"]);
    registry.stop().await;
}
