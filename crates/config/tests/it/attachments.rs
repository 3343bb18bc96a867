//! Attachments: policies on certificates and thing groups, limits, listings
//! (recursive through group ancestors), and GetEffectivePolicies.

use herald_proto::{config::v1::*, error::ErrorType};

use crate::support::{
    Config, Herald, add_to_group, arn, attach, attach_req, attached_to, cert_arn, create_cert,
    create_group, create_policy, create_thing, create_version, detach, detach_req, expect_err,
    get_policy, group_arn, policy_arn, publish_doc, state, targets_of,
};

// ------------------------------------------------------------ helpers

/// Creates policies named `names`, each with a document of its own.
async fn create_policies(c: &mut Config, names: &[&str]) {
    for name in names {
        create_policy(c, name, &publish_doc(name)).await;
    }
}

fn effective_req(principal: Option<&str>, thing: Option<&str>) -> GetEffectivePoliciesRequest {
    GetEffectivePoliciesRequest {
        principal: principal.map(str::to_owned),
        thing_name: thing.map(str::to_owned),
    }
}

/// (name, document) of each effective policy, sorted by name; each ARN checked.
async fn effective(
    c: &mut Config,
    principal: Option<&str>,
    thing: Option<&str>,
) -> Vec<(String, String)> {
    let policies = c
        .get_effective_policies(effective_req(principal, thing))
        .await
        .unwrap()
        .into_inner()
        .effective_policies;
    let mut out: Vec<(String, String)> = policies
        .into_iter()
        .map(|p| {
            assert_eq!(p.policy_arn, policy_arn(&p.policy_name));
            (p.policy_name, p.policy_document)
        })
        .collect();
    let count = out.len();
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    assert_eq!(out.len(), count, "a policy was listed twice");
    out
}

fn with_docs(names: &[&str]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = names
        .iter()
        .map(|n| (n.to_string(), publish_doc(n)))
        .collect();
    out.sort();
    out
}

fn list_attached_req(
    target: &str,
    recursive: bool,
    marker: &str,
    page_size: u32,
) -> ListAttachedPoliciesRequest {
    ListAttachedPoliciesRequest {
        target: target.into(),
        recursive,
        marker: marker.into(),
        page_size,
    }
}

// ------------------------------------------------------------ attach, detach

#[tokio::test]
async fn policies_attach_to_certificates_and_thing_groups_and_detach() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    create_policies(&mut c, &["p", "q"]).await;
    let (_, cert, _) = create_cert(&mut c, false).await;
    create_group(&mut r, "fleet", None).await;
    let group = group_arn("fleet");

    attach(&mut c, "p", &cert).await;
    attach(&mut c, "p", &group).await;
    attach(&mut c, "q", &cert).await;
    assert_eq!(attached_to(&mut c, &cert, false).await, ["p", "q"]);
    assert_eq!(attached_to(&mut c, &group, false).await, ["p"]);
    let mut expected = vec![cert.clone(), group.clone()];
    expected.sort();
    assert_eq!(targets_of(&mut c, "p").await, expected);
    assert_eq!(targets_of(&mut c, "q").await, [cert.as_str()]);

    // Attaching twice is a success and changes nothing.
    let before = state(&mut c).await;
    attach(&mut c, "p", &cert).await;
    attach(&mut c, "p", &group).await;
    assert_eq!(state(&mut c).await, before);

    detach(&mut c, "p", &cert).await;
    assert_eq!(attached_to(&mut c, &cert, false).await, ["q"]);
    assert_eq!(targets_of(&mut c, "p").await, [group.as_str()]);
    detach(&mut c, "p", &group).await;
    assert!(attached_to(&mut c, &group, false).await.is_empty());
    assert!(targets_of(&mut c, "p").await.is_empty());

    // Detaching what is not attached is a success and changes nothing.
    let before = state(&mut c).await;
    detach(&mut c, "p", &cert).await;
    detach(&mut c, "p", &group).await;
    assert_eq!(state(&mut c).await, before);
    drop((c, r));
    herald.stop().await;
}

