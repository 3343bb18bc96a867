//! The change log through the gRPC API: replay from a cursor, following it live,
//! the replay→live seam under concurrent writers, `GetChangeLogInfo`, durability
//! across a clean restart, and retention.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use herald_proto::{
    error::ErrorType,
    registry::v1::{
        AttributePayload, ChangeEvent, ChangeLogInfo, CreateThingRequest, CreateThingTypeRequest,
        DeleteThingRequest, DescribeThingRequest, GetChangeLogInfoRequest, Operation, ThingEvent,
        UpdateThingRequest, WatchChangesRequest, WatchChangesResponse, change_event::Event,
    },
};
use herald_registry::{ChangeLogSettings, Settings};
use tokio::{sync::watch, time::timeout};
use tonic::{Code, Status, Streaming};

use crate::support::{Client, TestRegistry, eventually, expect_err};

const ACCOUNT_ID: &str = "123456789012";
/// How long a watcher may take to deliver the events a test expects.
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- helpers

fn attributes(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn payload(pairs: &[(&str, &str)], merge: bool) -> AttributePayload {
    AttributePayload {
        attributes: attributes(pairs),
        merge,
    }
}

/// Creates an untyped thing; returns its id.
async fn create_thing(client: &mut Client, name: &str, attrs: &[(&str, &str)]) -> String {
    client
        .create_thing(CreateThingRequest {
            thing_name: name.into(),
            attribute_payload: Some(payload(attrs, false)),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("CreateThing {name}: {e:?}"))
        .into_inner()
        .thing_id
}

async fn merge_attributes(client: &mut Client, name: &str, attrs: &[(&str, &str)]) {
    client
        .update_thing(UpdateThingRequest {
            thing_name: name.into(),
            attribute_payload: Some(payload(attrs, true)),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("UpdateThing {name}: {e:?}"));
}

async fn log_info(client: &mut Client) -> ChangeLogInfo {
    client
        .get_change_log_info(GetChangeLogInfoRequest {})
        .await
        .expect("GetChangeLogInfo")
        .into_inner()
}

async fn watch_from(client: &mut Client, after_sequence: u64) -> Streaming<WatchChangesResponse> {
    client
        .watch_changes(WatchChangesRequest { after_sequence })
        .await
        .unwrap_or_else(|e| panic!("WatchChanges after {after_sequence}: {e:?}"))
        .into_inner()
}

/// Reads exactly `n` events from `stream`, failing after `WAIT` or on an error or end.
async fn take_events(stream: &mut Streaming<WatchChangesResponse>, n: usize) -> Vec<ChangeEvent> {
    let mut events = Vec::with_capacity(n);
    let read = timeout(WAIT, async {
        while events.len() < n {
            match stream.message().await {
                Ok(Some(batch)) => events.extend(batch.events),
                Ok(None) => panic!("the stream ended after {} of {n} events", events.len()),
                Err(status) => panic!(
                    "the stream failed after {} of {n} events: {status:?}",
                    events.len()
                ),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "timed out after {} of {n} events",
        events.len()
    );
    assert_eq!(
        events.len(),
        n,
        "the stream delivered more events than were logged: {events:#?}"
    );
    events
}

/// Reads from `stream` (which started after `cursor`) until it has delivered the
/// event whose sequence `target` names (0 means "not known yet").
async fn read_until_target(
    mut stream: Streaming<WatchChangesResponse>,
    cursor: u64,
    mut target: watch::Receiver<u64>,
) -> Vec<ChangeEvent> {
    let mut events: Vec<ChangeEvent> = Vec::new();
    loop {
        let want = *target.borrow_and_update();
        let reached = events.last().map_or(cursor, |e| e.sequence);
        if want != 0 && reached >= want {
            return events;
        }
        tokio::select! {
            message = stream.message() => match message {
                Ok(Some(batch)) => events.extend(batch.events),
                Ok(None) => panic!("the stream ended at sequence {reached}"),
                Err(status) => panic!("the stream failed at sequence {reached}: {status:?}"),
            },
            changed = target.changed() => changed.expect("the target sender lives until the readers end"),
        }
    }
}

/// The status a refused watch fails with, whether at the call or on the first message.
async fn watch_refusal(client: &mut Client, after_sequence: u64) -> Status {
    match client
        .watch_changes(WatchChangesRequest { after_sequence })
        .await
    {
        Err(status) => status,
        Ok(response) => {
            let mut stream = response.into_inner();
            match timeout(WAIT, stream.message()).await {
                Err(_) => {
                    panic!("a watch after {after_sequence} should have been refused, but it hung")
                }
                Ok(Err(status)) => status,
                Ok(Ok(message)) => {
                    panic!("a watch after {after_sequence} should have been refused: {message:?}")
                }
            }
        }
    }
}

#[track_caller]
fn assert_consecutive(events: &[ChangeEvent], first: u64) {
    for (i, event) in events.iter().enumerate() {
        let want = first + i as u64;
        assert_eq!(
            event.sequence,
            want,
            "sequences should be consecutive from {first}: event #{i} has {} where {want} belongs (around: {:?})",
            event.sequence,
            events[i.saturating_sub(3)..(i + 3).min(events.len())]
                .iter()
                .map(|e| e.sequence)
                .collect::<Vec<_>>()
        );
    }
}

#[track_caller]
fn assert_unique_ids(events: &[ChangeEvent]) {
    let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "event ids must be unique");
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Checks the envelope every event carries: a UUID id, a recent timestamp, the account.
#[track_caller]
fn assert_envelope(event: &ChangeEvent) {
    assert!(
        !event.event_id.is_empty(),
        "event {} has no id",
        event.sequence
    );
    assert!(
        uuid::Uuid::parse_str(&event.event_id).is_ok(),
        "event {} id {:?} is not a UUID",
        event.sequence,
        event.event_id
    );
    let skew = (now_ms() - event.timestamp_ms).abs();
    assert!(
        skew < 60_000,
        "event {} timestamp {} is {skew} ms from now",
        event.sequence,
        event.timestamp_ms
    );
    assert_eq!(event.account_id, ACCOUNT_ID, "event {}", event.sequence);
}

#[track_caller]
fn thing_event(event: &ChangeEvent, operation: Operation) -> &ThingEvent {
    assert_eq!(
        event.operation(),
        operation,
        "event {}: {event:?}",
        event.sequence
    );
    match &event.event {
        Some(Event::Thing(thing)) => thing,
        other => panic!(
            "event {} should be a THING event, got {other:?}",
            event.sequence
        ),
    }
}

fn thing_name(event: &ChangeEvent) -> &str {
    match &event.event {
        Some(Event::Thing(thing)) => &thing.thing_name,
        other => panic!(
            "event {} should be a THING event, got {other:?}",
            event.sequence
        ),
    }
}

// ---------------------------------------------------------------- replay

#[tokio::test]
async fn a_watch_from_zero_replays_every_event_in_order_with_ids_timestamps_and_payloads() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;

    let type_id = client
        .create_thing_type(CreateThingTypeRequest {
            thing_type_name: "sensor".into(),
            ..Default::default()
        })
        .await
        .expect("CreateThingType")
        .into_inner()
        .thing_type_id;
    let alpha_id = create_thing(&mut client, "alpha", &[("color", "red")]).await;
    let beta_id = client
        .create_thing(CreateThingRequest {
            thing_name: "beta".into(),
            thing_type_name: Some("sensor".into()),
            ..Default::default()
        })
        .await
        .expect("CreateThing beta")
        .into_inner()
        .thing_id;
    merge_attributes(&mut client, "alpha", &[("size", "L")]).await;
    client
        .delete_thing(DeleteThingRequest {
            thing_name: "alpha".into(),
            expected_version: None,
        })
        .await
        .expect("DeleteThing alpha");

    assert_eq!(
        log_info(&mut client).await,
        ChangeLogInfo {
            first_sequence: 1,
            last_sequence: 6
        }
    );
    let events = take_events(&mut watch_from(&mut client, 0).await, 6).await;
    assert_consecutive(&events, 1);
    assert_unique_ids(&events);
    events.iter().for_each(assert_envelope);

    // 1: THING_TYPE created.
    assert_eq!(events[0].operation(), Operation::Created);
    match &events[0].event {
        Some(Event::ThingType(t)) => {
            assert_eq!(t.thing_type_name, "sensor");
            assert_eq!(t.thing_type_id, type_id);
            assert!(!t.is_deprecated);
        }
        other => panic!("event 1 should be THING_TYPE, got {other:?}"),
    }

    // 2: THING created, version 1, with its attributes.
    let created = thing_event(&events[1], Operation::Created);
    assert_eq!(created.thing_name, "alpha");
    assert_eq!(created.thing_id, alpha_id);
    assert_eq!(created.version_number, 1);
    assert_eq!(created.thing_type_name, None);
    assert_eq!(created.attributes, attributes(&[("color", "red")]));

    // 3 and 4: one call, THING created then THING_TYPE_ASSOCIATION added, sharing a timestamp.
    let typed = thing_event(&events[2], Operation::Created);
    assert_eq!(
        (typed.thing_name.as_str(), typed.thing_id.as_str()),
        ("beta", beta_id.as_str())
    );
    assert_eq!(typed.thing_type_name.as_deref(), Some("sensor"));
    assert_eq!(events[3].operation(), Operation::Added);
    match &events[3].event {
        Some(Event::ThingTypeAssociation(a)) => {
            assert_eq!(
                (a.thing_name.as_str(), a.thing_id.as_str()),
                ("beta", beta_id.as_str())
            );
            assert_eq!(a.thing_type_name, "sensor");
        }
        other => panic!("event 4 should be THING_TYPE_ASSOCIATION, got {other:?}"),
    }
    assert_eq!(
        events[2].timestamp_ms, events[3].timestamp_ms,
        "events of one call share a timestamp"
    );

    // 5: THING updated, version 2, merged attributes.
    let updated = thing_event(&events[4], Operation::Updated);
    assert_eq!(
        (updated.thing_name.as_str(), updated.thing_id.as_str()),
        ("alpha", alpha_id.as_str())
    );
    assert_eq!(updated.version_number, 2);
    assert_eq!(
        updated.attributes,
        attributes(&[("color", "red"), ("size", "L")])
    );

    // 6: THING deleted, with the last state.
    let deleted = thing_event(&events[5], Operation::Deleted);
    assert_eq!(
        (deleted.thing_name.as_str(), deleted.thing_id.as_str()),
        ("alpha", alpha_id.as_str())
    );
    assert_eq!(deleted.version_number, 2);
    assert_eq!(
        deleted.attributes,
        attributes(&[("color", "red"), ("size", "L")])
    );
}

#[tokio::test]
async fn a_watch_from_a_cursor_replays_only_the_events_after_it() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    for i in 1..=10 {
        create_thing(&mut client, &format!("thing-{i}"), &[("i", &i.to_string())]).await;
    }
    let all = take_events(&mut watch_from(&mut client, 0).await, 10).await;
    assert_consecutive(&all, 1);

    for cursor in [1, 4, 9] {
        let tail = take_events(
            &mut watch_from(&mut client, cursor).await,
            10 - cursor as usize,
        )
        .await;
        assert_consecutive(&tail, cursor + 1);
        assert_eq!(
            tail,
            all[cursor as usize..],
            "a replay from {cursor} should repeat the same events"
        );
        assert_eq!(thing_name(&tail[0]), format!("thing-{}", cursor + 1));
    }
}

// ---------------------------------------------------------------- live

#[tokio::test]
async fn the_stream_stays_open_and_delivers_an_event_made_after_the_watcher_caught_up() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    for i in 1..=3 {
        create_thing(&mut client, &format!("early-{i}"), &[]).await;
    }
    let mut from_zero = watch_from(&mut client, 0).await;
    assert_consecutive(&take_events(&mut from_zero, 3).await, 1);
    let mut from_end = watch_from(&mut client, 3).await;

    let late_id = create_thing(&mut client, "late", &[("k", "v")]).await;

    for stream in [&mut from_zero, &mut from_end] {
        let events = take_events(stream, 1).await;
        assert_eq!(events[0].sequence, 4);
        assert_envelope(&events[0]);
        let late = thing_event(&events[0], Operation::Created);
        assert_eq!(
            (late.thing_name.as_str(), late.thing_id.as_str()),
            ("late", late_id.as_str())
        );
        assert_eq!(late.attributes, attributes(&[("k", "v")]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watchers_see_every_concurrent_write_exactly_once_in_order_across_the_replay_live_seam() {
    const WRITERS: usize = 8;
    const EACH: usize = 100;
    /// Writes each writer makes after the midway watcher has opened its stream.
    const AFTER_MIDWAY: usize = 10;

    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    let (target_tx, target_rx) = watch::channel(0u64);

    // A watcher from 0, open before any write.
    let early = tokio::spawn(read_until_target(
        watch_from(&mut client, 0).await,
        0,
        target_rx.clone(),
    ));

    let acknowledged = Arc::new(AtomicUsize::new(0));
    let midway_open = Arc::new(AtomicBool::new(false));

    // A watcher that joins midway, at the last sequence of that moment.
    let midway = tokio::spawn({
        let mut client = client.clone();
        let acknowledged = acknowledged.clone();
        let midway_open = midway_open.clone();
        let target = target_rx.clone();
        async move {
            eventually(60, "a quarter of the writes acknowledged", || {
                let n = acknowledged.load(Ordering::SeqCst);
                async move { (n >= WRITERS * EACH / 4).then_some(()) }
            })
            .await;
            let cursor = log_info(&mut client).await.last_sequence;
            let stream = watch_from(&mut client, cursor).await;
            midway_open.store(true, Ordering::SeqCst);
            (cursor, read_until_target(stream, cursor, target).await)
        }
    });

    // Each writer makes at least EACH creates, and keeps going until it has made
    // AFTER_MIDWAY more after the midway watcher opened, so that the seam sees writes.
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let mut client = client.clone();
            let acknowledged = acknowledged.clone();
            let midway_open = midway_open.clone();
            tokio::spawn(async move {
                let mut names = Vec::new();
                let mut after_midway = 0;
                for i in 0.. {
                    if midway_open.load(Ordering::SeqCst) {
                        after_midway += 1;
                    }
                    if i >= EACH && after_midway > AFTER_MIDWAY {
                        break;
                    }
                    let name = format!("w{w}-{i}");
                    create_thing(&mut client, &name, &[("writer", &w.to_string())]).await;
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                    names.push(name);
                }
                names
            })
        })
        .collect();
    let mut acked_names = HashSet::new();
    for writer in writers {
        acked_names.extend(
            timeout(Duration::from_secs(120), writer)
                .await
                .expect("writers finish")
                .unwrap(),
        );
    }
    let total = acked_names.len() as u64;
    assert_eq!(total as usize, acknowledged.load(Ordering::SeqCst));
    assert_eq!(
        log_info(&mut client).await.last_sequence,
        total,
        "one event per acknowledged create"
    );

    target_tx.send(total).unwrap();
    let early = timeout(Duration::from_secs(60), early)
        .await
        .expect("the early watcher catches up")
        .unwrap();
    let (cursor, midway) = timeout(Duration::from_secs(60), midway)
        .await
        .expect("the midway watcher catches up")
        .unwrap();
    drop(target_tx);

    assert_consecutive(&early, 1);
    assert_eq!(
        early.len() as u64,
        total,
        "the early watcher gets 1..={total} and nothing more"
    );
    assert_unique_ids(&early);
    let mut seen = HashSet::new();
    for event in &early {
        let thing = thing_event(event, Operation::Created);
        assert_eq!(thing.version_number, 1);
        assert!(
            seen.insert(thing.thing_name.clone()),
            "{} logged twice",
            thing.thing_name
        );
    }
    assert_eq!(
        seen, acked_names,
        "the logged creates are exactly the acknowledged ones"
    );

    assert!(
        cursor >= (WRITERS * EACH / 4) as u64 && cursor < total,
        "midway cursor {cursor} of {total}"
    );
    assert_consecutive(&midway, cursor + 1);
    assert_eq!(
        midway,
        early[cursor as usize..],
        "the midway watcher gets exactly the rest, identically"
    );
}

// ---------------------------------------------------------------- nothing logged

#[tokio::test]
async fn a_refused_mutation_logs_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_thing(&mut client, "present", &[]).await;
    assert_eq!(log_info(&mut client).await.last_sequence, 1);

    let missing = client
        .update_thing(UpdateThingRequest {
            thing_name: "missing".into(),
            attribute_payload: Some(payload(&[("a", "b")], true)),
            ..Default::default()
        })
        .await;
    expect_err(missing, ErrorType::ResourceNotFound);
    let conflict = client
        .update_thing(UpdateThingRequest {
            thing_name: "present".into(),
            attribute_payload: Some(payload(&[("a", "b")], true)),
            expected_version: Some(7),
            ..Default::default()
        })
        .await;
    expect_err(conflict, ErrorType::VersionConflict);
    let invalid = client
        .create_thing(CreateThingRequest {
            thing_name: "not a valid name!".into(),
            ..Default::default()
        })
        .await;
    expect_err(invalid, ErrorType::InvalidRequest);

    assert_eq!(
        log_info(&mut client).await,
        ChangeLogInfo {
            first_sequence: 1,
            last_sequence: 1
        }
    );
    let thing = client
        .describe_thing(DescribeThingRequest {
            thing_name: "present".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(thing.version, 1, "a refused update changes nothing");

    // The next logged event follows directly: nothing was streamed for the refusals.
    let mut stream = watch_from(&mut client, 0).await;
    create_thing(&mut client, "next", &[]).await;
    let events = take_events(&mut stream, 2).await;
    assert_consecutive(&events, 1);
    assert_eq!(thing_name(&events[1]), "next");
}

#[tokio::test]
async fn a_successful_call_that_changes_nothing_logs_nothing() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    create_thing(&mut client, "same", &[("a", "1")]).await;

    // The same create again, and deleting a thing that does not exist: successes without change.
    create_thing(&mut client, "same", &[("a", "1")]).await;
    client
        .delete_thing(DeleteThingRequest {
            thing_name: "never-existed".into(),
            expected_version: None,
        })
        .await
        .expect("deleting a missing thing succeeds");

    assert_eq!(
        log_info(&mut client).await,
        ChangeLogInfo {
            first_sequence: 1,
            last_sequence: 1
        }
    );
}

// ---------------------------------------------------------------- info

#[tokio::test]
async fn change_log_info_is_zero_for_an_empty_log_then_spans_one_to_the_last_event() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    assert_eq!(
        log_info(&mut client).await,
        ChangeLogInfo {
            first_sequence: 0,
            last_sequence: 0
        }
    );

    create_thing(&mut client, "one", &[]).await;
    assert_eq!(
        log_info(&mut client).await,
        ChangeLogInfo {
            first_sequence: 1,
            last_sequence: 1
        }
    );

    for i in 2..=5 {
        create_thing(&mut client, &format!("thing-{i}"), &[]).await;
    }
    merge_attributes(&mut client, "one", &[("x", "y")]).await;
    assert_eq!(
        log_info(&mut client).await,
        ChangeLogInfo {
            first_sequence: 1,
            last_sequence: 6
        }
    );
}

// ---------------------------------------------------------------- durability

#[tokio::test]
async fn the_state_and_the_log_survive_a_clean_restart_and_sequences_continue() {
    let registry = TestRegistry::start().await;
    let mut client = registry.client().await;
    for i in 1..=5 {
        create_thing(&mut client, &format!("thing-{i}"), &[("i", &i.to_string())]).await;
    }
    merge_attributes(&mut client, "thing-2", &[("extra", "yes")]).await;
    merge_attributes(&mut client, "thing-2", &[("extra", "again")]).await;
    let before = take_events(&mut watch_from(&mut client, 0).await, 7).await;
    drop(client);

    let dir = registry.stop().await;
    let settings = Settings::for_test(dir.path().join("registry"));
    let registry = TestRegistry::start_in(dir, settings).await;
    let mut client = registry.client().await;

    assert_eq!(
        log_info(&mut client).await,
        ChangeLogInfo {
            first_sequence: 1,
            last_sequence: 7
        }
    );
    let after = take_events(&mut watch_from(&mut client, 0).await, 7).await;
    assert_eq!(after, before, "the log replays identically after a restart");

    let thing = client
        .describe_thing(DescribeThingRequest {
            thing_name: "thing-2".into(),
        })
        .await
        .expect("thing-2 survives the restart")
        .into_inner();
    assert_eq!(thing.version, 3);
    assert_eq!(
        thing.attributes,
        attributes(&[("i", "2"), ("extra", "again")])
    );
    for i in [1, 3, 4, 5] {
        let thing = client
            .describe_thing(DescribeThingRequest {
                thing_name: format!("thing-{i}"),
            })
            .await
            .unwrap_or_else(|e| panic!("thing-{i} survives the restart: {e:?}"))
            .into_inner();
        assert_eq!(thing.version, 1);
    }

    let mut stream = watch_from(&mut client, 7).await;
    create_thing(&mut client, "after-restart", &[]).await;
    let next = take_events(&mut stream, 1).await;
    assert_eq!(
        next[0].sequence, 8,
        "new events continue after the last logged one"
    );
    assert_eq!(thing_name(&next[0]), "after-restart");
    assert!(
        before.iter().all(|e| e.event_id != next[0].event_id),
        "a new event gets a new id"
    );
    drop(stream);
    drop(client);
    registry.stop().await;
}

// ---------------------------------------------------------------- retention

#[tokio::test]
async fn retention_removes_old_events_and_a_watch_from_a_removed_cursor_is_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        changes: ChangeLogSettings {
            retention_secs: 1,
            prune_interval_secs: 1,
        },
        ..Settings::for_test(dir.path().join("registry"))
    };
    let registry = TestRegistry::start_in(dir, settings).await;
    let mut client = registry.client().await;
    for i in 1..=3 {
        create_thing(&mut client, &format!("old-{i}"), &[]).await;
    }
    assert_eq!(
        log_info(&mut client).await,
        ChangeLogInfo {
            first_sequence: 1,
            last_sequence: 3
        }
    );

    // Wait until events 1 and 2 are gone. Event 3 may stay (a log may keep its
    // newest event) or go too (then the log is empty and reports first 0).
    let pruned = eventually(10, "retention to remove events 1 and 2", || {
        let mut client = client.clone();
        async move {
            let info = log_info(&mut client).await;
            (info.first_sequence == 0 || info.first_sequence > 2).then_some(info)
        }
    })
    .await;
    assert!(
        pruned.first_sequence == 0 || pruned.first_sequence == 3,
        "{pruned:?}"
    );

    // The next event after cursor 1 (event 2) is gone.
    for cursor in [1, 2]
        .into_iter()
        .filter(|c| pruned.first_sequence == 0 || c + 1 < pruned.first_sequence)
    {
        let status = watch_refusal(&mut client, cursor).await;
        assert_eq!(
            status.code(),
            Code::OutOfRange,
            "a watch after {cursor}: {status:?}"
        );
    }

    // A watch from 0 starts at the oldest retained event, then follows.
    let mut from_zero = watch_from(&mut client, 0).await;
    if pruned.first_sequence == 3 {
        let oldest = take_events(&mut from_zero, 1).await;
        assert_eq!(
            oldest[0].sequence, 3,
            "a watch from 0 starts at the oldest retained event"
        );
        assert_eq!(thing_name(&oldest[0]), "old-3");
    }
    // A cursor whose next event is retained is served, even if the cursor's own event is gone.
    let mut from_three = watch_from(&mut client, 3).await;

    // A fresh event continues the numbering.
    create_thing(&mut client, "fresh", &[]).await;
    for stream in [&mut from_zero, &mut from_three] {
        let events = take_events(stream, 1).await;
        assert_eq!(events[0].sequence, 4, "numbering continues after retention");
        assert_eq!(thing_name(&events[0]), "fresh");
    }
    let info = log_info(&mut client).await;
    assert_eq!(info.last_sequence, 4, "{info:?}");
    assert!((3..=4).contains(&info.first_sequence), "{info:?}");
    let status = watch_refusal(&mut client, 1).await;
    assert_eq!(
        status.code(),
        Code::OutOfRange,
        "a watch after 1: {status:?}"
    );
}
