//! Policies and their versions: names, documents, paging, versions, deletion.

use herald_proto::{config::v1::*, error::ErrorType};

use crate::support::{
    Config, Herald, allow, attach, cert_arn, create_cert, create_group, create_policy,
    create_version, detach, document, expect_err, get_policy, group_arn, now_ms, policy_arn,
    policy_names, publish_doc, state, topic_arn,
};

// ------------------------------------------------------------ helpers

fn create_req(name: &str, doc: &str) -> CreatePolicyRequest {
    CreatePolicyRequest {
        policy_name: name.into(),
        policy_document: doc.into(),
        tags: vec![],
    }
}

fn version_req(name: &str, doc: &str, set_as_default: bool) -> CreatePolicyVersionRequest {
    CreatePolicyVersionRequest {
        policy_name: name.into(),
        policy_document: doc.into(),
        set_as_default,
    }
}

fn set_default_req(name: &str, id: &str) -> SetDefaultPolicyVersionRequest {
    SetDefaultPolicyVersionRequest {
        policy_name: name.into(),
        policy_version_id: id.into(),
    }
}

fn delete_version_req(name: &str, id: &str) -> DeletePolicyVersionRequest {
    DeletePolicyVersionRequest {
        policy_name: name.into(),
        policy_version_id: id.into(),
    }
}

fn delete_req(name: &str) -> DeletePolicyRequest {
    DeletePolicyRequest {
        policy_name: name.into(),
    }
}

fn list_req(marker: &str, page_size: u32) -> ListPoliciesRequest {
    ListPoliciesRequest {
        marker: marker.into(),
        page_size,
        ascending_order: true,
    }
}

async fn get_version(c: &mut Config, name: &str, id: &str) -> GetPolicyVersionResponse {
    c.get_policy_version(GetPolicyVersionRequest {
        policy_name: name.into(),
        policy_version_id: id.into(),
    })
    .await
    .unwrap()
    .into_inner()
}