#[tokio::test]
async fn unknown_certificates_groups_and_policies_are_not_found() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    create_policies(&mut c, &["p"]).await;
    let (id, cert, _) = create_cert(&mut c, false).await;
    create_group(&mut r, "fleet", None).await;
    let unknown_cert = cert_arn(&if id.starts_with('0') { "1" } else { "0" }.repeat(64));
    let before = state(&mut c).await;

    for (policy, target) in [
        ("p", unknown_cert.as_str()),
        ("p", &group_arn("no-such-group")),
        ("nope", cert.as_str()),
        ("nope", &group_arn("fleet")),
    ] {
        expect_err(
            c.attach_policy(attach_req(policy, target)).await,
            ErrorType::ResourceNotFound,
        );
        assert_eq!(
            state(&mut c).await,
            before,
            "{policy} {target} changed something"
        );
    }
    expect_err(
        c.detach_policy(detach_req("nope", &cert)).await,
        ErrorType::ResourceNotFound,
    );
    expect_err(
        c.list_targets_for_policy(ListTargetsForPolicyRequest {
            policy_name: "nope".into(),
            marker: String::new(),
            page_size: 0,
        })
        .await,
        ErrorType::ResourceNotFound,
    );
    assert_eq!(state(&mut c).await, before);
    drop((c, r));
    herald.stop().await;
}

#[tokio::test]
async fn list_attached_policies_of_an_unknown_certificate_is_not_found() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let (id, _, _) = create_cert(&mut c, false).await;
    let unknown_cert = cert_arn(&if id.starts_with('0') { "1" } else { "0" }.repeat(64));
    let listed = c
        .list_attached_policies(list_attached_req(&unknown_cert, false, "", 0))
        .await;
    expect_err(listed, ErrorType::ResourceNotFound);
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn list_attached_policies_of_an_unknown_thing_group_is_not_found() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    for recursive in [true, false] {
        let listed = c
            .list_attached_policies(list_attached_req(
                &group_arn("no-such-group"),
                recursive,
                "",
                0,
            ))
            .await;
        assert!(listed.is_err(), "recursive {recursive}: {listed:?}");
        let err = expect_err(listed, ErrorType::ResourceNotFound);
        assert!(
            err.message.contains("no-such-group"),
            "recursive {recursive}: {err}"
        );
    }
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn targets_other_than_certificates_and_thing_groups_of_this_account_and_region_are_invalid() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    create_policies(&mut c, &["p"]).await;
    let (id, _, _) = create_cert(&mut c, false).await;
    create_group(&mut r, "fleet", None).await;
    create_thing(&mut r, "lamp", &[]).await;
    let before = state(&mut c).await;

    let bad_targets = [
        arn("thing", "lamp"),
        arn("policy", "p"),
        arn("thinggroup", ""),
        arn("cert", "abc"),
        arn("cert", &"g".repeat(64)),
        format!("arn:aws:iot:us-east-1:210987654321:cert/{id}"),
        format!("arn:aws:iot:eu-west-1:123456789012:cert/{id}"),
        "arn:aws:iot:us-east-1:210987654321:thinggroup/fleet".into(),
        "arn:aws:iot:eu-west-1:123456789012:thinggroup/fleet".into(),
        id.clone(),
        "fleet".into(),
        String::new(),
    ];
    for target in &bad_targets {
        expect_err(
            c.attach_policy(attach_req("p", target)).await,
            ErrorType::InvalidRequest,
        );
        expect_err(
            c.detach_policy(detach_req("p", target)).await,
            ErrorType::InvalidRequest,
        );
        expect_err(
            c.list_attached_policies(list_attached_req(target, false, "", 0))
                .await,
            ErrorType::InvalidRequest,
        );
        assert_eq!(state(&mut c).await, before, "{target:?} changed something");
    }
    drop((c, r));
    herald.stop().await;
}

