//! The gateway's config cache against the real config service (and the
//! registry it reads thing groups from): the first snapshot, every kind of
//! live change, the change notification, and catching up after a cut
//! connection, a restart of the config service and a fall behind its log.

use std::time::Duration;

use herald_gateway::testing::config_cache::{CertificateStatus, ConfigCache};
use herald_proto::config::v1 as pb;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// A cache whose watch task the test runs, so that it can check it ends.
struct Cache {
    cache: ConfigCache,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Cache {
    /// A cache watching the config service through the proxy.
    fn start(herald: &Herald) -> Cache {
        let cache = ConfigCache::new();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(cache.clone().run(herald.proxied_config(), shutdown.clone()));
        Cache {
            cache,
            shutdown,
            task,
        }
    }

    /// A started cache with its first snapshot.
    async fn ready(herald: &Herald) -> Cache {
        let cache = Cache::start(herald);
        tokio::time::timeout(WAIT, cache.cache.ready())
            .await
            .expect("the cache should get its first snapshot");
        cache
    }

    /// The names of the policies attached to `targets`, as the cache has them.
    fn names(&self, targets: &[&str]) -> Vec<String> {
        self.cache
            .policies_for_targets(targets)
            .iter()
            .map(|p| p.name().to_owned())
            .collect()
    }

    /// The document of a policy, as the cache has it, with its version.
    fn document(&self, name: &str) -> Option<(serde_json::Value, String)> {
        self.cache
            .policy(name)
            .map(|p| (json_of(&p.document), p.default_version_id))
    }

    /// Waits until the cache is at the config service's current revision.
    async fn caught_up(&self, c: &mut Config) {
        let revision = current_revision(c).await;
        eventually(10, "the cache to catch up", || async {
            (self.cache.revision() == revision).then_some(())
        })
        .await;
    }

    /// Stops the watch task and asserts that it ends promptly.
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the cache task should stop on shutdown")
            .unwrap();
    }
}

/// Waits until `check` holds for the cache.
async fn until(what: &str, check: impl Fn() -> bool) {
    eventually(10, what, || async { check().then_some(()) }).await;
}

fn doc_json(topic: &str) -> serde_json::Value {
    json_of(&publish_doc(topic))
}

#[tokio::test]
async fn the_cache_starts_with_a_snapshot_of_the_existing_state() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    create_policy(&mut c, "p", &publish_doc("p1")).await;
    assert_eq!(
        create_version(&mut c, "p", &publish_doc("p2"), true).await,
        "2"
    );
    create_policy(&mut c, "q", &publish_doc("q")).await;
    create_policy(&mut c, "unattached", &publish_doc("u")).await;
    let (a, a_arn, a_pem) = create_cert(&mut c, true).await;
    let (b, b_arn, _) = create_cert(&mut c, false).await;
    create_group(&mut r, "g").await;
    let g_arn = group_arn("g");
    attach(&mut c, "p", &a_arn).await;
    attach(&mut c, "q", &a_arn).await;
    attach(&mut c, "q", &g_arn).await;
    set_events(&mut c, &[("THING", true), ("POLICY", true)]).await;
    let revision = current_revision(&mut c).await;

    // Through `spawn`, as the gateway starts it.
    let shutdown = CancellationToken::new();
    let cache = ConfigCache::spawn(herald.proxied_config(), shutdown.clone());
    tokio::time::timeout(WAIT, cache.ready())
        .await
        .expect("the cache should get its first snapshot");
    assert!(cache.is_ready());
    assert_eq!(cache.revision(), revision);
    assert_eq!(cache.snapshots(), 1);

    assert!(cache.event_enabled("THING"));
    assert!(cache.event_enabled("POLICY"));
    assert!(!cache.event_enabled("THING_GROUP"));
    assert!(!cache.event_enabled("NOT_A_KEY"));

    assert_eq!(
        cache.certificate_status(&a),
        Some(CertificateStatus::Active)
    );
    assert_eq!(
        cache.certificate_status(&b),
        Some(CertificateStatus::Inactive)
    );
    assert_eq!(cache.certificate_pem(&a).as_deref(), Some(a_pem.as_str()));
    assert_eq!(cache.certificate(&b).unwrap().arn, b_arn);
    assert!(cache.certificate_status(&"0".repeat(64)).is_none());

    let p = cache.policy("p").unwrap();
    assert_eq!(
        json_of(&p.document),
        doc_json("p2"),
        "the default version's"
    );
    assert_eq!(p.default_version_id, "2");
    assert_eq!(p.arn, arn("policy", "p"));
    assert!(cache.policy("unattached").is_some());

    let names = |targets: &[&str]| -> Vec<String> {
        cache
            .policies_for_targets(targets)
            .iter()
            .map(|p| p.name().to_owned())
            .collect()
    };
    assert_eq!(names(&[&a_arn]), ["p", "q"]);
    assert_eq!(names(&[&g_arn]), ["q"]);
    assert_eq!(names(&[&a_arn, &g_arn]), ["p", "q"], "each policy once");
    assert!(names(&[&b_arn]).is_empty());

    shutdown.cancel();
    drop((c, r));
    herald.stop().await;
}

