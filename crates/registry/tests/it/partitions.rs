//! (Account, region) partitions: each call names its partition in the
//! `x-herald-partition` metadata entry; partitions see nothing of each
//! other, keep their own change log and ARNs, and survive a restart.

use herald_proto::{error::ErrorType, registry::v1::*};
use herald_registry::{PARTITION_METADATA, Settings};
use tonic::Request;

use crate::{
    support::{Client, TestRegistry, expect_err},
    things::thing_req,
};

fn at<T>(partition: Option<&str>, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(p) = partition {
        request
            .metadata_mut()
            .insert(PARTITION_METADATA, p.parse().unwrap());
    }
    request
}

const TOKYO: &str = "111122223333/ap-northeast-1";

async fn names(client: &mut Client, partition: Option<&str>) -> Vec<String> {
    client
        .list_things(at(partition, ListThingsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .things
        .into_iter()
        .map(|t| t.thing_name)
        .collect()
}

async fn last_sequence(client: &mut Client, partition: Option<&str>) -> u64 {
    client
        .get_change_log_info(at(partition, GetChangeLogInfoRequest {}))
        .await
        .unwrap()
        .into_inner()
        .last_sequence
}

#[tokio::test]
async fn partitions_see_nothing_of_each_other_and_survive_a_restart() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    client
        .create_thing(at(None, thing_req("home-lamp")))
        .await
        .unwrap();
    let created = client
        .create_thing(at(Some(TOKYO), thing_req("tokyo-lamp")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        created.thing_arn,
        "arn:aws:iot:ap-northeast-1:111122223333:thing/tokyo-lamp"
    );
    // The same name in both: two things.
    client
        .create_thing(at(Some(TOKYO), thing_req("home-lamp")))
        .await
        .unwrap();
    assert_eq!(names(&mut client, None).await, ["home-lamp"]);
    assert_eq!(
        names(&mut client, Some(TOKYO)).await,
        ["home-lamp", "tokyo-lamp"]
    );
    expect_err(
        client
            .describe_thing(at(
                None,
                DescribeThingRequest {
                    thing_name: "tokyo-lamp".into(),
                },
            ))
            .await,
        ErrorType::ResourceNotFound,
    );
    // Each partition's log counts its own events.
    assert_eq!(last_sequence(&mut client, None).await, 1);
    assert_eq!(last_sequence(&mut client, Some(TOKYO)).await, 2);

    for bad in [
        "tokyo",
        "12/us-east-1",
        "111122223333/US_EAST",
        "111122223333/../x",
    ] {
        expect_err(
            client
                .list_things(at(Some(bad), ListThingsRequest::default()))
                .await,
            ErrorType::InvalidRequest,
        );
    }

    // Restarted, every partition is there again.
    let dir = registry.stop().await;
    let settings = Settings::for_test(dir.path().join("registry"));
    let registry = TestRegistry::start_in(dir, settings).await;
    let mut client = registry.client().await;
    assert_eq!(
        names(&mut client, Some(TOKYO)).await,
        ["home-lamp", "tokyo-lamp"]
    );
    assert_eq!(names(&mut client, None).await, ["home-lamp"]);
    registry.stop().await;
}
