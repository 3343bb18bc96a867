//! Thing group membership: add, remove, update in bulk, and the lists both ways.

use std::collections::BTreeSet;

use herald_proto::{error::ErrorType, registry::v1::*};

use crate::{
    groups::{create_group, describe_group},
    support::{Client, TestRegistry, expect_err},
    things::{
        arn, assert_no_events_after, assert_one_timestamp, assert_paged, create_thing, delete_req,
        events_after, last_sequence, membership_event, names, page, summary, walk_pages,
    },
};

// ------------------------------------------------------------ helpers

pub(crate) fn add_req(group: &str, thing: &str) -> AddThingToThingGroupRequest {
    AddThingToThingGroupRequest {
        thing_group_name: Some(group.into()),
        thing_name: Some(thing.into()),
        ..Default::default()
    }
}

fn remove_req(group: &str, thing: &str) -> RemoveThingFromThingGroupRequest {
    RemoveThingFromThingGroupRequest {
        thing_group_name: Some(group.into()),
        thing_name: Some(thing.into()),
        ..Default::default()
    }
}

fn update_groups_req(
    thing: &str,
    add: &[&str],
    remove: &[&str],
) -> UpdateThingGroupsForThingRequest {
    UpdateThingGroupsForThingRequest {
        thing_name: thing.into(),
        thing_groups_to_add: add.iter().map(|g| g.to_string()).collect(),
        thing_groups_to_remove: remove.iter().map(|g| g.to_string()).collect(),
        override_dynamic_groups: false,
    }
}

pub(crate) async fn add_to_group(client: &mut Client, group: &str, thing: &str) {
    client
        .add_thing_to_thing_group(add_req(group, thing))
        .await
        .unwrap();
}

