//! Event configurations: the 11 keys, their dates, merging updates, refusals.

use std::collections::HashMap;

use herald_proto::{config::v1::*, error::ErrorType};

use crate::support::{
    Config, EVENT_TYPES, Herald, enabled_only, event_configurations, expect_err, now_ms, sorted,
    state,
};

fn update_req(pairs: &[(&str, bool)]) -> UpdateEventConfigurationsRequest {
    UpdateEventConfigurationsRequest {
        enabled: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

async fn update(c: &mut Config, pairs: &[(&str, bool)]) {
    c.update_event_configurations(update_req(pairs))
        .await
        .unwrap();
}

#[tokio::test]
async fn all_eleven_event_types_start_disabled_dated_at_the_first_start() {
    let before = now_ms();
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let described = event_configurations(&mut c).await;
    let after = now_ms();

    assert_eq!(described.enabled.len(), 11);
    assert_eq!(sorted(&described.enabled), enabled_only(&[]));
    for key in EVENT_TYPES {
        assert_eq!(described.enabled.get(key), Some(&false), "{key}");
    }
    assert!(
        (before..=after).contains(&described.creation_date_ms),
        "creation {} not within the first start [{before}, {after}]",
        described.creation_date_ms
    );
    assert_eq!(described.last_modified_date_ms, described.creation_date_ms);
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn an_update_merges_keys_and_advances_last_modified() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let initial = event_configurations(&mut c).await;

    let before = now_ms();
    update(&mut c, &[("THING", true), ("JOB", true)]).await;
    let after = now_ms();
    let first = event_configurations(&mut c).await;
    assert_eq!(sorted(&first.enabled), enabled_only(&["THING", "JOB"]));
    assert_eq!(first.creation_date_ms, initial.creation_date_ms);
    assert!((before..=after).contains(&first.last_modified_date_ms));
    assert!(first.last_modified_date_ms >= initial.last_modified_date_ms);

    // Keys left out keep their value; a key set to its value stays.
    let before = now_ms();
    update(
        &mut c,
        &[("THING", false), ("CA_CERTIFICATE", true), ("JOB", true)],
    )
    .await;
    let after = now_ms();
    let second = event_configurations(&mut c).await;
    assert_eq!(
        sorted(&second.enabled),
        enabled_only(&["JOB", "CA_CERTIFICATE"])
    );
    assert_eq!(second.creation_date_ms, initial.creation_date_ms);
    assert!((before..=after).contains(&second.last_modified_date_ms));
    assert!(second.last_modified_date_ms >= first.last_modified_date_ms);

    // Every key at once.
    let all: Vec<(&str, bool)> = EVENT_TYPES.iter().map(|k| (*k, true)).collect();
    update(&mut c, &all).await;
    assert_eq!(
        sorted(&event_configurations(&mut c).await.enabled),
        enabled_only(&EVENT_TYPES)
    );
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn an_empty_update_keeps_every_key_and_advances_last_modified() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    update(&mut c, &[("POLICY", true)]).await;
    let first = event_configurations(&mut c).await;

    let before = now_ms();
    update(&mut c, &[]).await;
    let after = now_ms();
    let second = event_configurations(&mut c).await;
    assert_eq!(second.enabled, first.enabled);
    assert_eq!(second.creation_date_ms, first.creation_date_ms);
    assert!((before..=after).contains(&second.last_modified_date_ms));
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn an_unknown_key_is_refused_and_nothing_changes() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    update(&mut c, &[("THING_GROUP", true)]).await;
    let before = state(&mut c).await;

    for bad in [
        vec![("THING", true), ("NOT_AN_EVENT", true)],
        vec![("thing", true)],
        vec![("", false)],
        vec![("CERTIFICATE", true), ("THING_TYPE", true), ("JOBS", true)],
    ] {
        let err = expect_err(
            c.update_event_configurations(update_req(&bad)).await,
            ErrorType::InvalidRequest,
        );
        assert!(!err.message.is_empty());
        assert_eq!(state(&mut c).await, before, "{bad:?} changed something");
    }
    // In particular, the known keys of a refused update were not applied.
    let described = event_configurations(&mut c).await;
    assert_eq!(sorted(&described.enabled), enabled_only(&["THING_GROUP"]));
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn event_configurations_and_their_creation_date_survive_a_restart() {
    let mut herald = Herald::start().await;
    let mut c = herald.config().await;
    update(&mut c, &[("CERTIFICATE", true), ("THING", true)]).await;
    let before = event_configurations(&mut c).await;
    drop(c);

    herald.restart_config().await;
    let mut c = herald.config().await;
    let after = event_configurations(&mut c).await;
    assert_eq!(after, before);
    let expected: HashMap<String, bool> = enabled_only(&["CERTIFICATE", "THING"])
        .into_iter()
        .collect();
    assert_eq!(after.enabled, expected);
    drop(c);
    herald.stop().await;
}
