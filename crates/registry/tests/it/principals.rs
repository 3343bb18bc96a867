//! Thing principals: attach, detach, list both ways, and their effect on DeleteThing.

use herald_proto::{error::ErrorType, registry::v1::*};

use crate::{
    groups::create_group,
    membership::{add_to_group, groups_of},
    support::{Client, TestRegistry, expect_err},
    thing_types::create_type,
    things::{
        assert_no_events_after, assert_no_thing, assert_paged, create_thing, delete_req,
        describe_thing, events_after, last_sequence, page, summary, typed_thing_req, walk_pages,
    },
};

// ------------------------------------------------------------ helpers

fn cert(id: &str) -> String {
    format!("arn:aws:iot:us-east-1:123456789012:cert/{id}")
}

fn attach_req(thing: &str, principal: &str) -> AttachThingPrincipalRequest {
    AttachThingPrincipalRequest {
        thing_principal_type: String::new(),
        thing_name: thing.into(),
        principal: principal.into(),
    }
}

fn detach_req(thing: &str, principal: &str) -> DetachThingPrincipalRequest {
    DetachThingPrincipalRequest {
        thing_name: thing.into(),
        principal: principal.into(),
    }
}

async fn attach(client: &mut Client, thing: &str, principal: &str) {
    client
        .attach_thing_principal(attach_req(thing, principal))
        .await
        .unwrap();
}

async fn principals_of(client: &mut Client, thing: &str) -> Vec<String> {
    let resp = client
        .list_thing_principals(ListThingPrincipalsRequest {
            thing_principal_type: String::new(),
            thing_name: thing.into(),
            page: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.next_token.is_empty(), "expected a single page");
    resp.principals
}

async fn things_of(client: &mut Client, principal: &str) -> Vec<String> {
    let resp = client
        .list_principal_things(ListPrincipalThingsRequest {
            thing_principal_type: String::new(),
            principal: principal.into(),
            page: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.next_token.is_empty(), "expected a single page");
    resp.things
}

// ------------------------------------------------------------ attach

#[tokio::test]
async fn attach_principal_lists_it_both_ways_and_logs_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_thing(&mut client, "lamp").await;
    let described = describe_thing(&mut client, "lamp").await;
    let before = last_sequence(&mut client).await;

    attach(&mut client, "lamp", &cert("c1")).await;
    assert_eq!(principals_of(&mut client, "lamp").await, [cert("c1")]);
    assert_eq!(things_of(&mut client, &cert("c1")).await, ["lamp"]);
    // Attaching is not an update of the thing.
    assert_eq!(describe_thing(&mut client, "lamp").await, described);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn attaching_the_same_principal_twice_succeeds_and_lists_it_once() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_thing(&mut client, "lamp").await;
    attach(&mut client, "lamp", &cert("c1")).await;
    let before = last_sequence(&mut client).await;

    attach(&mut client, "lamp", &cert("c1")).await;
    assert_eq!(principals_of(&mut client, "lamp").await, [cert("c1")]);
    assert_eq!(things_of(&mut client, &cert("c1")).await, ["lamp"]);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn attach_principal_to_missing_thing_is_not_found_and_changes_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;
    expect_err(
        client
            .attach_thing_principal(attach_req("ghost", &cert("c1")))
            .await,
        ErrorType::ResourceNotFound,
    );
    assert!(things_of(&mut client, &cert("c1")).await.is_empty());
    assert_no_thing(&mut client, "ghost").await;
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn attach_empty_or_too_long_principal_is_refused_and_2048_characters_are_accepted() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_thing(&mut client, "lamp").await;

    let too_long = "p".repeat(2049);
    for bad in ["", too_long.as_str()] {
        expect_err(
            client.attach_thing_principal(attach_req("lamp", bad)).await,
            ErrorType::InvalidRequest,
        );
    }
    assert!(principals_of(&mut client, "lamp").await.is_empty());

    let longest = "p".repeat(2048);
    attach(&mut client, "lamp", &longest).await;
    attach(&mut client, "lamp", "any string at all / even with spaces").await;
    assert_eq!(
        principals_of(&mut client, "lamp").await,
        ["any string at all / even with spaces".to_string(), longest]
    );
    registry.stop().await;
}

// ------------------------------------------------------------ detach

#[tokio::test]
async fn detach_principal_removes_it_both_ways_and_detaching_an_unattached_one_succeeds() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_thing(&mut client, "lamp").await;
    create_thing(&mut client, "switch").await;
    attach(&mut client, "lamp", &cert("c1")).await;
    attach(&mut client, "lamp", &cert("c2")).await;
    attach(&mut client, "switch", &cert("c1")).await;
    let before = last_sequence(&mut client).await;

    client
        .detach_thing_principal(detach_req("lamp", &cert("c1")))
        .await
        .unwrap();
    assert_eq!(principals_of(&mut client, "lamp").await, [cert("c2")]);
    assert_eq!(things_of(&mut client, &cert("c1")).await, ["switch"]);

    // Not attached (any more, or ever): still a success.
    client
        .detach_thing_principal(detach_req("lamp", &cert("c1")))
        .await
        .unwrap();
    client
        .detach_thing_principal(detach_req("lamp", &cert("never")))
        .await
        .unwrap();
    assert_eq!(principals_of(&mut client, "lamp").await, [cert("c2")]);
    assert_eq!(principals_of(&mut client, "switch").await, [cert("c1")]);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn detach_principal_from_missing_thing_is_not_found() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_thing(&mut client, "lamp").await;
    attach(&mut client, "lamp", &cert("c1")).await;
    let before = last_sequence(&mut client).await;
    expect_err(
        client
            .detach_thing_principal(detach_req("ghost", &cert("c1")))
            .await,
        ErrorType::ResourceNotFound,
    );
    assert_eq!(things_of(&mut client, &cert("c1")).await, ["lamp"]);
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

// ------------------------------------------------------------ DeleteThing

#[tokio::test]
async fn delete_thing_with_attached_principal_is_refused_and_changes_nothing_until_detached() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_type(&mut client, "bulb").await;
    client
        .create_thing(typed_thing_req("lamp", "bulb"))
        .await
        .unwrap();
    create_group(&mut client, "red", None).await;
    add_to_group(&mut client, "red", "lamp").await;
    attach(&mut client, "lamp", &cert("c1")).await;
    let described = describe_thing(&mut client, "lamp").await;
    let before = last_sequence(&mut client).await;

    expect_err(
        client.delete_thing(delete_req("lamp")).await,
        ErrorType::InvalidRequest,
    );
    expect_err(
        client
            .delete_thing(DeleteThingRequest {
                expected_version: Some(1),
                ..delete_req("lamp")
            })
            .await,
        ErrorType::InvalidRequest,
    );
    assert_eq!(describe_thing(&mut client, "lamp").await, described);
    assert_eq!(groups_of(&mut client, "lamp").await, ["red"]);
    assert_eq!(principals_of(&mut client, "lamp").await, [cert("c1")]);
    assert_no_events_after(&mut client, before).await;

    client
        .detach_thing_principal(detach_req("lamp", &cert("c1")))
        .await
        .unwrap();
    let before = last_sequence(&mut client).await;
    client.delete_thing(delete_req("lamp")).await.unwrap();
    assert_no_thing(&mut client, "lamp").await;
    assert!(things_of(&mut client, &cert("c1")).await.is_empty());
    let events = events_after(&mut client, before).await;
    assert_eq!(
        summary(&events),
        [
            "THING DELETED",
            "THING_TYPE_ASSOCIATION REMOVED",
            "THING_GROUP_MEMBERSHIP REMOVED"
        ]
    );
    registry.stop().await;
}

