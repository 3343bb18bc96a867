//! (Account, region) partitions: each call names its partition in the
//! `x-herald-partition` metadata entry; partitions see nothing of each
//! other, keep their own change log and ARNs, and survive a restart.

use herald_proto::{
    error::ErrorType,
    registry::v1::{change_event, *},
};
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

/// Reads WatchAllChanges until `n` events arrived: (partition, thing name).
async fn watch_all(
    stream: &mut tonic::Streaming<WatchChangesResponse>,
    n: usize,
) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let batch = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
            .await
            .expect("events within 10 s")
            .unwrap()
            .expect("the stream goes on");
        for event in batch.events {
            let name = match event.event {
                Some(change_event::Event::Thing(t)) => t.thing_name,
                other => panic!("expected a thing event, got {other:?}"),
            };
            seen.push((format!("{}/{}", event.account_id, event.region), name));
        }
    }
    seen
}

#[tokio::test]
async fn watch_all_changes_follows_every_partition_including_new_ones() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    client
        .create_thing(at(None, thing_req("home-1")))
        .await
        .unwrap();
    client
        .create_thing(at(Some(TOKYO), thing_req("tokyo-1")))
        .await
        .unwrap();
    let mut stream = client
        .watch_all_changes(WatchAllChangesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut seen = watch_all(&mut stream, 2).await;
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                "111122223333/ap-northeast-1".to_owned(),
                "tokyo-1".to_owned()
            ),
            ("123456789012/us-east-1".to_owned(), "home-1".to_owned()),
        ]
    );

    // A partition opened after the call is followed too; one already
    // followed goes on live.
    const PARIS: &str = "111122223333/eu-west-3";
    client
        .create_thing(at(Some(PARIS), thing_req("paris-1")))
        .await
        .unwrap();
    client
        .create_thing(at(Some(TOKYO), thing_req("tokyo-2")))
        .await
        .unwrap();
    let mut seen = watch_all(&mut stream, 2).await;
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                "111122223333/ap-northeast-1".to_owned(),
                "tokyo-2".to_owned()
            ),
            ("111122223333/eu-west-3".to_owned(), "paris-1".to_owned()),
        ]
    );

    // Cursors per partition: resuming after Tokyo's first event.
    let mut resumed = client
        .watch_all_changes(WatchAllChangesRequest {
            after_sequences: [
                (TOKYO.to_owned(), 1),
                ("123456789012/us-east-1".to_owned(), 1),
                (PARIS.to_owned(), 1),
            ]
            .into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch_all(&mut resumed, 1).await,
        [(
            "111122223333/ap-northeast-1".to_owned(),
            "tokyo-2".to_owned()
        )]
    );
    expect_err(
        client
            .watch_all_changes(WatchAllChangesRequest {
                after_sequences: [("nowhere".to_owned(), 1)].into(),
            })
            .await,
        ErrorType::InvalidRequest,
    );
    drop(stream);
    drop(resumed);
    registry.stop().await;
}
