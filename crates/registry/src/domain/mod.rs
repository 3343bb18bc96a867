//! The registry's records and the rules their fields obey. No I/O, no wire
//! types. Jobs and their executions are in `jobs`.

use std::collections::BTreeMap;

use herald_proto::error::{AwsError, ErrorType};
use herald_store::StoreError;
use serde::{Deserialize, Serialize};

pub(crate) mod cron;
pub(crate) mod jobs;
pub(crate) mod rollout;
pub(crate) mod shadow;

use jobs::{Execution, ExecutionStatus, Job, ProcessDetails};

pub(crate) type Attributes = BTreeMap<String, String>;

pub(crate) const MAX_ATTRIBUTES_UNTYPED: usize = 3;
pub(crate) const MAX_ATTRIBUTES_TYPED: usize = 50;
pub(crate) const MAX_GROUP_ATTRIBUTES: usize = 50;
pub(crate) const MAX_SEARCHABLE_ATTRIBUTES: usize = 3;
pub(crate) const MAX_GROUP_DEPTH: usize = 7;
pub(crate) const MAX_CHILD_GROUPS: usize = 100;
pub(crate) const MAX_GROUPS_PER_THING: usize = 10;
pub(crate) const MAX_DESCRIPTION: usize = 2028;
pub(crate) const MAX_PRINCIPAL: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Thing {
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) type_name: Option<String>,
    pub(crate) attributes: Attributes,
    pub(crate) version: i64,
    /// The billing group the thing is in, if any (at most one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) billing_group: Option<String>,
}

/// A billing group (AWS IoT developer guide: "Billing groups"). Unlike thing
/// groups they have no hierarchy, no attributes and no events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BillingGroup {
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) description: Option<String>,
    pub(crate) version: i64,
    pub(crate) creation_date_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PropagatingAttribute {
    pub(crate) user_property_key: String,
    pub(crate) thing_attribute: Option<String>,
    pub(crate) connection_attribute: Option<String>,
}

/// A thing type's user-given properties: what makes two creates "identical".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct ThingTypeProperties {
    pub(crate) description: Option<String>,
    pub(crate) searchable_attributes: Vec<String>,
    pub(crate) propagating_attributes: Option<Vec<PropagatingAttribute>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ThingType {
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) properties: ThingTypeProperties,
    pub(crate) deprecated: bool,
    pub(crate) deprecation_date_ms: Option<i64>,
    pub(crate) creation_date_ms: i64,
}

/// An ancestor of a group: parents are fixed at creation, so these never change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GroupRef {
    pub(crate) name: String,
    pub(crate) id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ThingGroup {
    pub(crate) name: String,
    pub(crate) id: String,
    /// From the root down to the direct parent; empty for a root group.
    pub(crate) ancestors: Vec<GroupRef>,
    pub(crate) description: Option<String>,
    pub(crate) attributes: Attributes,
    pub(crate) version: i64,
    pub(crate) creation_date_ms: i64,
    /// A dynamic group's query (CreateDynamicThingGroup): its members are
    /// the things the query matches, kept so by the registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dynamic: Option<DynamicQuery>,
}

/// What a dynamic thing group's membership follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DynamicQuery {
    pub(crate) index_name: String,
    pub(crate) query_string: String,
    pub(crate) query_version: String,
}

impl ThingGroup {
    pub(crate) fn parent(&self) -> Option<&GroupRef> {
        self.ancestors.last()
    }

    /// The name of the root of this group's hierarchy (itself for a root group).
    pub(crate) fn root(&self) -> &str {
        self.ancestors.first().map_or(&self.name, |g| &g.name)
    }

    pub(crate) fn depth(&self) -> usize {
        self.ancestors.len() + 1
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Operation {
    Created,
    Updated,
    Deleted,
    Added,
    Removed,
}

/// The content of one logged event: what its AWS payload needs (AWS IoT Core Developer Guide: "Registry events").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum EventBody {
    Thing {
        thing: Thing,
    },
    ThingType {
        thing_type: ThingType,
    },
    ThingTypeAssociation {
        thing_id: String,
        thing_name: String,
        thing_type_name: String,
    },
    ThingGroup {
        group: ThingGroup,
    },
    ThingGroupMembership {
        group_name: String,
        group_id: String,
        thing_name: String,
        thing_id: String,
        membership_id: String,
    },
    ThingGroupHierarchy {
        parent: GroupRef,
        child: GroupRef,
    },
    /// AWS IoT Core Developer Guide: "Jobs events".
    Job {
        kind: JobEventKind,
        job: Box<Job>,
        details: ProcessDetails,
    },
    JobExecution {
        kind: ExecutionEventKind,
        execution: Execution,
    },
    /// A thing's pending executions changed: `$aws/things/{thing}/jobs/notify`
    /// (an execution joined or left the list) or `.../notify-next` (the
    /// head of the list changed), with the list as it now is (AWS IoT Core
    /// Developer Guide: "Jobs device MQTT API operations").
    JobsNotify {
        kind: NotifyKind,
        thing_name: String,
        in_progress: Vec<Execution>,
        queued: Vec<Execution>,
        /// `NotifyNext`: the next job's document, when one is pending.
        next_document: Option<String>,
    },
}

/// Which jobs notification a thing's devices get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum NotifyKind {
    Notify,
    NotifyNext,
}

