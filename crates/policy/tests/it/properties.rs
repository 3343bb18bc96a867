//! Property tests against a deliberately naive reference model of IAM
//! evaluation: recursive globs over characters, no compilation.

use herald_policy::{Action, Context, Decision, Policy, Request, decide, explain};
use proptest::prelude::*;
use serde_json::json;

const PREFIX: &str = "arn:aws:iot:r:a:";

const ACTION_PATTERNS: &[&str] = &[
    "iot:Connect",
    "iot:Publish",
    "iot:Subscribe",
    "iot:Receive",
    "iot:RetainPublish",
    "iot:*",
    "*",
    "iot:P*",
    "iot:?eceive",
    "IOT:PUBLISH",
    "iot:GetThingShadow",
];

const ACTIONS: &[Action<'static>] = &[
    Action::Connect,
    Action::Publish,
    Action::Subscribe,
    Action::Receive,
    Action::RetainPublish,
    Action::Other("iot:GetThingShadow"),
    Action::Other("iot:DeleteThingShadow"),
];

/// The reference glob: `*` any run of characters, `?` one, the rest literal.
fn reference_glob(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|skip| reference_glob(rest, &text[skip..])),
        Some(('?', rest)) => !text.is_empty() && reference_glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && reference_glob(rest, &text[1..]),
    }
}

fn glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    reference_glob(&pattern, &text)
}

#[derive(Debug, Clone)]
struct Stmt {
    deny: bool,
    actions: Vec<&'static str>,
    not_action: bool,
    resources: Vec<String>,
    not_resource: bool,
}

impl Stmt {
    fn applies(&self, action: Action<'_>, resource: &str) -> bool {
        let name = action.name().to_ascii_lowercase();
        let action_listed = self
            .actions
            .iter()
            .any(|pattern| glob(&pattern.to_ascii_lowercase(), &name));
        let resource_listed = self.resources.iter().any(|pattern| glob(pattern, resource));
        action_listed != self.not_action && resource_listed != self.not_resource
    }

    fn to_json(&self) -> serde_json::Value {
        let mut statement = serde_json::Map::new();
        let effect = if self.deny { "Deny" } else { "Allow" };
        statement.insert("Effect".into(), json!(effect));
        let action_key = if self.not_action {
            "NotAction"
        } else {
            "Action"
        };
        statement.insert(action_key.into(), json!(self.actions));
        let resource_key = if self.not_resource {
            "NotResource"
        } else {
            "Resource"
        };
        statement.insert(resource_key.into(), json!(self.resources));
        serde_json::Value::Object(statement)
    }
}

fn reference_decide(policies: &[Vec<Stmt>], action: Action<'_>, resource: &str) -> Decision {
    let applying = || {
        policies
            .iter()
            .flatten()
            .filter(|s| s.applies(action, resource))
    };
    if applying().any(|s| s.deny) {
        Decision::ExplicitDeny
    } else if applying().any(|s| !s.deny) {
        Decision::Allowed
    } else {
        Decision::ImplicitDeny
    }
}

fn compile(policies: &[Vec<Stmt>]) -> Vec<Policy> {
    policies
        .iter()
        .enumerate()
        .map(|(index, statements)| {
            let statements: Vec<_> = statements.iter().map(Stmt::to_json).collect();
            let document = json!({"Version": "2012-10-17", "Statement": statements});
            Policy::parse(&format!("p{index}"), &document.to_string()).unwrap()
        })
        .collect()
}

fn resource_pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("*".to_owned()),
        6 => "[ab/*?+#$]{0,6}".prop_map(|tail| format!("{PREFIX}{tail}")),
    ]
}

fn stmt() -> impl Strategy<Value = Stmt> {
    (
        any::<bool>(),
        prop::collection::vec(prop::sample::select(ACTION_PATTERNS), 1..3),
        prop::bool::weighted(0.2),
        prop::collection::vec(resource_pattern(), 1..3),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(deny, actions, not_action, resources, not_resource)| Stmt {
                deny,
                actions,
                not_action,
                resources,
                not_resource,
            },
        )
}

fn policy_set() -> impl Strategy<Value = Vec<Vec<Stmt>>> {
    prop::collection::vec(prop::collection::vec(stmt(), 1..5), 0..4)
}

fn request() -> impl Strategy<Value = (Action<'static>, String)> {
    (
        prop::sample::select(ACTIONS),
        "[ab/+#$]{0,6}".prop_map(|tail| format!("{PREFIX}{tail}")),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The engine agrees with the reference model; in particular a set with
    /// no applicable Allow never allows.
    #[test]
    fn agrees_with_the_reference_model(policies in policy_set(), (action, resource) in request()) {
        let compiled = compile(&policies);
        let context = Context::new().with_client_id("c");
        let request = Request::new(action, &resource, &context);
        let decision = decide(&compiled, &request);
        let expected = reference_decide(&policies, action, &resource);
        prop_assert_eq!(decision, expected);
        prop_assert_eq!(explain(&compiled, &request).decision, decision);
        let any_allow = policies.iter().flatten().any(|s| !s.deny && s.applies(action, &resource));
        if !any_allow {
            prop_assert_ne!(decision, Decision::Allowed);
        }
    }

    /// A matching Deny wins, whatever else the policies say and wherever it is.
    #[test]
    fn a_matching_deny_always_wins(
        mut policies in policy_set(),
        (action, resource) in request(),
        exact in any::<bool>(),
        where_to in any::<prop::sample::Index>(),
    ) {
        let deny = Stmt {
            deny: true,
            actions: vec![action.name()],
            not_action: false,
            resources: vec![if exact { resource.clone() } else { format!("{PREFIX}*") }],
            not_resource: false,
        };
        if policies.is_empty() {
            policies.push(Vec::new());
        }
        let index = where_to.index(policies.len());
        let position = where_to.index(policies[index].len() + 1);
        policies[index].insert(position, deny);
        let compiled = compile(&policies);
        let context = Context::new();
        let request = Request::new(action, &resource, &context);
        prop_assert_eq!(decide(&compiled, &request), Decision::ExplicitDeny);
        let explained = explain(&compiled, &request);
        prop_assert_eq!(explained.decision, Decision::ExplicitDeny);
        prop_assert!(explained.denied_by.contains(&index));
    }

    /// Resource globs agree with the reference matcher, including `?` on
    /// multi-byte characters and MQTT wildcards as literals.
    #[test]
    fn resource_globs_agree_with_the_reference(
        pattern in "[ab/*?é$+#]{0,10}",
        text in "[ab/é$+#]{0,12}",
    ) {
        let document = json!({
            "Version": "2012-10-17",
            "Statement": {"Effect": "Allow", "Action": "iot:Publish", "Resource": format!("{PREFIX}{pattern}")},
        });
        let policy = Policy::parse("p", &document.to_string()).unwrap();
        let resource = format!("{PREFIX}{text}");
        let context = Context::new();
        let decision = decide([&policy], &Request::new(Action::Publish, &resource, &context));
        prop_assert_eq!(decision == Decision::Allowed, glob(&pattern, &text));
    }

    /// A known action named as `Other` is decided exactly like its variant.
    #[test]
    fn named_actions_match_their_variants(policies in policy_set(), (action, resource) in request()) {
        let compiled = compile(&policies);
        let context = Context::new();
        let shouted = action.name().to_ascii_uppercase();
        let by_name = Action::Other(&shouted);
        prop_assert_eq!(
            decide(&compiled, &Request::new(action, &resource, &context)),
            decide(&compiled, &Request::new(by_name, &resource, &context))
        );
    }
}