/// (version id, is default) of every version, as ListPolicyVersions gives them, sorted by id.
async fn versions(c: &mut Config, name: &str) -> Vec<(u32, bool)> {
    let listed = c
        .list_policy_versions(ListPolicyVersionsRequest {
            policy_name: name.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .policy_versions;
    let mut versions: Vec<(u32, bool)> = listed
        .into_iter()
        .map(|v| (v.version_id.parse().unwrap(), v.is_default_version))
        .collect();
    versions.sort();
    versions
}

async fn delete_version(c: &mut Config, name: &str, id: &str) {
    c.delete_policy_version(delete_version_req(name, id))
        .await
        .unwrap();
}

// ------------------------------------------------------------ create, get

#[tokio::test]
async fn create_policy_makes_version_1_the_default_and_get_policy_returns_it() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let doc = publish_doc("a/b");

    let before = now_ms();
    let created = c
        .create_policy(create_req("lamp-policy", &doc))
        .await
        .unwrap()
        .into_inner();
    let after = now_ms();
    assert_eq!(created.policy_name, "lamp-policy");
    assert_eq!(created.policy_arn, policy_arn("lamp-policy"));
    assert_eq!(created.policy_document, doc);
    assert_eq!(created.policy_version_id, "1");

    let got = get_policy(&mut c, "lamp-policy").await;
    assert_eq!(got.policy_name, "lamp-policy");
    assert_eq!(got.policy_arn, policy_arn("lamp-policy"));
    assert_eq!(got.policy_document, doc);
    assert_eq!(got.default_version_id, "1");
    assert!((before..=after).contains(&got.creation_date_ms));
    assert_eq!(got.last_modified_date_ms, got.creation_date_ms);
    assert!(!got.generation_id.is_empty());

    let v1 = get_version(&mut c, "lamp-policy", "1").await;
    assert_eq!(v1.policy_document, doc);
    assert!(v1.is_default_version);
    assert_eq!(v1.policy_arn, policy_arn("lamp-policy"));
    assert_eq!(versions(&mut c, "lamp-policy").await, [(1, true)]);
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn unknown_policies_and_versions_are_not_found() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let get = c
        .get_policy(GetPolicyRequest {
            policy_name: "nope".into(),
        })
        .await;
    expect_err(get, ErrorType::ResourceNotFound);
    let versions = c
        .list_policy_versions(ListPolicyVersionsRequest {
            policy_name: "nope".into(),
        })
        .await;
    expect_err(versions, ErrorType::ResourceNotFound);
    expect_err(
        c.create_policy_version(version_req("nope", &publish_doc("x"), true))
            .await,
        ErrorType::ResourceNotFound,
    );
    expect_err(
        c.delete_policy(delete_req("nope")).await,
        ErrorType::ResourceNotFound,
    );

    create_policy(&mut c, "p", &publish_doc("x")).await;
    let get = c
        .get_policy_version(GetPolicyVersionRequest {
            policy_name: "p".into(),
            policy_version_id: "2".into(),
        })
        .await;
    expect_err(get, ErrorType::ResourceNotFound);
    let get = c
        .get_policy_version(GetPolicyVersionRequest {
            policy_name: "p".into(),
            policy_version_id: "v1".into(),
        })
        .await;
    expect_err(get, ErrorType::InvalidRequest);
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn policy_names_outside_the_pattern_or_length_are_refused() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let doc = publish_doc("x");
    let before = state(&mut c).await;

    let too_long = "p".repeat(129);
    for name in [
        "",
        too_long.as_str(),
        "a/b",
        "has space",
        "colon:name",
        "star*",
        "semi;colon",
        "quote\"",
    ] {
        expect_err(
            c.create_policy(create_req(name, &doc)).await,
            ErrorType::InvalidRequest,
        );
        assert_eq!(state(&mut c).await, before, "{name:?} changed something");
        let get = c
            .get_policy(GetPolicyRequest {
                policy_name: name.into(),
            })
            .await;
        expect_err(get, ErrorType::InvalidRequest);
    }

    // The edges of the pattern are fine.
    let longest = "p".repeat(128);
    for name in [longest.as_str(), "a", "Mixed_Case+=,.@-09"] {
        create_policy(&mut c, name, &doc).await;
        assert_eq!(get_policy(&mut c, name).await.policy_name, name);
    }
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn malformed_documents_are_refused_with_the_reason_and_nothing_is_created() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    create_policy(&mut c, "existing", &publish_doc("x")).await;
    let before = state(&mut c).await;

    let resource = topic_arn("t");
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "JSON"),
        ("{\"Version\": \"2012-10-17\",".into(), "JSON"),
        ("[]".into(), "object"),
        ("{}".into(), "Version"),
        (
            serde_json::json!({"Statement": [allow("iot:Publish", &resource)]}).to_string(),
            "Version",
        ),
        (
            serde_json::json!({"Version": "2020-01-01", "Statement": [allow("iot:Publish", &resource)]})
                .to_string(),
            "Version",
        ),
        (
            serde_json::json!({"Version": "2012-10-17"}).to_string(),
            "Statement",
        ),
        (document(&[]), "Statement"),
        (
            document(&[serde_json::json!({"Effect": "Permit", "Action": "iot:Publish", "Resource": resource})]),
            "Effect",
        ),
        (
            document(&[serde_json::json!({"Action": "iot:Publish", "Resource": resource})]),
            "Effect",
        ),
        (
            document(&[serde_json::json!({"Effect": "Allow", "Action": "iot:Publish"})]),
            "Resource",
        ),
        (
            document(&[serde_json::json!({"Effect": "Allow", "Resource": resource})]),
            "Action",
        ),
        (
            document(&[serde_json::json!({"Effect": "Allow", "Action": "Publish", "Resource": resource})]),
            "action",
        ),
        (
            document(&[serde_json::json!({"Effect": "Allow", "Action": "iot:Publish", "Resource": []})]),
            "Resource",
        ),
        (
            document(&[serde_json::json!({"Effect": "Allow", "Action": "iot:Publish", "Resource": resource, "Extra": 1})]),
            "Extra",
        ),
        (
            serde_json::json!({"Version": "2012-10-17", "Statement": [allow("iot:Publish", &resource)], "Other": 1})
                .to_string(),
            "Other",
        ),
        (
            document(
                &(0..40)
                    .map(|i| allow("iot:Publish", &topic_arn(&format!("a/long/topic/number/{i}"))))
                    .collect::<Vec<_>>(),
            ),
            "2048",
        ),
    ];
    for (doc, reason) in &cases {
        let err = expect_err(
            c.create_policy(create_req("fresh", doc)).await,
            ErrorType::MalformedPolicy,
        );
        assert!(
            err.message.contains(reason),
            "the message for {doc:?} should name {reason:?}: {}",
            err.message
        );
        let err = expect_err(
            c.create_policy_version(version_req("existing", doc, true))
                .await,
            ErrorType::MalformedPolicy,
        );
        assert!(err.message.contains(reason), "{}", err.message);
        assert_eq!(state(&mut c).await, before, "{doc:?} changed something");
    }
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn an_existing_name_is_refused_and_the_policy_is_kept() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    create_policy(&mut c, "p", &publish_doc("first")).await;
    let before = state(&mut c).await;

    expect_err(
        c.create_policy(create_req("p", &publish_doc("second")))
            .await,
        ErrorType::ResourceAlreadyExists,
    );
    assert_eq!(state(&mut c).await, before);
    assert_eq!(
        get_policy(&mut c, "p").await.policy_document,
        publish_doc("first")
    );
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn a_deleted_policy_name_can_be_created_again_from_version_1() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    create_policy(&mut c, "p", &publish_doc("old")).await;
    create_version(&mut c, "p", &publish_doc("old2"), true).await;
    delete_version(&mut c, "p", "1").await;
    c.delete_policy(delete_req("p")).await.unwrap();

    create_policy(&mut c, "p", &publish_doc("new")).await;
    let got = get_policy(&mut c, "p").await;
    assert_eq!(got.default_version_id, "1");
    assert_eq!(got.policy_document, publish_doc("new"));
    assert_eq!(versions(&mut c, "p").await, [(1, true)]);
    drop(c);
    herald.stop().await;
}