// ------------------------------------------------------------ lists

#[tokio::test]
async fn list_thing_principals_of_missing_thing_is_not_found() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    expect_err(
        client
            .list_thing_principals(ListThingPrincipalsRequest {
                thing_principal_type: String::new(),
                thing_name: "ghost".into(),
                page: None,
            })
            .await,
        ErrorType::ResourceNotFound,
    );
    registry.stop().await;
}

#[tokio::test]
async fn list_thing_principals_is_sorted_and_pages_walk_every_principal_once() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_thing(&mut client, "lamp").await;
    for id in ["c5", "c2", "c7", "c1", "c6", "c3", "c4"] {
        attach(&mut client, "lamp", &cert(id)).await;
    }
    let pages = walk_pages(|token| {
        let mut client = client.clone();
        async move {
            let req = ListThingPrincipalsRequest {
                thing_principal_type: String::new(),
                thing_name: "lamp".into(),
                page: page(3, &token),
            };
            let resp = client
                .list_thing_principals(req)
                .await
                .unwrap()
                .into_inner();
            (resp.principals, resp.next_token)
        }
    })
    .await;
    let expected: Vec<String> = (1..=7).map(|i| cert(&format!("c{i}"))).collect();
    assert_paged(&pages, 3, &expected);

    for (max, token) in [(251, ""), (3, "garbage")] {
        let req = ListThingPrincipalsRequest {
            thing_principal_type: String::new(),
            thing_name: "lamp".into(),
            page: page(max, token),
        };
        expect_err(
            client.list_thing_principals(req).await,
            ErrorType::InvalidRequest,
        );
    }
    registry.stop().await;
}

