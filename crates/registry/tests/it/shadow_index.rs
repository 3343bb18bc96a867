//! Shadows in the fleet index (thing indexing mode REGISTRY_AND_SHADOW and
//! named shadow indexing): searchable once the configuration says so, the
//! thing document's `shadow`, dynamic groups following shadow updates and
//! deletes, aggregations, a restart, and the configuration's rules.

use herald_proto::{
    error::ErrorType,
    registry::v1::{shadows_client::ShadowsClient, *},
};
use herald_registry::Settings;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::{
    dynamic::wait_members,
    indexing::{found, search},
    support::{Client, TestRegistry, expect_err},
    things::thing_req,
};

async fn configure(client: &mut Client, mode: &str, named: Option<&[&str]>) {
    client
        .update_indexing_configuration(indexing(mode, named))
        .await
        .unwrap();
}

fn indexing(mode: &str, named: Option<&[&str]>) -> UpdateIndexingConfigurationRequest {
    UpdateIndexingConfigurationRequest {
        thing_indexing_mode: Some(mode.into()),
        named_shadow_indexing_mode: named.map(|_| "ON".into()),
        named_shadow_names: named
            .unwrap_or_default()
            .iter()
            .map(|n| (*n).to_owned())
            .collect(),
        ..Default::default()
    }
}

async fn shadows(registry: &TestRegistry) -> ShadowsClient<Channel> {
    ShadowsClient::connect(format!("http://{}", registry.addr))
        .await
        .unwrap()
}