// ------------------------------------------------------------ listing

/// Walks every page of ListPolicies in the given order.
async fn policy_pages(c: &mut Config, page_size: u32, ascending_order: bool) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut marker = String::new();
    loop {
        let page = c
            .list_policies(ListPoliciesRequest {
                marker,
                page_size,
                ascending_order,
            })
            .await
            .unwrap()
            .into_inner();
        for p in &page.policies {
            assert_eq!(p.policy_arn, policy_arn(&p.policy_name));
        }
        pages.push(
            page.policies
                .into_iter()
                .map(|p| p.policy_name)
                .collect::<Vec<_>>(),
        );
        if page.next_marker.is_empty() {
            return pages;
        }
        marker = page.next_marker;
    }
}

#[tokio::test]
async fn list_policies_pages_in_creation_order_both_ways_with_marker_and_page_size() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let names = [
        "delta", "alpha", "echo", "charlie", "bravo", "golf", "foxtrot",
    ];
    let mut created = Vec::new();
    for name in names {
        create_policy(&mut c, name, &publish_doc(name)).await;
        created.push((
            get_policy(&mut c, name).await.creation_date_ms,
            name.to_owned(),
        ));
    }
    // Oldest first when ascending, newest first otherwise; equal creation
    // dates (the same millisecond) by name either way.
    created.sort();
    let ascending: Vec<String> = created.iter().map(|(_, n)| n.clone()).collect();
    let mut newest_first = created.clone();
    newest_first.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let descending: Vec<String> = newest_first.into_iter().map(|(_, n)| n).collect();

    let pages = policy_pages(&mut c, 3, true).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(pages.concat(), ascending);
    let pages = policy_pages(&mut c, 3, false).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(pages.concat(), descending);

    // An exact fit ends without a marker.
    let page = c.list_policies(list_req("", 7)).await.unwrap().into_inner();
    assert_eq!(page.policies.len(), 7);
    assert!(page.next_marker.is_empty());
    let mut expected: Vec<&str> = names.to_vec();
    expected.sort();
    assert_eq!(policy_names(&mut c).await, expected);
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn list_policies_page_size_0_means_50_and_more_than_250_is_refused() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    for i in 0..55 {
        create_policy(&mut c, &format!("p{i:02}"), &publish_doc("x")).await;
    }
    let first = c.list_policies(list_req("", 0)).await.unwrap().into_inner();
    assert_eq!(first.policies.len(), 50);
    assert_eq!(first.policies[49].policy_name, "p49");
    assert!(!first.next_marker.is_empty());
    let second = c
        .list_policies(list_req(&first.next_marker, 0))
        .await
        .unwrap()
        .into_inner();
    let rest: Vec<String> = second.policies.into_iter().map(|p| p.policy_name).collect();
    assert_eq!(rest, ["p50", "p51", "p52", "p53", "p54"]);
    assert!(second.next_marker.is_empty());

    let all = c
        .list_policies(list_req("", 250))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.policies.len(), 55);
    expect_err(
        c.list_policies(list_req("", 251)).await,
        ErrorType::InvalidRequest,
    );
    expect_err(
        c.list_policies(list_req("not-a-marker", 10)).await,
        ErrorType::InvalidRequest,
    );
    drop(c);
    herald.stop().await;
}