#[tokio::test]
async fn an_eleventh_policy_on_one_target_is_refused() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    let names: Vec<String> = (0..11).map(|i| format!("p{i:02}")).collect();
    for name in &names {
        create_policy(&mut c, name, &publish_doc(name)).await;
    }
    let (_, cert, _) = create_cert(&mut c, false).await;
    let (_, other_cert, _) = create_cert(&mut c, false).await;
    create_group(&mut r, "fleet", None).await;
    let group = group_arn("fleet");
    for target in [&cert, &group] {
        for name in &names[..10] {
            attach(&mut c, name, target).await;
        }
    }
    let before = state(&mut c).await;

    for target in [&cert, &group] {
        expect_err(
            c.attach_policy(attach_req(&names[10], target)).await,
            ErrorType::LimitExceeded,
        );
        assert_eq!(state(&mut c).await, before);
        // Re-attaching one of the ten is still a success.
        attach(&mut c, &names[3], target).await;
        assert_eq!(attached_to(&mut c, target, false).await, names[..10]);
    }
    // The limit is per target.
    attach(&mut c, &names[10], &other_cert).await;

    detach(&mut c, &names[0], &cert).await;
    attach(&mut c, &names[10], &cert).await;
    assert_eq!(attached_to(&mut c, &cert, false).await, names[1..]);
    drop((c, r));
    herald.stop().await;
}

// ------------------------------------------------------------ listings

#[tokio::test]
async fn list_attached_policies_recursive_includes_the_ancestors_policies_once() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    create_policies(
        &mut c,
        &["on-root", "on-parent", "on-child", "shared", "on-sibling"],
    )
    .await;
    create_group(&mut r, "root", None).await;
    create_group(&mut r, "parent", Some("root")).await;
    create_group(&mut r, "child", Some("parent")).await;
    create_group(&mut r, "sibling", Some("parent")).await;
    attach(&mut c, "on-root", &group_arn("root")).await;
    attach(&mut c, "shared", &group_arn("root")).await;
    attach(&mut c, "on-parent", &group_arn("parent")).await;
    attach(&mut c, "on-child", &group_arn("child")).await;
    attach(&mut c, "shared", &group_arn("child")).await;
    attach(&mut c, "on-sibling", &group_arn("sibling")).await;

    assert_eq!(
        attached_to(&mut c, &group_arn("child"), false).await,
        ["on-child", "shared"]
    );
    assert_eq!(
        attached_to(&mut c, &group_arn("child"), true).await,
        ["on-child", "on-parent", "on-root", "shared"]
    );
    assert_eq!(
        attached_to(&mut c, &group_arn("parent"), true).await,
        ["on-parent", "on-root", "shared"]
    );
    assert_eq!(
        attached_to(&mut c, &group_arn("root"), true).await,
        ["on-root", "shared"]
    );
    drop((c, r));
    herald.stop().await;
}

#[tokio::test]
async fn list_attached_policies_and_targets_for_policy_page_in_order() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let names: Vec<String> = (0..7).rev().map(|i| format!("p{i}")).collect();
    for name in &names {
        create_policy(&mut c, name, &publish_doc(name)).await;
    }
    let (_, cert, _) = create_cert(&mut c, false).await;
    for name in &names {
        attach(&mut c, name, &cert).await;
    }
    let mut pages = Vec::new();
    let mut marker = String::new();
    loop {
        let page = c
            .list_attached_policies(list_attached_req(&cert, false, &marker, 3))
            .await
            .unwrap()
            .into_inner();
        pages.push(
            page.policies
                .into_iter()
                .map(|p| p.policy_name)
                .collect::<Vec<_>>(),
        );
        if page.next_marker.is_empty() {
            break;
        }
        marker = page.next_marker;
    }
    assert_eq!(
        pages,
        [vec!["p0", "p1", "p2"], vec!["p3", "p4", "p5"], vec!["p6"]]
    );

    let mut certs = Vec::new();
    for _ in 0..5 {
        let (_, arn, _) = create_cert(&mut c, false).await;
        attach(&mut c, "p0", &arn).await;
        certs.push(arn);
    }
    certs.push(cert);
    certs.sort();
    let mut pages = Vec::new();
    let mut marker = String::new();
    loop {
        let page = c
            .list_targets_for_policy(ListTargetsForPolicyRequest {
                policy_name: "p0".into(),
                marker,
                page_size: 4,
            })
            .await
            .unwrap()
            .into_inner();
        pages.push(page.targets);
        if page.next_marker.is_empty() {
            break;
        }
        marker = page.next_marker;
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [4, 2]);
    assert_eq!(pages.concat(), certs);

    let err = c
        .list_targets_for_policy(ListTargetsForPolicyRequest {
            policy_name: "p0".into(),
            marker: String::new(),
            page_size: 251,
        })
        .await;
    expect_err(err, ErrorType::InvalidRequest);
    drop(c);
    herald.stop().await;
}

