//! `TestAuthorization`: a principal's policies, with the policy variables of
//! its certificate and of the thing its client id names, evaluated against
//! each requested action and resource.

use std::collections::BTreeSet;

use herald_proto::error::AwsError;
use herald_runtime::x509;

use super::ConfigService;
use crate::{
    certs,
    domain::{Target, check_document, invalid},
};

/// One `TestAuthorization` answer.
pub(crate) struct AuthResult {
    pub(crate) action_type: String,
    pub(crate) resources: Vec<String>,
    pub(crate) decision: herald_policy::Decision,
    pub(crate) allowed: Vec<String>,
    pub(crate) explicit_deny: Vec<String>,
    pub(crate) implicit_deny: Vec<String>,
    pub(crate) missing_context: Vec<String>,
}

impl ConfigService {
    /// TestAuthorization: evaluates each auth info against the principal's
    /// effective policies (with the thing named by the client id when the
    /// principal is attached to it), plus `add`, minus `skip`.
    pub(crate) async fn test_authorization(
        &self,
        principal: Option<String>,
        client_id: Option<String>,
        auth_infos: Vec<(String, Vec<String>)>,
        add: Vec<String>,
        skip: Vec<String>,
    ) -> Result<Vec<AuthResult>, AwsError> {
        if auth_infos.is_empty() || auth_infos.len() > 10 {
            return Err(invalid("authInfos must have 1 to 10 entries"));
        }
        let mut context = herald_policy::Context::new();
        let mut thing = None;
        if let Some(client_id) = client_id.as_deref().filter(|c| !c.is_empty()) {
            context = context.with_client_id(client_id);
            if is_thing_name(client_id) {
                thing = self.registry.thing(client_id).await?;
            }
        }
        let mut attached = false;
        if let Some(principal) = principal.as_deref().filter(|p| !p.is_empty()) {
            let Target::Certificate(id) = self.arns().target(principal)? else {
                return Err(invalid("The principal must be a certificate ARN"));
            };
            let cert = self.describe_certificate(&id)?;
            let parsed = certs::parse_certificate(&cert.pem)?;
            for (field, values) in x509::by_field(&parsed.subject) {
                context = context.with_subject_field(field, values);
            }
            for (field, values) in x509::by_field(&parsed.issuer) {
                context = context.with_issuer_field(field, values);
            }
            if let Some(t) = &thing {
                let things = self
                    .registry
                    .principal_things(&self.arns().certificate(&id))
                    .await?;
                attached = things.contains(&t.name);
            }
        }
        let thing_for_groups = thing.as_ref().filter(|_| attached).map(|t| t.name.clone());
        if let Some(t) = &thing {
            context = context.with_thing_name(&t.name).with_attached(attached);
            if let Some(type_name) = &t.type_name {
                context = context.with_thing_type_name(type_name);
            }
            for (name, value) in &t.attributes {
                context = context.with_thing_attribute(name, value);
            }
        }
        let mut states = self
            .effective_policies(principal.as_deref(), thing_for_groups.as_deref())
            .await?;
        for name in add {
            if !states.iter().any(|s| s.policy.name == name) {
                states.push(self.get_policy(&name)?);
            }
        }
        states.retain(|s| !skip.contains(&s.policy.name));
        let policies = states
            .iter()
            .map(|s| check_document(&s.policy.name, &s.document))
            .collect::<Result<Vec<_>, _>>()?;
        let names: Vec<&str> = states.iter().map(|s| s.policy.name.as_str()).collect();
        auth_infos
            .into_iter()
            .map(|(action_type, resources)| {
                evaluate(&policies, &names, &context, action_type, resources)
            })
            .collect()
    }
}

/// Whether a client id can name a thing: `[a-zA-Z0-9:_-]+`, 1 to 128.
fn is_thing_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":_-".contains(&b))
}

fn evaluate(
    policies: &[herald_policy::Policy],
    names: &[&str],
    context: &herald_policy::Context,
    action_type: String,
    resources: Vec<String>,
) -> Result<AuthResult, AwsError> {
    use herald_policy::{Action, Decision, Request, explain};
    let action = match action_type.as_str() {
        "PUBLISH" => Action::Publish,
        "SUBSCRIBE" => Action::Subscribe,
        "RECEIVE" => Action::Receive,
        "CONNECT" => Action::Connect,
        other => {
            return Err(invalid(format!(
                "{other:?} is not an action type: use PUBLISH, SUBSCRIBE, RECEIVE or CONNECT"
            )));
        }
    };
    if resources.is_empty() {
        return Err(invalid("Each authInfo needs at least one resource"));
    }
    let (mut allowed, mut denied, mut missing) = (BTreeSet::new(), BTreeSet::new(), Vec::new());
    let mut all_allowed = true;
    for resource in &resources {
        let explanation = explain(policies, &Request::new(action, resource, context));
        all_allowed &= explanation.decision == Decision::Allowed;
        allowed.extend(explanation.allowed_by);
        denied.extend(explanation.denied_by);
        for m in explanation.missing_context {
            if !missing.contains(&m) {
                missing.push(m);
            }
        }
    }
    let decision = if !denied.is_empty() {
        Decision::ExplicitDeny
    } else if all_allowed {
        Decision::Allowed
    } else {
        Decision::ImplicitDeny
    };
    let pick = |set: &BTreeSet<usize>| set.iter().map(|&i| names[i].to_owned()).collect::<Vec<_>>();
    let implicit = (0..names.len())
        .filter(|i| !allowed.contains(i) && !denied.contains(i))
        .map(|i| names[i].to_owned());
    Ok(AuthResult {
        action_type,
        resources,
        decision,
        allowed: pick(&allowed),
        explicit_deny: pick(&denied),
        implicit_deny: implicit.collect(),
        missing_context: missing,
    })
}