/// The direct groups of a thing, as listed.
pub(crate) async fn groups_of(client: &mut Client, thing: &str) -> Vec<String> {
    let resp = client
        .list_thing_groups_for_thing(ListThingGroupsForThingRequest {
            thing_name: thing.into(),
            page: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.next_token.is_empty(), "expected a single page");
    resp.thing_groups
        .into_iter()
        .map(|g| g.group_name)
        .collect()
}

/// The things in a group (and its descendants if `recursive`), as listed.
pub(crate) async fn things_in(client: &mut Client, group: &str, recursive: bool) -> Vec<String> {
    let resp = client
        .list_things_in_thing_group(ListThingsInThingGroupRequest {
            thing_group_name: group.into(),
            recursive,
            page: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.next_token.is_empty(), "expected a single page");
    resp.things
}

/// `(operation, group, thing, membership id)` of membership events, sorted.
fn memberships(events: &[ChangeEvent]) -> Vec<(String, String, String, String)> {
    let mut all: Vec<_> = events
        .iter()
        .map(|e| {
            let m = membership_event(e);
            (
                e.operation().as_str_name().to_string(),
                m.thing_group_name.clone(),
                m.thing_name.clone(),
                m.membership_id.clone(),
            )
        })
        .collect();
    all.sort();
    all
}

/// `(operation, group)` of membership events, sorted.
fn membership_ops(events: &[ChangeEvent]) -> Vec<(String, String)> {
    memberships(events)
        .into_iter()
        .map(|(op, group, _, _)| (op, group))
        .collect()
}

fn op(operation: &str, group: &str) -> (String, String) {
    (operation.to_string(), group.to_string())
}

// ------------------------------------------------------------ AddThingToThingGroup

#[tokio::test]
async fn add_thing_to_group_by_name_lists_it_both_ways_and_logs_added() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let group = create_group(&mut client, "red", None).await;
    let thing = create_thing(&mut client, "lamp").await;
    let before = last_sequence(&mut client).await;

    add_to_group(&mut client, "red", "lamp").await;
    assert_eq!(things_in(&mut client, "red", false).await, ["lamp"]);
    let listed = client
        .list_thing_groups_for_thing(ListThingGroupsForThingRequest {
            thing_name: "lamp".into(),
            page: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.thing_groups,
        [GroupNameAndArn {
            group_name: "red".into(),
            group_arn: group.thing_group_arn.clone()
        }]
    );

    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING_GROUP_MEMBERSHIP ADDED"]);
    assert_eq!(events[0].account_id, crate::things::ACCOUNT);
    let event = membership_event(&events[0]);
    assert!(!event.membership_id.is_empty(), "a membership has an id");
    assert_eq!(
        event,
        &ThingGroupMembershipEvent {
            group_arn: group.thing_group_arn,
            group_id: group.thing_group_id,
            thing_arn: thing.thing_arn,
            thing_id: thing.thing_id,
            membership_id: event.membership_id.clone(),
            thing_group_name: "red".into(),
            thing_name: "lamp".into(),
        }
    );
    // Membership does not touch the thing's or the group's version.
    assert_eq!(
        crate::things::describe_thing(&mut client, "lamp")
            .await
            .version,
        1
    );
    assert_eq!(describe_group(&mut client, "red").await.version, 1);
    registry.stop().await;
}

#[tokio::test]
async fn add_and_remove_accept_group_and_thing_arns() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let group = create_group(&mut client, "red", None).await;
    let thing = create_thing(&mut client, "lamp").await;

    client
        .add_thing_to_thing_group(AddThingToThingGroupRequest {
            thing_group_arn: Some(group.thing_group_arn.clone()),
            thing_arn: Some(thing.thing_arn.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(groups_of(&mut client, "lamp").await, ["red"]);

    client
        .remove_thing_from_thing_group(RemoveThingFromThingGroupRequest {
            thing_group_arn: Some(group.thing_group_arn.clone()),
            thing_arn: Some(thing.thing_arn.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(groups_of(&mut client, "lamp").await.is_empty());

    // Mixed: group by name, thing by ARN.
    client
        .add_thing_to_thing_group(AddThingToThingGroupRequest {
            thing_group_name: Some("red".into()),
            thing_arn: Some(thing.thing_arn),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(things_in(&mut client, "red", false).await, ["lamp"]);
    registry.stop().await;
}

#[tokio::test]
async fn add_without_group_or_thing_identifier_is_invalid_and_changes_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "red", None).await;
    create_thing(&mut client, "lamp").await;
    let before = last_sequence(&mut client).await;

    let no_group = AddThingToThingGroupRequest {
        thing_name: Some("lamp".into()),
        ..Default::default()
    };
    let no_thing = AddThingToThingGroupRequest {
        thing_group_name: Some("red".into()),
        ..Default::default()
    };
    for req in [no_group, no_thing, AddThingToThingGroupRequest::default()] {
        expect_err(
            client.add_thing_to_thing_group(req).await,
            ErrorType::InvalidRequest,
        );
    }
    assert!(groups_of(&mut client, "lamp").await.is_empty());
    assert!(things_in(&mut client, "red", false).await.is_empty());
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn add_unknown_thing_or_group_is_not_found_and_changes_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "red", None).await;
    create_thing(&mut client, "lamp").await;
    let before = last_sequence(&mut client).await;

    let unknown = [
        add_req("red", "ghost"),
        add_req("ghost", "lamp"),
        AddThingToThingGroupRequest {
            thing_group_arn: Some(crate::things::arn("thinggroup", "ghost")),
            thing_name: Some("lamp".into()),
            ..Default::default()
        },
        AddThingToThingGroupRequest {
            thing_group_name: Some("red".into()),
            thing_arn: Some(crate::things::arn("thing", "ghost")),
            ..Default::default()
        },
    ];
    for req in unknown {
        expect_err(
            client.add_thing_to_thing_group(req).await,
            ErrorType::ResourceNotFound,
        );
    }
    assert!(groups_of(&mut client, "lamp").await.is_empty());
    assert!(things_in(&mut client, "red", false).await.is_empty());
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn adding_an_existing_member_again_succeeds_without_event() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "red", None).await;
    create_thing(&mut client, "lamp").await;
    add_to_group(&mut client, "red", "lamp").await;
    let before = last_sequence(&mut client).await;

    add_to_group(&mut client, "red", "lamp").await;
    assert_eq!(things_in(&mut client, "red", false).await, ["lamp"]);
    assert_eq!(groups_of(&mut client, "lamp").await, ["red"]);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

// ------------------------------------------------------------ RemoveThingFromThingGroup

#[tokio::test]
async fn remove_logs_removed_with_the_same_membership_id_and_adding_again_gets_a_new_one() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "red", None).await;
    create_thing(&mut client, "lamp").await;
    let mark = last_sequence(&mut client).await;
    add_to_group(&mut client, "red", "lamp").await;
    let added = events_after(&mut client, mark).await;
    let first_id = membership_event(&added[0]).membership_id.clone();
    let before = last_sequence(&mut client).await;

    client
        .remove_thing_from_thing_group(remove_req("red", "lamp"))
        .await
        .unwrap();
    assert!(things_in(&mut client, "red", false).await.is_empty());
    assert!(groups_of(&mut client, "lamp").await.is_empty());
    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING_GROUP_MEMBERSHIP REMOVED"]);
    let removed = membership_event(&events[0]);
    let added_event = membership_event(&added[0]);
    assert_eq!(
        removed, added_event,
        "the removed event names the same membership as the added one"
    );

    let before = last_sequence(&mut client).await;
    add_to_group(&mut client, "red", "lamp").await;
    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING_GROUP_MEMBERSHIP ADDED"]);
    assert_ne!(
        membership_event(&events[0]).membership_id,
        first_id,
        "a new membership gets a new id"
    );
    registry.stop().await;
}

#[tokio::test]
async fn remove_a_thing_that_is_not_a_member_succeeds_without_event() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "red", None).await;
    create_group(&mut client, "blue", None).await;
    create_thing(&mut client, "lamp").await;
    add_to_group(&mut client, "blue", "lamp").await;
    let before = last_sequence(&mut client).await;

    client
        .remove_thing_from_thing_group(remove_req("red", "lamp"))
        .await
        .unwrap();
    assert_eq!(groups_of(&mut client, "lamp").await, ["blue"]);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

// ------------------------------------------------------------ limits

#[tokio::test]
async fn a_thing_may_belong_to_ten_groups_but_not_eleven() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_thing(&mut client, "lamp").await;
    let groups: Vec<String> = (1..=11).map(|i| format!("g{i:02}")).collect();
    for group in &groups {
        create_group(&mut client, group, None).await;
    }
    for group in &groups[..10] {
        add_to_group(&mut client, group, "lamp").await;
    }
    assert_eq!(groups_of(&mut client, "lamp").await, groups[..10]);
    let before = last_sequence(&mut client).await;

    expect_err(
        client
            .add_thing_to_thing_group(add_req("g11", "lamp"))
            .await,
        ErrorType::LimitExceeded,
    );
    assert_eq!(groups_of(&mut client, "lamp").await, groups[..10]);
    assert!(things_in(&mut client, "g11", false).await.is_empty());
    assert_no_events_after(&mut client, before).await;

    // Leaving one makes room.
    client
        .remove_thing_from_thing_group(remove_req("g01", "lamp"))
        .await
        .unwrap();
    add_to_group(&mut client, "g11", "lamp").await;
    assert_eq!(groups_of(&mut client, "lamp").await, groups[1..]);
    registry.stop().await;
}

#[tokio::test]
async fn a_thing_may_not_belong_to_two_groups_of_one_hierarchy() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "root", None).await;
    create_group(&mut client, "left", Some("root")).await;
    create_group(&mut client, "right", Some("root")).await;
    create_group(&mut client, "left-low", Some("left")).await;
    create_group(&mut client, "other-root", None).await;
    create_thing(&mut client, "lamp").await;
    add_to_group(&mut client, "left", "lamp").await;
    let before = last_sequence(&mut client).await;

    for group in ["root", "right", "left-low"] {
        expect_err(
            client
                .add_thing_to_thing_group(add_req(group, "lamp"))
                .await,
            ErrorType::InvalidRequest,
        );
        assert!(things_in(&mut client, group, false).await.is_empty());
    }
    assert_eq!(groups_of(&mut client, "lamp").await, ["left"]);
    assert_no_events_after(&mut client, before).await;

    // Another hierarchy is fine, and so are other things.
    add_to_group(&mut client, "other-root", "lamp").await;
    create_thing(&mut client, "switch").await;
    add_to_group(&mut client, "right", "switch").await;
    assert_eq!(groups_of(&mut client, "lamp").await, ["left", "other-root"]);
    registry.stop().await;
}

