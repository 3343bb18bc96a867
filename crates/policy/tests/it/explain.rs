//! `explain`: which policies decided, and what the context lacked.

use herald_policy::{Action, Decision, Request, explain};

use crate::support::{arn, client, policy, statement};

#[test]
fn lists_the_deciding_policies() {
    let allows = policy(&format!(
        "[{}]",
        statement("Allow", "iot:Publish", "ARN:topic/*")
    ));
    let unrelated = policy(&format!("[{}]", statement("Allow", "iot:Connect", "*")));
    let denies = policy(&format!(
        "[{},{}]",
        statement("Allow", "iot:Publish", "*"),
        statement("Deny", "iot:Publish", "ARN:topic/secret")
    ));
    let context = client("c1");

    let resource = arn("topic/open");
    let request = Request::new(Action::Publish, &resource, &context);
    let open = explain([&allows, &unrelated, &denies], &request);
    assert_eq!(open.decision, Decision::Allowed);
    assert_eq!(open.allowed_by, [0, 2]);
    assert!(open.denied_by.is_empty());
    assert_eq!(open.implicitly_denying(3), [1]);
    assert!(open.missing_context.is_empty());

    let resource = arn("topic/secret");
    let request = Request::new(Action::Publish, &resource, &context);
    let secret = explain([&allows, &unrelated, &denies], &request);
    assert_eq!(secret.decision, Decision::ExplicitDeny);
    assert_eq!(secret.allowed_by, [0, 2], "every allowing policy is listed");
    assert_eq!(secret.denied_by, [2]);
    assert_eq!(secret.implicitly_denying(3), [1]);
}

#[test]
fn reports_missing_context_values() {
    let p = policy(
        r#"[{"Effect":"Allow","Action":"iot:Publish","Resource":"ARN:topic/${iot:Connection.Thing.ThingName}/${iot:ClientId}"},
            {"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}},
            {"Effect":"Allow","Action":"iot:Connect","Resource":"ARN:client/${iot:Certificate.Subject.CommonName}"}]"#,
    );
    let context = client("c1");
    let resource = arn("topic/t/c1");
    let request = Request::new(Action::Publish, &resource, &context);
    let explained = explain([&p], &request);
    assert_eq!(explained.decision, Decision::ImplicitDeny);
    assert!(explained.allowed_by.is_empty());
    // Only statements whose action applies are looked at.
    assert_eq!(
        explained.missing_context,
        ["iot:Connection.Thing.ThingName", "aws:SourceIp"]
    );
}
