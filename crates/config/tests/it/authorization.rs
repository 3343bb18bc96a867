//! TestAuthorization: decisions and the policies behind them, policy
//! variables, thing group policies through the client id's thing, policies
//! added and skipped, and the request's limits.

use herald_proto::{
    config::v1::*,
    error::ErrorType,
    registry::v1::{CreateThingRequest, CreateThingTypeRequest},
};
use serde_json::json;

use crate::support::{
    Config, Herald, Registry, add_to_group, allow, arn, attach, attach_thing_principal, client_arn,
    common_names, create_cert, create_cert_with_cn, create_group, create_policy, create_thing,
    deny, detach_thing_principal, document, expect_err, group_arn, herald_ca, policy_arn, state,
    topic_arn, topic_filter_arn,
};

// ------------------------------------------------------------ helpers

fn info(action: &str, resources: &[String]) -> AuthInfo {
    AuthInfo {
        action_type: action.into(),
        resources: resources.to_vec(),
    }
}

fn publish(topic: &str) -> AuthInfo {
    info("PUBLISH", &[topic_arn(topic)])
}

fn request(
    principal: Option<&str>,
    client_id: Option<&str>,
    infos: Vec<AuthInfo>,
) -> TestAuthorizationRequest {
    TestAuthorizationRequest {
        principal: principal.map(str::to_owned),
        client_id: client_id.map(str::to_owned),
        auth_infos: infos,
        policy_names_to_add: vec![],
        policy_names_to_skip: vec![],
    }
}

/// One auth result, reduced to what the tests compare: the decision and the
/// policies by role, each list sorted.
#[derive(Debug, PartialEq)]
struct Outcome {
    decision: String,
    allowed: Vec<String>,
    explicit_deny: Vec<String>,
    implicit_deny: Vec<String>,
}

fn outcome(
    decision: &str,
    allowed: &[&str],
    explicit_deny: &[&str],
    implicit_deny: &[&str],
) -> Outcome {
    let names = |list: &[&str]| {
        let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    Outcome {
        decision: decision.into(),
        allowed: names(allowed),
        explicit_deny: names(explicit_deny),
        implicit_deny: names(implicit_deny),
    }
}

fn names_of(refs: Vec<PolicyRef>) -> Vec<String> {
    let mut names: Vec<String> = refs
        .into_iter()
        .map(|r| {
            assert_eq!(r.policy_arn, policy_arn(&r.policy_name));
            r.policy_name
        })
        .collect();
    names.sort();
    names
}

/// Runs TestAuthorization; checks that each result echoes its auth info.
async fn authorize(c: &mut Config, req: TestAuthorizationRequest) -> Vec<AuthResult> {
    let infos = req.auth_infos.clone();
    let results = c
        .test_authorization(req)
        .await
        .unwrap()
        .into_inner()
        .auth_results;
    assert_eq!(results.len(), infos.len());
    for (result, info) in results.iter().zip(&infos) {
        assert_eq!(result.auth_info.as_ref(), Some(info));
    }
    results
}

async fn outcomes(c: &mut Config, req: TestAuthorizationRequest) -> Vec<Outcome> {
    authorize(c, req)
        .await
        .into_iter()
        .map(|r| Outcome {
            decision: r.auth_decision,
            allowed: names_of(r.allowed),
            explicit_deny: names_of(r.explicit_deny),
            implicit_deny: names_of(r.implicit_deny),
        })
        .collect()
}

/// The decisions alone.
async fn decisions(c: &mut Config, req: TestAuthorizationRequest) -> Vec<String> {
    authorize(c, req)
        .await
        .into_iter()
        .map(|r| r.auth_decision)
        .collect()
}

/// A policy with one statement, attached to `target`.
async fn policy_on(c: &mut Config, name: &str, statement: serde_json::Value, target: &str) {
    create_policy(c, name, &document(&[statement])).await;
    attach(c, name, target).await;
}

/// A device: a certificate with CN `cn` from a CSR, a thing named
/// `client_id` with `attributes`, the certificate attached to the thing.
/// Returns the certificate ARN.
async fn device(
    c: &mut Config,
    r: &mut Registry,
    cn: &str,
    client_id: &str,
    attributes: &[(&str, &str)],
) -> String {
    let (_, cert, _) = create_cert_with_cn(c, cn, true).await;
    create_thing(r, client_id, attributes).await;
    attach_thing_principal(r, client_id, &cert).await;
    cert
}

// ------------------------------------------------------------ decisions

#[tokio::test]
async fn an_explicit_deny_wins_then_an_allow_for_every_resource_else_implicit_deny() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let (_, cert, _) = create_cert(&mut c, true).await;
    policy_on(
        &mut c,
        "pub-allow",
        allow("iot:Publish", &topic_arn("room/*")),
        &cert,
    )
    .await;
    policy_on(
        &mut c,
        "pub-deny",
        deny("iot:Publish", &topic_arn("room/secret")),
        &cert,
    )
    .await;
    policy_on(
        &mut c,
        "sub-allow",
        allow("iot:Subscribe", &topic_filter_arn("room/*")),
        &cert,
    )
    .await;

    let infos = vec![
        publish("room/a"),
        publish("room/secret"),
        publish("hall/a"),
        info("PUBLISH", &[topic_arn("room/a"), topic_arn("hall/a")]),
        info("PUBLISH", &[topic_arn("room/a"), topic_arn("room/secret")]),
        info("SUBSCRIBE", &[topic_filter_arn("room/#")]),
        info("RECEIVE", &[topic_arn("room/a")]),
    ];
    let all = ["pub-allow", "pub-deny", "sub-allow"];
    assert_eq!(
        outcomes(&mut c, request(Some(&cert), None, infos)).await,
        [
            outcome("ALLOWED", &["pub-allow"], &[], &["pub-deny", "sub-allow"]),
            outcome(
                "EXPLICIT_DENY",
                &["pub-allow"],
                &["pub-deny"],
                &["sub-allow"]
            ),
            outcome("IMPLICIT_DENY", &[], &[], &all),
            outcome(
                "IMPLICIT_DENY",
                &["pub-allow"],
                &[],
                &["pub-deny", "sub-allow"]
            ),
            outcome(
                "EXPLICIT_DENY",
                &["pub-allow"],
                &["pub-deny"],
                &["sub-allow"]
            ),
            outcome("ALLOWED", &["sub-allow"], &[], &["pub-allow", "pub-deny"]),
            outcome("IMPLICIT_DENY", &[], &[], &all),
        ]
    );
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn a_principal_without_policies_is_implicitly_denied() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let (_, cert, _) = create_cert(&mut c, true).await;
    assert_eq!(
        outcomes(
            &mut c,
            request(Some(&cert), Some("anyone"), vec![publish("a")])
        )
        .await,
        [outcome("IMPLICIT_DENY", &[], &[], &[])]
    );
    drop(c);
    herald.stop().await;
}

