//! Fleet indexing through the gRPC API: searches consistent with every
//! acknowledged mutation, an index rebuilt from the store after a restart,
//! connectivity reports, and the configuration's rules.

use herald_proto::{error::ErrorType, registry::v1::*};
use herald_registry::Settings;

use crate::{
    groups::create_group,
    membership::add_to_group,
    support::{Client, TestRegistry, expect_err},
    things::thing_req,
};

async fn enable(client: &mut Client) {
    client
        .update_indexing_configuration(UpdateIndexingConfigurationRequest {
            thing_indexing_mode: Some("REGISTRY".into()),
            thing_connectivity_indexing_mode: Some("STATUS".into()),
            thing_group_indexing_mode: Some("ON".into()),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// The things documents `query` finds on the first page.
pub(crate) async fn found(client: &mut Client, query: &str) -> Vec<ThingDocument> {
    client
        .search_index(SearchIndexRequest {
            index_name: None,
            query_string: query.into(),
            next_token: String::new(),
            max_results: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .things
}

/// The names of the things `query` finds on the first page.
pub(crate) async fn search(client: &mut Client, query: &str) -> Vec<String> {
    found(client, query)
        .await
        .into_iter()
        .map(|t| t.thing_name)
        .collect()
}

async fn create(client: &mut Client, name: &str, attributes: &[(&str, &str)]) {
    client
        .create_thing(CreateThingRequest {
            attribute_payload: Some(AttributePayload {
                attributes: attributes
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                merge: false,
            }),
            ..thing_req(name)
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn searches_see_every_acknowledged_mutation_and_survive_a_restart() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    enable(&mut client).await;
    for i in 0..50 {
        let tier = if i % 10 == 0 { "gold" } else { "basic" };
        create(
            &mut client,
            &format!("dev-{i:02}"),
            &[("tier", tier), ("n", &i.to_string())],
        )
        .await;
        // Right after the acknowledgement, the index has it.
        assert!(
            search(&mut client, &format!("thingName:dev-{i:02}"))
                .await
                .len()
                == 1
        );
    }
    create_group(&mut client, "vip", None).await;
    add_to_group(&mut client, "vip", "dev-10").await;
    assert_eq!(
        search(
            &mut client,
            "attributes.tier:gold AND NOT thingGroupNames:vip"
        )
        .await,
        ["dev-00", "dev-20", "dev-30", "dev-40"]
    );
    assert_eq!(
        search(&mut client, "attributes.n:[47 TO *]").await,
        ["dev-47", "dev-48", "dev-49"]
    );

    // Restarted, the index is rebuilt from the store.
    let dir = registry.stop().await;
    let settings = Settings::for_test(dir.path().join("registry"));
    let registry = TestRegistry::start_in(dir, settings).await;
    let mut client = registry.client().await;
    assert_eq!(search(&mut client, "thingGroupNames:vip").await, ["dev-10"]);
    assert_eq!(search(&mut client, "attributes.tier:gold").await.len(), 5);
    client
        .delete_thing(DeleteThingRequest {
            thing_name: "dev-00".into(),
            expected_version: None,
        })
        .await
        .unwrap();
    assert_eq!(search(&mut client, "attributes.tier:gold").await.len(), 4);

    // Paging walks every match once.
    let mut seen = Vec::new();
    let mut next_token = String::new();
    loop {
        let page = client
            .search_index(SearchIndexRequest {
                index_name: Some("AWS_Things".into()),
                query_string: "attributes.tier:basic".into(),
                next_token,
                max_results: 7,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.things.len() <= 7);
        seen.extend(page.things.into_iter().map(|t| t.thing_name));
        if page.next_token.is_empty() {
            break;
        }
        next_token = page.next_token;
    }
    assert_eq!(seen.len(), 45);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    registry.stop().await;
}

#[tokio::test]
async fn connectivity_reports_come_in_bounded_batches_applied_whole_or_not_at_all() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    enable(&mut client).await;
    for name in ["a", "b"] {
        create(&mut client, name, &[]).await;
    }
    let report = |name: &str| ConnectivityReport {
        client_id: name.into(),
        connected: true,
        timestamp_ms: 1_000,
        disconnect_reason: None,
    };
    let too_many = ReportConnectivityRequest {
        reports: (0..1001).map(|_| report("a")).collect(),
    };
    expect_err(
        client.report_connectivity(too_many).await,
        ErrorType::InvalidRequest,
    );
    assert!(
        search(&mut client, "connectivity.connected:true")
            .await
            .is_empty()
    );
    client
        .report_connectivity(ReportConnectivityRequest {
            reports: vec![report("a"), report("b")],
        })
        .await
        .unwrap();
    assert_eq!(
        search(&mut client, "connectivity.connected:true").await,
        ["a", "b"]
    );
}

#[tokio::test]
async fn connectivity_reports_are_searchable_and_an_older_report_loses() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    enable(&mut client).await;
    create(&mut client, "lamp", &[]).await;
    let report = |connected, timestamp_ms| ReportConnectivityRequest {
        reports: vec![ConnectivityReport {
            client_id: "lamp".into(),
            connected,
            timestamp_ms,
            disconnect_reason: (!connected).then(|| "MQTT_KEEP_ALIVE_TIMEOUT".to_owned()),
        }],
    };
    client
        .report_connectivity(report(true, 2_000))
        .await
        .unwrap();
    // Arriving late, an older disconnect does not win.
    client
        .report_connectivity(report(false, 1_000))
        .await
        .unwrap();
    assert_eq!(
        search(&mut client, "connectivity.connected:true").await,
        ["lamp"]
    );
    client
        .report_connectivity(report(false, 3_000))
        .await
        .unwrap();
    assert_eq!(
        search(
            &mut client,
            "connectivity.disconnectReason:MQTT_KEEP_ALIVE_TIMEOUT"
        )
        .await,
        ["lamp"]
    );
    let found = client
        .search_index(SearchIndexRequest {
            index_name: None,
            query_string: "lamp".into(),
            next_token: String::new(),
            max_results: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let connectivity = found.things[0].connectivity.clone().unwrap();
    assert!(!connectivity.connected);
    assert_eq!(connectivity.timestamp_ms, 3_000);
    registry.stop().await;
}

#[tokio::test]
async fn bad_queries_configurations_and_indices_are_refused() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let query = |index: Option<&str>, q: &str| SearchIndexRequest {
        index_name: index.map(str::to_owned),
        query_string: q.into(),
        next_token: String::new(),
        max_results: 0,
    };
    expect_err(
        client.search_index(query(None, "*")).await,
        ErrorType::ResourceNotFound,
    );
    enable(&mut client).await;
    expect_err(
        client.search_index(query(None, "a:(")).await,
        ErrorType::InvalidQuery,
    );
    expect_err(
        client.search_index(query(Some("Mine"), "*")).await,
        ErrorType::ResourceNotFound,
    );
    expect_err(
        client
            .update_indexing_configuration(UpdateIndexingConfigurationRequest {
                thing_indexing_mode: Some("OFF".into()),
                thing_connectivity_indexing_mode: Some("STATUS".into()),
                thing_group_indexing_mode: None,
                ..Default::default()
            })
            .await,
        ErrorType::InvalidRequest,
    );
    // Refused, it changed nothing.
    let config = client
        .get_indexing_configuration(GetIndexingConfigurationRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(config.thing_indexing_mode, "REGISTRY");
    assert_eq!(config.thing_connectivity_indexing_mode, "STATUS");
    expect_err(
        client
            .get_buckets_aggregation(GetBucketsAggregationRequest {
                aggregation: Some(AggregationRequest {
                    index_name: None,
                    query_string: "*".into(),
                    aggregation_field: "attributes.x".into(),
                }),
                max_buckets: 10_001,
            })
            .await,
        ErrorType::InvalidRequest,
    );
    registry.stop().await;
}

fn field(name: &str, kind: &str) -> IndexingField {
    IndexingField {
        name: name.into(),
        r#type: kind.into(),
    }
}

/// Custom fields and geolocations are kept as given (and survive a
/// restart), managed fields follow the modes, and a configuration AWS
/// refuses changes nothing.
#[tokio::test]
async fn custom_fields_and_geolocations_are_kept_and_managed_fields_follow_the_modes() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::for_test(dir.path().join("registry"));
    let registry = TestRegistry::start_in(dir, settings).await;
    let mut client = registry.client().await;
    let configured = UpdateIndexingConfigurationRequest {
        thing_indexing_mode: Some("REGISTRY".into()),
        thing_connectivity_indexing_mode: Some("STATUS".into()),
        thing_group_indexing_mode: Some("ON".into()),
        thing_custom_fields: vec![
            field("attributes.watts", "Number"),
            field("attributes.on", "Boolean"),
        ],
        geo_locations: vec![GeoLocation {
            name: "attributes.location".into(),
            order: "LonLat".into(),
        }],
        group_custom_fields: vec![field("attributes.level", "String")],
        ..Default::default()
    };
    client
        .update_indexing_configuration(configured.clone())
        .await
        .unwrap();
    let config = client
        .get_indexing_configuration(GetIndexingConfigurationRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(config.thing_custom_fields, configured.thing_custom_fields);
    assert_eq!(config.geo_locations, configured.geo_locations);
    assert_eq!(config.group_custom_fields, configured.group_custom_fields);
    let managed: Vec<&str> = config
        .thing_managed_fields
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert!(managed.contains(&"thingName") && managed.contains(&"connectivity.connected"));
    assert!(!managed.contains(&"shadow.version"), "no shadow indexed");
    assert!(
        config
            .group_managed_fields
            .contains(&field("thingGroupName", "String"))
    );

    let bad_things = [
        vec![field("attributes.watts", "Float")],
        vec![field("", "Number")],
        vec![field("registry.version", "Number")],
        vec![
            field("attributes.a", "Number"),
            field("attributes.a", "Number"),
        ],
    ];
    for fields in bad_things {
        expect_err(
            client
                .update_indexing_configuration(UpdateIndexingConfigurationRequest {
                    thing_custom_fields: fields,
                    ..configured.clone()
                })
                .await,
            ErrorType::InvalidRequest,
        );
    }
    for geo in [("attributes.location", "NorthUp"), ("", "LatLon")] {
        expect_err(
            client
                .update_indexing_configuration(UpdateIndexingConfigurationRequest {
                    geo_locations: vec![GeoLocation {
                        name: geo.0.into(),
                        order: geo.1.into(),
                    }],
                    ..configured.clone()
                })
                .await,
            ErrorType::InvalidRequest,
        );
    }
    expect_err(
        client
            .update_indexing_configuration(UpdateIndexingConfigurationRequest {
                group_custom_fields: vec![field("thingGroupId", "String")],
                ..configured.clone()
            })
            .await,
        ErrorType::InvalidRequest,
    );

    let dir = registry.stop().await;
    let settings = Settings::for_test(dir.path().join("registry"));
    let registry = TestRegistry::start_in(dir, settings).await;
    let mut client = registry.client().await;
    let after = client
        .get_indexing_configuration(GetIndexingConfigurationRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, config, "refusals changed nothing; a restart neither");

    // A thing configuration replaces the last one: turned off, the thing
    // index has no managed fields, and no custom fields as none are given;
    // the group index's stay.
    client
        .update_indexing_configuration(UpdateIndexingConfigurationRequest {
            thing_indexing_mode: Some("OFF".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let off = client
        .get_indexing_configuration(GetIndexingConfigurationRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(off.thing_managed_fields.is_empty() && off.thing_custom_fields.is_empty());
    assert_eq!(off.group_custom_fields, configured.group_custom_fields);
    registry.stop().await;
}