// ------------------------------------------------------------ versions

#[tokio::test]
async fn a_new_version_is_operative_only_with_set_as_default() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    create_policy(&mut c, "p", &publish_doc("v1")).await;

    let v2 = create_version(&mut c, "p", &publish_doc("v2"), false).await;
    assert_eq!(v2.policy_version_id, "2");
    assert!(!v2.is_default_version);
    assert_eq!(v2.policy_arn, policy_arn("p"));
    assert_eq!(v2.policy_document, publish_doc("v2"));
    let got = get_policy(&mut c, "p").await;
    assert_eq!(got.default_version_id, "1");
    assert_eq!(got.policy_document, publish_doc("v1"));

    let before = now_ms();
    let v3 = create_version(&mut c, "p", &publish_doc("v3"), true).await;
    let after = now_ms();
    assert_eq!(v3.policy_version_id, "3");
    assert!(v3.is_default_version);
    let got = get_policy(&mut c, "p").await;
    assert_eq!(got.default_version_id, "3");
    assert_eq!(got.policy_document, publish_doc("v3"));
    assert!((before..=after).contains(&got.last_modified_date_ms));

    assert_eq!(
        versions(&mut c, "p").await,
        [(1, false), (2, false), (3, true)]
    );
    let v2 = get_version(&mut c, "p", "2").await;
    assert_eq!(v2.policy_document, publish_doc("v2"));
    assert!(!v2.is_default_version);
    let v3 = get_version(&mut c, "p", "3").await;
    assert!(v3.is_default_version);
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn a_sixth_version_is_refused_and_version_ids_are_never_reused() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    create_policy(&mut c, "p", &publish_doc("v1")).await;
    for i in 2..=5 {
        let v = create_version(&mut c, "p", &publish_doc(&format!("v{i}")), false).await;
        assert_eq!(v.policy_version_id, i.to_string());
    }
    let before = state(&mut c).await;
    expect_err(
        c.create_policy_version(version_req("p", &publish_doc("v6"), true))
            .await,
        ErrorType::VersionsLimitExceeded,
    );
    expect_err(
        c.create_policy_version(version_req("p", &publish_doc("v6"), false))
            .await,
        ErrorType::VersionsLimitExceeded,
    );
    assert_eq!(state(&mut c).await, before);

    // Deleting a version frees a slot, but not its id.
    delete_version(&mut c, "p", "2").await;
    let v = create_version(&mut c, "p", &publish_doc("v6"), false).await;
    assert_eq!(v.policy_version_id, "6");
    delete_version(&mut c, "p", "6").await;
    let v = create_version(&mut c, "p", &publish_doc("v7"), true).await;
    assert_eq!(v.policy_version_id, "7");
    assert_eq!(
        versions(&mut c, "p").await,
        [(1, false), (3, false), (4, false), (5, false), (7, true)]
    );
    let get = c
        .get_policy_version(GetPolicyVersionRequest {
            policy_name: "p".into(),
            policy_version_id: "2".into(),
        })
        .await;
    expect_err(get, ErrorType::ResourceNotFound);
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn set_default_policy_version_switches_the_operative_document() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    create_policy(&mut c, "p", &publish_doc("v1")).await;
    create_version(&mut c, "p", &publish_doc("v2"), false).await;

    c.set_default_policy_version(set_default_req("p", "2"))
        .await
        .unwrap();
    let got = get_policy(&mut c, "p").await;
    assert_eq!(got.default_version_id, "2");
    assert_eq!(got.policy_document, publish_doc("v2"));
    assert_eq!(versions(&mut c, "p").await, [(1, false), (2, true)]);

    // Setting the default again is a no-op success.
    c.set_default_policy_version(set_default_req("p", "2"))
        .await
        .unwrap();
    assert_eq!(get_policy(&mut c, "p").await.default_version_id, "2");

    c.set_default_policy_version(set_default_req("p", "1"))
        .await
        .unwrap();
    let got = get_policy(&mut c, "p").await;
    assert_eq!(got.default_version_id, "1");
    assert_eq!(got.policy_document, publish_doc("v1"));
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn set_default_policy_version_refuses_unknown_versions_and_policies() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    create_policy(&mut c, "p", &publish_doc("v1")).await;
    create_version(&mut c, "p", &publish_doc("v2"), false).await;
    delete_version(&mut c, "p", "2").await;
    let before = state(&mut c).await;

    for (name, id, expected) in [
        ("p", "9", ErrorType::ResourceNotFound),
        ("p", "2", ErrorType::ResourceNotFound),
        ("p", "0", ErrorType::ResourceNotFound),
        ("p", "v1", ErrorType::InvalidRequest),
        ("p", "", ErrorType::InvalidRequest),
        ("other", "1", ErrorType::ResourceNotFound),
        ("bad/name", "1", ErrorType::InvalidRequest),
    ] {
        expect_err(
            c.set_default_policy_version(set_default_req(name, id))
                .await,
            expected,
        );
        assert_eq!(state(&mut c).await, before, "{name} {id} changed something");
    }
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn the_default_version_cannot_be_deleted_and_unknown_versions_are_not_found() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    create_policy(&mut c, "p", &publish_doc("v1")).await;
    create_version(&mut c, "p", &publish_doc("v2"), true).await;
    let before = state(&mut c).await;

    expect_err(
        c.delete_policy_version(delete_version_req("p", "2")).await,
        ErrorType::DeleteConflict,
    );
    expect_err(
        c.delete_policy_version(delete_version_req("p", "3")).await,
        ErrorType::ResourceNotFound,
    );
    expect_err(
        c.delete_policy_version(delete_version_req("q", "1")).await,
        ErrorType::ResourceNotFound,
    );
    expect_err(
        c.delete_policy_version(delete_version_req("p", "x")).await,
        ErrorType::InvalidRequest,
    );
    assert_eq!(state(&mut c).await, before);

    // A non-default version goes; the default stays operative.
    delete_version(&mut c, "p", "1").await;
    assert_eq!(versions(&mut c, "p").await, [(2, true)]);
    assert_eq!(
        get_policy(&mut c, "p").await.policy_document,
        publish_doc("v2")
    );
    expect_err(
        c.delete_policy_version(delete_version_req("p", "1")).await,
        ErrorType::ResourceNotFound,
    );
    drop(c);
    herald.stop().await;
}

