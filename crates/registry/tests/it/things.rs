//! Things: create, describe, update, delete and list, through the gRPC API.
//!
//! The helpers shared by the other registry test files (request builders,
//! pagination, and reading the change log) live at the top of this file.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use herald_proto::{
    error::{AwsError, ErrorType},
    registry::v1::{change_event::Event, *},
};
use herald_registry::Settings;

use crate::{
    support::{Client, TestRegistry, expect_err},
    thing_types::{create_type, deprecate_type},
};

// ------------------------------------------------------------ shared helpers

/// The account and region of `Settings::for_test`.
pub(crate) const ACCOUNT: &str = "123456789012";
pub(crate) const REGION: &str = "us-east-1";

/// `arn:aws:iot:us-east-1:123456789012:{kind}/{name}`.
pub(crate) fn arn(kind: &str, name: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:{kind}/{name}")
}

pub(crate) fn attrs(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `n` attributes `a00`, `a01`, … with value `v`.
pub(crate) fn many_attrs(n: usize) -> HashMap<String, String> {
    (0..n)
        .map(|i| (format!("a{i:02}"), "v".to_string()))
        .collect()
}

/// An attribute payload that replaces the attribute set.
pub(crate) fn replace(pairs: &[(&str, &str)]) -> Option<AttributePayload> {
    Some(AttributePayload {
        attributes: attrs(pairs),
        merge: false,
    })
}

/// An attribute payload that merges into the attribute set.
pub(crate) fn merge(pairs: &[(&str, &str)]) -> Option<AttributePayload> {
    Some(AttributePayload {
        attributes: attrs(pairs),
        merge: true,
    })
}

pub(crate) fn page(max_results: u32, next_token: &str) -> Option<Page> {
    Some(Page {
        max_results,
        next_token: next_token.to_string(),
    })
}

pub(crate) fn assert_uuid(id: &str) {
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id:?} is not a UUID");
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Asserts that `ms` is a plausible "just now" in epoch milliseconds.
pub(crate) fn assert_recent_ms(ms: i64) {
    let now = now_ms();
    assert!(
        (now - 600_000..=now + 600_000).contains(&ms),
        "{ms} is not an epoch-ms time near {now}"
    );
}

/// Names that every registry name rule (`[a-zA-Z0-9:_-]+`, 1 to 128) refuses.
pub(crate) fn invalid_names() -> Vec<String> {
    vec![
        String::new(),
        "x".repeat(129),
        "has space".into(),
        "slash/name".into(),
        "dot.name".into(),
        "star*".into(),
        "new\nline".into(),
        "ümlaut".into(),
    ]
}

/// Names at the edge of what the name rule accepts.
pub(crate) fn valid_edge_names() -> Vec<String> {
    vec!["x".repeat(128), "a:B_c-9".into(), "Z".into()]
}

/// Walks every page of a list: `fetch(next_token)` answers `(names, next_token)`.
/// Returns the names of each page.
pub(crate) async fn walk_pages<F, Fut>(mut fetch: F) -> Vec<Vec<String>>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = (Vec<String>, String)>,
{
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let (names, next) = fetch(token).await;
        pages.push(names);
        if next.is_empty() {
            return pages;
        }
        assert!(pages.len() < 1000, "pagination never ends");
        token = next;
    }
}

/// Asserts that `pages` of at most `max` names hold `expected` exactly once each, in order.
pub(crate) fn assert_paged(pages: &[Vec<String>], max: usize, expected: &[String]) {
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    let mut want_sizes: Vec<usize> = expected.chunks(max).map(<[String]>::len).collect();
    if want_sizes.is_empty() {
        want_sizes.push(0);
    }
    assert_eq!(
        sizes,
        want_sizes,
        "page sizes for {} names, {max} per page",
        expected.len()
    );
    assert_eq!(pages.concat(), expected);
}

