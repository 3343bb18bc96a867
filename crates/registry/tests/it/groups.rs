//! Thing groups: create, describe, update, delete and list, and the hierarchy rules.

use std::collections::HashMap;

use herald_proto::{error::ErrorType, registry::v1::*};

use crate::{
    membership::{add_to_group, groups_of, things_in},
    support::{Client, TestRegistry, expect_err},
    things::{
        ACCOUNT, arn, assert_no_events_after, assert_one_timestamp, assert_paged, assert_recent_ms,
        assert_uuid, attrs, create_thing, events_after, group_event, hierarchy_event,
        invalid_names, last_sequence, many_attrs, membership_event, merge, names, page, replace,
        summary, valid_edge_names, walk_pages,
    },
};

// ------------------------------------------------------------ helpers

pub(crate) fn group_req(name: &str, parent: Option<&str>) -> CreateThingGroupRequest {
    CreateThingGroupRequest {
        thing_group_name: name.into(),
        parent_group_name: parent.map(str::to_owned),
        ..Default::default()
    }
}

fn group_props(
    description: Option<&str>,
    payload: Option<AttributePayload>,
) -> Option<ThingGroupProperties> {
    Some(ThingGroupProperties {
        thing_group_description: description.map(str::to_owned),
        attribute_payload: payload,
    })
}

/// Creates a group (under `parent`, if given) without properties.
pub(crate) async fn create_group(
    client: &mut Client,
    name: &str,
    parent: Option<&str>,
) -> CreateThingGroupResponse {
    client
        .create_thing_group(group_req(name, parent))
        .await
        .unwrap()
        .into_inner()
}

pub(crate) async fn describe_group(client: &mut Client, name: &str) -> ThingGroup {
    client
        .describe_thing_group(describe_group_req(name))
        .await
        .unwrap()
        .into_inner()
}

fn describe_group_req(name: &str) -> DescribeThingGroupRequest {
    DescribeThingGroupRequest {
        thing_group_name: name.into(),
    }
}

fn delete_group_req(name: &str) -> DeleteThingGroupRequest {
    DeleteThingGroupRequest {
        thing_group_name: name.into(),
        expected_version: None,
    }
}

fn update_group_req(name: &str, props: Option<ThingGroupProperties>) -> UpdateThingGroupRequest {
    UpdateThingGroupRequest {
        thing_group_name: name.into(),
        thing_group_properties: props,
        expected_version: None,
    }
}

async fn assert_no_group(client: &mut Client, name: &str) {
    expect_err(
        client.describe_thing_group(describe_group_req(name)).await,
        ErrorType::ResourceNotFound,
    );
}

fn group_attrs(group: &ThingGroup) -> HashMap<String, String> {
    group
        .thing_group_properties
        .as_ref()
        .and_then(|p| p.attribute_payload.as_ref())
        .map(|p| p.attributes.clone())
        .unwrap_or_default()
}

fn group_description(group: &ThingGroup) -> String {
    group
        .thing_group_properties
        .as_ref()
        .and_then(|p| p.thing_group_description.clone())
        .unwrap_or_default()
}

fn group_metadata(group: &ThingGroup) -> ThingGroupMetadata {
    group
        .thing_group_metadata
        .clone()
        .expect("a group has metadata")
}

fn root_to_parent(group: &ThingGroup) -> Vec<String> {
    group_metadata(group)
        .root_to_parent_thing_groups
        .into_iter()
        .map(|g| g.group_name)
        .collect()
}

fn list_groups_req(
    parent: Option<&str>,
    prefix: Option<&str>,
    recursive: bool,
) -> ListThingGroupsRequest {
    ListThingGroupsRequest {
        page: None,
        parent_group: parent.map(str::to_owned),
        name_prefix_filter: prefix.map(str::to_owned),
        recursive,
    }
}

async fn group_names(client: &mut Client, req: ListThingGroupsRequest) -> Vec<String> {
    let resp = client.list_thing_groups(req).await.unwrap().into_inner();
    assert!(resp.next_token.is_empty(), "expected a single page");
    for group in &resp.thing_groups {
        assert_eq!(group.group_arn, arn("thinggroup", &group.group_name));
    }
    resp.thing_groups
        .into_iter()
        .map(|g| g.group_name)
        .collect()
}

