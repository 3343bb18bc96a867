//! `Condition` blocks evaluated through whole policies.

use std::net::IpAddr;

use herald_policy::{Action, Context, Decision, Policy};

use crate::support::{check, client, policy};

use Decision::{Allowed, ExplicitDeny, ImplicitDeny};

/// An Allow for everything, guarded by `condition` (a JSON object).
fn guarded(effect: &str, condition: &str) -> Policy {
    policy(&format!(
        r#"[{{"Effect":"{effect}","Action":"iot:*","Resource":"*","Condition":{condition}}}]"#
    ))
}

fn allowed(policy: &Policy, context: &Context) -> Decision {
    check(&[policy], Action::Publish, "topic/x", context)
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The DG's thing-policy pattern: connect as your own thing, only when the
/// certificate is attached to it.
#[test]
fn connect_as_an_attached_thing() {
    let p = policy(
        r#"[{"Effect":"Allow","Action":"iot:Connect","Resource":"ARN:client/${iot:Connection.Thing.ThingName}",
             "Condition":{"Bool":{"iot:Connection.Thing.IsAttached":["true"]}}}]"#,
    );
    let attached = client("t1").with_thing_name("t1").with_attached(true);
    let detached = client("t1").with_thing_name("t1").with_attached(false);
    let unknown = client("t1").with_thing_name("t1");
    assert_eq!(
        check(&[&p], Action::Connect, "client/t1", &attached),
        Allowed
    );
    assert_eq!(
        check(&[&p], Action::Connect, "client/t1", &detached),
        ImplicitDeny
    );
    assert_eq!(
        check(&[&p], Action::Connect, "client/t1", &unknown),
        ImplicitDeny
    );
    assert_eq!(
        check(&[&p], Action::Connect, "client/t2", &attached),
        ImplicitDeny
    );
}

