//! WatchConfig: the snapshot, every change in revision order, silence for
//! refused mutations, resuming, and a concurrent writer seen completely.

use std::collections::BTreeSet;

use herald_proto::{
    config::v1::{config_update::Change, *},
    error::ErrorType,
};

use crate::support::{
    Config, Herald, Watch, attach, attach_req, cert_arn, create_cert, create_group, create_policy,
    create_version, detach, enabled_only, eventually, expect_err, group_arn, policy_arn,
    publish_doc, set_status, sorted,
};

use CertificateStatus::{Active, Inactive, Revoked};

// ------------------------------------------------------------ helpers

fn policy_put(name: &str, doc: &str, version: &str) -> Change {
    Change::PolicyPut(PolicyState {
        policy_name: name.into(),
        policy_arn: policy_arn(name),
        document: doc.into(),
        default_version_id: version.into(),
    })
}

fn certificate_put(id: &str, status: CertificateStatus, pem: &str) -> Change {
    Change::CertificatePut(CertificateState {
        certificate_id: id.into(),
        certificate_arn: cert_arn(id),
        status: status as i32,
        certificate_pem: pem.into(),
    })
}

fn attachment(policy: &str, target: &str) -> Attachment {
    Attachment {
        policy_name: policy.into(),
        target: target.into(),
    }
}

fn event_configurations_change(enabled: &[&str]) -> Change {
    Change::EventConfigurations(EventConfigurationsState {
        enabled: enabled_only(enabled).into_iter().collect(),
    })
}

/// Reads the next change and asserts it is `expected` at `revision`.
async fn expect_change(watch: &mut Watch, revision: u64, expected: Change) {
    let (got_revision, got) = watch.change().await;
    assert_eq!(got, expected, "at revision {got_revision}");
    assert_eq!(got_revision, revision, "the revision of {got:?}");
}

/// A marker mutation: a new policy. Its change must be the next update.
async fn marker(c: &mut Config, name: &str) -> Change {
    let doc = publish_doc(name);
    create_policy(c, name, &doc).await;
    policy_put(name, &doc, "1")
}

// ------------------------------------------------------------ snapshot

#[tokio::test]
async fn a_fresh_service_snapshots_the_default_event_configurations_only() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut watch = Watch::open(&mut c, 0).await;
    let (revision, snapshot) = watch.snapshot().await;
    assert!(revision >= 1, "the first start is a change");
    assert!(snapshot.policies.is_empty());
    assert!(snapshot.certificates.is_empty());
    assert!(snapshot.attachments.is_empty());
    assert_eq!(sorted(&snapshot.event_configurations), enabled_only(&[]));

    let change = marker(&mut c, "first").await;
    expect_change(&mut watch, revision + 1, change).await;
    drop((watch, c));
    herald.stop().await;
}