// ------------------------------------------------------------ CreateThingGroup

#[tokio::test]
async fn create_root_thing_group_answers_uuid_and_arn_and_describe_shows_version_1() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;

    let req = CreateThingGroupRequest {
        thing_group_properties: group_props(Some("Red lights"), replace(&[("color", "red")])),
        ..group_req("red", None)
    };
    let created = client.create_thing_group(req).await.unwrap().into_inner();
    assert_eq!(created.thing_group_name, "red");
    assert_uuid(&created.thing_group_id);
    assert_eq!(
        created.thing_group_arn,
        "arn:aws:iot:us-east-1:123456789012:thinggroup/red"
    );

    let group = describe_group(&mut client, "red").await;
    assert_eq!(group.thing_group_name, "red");
    assert_eq!(group.thing_group_id, created.thing_group_id);
    assert_eq!(group.thing_group_arn, created.thing_group_arn);
    assert_eq!(group.version, 1);
    assert_eq!(group_description(&group), "Red lights");
    assert_eq!(group_attrs(&group), attrs(&[("color", "red")]));
    if let Some(payload) = group
        .thing_group_properties
        .as_ref()
        .and_then(|p| p.attribute_payload.as_ref())
    {
        assert!(!payload.merge, "the stored payload never says merge");
    }
    let meta = group_metadata(&group);
    assert_eq!(meta.parent_group_name, None);
    assert!(meta.root_to_parent_thing_groups.is_empty());
    assert_recent_ms(meta.creation_date_ms);

    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING_GROUP CREATED"]);
    assert_eq!(events[0].account_id, ACCOUNT);
    assert_eq!(
        group_event(&events[0]),
        &ThingGroupEvent {
            thing_group_id: created.thing_group_id,
            thing_group_name: "red".into(),
            version_number: 1,
            parent_group_name: None,
            parent_group_id: None,
            description: "Red lights".into(),
            root_to_parent_thing_groups: vec![],
            attributes: attrs(&[("color", "red")]),
            dynamic_group_mapping_id: None,
        }
    );
    registry.stop().await;
}

#[tokio::test]
async fn create_child_thing_group_logs_created_then_hierarchy_added() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let root = create_group(&mut client, "root", None).await;
    let parent = create_group(&mut client, "parent", Some("root")).await;
    let before = last_sequence(&mut client).await;

    let child = create_group(&mut client, "child", Some("parent")).await;
    let group = describe_group(&mut client, "child").await;
    assert_eq!(
        group_metadata(&group).parent_group_name.as_deref(),
        Some("parent")
    );

    let events = events_after(&mut client, before).await;
    assert_eq!(
        summary(&events),
        ["THING_GROUP CREATED", "THING_GROUP_HIERARCHY ADDED"]
    );
    assert_one_timestamp(&events);
    assert_eq!(
        group_event(&events[0]),
        &ThingGroupEvent {
            thing_group_id: child.thing_group_id.clone(),
            thing_group_name: "child".into(),
            version_number: 1,
            parent_group_name: Some("parent".into()),
            parent_group_id: Some(parent.thing_group_id.clone()),
            description: String::new(),
            root_to_parent_thing_groups: vec![
                GroupIdAndArn {
                    group_arn: root.thing_group_arn,
                    group_id: root.thing_group_id
                },
                GroupIdAndArn {
                    group_arn: parent.thing_group_arn,
                    group_id: parent.thing_group_id.clone()
                },
            ],
            attributes: HashMap::new(),
            dynamic_group_mapping_id: None,
        }
    );
    assert_eq!(
        hierarchy_event(&events[1]),
        &ThingGroupHierarchyEvent {
            thing_group_id: parent.thing_group_id,
            thing_group_name: "parent".into(),
            child_group_id: child.thing_group_id,
            child_group_name: "child".into(),
        }
    );
    registry.stop().await;
}