pub(crate) fn names(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

// ------------------------------------------------------------ change log helpers

pub(crate) async fn last_sequence(client: &mut Client) -> u64 {
    client
        .get_change_log_info(GetChangeLogInfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .last_sequence
}

/// Every event logged after `after`, up to the current end of the log.
/// Checks that sequences are consecutive, event ids unique UUIDs and timestamps plausible.
pub(crate) async fn events_after(client: &mut Client, after: u64) -> Vec<ChangeEvent> {
    let last = last_sequence(client).await;
    if last <= after {
        return Vec::new();
    }
    let mut stream = client
        .watch_changes(WatchChangesRequest {
            after_sequence: after,
        })
        .await
        .unwrap()
        .into_inner();
    let read = async move {
        let mut events: Vec<ChangeEvent> = Vec::new();
        while events.last().map_or(after, |e| e.sequence) < last {
            let batch = stream
                .message()
                .await
                .unwrap()
                .expect("the change stream ended early");
            events.extend(batch.events);
        }
        events
    };
    let mut events = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("timed out reading the change log");
    events.retain(|e| e.sequence <= last);
    let mut ids = HashSet::new();
    for (i, event) in events.iter().enumerate() {
        assert_eq!(
            event.sequence,
            after + 1 + i as u64,
            "sequences must be consecutive: {events:?}"
        );
        assert_uuid(&event.event_id);
        assert!(
            ids.insert(event.event_id.clone()),
            "duplicate event id {}",
            event.event_id
        );
        assert_recent_ms(event.timestamp_ms);
        assert!(
            event.event.is_some(),
            "an event without a payload: {event:?}"
        );
    }
    events
}

/// Asserts that nothing was logged after `before`.
pub(crate) async fn assert_no_events_after(client: &mut Client, before: u64) {
    let events = events_after(client, before).await;
    assert!(
        events.is_empty(),
        "expected no events, got {:?}",
        summary(&events)
    );
}

/// Asserts that the events (of one call) share one timestamp.
pub(crate) fn assert_one_timestamp(events: &[ChangeEvent]) {
    let stamps: HashSet<i64> = events.iter().map(|e| e.timestamp_ms).collect();
    assert_eq!(
        stamps.len(),
        1,
        "the events of one call share one timestamp: {events:?}"
    );
}

/// `"FAMILY OPERATION"` for each event, e.g. `"THING CREATED"`; for the
/// jobs families `"JOB <kind>"` and `"JOB_EXECUTION <kind> <thing>"`.
pub(crate) fn summary(events: &[ChangeEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let family = match &e.event {
                Some(Event::Job(job)) => return format!("JOB {}", job.kind().as_str_name()),
                Some(Event::JobsNotify(n)) => {
                    let next: Vec<&str> = n
                        .in_progress
                        .iter()
                        .chain(&n.queued)
                        .map(|e| e.job_id.as_str())
                        .collect();
                    return format!("{} {} {next:?}", n.kind().as_str_name(), n.thing_name);
                }
                Some(Event::JobExecution(x)) => {
                    let thing = x.execution.as_ref().map_or("", |e| e.thing_name.as_str());
                    return format!("JOB_EXECUTION {} {thing}", x.kind().as_str_name());
                }
                Some(Event::Thing(_)) => "THING",
                Some(Event::ThingType(_)) => "THING_TYPE",
                Some(Event::ThingTypeAssociation(_)) => "THING_TYPE_ASSOCIATION",
                Some(Event::ThingGroup(_)) => "THING_GROUP",
                Some(Event::ThingGroupMembership(_)) => "THING_GROUP_MEMBERSHIP",
                Some(Event::ThingGroupHierarchy(_)) => "THING_GROUP_HIERARCHY",
                None => "NONE",
            };
            format!("{family} {}", e.operation().as_str_name())
        })
        .collect()
}

pub(crate) fn thing_event(e: &ChangeEvent) -> &ThingEvent {
    match &e.event {
        Some(Event::Thing(x)) => x,
        other => panic!("expected a THING event, got {other:?}"),
    }
}

pub(crate) fn thing_type_event(e: &ChangeEvent) -> &ThingTypeEvent {
    match &e.event {
        Some(Event::ThingType(x)) => x,
        other => panic!("expected a THING_TYPE event, got {other:?}"),
    }
}

pub(crate) fn association_event(e: &ChangeEvent) -> &ThingTypeAssociationEvent {
    match &e.event {
        Some(Event::ThingTypeAssociation(x)) => x,
        other => panic!("expected a THING_TYPE_ASSOCIATION event, got {other:?}"),
    }
}

pub(crate) fn group_event(e: &ChangeEvent) -> &ThingGroupEvent {
    match &e.event {
        Some(Event::ThingGroup(x)) => x,
        other => panic!("expected a THING_GROUP event, got {other:?}"),
    }
}

pub(crate) fn membership_event(e: &ChangeEvent) -> &ThingGroupMembershipEvent {
    match &e.event {
        Some(Event::ThingGroupMembership(x)) => x,
        other => panic!("expected a THING_GROUP_MEMBERSHIP event, got {other:?}"),
    }
}

pub(crate) fn hierarchy_event(e: &ChangeEvent) -> &ThingGroupHierarchyEvent {
    match &e.event {
        Some(Event::ThingGroupHierarchy(x)) => x,
        other => panic!("expected a THING_GROUP_HIERARCHY event, got {other:?}"),
    }
}

// ------------------------------------------------------------ thing helpers

pub(crate) fn thing_req(name: &str) -> CreateThingRequest {
    CreateThingRequest {
        thing_name: name.into(),
        ..Default::default()
    }
}

pub(crate) fn typed_thing_req(name: &str, thing_type: &str) -> CreateThingRequest {
    CreateThingRequest {
        thing_type_name: Some(thing_type.into()),
        ..thing_req(name)
    }
}

pub(crate) fn thing_with_attrs_req(name: &str, pairs: &[(&str, &str)]) -> CreateThingRequest {
    CreateThingRequest {
        attribute_payload: replace(pairs),
        ..thing_req(name)
    }
}

pub(crate) fn update_req(name: &str) -> UpdateThingRequest {
    UpdateThingRequest {
        thing_name: name.into(),
        ..Default::default()
    }
}

pub(crate) fn delete_req(name: &str) -> DeleteThingRequest {
    DeleteThingRequest {
        thing_name: name.into(),
        expected_version: None,
    }
}

pub(crate) fn describe_req(name: &str) -> DescribeThingRequest {
    DescribeThingRequest {
        thing_name: name.into(),
    }
}

/// Creates an untyped thing without attributes.
pub(crate) async fn create_thing(client: &mut Client, name: &str) -> CreateThingResponse {
    client
        .create_thing(thing_req(name))
        .await
        .unwrap()
        .into_inner()
}

pub(crate) async fn describe_thing(client: &mut Client, name: &str) -> Thing {
    client
        .describe_thing(describe_req(name))
        .await
        .unwrap()
        .into_inner()
}

pub(crate) async fn assert_no_thing(client: &mut Client, name: &str) {
    expect_err(
        client.describe_thing(describe_req(name)).await,
        ErrorType::ResourceNotFound,
    );
}

async fn thing_names(client: &mut Client, req: ListThingsRequest) -> Vec<String> {
    let resp = client.list_things(req).await.unwrap().into_inner();
    assert!(resp.next_token.is_empty(), "expected a single page");
    resp.things.into_iter().map(|t| t.thing_name).collect()
}

fn list_req() -> ListThingsRequest {
    ListThingsRequest::default()
}

// ------------------------------------------------------------ CreateThing

#[tokio::test]
async fn create_thing_answers_uuid_and_arn_and_describe_shows_version_1_and_default_client_id() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;

    let created = client
        .create_thing(thing_with_attrs_req("lamp", &[("color", "red")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.thing_name, "lamp");
    assert_uuid(&created.thing_id);
    assert_eq!(
        created.thing_arn,
        "arn:aws:iot:us-east-1:123456789012:thing/lamp"
    );

    let thing = describe_thing(&mut client, "lamp").await;
    assert_eq!(
        thing,
        Thing {
            thing_name: "lamp".into(),
            thing_id: created.thing_id.clone(),
            thing_arn: created.thing_arn.clone(),
            thing_type_name: None,
            attributes: attrs(&[("color", "red")]),
            version: 1,
            default_client_id: "lamp".into(),
            billing_group_name: None,
        }
    );

    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING CREATED"]);
    assert_eq!(events[0].account_id, ACCOUNT);
    assert_eq!(
        thing_event(&events[0]),
        &ThingEvent {
            thing_id: created.thing_id,
            thing_name: "lamp".into(),
            version_number: 1,
            thing_type_name: None,
            attributes: attrs(&[("color", "red")]),
        }
    );
    registry.stop().await;
}

#[tokio::test]
async fn create_two_things_gives_distinct_ids_and_consecutive_sequences() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;
    let a = create_thing(&mut client, "a").await;
    let b = create_thing(&mut client, "b").await;
    assert_ne!(a.thing_id, b.thing_id);
    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING CREATED", "THING CREATED"]);
    assert_eq!(thing_event(&events[0]).thing_name, "a");
    assert_eq!(thing_event(&events[1]).thing_name, "b");
    assert_eq!(last_sequence(&mut client).await, before + 2);
    registry.stop().await;
}

#[tokio::test]
async fn create_typed_thing_logs_thing_created_then_type_association_added() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_type(&mut client, "bulb").await;
    let before = last_sequence(&mut client).await;

    let created = client
        .create_thing(CreateThingRequest {
            attribute_payload: replace(&[("watts", "60")]),
            ..typed_thing_req("lamp", "bulb")
        })
        .await
        .unwrap()
        .into_inner();

    let thing = describe_thing(&mut client, "lamp").await;
    assert_eq!(thing.thing_type_name.as_deref(), Some("bulb"));
    assert_eq!(thing.attributes, attrs(&[("watts", "60")]));
    assert_eq!(thing.version, 1);

    let events = events_after(&mut client, before).await;
    assert_eq!(
        summary(&events),
        ["THING CREATED", "THING_TYPE_ASSOCIATION ADDED"]
    );
    assert_one_timestamp(&events);
    let created_event = thing_event(&events[0]);
    assert_eq!(created_event.thing_type_name.as_deref(), Some("bulb"));
    assert_eq!(created_event.version_number, 1);
    assert_eq!(created_event.attributes, attrs(&[("watts", "60")]));
    assert_eq!(
        association_event(&events[1]),
        &ThingTypeAssociationEvent {
            thing_id: created.thing_id,
            thing_name: "lamp".into(),
            thing_type_name: "bulb".into(),
        }
    );
    registry.stop().await;
}