// ------------------------------------------------------------ UpdateThingGroupsForThing

#[tokio::test]
async fn update_thing_groups_for_thing_adds_and_removes_with_one_event_per_group() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    for group in ["a", "b", "c", "d"] {
        create_group(&mut client, group, None).await;
    }
    create_thing(&mut client, "lamp").await;
    let mark = last_sequence(&mut client).await;
    add_to_group(&mut client, "a", "lamp").await;
    add_to_group(&mut client, "b", "lamp").await;
    let added_a = events_after(&mut client, mark).await;
    let a_membership = membership_event(&added_a[0]).membership_id.clone();
    let before = last_sequence(&mut client).await;

    client
        .update_thing_groups_for_thing(update_groups_req("lamp", &["c", "d"], &["a"]))
        .await
        .unwrap();
    assert_eq!(groups_of(&mut client, "lamp").await, ["b", "c", "d"]);
    assert!(things_in(&mut client, "a", false).await.is_empty());

    let events = events_after(&mut client, before).await;
    assert_eq!(events.len(), 3, "{:?}", summary(&events));
    assert_one_timestamp(&events);
    assert_eq!(
        membership_ops(&events),
        [op("ADDED", "c"), op("ADDED", "d"), op("REMOVED", "a")]
    );
    let removed = events
        .iter()
        .map(membership_event)
        .find(|m| m.thing_group_name == "a")
        .unwrap();
    assert_eq!(removed.membership_id, a_membership);
    assert!(
        events
            .iter()
            .map(membership_event)
            .all(|m| m.thing_name == "lamp")
    );
    registry.stop().await;
}