#[tokio::test]
async fn create_thing_group_again_with_same_parent_and_properties_returns_same_id_without_event() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "root", None).await;
    let req = CreateThingGroupRequest {
        thing_group_properties: group_props(Some("d"), replace(&[("a", "1")])),
        ..group_req("child", Some("root"))
    };
    let first = client
        .create_thing_group(req.clone())
        .await
        .unwrap()
        .into_inner();
    let described = describe_group(&mut client, "child").await;
    let before = last_sequence(&mut client).await;

    let again = client.create_thing_group(req).await.unwrap().into_inner();
    assert_eq!(again, first);
    assert_eq!(describe_group(&mut client, "child").await, described);
    assert_eq!(described.version, 1);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn create_thing_group_again_with_different_parent_or_properties_is_refused_with_resource_id_and_arn()
 {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "root", None).await;
    create_group(&mut client, "other-root", None).await;
    let created = client
        .create_thing_group(CreateThingGroupRequest {
            thing_group_properties: group_props(Some("d"), replace(&[("a", "1")])),
            ..group_req("child", Some("root"))
        })
        .await
        .unwrap()
        .into_inner();
    let described = describe_group(&mut client, "child").await;
    let before = last_sequence(&mut client).await;

    let conflicting = [
        CreateThingGroupRequest {
            thing_group_properties: group_props(Some("d"), replace(&[("a", "1")])),
            ..group_req("child", Some("other-root"))
        },
        CreateThingGroupRequest {
            thing_group_properties: group_props(Some("d"), replace(&[("a", "1")])),
            ..group_req("child", None)
        },
        CreateThingGroupRequest {
            thing_group_properties: group_props(Some("other"), replace(&[("a", "1")])),
            ..group_req("child", Some("root"))
        },
        CreateThingGroupRequest {
            thing_group_properties: group_props(Some("d"), replace(&[("a", "2")])),
            ..group_req("child", Some("root"))
        },
        group_req("child", Some("root")),
    ];
    for req in conflicting {
        let err = expect_err(
            client.create_thing_group(req.clone()).await,
            ErrorType::ResourceAlreadyExists,
        );
        assert_eq!(
            err.resource_id.as_deref(),
            Some(created.thing_group_id.as_str()),
            "{req:?}"
        );
        assert_eq!(
            err.resource_arn.as_deref(),
            Some(created.thing_group_arn.as_str()),
            "{req:?}"
        );
    }
    assert_eq!(describe_group(&mut client, "child").await, described);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn create_thing_group_with_unknown_parent_is_not_found_and_creates_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;
    expect_err(
        client
            .create_thing_group(group_req("child", Some("ghost")))
            .await,
        ErrorType::ResourceNotFound,
    );
    assert_no_group(&mut client, "child").await;
    assert_no_group(&mut client, "ghost").await;
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn group_hierarchy_may_be_seven_deep_but_not_eight() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let chain = names("level", 7);
    let mut parent: Option<&str> = None;
    for name in &chain {
        create_group(&mut client, name, parent).await;
        parent = Some(name);
    }
    let deepest = describe_group(&mut client, "level7").await;
    assert_eq!(root_to_parent(&deepest), chain[..6]);

    let before = last_sequence(&mut client).await;
    expect_err(
        client
            .create_thing_group(group_req("level8", Some("level7")))
            .await,
        ErrorType::InvalidRequest,
    );
    assert_no_group(&mut client, "level8").await;
    assert!(
        group_names(&mut client, list_groups_req(Some("level7"), None, false))
            .await
            .is_empty()
    );
    assert_no_events_after(&mut client, before).await;

    // A sibling at depth 7 is still fine.
    create_group(&mut client, "level7b", Some("level6")).await;
    registry.stop().await;
}