#[tokio::test]
async fn create_thing_again_with_same_type_and_attributes_returns_same_id_without_new_version_or_event()
 {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_type(&mut client, "bulb").await;
    let req = CreateThingRequest {
        attribute_payload: replace(&[("a", "1"), ("b", "2")]),
        ..typed_thing_req("lamp", "bulb")
    };
    let first = client.create_thing(req.clone()).await.unwrap().into_inner();
    let described = describe_thing(&mut client, "lamp").await;
    let before = last_sequence(&mut client).await;

    let again = client.create_thing(req).await.unwrap().into_inner();
    assert_eq!(again, first);
    assert_eq!(describe_thing(&mut client, "lamp").await, described);
    assert_eq!(described.version, 1);
    assert_no_events_after(&mut client, before).await;

    // An untyped thing without attributes is idempotent too.
    let plain = create_thing(&mut client, "plain").await;
    let before = last_sequence(&mut client).await;
    assert_eq!(create_thing(&mut client, "plain").await, plain);
    assert_eq!(describe_thing(&mut client, "plain").await.version, 1);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn create_thing_again_with_different_attributes_or_type_is_refused_with_resource_id_and_arn()
{
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_type(&mut client, "bulb").await;
    create_type(&mut client, "switch").await;
    let created = client
        .create_thing(CreateThingRequest {
            attribute_payload: replace(&[("a", "1")]),
            ..typed_thing_req("lamp", "bulb")
        })
        .await
        .unwrap()
        .into_inner();
    let described = describe_thing(&mut client, "lamp").await;
    let before = last_sequence(&mut client).await;

    let conflicting = [
        CreateThingRequest {
            attribute_payload: replace(&[("a", "2")]),
            ..typed_thing_req("lamp", "bulb")
        },
        CreateThingRequest {
            attribute_payload: replace(&[("a", "1"), ("b", "1")]),
            ..typed_thing_req("lamp", "bulb")
        },
        typed_thing_req("lamp", "bulb"),
        CreateThingRequest {
            attribute_payload: replace(&[("a", "1")]),
            ..typed_thing_req("lamp", "switch")
        },
        thing_with_attrs_req("lamp", &[("a", "1")]),
    ];
    for req in conflicting {
        let err = expect_err(
            client.create_thing(req.clone()).await,
            ErrorType::ResourceAlreadyExists,
        );
        assert_eq!(
            err.resource_id.as_deref(),
            Some(created.thing_id.as_str()),
            "{req:?}"
        );
        assert_eq!(
            err.resource_arn.as_deref(),
            Some(created.thing_arn.as_str()),
            "{req:?}"
        );
    }
    assert_eq!(describe_thing(&mut client, "lamp").await, described);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn create_thing_with_unknown_type_or_billing_group_is_not_found_and_creates_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;

    expect_err(
        client
            .create_thing(typed_thing_req("lamp", "no-such-type"))
            .await,
        ErrorType::ResourceNotFound,
    );
    expect_err(
        client
            .create_thing(CreateThingRequest {
                billing_group_name: Some("billing".into()),
                ..thing_req("lamp")
            })
            .await,
        ErrorType::ResourceNotFound,
    );
    assert_no_thing(&mut client, "lamp").await;
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn create_thing_with_deprecated_type_is_refused_and_creates_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_type(&mut client, "old").await;
    deprecate_type(&mut client, "old", false).await;
    let before = last_sequence(&mut client).await;

    expect_err(
        client.create_thing(typed_thing_req("lamp", "old")).await,
        ErrorType::InvalidRequest,
    );
    assert_no_thing(&mut client, "lamp").await;
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn create_untyped_thing_allows_three_attributes_but_not_four() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;

    client
        .create_thing(thing_with_attrs_req(
            "three",
            &[("a", "1"), ("b", "2"), ("c", "3")],
        ))
        .await
        .unwrap();
    assert_eq!(
        describe_thing(&mut client, "three").await.attributes.len(),
        3
    );

    let before = last_sequence(&mut client).await;
    expect_err(
        client
            .create_thing(thing_with_attrs_req(
                "four",
                &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")],
            ))
            .await,
        ErrorType::InvalidRequest,
    );
    assert_no_thing(&mut client, "four").await;
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn create_typed_thing_allows_fifty_attributes_but_not_fifty_one() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_type(&mut client, "bulb").await;

    let fifty = CreateThingRequest {
        attribute_payload: Some(AttributePayload {
            attributes: many_attrs(50),
            merge: false,
        }),
        ..typed_thing_req("fifty", "bulb")
    };
    client.create_thing(fifty).await.unwrap();
    assert_eq!(
        describe_thing(&mut client, "fifty").await.attributes,
        many_attrs(50)
    );

    let before = last_sequence(&mut client).await;
    let fifty_one = CreateThingRequest {
        attribute_payload: Some(AttributePayload {
            attributes: many_attrs(51),
            merge: false,
        }),
        ..typed_thing_req("fifty-one", "bulb")
    };
    expect_err(
        client.create_thing(fifty_one).await,
        ErrorType::InvalidRequest,
    );
    assert_no_thing(&mut client, "fifty-one").await;
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn create_thing_with_invalid_name_is_refused_and_valid_edge_names_are_accepted() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;

    for name in invalid_names() {
        let result = client.create_thing(thing_req(&name)).await;
        assert!(result.is_err(), "{name:?} was accepted");
        expect_err(result, ErrorType::InvalidRequest);
    }
    assert!(thing_names(&mut client, list_req()).await.is_empty());
    assert_no_events_after(&mut client, before).await;

    for name in valid_edge_names() {
        let created = create_thing(&mut client, &name).await;
        assert_eq!(created.thing_arn, arn("thing", &name));
        assert_eq!(
            describe_thing(&mut client, &name).await.default_client_id,
            name
        );
    }
    registry.stop().await;
}

#[tokio::test]
async fn create_thing_with_invalid_attribute_name_or_value_is_refused() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;

    let long_name = "n".repeat(129);
    let long_value = "v".repeat(801);
    let invalid: [(&str, &str); 9] = [
        ("", "v"),
        ("bad name", "v"),
        (&long_name, "v"),
        ("bad=name", "v"),
        ("bad[name]", "v"),
        ("ok", "bad value"),
        ("ok", &long_value),
        ("ok", "bad\"quote"),
        ("ok", "ümlaut"),
    ];
    for (i, (name, value)) in invalid.into_iter().enumerate() {
        let thing = format!("bad-{i}");
        let result = client
            .create_thing(thing_with_attrs_req(&thing, &[(name, value)]))
            .await;
        assert!(result.is_err(), "attribute {name:?}={value:?} was accepted");
        expect_err(result, ErrorType::InvalidRequest);
        assert_no_thing(&mut client, &thing).await;
    }
    assert_no_events_after(&mut client, before).await;

    let max_name = "n".repeat(128);
    let max_value = "v".repeat(800);
    let valid: [(&str, &str); 3] = [
        ("a_.,@/:#-Z9", "v_.,@/:#=[]-Z9"),
        (&max_name, "v"),
        ("ok", &max_value),
    ];
    for (i, (name, value)) in valid.into_iter().enumerate() {
        let thing = format!("good-{i}");
        client
            .create_thing(thing_with_attrs_req(&thing, &[(name, value)]))
            .await
            .unwrap();
        assert_eq!(
            describe_thing(&mut client, &thing).await.attributes,
            attrs(&[(name, value)])
        );
    }
    registry.stop().await;
}

