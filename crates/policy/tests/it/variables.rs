//! Policy variables (AWS IoT Core Developer Guide: "AWS IoT Core policy variables"): substitution, unresolvable variables, certificate
//! fields and the literal escapes.

use std::net::IpAddr;

use herald_policy::{Action, CertField, Context, Decision, Policy};

use crate::support::{check, client, document, policy, statement};

use Decision::{Allowed, ExplicitDeny, ImplicitDeny};

fn one(effect: &str, action: &str, resource: &str) -> Policy {
    policy(&format!("[{}]", statement(effect, action, resource)))
}

fn thing(name: &str) -> Context {
    Context::new().with_client_id(name).with_thing_name(name)
}

#[test]
fn client_id() {
    let p = one("Allow", "iot:Connect", "ARN:client/${iot:ClientId}");
    assert_eq!(
        check(&[&p], Action::Connect, "client/c1", &client("c1")),
        Allowed
    );
    assert_eq!(
        check(&[&p], Action::Connect, "client/c2", &client("c1")),
        ImplicitDeny
    );
    assert_eq!(
        check(&[&p], Action::Connect, "client/c1", &Context::new()),
        ImplicitDeny,
        "no client id, no match"
    );
}

/// AWS IoT Core Developer Guide, "AWS IoT Core policy variables": a client id of `+` authorises the literal filter `my/+/topic`.
#[test]
fn a_client_id_of_plus() {
    let p = one(
        "Allow",
        "iot:Subscribe",
        "ARN:topicfilter/my/${iot:ClientId}/topic",
    );
    assert_eq!(
        check(
            &[&p],
            Action::Subscribe,
            "topicfilter/my/+/topic",
            &client("+")
        ),
        Allowed
    );
    assert_eq!(
        check(
            &[&p],
            Action::Subscribe,
            "topicfilter/my/+/topic",
            &client("c1")
        ),
        ImplicitDeny
    );
    assert_eq!(
        check(
            &[&p],
            Action::Subscribe,
            "topicfilter/my/c1/topic",
            &client("+")
        ),
        ImplicitDeny
    );
}

/// A variable's value is literal: a client id of `*` is not a wildcard.
#[test]
fn variable_values_are_not_globs() {
    let p = one("Allow", "iot:Publish", "ARN:topic/${iot:ClientId}/data");
    assert_eq!(
        check(&[&p], Action::Publish, "topic/*/data", &client("*")),
        Allowed
    );
    assert_eq!(
        check(&[&p], Action::Publish, "topic/x/data", &client("*")),
        ImplicitDeny
    );
    assert_eq!(
        check(&[&p], Action::Publish, "topic/x/data", &client("?")),
        ImplicitDeny
    );
}

#[test]
fn thing_variables() {
    let p = one(
        "Allow",
        "iot:Publish",
        "ARN:topic/dt/${iot:Connection.Thing.ThingName}/*",
    );
    assert_eq!(
        check(&[&p], Action::Publish, "topic/dt/t1/temp", &thing("t1")),
        Allowed
    );
    assert_eq!(
        check(&[&p], Action::Publish, "topic/dt/t2/temp", &thing("t1")),
        ImplicitDeny
    );

    let legacy = one("Allow", "iot:Publish", "ARN:topic/${iot:Thing.ThingName}");
    assert_eq!(
        check(&[&legacy], Action::Publish, "topic/t1", &thing("t1")),
        Allowed
    );

    let typed = one(
        "Allow",
        "iot:Publish",
        "ARN:topic/${iot:Connection.Thing.ThingTypeName}/${iot:Connection.Thing.Attributes[floor]}",
    );
    let context = thing("t1")
        .with_thing_type_name("lamp")
        .with_thing_attribute("floor", "3");
    assert_eq!(
        check(&[&typed], Action::Publish, "topic/lamp/3", &context),
        Allowed
    );
    assert_eq!(
        check(&[&typed], Action::Publish, "topic/lamp/4", &context),
        ImplicitDeny
    );
    let no_attribute = thing("t1").with_thing_type_name("lamp");
    assert_eq!(
        check(&[&typed], Action::Publish, "topic/lamp/", &no_attribute),
        ImplicitDeny
    );

    let attached = one(
        "Allow",
        "iot:Publish",
        "ARN:topic/${iot:Connection.Thing.IsAttached}",
    );
    let context = thing("t1").with_attached(true);
    assert_eq!(
        check(&[&attached], Action::Publish, "topic/true", &context),
        Allowed
    );
}

/// AWS IoT Core Developer Guide, "AWS IoT Core policy elements": a statement with a variable that can't be resolved doesn't match,
/// for Allow (so the request is implicitly denied) and Deny (so it doesn't
/// deny) alike.
#[test]
fn unresolvable_variables_never_match() {
    let no_thing = client("c1");
    let allow = one(
        "Allow",
        "iot:Publish",
        "ARN:topic/dt/${iot:Connection.Thing.ThingName}/*",
    );
    assert_eq!(
        check(&[&allow], Action::Publish, "topic/dt//x", &no_thing),
        ImplicitDeny
    );

    let everything = one("Allow", "iot:*", "*");
    let deny = one(
        "Deny",
        "iot:Publish",
        "ARN:topic/${iot:Connection.Thing.ThingName}/*",
    );
    assert_eq!(
        check(
            &[&everything, &deny],
            Action::Publish,
            "topic/x/y",
            &no_thing
        ),
        Allowed
    );
    assert_eq!(
        check(
            &[&everything, &deny],
            Action::Publish,
            "topic/x/y",
            &thing("x")
        ),
        ExplicitDeny
    );

    // The whole statement is out, not only the entry with the variable.
    let listed = one(
        "Allow",
        "iot:Publish",
        r#"["ARN:topic/static", "ARN:topic/${iot:Connection.Thing.ThingName}"]"#,
    );
    assert_eq!(
        check(&[&listed], Action::Publish, "topic/static", &no_thing),
        ImplicitDeny
    );
    assert_eq!(
        check(&[&listed], Action::Publish, "topic/static", &thing("t")),
        Allowed
    );

    // NotResource with an unresolvable variable: the statement is out too.
    let not = policy(
        r#"[{"Effect":"Allow","Action":"iot:Publish","NotResource":"ARN:topic/${iot:Connection.Thing.ThingName}"}]"#,
    );
    assert_eq!(
        check(&[&not], Action::Publish, "topic/x", &no_thing),
        ImplicitDeny
    );
    assert_eq!(
        check(&[&not], Action::Publish, "topic/x", &thing("t")),
        Allowed
    );

    // Unknown variables never resolve.
    let unknown = one("Allow", "iot:Publish", "ARN:topic/${iot:NoSuchThing}");
    assert_eq!(
        check(
            &[&unknown],
            Action::Publish,
            "topic/${iot:NoSuchThing}",
            &no_thing
        ),
        ImplicitDeny
    );
}