#[tokio::test]
async fn describe_thing_group_lists_root_to_parent_groups_from_the_root_down() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "zz-root", None).await;
    create_group(&mut client, "mm-mid", Some("zz-root")).await;
    create_group(&mut client, "aa-low", Some("mm-mid")).await;
    create_group(&mut client, "leaf", Some("aa-low")).await;

    let leaf = describe_group(&mut client, "leaf").await;
    let meta = group_metadata(&leaf);
    assert_eq!(meta.parent_group_name.as_deref(), Some("aa-low"));
    assert_eq!(
        meta.root_to_parent_thing_groups,
        [
            GroupNameAndArn {
                group_name: "zz-root".into(),
                group_arn: arn("thinggroup", "zz-root")
            },
            GroupNameAndArn {
                group_name: "mm-mid".into(),
                group_arn: arn("thinggroup", "mm-mid")
            },
            GroupNameAndArn {
                group_name: "aa-low".into(),
                group_arn: arn("thinggroup", "aa-low")
            },
        ]
    );
    assert_eq!(
        root_to_parent(&describe_group(&mut client, "mm-mid").await),
        ["zz-root"]
    );
    assert!(root_to_parent(&describe_group(&mut client, "zz-root").await).is_empty());
    registry.stop().await;
}

#[tokio::test]
async fn create_thing_group_with_invalid_name_description_or_attributes_is_refused() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;
    for name in invalid_names() {
        let result = client.create_thing_group(group_req(&name, None)).await;
        assert!(result.is_err(), "{name:?} was accepted");
        expect_err(result, ErrorType::InvalidRequest);
    }

    let too_long = "d".repeat(2029);
    let bad_props = [
        group_props(Some(&too_long), None),
        group_props(Some("line\nbreak"), None),
        group_props(None, replace(&[("bad name", "v")])),
        group_props(None, replace(&[("ok", "bad value")])),
        group_props(
            None,
            Some(AttributePayload {
                attributes: many_attrs(51),
                merge: false,
            }),
        ),
    ];
    for (i, props) in bad_props.into_iter().enumerate() {
        let name = format!("bad-{i}");
        let req = CreateThingGroupRequest {
            thing_group_properties: props,
            ..group_req(&name, None)
        };
        expect_err(
            client.create_thing_group(req).await,
            ErrorType::InvalidRequest,
        );
        assert_no_group(&mut client, &name).await;
    }
    assert!(
        group_names(&mut client, list_groups_req(None, None, true))
            .await
            .is_empty()
    );
    assert_no_events_after(&mut client, before).await;

    for name in valid_edge_names() {
        assert_eq!(
            create_group(&mut client, &name, None).await.thing_group_arn,
            arn("thinggroup", &name)
        );
    }
    let fifty = CreateThingGroupRequest {
        thing_group_properties: group_props(
            Some(&"d".repeat(2028)),
            Some(AttributePayload {
                attributes: many_attrs(50),
                merge: false,
            }),
        ),
        ..group_req("fifty", None)
    };
    client.create_thing_group(fifty).await.unwrap();
    assert_eq!(
        group_attrs(&describe_group(&mut client, "fifty").await),
        many_attrs(50)
    );
    registry.stop().await;
}