#[tokio::test]
async fn list_principal_things_is_sorted_and_pages_walk_every_thing_once() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    for name in ["t5", "t2", "t7", "t1", "t6", "t3", "t4"] {
        create_thing(&mut client, name).await;
        attach(&mut client, name, &cert("shared")).await;
    }
    create_thing(&mut client, "unrelated").await;
    attach(&mut client, "unrelated", &cert("other")).await;

    let pages = walk_pages(|token| {
        let mut client = client.clone();
        async move {
            let req = ListPrincipalThingsRequest {
                thing_principal_type: String::new(),
                principal: cert("shared"),
                page: page(3, &token),
            };
            let resp = client
                .list_principal_things(req)
                .await
                .unwrap()
                .into_inner();
            (resp.things, resp.next_token)
        }
    })
    .await;
    let expected: Vec<String> = (1..=7).map(|i| format!("t{i}")).collect();
    assert_paged(&pages, 3, &expected);
    assert_eq!(things_of(&mut client, &cert("other")).await, ["unrelated"]);

    for (max, token) in [(251, ""), (3, "garbage")] {
        let req = ListPrincipalThingsRequest {
            thing_principal_type: String::new(),
            principal: cert("shared"),
            page: page(max, token),
        };
        expect_err(
            client.list_principal_things(req).await,
            ErrorType::InvalidRequest,
        );
    }
    registry.stop().await;
}

// ------------------------------------------------------------ exclusive

fn typed_attach(thing: &str, principal: &str, kind: &str) -> AttachThingPrincipalRequest {
    AttachThingPrincipalRequest {
        thing_principal_type: kind.into(),
        ..attach_req(thing, principal)
    }
}

async fn thing_attachments(client: &mut Client, thing: &str, only: &str) -> Vec<(String, String)> {
    let resp = client
        .list_thing_principals(ListThingPrincipalsRequest {
            thing_principal_type: only.into(),
            thing_name: thing.into(),
            page: None,
        })
        .await
        .unwrap()
        .into_inner();
    resp.attachments
        .into_iter()
        .map(|a| (a.name, a.thing_principal_type))
        .collect()
}

async fn principal_attachments(
    client: &mut Client,
    principal: &str,
    only: &str,
) -> Vec<(String, String)> {
    let resp = client
        .list_principal_things(ListPrincipalThingsRequest {
            thing_principal_type: only.into(),
            principal: principal.into(),
            page: None,
        })
        .await
        .unwrap()
        .into_inner();
    resp.attachments
        .into_iter()
        .map(|a| (a.name, a.thing_principal_type))
        .collect()
}

#[tokio::test]
async fn an_exclusive_principal_has_one_thing_and_lists_show_each_type() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    for thing in ["lamp", "fan"] {
        create_thing(&mut client, thing).await;
    }
    let (solo, shared) = (cert("solo"), cert("shared"));
    client
        .attach_thing_principal(typed_attach("lamp", &solo, "EXCLUSIVE_THING"))
        .await
        .unwrap();
    attach(&mut client, "lamp", &shared).await;
    client
        .attach_thing_principal(typed_attach("fan", &shared, "NON_EXCLUSIVE_THING"))
        .await
        .unwrap();

    let before = last_sequence(&mut client).await;
    // Exclusive to lamp: no other thing may have it, of either type.
    for kind in ["", "NON_EXCLUSIVE_THING", "EXCLUSIVE_THING"] {
        expect_err(
            client
                .attach_thing_principal(typed_attach("fan", &solo, kind))
                .await,
            ErrorType::InvalidRequest,
        );
    }
    // Attached to two things: neither may have it exclusively.
    expect_err(
        client
            .attach_thing_principal(typed_attach("lamp", &shared, "EXCLUSIVE_THING"))
            .await,
        ErrorType::InvalidRequest,
    );
    expect_err(
        client
            .attach_thing_principal(typed_attach("lamp", &shared, "SOMETIMES"))
            .await,
        ErrorType::InvalidRequest,
    );
    assert_no_events_after(&mut client, before).await;
    assert_eq!(things_of(&mut client, &solo).await, ["lamp"]);

    let exclusive = || "EXCLUSIVE_THING".to_owned();
    let non_exclusive = || "NON_EXCLUSIVE_THING".to_owned();
    let mut both = vec![
        (shared.clone(), non_exclusive()),
        (solo.clone(), exclusive()),
    ];
    both.sort();
    assert_eq!(thing_attachments(&mut client, "lamp", "").await, both);
    assert_eq!(
        thing_attachments(&mut client, "lamp", "EXCLUSIVE_THING").await,
        [(solo.clone(), exclusive())]
    );
    assert_eq!(
        thing_attachments(&mut client, "lamp", "NON_EXCLUSIVE_THING").await,
        [(shared.clone(), non_exclusive())]
    );
    assert_eq!(
        principal_attachments(&mut client, &shared, "").await,
        [
            ("fan".to_owned(), non_exclusive()),
            ("lamp".to_owned(), non_exclusive())
        ]
    );
    assert_eq!(
        principal_attachments(&mut client, &solo, "NON_EXCLUSIVE_THING").await,
        Vec::<(String, String)>::new()
    );

    // Detached, the principal is free again; re-attaching the same thing
    // changes the type.
    client
        .detach_thing_principal(detach_req("lamp", &solo))
        .await
        .unwrap();
    attach(&mut client, "fan", &solo).await;
    client
        .attach_thing_principal(typed_attach("fan", &solo, "EXCLUSIVE_THING"))
        .await
        .unwrap();
    assert_eq!(
        principal_attachments(&mut client, &solo, "").await,
        [("fan".to_owned(), exclusive())]
    );
    registry.stop().await;
}