/// The job events: `$aws/events/job/{jobId}/<kind>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum JobEventKind {
    Completed,
    Canceled,
    Deleted,
    CancellationInProgress,
    DeletionInProgress,
}

/// The job execution events: `$aws/events/jobExecution/{jobId}/<kind>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ExecutionEventKind {
    Succeeded,
    Failed,
    Rejected,
    Canceled,
    TimedOut,
    Removed,
    Deleted,
}

impl ExecutionEventKind {
    /// The event an execution reaching `status` publishes, if any.
    pub(crate) fn reaching(status: ExecutionStatus) -> Option<ExecutionEventKind> {
        match status {
            ExecutionStatus::Succeeded => Some(ExecutionEventKind::Succeeded),
            ExecutionStatus::Failed => Some(ExecutionEventKind::Failed),
            ExecutionStatus::Rejected => Some(ExecutionEventKind::Rejected),
            ExecutionStatus::Canceled => Some(ExecutionEventKind::Canceled),
            ExecutionStatus::TimedOut => Some(ExecutionEventKind::TimedOut),
            ExecutionStatus::Removed => Some(ExecutionEventKind::Removed),
            ExecutionStatus::Queued | ExecutionStatus::InProgress => None,
        }
    }
}

/// A registry event as the change log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Event {
    /// The registry families' operation; `None` for the jobs families, whose
    /// body names its own kind.
    #[serde(default)]
    pub(crate) operation: Option<Operation>,
    pub(crate) body: EventBody,
}

pub(crate) type ChangeRecord = herald_store::Record<Event>;

pub(crate) fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::new(ErrorType::InvalidRequest, message)
}

pub(crate) fn not_found(message: impl Into<String>) -> AwsError {
    AwsError::new(ErrorType::ResourceNotFound, message)
}

/// A storage failure as the AWS error clients see: `InternalFailureException`,
/// `ServiceUnavailableException` while the service shuts down, and
/// `InvalidRequestException` for a bad `nextToken` or `maxResults`.
pub(crate) fn store_error(err: StoreError) -> AwsError {
    let error_type = match err {
        StoreError::Storage(_) => ErrorType::InternalFailure,
        StoreError::ShuttingDown => ErrorType::ServiceUnavailable,
        StoreError::InvalidPage(_) => ErrorType::InvalidRequest,
    };
    AwsError::new(error_type, err.to_string())
}

pub(crate) fn limit(message: impl Into<String>) -> AwsError {
    AwsError::new(ErrorType::LimitExceeded, message)
}

fn check_chars(
    what: &str,
    value: &str,
    max: usize,
    min: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<(), AwsError> {
    let len = value.chars().count();
    if len < min || len > max {
        return Err(invalid(format!(
            "{what} must be {min} to {max} characters long, got {len}"
        )));
    }
    if let Some(bad) = value.chars().find(|&c| !allowed(c)) {
        return Err(invalid(format!(
            "{what} {value:?} contains the character {bad:?}, which is not allowed"
        )));
    }
    Ok(())
}

/// Thing, thing type and thing group names: `[a-zA-Z0-9:_-]+`, 1 to 128.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), AwsError> {
    check_chars(what, name, 128, 1, |c| {
        c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-')
    })
}

pub(crate) fn check_attributes(attributes: &Attributes) -> Result<(), AwsError> {
    for (name, value) in attributes {
        check_chars("attribute name", name, 128, 1, |c| {
            c.is_ascii_alphanumeric() || "_.,@/:#-".contains(c)
        })?;
        check_chars("attribute value", value, 800, 0, |c| {
            c.is_ascii_alphanumeric() || "_.,@/:#=[]-".contains(c)
        })?;
    }
    Ok(())
}

