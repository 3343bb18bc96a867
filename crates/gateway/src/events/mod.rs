//! AWS IoT registry event messages: turns one registry change-log event into
//! the MQTT topic and the JSON payload that AWS IoT Core would publish
//! (AWS IoT Core Developer Guide: "Registry events").
//!
//! The renderer is pure: it places fields and builds the topic, nothing else.
//! The registry has already filled in the ARNs and the account id. `gated`
//! renders an event and gates it by the event configuration of the moment:
//! the one decision the event pump and every session's replay share.
//!
//! - `render`: one payload type per registry event family, in the field
//!   order of the AWS examples; `jobs`: the two jobs families.

pub(crate) mod follow;
mod jobs;
pub(crate) mod pump;
mod render;

use herald_proto::registry::v1::{ChangeEvent, Operation, change_event};
pub(crate) use jobs::{
    DeviceExecution, DeviceSummary, device_execution, device_summary, execution_status_name,
    job_status_name, seconds_before_timed_out, target_selection_name,
};
pub use pump::EventPump;

use crate::config_cache::ConfigCache;

/// One event, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RenderedEvent {
    /// The `$aws/events/...` topic, names substituted verbatim.
    pub topic: String,
    /// The UTF-8 JSON payload.
    pub payload: Vec<u8>,
    /// The event-configuration key that must be enabled for the event to be
    /// published.
    pub gate: EventGate,
    /// The event's `eventId`, the same on every redelivery; consumers
    /// de-duplicate on it.
    pub event_id: String,
}

/// The event-configuration key that gates an event family (AWS IoT API Reference: "UpdateEventConfigurations").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum EventGate {
    /// `THING`: things created, updated, deleted.
    Thing,
    /// `THING_TYPE`: thing types created, updated (deprecated or not), deleted.
    ThingType,
    /// `THING_TYPE_ASSOCIATION`: a thing's type added or removed.
    ThingTypeAssociation,
    /// `THING_GROUP`: thing groups created, updated, deleted.
    ThingGroup,
    /// `THING_GROUP_MEMBERSHIP`: a thing added to or removed from a group.
    ThingGroupMembership,
    /// `THING_GROUP_HIERARCHY`: a group added to or removed from a parent.
    ThingGroupHierarchy,
    /// `JOB`: jobs completed, cancelled, deleted.
    Job,
    /// `JOB_EXECUTION`: job executions reaching a final status, deleted.
    JobExecution,
    /// A thing's jobs notifications (`$aws/things/{thingName}/jobs/notify`,
    /// `notify-next`): part of the jobs device API, always published.
    ThingJobs,
}

impl EventGate {
    /// The key as spelled in `eventConfigurations` (`"THING"`, `"THING_TYPE"`, ...).
    pub(crate) fn key(&self) -> &'static str {
        match self {
            EventGate::Thing => "THING",
            EventGate::ThingType => "THING_TYPE",
            EventGate::ThingTypeAssociation => "THING_TYPE_ASSOCIATION",
            EventGate::ThingGroup => "THING_GROUP",
            EventGate::ThingGroupMembership => "THING_GROUP_MEMBERSHIP",
            EventGate::ThingGroupHierarchy => "THING_GROUP_HIERARCHY",
            EventGate::Job => "JOB",
            EventGate::JobExecution => "JOB_EXECUTION",
            EventGate::ThingJobs => "THING_JOBS",
        }
    }

    /// Whether the event configuration has no say over this family.
    fn always(self) -> bool {
        self == EventGate::ThingJobs
    }

    fn of(body: &change_event::Event) -> EventGate {
        match body {
            change_event::Event::Thing(_) => EventGate::Thing,
            change_event::Event::ThingType(_) => EventGate::ThingType,
            change_event::Event::ThingTypeAssociation(_) => EventGate::ThingTypeAssociation,
            change_event::Event::ThingGroup(_) => EventGate::ThingGroup,
            change_event::Event::ThingGroupMembership(_) => EventGate::ThingGroupMembership,
            change_event::Event::ThingGroupHierarchy(_) => EventGate::ThingGroupHierarchy,
            change_event::Event::Job(_) => EventGate::Job,
            change_event::Event::JobExecution(_) => EventGate::JobExecution,
            change_event::Event::JobsNotify(_) => EventGate::ThingJobs,
        }
    }

    /// Whether the family's operations are CREATED/UPDATED/DELETED (otherwise
    /// ADDED/REMOVED).
    fn is_crud(self) -> bool {
        matches!(
            self,
            EventGate::Thing | EventGate::ThingType | EventGate::ThingGroup
        )
    }
}

