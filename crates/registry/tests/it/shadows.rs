//! The shadow service's rate per thing: AWS IoT's quota of 20 requests a
//! second per thing, answered with 429 beyond it, and configurable.

use herald_proto::registry::v1::{ShadowRequest, shadows_client::ShadowsClient};
use herald_registry::Settings;
use serde_json::Value;

use crate::support::{TestRegistry, eventually};

fn update(thing: &str, n: usize) -> ShadowRequest {
    ShadowRequest {
        thing_name: thing.into(),
        shadow_name: String::new(),
        payload: format!(r#"{{"state":{{"reported":{{"n":{n}}}}},"clientToken":"t{n}"}}"#)
            .into_bytes(),
    }
}

#[tokio::test]
async fn a_thing_beyond_its_rate_is_answered_429_and_changes_nothing() {
    let registry = TestRegistry::start().await;
    let mut shadows = ShadowsClient::connect(format!("http://{}", registry.addr))
        .await
        .unwrap();
    // 60 at once: admitted as they arrive, however slow the machine.
    let mut burst = tokio::task::JoinSet::new();
    for n in 0..60 {
        let mut shadows = shadows.clone();
        burst.spawn(async move {
            let reply = shadows.update_shadow(update("busy", n)).await.unwrap();
            (n, reply.into_inner())
        });
    }
    let mut codes = Vec::new();
    while let Some(done) = burst.join_next().await {
        let (n, reply) = done.unwrap();
        if reply.code == 429 {
            let body: Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(body["message"], "Too Many Requests");
            assert_eq!(body["clientToken"], format!("t{n}"));
        }
        codes.push(reply.code);
    }
    let accepted = codes.iter().filter(|c| **c == 0).count();
    assert!(codes.contains(&429), "{codes:?}");
    // A burst of 20, and what refilled meanwhile.
    assert!((20..60).contains(&accepted), "{codes:?}");
    let get = ShadowRequest {
        payload: Vec::new(),
        ..update("busy", 0)
    };
    // The refused updates changed nothing: the version counts the accepted.
    let version = eventually(5, "a get admitted", || {
        let mut shadows = shadows.clone();
        let get = get.clone();
        async move {
            let reply = shadows.get_shadow(get).await.unwrap().into_inner();
            let body: Value = serde_json::from_slice(&reply.body).unwrap();
            (reply.code == 0).then(|| body["version"].as_u64().unwrap())
        }
    })
    .await;
    assert_eq!(version, accepted as u64);
    // Another thing has a rate of its own.
    assert_eq!(
        shadows
            .update_shadow(update("quiet", 0))
            .await
            .unwrap()
            .into_inner()
            .code,
        0
    );
}

#[tokio::test]
async fn a_rate_of_0_admits_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_test(dir.path().join("registry"));
    settings.shadows.requests_per_thing_per_sec = 0;
    let registry = TestRegistry::start_in(dir, settings).await;
    let mut shadows = ShadowsClient::connect(format!("http://{}", registry.addr))
        .await
        .unwrap();
    for n in 0..60 {
        let reply = shadows
            .update_shadow(update("busy", n))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.code, 0);
    }
}