// ------------------------------------------------------------ policy variables

#[tokio::test]
async fn policy_variables_resolve_from_the_client_id_thing_and_certificate() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    let cert = device(
        &mut c,
        &mut r,
        "cn-sensor",
        "sensor-1",
        &[("room", "kitchen")],
    )
    .await;
    let statements = [
        allow("iot:Publish", &topic_arn("clients/${iot:ClientId}/*")),
        allow(
            "iot:Publish",
            &topic_arn("things/${iot:Connection.Thing.ThingName}/*"),
        ),
        allow(
            "iot:Publish",
            &topic_arn("rooms/${iot:Connection.Thing.Attributes[room]}/*"),
        ),
        allow(
            "iot:Publish",
            &topic_arn("cn/${iot:Certificate.Subject.CommonName}/*"),
        ),
        allow("iot:Connect", &client_arn("${iot:ClientId}")),
    ];
    create_policy(&mut c, "vars", &document(&statements)).await;
    attach(&mut c, "vars", &cert).await;

    let infos = vec![
        publish("clients/sensor-1/x"),
        publish("clients/other/x"),
        publish("things/sensor-1/x"),
        publish("things/other/x"),
        publish("rooms/kitchen/x"),
        publish("rooms/garage/x"),
        publish("cn/cn-sensor/x"),
        publish("cn/sensor-1/x"),
        info("CONNECT", &[client_arn("sensor-1")]),
        info("CONNECT", &[client_arn("other")]),
    ];
    let (yes, no) = ("ALLOWED", "IMPLICIT_DENY");
    assert_eq!(
        decisions(&mut c, request(Some(&cert), Some("sensor-1"), infos)).await,
        [yes, no, yes, no, yes, no, yes, no, yes, no]
    );
    drop((c, r));
    herald.stop().await;
}