#[tokio::test]
async fn the_snapshot_holds_every_policy_certificate_attachment_and_event_configuration() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    create_policy(&mut c, "p", &publish_doc("p1")).await;
    create_version(&mut c, "p", &publish_doc("p2"), true).await;
    create_version(&mut c, "p", &publish_doc("p3"), false).await;
    create_policy(&mut c, "q", &publish_doc("q1")).await;
    let (active, active_arn, active_pem) = create_cert(&mut c, true).await;
    let (revoked, _, revoked_pem) = create_cert(&mut c, false).await;
    set_status(&mut c, &revoked, Revoked).await;
    create_group(&mut r, "fleet", None).await;
    attach(&mut c, "p", &active_arn).await;
    attach(&mut c, "q", &active_arn).await;
    attach(&mut c, "q", &group_arn("fleet")).await;
    c.update_event_configurations(UpdateEventConfigurationsRequest {
        enabled: [
            ("POLICY".to_owned(), true),
            ("CERTIFICATE".to_owned(), true),
        ]
        .into(),
    })
    .await
    .unwrap();

    let mut watch = Watch::open(&mut c, 0).await;
    let (revision, snapshot) = watch.snapshot().await;

    let mut policies = snapshot.policies.clone();
    policies.sort_by(|a, b| a.policy_name.cmp(&b.policy_name));
    let expected = [("p", publish_doc("p2"), "2"), ("q", publish_doc("q1"), "1")].map(
        |(name, doc, version)| PolicyState {
            policy_name: name.into(),
            policy_arn: policy_arn(name),
            document: doc,
            default_version_id: version.into(),
        },
    );
    assert_eq!(policies, expected);

    let mut certificates = snapshot.certificates.clone();
    certificates.sort_by(|a, b| a.certificate_id.cmp(&b.certificate_id));
    let mut expected = vec![
        CertificateState {
            certificate_id: active.clone(),
            certificate_arn: cert_arn(&active),
            status: Active as i32,
            certificate_pem: active_pem,
        },
        CertificateState {
            certificate_id: revoked.clone(),
            certificate_arn: cert_arn(&revoked),
            status: Revoked as i32,
            certificate_pem: revoked_pem,
        },
    ];
    expected.sort_by(|a, b| a.certificate_id.cmp(&b.certificate_id));
    assert_eq!(certificates, expected);

    let attachments: BTreeSet<(String, String)> = snapshot
        .attachments
        .iter()
        .map(|a| (a.policy_name.clone(), a.target.clone()))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("p", active_arn.clone()),
        ("q", active_arn.clone()),
        ("q", group_arn("fleet")),
    ]
    .into_iter()
    .map(|(p, t)| (p.to_owned(), t))
    .collect();
    assert_eq!(attachments, expected);
    assert_eq!(snapshot.attachments.len(), 3);
    assert_eq!(
        sorted(&snapshot.event_configurations),
        enabled_only(&["POLICY", "CERTIFICATE"])
    );

    // The snapshot is consistent with its revision: the next change follows it.
    let change = marker(&mut c, "next").await;
    expect_change(&mut watch, revision + 1, change.clone()).await;
    // And a watcher resuming from the snapshot's revision sees the same.
    let mut resumed = Watch::open(&mut c, revision).await;
    expect_change(&mut resumed, revision + 1, change).await;
    drop((watch, resumed, c, r));
    herald.stop().await;
}

// ------------------------------------------------------------ changes