// ------------------------------------------------------------ deletion

#[tokio::test]
async fn delete_policy_is_refused_while_it_has_non_default_versions() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    create_policy(&mut c, "p", &publish_doc("v1")).await;
    create_version(&mut c, "p", &publish_doc("v2"), false).await;
    create_version(&mut c, "p", &publish_doc("v3"), false).await;
    let before = state(&mut c).await;

    expect_err(
        c.delete_policy(delete_req("p")).await,
        ErrorType::DeleteConflict,
    );
    assert_eq!(state(&mut c).await, before);
    delete_version(&mut c, "p", "2").await;
    expect_err(
        c.delete_policy(delete_req("p")).await,
        ErrorType::DeleteConflict,
    );
    delete_version(&mut c, "p", "3").await;

    c.delete_policy(delete_req("p")).await.unwrap();
    expect_err(
        c.get_policy(GetPolicyRequest {
            policy_name: "p".into(),
        })
        .await,
        ErrorType::ResourceNotFound,
    );
    assert!(policy_names(&mut c).await.is_empty());
    expect_err(
        c.delete_policy(delete_req("p")).await,
        ErrorType::ResourceNotFound,
    );
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn delete_policy_is_refused_while_attached_to_a_certificate_or_a_thing_group() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    create_policy(&mut c, "p", &publish_doc("v1")).await;
    create_policy(&mut c, "q", &publish_doc("v1")).await;
    let (id, _, _) = create_cert(&mut c, false).await;
    create_group(&mut r, "fleet", None).await;
    attach(&mut c, "p", &cert_arn(&id)).await;
    attach(&mut c, "q", &group_arn("fleet")).await;
    let before = state(&mut c).await;

    for name in ["p", "q"] {
        expect_err(
            c.delete_policy(delete_req(name)).await,
            ErrorType::DeleteConflict,
        );
    }
    assert_eq!(state(&mut c).await, before);

    detach(&mut c, "p", &cert_arn(&id)).await;
    detach(&mut c, "q", &group_arn("fleet")).await;
    c.delete_policy(delete_req("p")).await.unwrap();
    c.delete_policy(delete_req("q")).await.unwrap();
    assert!(policy_names(&mut c).await.is_empty());
    drop((c, r));
    herald.stop().await;
}