#[tokio::test]
async fn update_thing_groups_for_thing_with_one_unknown_group_changes_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    for group in ["a", "b", "c"] {
        create_group(&mut client, group, None).await;
    }
    create_thing(&mut client, "lamp").await;
    add_to_group(&mut client, "a", "lamp").await;
    let before = last_sequence(&mut client).await;

    expect_err(
        client
            .update_thing_groups_for_thing(update_groups_req("lamp", &["b", "ghost", "c"], &["a"]))
            .await,
        ErrorType::ResourceNotFound,
    );
    assert_eq!(groups_of(&mut client, "lamp").await, ["a"]);
    assert!(things_in(&mut client, "b", false).await.is_empty());
    assert!(things_in(&mut client, "c", false).await.is_empty());
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn update_thing_groups_for_thing_beyond_ten_groups_is_refused_and_changes_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_thing(&mut client, "lamp").await;
    let groups: Vec<String> = (1..=12).map(|i| format!("g{i:02}")).collect();
    for group in &groups {
        create_group(&mut client, group, None).await;
    }
    for group in &groups[..9] {
        add_to_group(&mut client, group, "lamp").await;
    }
    let before = last_sequence(&mut client).await;

    expect_err(
        client
            .update_thing_groups_for_thing(update_groups_req("lamp", &["g10", "g11"], &[]))
            .await,
        ErrorType::LimitExceeded,
    );
    assert_eq!(groups_of(&mut client, "lamp").await, groups[..9]);
    assert!(things_in(&mut client, "g10", false).await.is_empty());
    assert_no_events_after(&mut client, before).await;

    // Removing one in the same call makes room for two.
    client
        .update_thing_groups_for_thing(update_groups_req("lamp", &["g10", "g11"], &["g01"]))
        .await
        .unwrap();
    assert_eq!(groups_of(&mut client, "lamp").await, groups[1..11]);
    registry.stop().await;
}