#[tokio::test]
async fn every_mutation_streams_its_change_in_revision_order() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    create_group(&mut r, "fleet", None).await;
    let mut watch = Watch::open(&mut c, 0).await;
    let (mut rev, _) = watch.snapshot().await;
    let mut next = || {
        rev += 1;
        rev
    };

    // Policies: created, a version that is not the default (nothing), a new default.
    let (d1, d2, d3) = (publish_doc("1"), publish_doc("2"), publish_doc("3"));
    create_policy(&mut c, "p", &d1).await;
    expect_change(&mut watch, next(), policy_put("p", &d1, "1")).await;
    create_version(&mut c, "p", &d2, false).await;
    create_version(&mut c, "p", &d3, true).await;
    expect_change(&mut watch, next(), policy_put("p", &d3, "3")).await;
    c.set_default_policy_version(SetDefaultPolicyVersionRequest {
        policy_name: "p".into(),
        policy_version_id: "2".into(),
    })
    .await
    .unwrap();
    expect_change(&mut watch, next(), policy_put("p", &d2, "2")).await;

    // Certificates: created, and each new status.
    let (id, arn, pem) = create_cert(&mut c, false).await;
    expect_change(&mut watch, next(), certificate_put(&id, Inactive, &pem)).await;
    set_status(&mut c, &id, Active).await;
    expect_change(&mut watch, next(), certificate_put(&id, Active, &pem)).await;

    // Attachments, on a certificate and on a thing group.
    attach(&mut c, "p", &arn).await;
    expect_change(&mut watch, next(), Change::Attached(attachment("p", &arn))).await;
    attach(&mut c, "p", &group_arn("fleet")).await;
    let attached = Change::Attached(attachment("p", &group_arn("fleet")));
    expect_change(&mut watch, next(), attached).await;
    detach(&mut c, "p", &arn).await;
    expect_change(&mut watch, next(), Change::Detached(attachment("p", &arn))).await;
    detach(&mut c, "p", &group_arn("fleet")).await;
    let detached = Change::Detached(attachment("p", &group_arn("fleet")));
    expect_change(&mut watch, next(), detached).await;

    // Event configurations: every key.
    c.update_event_configurations(UpdateEventConfigurationsRequest {
        enabled: [("THING".to_owned(), true)].into(),
    })
    .await
    .unwrap();
    expect_change(&mut watch, next(), event_configurations_change(&["THING"])).await;
    c.update_event_configurations(UpdateEventConfigurationsRequest {
        enabled: [("JOB".to_owned(), true)].into(),
    })
    .await
    .unwrap();
    let both = event_configurations_change(&["THING", "JOB"]);
    expect_change(&mut watch, next(), both).await;

    // Deletions.
    set_status(&mut c, &id, Revoked).await;
    expect_change(&mut watch, next(), certificate_put(&id, Revoked, &pem)).await;
    c.delete_certificate(DeleteCertificateRequest {
        certificate_id: id.clone(),
        force_delete: false,
    })
    .await
    .unwrap();
    expect_change(&mut watch, next(), Change::CertificateDeleted(id.clone())).await;
    for version in ["1", "3"] {
        c.delete_policy_version(DeletePolicyVersionRequest {
            policy_name: "p".into(),
            policy_version_id: version.into(),
        })
        .await
        .unwrap();
    }
    c.delete_policy(DeletePolicyRequest {
        policy_name: "p".into(),
    })
    .await
    .unwrap();
    expect_change(&mut watch, next(), Change::PolicyDeleted("p".into())).await;
    drop((watch, c, r));
    herald.stop().await;
}

#[tokio::test]
async fn no_op_mutations_stream_nothing() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    create_policy(&mut c, "p", &publish_doc("1")).await;
    let (id, arn, _) = create_cert(&mut c, true).await;
    attach(&mut c, "p", &arn).await;
    let mut watch = Watch::open(&mut c, 0).await;
    let (revision, _) = watch.snapshot().await;

    attach(&mut c, "p", &arn).await;
    set_status(&mut c, &id, Active).await;
    c.set_default_policy_version(SetDefaultPolicyVersionRequest {
        policy_name: "p".into(),
        policy_version_id: "1".into(),
    })
    .await
    .unwrap();
    create_version(&mut c, "p", &publish_doc("2"), false).await;
    c.delete_policy_version(DeletePolicyVersionRequest {
        policy_name: "p".into(),
        policy_version_id: "2".into(),
    })
    .await
    .unwrap();
    detach(&mut c, "p", &cert_arn(&"0".repeat(64))).await;

    let change = marker(&mut c, "marker").await;
    expect_change(&mut watch, revision + 1, change).await;
    drop((watch, c));
    herald.stop().await;
}