/// A change event that cannot be rendered: the registry wrote something the
/// AWS event catalogue has no message for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RenderError {
    /// The event has no family body.
    #[error("change event {sequence} has no body")]
    MissingBody {
        /// The event's position in the change log.
        sequence: u64,
    },
    /// The operation is not one of the family's (for example `ADDED` on a
    /// thing event, or an unknown value).
    #[error("change event {sequence}: operation {operation} does not fit a {} event", .gate.key())]
    OperationMismatch {
        /// The event's position in the change log.
        sequence: u64,
        /// The family of the event's body.
        gate: EventGate,
        /// The operation's name, or its number when unknown.
        operation: String,
    },
    /// A name that goes into the topic is empty or would change the topic's
    /// levels (it contains `/`, `+`, `#` or NUL).
    #[error("change event {sequence}: {field} {value:?} cannot be a topic level")]
    InvalidTopicLevel {
        /// The event's position in the change log.
        sequence: u64,
        /// The payload field the name comes from (`thingName`, ...).
        field: &'static str,
        /// The offending name.
        value: String,
    },
}

/// Renders one change event as the AWS IoT event message of its family.
///
/// Fails when the event has no body, when its operation does not fit its
/// family, or when a name would not make a single topic level.
pub(crate) fn render(event: &ChangeEvent) -> Result<RenderedEvent, RenderError> {
    let sequence = event.sequence;
    let body = event
        .event
        .as_ref()
        .ok_or(RenderError::MissingBody { sequence })?;
    let gate = EventGate::of(body);
    let jobs_message = match body {
        change_event::Event::Job(job) => Some(jobs::job(event, job)),
        change_event::Event::JobExecution(execution) => Some(jobs::execution(event, execution)),
        change_event::Event::JobsNotify(notify) => Some(jobs::notify(event, notify)),
        _ => None,
    };
    if let Some(message) = jobs_message {
        let (topic, payload) = message?;
        return Ok(RenderedEvent {
            topic,
            payload,
            gate,
            event_id: event.event_id.clone(),
        });
    }
    let op = render::Op::from_proto(event.operation)
        .filter(|op| op.is_crud() == gate.is_crud())
        .ok_or_else(|| RenderError::OperationMismatch {
            sequence,
            gate,
            operation: Operation::try_from(event.operation).map_or_else(
                |_| event.operation.to_string(),
                |o| o.as_str_name().to_owned(),
            ),
        })?;
    let (topic, payload) = render::message(event, op, body)?;
    Ok(RenderedEvent {
        topic,
        payload,
        gate,
        event_id: event.event_id.clone(),
    })
}

/// What the event configuration lets out of one change event.
#[derive(Debug)]
pub(crate) enum Gated {
    /// Published: its family is enabled.
    Publish(RenderedEvent),
    /// Its family (this key) is disabled.
    Disabled(EventGate),
    /// It has no AWS event message.
    Unrenderable(RenderError),
}

/// Renders `event` and gates it by the event configuration `cache` holds
/// now (AWS IoT Core Developer Guide: "Enable events for AWS IoT": an
/// event type is published only while it is enabled).
pub(crate) fn gated(event: &ChangeEvent, cache: &ConfigCache) -> Gated {
    match render(event) {
        Ok(rendered) if rendered.gate.always() || cache.event_enabled(rendered.gate.key()) => {
            Gated::Publish(rendered)
        }
        Ok(rendered) => Gated::Disabled(rendered.gate),
        Err(e) => Gated::Unrenderable(e),
    }
}

#[cfg(test)]
mod tests {
    use herald_proto::registry::v1::{
        ThingEvent, ThingGroupHierarchyEvent, ThingGroupMembershipEvent, ThingTypeAssociationEvent,
        ThingTypeEvent,
    };

    use super::*;

    fn event(operation: Operation, body: Option<change_event::Event>) -> ChangeEvent {
        ChangeEvent {
            sequence: 42,
            event_id: "f5ae9b94-8b8e-4d8e-8c8f-b3266dd89853".to_owned(),
            timestamp_ms: 1_234_567_890_123,
            account_id: "123456789012".to_owned(),
            region: "us-east-1".to_owned(),
            operation: operation as i32,
            event: body,
        }
    }

    fn thing() -> change_event::Event {
        change_event::Event::Thing(ThingEvent {
            thing_id: "b604f69c-aa9a-4d4a-829e-c480e958a0b5".to_owned(),
            thing_name: "MyThing".to_owned(),
            version_number: 1,
            ..Default::default()
        })
    }

    fn association() -> change_event::Event {
        change_event::Event::ThingTypeAssociation(ThingTypeAssociationEvent {
            thing_id: "b604f69c-aa9a-4d4a-829e-c480e958a0b5".to_owned(),
            thing_name: "myThing".to_owned(),
            thing_type_name: "MyThingType".to_owned(),
        })
    }