// ------------------------------------------------------------ GetEffectivePolicies

#[tokio::test]
async fn effective_policies_are_the_principals_and_the_things_groups_and_ancestors_once_each() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    create_policies(
        &mut c,
        &[
            "on-cert",
            "shared",
            "on-root",
            "on-parent",
            "on-child",
            "on-other",
            "unrelated",
        ],
    )
    .await;
    let (_, cert, _) = create_cert(&mut c, true).await;
    let (_, other_cert, _) = create_cert(&mut c, true).await;
    create_group(&mut r, "root", None).await;
    create_group(&mut r, "parent", Some("root")).await;
    create_group(&mut r, "child", Some("parent")).await;
    create_group(&mut r, "other", None).await;
    create_group(&mut r, "elsewhere", None).await;
    create_thing(&mut r, "lamp", &[]).await;
    add_to_group(&mut r, "lamp", "child").await;
    add_to_group(&mut r, "lamp", "other").await;
    attach(&mut c, "on-cert", &cert).await;
    attach(&mut c, "shared", &cert).await;
    attach(&mut c, "shared", &group_arn("child")).await;
    attach(&mut c, "shared", &group_arn("root")).await;
    attach(&mut c, "on-root", &group_arn("root")).await;
    attach(&mut c, "on-parent", &group_arn("parent")).await;
    attach(&mut c, "on-child", &group_arn("child")).await;
    attach(&mut c, "on-other", &group_arn("other")).await;
    attach(&mut c, "unrelated", &group_arn("elsewhere")).await;
    attach(&mut c, "unrelated", &other_cert).await;

    assert_eq!(
        effective(&mut c, Some(&cert), Some("lamp")).await,
        with_docs(&[
            "on-cert",
            "shared",
            "on-root",
            "on-parent",
            "on-child",
            "on-other"
        ])
    );
    assert_eq!(
        effective(&mut c, Some(&cert), None).await,
        with_docs(&["on-cert", "shared"])
    );
    assert_eq!(
        effective(&mut c, None, Some("lamp")).await,
        with_docs(&["shared", "on-root", "on-parent", "on-child", "on-other"])
    );
    drop((c, r));
    herald.stop().await;
}

#[tokio::test]
async fn effective_policies_carry_the_default_versions_document() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    create_policies(&mut c, &["on-cert", "on-group"]).await;
    let (_, cert, _) = create_cert(&mut c, true).await;
    create_group(&mut r, "fleet", None).await;
    create_thing(&mut r, "lamp", &[]).await;
    add_to_group(&mut r, "lamp", "fleet").await;
    attach(&mut c, "on-cert", &cert).await;
    attach(&mut c, "on-group", &group_arn("fleet")).await;

    let new_doc = publish_doc("changed");
    create_version(&mut c, "on-group", &new_doc, true).await;
    create_version(&mut c, "on-cert", &publish_doc("not yet"), false).await;
    let mut expected = vec![
        ("on-cert".to_owned(), publish_doc("on-cert")),
        ("on-group".to_owned(), new_doc.clone()),
    ];
    expected.sort();
    assert_eq!(effective(&mut c, Some(&cert), Some("lamp")).await, expected);
    assert_eq!(
        get_policy(&mut c, "on-group").await.policy_document,
        new_doc
    );

    c.set_default_policy_version(SetDefaultPolicyVersionRequest {
        policy_name: "on-cert".into(),
        policy_version_id: "2".into(),
    })
    .await
    .unwrap();
    expected[0].1 = publish_doc("not yet");
    assert_eq!(effective(&mut c, Some(&cert), Some("lamp")).await, expected);
    drop((c, r));
    herald.stop().await;
}

#[tokio::test]
async fn effective_policies_need_a_certificate_principal() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    create_group(&mut r, "fleet", None).await;
    for principal in [group_arn("fleet"), arn("thing", "lamp"), "garbage".into()] {
        expect_err(
            c.get_effective_policies(effective_req(Some(&principal), None))
                .await,
            ErrorType::InvalidRequest,
        );
    }
    drop((c, r));
    herald.stop().await;
}