#[tokio::test]
async fn a_group_may_have_100_direct_children_but_not_101() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "parent", None).await;
    for i in 0..100 {
        create_group(&mut client, &format!("child-{i:03}"), Some("parent")).await;
    }
    let before = last_sequence(&mut client).await;
    expect_err(
        client
            .create_thing_group(group_req("child-100", Some("parent")))
            .await,
        ErrorType::LimitExceeded,
    );
    assert_no_group(&mut client, "child-100").await;
    assert_no_events_after(&mut client, before).await;

    // Grandchildren do not count against the parent.
    create_group(&mut client, "grandchild", Some("child-000")).await;
    let pages = walk_pages(|token| {
        let mut client = client.clone();
        async move {
            let req = ListThingGroupsRequest {
                page: page(250, &token),
                ..list_groups_req(Some("parent"), None, false)
            };
            let resp = client.list_thing_groups(req).await.unwrap().into_inner();
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
    assert_eq!(pages.concat().len(), 100);
    registry.stop().await;
}

#[tokio::test]
async fn describe_missing_thing_group_is_not_found() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    assert_no_group(&mut client, "nope").await;
    create_group(&mut client, "other", None).await;
    assert_no_group(&mut client, "nope").await;
    registry.stop().await;
}

// ------------------------------------------------------------ UpdateThingGroup

#[tokio::test]
async fn update_thing_group_replaces_description_merges_or_replaces_attributes_and_returns_the_version()
 {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let created = client
        .create_thing_group(CreateThingGroupRequest {
            thing_group_properties: group_props(Some("d1"), replace(&[("a", "1"), ("b", "2")])),
            ..group_req("red", None)
        })
        .await
        .unwrap()
        .into_inner();
    let before = last_sequence(&mut client).await;

    let resp = client
        .update_thing_group(UpdateThingGroupRequest {
            expected_version: Some(1),
            ..update_group_req(
                "red",
                group_props(Some("d2"), merge(&[("b", ""), ("c", "3")])),
            )
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.version, 2);
    let group = describe_group(&mut client, "red").await;
    assert_eq!(group.version, 2);
    assert_eq!(group_description(&group), "d2");
    assert_eq!(group_attrs(&group), attrs(&[("a", "1"), ("c", "3")]));

    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING_GROUP UPDATED"]);
    assert_eq!(
        group_event(&events[0]),
        &ThingGroupEvent {
            thing_group_id: created.thing_group_id,
            thing_group_name: "red".into(),
            version_number: 2,
            parent_group_name: None,
            parent_group_id: None,
            description: "d2".into(),
            root_to_parent_thing_groups: vec![],
            attributes: attrs(&[("a", "1"), ("c", "3")]),
            dynamic_group_mapping_id: None,
        }
    );

    // No description given: it stays. Without merge the attributes are replaced.
    let resp = client
        .update_thing_group(update_group_req(
            "red",
            group_props(None, replace(&[("z", "9"), ("gone", "")])),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.version, 3);
    let group = describe_group(&mut client, "red").await;
    assert_eq!(group.version, 3);
    assert_eq!(group_description(&group), "d2");
    assert_eq!(group_attrs(&group), attrs(&[("z", "9")]));
    registry.stop().await;
}

#[tokio::test]
async fn update_child_thing_group_event_names_its_parent_and_ancestors() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let root = create_group(&mut client, "root", None).await;
    create_group(&mut client, "child", Some("root")).await;
    let before = last_sequence(&mut client).await;

    client
        .update_thing_group(update_group_req("child", group_props(Some("new"), None)))
        .await
        .unwrap();
    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING_GROUP UPDATED"]);
    let event = group_event(&events[0]);
    assert_eq!(event.version_number, 2);
    assert_eq!(event.parent_group_name.as_deref(), Some("root"));
    assert_eq!(
        event.parent_group_id.as_deref(),
        Some(root.thing_group_id.as_str())
    );
    assert_eq!(
        event.root_to_parent_thing_groups,
        [GroupIdAndArn {
            group_arn: root.thing_group_arn,
            group_id: root.thing_group_id
        }]
    );
    assert_eq!(event.description, "new");
    registry.stop().await;
}

#[tokio::test]
async fn update_thing_group_with_wrong_expected_version_is_refused_and_changes_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    client
        .create_thing_group(CreateThingGroupRequest {
            thing_group_properties: group_props(Some("d"), replace(&[("a", "1")])),
            ..group_req("red", None)
        })
        .await
        .unwrap();
    let described = describe_group(&mut client, "red").await;
    let before = last_sequence(&mut client).await;

    for wrong in [0, 2, 9] {
        let req = UpdateThingGroupRequest {
            expected_version: Some(wrong),
            ..update_group_req("red", group_props(Some("x"), merge(&[("a", "2")])))
        };
        expect_err(
            client.update_thing_group(req).await,
            ErrorType::VersionConflict,
        );
    }
    assert_eq!(describe_group(&mut client, "red").await, described);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn update_thing_group_with_invalid_properties_is_refused_and_changes_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    client
        .create_thing_group(CreateThingGroupRequest {
            thing_group_properties: group_props(
                Some("d"),
                Some(AttributePayload {
                    attributes: many_attrs(50),
                    merge: false,
                }),
            ),
            ..group_req("red", None)
        })
        .await
        .unwrap();
    let described = describe_group(&mut client, "red").await;
    let before = last_sequence(&mut client).await;

    let too_long = "d".repeat(2029);
    for bad in [
        group_props(Some(&too_long), None),
        group_props(None, merge(&[("bad name", "1")])),
        group_props(None, merge(&[("ok", "bad value")])),
        group_props(None, merge(&[("one-too-many", "1")])),
    ] {
        expect_err(
            client
                .update_thing_group(update_group_req("red", bad))
                .await,
            ErrorType::InvalidRequest,
        );
    }
    assert_eq!(describe_group(&mut client, "red").await, described);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn update_missing_thing_group_is_not_found() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;
    expect_err(
        client
            .update_thing_group(update_group_req("ghost", group_props(Some("d"), None)))
            .await,
        ErrorType::ResourceNotFound,
    );
    assert_no_group(&mut client, "ghost").await;
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

// ------------------------------------------------------------ DeleteThingGroup

#[tokio::test]
async fn delete_root_thing_group_removes_it_and_logs_deleted() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let created = client
        .create_thing_group(CreateThingGroupRequest {
            thing_group_properties: group_props(Some("d"), replace(&[("a", "1")])),
            ..group_req("red", None)
        })
        .await
        .unwrap()
        .into_inner();
    client
        .update_thing_group(update_group_req("red", group_props(Some("d2"), None)))
        .await
        .unwrap();
    let before = last_sequence(&mut client).await;

    client
        .delete_thing_group(DeleteThingGroupRequest {
            expected_version: Some(2),
            ..delete_group_req("red")
        })
        .await
        .unwrap();
    assert_no_group(&mut client, "red").await;
    assert!(
        group_names(&mut client, list_groups_req(None, None, true))
            .await
            .is_empty()
    );

    let events = events_after(&mut client, before).await;
    assert_eq!(summary(&events), ["THING_GROUP DELETED"]);
    let event = group_event(&events[0]);
    assert_eq!(event.thing_group_id, created.thing_group_id);
    assert_eq!(event.thing_group_name, "red");
    assert_eq!(event.version_number, 2);
    assert_eq!(event.description, "d2");
    assert_eq!(event.attributes, attrs(&[("a", "1")]));
    registry.stop().await;
}

#[tokio::test]
async fn delete_child_group_logs_membership_removed_then_hierarchy_removed_then_deleted() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let parent = create_group(&mut client, "parent", None).await;
    let child = create_group(&mut client, "child", Some("parent")).await;
    let t1 = create_thing(&mut client, "t1").await;
    let t2 = create_thing(&mut client, "t2").await;
    let mark = last_sequence(&mut client).await;
    add_to_group(&mut client, "child", "t1").await;
    add_to_group(&mut client, "child", "t2").await;
    let added: HashMap<String, String> = events_after(&mut client, mark)
        .await
        .iter()
        .map(|e| {
            (
                membership_event(e).thing_name.clone(),
                membership_event(e).membership_id.clone(),
            )
        })
        .collect();
    let before = last_sequence(&mut client).await;

    client
        .delete_thing_group(delete_group_req("child"))
        .await
        .unwrap();
    assert_no_group(&mut client, "child").await;
    assert!(groups_of(&mut client, "t1").await.is_empty());
    assert!(groups_of(&mut client, "t2").await.is_empty());
    assert!(
        group_names(&mut client, list_groups_req(Some("parent"), None, true))
            .await
            .is_empty()
    );

    let events = events_after(&mut client, before).await;
    assert_eq!(
        summary(&events),
        [
            "THING_GROUP_MEMBERSHIP REMOVED",
            "THING_GROUP_MEMBERSHIP REMOVED",
            "THING_GROUP_HIERARCHY REMOVED",
            "THING_GROUP DELETED"
        ]
    );
    assert_one_timestamp(&events);
    let mut removed: Vec<(String, String, String)> = events[..2]
        .iter()
        .map(|e| {
            let m = membership_event(e);
            assert_eq!(m.group_id, child.thing_group_id);
            assert_eq!(m.group_arn, child.thing_group_arn);
            assert_eq!(m.thing_group_name, "child");
            assert_eq!(
                m.membership_id, added[&m.thing_name],
                "removed carries the added membership id"
            );
            (
                m.thing_name.clone(),
                m.thing_id.clone(),
                m.thing_arn.clone(),
            )
        })
        .collect();
    removed.sort();
    assert_eq!(
        removed,
        [
            ("t1".to_string(), t1.thing_id, t1.thing_arn),
            ("t2".to_string(), t2.thing_id, t2.thing_arn),
        ]
    );
    assert_eq!(
        hierarchy_event(&events[2]),
        &ThingGroupHierarchyEvent {
            thing_group_id: parent.thing_group_id,
            thing_group_name: "parent".into(),
            child_group_id: child.thing_group_id.clone(),
            child_group_name: "child".into(),
        }
    );
    assert_eq!(group_event(&events[3]).thing_group_id, child.thing_group_id);
    assert_eq!(
        group_event(&events[3]).parent_group_name.as_deref(),
        Some("parent")
    );
    registry.stop().await;
}