    #[test]
    fn gate_keys_are_the_event_configuration_keys() {
        let keys = [
            (EventGate::Thing, "THING"),
            (EventGate::ThingType, "THING_TYPE"),
            (EventGate::ThingTypeAssociation, "THING_TYPE_ASSOCIATION"),
            (EventGate::ThingGroup, "THING_GROUP"),
            (EventGate::ThingGroupMembership, "THING_GROUP_MEMBERSHIP"),
            (EventGate::ThingGroupHierarchy, "THING_GROUP_HIERARCHY"),
            (EventGate::Job, "JOB"),
            (EventGate::JobExecution, "JOB_EXECUTION"),
        ];
        for (gate, key) in keys {
            assert_eq!(gate.key(), key);
        }
    }

    #[test]
    fn each_family_has_its_gate_and_keeps_the_event_id() {
        let cases = [
            (Operation::Created, thing(), EventGate::Thing),
            (
                Operation::Updated,
                change_event::Event::ThingType(ThingTypeEvent {
                    thing_type_name: "T".to_owned(),
                    ..Default::default()
                }),
                EventGate::ThingType,
            ),
            (
                Operation::Added,
                association(),
                EventGate::ThingTypeAssociation,
            ),
            (
                Operation::Deleted,
                change_event::Event::ThingGroup(herald_proto::registry::v1::ThingGroupEvent {
                    thing_group_name: "G".to_owned(),
                    ..Default::default()
                }),
                EventGate::ThingGroup,
            ),
            (
                Operation::Removed,
                change_event::Event::ThingGroupMembership(ThingGroupMembershipEvent {
                    thing_group_name: "G".to_owned(),
                    thing_name: "T".to_owned(),
                    ..Default::default()
                }),
                EventGate::ThingGroupMembership,
            ),
            (
                Operation::Added,
                change_event::Event::ThingGroupHierarchy(ThingGroupHierarchyEvent {
                    thing_group_name: "P".to_owned(),
                    child_group_name: "C".to_owned(),
                    ..Default::default()
                }),
                EventGate::ThingGroupHierarchy,
            ),
        ];
        for (operation, body, gate) in cases {
            let rendered = render(&event(operation, Some(body))).unwrap();
            assert_eq!(rendered.gate, gate);
            assert_eq!(rendered.event_id, "f5ae9b94-8b8e-4d8e-8c8f-b3266dd89853");
        }
    }

    #[test]
    fn an_event_without_a_body_is_an_error() {
        let err = render(&event(Operation::Created, None)).unwrap_err();
        assert_eq!(err, RenderError::MissingBody { sequence: 42 });
        assert_eq!(err.to_string(), "change event 42 has no body");
    }

    #[test]
    fn an_operation_outside_the_family_is_an_error() {
        let err = render(&event(Operation::Added, Some(thing()))).unwrap_err();
        assert_eq!(
            err,
            RenderError::OperationMismatch {
                sequence: 42,
                gate: EventGate::Thing,
                operation: "ADDED".to_owned(),
            }
        );
        assert_eq!(
            err.to_string(),
            "change event 42: operation ADDED does not fit a THING event"
        );
        for operation in [Operation::Created, Operation::Updated, Operation::Deleted] {
            assert!(matches!(
                render(&event(operation, Some(association()))),
                Err(RenderError::OperationMismatch {
                    gate: EventGate::ThingTypeAssociation,
                    ..
                })
            ));
        }
        for operation in [Operation::Removed, Operation::Unspecified] {
            assert!(matches!(
                render(&event(operation, Some(thing()))),
                Err(RenderError::OperationMismatch { .. })
            ));
        }
    }

    #[test]
    fn an_unknown_operation_number_is_an_error() {
        let mut unknown = event(Operation::Created, Some(thing()));
        unknown.operation = 99;
        assert_eq!(
            render(&unknown).unwrap_err(),
            RenderError::OperationMismatch {
                sequence: 42,
                gate: EventGate::Thing,
                operation: "99".to_owned(),
            }
        );
    }

    #[test]
    fn a_name_that_is_not_one_topic_level_is_an_error() {
        for bad in ["", "a/b", "a+", "#", "a\0b"] {
            let body = change_event::Event::Thing(ThingEvent {
                thing_name: bad.to_owned(),
                ..Default::default()
            });
            assert_eq!(
                render(&event(Operation::Created, Some(body))).unwrap_err(),
                RenderError::InvalidTopicLevel {
                    sequence: 42,
                    field: "thingName",
                    value: bad.to_owned(),
                },
                "{bad:?}"
            );
        }
    }
}