#[tokio::test]
async fn update_thing_groups_for_thing_with_two_groups_of_one_hierarchy_changes_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "root", None).await;
    create_group(&mut client, "left", Some("root")).await;
    create_group(&mut client, "right", Some("root")).await;
    create_group(&mut client, "solo", None).await;
    create_group(&mut client, "held", None).await;
    create_thing(&mut client, "lamp").await;
    add_to_group(&mut client, "held", "lamp").await;
    let before = last_sequence(&mut client).await;

    expect_err(
        client
            .update_thing_groups_for_thing(update_groups_req(
                "lamp",
                &["solo", "left", "right"],
                &["held"],
            ))
            .await,
        ErrorType::InvalidRequest,
    );
    assert_eq!(groups_of(&mut client, "lamp").await, ["held"]);
    for group in ["solo", "left", "right"] {
        assert!(things_in(&mut client, group, false).await.is_empty());
    }
    assert_no_events_after(&mut client, before).await;

    // A group of a hierarchy the thing is already in is refused too.
    add_to_group(&mut client, "left", "lamp").await;
    let before = last_sequence(&mut client).await;
    expect_err(
        client
            .update_thing_groups_for_thing(update_groups_req("lamp", &["solo", "root"], &[]))
            .await,
        ErrorType::InvalidRequest,
    );
    assert_eq!(groups_of(&mut client, "lamp").await, ["held", "left"]);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn update_thing_groups_for_missing_thing_is_not_found() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "red", None).await;
    let before = last_sequence(&mut client).await;
    expect_err(
        client
            .update_thing_groups_for_thing(update_groups_req("ghost", &["red"], &[]))
            .await,
        ErrorType::ResourceNotFound,
    );
    assert!(things_in(&mut client, "red", false).await.is_empty());
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

// ------------------------------------------------------------ lists

#[tokio::test]
async fn list_things_in_thing_group_recursive_includes_descendant_groups_things_once() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "root", None).await;
    create_group(&mut client, "mid", Some("root")).await;
    create_group(&mut client, "low", Some("mid")).await;
    create_group(&mut client, "side", Some("root")).await;
    create_group(&mut client, "elsewhere", None).await;
    for (thing, group) in [
        ("t-root", "root"),
        ("t-mid", "mid"),
        ("t-low", "low"),
        ("t-side", "side"),
        ("t-else", "elsewhere"),
    ] {
        create_thing(&mut client, thing).await;
        add_to_group(&mut client, group, thing).await;
    }
    // A thing in two hierarchies is listed once per list.
    create_thing(&mut client, "t-both").await;
    add_to_group(&mut client, "low", "t-both").await;
    add_to_group(&mut client, "elsewhere", "t-both").await;

    assert_eq!(things_in(&mut client, "root", false).await, ["t-root"]);
    assert_eq!(
        things_in(&mut client, "root", true).await,
        ["t-both", "t-low", "t-mid", "t-root", "t-side"]
    );
    assert_eq!(
        things_in(&mut client, "mid", true).await,
        ["t-both", "t-low", "t-mid"]
    );
    assert_eq!(
        things_in(&mut client, "low", false).await,
        ["t-both", "t-low"]
    );
    assert_eq!(
        things_in(&mut client, "elsewhere", true).await,
        ["t-both", "t-else"]
    );

    let pages = walk_pages(|token| {
        let mut client = client.clone();
        async move {
            let req = ListThingsInThingGroupRequest {
                thing_group_name: "root".into(),
                recursive: true,
                page: page(2, &token),
            };
            let resp = client
                .list_things_in_thing_group(req)
                .await
                .unwrap()
                .into_inner();
            (resp.things, resp.next_token)
        }
    })
    .await;
    let expected: Vec<String> = ["t-both", "t-low", "t-mid", "t-root", "t-side"]
        .map(String::from)
        .to_vec();
    assert_paged(&pages, 2, &expected);
    registry.stop().await;
}

