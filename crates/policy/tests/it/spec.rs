//! The cases of the AWS IoT policy language (AWS IoT Core Developer Guide: "AWS IoT Core policies"), table-driven: one policy
//! document, one request, the expected decision.

use herald_policy::{Action, Context, Decision};

use crate::support::{check, client, policy, statement};

use Decision::{Allowed, ExplicitDeny, ImplicitDeny};

struct Case {
    name: &'static str,
    statements: String,
    action: Action<'static>,
    /// The resource after the ARN prefix, e.g. `topic/a/b`.
    resource: &'static str,
    context: Context,
    expect: Decision,
}

fn case(
    name: &'static str,
    statements: &[String],
    action: Action<'static>,
    resource: &'static str,
    context: Context,
    expect: Decision,
) -> Case {
    Case {
        name,
        statements: format!("[{}]", statements.join(",")),
        action,
        resource,
        context,
        expect,
    }
}

fn run(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in &cases {
        let policy = policy(&case.statements);
        let got = check(&[&policy], case.action, case.resource, &case.context);
        if got != case.expect {
            failures.push(format!(
                "{}: {} {} gave {got}, expected {}",
                case.name, case.action, case.resource, case.expect
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn allow(action: &str, resource: &str) -> String {
    statement("Allow", action, resource)
}

fn deny(action: &str, resource: &str) -> String {
    statement("Deny", action, resource)
}

/// The AWS IoT Core Developer Guide's example: an event monitor that may connect, subscribe to the
/// presence events and receive them.
#[test]
fn the_event_monitor_example() {
    let monitor = [
        allow("iot:Connect", "ARN:client/monitor-1"),
        allow("iot:Subscribe", "ARN:topicfilter/$aws/events/presence/*"),
        allow("iot:Receive", "ARN:topic/$aws/events/presence/*"),
    ];
    let c = || client("monitor-1");
    run(vec![
        case(
            "connect",
            &monitor,
            Action::Connect,
            "client/monitor-1",
            c(),
            Allowed,
        ),
        case(
            "other client",
            &monitor,
            Action::Connect,
            "client/monitor-2",
            c(),
            ImplicitDeny,
        ),
        case(
            "subscribe with +",
            &monitor,
            Action::Subscribe,
            "topicfilter/$aws/events/presence/connected/+",
            c(),
            Allowed,
        ),
        case(
            "subscribe with #",
            &monitor,
            Action::Subscribe,
            "topicfilter/$aws/events/presence/#",
            c(),
            Allowed,
        ),
        case(
            "subscribe elsewhere",
            &monitor,
            Action::Subscribe,
            "topicfilter/$aws/events/#",
            c(),
            ImplicitDeny,
        ),
        case(
            "receive ($aws is literal)",
            &monitor,
            Action::Receive,
            "topic/$aws/events/presence/connected/c1",
            c(),
            Allowed,
        ),
        case(
            "receive needs Receive, not Subscribe",
            &monitor,
            Action::Receive,
            "topicfilter/$aws/events/presence/connected/c1",
            c(),
            ImplicitDeny,
        ),
        case(
            "publish is not granted",
            &monitor,
            Action::Publish,
            "topic/$aws/events/presence/connected/c1",
            c(),
            ImplicitDeny,
        ),
    ]);
}

/// AWS IoT Core Developer Guide, "AWS IoT Core action resources": a subscribe check is a string match of the literal filter.
#[test]
fn mqtt_wildcards_are_literal() {
    let a_star = [allow("iot:Subscribe", "ARN:topicfilter/a/*")];
    let with_restricted = [
        allow("iot:Subscribe", "ARN:topicfilter/a/*"),
        deny("iot:Subscribe", "ARN:topicfilter/a/restricted/*"),
        allow("iot:Receive", "ARN:topic/a/*"),
    ];
    let receive_deny = [
        allow("iot:Receive", "ARN:topic/a/*"),
        deny("iot:Receive", "ARN:topic/a/restricted/*"),
    ];
    let plus = [allow("iot:Subscribe", "ARN:topicfilter/some/+/topic")];
    let c = || client("c1");
    run(vec![
        case(
            "a/* allows a/#",
            &a_star,
            Action::Subscribe,
            "topicfilter/a/#",
            c(),
            Allowed,
        ),
        case(
            "a/* allows a/+/b",
            &a_star,
            Action::Subscribe,
            "topicfilter/a/+/b",
            c(),
            Allowed,
        ),
        case(
            "a/* not a",
            &a_star,
            Action::Subscribe,
            "topicfilter/a",
            c(),
            ImplicitDeny,
        ),
        case(
            "# is not a wildcard",
            &a_star,
            Action::Subscribe,
            "topicfilter/#",
            c(),
            ImplicitDeny,
        ),
        case(
            "a Deny on a/restricted/* doesn't stop a/#",
            &with_restricted,
            Action::Subscribe,
            "topicfilter/a/#",
            c(),
            Allowed,
        ),
        case(
            "but it stops a/restricted/#",
            &with_restricted,
            Action::Subscribe,
            "topicfilter/a/restricted/#",
            c(),
            ExplicitDeny,
        ),
        case(
            "and a/# then receives a/restricted/x",
            &with_restricted,
            Action::Receive,
            "topic/a/restricted/x",
            c(),
            Allowed,
        ),
        case(
            "a Receive Deny blocks delivery",
            &receive_deny,
            Action::Receive,
            "topic/a/restricted/x",
            c(),
            ExplicitDeny,
        ),
        case(
            "+ in a policy matches only a literal +",
            &plus,
            Action::Subscribe,
            "topicfilter/some/+/topic",
            c(),
            Allowed,
        ),
        case(
            "+ in a policy is not a level wildcard",
            &plus,
            Action::Subscribe,
            "topicfilter/some/x/topic",
            c(),
            ImplicitDeny,
        ),
    ]);
}

#[test]
fn globs() {
    let any = [allow("iot:*", "*")];
    let fixed_width = [allow("iot:Publish", "ARN:topic/dev/?????/data")];
    let any_region = [allow("iot:Publish", "arn:aws:iot:*:*:topic/x")];
    let case_sensitive = [allow("iot:Publish", "ARN:topic/Sensors/*")];
    let c = || client("c1");
    run(vec![
        case(
            "* is everything",
            &any,
            Action::Publish,
            "topic/x",
            c(),
            Allowed,
        ),
        case(
            "* on another action",
            &any,
            Action::Other("iot:GetThingShadow"),
            "thing/t",
            c(),
            Allowed,
        ),
        case(
            "? is one char",
            &fixed_width,
            Action::Publish,
            "topic/dev/abcde/data",
            c(),
            Allowed,
        ),
        case(
            "? is not two",
            &fixed_width,
            Action::Publish,
            "topic/dev/abcdef/data",
            c(),
            ImplicitDeny,
        ),
        case(
            "? crosses /",
            &fixed_width,
            Action::Publish,
            "topic/dev/ab/de/data",
            c(),
            Allowed,
        ),
        case(
            "region and account globs",
            &any_region,
            Action::Publish,
            "topic/x",
            c(),
            Allowed,
        ),
        case(
            "topics are case-sensitive",
            &case_sensitive,
            Action::Publish,
            "topic/sensors/1",
            c(),
            ImplicitDeny,
        ),
        case(
            "same case",
            &case_sensitive,
            Action::Publish,
            "topic/Sensors/1",
            c(),
            Allowed,
        ),
    ]);
}

#[test]
fn actions() {
    let shouting = [allow("IOT:PUBLISH", "*")];
    let prefix = [allow("iot:*Publish", "*")];
    let list = [
        r#"{"Effect":"Allow","Action":["iot:Connect","iot:Receive"],"Resource":"*"}"#.to_owned(),
    ];
    let not_action = [r#"{"Effect":"Allow","NotAction":"iot:Publish","Resource":"*"}"#.to_owned()];
    let deny_not_connect = [
        allow("iot:*", "*"),
        r#"{"Effect":"Deny","NotAction":["iot:Connect"],"Resource":"ARN:topic/locked/*"}"#
            .to_owned(),
    ];
    let c = || client("c1");
    run(vec![
        case(
            "names ignore case",
            &shouting,
            Action::Publish,
            "topic/x",
            c(),
            Allowed,
        ),
        case(
            "*Publish has Publish",
            &prefix,
            Action::Publish,
            "topic/x",
            c(),
            Allowed,
        ),
        case(
            "*Publish has RetainPublish",
            &prefix,
            Action::RetainPublish,
            "topic/x",
            c(),
            Allowed,
        ),
        case(
            "*Publish lacks Receive",
            &prefix,
            Action::Receive,
            "topic/x",
            c(),
            ImplicitDeny,
        ),
        case("a list", &list, Action::Receive, "topic/x", c(), Allowed),
        case(
            "not in the list",
            &list,
            Action::Subscribe,
            "topicfilter/x",
            c(),
            ImplicitDeny,
        ),
        case(
            "NotAction excludes",
            &not_action,
            Action::Publish,
            "topic/x",
            c(),
            ImplicitDeny,
        ),
        case(
            "NotAction includes the rest",
            &not_action,
            Action::Subscribe,
            "topicfilter/x",
            c(),
            Allowed,
        ),
        case(
            "NotAction includes unknown actions",
            &not_action,
            Action::Other("iot:UpdateThingShadow"),
            "thing/t",
            c(),
            Allowed,
        ),
        case(
            "a Deny by NotAction",
            &deny_not_connect,
            Action::Publish,
            "topic/locked/a",
            c(),
            ExplicitDeny,
        ),
        case(
            "spares the named action",
            &deny_not_connect,
            Action::Connect,
            "topic/locked/a",
            c(),
            Allowed,
        ),
    ]);
}

#[test]
fn not_resource() {
    let allow_except = [
        r#"{"Effect":"Allow","Action":"iot:Receive","NotResource":"ARN:topic/secret/*"}"#
            .to_owned(),
    ];
    let deny_except = [
        allow("iot:Receive", "*"),
        r#"{"Effect":"Deny","Action":"iot:Receive","NotResource":["ARN:topic/public/*","ARN:topic/shared/*"]}"#.to_owned(),
    ];
    let c = || client("c1");
    run(vec![
        case(
            "outside NotResource",
            &allow_except,
            Action::Receive,
            "topic/a",
            c(),
            Allowed,
        ),
        case(
            "inside NotResource",
            &allow_except,
            Action::Receive,
            "topic/secret/x",
            c(),
            ImplicitDeny,
        ),
        case(
            "denied outside the list",
            &deny_except,
            Action::Receive,
            "topic/private/x",
            c(),
            ExplicitDeny,
        ),
        case(
            "spared inside it",
            &deny_except,
            Action::Receive,
            "topic/public/x",
            c(),
            Allowed,
        ),
        case(
            "spared inside it too",
            &deny_except,
            Action::Receive,
            "topic/shared/x",
            c(),
            Allowed,
        ),
    ]);
}

/// AWS IoT Core Developer Guide, "AWS IoT Core policy elements": an explicit Deny in any policy overrides Allows in all of them.
#[test]
fn deny_in_one_policy_overrides_allows_in_others() {
    let allows = policy(&format!("[{}]", allow("iot:*", "*")));
    let allows_too = policy(&format!("[{}]", allow("iot:Publish", "ARN:topic/x")));
    let denies = policy(&format!("[{}]", deny("iot:Publish", "ARN:topic/x")));
    let c = client("c1");
    assert_eq!(
        check(&[&allows, &allows_too], Action::Publish, "topic/x", &c),
        Allowed
    );
    assert_eq!(
        check(
            &[&allows, &denies, &allows_too],
            Action::Publish,
            "topic/x",
            &c
        ),
        ExplicitDeny
    );
    assert_eq!(
        check(&[&denies], Action::Publish, "topic/x", &c),
        ExplicitDeny
    );
    assert_eq!(
        check(&[&denies], Action::Publish, "topic/y", &c),
        ImplicitDeny
    );
    assert_eq!(check(&[], Action::Publish, "topic/x", &c), ImplicitDeny);
}

/// AWS IoT Core Developer Guide, "Reserved topics": a client may subscribe to event topics only as its policy allows,
/// and the policy language itself has no notion of reserved topics.
#[test]
fn event_topics_are_ordinary_resources() {
    let policy = [
        allow("iot:Subscribe", "ARN:topicfilter/$aws/events/thing/*"),
        allow("iot:Receive", "ARN:topic/$aws/events/thing/*"),
        deny("iot:Receive", "ARN:topic/$aws/events/thing/secret-*"),
    ];
    let c = || client("c1");
    run(vec![
        case(
            "membership-style deep topic",
            &policy,
            Action::Receive,
            "topic/$aws/events/thing/t1/created",
            c(),
            Allowed,
        ),
        case(
            "denied thing",
            &policy,
            Action::Receive,
            "topic/$aws/events/thing/secret-1/updated",
            c(),
            ExplicitDeny,
        ),
        case(
            "other family",
            &policy,
            Action::Receive,
            "topic/$aws/events/thingGroup/g/created",
            c(),
            ImplicitDeny,
        ),
    ]);
}