#[tokio::test]
async fn describe_missing_thing_is_not_found() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    assert_no_thing(&mut client, "nobody").await;
    create_thing(&mut client, "somebody").await;
    assert_no_thing(&mut client, "nobody").await;
    registry.stop().await;
}

#[tokio::test]
async fn arns_and_events_name_the_configured_region_and_account() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_test(dir.path().join("registry"));
    settings.account_id = "210987654321".into();
    settings.region = "eu-west-1".into();
    let registry = TestRegistry::start_in(dir, settings).await;
    let mut client = registry.client().await;

    let created = create_thing(&mut client, "lamp").await;
    assert_eq!(
        created.thing_arn,
        "arn:aws:iot:eu-west-1:210987654321:thing/lamp"
    );
    assert_eq!(
        describe_thing(&mut client, "lamp").await.thing_arn,
        created.thing_arn
    );
    let events = events_after(&mut client, 0).await;
    assert_eq!(summary(&events), ["THING CREATED"]);
    assert_eq!(events[0].account_id, "210987654321");
    registry.stop().await;
}

// ------------------------------------------------------------ UpdateThing

#[tokio::test]
async fn update_thing_without_merge_replaces_attributes_adds_one_to_version_and_logs_updated() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let created = client
        .create_thing(thing_with_attrs_req("lamp", &[("a", "1"), ("b", "2")]))
        .await
        .unwrap()
        .into_inner();
    let before = last_sequence(&mut client).await;

    client
        .update_thing(UpdateThingRequest {
            attribute_payload: replace(&[("c", "3")]),
            ..update_req("lamp")
        })
        .await
        .unwrap();
    let thing = describe_thing(&mut client, "lamp").await;
    assert_eq!(thing.attributes, attrs(&[("c", "3")]));
    assert_eq!(thing.version, 2);
    assert_eq!(thing.thing_id, created.thing_id);

    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING UPDATED"]);
    assert_eq!(
        thing_event(&events[0]),
        &ThingEvent {
            thing_id: created.thing_id,
            thing_name: "lamp".into(),
            version_number: 2,
            thing_type_name: None,
            attributes: attrs(&[("c", "3")]),
        }
    );

    // Every successful update counts, even one that changes nothing else.
    let before = last_sequence(&mut client).await;
    client.update_thing(update_req("lamp")).await.unwrap();
    assert_eq!(describe_thing(&mut client, "lamp").await.version, 3);
    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING UPDATED"]);
    assert_eq!(thing_event(&events[0]).version_number, 3);
    registry.stop().await;
}