#[tokio::test]
async fn every_kind_of_change_reaches_the_cache() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    let cache = Cache::ready(&herald).await;
    assert!(cache.cache.policy("p").is_none());
    assert!(!cache.cache.event_enabled("THING"));

    // Policies: created, a new default version (by either call).
    create_policy(&mut c, "p", &publish_doc("p1")).await;
    until("the new policy", || {
        cache.document("p") == Some((doc_json("p1"), "1".into()))
    })
    .await;
    assert_eq!(
        create_version(&mut c, "p", &publish_doc("p2"), false).await,
        "2"
    );
    set_default_version(&mut c, "p", "2").await;
    until("the new default version", || {
        cache.document("p") == Some((doc_json("p2"), "2".into()))
    })
    .await;
    assert_eq!(
        create_version(&mut c, "p", &publish_doc("p3"), true).await,
        "3"
    );
    until("a version created as the default", || {
        cache.document("p") == Some((doc_json("p3"), "3".into()))
    })
    .await;
    // A version that is not the default changes nothing.
    assert_eq!(
        create_version(&mut c, "p", &publish_doc("p4"), false).await,
        "4"
    );
    cache.caught_up(&mut c).await;
    assert_eq!(cache.document("p"), Some((doc_json("p3"), "3".into())));

    // Certificates: created, status changes.
    let (a, a_arn, a_pem) = create_cert(&mut c, false).await;
    until("the new certificate", || {
        cache.cache.certificate_status(&a) == Some(CertificateStatus::Inactive)
    })
    .await;
    assert_eq!(
        cache.cache.certificate_pem(&a).as_deref(),
        Some(a_pem.as_str())
    );
    set_status(&mut c, &a, pb::CertificateStatus::Active).await;
    until("the certificate activated", || {
        cache.cache.certificate_status(&a) == Some(CertificateStatus::Active)
    })
    .await;

    // Attachments, to a certificate and to a thing group.
    create_group(&mut r, "g").await;
    let g_arn = group_arn("g");
    attach(&mut c, "p", &a_arn).await;
    until("the attachment to the certificate", || {
        cache.names(&[&a_arn]) == ["p"]
    })
    .await;
    create_policy(&mut c, "q", &publish_doc("q")).await;
    attach(&mut c, "q", &g_arn).await;
    attach(&mut c, "p", &g_arn).await;
    until("the attachments to the group", || {
        cache.names(&[&a_arn, &g_arn]) == ["p", "q"]
    })
    .await;
    detach(&mut c, "p", &a_arn).await;
    until("the detachment", || cache.names(&[&a_arn]).is_empty()).await;
    assert_eq!(cache.names(&[&g_arn]), ["p", "q"]);

    // Event configurations.
    set_events(&mut c, &[("THING", true), ("CERTIFICATE", true)]).await;
    until("the events enabled", || {
        cache.cache.event_enabled("THING") && cache.cache.event_enabled("CERTIFICATE")
    })
    .await;
    set_events(&mut c, &[("THING", false)]).await;
    until("THING disabled", || !cache.cache.event_enabled("THING")).await;
    assert!(
        cache.cache.event_enabled("CERTIFICATE"),
        "a key left out keeps its value"
    );

    // Revocation, then a forced deletion that detaches.
    attach(&mut c, "q", &a_arn).await;
    set_status(&mut c, &a, pb::CertificateStatus::Revoked).await;
    until("the certificate revoked", || {
        cache.cache.certificate_status(&a) == Some(CertificateStatus::Revoked)
            && cache.names(&[&a_arn]) == ["q"]
    })
    .await;
    delete_cert(&mut c, &a, true).await;
    until("the certificate deleted", || {
        cache.cache.certificate(&a).is_none() && cache.names(&[&a_arn]).is_empty()
    })
    .await;

    // Policy deletion (once detached and down to its default version).
    detach(&mut c, "p", &g_arn).await;
    for version in ["1", "2", "4"] {
        delete_version(&mut c, "p", version).await;
    }
    delete_policy(&mut c, "p").await;
    until("the policy deleted", || {
        cache.cache.policy("p").is_none() && cache.names(&[&g_arn]) == ["q"]
    })
    .await;

    cache.caught_up(&mut c).await;
    assert_eq!(cache.cache.snapshots(), 1);
    cache.stop().await;
    drop((c, r));
    herald.stop().await;
}