#[tokio::test]
async fn the_issued_certificates_common_name_is_aws_iot_certificate() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let (_, cert, _) = create_cert(&mut c, true).await;
    let statement = allow(
        "iot:Publish",
        &topic_arn("cn/${iot:Certificate.Subject.CommonName}"),
    );
    policy_on(&mut c, "cn", statement, &cert).await;
    let infos = vec![publish("cn/AWS IoT Certificate"), publish("cn/other")];
    assert_eq!(
        decisions(&mut c, request(Some(&cert), None, infos)).await,
        ["ALLOWED", "IMPLICIT_DENY"]
    );
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn the_context_has_the_things_type_and_the_certificates_issuer() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    let ca_cn = common_names(&herald_ca(&mut c).await.certificate_pem).remove(0);
    let (_, cert, _) = create_cert_with_cn(&mut c, "lamp-cert", true).await;
    r.create_thing_type(CreateThingTypeRequest {
        thing_type_name: "lamp-type".into(),
        thing_type_properties: None,
        tags: vec![],
    })
    .await
    .unwrap();
    r.create_thing(CreateThingRequest {
        thing_name: "lamp-1".into(),
        thing_type_name: Some("lamp-type".into()),
        attribute_payload: None,
        billing_group_name: None,
    })
    .await
    .unwrap();
    attach_thing_principal(&mut r, "lamp-1", &cert).await;
    let statements = [
        allow(
            "iot:Publish",
            &topic_arn("types/${iot:Connection.Thing.ThingTypeName}"),
        ),
        allow(
            "iot:Publish",
            &topic_arn("issuers/${iot:Certificate.Issuer.CommonName}"),
        ),
    ];
    create_policy(&mut c, "ctx", &document(&statements)).await;
    attach(&mut c, "ctx", &cert).await;

    let infos = vec![
        publish("types/lamp-type"),
        publish("types/other"),
        publish(&format!("issuers/{ca_cn}")),
        publish("issuers/lamp-cert"),
    ];
    assert_eq!(
        decisions(&mut c, request(Some(&cert), Some("lamp-1"), infos)).await,
        ["ALLOWED", "IMPLICIT_DENY", "ALLOWED", "IMPLICIT_DENY"]
    );
    drop((c, r));
    herald.stop().await;
}

#[tokio::test]
async fn thing_variables_are_missing_without_a_thing_named_by_the_client_id() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let (_, cert, _) = create_cert(&mut c, true).await;
    let statements = [
        allow(
            "iot:Publish",
            &topic_arn("things/${iot:Connection.Thing.ThingName}"),
        ),
        allow("iot:Publish", &topic_arn("clients/${iot:ClientId}")),
    ];
    create_policy(&mut c, "vars", &document(&statements)).await;
    attach(&mut c, "vars", &cert).await;

    let infos = vec![publish("things/ghost"), publish("clients/ghost")];
    let results = authorize(&mut c, request(Some(&cert), Some("ghost"), infos)).await;
    assert_eq!(results[0].auth_decision, "IMPLICIT_DENY");
    assert!(
        results[0]
            .missing_context_values
            .contains(&"iot:Connection.Thing.ThingName".to_owned()),
        "{:?}",
        results[0].missing_context_values
    );
    assert_eq!(results[1].auth_decision, "ALLOWED");
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn is_attached_tells_whether_the_principal_is_attached_to_the_client_ids_thing() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    let cert = device(&mut c, &mut r, "cn", "sensor-1", &[]).await;
    let statement = json!({
        "Effect": "Allow",
        "Action": "iot:Publish",
        "Resource": topic_arn("attached/*"),
        "Condition": { "Bool": { "iot:Connection.Thing.IsAttached": "true" } }
    });
    policy_on(&mut c, "attached-only", statement, &cert).await;

    let ask = || request(Some(&cert), Some("sensor-1"), vec![publish("attached/x")]);
    assert_eq!(decisions(&mut c, ask()).await, ["ALLOWED"]);
    detach_thing_principal(&mut r, "sensor-1", &cert).await;
    assert_eq!(decisions(&mut c, ask()).await, ["IMPLICIT_DENY"]);
    drop((c, r));
    herald.stop().await;
}

// ------------------------------------------------------------ thing group policies

