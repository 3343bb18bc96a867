//! Billing groups: create, describe, update, delete, list, and a thing in at
//! most one of them; no events.

use herald_proto::{error::ErrorType, registry::v1::*};

use crate::{
    support::{Client, TestRegistry, expect_err},
    things::{
        assert_no_events_after, create_thing, describe_thing, last_sequence, page, thing_req,
    },
};

fn create_req(name: &str, description: Option<&str>) -> CreateBillingGroupRequest {
    CreateBillingGroupRequest {
        billing_group_name: name.into(),
        billing_group_description: description.map(str::to_owned),
        tags: vec![],
    }
}

fn by_name(group: &str, thing: &str) -> BillingGroupMembershipRequest {
    BillingGroupMembershipRequest {
        billing_group_name: Some(group.into()),
        thing_name: Some(thing.into()),
        ..Default::default()
    }
}

async fn things_in(client: &mut Client, group: &str) -> Vec<String> {
    client
        .list_things_in_billing_group(ListThingsInBillingGroupRequest {
            billing_group_name: group.into(),
            page: None,
        })
        .await
        .unwrap()
        .into_inner()
        .things
}

async fn group_names(client: &mut Client, prefix: Option<&str>) -> Vec<String> {
    client
        .list_billing_groups(ListBillingGroupsRequest {
            page: None,
            name_prefix_filter: prefix.map(str::to_owned),
        })
        .await
        .unwrap()
        .into_inner()
        .billing_groups
        .into_iter()
        .map(|g| {
            assert_eq!(
                g.group_arn,
                format!(
                    "arn:aws:iot:us-east-1:123456789012:billinggroup/{}",
                    g.group_name
                )
            );
            g.group_name
        })
        .collect()
}

#[tokio::test]
async fn billing_groups_are_created_described_updated_listed_and_deleted_without_events() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let before = last_sequence(&mut client).await;

    let created = client
        .create_billing_group(create_req("east", Some("east coast")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        created.billing_group_arn,
        "arn:aws:iot:us-east-1:123456789012:billinggroup/east"
    );
    assert_eq!(created.version, 1);
    // The same again: the same group; different properties: refused.
    let again = client
        .create_billing_group(create_req("east", Some("east coast")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.billing_group_id, created.billing_group_id);
    expect_err(
        client
            .create_billing_group(create_req("east", Some("other")))
            .await,
        ErrorType::ResourceAlreadyExists,
    );
    expect_err(
        client
            .create_billing_group(create_req("no spaces", None))
            .await,
        ErrorType::InvalidRequest,
    );
    client
        .create_billing_group(create_req("west", None))
        .await
        .unwrap();

    let update = |description: Option<&str>, expected_version| UpdateBillingGroupRequest {
        billing_group_name: "east".into(),
        billing_group_description: description.map(str::to_owned),
        expected_version,
    };
    expect_err(
        client
            .update_billing_group(update(Some("x"), Some(7)))
            .await,
        ErrorType::VersionConflict,
    );
    let updated = client
        .update_billing_group(update(Some("renamed"), Some(1)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.version, 2);
    let described = client
        .describe_billing_group(DescribeBillingGroupRequest {
            billing_group_name: "east".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        described.billing_group_description.as_deref(),
        Some("renamed")
    );
    assert_eq!(described.version, 2);
    assert_eq!(described.creation_date_ms, created.creation_date_ms);

    assert_eq!(group_names(&mut client, None).await, ["east", "west"]);
    assert_eq!(group_names(&mut client, Some("we")).await, ["west"]);

    expect_err(
        client
            .delete_billing_group(DeleteBillingGroupRequest {
                billing_group_name: "east".into(),
                expected_version: Some(1),
            })
            .await,
        ErrorType::VersionConflict,
    );
    for _ in 0..2 {
        // A group that is not there: no error.
        client
            .delete_billing_group(DeleteBillingGroupRequest {
                billing_group_name: "east".into(),
                expected_version: None,
            })
            .await
            .unwrap();
    }
    expect_err(
        client
            .describe_billing_group(DescribeBillingGroupRequest {
                billing_group_name: "east".into(),
            })
            .await,
        ErrorType::ResourceNotFound,
    );
    assert_eq!(group_names(&mut client, None).await, ["west"]);
    // AWS IoT publishes no billing group events.
    assert_no_events_after(&mut client, before).await;
    registry.stop().await;
}

#[tokio::test]
async fn a_thing_is_in_at_most_one_billing_group() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    for name in ["east", "west"] {
        client
            .create_billing_group(create_req(name, None))
            .await
            .unwrap();
    }
    create_thing(&mut client, "lamp").await;
    client
        .create_thing(CreateThingRequest {
            billing_group_name: Some("east".into()),
            ..thing_req("fan")
        })
        .await
        .unwrap();
    assert_eq!(
        describe_thing(&mut client, "fan")
            .await
            .billing_group_name
            .as_deref(),
        Some("east")
    );

    client
        .add_thing_to_billing_group(by_name("east", "lamp"))
        .await
        .unwrap();
    assert_eq!(things_in(&mut client, "east").await, ["fan", "lamp"]);
    // By ARN, into another group: it moves.
    client
        .add_thing_to_billing_group(BillingGroupMembershipRequest {
            billing_group_arn: Some("arn:aws:iot:us-east-1:123456789012:billinggroup/west".into()),
            thing_arn: Some("arn:aws:iot:us-east-1:123456789012:thing/lamp".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(things_in(&mut client, "east").await, ["fan"]);
    assert_eq!(things_in(&mut client, "west").await, ["lamp"]);
    assert_eq!(
        describe_thing(&mut client, "lamp")
            .await
            .billing_group_name
            .as_deref(),
        Some("west")
    );

    let before = last_sequence(&mut client).await;
    for (req, error) in [
        (by_name("north", "lamp"), ErrorType::ResourceNotFound),
        (by_name("west", "ghost"), ErrorType::ResourceNotFound),
        (
            BillingGroupMembershipRequest {
                thing_name: Some("lamp".into()),
                ..Default::default()
            },
            ErrorType::InvalidRequest,
        ),
    ] {
        expect_err(client.add_thing_to_billing_group(req).await, error);
    }
    expect_err(
        client
            .list_things_in_billing_group(ListThingsInBillingGroupRequest {
                billing_group_name: "north".into(),
                page: page(0, ""),
            })
            .await,
        ErrorType::ResourceNotFound,
    );
    // Removing from a group it is not in: nothing happens.
    client
        .remove_thing_from_billing_group(by_name("east", "lamp"))
        .await
        .unwrap();
    assert_eq!(things_in(&mut client, "west").await, ["lamp"]);
    client
        .remove_thing_from_billing_group(by_name("west", "lamp"))
        .await
        .unwrap();
    assert!(things_in(&mut client, "west").await.is_empty());
    assert_eq!(
        describe_thing(&mut client, "lamp").await.billing_group_name,
        None
    );
    assert_no_events_after(&mut client, before).await;

    // Deleting a thing or a group takes the membership with it.
    client
        .delete_thing(DeleteThingRequest {
            thing_name: "fan".into(),
            expected_version: None,
        })
        .await
        .unwrap();
    assert!(things_in(&mut client, "east").await.is_empty());
    client
        .add_thing_to_billing_group(by_name("east", "lamp"))
        .await
        .unwrap();
    client
        .delete_billing_group(DeleteBillingGroupRequest {
            billing_group_name: "east".into(),
            expected_version: None,
        })
        .await
        .unwrap();
    assert_eq!(
        describe_thing(&mut client, "lamp").await.billing_group_name,
        None
    );
    registry.stop().await;
}