#[tokio::test]
async fn update_thing_with_merge_merges_and_an_empty_value_removes_the_attribute() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    client
        .create_thing(thing_with_attrs_req("lamp", &[("a", "1"), ("b", "2")]))
        .await
        .unwrap();

    client
        .update_thing(UpdateThingRequest {
            attribute_payload: merge(&[("b", "20"), ("c", "3")]),
            ..update_req("lamp")
        })
        .await
        .unwrap();
    let thing = describe_thing(&mut client, "lamp").await;
    assert_eq!(
        thing.attributes,
        attrs(&[("a", "1"), ("b", "20"), ("c", "3")])
    );
    assert_eq!(thing.version, 2);

    let before = last_sequence(&mut client).await;
    client
        .update_thing(UpdateThingRequest {
            attribute_payload: merge(&[("a", "")]),
            ..update_req("lamp")
        })
        .await
        .unwrap();
    let thing = describe_thing(&mut client, "lamp").await;
    assert_eq!(thing.attributes, attrs(&[("b", "20"), ("c", "3")]));
    assert_eq!(thing.version, 3);
    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING UPDATED"]);
    assert_eq!(
        thing_event(&events[0]).attributes,
        attrs(&[("b", "20"), ("c", "3")])
    );

    // Replacing with an empty value does not store that attribute either.
    client
        .update_thing(UpdateThingRequest {
            attribute_payload: replace(&[("x", "1"), ("y", "")]),
            ..update_req("lamp")
        })
        .await
        .unwrap();
    let thing = describe_thing(&mut client, "lamp").await;
    assert_eq!(thing.attributes, attrs(&[("x", "1")]));
    assert_eq!(thing.version, 4);
    registry.stop().await;
}

#[tokio::test]
async fn update_missing_thing_is_not_found_and_creates_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;
    expect_err(
        client
            .update_thing(UpdateThingRequest {
                attribute_payload: replace(&[("a", "1")]),
                ..update_req("ghost")
            })
            .await,
        ErrorType::ResourceNotFound,
    );
    expect_err(
        client
            .update_thing(UpdateThingRequest {
                expected_version: Some(1),
                ..update_req("ghost")
            })
            .await,
        ErrorType::ResourceNotFound,
    );
    assert_no_thing(&mut client, "ghost").await;
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn update_thing_with_wrong_expected_version_is_refused_and_changes_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    client
        .create_thing(thing_with_attrs_req("lamp", &[("a", "1")]))
        .await
        .unwrap();
    let described = describe_thing(&mut client, "lamp").await;
    let before = last_sequence(&mut client).await;

    for wrong in [0, 2, 7, -1] {
        let req = UpdateThingRequest {
            attribute_payload: replace(&[("a", "2")]),
            expected_version: Some(wrong),
            ..update_req("lamp")
        };
        expect_err(client.update_thing(req).await, ErrorType::VersionConflict);
    }
    assert_eq!(describe_thing(&mut client, "lamp").await, described);
    assert_no_events_after(&mut client, before).await;

    // The right version succeeds, and then the old one is stale.
    let req = UpdateThingRequest {
        attribute_payload: replace(&[("a", "2")]),
        expected_version: Some(1),
        ..update_req("lamp")
    };
    client.update_thing(req.clone()).await.unwrap();
    let thing = describe_thing(&mut client, "lamp").await;
    assert_eq!(thing.version, 2);
    assert_eq!(thing.attributes, attrs(&[("a", "2")]));
    expect_err(client.update_thing(req).await, ErrorType::VersionConflict);
    assert_eq!(describe_thing(&mut client, "lamp").await, thing);
    registry.stop().await;
}

#[tokio::test]
async fn update_thing_with_remove_thing_type_and_a_type_name_together_is_refused_and_changes_nothing()
 {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_type(&mut client, "bulb").await;
    create_type(&mut client, "switch").await;
    client
        .create_thing(typed_thing_req("lamp", "bulb"))
        .await
        .unwrap();
    let described = describe_thing(&mut client, "lamp").await;
    let before = last_sequence(&mut client).await;

    let req = UpdateThingRequest {
        thing_type_name: Some("switch".into()),
        remove_thing_type: true,
        ..update_req("lamp")
    };
    expect_err(client.update_thing(req).await, ErrorType::InvalidRequest);
    assert_eq!(describe_thing(&mut client, "lamp").await, described);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn update_thing_to_unknown_type_is_not_found_and_to_deprecated_type_is_refused() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_type(&mut client, "bulb").await;
    create_type(&mut client, "old").await;
    deprecate_type(&mut client, "old", false).await;
    client
        .create_thing(typed_thing_req("lamp", "bulb"))
        .await
        .unwrap();
    create_thing(&mut client, "plain").await;
    let lamp = describe_thing(&mut client, "lamp").await;
    let plain = describe_thing(&mut client, "plain").await;
    let before = last_sequence(&mut client).await;

    for name in ["lamp", "plain"] {
        let to_unknown = UpdateThingRequest {
            thing_type_name: Some("nope".into()),
            ..update_req(name)
        };
        expect_err(
            client.update_thing(to_unknown).await,
            ErrorType::ResourceNotFound,
        );
        let to_deprecated = UpdateThingRequest {
            thing_type_name: Some("old".into()),
            attribute_payload: merge(&[("z", "1")]),
            ..update_req(name)
        };
        expect_err(
            client.update_thing(to_deprecated).await,
            ErrorType::InvalidRequest,
        );
    }
    assert_eq!(describe_thing(&mut client, "lamp").await, lamp);
    assert_eq!(describe_thing(&mut client, "plain").await, plain);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn update_thing_with_a_new_type_logs_updated_then_association_removed_then_added() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_type(&mut client, "bulb").await;
    create_type(&mut client, "switch").await;
    let created = client
        .create_thing(typed_thing_req("lamp", "bulb"))
        .await
        .unwrap()
        .into_inner();
    let before = last_sequence(&mut client).await;

    client
        .update_thing(UpdateThingRequest {
            thing_type_name: Some("switch".into()),
            ..update_req("lamp")
        })
        .await
        .unwrap();
    let thing = describe_thing(&mut client, "lamp").await;
    assert_eq!(thing.thing_type_name.as_deref(), Some("switch"));
    assert_eq!(thing.version, 2);

    let events = events_after(&mut client, before).await;
    assert_eq!(
        summary(&events),
        [
            "THING UPDATED",
            "THING_TYPE_ASSOCIATION REMOVED",
            "THING_TYPE_ASSOCIATION ADDED"
        ]
    );
    assert_one_timestamp(&events);
    assert_eq!(
        thing_event(&events[0]).thing_type_name.as_deref(),
        Some("switch")
    );
    assert_eq!(thing_event(&events[0]).version_number, 2);
    let removed = association_event(&events[1]);
    assert_eq!(
        (
            removed.thing_name.as_str(),
            removed.thing_type_name.as_str()
        ),
        ("lamp", "bulb")
    );
    assert_eq!(removed.thing_id, created.thing_id);
    let added = association_event(&events[2]);
    assert_eq!(
        (added.thing_name.as_str(), added.thing_type_name.as_str()),
        ("lamp", "switch")
    );
    assert_eq!(added.thing_id, created.thing_id);
    registry.stop().await;
}