pub(crate) fn check_description(description: Option<&str>) -> Result<(), AwsError> {
    match description {
        Some(d) => check_chars("description", d, MAX_DESCRIPTION, 0, |c| !c.is_control()),
        None => Ok(()),
    }
}

pub(crate) fn check_principal(principal: &str) -> Result<(), AwsError> {
    check_chars("principal", principal, MAX_PRINCIPAL, 1, |c| {
        !c.is_control()
    })
}

/// Applies an attribute payload to `current`: merge or replace; an empty value
/// removes the attribute.
pub(crate) fn apply_attributes(
    current: &Attributes,
    given: &Attributes,
    merge: bool,
) -> Attributes {
    let mut next = if merge {
        current.clone()
    } else {
        Attributes::new()
    };
    for (name, value) in given {
        if value.is_empty() {
            next.remove(name);
        } else {
            next.insert(name.clone(), value.clone());
        }
    }
    next
}

/// The attribute limit of a thing: 3 without a type, 50 with one.
pub(crate) fn check_thing_attribute_count(
    attributes: &Attributes,
    typed: bool,
) -> Result<(), AwsError> {
    let max = if typed {
        MAX_ATTRIBUTES_TYPED
    } else {
        MAX_ATTRIBUTES_UNTYPED
    };
    if attributes.len() > max {
        let kind = if typed {
            "a thing with a thing type"
        } else {
            "a thing without a thing type"
        };
        return Err(invalid(format!(
            "{kind} can have at most {max} attributes, got {}",
            attributes.len()
        )));
    }
    Ok(())
}

pub(crate) struct Arns<'a> {
    pub(crate) region: &'a str,
    pub(crate) account: &'a str,
}

impl Arns<'_> {
    pub(crate) fn of(&self, kind: &str, name: &str) -> String {
        format!("arn:aws:iot:{}:{}:{kind}/{name}", self.region, self.account)
    }

    pub(crate) fn thing(&self, name: &str) -> String {
        self.of("thing", name)
    }

    pub(crate) fn thing_type(&self, name: &str) -> String {
        self.of("thingtype", name)
    }

    pub(crate) fn group(&self, name: &str) -> String {
        self.of("thinggroup", name)
    }

    pub(crate) fn billing_group(&self, name: &str) -> String {
        self.of("billinggroup", name)
    }

    /// The name in an ARN of this account and region of the given kind.
    pub(crate) fn name_in<'s>(&self, kind: &str, arn: &'s str) -> Option<&'s str> {
        let prefix = self.of(kind, "");
        arn.strip_prefix(prefix.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_aws_pattern() {
        assert!(check_name("thing name", "My_thing:1-a").is_ok());
        assert!(check_name("thing name", "").is_err());
        assert!(check_name("thing name", &"a".repeat(129)).is_err());
        assert!(check_name("thing name", "a/b").is_err());
        assert!(check_name("thing name", "a+b").is_err());
    }

    #[test]
    fn attribute_payloads_merge_replace_and_remove() {
        let current = Attributes::from([("a".into(), "1".into()), ("b".into(), "2".into())]);
        let given = Attributes::from([("b".into(), "".into()), ("c".into(), "3".into())]);
        let merged = apply_attributes(&current, &given, true);
        assert_eq!(
            merged,
            Attributes::from([("a".into(), "1".into()), ("c".into(), "3".into())])
        );
        let replaced = apply_attributes(&current, &given, false);
        assert_eq!(replaced, Attributes::from([("c".into(), "3".into())]));
    }

    #[test]
    fn arn_names_are_read_back_only_for_this_account() {
        let arns = Arns {
            region: "us-east-1",
            account: "123456789012",
        };
        assert_eq!(arns.name_in("thing", &arns.thing("x")), Some("x"));
        assert_eq!(
            arns.name_in("thing", "arn:aws:iot:eu-west-1:123456789012:thing/x"),
            None
        );
    }

    #[test]
    fn storage_failures_keep_their_aws_error_types() {
        let cases = [
            (
                StoreError::Storage("disk full".into()),
                ErrorType::InternalFailure,
                "storage failure: disk full",
            ),
            (
                StoreError::ShuttingDown,
                ErrorType::ServiceUnavailable,
                "the service is shutting down",
            ),
            (
                StoreError::InvalidPage("The nextToken is not valid".into()),
                ErrorType::InvalidRequest,
                "The nextToken is not valid",
            ),
        ];
        for (err, error_type, message) in cases {
            assert_eq!(store_error(err), AwsError::new(error_type, message));
        }
    }
}