#[tokio::test]
async fn refused_mutations_stream_nothing() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    create_group(&mut r, "fleet", None).await;
    create_policy(&mut c, "p", &publish_doc("1")).await;
    for i in 2..=5 {
        create_version(&mut c, "p", &publish_doc(&i.to_string()), false).await;
    }
    let (active, active_arn, _) = create_cert(&mut c, true).await;
    let (revoked, _, _) = create_cert(&mut c, false).await;
    set_status(&mut c, &revoked, Revoked).await;
    let names: Vec<String> = (0..10).map(|i| format!("full{i}")).collect();
    for name in &names {
        create_policy(&mut c, name, &publish_doc(name)).await;
        attach(&mut c, name, &group_arn("fleet")).await;
    }
    attach(&mut c, "p", &active_arn).await;
    let mut watch = Watch::open(&mut c, 0).await;
    let (revision, _) = watch.snapshot().await;

    let create = |name: &str, doc: &str| CreatePolicyRequest {
        policy_name: name.into(),
        policy_document: doc.into(),
        tags: vec![],
    };
    expect_err(
        c.create_policy(create("p", &publish_doc("dup"))).await,
        ErrorType::ResourceAlreadyExists,
    );
    expect_err(
        c.create_policy(create("new", "{not json")).await,
        ErrorType::MalformedPolicy,
    );
    expect_err(
        c.create_policy(create("bad/name", &publish_doc("x"))).await,
        ErrorType::InvalidRequest,
    );
    expect_err(
        c.create_policy_version(CreatePolicyVersionRequest {
            policy_name: "p".into(),
            policy_document: publish_doc("6"),
            set_as_default: true,
        })
        .await,
        ErrorType::VersionsLimitExceeded,
    );
    expect_err(
        c.delete_policy_version(DeletePolicyVersionRequest {
            policy_name: "p".into(),
            policy_version_id: "1".into(),
        })
        .await,
        ErrorType::DeleteConflict,
    );
    expect_err(
        c.set_default_policy_version(SetDefaultPolicyVersionRequest {
            policy_name: "p".into(),
            policy_version_id: "9".into(),
        })
        .await,
        ErrorType::ResourceNotFound,
    );
    expect_err(
        c.delete_policy(DeletePolicyRequest {
            policy_name: "p".into(),
        })
        .await,
        ErrorType::DeleteConflict,
    );
    expect_err(
        c.attach_policy(attach_req("p", &cert_arn(&"0".repeat(64))))
            .await,
        ErrorType::ResourceNotFound,
    );
    expect_err(
        c.attach_policy(attach_req("p", &group_arn("fleet"))).await,
        ErrorType::LimitExceeded,
    );
    expect_err(
        c.update_certificate(UpdateCertificateRequest {
            certificate_id: revoked.clone(),
            new_status: Active as i32,
        })
        .await,
        ErrorType::CertificateState,
    );
    expect_err(
        c.delete_certificate(DeleteCertificateRequest {
            certificate_id: active.clone(),
            force_delete: true,
        })
        .await,
        ErrorType::CertificateState,
    );
    expect_err(
        c.register_certificate(RegisterCertificateRequest {
            certificate_pem: "garbage".into(),
            ca_certificate_pem: None,
            set_as_active: true,
            status: None,
        })
        .await,
        ErrorType::CertificateValidation,
    );
    expect_err(
        c.update_event_configurations(UpdateEventConfigurationsRequest {
            enabled: [("THING".to_owned(), true), ("NOPE".to_owned(), true)].into(),
        })
        .await,
        ErrorType::InvalidRequest,
    );

    let change = marker(&mut c, "marker").await;
    expect_change(&mut watch, revision + 1, change).await;
    drop((watch, c, r));
    herald.stop().await;
}

#[tokio::test]
async fn a_forced_certificate_deletion_streams_the_detachments_then_the_deletion() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    create_policy(&mut c, "p", &publish_doc("p")).await;
    create_policy(&mut c, "q", &publish_doc("q")).await;
    let (id, arn, _) = create_cert(&mut c, false).await;
    attach(&mut c, "p", &arn).await;
    attach(&mut c, "q", &arn).await;
    let mut watch = Watch::open(&mut c, 0).await;
    let (revision, _) = watch.snapshot().await;

    c.delete_certificate(DeleteCertificateRequest {
        certificate_id: id.clone(),
        force_delete: true,
    })
    .await
    .unwrap();
    let mut detached = BTreeSet::new();
    for i in 1..=2 {
        let (got, change) = watch.change().await;
        assert_eq!(got, revision + i);
        match change {
            Change::Detached(a) => {
                assert_eq!(a.target, arn);
                detached.insert(a.policy_name);
            }
            other => panic!("expected a detachment, got {other:?}"),
        }
    }
    assert_eq!(detached, BTreeSet::from(["p".to_owned(), "q".to_owned()]));
    expect_change(&mut watch, revision + 3, Change::CertificateDeleted(id)).await;
    drop((watch, c));
    herald.stop().await;
}