#[tokio::test]
async fn update_untyped_thing_with_a_type_logs_updated_then_association_added_only() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_type(&mut client, "bulb").await;
    create_thing(&mut client, "lamp").await;
    let before = last_sequence(&mut client).await;

    // A typed thing may carry more than three attributes.
    let req = UpdateThingRequest {
        thing_type_name: Some("bulb".into()),
        attribute_payload: Some(AttributePayload {
            attributes: many_attrs(10),
            merge: true,
        }),
        ..update_req("lamp")
    };
    client.update_thing(req).await.unwrap();
    let thing = describe_thing(&mut client, "lamp").await;
    assert_eq!(thing.thing_type_name.as_deref(), Some("bulb"));
    assert_eq!(thing.attributes, many_attrs(10));

    let events = events_after(&mut client, before).await;
    assert_eq!(
        summary(&events),
        ["THING UPDATED", "THING_TYPE_ASSOCIATION ADDED"]
    );
    assert_eq!(association_event(&events[1]).thing_type_name, "bulb");
    registry.stop().await;
}

#[tokio::test]
async fn update_thing_with_remove_thing_type_clears_the_type_and_logs_updated_then_association_removed()
 {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_type(&mut client, "bulb").await;
    client
        .create_thing(typed_thing_req("lamp", "bulb"))
        .await
        .unwrap();
    let before = last_sequence(&mut client).await;

    client
        .update_thing(UpdateThingRequest {
            remove_thing_type: true,
            ..update_req("lamp")
        })
        .await
        .unwrap();
    let thing = describe_thing(&mut client, "lamp").await;
    assert_eq!(thing.thing_type_name, None);
    assert_eq!(thing.version, 2);

    let events = events_after(&mut client, before).await;
    assert_eq!(
        summary(&events),
        ["THING UPDATED", "THING_TYPE_ASSOCIATION REMOVED"]
    );
    assert_eq!(thing_event(&events[0]).thing_type_name, None);
    assert_eq!(association_event(&events[1]).thing_type_name, "bulb");
    registry.stop().await;
}

#[tokio::test]
async fn update_thing_beyond_the_attribute_limit_is_refused_and_changes_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_type(&mut client, "bulb").await;
    client
        .create_thing(thing_with_attrs_req(
            "plain",
            &[("a", "1"), ("b", "2"), ("c", "3")],
        ))
        .await
        .unwrap();
    let typed = CreateThingRequest {
        attribute_payload: Some(AttributePayload {
            attributes: many_attrs(50),
            merge: false,
        }),
        ..typed_thing_req("typed", "bulb")
    };
    client.create_thing(typed).await.unwrap();
    let plain = describe_thing(&mut client, "plain").await;
    let typed = describe_thing(&mut client, "typed").await;
    let before = last_sequence(&mut client).await;

    expect_err(
        client
            .update_thing(UpdateThingRequest {
                attribute_payload: merge(&[("d", "4")]),
                ..update_req("plain")
            })
            .await,
        ErrorType::InvalidRequest,
    );
    expect_err(
        client
            .update_thing(UpdateThingRequest {
                attribute_payload: replace(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]),
                ..update_req("plain")
            })
            .await,
        ErrorType::InvalidRequest,
    );
    expect_err(
        client
            .update_thing(UpdateThingRequest {
                attribute_payload: merge(&[("extra", "1")]),
                ..update_req("typed")
            })
            .await,
        ErrorType::InvalidRequest,
    );
    assert_eq!(describe_thing(&mut client, "plain").await, plain);
    assert_eq!(describe_thing(&mut client, "typed").await, typed);
    assert_no_events_after(&mut client, before).await;

    // The limit counts the resulting set: adding one while removing one is fine.
    client
        .update_thing(UpdateThingRequest {
            attribute_payload: merge(&[("d", "4"), ("a", "")]),
            ..update_req("plain")
        })
        .await
        .unwrap();
    assert_eq!(
        describe_thing(&mut client, "plain").await.attributes,
        attrs(&[("b", "2"), ("c", "3"), ("d", "4")])
    );
    registry.stop().await;
}