#[test]
fn string_operators() {
    let equals = guarded("Allow", r#"{"StringEquals":{"iot:ClientId":["a","b"]}}"#);
    assert_eq!(allowed(&equals, &client("a")), Allowed);
    assert_eq!(allowed(&equals, &client("b")), Allowed);
    assert_eq!(allowed(&equals, &client("A")), ImplicitDeny);
    assert_eq!(allowed(&equals, &Context::new()), ImplicitDeny);

    let literal_star = guarded("Allow", r#"{"StringEquals":{"iot:ClientId":"a*"}}"#);
    assert_eq!(allowed(&literal_star, &client("a*")), Allowed);
    assert_eq!(allowed(&literal_star, &client("ab")), ImplicitDeny);

    let ignore_case = guarded(
        "Allow",
        r#"{"StringEqualsIgnoreCase":{"iot:ClientId":"Abc"}}"#,
    );
    assert_eq!(allowed(&ignore_case, &client("aBC")), Allowed);

    let not_equals = guarded("Allow", r#"{"StringNotEquals":{"iot:ClientId":["a","b"]}}"#);
    assert_eq!(allowed(&not_equals, &client("c")), Allowed);
    assert_eq!(allowed(&not_equals, &client("a")), ImplicitDeny);

    let like = guarded("Allow", r#"{"StringLike":{"iot:ClientId":"sensor-*"}}"#);
    assert_eq!(allowed(&like, &client("sensor-9")), Allowed);
    assert_eq!(allowed(&like, &client("actuator-9")), ImplicitDeny);

    let not_like = guarded("Deny", r#"{"StringNotLike":{"iot:ClientId":"sensor-?"}}"#);
    let everything = guarded("Allow", "{}");
    let both = |context: &Context| {
        check(
            &[&everything, &not_like],
            Action::Publish,
            "topic/x",
            context,
        )
    };
    assert_eq!(both(&client("sensor-1")), Allowed);
    assert_eq!(both(&client("sensor-12")), ExplicitDeny);
}

#[test]
fn condition_values_take_variables() {
    let p = guarded(
        "Allow",
        r#"{"StringEquals":{"iot:ClientId":"${iot:Connection.Thing.ThingName}"}}"#,
    );
    assert_eq!(allowed(&p, &client("t1").with_thing_name("t1")), Allowed);
    assert_eq!(
        allowed(&p, &client("t2").with_thing_name("t1")),
        ImplicitDeny
    );
    assert_eq!(allowed(&p, &client("t1")), ImplicitDeny, "unresolvable");

    let attribute = guarded(
        "Allow",
        r#"{"StringLike":{"iot:Connection.Thing.Attributes[site]":"${iot:Certificate.Subject.Organization}-*"}}"#,
    );
    let context = client("c")
        .with_thing_attribute("site", "acme-berlin")
        .with_subject_field(herald_policy::CertField::Organization, ["acme"]);
    assert_eq!(allowed(&attribute, &context), Allowed);
}

#[test]
fn source_ip() {
    let p = guarded(
        "Allow",
        r#"{"IpAddress":{"aws:SourceIp":["192.0.2.0/24","2001:db8::/32"]}}"#,
    );
    assert_eq!(
        allowed(&p, &client("c").with_source_ip(ip("192.0.2.200"))),
        Allowed
    );
    assert_eq!(
        allowed(&p, &client("c").with_source_ip(ip("2001:db8::9"))),
        Allowed
    );
    assert_eq!(
        allowed(&p, &client("c").with_source_ip(ip("198.51.100.1"))),
        ImplicitDeny
    );
    assert_eq!(allowed(&p, &client("c")), ImplicitDeny);

    let not = guarded("Allow", r#"{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#);
    assert_eq!(
        allowed(&not, &client("c").with_source_ip(ip("10.1.2.3"))),
        ImplicitDeny
    );
    assert_eq!(
        allowed(&not, &client("c").with_source_ip(ip("192.0.2.1"))),
        Allowed
    );
}

#[test]
fn numbers_and_booleans() {
    let p = guarded(
        "Allow",
        r#"{"NumericLessThanEquals":{"iot:Connection.Thing.Attributes[floor]":5},
            "Bool":{"iot:Connection.Thing.IsAttached":true}}"#,
    );
    let context = |floor: &str, attached: bool| {
        client("c")
            .with_thing_attribute("floor", floor)
            .with_attached(attached)
    };
    assert_eq!(allowed(&p, &context("5", true)), Allowed);
    assert_eq!(allowed(&p, &context("4.5", true)), Allowed);
    assert_eq!(allowed(&p, &context("6", true)), ImplicitDeny);
    assert_eq!(
        allowed(&p, &context("5", false)),
        ImplicitDeny,
        "operators AND together"
    );
    assert_eq!(allowed(&p, &context("five", true)), ImplicitDeny);

    let greater = guarded(
        "Allow",
        r#"{"NumericGreaterThan":{"iot:Connection.Thing.Attributes[v]":"2"}}"#,
    );
    assert_eq!(
        allowed(&greater, &client("c").with_thing_attribute("v", "10")),
        Allowed
    );
}

#[test]
fn several_keys_and_together() {
    let p = guarded(
        "Allow",
        r#"{"StringEquals":{"iot:ClientId":"c","iot:Connection.Thing.ThingName":"t"}}"#,
    );
    assert_eq!(allowed(&p, &client("c").with_thing_name("t")), Allowed);
    assert_eq!(allowed(&p, &client("c").with_thing_name("u")), ImplicitDeny);
    assert_eq!(allowed(&p, &client("c")), ImplicitDeny);
}

/// A missing key: positive operators are false, negated ones true (IAM),
/// `...IfExists` true, and `Null` tests for it.
#[test]
fn missing_keys() {
    let no_thing = client("c");
    let with_thing = client("c").with_thing_type_name("lamp");
    let key = "iot:Connection.Thing.ThingTypeName";

    let if_exists = guarded(
        "Allow",
        &format!(r#"{{"StringEqualsIfExists":{{"{key}":"lamp"}}}}"#),
    );
    assert_eq!(allowed(&if_exists, &no_thing), Allowed);
    assert_eq!(allowed(&if_exists, &with_thing), Allowed);
    assert_eq!(
        allowed(&if_exists, &client("c").with_thing_type_name("fan")),
        ImplicitDeny
    );

    let negated = guarded(
        "Allow",
        &format!(r#"{{"StringNotEquals":{{"{key}":"lamp"}}}}"#),
    );
    assert_eq!(allowed(&negated, &no_thing), Allowed);
    assert_eq!(allowed(&negated, &with_thing), ImplicitDeny);

    let positive = guarded("Allow", &format!(r#"{{"StringLike":{{"{key}":"*"}}}}"#));
    assert_eq!(allowed(&positive, &no_thing), ImplicitDeny);
    assert_eq!(allowed(&positive, &with_thing), Allowed);

    let null = guarded("Allow", &format!(r#"{{"Null":{{"{key}":"true"}}}}"#));
    assert_eq!(allowed(&null, &no_thing), Allowed);
    assert_eq!(allowed(&null, &with_thing), ImplicitDeny);

    let unknown_key = guarded("Allow", r#"{"StringEquals":{"iot:NoSuchKey":"x"}}"#);
    assert_eq!(allowed(&unknown_key, &with_thing), ImplicitDeny);
}

#[test]
fn arn_operators() {
    // No condition key of this engine holds an ARN, but the operators work
    // on any string key as globs.
    let p = guarded(
        "Allow",
        r#"{"ArnLike":{"iot:Connection.Thing.Attributes[role]":"arn:aws:iam::*:role/device-*"}}"#,
    );
    let context = client("c").with_thing_attribute("role", "arn:aws:iam::1:role/device-a");
    assert_eq!(allowed(&p, &context), Allowed);
    let other = client("c").with_thing_attribute("role", "arn:aws:iam::1:role/admin");
    assert_eq!(allowed(&p, &other), ImplicitDeny);
}