#[test]
fn certificate_variables() {
    let context = client("c1")
        .with_subject_field(CertField::CommonName, ["device-1"])
        .with_subject_field(CertField::OrganizationalUnit, ["eng", "ops"])
        .with_issuer_field(CertField::Organization, ["Acme CA"]);
    let cases = [
        ("${iot:Certificate.Subject.CommonName}", "device-1", Allowed),
        (
            "${iot:Certificate.Subject.CommonName.1}",
            "device-1",
            Allowed,
        ),
        (
            "${iot:Certificate.Subject.OrganizationalUnit}",
            "eng",
            Allowed,
        ),
        (
            "${iot:Certificate.Subject.OrganizationalUnit.2}",
            "ops",
            Allowed,
        ),
        (
            "${iot:Certificate.Subject.OrganizationalUnit.List}",
            "eng,ops",
            Allowed,
        ),
        ("${iot:Certificate.Issuer.Organization}", "Acme CA", Allowed),
        // An index that doesn't exist: no substitution, authorisation fails.
        (
            "${iot:Certificate.Subject.OrganizationalUnit.3}",
            "",
            ImplicitDeny,
        ),
        ("${iot:Certificate.Subject.CommonName.0}", "", ImplicitDeny),
        ("${iot:Certificate.Subject.Country}", "", ImplicitDeny),
        ("${iot:Certificate.Issuer.CommonName}", "", ImplicitDeny),
    ];
    for (variable, value, expect) in cases {
        let p = one("Allow", "iot:Publish", &format!("ARN:topic/{variable}"));
        let topic = format!("topic/{value}");
        assert_eq!(
            check(&[&p], Action::Publish, &topic, &context),
            expect,
            "{variable}"
        );
    }
}

#[test]
fn source_ip_variable() {
    let p = one("Allow", "iot:Publish", "ARN:topic/from/${aws:SourceIp}");
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let context = client("c1").with_source_ip(ip);
    assert_eq!(
        check(&[&p], Action::Publish, "topic/from/192.0.2.7", &context),
        Allowed
    );
    assert_eq!(
        check(
            &[&p],
            Action::Publish,
            "topic/from/192.0.2.7",
            &client("c1")
        ),
        ImplicitDeny
    );
}

/// `${*}`, `${?}` and `${$}` are the literal characters; a `$` not followed
/// by `{` is literal.
#[test]
fn literal_escapes() {
    let star = one("Allow", "iot:Subscribe", "ARN:topicfilter/a/${*}");
    let c = client("c1");
    assert_eq!(
        check(&[&star], Action::Subscribe, "topicfilter/a/*", &c),
        Allowed
    );
    assert_eq!(
        check(&[&star], Action::Subscribe, "topicfilter/a/b", &c),
        ImplicitDeny
    );

    let question = one("Allow", "iot:Subscribe", "ARN:topicfilter/a${?}");
    assert_eq!(
        check(&[&question], Action::Subscribe, "topicfilter/a?", &c),
        Allowed
    );
    assert_eq!(
        check(&[&question], Action::Subscribe, "topicfilter/ab", &c),
        ImplicitDeny
    );

    let dollar = one("Allow", "iot:Publish", "ARN:topic/${$}{iot:ClientId}");
    assert_eq!(
        check(&[&dollar], Action::Publish, "topic/${iot:ClientId}", &c),
        Allowed
    );
    assert_eq!(
        check(&[&dollar], Action::Publish, "topic/c1", &c),
        ImplicitDeny
    );

    let plain = one(
        "Allow",
        "iot:Publish",
        "ARN:topic/$aws/things/$x/${iot:ClientId}",
    );
    assert_eq!(
        check(&[&plain], Action::Publish, "topic/$aws/things/$x/c1", &c),
        Allowed
    );

    let unclosed = one("Allow", "iot:Publish", "ARN:topic/${iot:ClientId");
    assert_eq!(
        check(&[&unclosed], Action::Publish, "topic/${iot:ClientId", &c),
        Allowed
    );
}

/// Version 2008-10-17 has no policy variables: `${...}` is literal text.
#[test]
fn no_variables_in_the_2008_language() {
    let text = document(&format!(
        "[{}]",
        statement("Allow", "iot:Publish", "ARN:topic/${iot:ClientId}")
    ))
    .replace("2012-10-17", "2008-10-17");
    let p = Policy::parse("old", &text).unwrap();
    let c = client("c1");
    assert_eq!(
        check(&[&p], Action::Publish, "topic/${iot:ClientId}", &c),
        Allowed
    );
    assert_eq!(check(&[&p], Action::Publish, "topic/c1", &c), ImplicitDeny);
}