#[tokio::test]
async fn thing_group_policies_apply_only_when_the_principal_is_attached_to_the_client_ids_thing() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    let cert = device(&mut c, &mut r, "cn", "sensor-1", &[]).await;
    create_thing(&mut r, "sensor-2", &[]).await;
    create_group(&mut r, "all", None).await;
    create_group(&mut r, "fleet", Some("all")).await;
    add_to_group(&mut r, "sensor-1", "fleet").await;
    add_to_group(&mut r, "sensor-2", "fleet").await;
    policy_on(
        &mut c,
        "fleet-pub",
        allow("iot:Publish", &topic_arn("fleet/*")),
        &group_arn("fleet"),
    )
    .await;
    policy_on(
        &mut c,
        "all-pub",
        allow("iot:Publish", &topic_arn("all/*")),
        &group_arn("all"),
    )
    .await;
    policy_on(
        &mut c,
        "own",
        allow("iot:Publish", &topic_arn("own/*")),
        &cert,
    )
    .await;
    let infos = || vec![publish("fleet/x"), publish("all/x"), publish("own/x")];

    // Attached to sensor-1: its groups' policies, ancestors included.
    assert_eq!(
        outcomes(&mut c, request(Some(&cert), Some("sensor-1"), infos())).await,
        [
            outcome("ALLOWED", &["fleet-pub"], &[], &["all-pub", "own"]),
            outcome("ALLOWED", &["all-pub"], &[], &["fleet-pub", "own"]),
            outcome("ALLOWED", &["own"], &[], &["all-pub", "fleet-pub"]),
        ]
    );
    // Not attached to sensor-2, nor is there a thing without a client id:
    // the principal's own policies only.
    for client_id in [Some("sensor-2"), None] {
        assert_eq!(
            outcomes(&mut c, request(Some(&cert), client_id, infos())).await,
            [
                outcome("IMPLICIT_DENY", &[], &[], &["own"]),
                outcome("IMPLICIT_DENY", &[], &[], &["own"]),
                outcome("ALLOWED", &["own"], &[], &[]),
            ],
            "client id {client_id:?}"
        );
    }
    detach_thing_principal(&mut r, "sensor-1", &cert).await;
    assert_eq!(
        decisions(&mut c, request(Some(&cert), Some("sensor-1"), infos())).await,
        ["IMPLICIT_DENY", "IMPLICIT_DENY", "ALLOWED"]
    );
    drop((c, r));
    herald.stop().await;
}

#[tokio::test]
async fn thing_group_policies_apply_for_a_principal_attached_to_many_things() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    let (_, cert, _) = create_cert(&mut c, true).await;
    // More things than one page of ListPrincipalThings; the client id's thing sorts last.
    for i in 0..60 {
        let thing = format!("thing-{i:02}");
        create_thing(&mut r, &thing, &[]).await;
        attach_thing_principal(&mut r, &thing, &cert).await;
    }
    create_group(&mut r, "fleet", None).await;
    add_to_group(&mut r, "thing-00", "fleet").await;
    add_to_group(&mut r, "thing-59", "fleet").await;
    let statement = allow("iot:Publish", &topic_arn("fleet/*"));
    policy_on(&mut c, "fleet-pub", statement, &group_arn("fleet")).await;

    for thing in ["thing-00", "thing-59"] {
        let req = request(Some(&cert), Some(thing), vec![publish("fleet/x")]);
        assert_eq!(
            decisions(&mut c, req).await,
            ["ALLOWED"],
            "client id {thing}"
        );
    }
    drop((c, r));
    herald.stop().await;
}

// ------------------------------------------------------------ added and skipped policies