#[tokio::test]
async fn list_things_in_thing_group_pages_walk_every_member_once_and_refuse_bad_input() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "red", None).await;
    for name in ["t5", "t2", "t7", "t1", "t6", "t3", "t4"] {
        create_thing(&mut client, name).await;
        add_to_group(&mut client, "red", name).await;
    }
    let pages = walk_pages(|token| {
        let mut client = client.clone();
        async move {
            let req = ListThingsInThingGroupRequest {
                thing_group_name: "red".into(),
                recursive: false,
                page: page(3, &token),
            };
            let resp = client
                .list_things_in_thing_group(req)
                .await
                .unwrap()
                .into_inner();
            (resp.things, resp.next_token)
        }
    })
    .await;
    assert_paged(&pages, 3, &names("t", 7));

    for (max, token) in [(251, ""), (3, "garbage")] {
        let req = ListThingsInThingGroupRequest {
            thing_group_name: "red".into(),
            recursive: false,
            page: page(max, token),
        };
        expect_err(
            client.list_things_in_thing_group(req).await,
            ErrorType::InvalidRequest,
        );
    }
    registry.stop().await;
}

#[tokio::test]
async fn list_thing_groups_for_thing_lists_direct_groups_sorted_and_paged() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_thing(&mut client, "lamp").await;
    create_group(&mut client, "parent-of-g3", None).await;
    for name in ["g5", "g2", "g1", "g4"] {
        create_group(&mut client, name, None).await;
        add_to_group(&mut client, name, "lamp").await;
    }
    create_group(&mut client, "g3", Some("parent-of-g3")).await;
    add_to_group(&mut client, "g3", "lamp").await;

    let pages = walk_pages(|token| {
        let mut client = client.clone();
        async move {
            let req = ListThingGroupsForThingRequest {
                thing_name: "lamp".into(),
                page: page(2, &token),
            };
            let resp = client
                .list_thing_groups_for_thing(req)
                .await
                .unwrap()
                .into_inner();
            for group in &resp.thing_groups {
                assert_eq!(
                    group.group_arn,
                    crate::things::arn("thinggroup", &group.group_name)
                );
            }
            (
                resp.thing_groups
                    .into_iter()
                    .map(|g| g.group_name)
                    .collect(),
                resp.next_token,
            )
        }
    })
    .await;
    // Direct groups only: the parent of g3 is not listed.
    assert_paged(&pages, 2, &names("g", 5));

    for (max, token) in [(251, ""), (2, "garbage")] {
        let req = ListThingGroupsForThingRequest {
            thing_name: "lamp".into(),
            page: page(max, token),
        };
        expect_err(
            client.list_thing_groups_for_thing(req).await,
            ErrorType::InvalidRequest,
        );
    }
    registry.stop().await;
}

// ------------------------------------------------------------ deleting members