#[tokio::test]
async fn delete_thing_group_with_child_groups_is_refused_and_changes_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "parent", None).await;
    create_group(&mut client, "child", Some("parent")).await;
    create_thing(&mut client, "member").await;
    add_to_group(&mut client, "parent", "member").await;
    let parent = describe_group(&mut client, "parent").await;
    let before = last_sequence(&mut client).await;

    expect_err(
        client.delete_thing_group(delete_group_req("parent")).await,
        ErrorType::InvalidRequest,
    );
    assert_eq!(describe_group(&mut client, "parent").await, parent);
    assert_eq!(things_in(&mut client, "parent", false).await, ["member"]);
    assert_eq!(
        group_names(&mut client, list_groups_req(Some("parent"), None, false)).await,
        ["child"]
    );
    assert_no_events_after(&mut client, before).await;

    client
        .delete_thing_group(delete_group_req("child"))
        .await
        .unwrap();
    client
        .delete_thing_group(delete_group_req("parent"))
        .await
        .unwrap();
    assert_no_group(&mut client, "parent").await;
    registry.stop().await;
}

#[tokio::test]
async fn delete_missing_thing_group_succeeds_and_logs_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "other", None).await;
    let before = last_sequence(&mut client).await;
    client
        .delete_thing_group(delete_group_req("ghost"))
        .await
        .unwrap();
    client
        .delete_thing_group(DeleteThingGroupRequest {
            expected_version: Some(4),
            ..delete_group_req("ghost")
        })
        .await
        .unwrap();
    assert_no_events_after(&mut client, before).await;
    assert_eq!(describe_group(&mut client, "other").await.version, 1);
    registry.stop().await;
}

