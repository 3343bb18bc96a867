//! Policy documents: validation and compilation into statements.

use std::fmt;

use crate::{
    action::ActionSet,
    condition::Condition,
    context::Context,
    error::{PolicyError, malformed},
    eval::Request,
    glob::{Pattern, Syntax},
    json::{self, Json},
    key::Key,
};

/// AWS's limit on a policy document: characters, not counting whitespace.
pub const MAX_DOCUMENT_CHARS: usize = 2048;

/// A compiled policy: one named policy version's statements, ready to
/// evaluate. Cheap to share (`Arc<Policy>`); evaluation only borrows it.
#[derive(Debug, Clone)]
pub struct Policy {
    name: String,
    version: Version,
    statements: Box<[Statement]>,
}

/// The policy language version (`"Version"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// `2012-10-17`: the current language, with policy variables.
    V2012_10_17,
    /// `2008-10-17`: the original language. As in IAM, `${...}` is not a
    /// variable here but literal text.
    V2008_10_17,
}

impl Version {
    /// The version as written in documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V2012_10_17 => "2012-10-17",
            Version::V2008_10_17 => "2008-10-17",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A statement's `Effect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone)]
pub(crate) struct Statement {
    pub(crate) effect: Effect,
    actions: ActionSet,
    resources: Box<[Pattern]>,
    /// `NotResource`: the statement applies to resources matching none.
    not_resource: bool,
    conditions: Box<[Condition]>,
    /// Every variable used in the resources and condition values, once each:
    /// if one can't be resolved the statement doesn't match at all.
    variables: Box<[Key]>,
}

impl Statement {
    /// Whether the statement applies to the request: the action matches,
    /// every variable resolves, the resource matches and every condition
    /// holds. Doesn't allocate.
    pub(crate) fn applies(&self, request: &Request<'_>) -> bool {
        self.actions.matches(request.action)
            && self.unresolved(request.context).is_none()
            && self.resource_matches(request.resource, request.context)
            && self
                .conditions
                .iter()
                .all(|condition| condition.holds(request.context))
    }

    pub(crate) fn action_matches(&self, request: &Request<'_>) -> bool {
        self.actions.matches(request.action)
    }

    /// The first variable `context` can't resolve.
    pub(crate) fn unresolved(&self, context: &Context) -> Option<&Key> {
        self.variables
            .iter()
            .find(|key| context.resolve(key).is_none())
    }

    pub(crate) fn unresolved_all<'s>(
        &'s self,
        context: &'s Context,
    ) -> impl Iterator<Item = &'s Key> {
        self.variables
            .iter()
            .filter(|key| context.resolve(key).is_none())
    }

    pub(crate) fn resource_matches(&self, resource: &str, context: &Context) -> bool {
        let listed = self
            .resources
            .iter()
            .any(|pattern| pattern.matches(resource, Some(context), false));
        listed != self.not_resource
    }

    pub(crate) fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

impl Policy {
    /// Validates and compiles a policy document.
    ///
    /// `name` is carried along for reporting (`TestAuthorization` lists
    /// policies by name); it is not validated here.
    pub fn parse(name: &str, document: &str) -> Result<Policy, PolicyError> {
        check_length(document)?;
        let json = json::parse(document).map_err(|e| malformed(format!("invalid JSON: {e}")))?;
        let Json::Object(entries) = json else {
            return Err(malformed(format!(
                "the document must be a JSON object, not {}",
                json.kind()
            )));
        };
        let mut version = None;
        let mut statement = None;
        for (key, value) in &entries {
            match key.as_str() {
                "Version" => version = Some(value),
                "Statement" => statement = Some(value),
                "Id" => {
                    if !matches!(value, Json::String(_)) {
                        return Err(malformed(format!(
                            "Id must be a string, not {}",
                            value.kind()
                        )));
                    }
                }
                _ => {
                    return Err(malformed(format!(
                        "unknown top-level key {key:?} (expected Version, Statement or Id)"
                    )));
                }
            }
        }
        let version = parse_version(version)?;
        let statements = match statement {
            None => return Err(malformed("Statement is missing")),
            Some(Json::Object(_)) => vec![statement_at(statement, None, version)?],
            Some(Json::Array(items)) if items.is_empty() => {
                return Err(malformed("Statement is empty"));
            }
            Some(Json::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| statement_at(Some(item), Some(index), version))
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(malformed(format!(
                    "Statement must be an object or an array of objects, not {}",
                    other.kind()
                )));
            }
        };
        Ok(Policy {
            name: name.to_owned(),
            version,
            statements: statements.into(),
        })
    }

    /// The name given to [`Policy::parse`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The document's language version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// How many statements the document has.
    pub fn statement_count(&self) -> usize {
        self.statements.len()
    }

    pub(crate) fn statements(&self) -> &[Statement] {
        &self.statements
    }
}