#[tokio::test]
async fn a_policy_change_reaches_subscribers_within_a_second() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    create_policy(&mut c, "p", &publish_doc("v1")).await;
    let (_, a_arn, _) = create_cert(&mut c, true).await;
    attach(&mut c, "p", &a_arn).await;
    let cache = Cache::ready(&herald).await;
    let mut changes = cache.cache.subscribe_changes();
    assert_eq!(*changes.borrow_and_update(), cache.cache.revision());
    assert_eq!(cache.document("p").unwrap().0, doc_json("v1"));

    create_version(&mut c, "p", &publish_doc("v2"), true).await;
    let changed = tokio::time::Instant::now();
    let deadline = changed + Duration::from_secs(1);
    loop {
        tokio::time::timeout_at(deadline, changes.changed())
            .await
            .expect("a session should hear of a policy change within a second")
            .unwrap();
        let revision = *changes.borrow_and_update();
        assert!(
            cache.cache.revision() >= revision,
            "notified before visible"
        );
        let policies = cache.cache.policies_for_targets(&[&a_arn]);
        assert_eq!(policies.len(), 1);
        if cache.document("p").unwrap().0 == doc_json("v2") {
            break;
        }
    }

    cache.stop().await;
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn after_a_cut_connection_the_cache_resumes_and_catches_up() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    create_policy(&mut c, "p", &publish_doc("p")).await;
    let cache = Cache::ready(&herald).await;
    assert!(cache.cache.policy("p").is_some());

    herald.disconnect_config().await;
    // Changes while the cache is cut off.
    create_policy(&mut c, "q", &publish_doc("q")).await;
    let (a, a_arn, _) = create_cert(&mut c, true).await;
    attach(&mut c, "q", &a_arn).await;
    set_events(&mut c, &[("THING", true)]).await;
    // The cache still answers from what it has.
    assert!(cache.cache.is_ready());
    assert!(cache.cache.policy("p").is_some());
    assert!(cache.cache.policy("q").is_none());

    herald.reconnect_config();
    until("the changes made while cut off", || {
        cache.names(&[&a_arn]) == ["q"]
            && cache.cache.certificate_status(&a) == Some(CertificateStatus::Active)
            && cache.cache.event_enabled("THING")
    })
    .await;
    cache.caught_up(&mut c).await;
    assert_eq!(cache.cache.snapshots(), 1, "it resumed: no new snapshot");

    // And it follows live changes again.
    detach(&mut c, "q", &a_arn).await;
    until("a later change", || cache.names(&[&a_arn]).is_empty()).await;

    cache.stop().await;
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn after_a_config_service_restart_the_cache_resumes_and_catches_up() {
    let mut herald = Herald::start().await;
    let mut c = herald.config().await;
    create_policy(&mut c, "p", &publish_doc("p1")).await;
    let (a, a_arn, _) = create_cert(&mut c, false).await;
    attach(&mut c, "p", &a_arn).await;
    let cache = Cache::ready(&herald).await;
    assert_eq!(cache.names(&[&a_arn]), ["p"]);
    let before = cache.cache.revision();

    drop(c);
    herald.stop_config().await;
    // While the service is down the cache answers from what it has.
    assert!(cache.cache.is_ready());
    assert_eq!(cache.cache.revision(), before);
    assert_eq!(cache.names(&[&a_arn]), ["p"]);

    herald.start_config().await;
    let mut c = herald.config().await;
    create_version(&mut c, "p", &publish_doc("p2"), true).await;
    create_policy(&mut c, "q", &publish_doc("q")).await;
    attach(&mut c, "q", &a_arn).await;
    set_status(&mut c, &a, pb::CertificateStatus::Active).await;
    set_events(&mut c, &[("POLICY", true)]).await;
    until("the changes made after the restart", || {
        cache.document("p") == Some((doc_json("p2"), "2".into()))
            && cache.names(&[&a_arn]) == ["p", "q"]
            && cache.cache.certificate_status(&a) == Some(CertificateStatus::Active)
            && cache.cache.event_enabled("POLICY")
    })
    .await;
    cache.caught_up(&mut c).await;
    assert!(cache.cache.revision() > before);
    assert_eq!(
        cache.cache.snapshots(),
        1,
        "the log outlives a restart: it resumed"
    );

    cache.stop().await;
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn a_cache_behind_the_retained_log_starts_over_with_a_snapshot() {
    let herald = Herald::start_with(|settings| {
        settings.changes.retention_secs = 1;
        settings.changes.prune_interval_secs = 0;
    })
    .await;
    let mut c = herald.config().await;
    create_policy(&mut c, "p", &publish_doc("p")).await;
    create_policy(&mut c, "q", &publish_doc("q")).await;
    let (a, a_arn, _) = create_cert(&mut c, true).await;
    attach(&mut c, "p", &a_arn).await;
    let cache = Cache::ready(&herald).await;
    assert_eq!(cache.names(&[&a_arn]), ["p"]);

    herald.disconnect_config().await;
    delete_policy(&mut c, "q").await;
    create_policy(&mut c, "r", &publish_doc("r")).await;
    detach(&mut c, "p", &a_arn).await;
    attach(&mut c, "r", &a_arn).await;
    set_status(&mut c, &a, pb::CertificateStatus::Inactive).await;
    let revision = current_revision(&mut c).await;

    // Wait until resuming where the cache is would be a snapshot.
    let behind = cache.cache.revision();
    eventually(15, "the cache's revision to leave the log", || {
        let mut c = c.clone();
        async move {
            let mut stream = c
                .watch_config(pb::WatchConfigRequest {
                    after_revision: behind,
                })
                .await
                .unwrap()
                .into_inner();
            let update = tokio::time::timeout(WAIT, stream.message())
                .await
                .expect("a first update")
                .unwrap()
                .unwrap();
            matches!(update.change, Some(pb::config_update::Change::Snapshot(_))).then_some(())
        }
    })
    .await;

    herald.reconnect_config();
    until("a new snapshot", || cache.cache.snapshots() == 2).await;
    assert_eq!(cache.cache.revision(), revision);
    assert!(
        cache.cache.policy("q").is_none(),
        "the snapshot replaced everything"
    );
    assert!(cache.cache.policy("p").is_some());
    assert_eq!(cache.names(&[&a_arn]), ["r"]);
    assert_eq!(
        cache.cache.certificate_status(&a),
        Some(CertificateStatus::Inactive)
    );

    cache.stop().await;
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn the_cache_task_stops_on_shutdown_even_while_the_config_service_is_away() {
    let mut herald = Herald::start().await;

    // Never connected: not ready, and it stops.
    herald.disconnect_config().await;
    let cache = Cache::start(&herald);
    let waited = tokio::time::timeout(Duration::from_millis(300), cache.cache.ready()).await;
    assert!(waited.is_err(), "ready without a snapshot");
    assert!(!cache.cache.is_ready());
    assert_eq!(cache.cache.revision(), 0);
    cache.stop().await;

    // Connected, then the service stops: it stops while reconnecting.
    herald.reconnect_config();
    let cache = Cache::ready(&herald).await;
    herald.stop_config().await;
    assert!(cache.cache.is_ready());
    cache.stop().await;

    herald.stop().await;
}