#[tokio::test]
async fn update_thing_with_invalid_attribute_is_refused_and_changes_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    client
        .create_thing(thing_with_attrs_req("lamp", &[("a", "1")]))
        .await
        .unwrap();
    let described = describe_thing(&mut client, "lamp").await;
    let before = last_sequence(&mut client).await;

    let long_value = "v".repeat(801);
    for (name, value) in [
        ("bad name", "1"),
        ("ok", "bad value"),
        ("ok", long_value.as_str()),
    ] {
        let req = UpdateThingRequest {
            attribute_payload: merge(&[(name, value)]),
            ..update_req("lamp")
        };
        expect_err(client.update_thing(req).await, ErrorType::InvalidRequest);
    }
    assert_eq!(describe_thing(&mut client, "lamp").await, described);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_with_the_same_expected_version_let_exactly_one_win() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_thing(&mut client, "contended").await;
    let before = last_sequence(&mut client).await;

    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..16 {
        let mut client = registry.client().await;
        let barrier = barrier.clone();
        tasks.spawn(async move {
            let req = UpdateThingRequest {
                attribute_payload: replace(&[("writer", &writer.to_string())]),
                expected_version: Some(1),
                ..update_req("contended")
            };
            barrier.wait().await;
            (writer, client.update_thing(req).await)
        });
    }
    let results = tasks.join_all().await;

    let mut winners = Vec::new();
    for (writer, result) in results {
        match result {
            Ok(_) => winners.push(writer),
            Err(status) => {
                let err = AwsError::from_status(&status);
                assert_eq!(
                    err.error_type,
                    ErrorType::VersionConflict,
                    "writer {writer}: {err}"
                );
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one update wins: {winners:?}");
    let thing = describe_thing(&mut client, "contended").await;
    assert_eq!(thing.version, 2);
    assert_eq!(
        thing.attributes,
        attrs(&[("writer", &winners[0].to_string())])
    );

    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING UPDATED"]);
    assert_eq!(thing_event(&events[0]).version_number, 2);
    assert_eq!(thing_event(&events[0]).attributes, thing.attributes);
    registry.stop().await;
}

// ------------------------------------------------------------ DeleteThing

#[tokio::test]
async fn delete_thing_removes_it_and_logs_deleted_with_last_state_then_association_removed() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_type(&mut client, "bulb").await;
    let created = client
        .create_thing(CreateThingRequest {
            attribute_payload: replace(&[("a", "1")]),
            ..typed_thing_req("lamp", "bulb")
        })
        .await
        .unwrap()
        .into_inner();
    client
        .update_thing(UpdateThingRequest {
            attribute_payload: merge(&[("b", "2")]),
            ..update_req("lamp")
        })
        .await
        .unwrap();
    let before = last_sequence(&mut client).await;

    client
        .delete_thing(DeleteThingRequest {
            expected_version: Some(2),
            ..delete_req("lamp")
        })
        .await
        .unwrap();
    assert_no_thing(&mut client, "lamp").await;
    assert!(thing_names(&mut client, list_req()).await.is_empty());

    let events = events_after(&mut client, before).await;
    assert_eq!(
        summary(&events),
        ["THING DELETED", "THING_TYPE_ASSOCIATION REMOVED"]
    );
    assert_one_timestamp(&events);
    assert_eq!(
        thing_event(&events[0]),
        &ThingEvent {
            thing_id: created.thing_id.clone(),
            thing_name: "lamp".into(),
            version_number: 2,
            thing_type_name: Some("bulb".into()),
            attributes: attrs(&[("a", "1"), ("b", "2")]),
        }
    );
    assert_eq!(
        association_event(&events[1]),
        &ThingTypeAssociationEvent {
            thing_id: created.thing_id.clone(),
            thing_name: "lamp".into(),
            thing_type_name: "bulb".into()
        }
    );

    // The name is free again: a new thing gets a new id and version 1.
    let again = create_thing(&mut client, "lamp").await;
    assert_ne!(again.thing_id, created.thing_id);
    assert_eq!(describe_thing(&mut client, "lamp").await.version, 1);
    registry.stop().await;
}

#[tokio::test]
async fn delete_untyped_thing_logs_only_thing_deleted() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_thing(&mut client, "lamp").await;
    let before = last_sequence(&mut client).await;
    client.delete_thing(delete_req("lamp")).await.unwrap();
    assert_no_thing(&mut client, "lamp").await;
    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING DELETED"]);
    assert_eq!(thing_event(&events[0]).version_number, 1);
    registry.stop().await;
}

#[tokio::test]
async fn delete_missing_thing_succeeds_and_logs_nothing_even_with_expected_version() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_thing(&mut client, "other").await;
    let before = last_sequence(&mut client).await;

    client.delete_thing(delete_req("ghost")).await.unwrap();
    client
        .delete_thing(DeleteThingRequest {
            expected_version: Some(3),
            ..delete_req("ghost")
        })
        .await
        .unwrap();
    assert_no_events_after(&mut client, before).await;
    assert_eq!(describe_thing(&mut client, "other").await.version, 1);
    registry.stop().await;
}

#[tokio::test]
async fn delete_thing_with_wrong_expected_version_is_refused_and_changes_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    client
        .create_thing(thing_with_attrs_req("lamp", &[("a", "1")]))
        .await
        .unwrap();
    let described = describe_thing(&mut client, "lamp").await;
    let before = last_sequence(&mut client).await;

    for wrong in [0, 2, 5] {
        expect_err(
            client
                .delete_thing(DeleteThingRequest {
                    expected_version: Some(wrong),
                    ..delete_req("lamp")
                })
                .await,
            ErrorType::VersionConflict,
        );
    }
    assert_eq!(describe_thing(&mut client, "lamp").await, described);
    assert_no_events_after(&mut client, before).await;

    client
        .delete_thing(DeleteThingRequest {
            expected_version: Some(1),
            ..delete_req("lamp")
        })
        .await
        .unwrap();
    assert_no_thing(&mut client, "lamp").await;
    registry.stop().await;
}

// ------------------------------------------------------------ ListThings

#[tokio::test]
async fn list_things_is_sorted_by_name_and_pages_walk_every_thing_exactly_once() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    // Created out of order.
    for name in ["t5", "t2", "t7", "t1", "t6", "t3", "t4"] {
        create_thing(&mut client, name).await;
    }

    let pages = walk_pages(|token| {
        let mut client = client.clone();
        async move {
            let resp = client
                .list_things(ListThingsRequest {
                    page: page(3, &token),
                    ..list_req()
                })
                .await
                .unwrap()
                .into_inner();
            (
                resp.things.into_iter().map(|t| t.thing_name).collect(),
                resp.next_token,
            )
        }
    })
    .await;
    assert_eq!(pages.len(), 3);
    assert_paged(&pages, 3, &names("t", 7));

    // Without a page size everything fits in the default page.
    assert_eq!(thing_names(&mut client, list_req()).await, names("t", 7));
    registry.stop().await;
}

#[tokio::test]
async fn list_things_default_page_holds_fifty() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let mut all: Vec<String> = (0..53).map(|i| format!("thing-{i:02}")).collect();
    for name in &all {
        create_thing(&mut client, name).await;
    }
    all.sort();

    let first = client.list_things(list_req()).await.unwrap().into_inner();
    assert_eq!(first.things.len(), 50);
    assert!(!first.next_token.is_empty());
    let second = client
        .list_things(ListThingsRequest {
            page: page(0, &first.next_token),
            ..list_req()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.next_token, "");
    let listed: Vec<String> = first
        .things
        .into_iter()
        .chain(second.things)
        .map(|t| t.thing_name)
        .collect();
    assert_eq!(listed, all);
    registry.stop().await;
}