#[tokio::test]
async fn delete_thing_group_with_wrong_expected_version_is_refused_and_changes_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "red", None).await;
    let described = describe_group(&mut client, "red").await;
    let before = last_sequence(&mut client).await;
    for wrong in [0, 2] {
        expect_err(
            client
                .delete_thing_group(DeleteThingGroupRequest {
                    expected_version: Some(wrong),
                    ..delete_group_req("red")
                })
                .await,
            ErrorType::VersionConflict,
        );
    }
    assert_eq!(describe_group(&mut client, "red").await, described);
    assert_no_events_after(&mut client, before).await;

    client
        .delete_thing_group(DeleteThingGroupRequest {
            expected_version: Some(1),
            ..delete_group_req("red")
        })
        .await
        .unwrap();
    assert_no_group(&mut client, "red").await;
    registry.stop().await;
}

// ------------------------------------------------------------ ListThingGroups

#[tokio::test]
async fn list_thing_groups_by_parent_recursively_and_by_name_prefix() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "root-b", None).await;
    create_group(&mut client, "root-a", None).await;
    create_group(&mut client, "a-2", Some("root-a")).await;
    create_group(&mut client, "a-1", Some("root-a")).await;
    create_group(&mut client, "a-1-x", Some("a-1")).await;
    create_group(&mut client, "a-1-x-deep", Some("a-1-x")).await;
    create_group(&mut client, "b-1", Some("root-b")).await;

    assert_eq!(
        group_names(&mut client, list_groups_req(None, None, true)).await,
        [
            "a-1",
            "a-1-x",
            "a-1-x-deep",
            "a-2",
            "b-1",
            "root-a",
            "root-b"
        ]
    );
    assert_eq!(
        group_names(&mut client, list_groups_req(None, Some("root"), false)).await,
        ["root-a", "root-b"]
    );
    // Not recursive without a parent: the root groups only, as AWS IoT lists.
    assert_eq!(
        group_names(&mut client, list_groups_req(None, None, false)).await,
        ["root-a", "root-b"]
    );
    assert_eq!(
        group_names(&mut client, list_groups_req(None, Some("a-"), false)).await,
        Vec::<String>::new()
    );
    assert_eq!(
        group_names(&mut client, list_groups_req(Some("root-a"), None, false)).await,
        ["a-1", "a-2"]
    );
    assert_eq!(
        group_names(&mut client, list_groups_req(Some("root-a"), None, true)).await,
        ["a-1", "a-1-x", "a-1-x-deep", "a-2"]
    );
    assert_eq!(
        group_names(
            &mut client,
            list_groups_req(Some("root-a"), Some("a-1"), false)
        )
        .await,
        ["a-1"]
    );
    assert_eq!(
        group_names(
            &mut client,
            list_groups_req(Some("root-a"), Some("a-1"), true)
        )
        .await,
        ["a-1", "a-1-x", "a-1-x-deep"]
    );
    assert_eq!(
        group_names(&mut client, list_groups_req(Some("a-1-x-deep"), None, true)).await,
        Vec::<String>::new()
    );
    assert_eq!(
        group_names(
            &mut client,
            list_groups_req(Some("root-b"), Some("zzz"), true)
        )
        .await,
        Vec::<String>::new()
    );

    let before = last_sequence(&mut client).await;
    for recursive in [false, true] {
        expect_err(
            client
                .list_thing_groups(list_groups_req(Some("ghost"), None, recursive))
                .await,
            ErrorType::ResourceNotFound,
        );
    }
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn list_thing_groups_pages_walk_every_group_exactly_once_and_refuse_bad_input() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_group(&mut client, "parent", None).await;
    for name in ["g5", "g2", "g7", "g1", "g6", "g3", "g4"] {
        create_group(&mut client, name, Some("parent")).await;
    }

    let pages = walk_pages(|token| {
        let mut client = client.clone();
        async move {
            let req = ListThingGroupsRequest {
                page: page(3, &token),
                ..list_groups_req(Some("parent"), None, true)
            };
            let resp = client.list_thing_groups(req).await.unwrap().into_inner();
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
    assert_paged(&pages, 3, &names("g", 7));

    let all = walk_pages(|token| {
        let mut client = client.clone();
        async move {
            let req = ListThingGroupsRequest {
                page: page(2, &token),
                ..list_groups_req(None, None, true)
            };
            let resp = client.list_thing_groups(req).await.unwrap().into_inner();
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
    let mut expected = names("g", 7);
    expected.push("parent".into());
    assert_paged(&all, 2, &expected);

    for (max, token) in [(251, ""), (3, "garbage")] {
        let req = ListThingGroupsRequest {
            page: page(max, token),
            ..list_groups_req(None, None, true)
        };
        expect_err(
            client.list_thing_groups(req).await,
            ErrorType::InvalidRequest,
        );
    }
    registry.stop().await;
}

#[tokio::test]
async fn list_thing_groups_default_page_holds_fifty() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let mut all: Vec<String> = (0..52).map(|i| format!("group-{i:02}")).rev().collect();
    for name in &all {
        create_group(&mut client, name, None).await;
    }
    all.sort();

    let first = client
        .list_thing_groups(list_groups_req(None, None, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.thing_groups.len(), 50);
    assert!(!first.next_token.is_empty());
    let second = client
        .list_thing_groups(ListThingGroupsRequest {
            page: page(0, &first.next_token),
            ..list_groups_req(None, None, true)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.next_token, "");
    let listed: Vec<String> = first
        .thing_groups
        .into_iter()
        .chain(second.thing_groups)
        .map(|g| g.group_name)
        .collect();
    assert_eq!(listed, all);
    registry.stop().await;
}
