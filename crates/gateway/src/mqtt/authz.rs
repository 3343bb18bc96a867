//! Policy checks for one principal on one connection: its policies as the
//! config cache holds them now, evaluated for `iot:Connect`, `iot:Publish`,
//! `iot:RetainPublish`, `iot:Subscribe` and `iot:Receive` (AWS IoT Core
//! Developer Guide: "AWS IoT Core policy actions" and "AWS IoT Core action
//! resources").

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use herald_policy::{Action, Context, Policy, Request, decide};

use super::context::lock;
use super::lifecycle::DisconnectReason;
use super::principal::{Principal, PrincipalKind};
use crate::bus::topic;
use crate::config_cache::{CertificateStatus, ConfigCache};

thread_local! {
    /// The ARN a check is about, built in place: checks run on every
    /// delivery, and this buffer stops allocating after the first ones.
    static ARN: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Policy checks for one principal on one connection.
pub(super) struct Authz {
    cache: ConfigCache,
    /// `arn:aws:iot:<region>:<account>:`, shared by the gateway's sessions.
    arn_prefix: Arc<str>,
    pub(super) principal: Principal,
    // Boxed: most of a session's size, and read only by policy checks.
    context: Box<Context>,
    /// The policies at a cache revision.
    policies: Mutex<Option<(u64, Policies)>>,
}

/// A principal's policies, shared by the checks of one config revision.
type Policies = Arc<[Arc<Policy>]>;

impl Authz {
    pub(super) fn new(
        cache: ConfigCache,
        arn_prefix: Arc<str>,
        principal: Principal,
        context: Context,
    ) -> Authz {
        Authz {
            cache,
            arn_prefix,
            principal,
            context: Box::new(context),
            policies: Mutex::new(None),
        }
    }

    /// The principal's policies as the cache has them now: computed again
    /// only when the cache's revision moved (every delivery asks).
    fn policies(&self) -> Policies {
        // Read before computing: a change that lands meanwhile makes the
        // next call compute again, never keeps a stale set.
        let revision = self.cache.revision();
        let mut cached = lock(&self.policies);
        if let Some((at, policies)) = &*cached
            && *at == revision
        {
            return Arc::clone(policies);
        }
        let policies: Policies = self.compute_policies().into();
        *cached = Some((revision, Arc::clone(&policies)));
        policies
    }

    fn compute_policies(&self) -> Vec<Arc<Policy>> {
        let targets: Vec<&str> = self
            .principal
            .policy_targets
            .iter()
            .map(String::as_str)
            .collect();
        let mut policies = self.cache.policies_for_targets(&targets);
        for name in &self.principal.policy_names {
            if let Some(p) = self.cache.policy(name) {
                policies.push(p.policy);
            }
        }
        policies
    }

    /// Whether `action` is allowed on `<prefix><kind><name>`.
    fn allowed(&self, action: Action<'_>, kind: &str, name: &str) -> bool {
        let policies = self.policies();
        ARN.with_borrow_mut(|arn| {
            arn.clear();
            arn.push_str(&self.arn_prefix);
            arn.push_str(kind);
            arn.push_str(name);
            let request = Request::new(action, arn, &self.context);
            decide(policies.iter().map(|p| &**p), &request).is_allowed()
        })
    }

    pub(super) fn connect_allowed(&self, client_id: &str) -> bool {
        self.allowed(Action::Connect, "client/", client_id)
    }

    pub(super) fn topic_allowed(&self, action: Action<'_>, topic: &str) -> bool {
        self.allowed(action, "topic/", topic)
    }

    pub(super) fn subscribe_allowed(&self, filter: &str) -> bool {
        self.allowed(Action::Subscribe, "topicfilter/", filter)
    }

    /// Whether a client may publish on `topic` with `retain`: a valid
    /// topic, not `$` unless `$aws/things/...`, `iot:Publish`, and
    /// `iot:RetainPublish` with RETAIN (except on `$` topics, where RETAIN
    /// is ignored: nothing is retained there).
    pub(super) fn publish_check(&self, topic: &str, retain: bool) -> Result<(), PublishDenial> {
        if topic::validate_topic_name(topic).is_err() {
            return Err(PublishDenial::InvalidTopic);
        }
        if topic::is_aws_events(topic) {
            return Err(PublishDenial::AwsEvents);
        }
        let reserved = topic::is_reserved(topic);
        if reserved && !topic::is_aws_things(topic) {
            return Err(PublishDenial::Reserved);
        }
        if reserved && retain {
            return Err(PublishDenial::RetainOnReserved);
        }
        if !self.topic_allowed(Action::Publish, topic)
            || (retain && !self.topic_allowed(Action::RetainPublish, topic))
        {
            return Err(PublishDenial::NotAuthorized);
        }
        Ok(())
    }

    /// Whether the connection may go on: an active certificate (for a
    /// certificate principal) and `iot:Connect`.
    pub(super) fn still_valid(&self, client_id: &str) -> bool {
        if self.principal.kind == PrincipalKind::Certificate
            && self.cache.certificate_status(&self.principal.id) != Some(CertificateStatus::Active)
        {
            return false;
        }
        self.connect_allowed(client_id)
    }
}

/// Why a client may not publish on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PublishDenial {
    /// Not a valid topic name.
    InvalidTopic,
    /// A `$aws/events/...` topic: subscribe-only, whatever the policy says.
    AwsEvents,
    /// Another `$` topic outside `$aws/things/...`.
    Reserved,
    /// RETAIN on a `$` topic ("You can't publish to a reserved topic with
    /// the RETAIN flag set").
    RetainOnReserved,
    /// `iot:Publish` (or `iot:RetainPublish` with RETAIN) is denied.
    NotAuthorized,
}

impl PublishDenial {
    /// The end of a session that publishes anyway.
    pub(super) fn reason(self) -> DisconnectReason {
        match self {
            // Unsupported publishes on reserved topics: the AWS IoT Core Developer Guide's
            // "Reserved topics" for MQTT 3.1.1.
            PublishDenial::InvalidTopic
            | PublishDenial::AwsEvents
            | PublishDenial::Reserved
            | PublishDenial::RetainOnReserved => DisconnectReason::ClientError,
            PublishDenial::NotAuthorized => DisconnectReason::AuthError,
        }
    }

    /// Whether an MQTT 5 session outlives such a publish: QoS 1 gets a
    /// PUBACK "not authorized", QoS 0 is dropped.
    pub(super) fn acked_in_v5(self) -> bool {
        matches!(
            self,
            PublishDenial::AwsEvents
                | PublishDenial::RetainOnReserved
                | PublishDenial::NotAuthorized
        )
    }
}