// ------------------------------------------------------------ resuming

#[tokio::test]
async fn a_watcher_resuming_after_its_last_revision_gets_exactly_the_later_changes() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut watch = Watch::open(&mut c, 0).await;
    let (revision, _) = watch.snapshot().await;
    let mut changes = Vec::new();
    for name in ["a", "b", "c"] {
        changes.push(marker(&mut c, name).await);
    }
    for (i, change) in changes.iter().enumerate() {
        expect_change(&mut watch, revision + 1 + i as u64, change.clone()).await;
    }
    let last_seen = revision + 3;
    drop(watch);

    // Changes made while no one watches.
    for name in ["d", "e"] {
        changes.push(marker(&mut c, name).await);
    }
    let (id, _, pem) = create_cert(&mut c, false).await;
    changes.push(certificate_put(&id, Inactive, &pem));

    let mut resumed = Watch::open(&mut c, last_seen).await;
    for (i, change) in changes[3..].iter().enumerate() {
        expect_change(&mut resumed, last_seen + 1 + i as u64, change.clone()).await;
    }
    // Then live changes.
    let change = marker(&mut c, "f").await;
    expect_change(&mut resumed, last_seen + 4, change.clone()).await;

    // Resuming from an older revision still retained replays from there.
    let mut older = Watch::open(&mut c, revision + 1).await;
    changes.push(change);
    for (i, change) in changes[1..].iter().enumerate() {
        expect_change(&mut older, revision + 2 + i as u64, change.clone()).await;
    }
    drop((resumed, older, c));
    herald.stop().await;
}

#[tokio::test]
async fn revisions_continue_across_a_restart_and_a_watcher_resumes_there() {
    let mut herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut watch = Watch::open(&mut c, 0).await;
    let (revision, _) = watch.snapshot().await;
    let change = marker(&mut c, "before").await;
    expect_change(&mut watch, revision + 1, change).await;
    drop((watch, c));

    herald.restart_config().await;
    let mut c = herald.config().await;
    let change = marker(&mut c, "after").await;
    let mut resumed = Watch::open(&mut c, revision + 1).await;
    expect_change(&mut resumed, revision + 2, change).await;
    drop((resumed, c));
    herald.stop().await;
}

#[tokio::test]
async fn a_watcher_behind_the_retained_log_starts_again_with_a_snapshot() {
    let herald = Herald::start_with(|settings| {
        settings.changes.retention_secs = 1;
        settings.changes.prune_interval_secs = 0;
    })
    .await;
    let mut c = herald.config().await;
    create_policy(&mut c, "p", &publish_doc("p")).await;
    create_policy(&mut c, "q", &publish_doc("q")).await;
    let mut watch = Watch::open(&mut c, 0).await;
    let (revision, _) = watch.snapshot().await;
    drop(watch);

    // Once the early changes are pruned, resuming from revision 1 is a snapshot.
    let (resume_revision, snapshot) = eventually(15, "the early changes to be pruned", || {
        let mut c = c.clone();
        async move {
            let mut watch = Watch::open(&mut c, 1).await;
            let update = watch.next().await;
            match update.change {
                Some(Change::Snapshot(snapshot)) => Some((update.revision, snapshot)),
                _ => None,
            }
        }
    })
    .await;
    assert_eq!(resume_revision, revision);
    let mut names: Vec<String> = snapshot
        .policies
        .into_iter()
        .map(|p| p.policy_name)
        .collect();
    names.sort();
    assert_eq!(names, ["p", "q"]);
    drop(c);
    herald.stop().await;
}

// ------------------------------------------------------------ a concurrent writer