fn check_length(document: &str) -> Result<(), PolicyError> {
    if document.len() <= MAX_DOCUMENT_CHARS {
        return Ok(());
    }
    let chars = document.chars().filter(|c| !c.is_whitespace()).count();
    if chars > MAX_DOCUMENT_CHARS {
        return Err(malformed(format!(
            "the document is {chars} characters long without whitespace; the limit is {MAX_DOCUMENT_CHARS}"
        )));
    }
    Ok(())
}

fn parse_version(value: Option<&Json>) -> Result<Version, PolicyError> {
    match value {
        None => Err(malformed("Version is missing (expected \"2012-10-17\")")),
        Some(Json::String(text)) if text == "2012-10-17" => Ok(Version::V2012_10_17),
        Some(Json::String(text)) if text == "2008-10-17" => Ok(Version::V2008_10_17),
        Some(Json::String(text)) => Err(malformed(format!(
            "unsupported Version {text:?} (expected \"2012-10-17\" or \"2008-10-17\")"
        ))),
        Some(other) => Err(malformed(format!(
            "Version must be a string, not {}",
            other.kind()
        ))),
    }
}

fn statement_at(
    value: Option<&Json>,
    index: Option<usize>,
    version: Version,
) -> Result<Statement, PolicyError> {
    let at = match index {
        Some(index) => format!("Statement[{index}]"),
        None => "Statement".to_owned(),
    };
    let entries = match value {
        Some(Json::Object(entries)) => entries,
        Some(other) => {
            return Err(malformed(format!(
                "{at} must be an object, not {}",
                other.kind()
            )));
        }
        None => return Err(malformed(format!("{at} is missing"))),
    };
    let mut effect = None;
    let (mut action, mut not_action) = (None, None);
    let (mut resource, mut not_resource) = (None, None);
    let mut condition = None;
    for (key, value) in entries {
        match key.as_str() {
            "Sid" => {
                if !matches!(value, Json::String(_)) {
                    return Err(malformed(format!(
                        "{at}.Sid must be a string, not {}",
                        value.kind()
                    )));
                }
            }
            "Effect" => effect = Some(value),
            "Action" => action = Some(value),
            "NotAction" => not_action = Some(value),
            "Resource" => resource = Some(value),
            "NotResource" => not_resource = Some(value),
            "Condition" => condition = Some(value),
            _ => {
                return Err(malformed(format!(
                    "{at}: unknown key {key:?} (expected Sid, Effect, Action, NotAction, Resource, NotResource or Condition)"
                )));
            }
        }
    }
    let effect = match effect {
        None => return Err(malformed(format!("{at}: Effect is missing"))),
        Some(Json::String(text)) if text == "Allow" => Effect::Allow,
        Some(Json::String(text)) if text == "Deny" => Effect::Deny,
        Some(Json::String(text)) => {
            return Err(malformed(format!(
                "{at}.Effect must be \"Allow\" or \"Deny\", not {text:?}"
            )));
        }
        Some(other) => {
            return Err(malformed(format!(
                "{at}.Effect must be \"Allow\" or \"Deny\", not {}",
                other.kind()
            )));
        }
    };
    let (actions, actions_at, negated) = exactly_one(&at, "Action", action, not_action)?;
    let actions = strings(actions, &actions_at)?;
    for name in &actions {
        if name != "*" && !name.contains(':') {
            return Err(malformed(format!(
                "{actions_at}: {name:?} is not an action name (expected a name like \"iot:Connect\", or \"*\")"
            )));
        }
    }
    let actions = ActionSet::compile(actions.iter().map(String::as_str), negated);

    let (resources, resources_at, not_resource) =
        exactly_one(&at, "Resource", resource, not_resource)?;
    let variables = version == Version::V2012_10_17;
    let syntax = Syntax {
        variables,
        wildcards: true,
    };
    let resources: Box<[Pattern]> = strings(resources, &resources_at)?
        .iter()
        .map(|source| Pattern::compile(source, syntax))
        .collect();

    let conditions = match condition {
        None => Box::default(),
        Some(value) => conditions(value, &format!("{at}.Condition"), variables)?,
    };

    let mut used: Vec<Key> = Vec::new();
    let keys = resources
        .iter()
        .flat_map(Pattern::variables)
        .chain(conditions.iter().flat_map(Condition::variables));
    for key in keys {
        if !used.contains(key) {
            used.push(key.clone());
        }
    }
    Ok(Statement {
        effect,
        actions,
        resources,
        not_resource,
        conditions,
        variables: used.into_boxed_slice(),
    })
}