#[tokio::test]
async fn delete_thing_removes_its_memberships_and_logs_removed_for_each_group() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "a", None).await;
    create_group(&mut client, "b-root", None).await;
    create_group(&mut client, "b", Some("b-root")).await;
    let thing = create_thing(&mut client, "lamp").await;
    create_thing(&mut client, "other").await;
    let mark = last_sequence(&mut client).await;
    add_to_group(&mut client, "a", "lamp").await;
    add_to_group(&mut client, "b", "lamp").await;
    add_to_group(&mut client, "a", "other").await;
    let added = memberships(&events_after(&mut client, mark).await);
    let before = last_sequence(&mut client).await;

    client.delete_thing(delete_req("lamp")).await.unwrap();
    assert_eq!(things_in(&mut client, "a", false).await, ["other"]);
    assert!(things_in(&mut client, "b-root", true).await.is_empty());

    let events = events_after(&mut client, before).await;
    assert_eq!(
        summary(&events),
        [
            "THING DELETED",
            "THING_GROUP_MEMBERSHIP REMOVED",
            "THING_GROUP_MEMBERSHIP REMOVED"
        ]
    );
    assert_one_timestamp(&events);
    let removed = memberships(&events[1..]);
    let expected: Vec<_> = added
        .iter()
        .filter(|(_, _, thing, _)| thing == "lamp")
        .map(|(_, group, thing, id)| {
            (
                "REMOVED".to_string(),
                group.clone(),
                thing.clone(),
                id.clone(),
            )
        })
        .collect();
    assert_eq!(
        removed, expected,
        "each removal carries the membership id of its addition"
    );
    for event in &events[1..] {
        let m = membership_event(event);
        assert_eq!(m.thing_id, thing.thing_id);
        assert_eq!(m.thing_arn, thing.thing_arn);
    }

    // A new thing with the same name starts without groups.
    create_thing(&mut client, "lamp").await;
    assert!(groups_of(&mut client, "lamp").await.is_empty());
    registry.stop().await;
}

#[tokio::test]
async fn memberships_of_many_things_stay_consistent_both_ways() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    for group in ["x", "y", "z"] {
        create_group(&mut client, group, None).await;
    }
    let things = names("t", 6);
    for (i, thing) in things.iter().enumerate() {
        create_thing(&mut client, thing).await;
        let add: Vec<&str> = ["x", "y", "z"]
            .into_iter()
            .enumerate()
            .filter(|(g, _)| (i + g) % 2 == 0)
            .map(|(_, g)| g)
            .collect();
        client
            .update_thing_groups_for_thing(update_groups_req(thing, &add, &[]))
            .await
            .unwrap();
    }
    let mut from_things = BTreeSet::new();
    for thing in &things {
        for group in groups_of(&mut client, thing).await {
            from_things.insert((group, thing.clone()));
        }
    }
    let mut from_groups = BTreeSet::new();
    for group in ["x", "y", "z"] {
        for thing in things_in(&mut client, group, false).await {
            from_groups.insert((group.to_string(), thing));
        }
    }
    assert_eq!(from_things, from_groups);
    assert_eq!(from_things.len(), 9);
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_to_twelve_groups_let_exactly_ten_succeed() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_thing(&mut client, "lamp").await;
    let groups: Vec<String> = (1..=12).map(|i| format!("g{i:02}")).collect();
    for group in &groups {
        create_group(&mut client, group, None).await;
    }
    let before = last_sequence(&mut client).await;

    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(groups.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for group in groups.clone() {
        let mut client = registry.client().await;
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            (
                group.clone(),
                client
                    .add_thing_to_thing_group(add_req(&group, "lamp"))
                    .await,
            )
        });
    }
    let mut joined = Vec::new();
    for (group, result) in tasks.join_all().await {
        match result {
            Ok(_) => joined.push(group),
            Err(status) => {
                let err = herald_proto::error::AwsError::from_status(&status);
                assert_eq!(err.error_type, ErrorType::LimitExceeded, "{group}: {err}");
            }
        }
    }
    joined.sort();
    assert_eq!(joined.len(), 10, "exactly ten adds succeed: {joined:?}");
    assert_eq!(groups_of(&mut client, "lamp").await, joined);
    let events = events_after(&mut client, before).await;
    let mut logged: Vec<String> = events
        .iter()
        .map(|e| membership_event(e).thing_group_name.clone())
        .collect();
    logged.sort();
    assert_eq!(logged, joined, "one added event per successful add");
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_to_groups_of_one_hierarchy_let_exactly_one_succeed() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "root", None).await;
    let siblings = names("child", 6);
    for child in &siblings {
        create_group(&mut client, child, Some("root")).await;
    }
    create_thing(&mut client, "lamp").await;
    let before = last_sequence(&mut client).await;

    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(siblings.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for group in siblings.clone() {
        let mut client = registry.client().await;
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            (
                group.clone(),
                client
                    .add_thing_to_thing_group(add_req(&group, "lamp"))
                    .await,
            )
        });
    }
    let mut joined = Vec::new();
    for (group, result) in tasks.join_all().await {
        match result {
            Ok(_) => joined.push(group),
            Err(status) => {
                let err = herald_proto::error::AwsError::from_status(&status);
                assert_eq!(err.error_type, ErrorType::InvalidRequest, "{group}: {err}");
            }
        }
    }
    assert_eq!(joined.len(), 1, "exactly one add succeeds: {joined:?}");
    assert_eq!(groups_of(&mut client, "lamp").await, joined);
    assert_eq!(things_in(&mut client, "root", true).await, ["lamp"]);
    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING_GROUP_MEMBERSHIP ADDED"]);
    registry.stop().await;
}