#[tokio::test]
async fn concurrent_writers_are_seen_completely_and_in_order() {
    const ROUNDS: usize = 60;
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    for name in ["w0", "w1", "w2"] {
        create_policy(&mut c, name, &publish_doc(name)).await;
    }
    let (_, cert, _) = create_cert(&mut c, false).await;
    create_group(&mut r, "fleet", None).await;
    let mut watch = Watch::open(&mut c, 0).await;
    let (revision, _) = watch.snapshot().await;

    // Two writers, each attaching then detaching policies on its own target.
    let writer = |target: String| {
        let mut c = c.clone();
        tokio::spawn(async move {
            let mut expected = Vec::new();
            for i in 0..ROUNDS {
                let policy = format!("w{}", i % 3);
                attach(&mut c, &policy, &target).await;
                expected.push(Change::Attached(attachment(&policy, &target)));
                detach(&mut c, &policy, &target).await;
                expected.push(Change::Detached(attachment(&policy, &target)));
            }
            expected
        })
    };
    let on_cert = writer(cert.clone());
    let on_group = writer(group_arn("fleet"));

    let mut seen_cert = Vec::new();
    let mut seen_group = Vec::new();
    let mut last = revision;
    for _ in 0..4 * ROUNDS {
        let (got, change) = watch.change().await;
        assert_eq!(got, last + 1, "revisions go up by one");
        last = got;
        let target = match &change {
            Change::Attached(a) | Change::Detached(a) => a.target.clone(),
            other => panic!("unexpected change {other:?}"),
        };
        if target == cert {
            seen_cert.push(change);
        } else {
            seen_group.push(change);
        }
    }
    assert_eq!(seen_cert, on_cert.await.unwrap());
    assert_eq!(seen_group, on_group.await.unwrap());

    // Nothing else was streamed in between: the next change is the marker.
    let change = marker(&mut c, "marker").await;
    expect_change(&mut watch, last + 1, change).await;
    drop((watch, c, r));
    herald.stop().await;
}

#[tokio::test]
async fn a_snapshot_taken_during_writes_plus_the_following_changes_rebuild_the_final_state() {
    const ROUNDS: usize = 80;
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    let policies = ["w0", "w1", "w2"];
    for name in policies {
        create_policy(&mut c, name, &publish_doc(name)).await;
    }
    let (_, cert, _) = create_cert(&mut c, false).await;
    create_group(&mut r, "fleet", None).await;
    let targets = [cert.clone(), group_arn("fleet")];

    // A writer toggling attachments; the watch opens while it runs.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let writer = {
        let mut c = c.clone();
        let targets = targets.clone();
        tokio::spawn(async move {
            let mut started = Some(started_tx);
            for i in 0..ROUNDS {
                let policy = policies[i % 3];
                let target = &targets[i % 2];
                attach(&mut c, policy, target).await;
                if i % 4 == 3 {
                    detach(&mut c, policies[(i + 1) % 3], target).await;
                }
                if i == ROUNDS / 4 {
                    let _ = started.take().unwrap().send(());
                }
            }
        })
    };
    started_rx.await.unwrap();
    let mut watch = Watch::open(&mut c, 0).await;
    let (mut last, snapshot) = watch.snapshot().await;
    let mut model: BTreeSet<(String, String)> = snapshot
        .attachments
        .into_iter()
        .map(|a| (a.policy_name, a.target))
        .collect();
    writer.await.unwrap();
    let end = marker(&mut c, "end").await;

    // Each change applies to the state the previous ones left: an attachment
    // that is new, a detachment of one that exists.
    loop {
        let (revision, change) = watch.change().await;
        assert_eq!(revision, last + 1);
        last = revision;
        match change {
            Change::Attached(a) => {
                assert!(model.insert((a.policy_name, a.target)), "attached twice");
            }
            Change::Detached(a) => {
                assert!(
                    model.remove(&(a.policy_name, a.target)),
                    "detached what was not attached"
                );
            }
            other if other == end => break,
            other => panic!("unexpected change {other:?}"),
        }
    }
    let mut actual = BTreeSet::new();
    for name in policies {
        for target in crate::support::targets_of(&mut c, name).await {
            actual.insert((name.to_owned(), target));
        }
    }
    assert_eq!(model, actual);
    drop((watch, c, r));
    herald.stop().await;
}
