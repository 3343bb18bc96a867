//! Evaluation of a request against a set of policies, IAM style: an explicit
//! Deny anywhere wins, else an Allow anywhere allows, else the request is
//! implicitly denied.

use std::fmt;

use crate::{
    action::Action,
    context::Context,
    policy::{Effect, Policy},
};

/// One authorisation question: may this connection do `action` on `resource`?
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub action: Action<'a>,
    /// The full resource ARN, e.g. `arn:aws:iot:us-east-1:123456789012:topic/a/b`
    /// (see [`crate::arn`]).
    pub resource: &'a str,
    pub context: &'a Context,
}

impl<'a> Request<'a> {
    pub fn new(action: Action<'a>, resource: &'a str, context: &'a Context) -> Request<'a> {
        Request {
            action,
            resource,
            context,
        }
    }
}

/// The outcome, as `TestAuthorization`'s `authDecision` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Some statement allows the request and none denies it.
    Allowed,
    /// Some statement denies the request.
    ExplicitDeny,
    /// No statement allows or denies the request.
    ImplicitDeny,
}

impl Decision {
    /// `ALLOWED`, `EXPLICIT_DENY` or `IMPLICIT_DENY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "ALLOWED",
            Decision::ExplicitDeny => "EXPLICIT_DENY",
            Decision::ImplicitDeny => "IMPLICIT_DENY",
        }
    }

    pub fn is_allowed(self) -> bool {
        self == Decision::Allowed
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decides a request against every policy in the set: the hot path.
///
/// It stops at the first matching Deny and, once something allows, looks
/// only at Deny statements. It doesn't allocate: action checks are bit tests
/// for the MQTT actions, variables resolve to `&str` borrowed from the
/// context, and globs are matched in place (see the `glob` module).
pub fn decide<'p>(
    policies: impl IntoIterator<Item = &'p Policy>,
    request: &Request<'_>,
) -> Decision {
    let mut decision = Decision::ImplicitDeny;
    for policy in policies {
        for statement in policy.statements() {
            if statement.effect == Effect::Allow && decision == Decision::Allowed {
                continue;
            }
            if statement.applies(request) {
                match statement.effect {
                    Effect::Deny => return Decision::ExplicitDeny,
                    Effect::Allow => decision = Decision::Allowed,
                }
            }
        }
    }
    decision
}

/// A decision with its reasons, for `TestAuthorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The same answer [`decide`] gives.
    pub decision: Decision,
    /// Positions (in the order given to [`explain`]) of the policies with a
    /// statement that allows the request.
    pub allowed_by: Vec<usize>,
    /// Positions of the policies with a statement that denies the request.
    pub denied_by: Vec<usize>,
    /// Variables and condition keys the context lacked in statements whose
    /// action applied (`missingContextValues`), by canonical name, once each.
    pub missing_context: Vec<String>,
}

impl Explanation {
    /// The positions of the given policies that neither allowed nor denied.
    pub fn implicitly_denying(&self, policy_count: usize) -> Vec<usize> {
        (0..policy_count)
            .filter(|index| !self.allowed_by.contains(index) && !self.denied_by.contains(index))
            .collect()
    }
}

/// Evaluates every statement of every policy and reports which policies
/// allowed and denied. Slower than [`decide`] (it allocates and doesn't stop
/// early); meant for `TestAuthorization` and diagnostics.
pub fn explain<'p>(
    policies: impl IntoIterator<Item = &'p Policy>,
    request: &Request<'_>,
) -> Explanation {
    let mut explanation = Explanation {
        decision: Decision::ImplicitDeny,
        allowed_by: Vec::new(),
        denied_by: Vec::new(),
        missing_context: Vec::new(),
    };
    let context = request.context;
    let note_missing = |name: String, missing: &mut Vec<String>| {
        if !missing.contains(&name) {
            missing.push(name);
        }
    };
    for (index, policy) in policies.into_iter().enumerate() {
        let (mut allows, mut denies) = (false, false);
        for statement in policy.statements() {
            if !statement.action_matches(request) {
                continue;
            }
            let mut resolved = true;
            for key in statement.unresolved_all(context) {
                note_missing(key.to_string(), &mut explanation.missing_context);
                resolved = false;
            }
            if !resolved || !statement.resource_matches(request.resource, context) {
                continue;
            }
            for condition in statement.conditions() {
                if context.resolve(condition.key()).is_none() {
                    note_missing(
                        condition.key().to_string(),
                        &mut explanation.missing_context,
                    );
                }
            }
            if statement.conditions().iter().all(|c| c.holds(context)) {
                match statement.effect {
                    Effect::Allow => allows = true,
                    Effect::Deny => denies = true,
                }
            }
        }
        if allows {
            explanation.allowed_by.push(index);
        }
        if denies {
            explanation.denied_by.push(index);
        }
    }
    explanation.decision = if !explanation.denied_by.is_empty() {
        Decision::ExplicitDeny
    } else if !explanation.allowed_by.is_empty() {
        Decision::Allowed
    } else {
        Decision::ImplicitDeny
    };
    explanation
}