// ------------------------------------------------------------ policy targets

async fn policy_targets(client: &mut Client, thing: &str) -> ListThingPolicyTargetsResponse {
    client
        .list_thing_policy_targets(ListThingPolicyTargetsRequest {
            thing_name: thing.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn policy_targets_are_the_thing_its_groups_and_their_ancestors_once_in_arn_order() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_thing(&mut client, "device").await;

    let alone = policy_targets(&mut client, "device").await;
    assert_eq!(alone.thing_arn, arn("thing", "device"));
    assert!(alone.thing_group_arns.is_empty());

    // Two hierarchies: z-root > m-mid > a-leaf, and b-other > y-sub.
    create_group(&mut client, "z-root", None).await;
    create_group(&mut client, "m-mid", Some("z-root")).await;
    create_group(&mut client, "a-leaf", Some("m-mid")).await;
    create_group(&mut client, "b-other", None).await;
    create_group(&mut client, "y-sub", Some("b-other")).await;
    create_group(&mut client, "unrelated", None).await;
    add_to_group(&mut client, "a-leaf", "device").await;
    add_to_group(&mut client, "y-sub", "device").await;

    let targets = policy_targets(&mut client, "device").await;
    assert_eq!(targets.thing_arn, arn("thing", "device"));
    let expected: Vec<String> = ["a-leaf", "b-other", "m-mid", "y-sub", "z-root"]
        .iter()
        .map(|g| arn("thinggroup", g))
        .collect();
    assert_eq!(targets.thing_group_arns, expected);

    // Membership changes show at once.
    client
        .remove_thing_from_thing_group(remove_req("y-sub", "device"))
        .await
        .unwrap();
    let targets = policy_targets(&mut client, "device").await;
    let expected: Vec<String> = ["a-leaf", "m-mid", "z-root"]
        .iter()
        .map(|g| arn("thinggroup", g))
        .collect();
    assert_eq!(targets.thing_group_arns, expected);
    registry.stop().await;
}

#[tokio::test]
async fn policy_targets_of_a_missing_or_invalid_thing_are_refused() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let request = |name: &str| ListThingPolicyTargetsRequest {
        thing_name: name.into(),
    };
    let err = expect_err(
        client.list_thing_policy_targets(request("ghost")).await,
        ErrorType::ResourceNotFound,
    );
    assert_eq!(err.message, "Thing ghost cannot be found.");
    expect_err(
        client.list_thing_policy_targets(request("")).await,
        ErrorType::InvalidRequest,
    );
    expect_err(
        client.list_thing_policy_targets(request("a b")).await,
        ErrorType::InvalidRequest,
    );
    registry.stop().await;
}