async fn update(shadows: &mut ShadowsClient<Channel>, thing: &str, name: &str, state: Value) {
    let reply = shadows
        .update_shadow(ShadowRequest {
            thing_name: thing.into(),
            shadow_name: name.into(),
            payload: json!({ "state": state }).to_string().into_bytes(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.code, 0, "{}", String::from_utf8_lossy(&reply.body));
}

#[tokio::test]
async fn shadows_are_searchable_and_feed_dynamic_groups_as_configured() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let mut shadow = shadows(&registry).await;
    configure(&mut client, "REGISTRY", None).await;
    for name in ["lamp-1", "lamp-2"] {
        client.create_thing(thing_req(name)).await.unwrap();
    }
    update(
        &mut shadow,
        "lamp-1",
        "",
        json!({"reported": {"temp": 30, "tags": ["a", "b"]}, "desired": {"on": true}}),
    )
    .await;
    update(&mut shadow, "lamp-2", "", json!({"reported": {"temp": 10}})).await;
    update(
        &mut shadow,
        "lamp-2",
        "gps",
        json!({"reported": {"lat": 5}}),
    )
    .await;
    // A shadow needs no thing; it is not in the things index until one exists.
    update(&mut shadow, "ghost", "", json!({"reported": {"temp": 99}})).await;

    // REGISTRY: shadows are not indexed.
    assert!(
        search(&mut client, "shadow.reported.temp>20")
            .await
            .is_empty()
    );
    assert_eq!(found(&mut client, "lamp-1").await[0].shadow, None);
    let hot = CreateDynamicThingGroupRequest {
        thing_group_name: "hot".into(),
        thing_group_properties: None,
        index_name: None,
        query_string: "shadow.reported.temp>20".into(),
        query_version: None,
        tags: vec![],
    };
    client.create_dynamic_thing_group(hot).await.unwrap();

    // REGISTRY_AND_SHADOW: the classic shadow is, named ones not yet.
    configure(&mut client, "REGISTRY_AND_SHADOW", None).await;
    assert_eq!(
        search(&mut client, "shadow.reported.temp>20").await,
        ["lamp-1"]
    );
    assert_eq!(
        search(&mut client, "shadow.hasDelta:true").await,
        ["lamp-1"]
    );
    assert_eq!(
        search(&mut client, "shadow.reported.tags:b").await,
        ["lamp-1"]
    );
    assert_eq!(
        search(&mut client, "shadow.desired.on:true AND shadow.version:1").await,
        ["lamp-1"]
    );
    assert!(
        search(&mut client, "shadow.name.gps.reported.lat:5")
            .await
            .is_empty()
    );
    wait_members(&mut client, "hot", &["lamp-1"]).await;
    let document: Value = serde_json::from_str(
        found(&mut client, "lamp-1").await[0]
            .shadow
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(document["reported"]["temp"], 30);
    assert_eq!(document["desired"], json!({"on": true}));
    assert_eq!(document["hasDelta"], true);
    assert_eq!(document["version"], 1);
    assert!(document["metadata"]["reported"]["temp"]["timestamp"].is_i64());

    // Named shadows, when listed in the filter.
    configure(&mut client, "REGISTRY_AND_SHADOW", Some(&["gps"])).await;
    assert_eq!(
        search(&mut client, "shadow.name.gps.reported.lat:[1 TO 9]").await,
        ["lamp-2"]
    );
    let document: Value = serde_json::from_str(
        found(&mut client, "lamp-2").await[0]
            .shadow
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(document["name"]["gps"]["reported"], json!({"lat": 5}));
    assert_eq!(document["reported"], json!({"temp": 10}));
    let config = client
        .get_indexing_configuration(GetIndexingConfigurationRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(config.named_shadow_indexing_mode, "ON");
    assert_eq!(config.named_shadow_names, ["gps"]);

    // Dynamic groups follow shadow updates and deletes.
    update(&mut shadow, "lamp-2", "", json!({"reported": {"temp": 40}})).await;
    wait_members(&mut client, "hot", &["lamp-1", "lamp-2"]).await;
    let deleted = shadow
        .delete_shadow(ShadowRequest {
            thing_name: "lamp-1".into(),
            shadow_name: String::new(),
            payload: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.code, 0);
    wait_members(&mut client, "hot", &["lamp-2"]).await;
    assert_eq!(
        search(&mut client, "shadow.reported.temp>20").await,
        ["lamp-2"]
    );

    // A thing made later brings the shadow it already had.
    client.create_thing(thing_req("ghost")).await.unwrap();
    assert_eq!(
        search(&mut client, "shadow.reported.temp:99").await,
        ["ghost"]
    );
    let stats = client
        .get_statistics(AggregationRequest {
            index_name: None,
            query_string: "*".into(),
            aggregation_field: "shadow.reported.temp".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((stats.count, stats.maximum), (2, Some(99.0)));

    // Restarted, the index reads the shadows from the store.
    let dir = registry.stop().await;
    let settings = Settings::for_test(dir.path().join("registry"));
    let registry = TestRegistry::start_in(dir, settings).await;
    let mut client = registry.client().await;
    assert_eq!(
        search(&mut client, "shadow.reported.temp>20").await,
        ["ghost", "lamp-2"]
    );
    assert_eq!(
        search(&mut client, "shadow.name.gps.reported.lat:5").await,
        ["lamp-2"]
    );
}

#[tokio::test]
async fn the_configuration_refuses_what_aws_refuses_and_changes_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    configure(&mut client, "REGISTRY_AND_SHADOW", Some(&["gps"])).await;
    let eleven: Vec<String> = (0..11).map(|i| format!("s{i}")).collect();
    let eleven: Vec<&str> = eleven.iter().map(String::as_str).collect();
    for bad in [
        indexing("REGISTRY", Some(&["gps"])),
        indexing("REGISTRY_AND_SHADOW", Some(&[])),
        indexing("REGISTRY_AND_SHADOW", Some(&eleven)),
        indexing("REGISTRY_AND_SHADOW", Some(&["no spaces"])),
        UpdateIndexingConfigurationRequest {
            named_shadow_indexing_mode: Some("MAYBE".into()),
            ..indexing("REGISTRY_AND_SHADOW", None)
        },
    ] {
        expect_err(
            client.update_indexing_configuration(bad).await,
            ErrorType::InvalidRequest,
        );
    }
    let config = client
        .get_indexing_configuration(GetIndexingConfigurationRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            config.thing_indexing_mode.as_str(),
            config.named_shadow_indexing_mode.as_str(),
            config.named_shadow_names
        ),
        ("REGISTRY_AND_SHADOW", "ON", vec!["gps".to_owned()])
    );
    // An aggregation on a shadow that is not indexed is refused.
    expect_err(
        client
            .get_statistics(AggregationRequest {
                index_name: None,
                query_string: "*".into(),
                aggregation_field: "shadow.name.other.reported.temp".into(),
            })
            .await,
        ErrorType::InvalidAggregation,
    );
}