#[tokio::test]
async fn policies_to_add_are_evaluated_and_policies_to_skip_are_not() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let (_, cert, _) = create_cert(&mut c, true).await;
    policy_on(
        &mut c,
        "allow-a",
        allow("iot:Publish", &topic_arn("a/*")),
        &cert,
    )
    .await;
    policy_on(
        &mut c,
        "deny-secret",
        deny("iot:Publish", &topic_arn("a/secret")),
        &cert,
    )
    .await;
    create_policy(
        &mut c,
        "allow-b",
        &document(&[allow("iot:Publish", &topic_arn("b/*"))]),
    )
    .await;
    let infos = || vec![publish("a/x"), publish("a/secret"), publish("b/x")];
    let with = |add: &[&str], skip: &[&str]| TestAuthorizationRequest {
        policy_names_to_add: add.iter().map(|s| s.to_string()).collect(),
        policy_names_to_skip: skip.iter().map(|s| s.to_string()).collect(),
        ..request(Some(&cert), None, infos())
    };

    assert_eq!(
        decisions(&mut c, with(&[], &[])).await,
        ["ALLOWED", "EXPLICIT_DENY", "IMPLICIT_DENY"]
    );
    assert_eq!(
        outcomes(&mut c, with(&["allow-b"], &[])).await[2],
        outcome("ALLOWED", &["allow-b"], &[], &["allow-a", "deny-secret"])
    );
    assert_eq!(
        outcomes(&mut c, with(&[], &["allow-a"])).await,
        [
            outcome("IMPLICIT_DENY", &[], &[], &["deny-secret"]),
            outcome("EXPLICIT_DENY", &[], &["deny-secret"], &[]),
            outcome("IMPLICIT_DENY", &[], &[], &["deny-secret"]),
        ]
    );
    assert_eq!(
        decisions(&mut c, with(&[], &["deny-secret"])).await,
        ["ALLOWED", "ALLOWED", "IMPLICIT_DENY"]
    );
    // Skipping wins over adding; adding an attached policy counts it once.
    assert_eq!(
        outcomes(&mut c, with(&["allow-b", "allow-a"], &["allow-b"])).await[0],
        outcome("ALLOWED", &["allow-a"], &[], &["deny-secret"])
    );
    // Without a principal, only the added policies count.
    let req = TestAuthorizationRequest {
        policy_names_to_add: vec!["allow-b".into()],
        ..request(None, None, infos())
    };
    assert_eq!(
        outcomes(&mut c, req).await,
        [
            outcome("IMPLICIT_DENY", &[], &[], &["allow-b"]),
            outcome("IMPLICIT_DENY", &[], &[], &["allow-b"]),
            outcome("ALLOWED", &["allow-b"], &[], &[]),
        ]
    );
    drop(c);
    herald.stop().await;
}

// ------------------------------------------------------------ refusals

#[tokio::test]
async fn one_to_ten_auth_infos_are_accepted_and_zero_or_eleven_refused() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let (_, cert, _) = create_cert(&mut c, true).await;
    policy_on(&mut c, "p", allow("iot:Publish", &topic_arn("*")), &cert).await;
    let before = state(&mut c).await;
    let infos = |n: usize| {
        (0..n)
            .map(|i| publish(&format!("t/{i}")))
            .collect::<Vec<_>>()
    };

    for n in [0, 11] {
        expect_err(
            c.test_authorization(request(Some(&cert), None, infos(n)))
                .await,
            ErrorType::InvalidRequest,
        );
    }
    for n in [1, 10] {
        let decided = decisions(&mut c, request(Some(&cert), None, infos(n))).await;
        assert_eq!(decided, vec!["ALLOWED"; n]);
    }
    assert_eq!(state(&mut c).await, before);
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn bad_action_types_and_auth_infos_without_resources_are_refused() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let (_, cert, _) = create_cert(&mut c, true).await;
    policy_on(&mut c, "p", allow("iot:*", "*"), &cert).await;

    for bad in [
        info("DELETE", &[topic_arn("t")]),
        info("", &[topic_arn("t")]),
        info("iot:Publish", &[topic_arn("t")]),
        info("PUBLISH", &[]),
    ] {
        expect_err(
            c.test_authorization(request(Some(&cert), None, vec![publish("t"), bad.clone()]))
                .await,
            ErrorType::InvalidRequest,
        );
    }
    drop(c);
    herald.stop().await;
}

#[tokio::test]
async fn the_principal_must_be_a_known_certificate() {
    let herald = Herald::start().await;
    let mut c = herald.config().await;
    let mut r = herald.registry().await;
    let (id, _, _) = create_cert(&mut c, true).await;
    create_group(&mut r, "fleet", None).await;
    for principal in [group_arn("fleet"), arn("thing", "t"), "nope".into()] {
        expect_err(
            c.test_authorization(request(Some(&principal), None, vec![publish("t")]))
                .await,
            ErrorType::InvalidRequest,
        );
    }
    let unknown = arn(
        "cert",
        &if id.starts_with('0') { "1" } else { "0" }.repeat(64),
    );
    expect_err(
        c.test_authorization(request(Some(&unknown), None, vec![publish("t")]))
            .await,
        ErrorType::ResourceNotFound,
    );
    drop((c, r));
    herald.stop().await;
}