#[tokio::test]
async fn list_things_accepts_max_results_from_1_to_250_and_refuses_others() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    for name in names("t", 3) {
        create_thing(&mut client, &name).await;
    }

    let one = client
        .list_things(ListThingsRequest {
            page: page(1, ""),
            ..list_req()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.things.len(), 1);
    assert_eq!(one.things[0].thing_name, "t1");
    assert!(!one.next_token.is_empty());
    let max = client
        .list_things(ListThingsRequest {
            page: page(250, ""),
            ..list_req()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(max.things.len(), 3);
    assert_eq!(max.next_token, "");

    for bad in [251, 1000, u32::MAX] {
        expect_err(
            client
                .list_things(ListThingsRequest {
                    page: page(bad, ""),
                    ..list_req()
                })
                .await,
            ErrorType::InvalidRequest,
        );
    }
    registry.stop().await;
}

#[tokio::test]
async fn list_things_refuses_a_next_token_it_did_not_hand_out() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    for name in names("t", 3) {
        create_thing(&mut client, &name).await;
    }
    for token in ["garbage", "AAAA", "t2", "{\"after\":\"t1\"}"] {
        expect_err(
            client
                .list_things(ListThingsRequest {
                    page: page(2, token),
                    ..list_req()
                })
                .await,
            ErrorType::InvalidRequest,
        );
    }
    registry.stop().await;
}

#[tokio::test]
async fn list_things_filters_by_attribute_value_or_prefix_and_by_type() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_type(&mut client, "bulb").await;
    client
        .create_thing(thing_with_attrs_req("f1", &[("color", "red")]))
        .await
        .unwrap();
    client
        .create_thing(thing_with_attrs_req("f2", &[("color", "reddish")]))
        .await
        .unwrap();
    client
        .create_thing(thing_with_attrs_req(
            "f3",
            &[("color", "blue"), ("shade", "red")],
        ))
        .await
        .unwrap();
    client
        .create_thing(CreateThingRequest {
            attribute_payload: replace(&[("color", "red")]),
            ..typed_thing_req("f4", "bulb")
        })
        .await
        .unwrap();
    client
        .create_thing(typed_thing_req("f5", "bulb"))
        .await
        .unwrap();

    let by_attr = |value: &str, prefix: bool| ListThingsRequest {
        attribute_name: Some("color".into()),
        attribute_value: Some(value.into()),
        use_prefix_attribute_value: prefix,
        ..list_req()
    };
    assert_eq!(
        thing_names(&mut client, by_attr("red", false)).await,
        ["f1", "f4"]
    );
    assert_eq!(
        thing_names(&mut client, by_attr("red", true)).await,
        ["f1", "f2", "f4"]
    );
    assert_eq!(
        thing_names(&mut client, by_attr("re", false)).await,
        Vec::<String>::new()
    );
    assert_eq!(
        thing_names(&mut client, by_attr("green", true)).await,
        Vec::<String>::new()
    );

    let by_type = ListThingsRequest {
        thing_type_name: Some("bulb".into()),
        ..list_req()
    };
    assert_eq!(
        thing_names(&mut client, by_type.clone()).await,
        ["f4", "f5"]
    );
    let both = ListThingsRequest {
        thing_type_name: Some("bulb".into()),
        ..by_attr("red", false)
    };
    assert_eq!(thing_names(&mut client, both).await, ["f4"]);

    // Filters and pages combine.
    let pages = walk_pages(|token| {
        let mut client = client.clone();
        async move {
            let req = ListThingsRequest {
                attribute_name: Some("color".into()),
                attribute_value: Some("red".into()),
                use_prefix_attribute_value: true,
                page: page(2, &token),
                ..list_req()
            };
            let resp = client.list_things(req).await.unwrap().into_inner();
            (
                resp.things.into_iter().map(|t| t.thing_name).collect(),
                resp.next_token,
            )
        }
    })
    .await;
    assert_eq!(pages.concat(), ["f1", "f2", "f4"]);
    assert!(pages.iter().all(|p| p.len() <= 2));
    registry.stop().await;
}

#[tokio::test]
async fn list_things_summaries_carry_type_arn_attributes_and_version() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_type(&mut client, "bulb").await;
    client
        .create_thing(CreateThingRequest {
            attribute_payload: replace(&[("a", "1")]),
            ..typed_thing_req("lamp", "bulb")
        })
        .await
        .unwrap();
    client
        .update_thing(UpdateThingRequest {
            attribute_payload: merge(&[("b", "2")]),
            ..update_req("lamp")
        })
        .await
        .unwrap();
    create_thing(&mut client, "plain").await;

    let things = client
        .list_things(list_req())
        .await
        .unwrap()
        .into_inner()
        .things;
    assert_eq!(
        things,
        [
            ThingSummary {
                thing_name: "lamp".into(),
                thing_type_name: Some("bulb".into()),
                thing_arn: arn("thing", "lamp"),
                attributes: attrs(&[("a", "1"), ("b", "2")]),
                version: 2,
            },
            ThingSummary {
                thing_name: "plain".into(),
                thing_type_name: None,
                thing_arn: arn("thing", "plain"),
                attributes: HashMap::new(),
                version: 1,
            },
        ]
    );
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_identical_creates_create_the_thing_once_with_one_event() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;

    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut client = registry.client().await;
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            client
                .create_thing(thing_with_attrs_req("lamp", &[("a", "1")]))
                .await
        });
    }
    let ids: HashSet<String> = tasks
        .join_all()
        .await
        .into_iter()
        .map(|r| {
            r.expect("an identical create succeeds")
                .into_inner()
                .thing_id
        })
        .collect();
    assert_eq!(ids.len(), 1, "every caller gets the same id: {ids:?}");
    let thing = describe_thing(&mut client, "lamp").await;
    assert!(ids.contains(&thing.thing_id));
    assert_eq!(thing.version, 1);
    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING CREATED"]);
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conflicting_creates_let_exactly_one_win() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;

    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..8 {
        let mut client = registry.client().await;
        let barrier = barrier.clone();
        tasks.spawn(async move {
            let req = thing_with_attrs_req("lamp", &[("writer", &writer.to_string())]);
            barrier.wait().await;
            (writer, client.create_thing(req).await)
        });
    }
    let mut winners = Vec::new();
    let mut refused_ids = HashSet::new();
    for (writer, result) in tasks.join_all().await {
        match result {
            Ok(resp) => winners.push((writer, resp.into_inner().thing_id)),
            Err(status) => {
                let err = AwsError::from_status(&status);
                assert_eq!(
                    err.error_type,
                    ErrorType::ResourceAlreadyExists,
                    "writer {writer}: {err}"
                );
                refused_ids.insert(err.resource_id.expect("a resource id"));
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create wins: {winners:?}");
    let (writer, id) = winners.pop().unwrap();
    assert_eq!(
        refused_ids,
        HashSet::from([id.clone()]),
        "the losers are told the winner's id"
    );
    let thing = describe_thing(&mut client, "lamp").await;
    assert_eq!(thing.thing_id, id);
    assert_eq!(thing.attributes, attrs(&[("writer", &writer.to_string())]));
    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING CREATED"]);
    registry.stop().await;
}