/// Exactly one of `Name` and `NotName`: the value, its path, and whether it
/// was the `Not` form.
fn exactly_one<'j>(
    at: &str,
    name: &str,
    positive: Option<&'j Json>,
    negative: Option<&'j Json>,
) -> Result<(&'j Json, String, bool), PolicyError> {
    match (positive, negative) {
        (Some(value), None) => Ok((value, format!("{at}.{name}"), false)),
        (None, Some(value)) => Ok((value, format!("{at}.Not{name}"), true)),
        (Some(_), Some(_)) => Err(malformed(format!(
            "{at}: {name} and Not{name} are both present; use one"
        ))),
        (None, None) => Err(malformed(format!("{at}: {name} or Not{name} is required"))),
    }
}

/// A string or a non-empty array of non-empty strings.
fn strings(value: &Json, at: &str) -> Result<Vec<String>, PolicyError> {
    let items: Vec<&Json> = match value {
        Json::Array(items) if items.is_empty() => {
            return Err(malformed(format!("{at} is empty")));
        }
        Json::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    items
        .into_iter()
        .map(|item| match item {
            Json::String(text) if text.is_empty() => {
                Err(malformed(format!("{at} contains an empty string")))
            }
            Json::String(text) => Ok(text.clone()),
            other => Err(malformed(format!(
                "{at} must be a string or an array of strings, not {}",
                if matches!(value, Json::Array(_)) {
                    format!("an array containing {}", other.kind())
                } else {
                    other.kind().to_owned()
                }
            ))),
        })
        .collect()
}

/// `{"<operator>": {"<key>": value | [values]}}`.
fn conditions(value: &Json, at: &str, variables: bool) -> Result<Box<[Condition]>, PolicyError> {
    let Json::Object(operators) = value else {
        return Err(malformed(format!(
            "{at} must be an object, not {}",
            value.kind()
        )));
    };
    let mut compiled = Vec::new();
    for (operator, keys) in operators {
        let Json::Object(keys) = keys else {
            return Err(malformed(format!(
                "{at}.{operator} must be an object of condition keys, not {}",
                keys.kind()
            )));
        };
        for (key, values) in keys {
            let values = condition_values(values, &format!("{at}.{operator}[{key:?}]"))?;
            compiled.push(Condition::compile(operator, key, &values, variables, at)?);
        }
    }
    Ok(compiled.into_boxed_slice())
}

/// A scalar (string, number, boolean) or an array of scalars, as text.
fn condition_values(value: &Json, at: &str) -> Result<Vec<String>, PolicyError> {
    let scalar = |item: &Json| match item {
        Json::String(text) => Ok(text.clone()),
        Json::Number(text) => Ok(text.clone()),
        Json::Bool(value) => Ok(value.to_string()),
        other => Err(malformed(format!(
            "{at}: a condition value must be a string, number or boolean, not {}",
            other.kind()
        ))),
    };
    match value {
        Json::Array(items) => items.iter().map(scalar).collect(),
        single => Ok(vec![scalar(single)?]),
    }
}
