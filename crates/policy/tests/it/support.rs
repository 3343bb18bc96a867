//! Shared helpers: a fixed region and account, and compact ways to write
//! policies and requests.

use herald_policy::{Action, Context, Decision, Policy, Request, decide, explain};

pub(crate) const REGION: &str = "us-east-1";
pub(crate) const ACCOUNT: &str = "123456789012";

/// `arn:aws:iot:us-east-1:123456789012:<rest>`.
pub(crate) fn arn(rest: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:{rest}")
}

/// A 2012-10-17 document around a statement array; `ARN:` in it stands for
/// the ARN prefix of the test region and account.
pub(crate) fn document(statements: &str) -> String {
    let statements = statements.replace("ARN:", &arn(""));
    format!(r#"{{"Version":"2012-10-17","Statement":{statements}}}"#)
}

/// Parses `document(statements)`, panicking with the error if it is rejected.
pub(crate) fn policy(statements: &str) -> Policy {
    let text = document(statements);
    Policy::parse("test", &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// One statement as JSON; `resource` may be a JSON array or a plain string,
/// with `ARN:` standing for the prefix.
pub(crate) fn statement(effect: &str, action: &str, resource: &str) -> String {
    let resource = if resource.starts_with('[') {
        resource.to_owned()
    } else {
        format!("{resource:?}")
    };
    format!(r#"{{"Effect":"{effect}","Action":"{action}","Resource":{resource}}}"#)
}

/// Decides `action` on `ARN:<resource>` and checks that `explain` agrees.
pub(crate) fn check(
    policies: &[&Policy],
    action: Action<'_>,
    resource: &str,
    context: &Context,
) -> Decision {
    let resource = arn(resource);
    let request = Request::new(action, &resource, context);
    let decision = decide(policies.iter().copied(), &request);
    let explained = explain(policies.iter().copied(), &request);
    assert_eq!(
        decision, explained.decision,
        "decide and explain disagree on {action} {resource}"
    );
    decision
}

/// A context with just a client id.
pub(crate) fn client(client_id: &str) -> Context {
    Context::new().with_client_id(client_id)
}
