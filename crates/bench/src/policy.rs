//! The `policy` bench: authorisation decisions per second on one core.
//!
//! A realistic 10-statement device policy (connect as yourself when
//! attached, telemetry and command topics under the thing name, the
//! thing's shadow, a fleet topic keyed by a thing attribute, presence events
//! for gateways, and two Denies) is evaluated single-threaded against a
//! round-robin mix of requests from 64 connected things, for the phase
//! length. The ARNs and contexts are built before timing starts, as the
//! gateway builds a context once per connection; only `decide` is timed.
//!
//! Every decision is checked against the one `explain` gave for the same
//! request beforehand (a separate, non-short-circuiting code path); a
//! disagreement counts as an error and fails the run.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use herald_policy::{Action, Context, Decision, Policy, Request, decide, explain};
use serde_json::{Value, json};

use crate::{
    Options,
    stats::{per_sec, round},
};

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
const THINGS: usize = 64;
/// Every this many things is a gateway (thing type `gateway`).
const GATEWAY_EVERY: usize = 8;
/// Decisions between two looks at the clock.
const BATCH: usize = 4096;
const TARGET_PER_SEC: f64 = 1_000_000.0;

/// `ARN:` stands for `arn:aws:iot:<region>:<account>:`.
const POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "Connect", "Effect": "Allow", "Action": "iot:Connect",
     "Resource": "ARN:client/${iot:ClientId}",
     "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}},
    {"Sid": "Telemetry", "Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": "ARN:topic/dt/${iot:Connection.Thing.ThingName}/*"},
    {"Sid": "Subscribe", "Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": ["ARN:topicfilter/dt/${iot:Connection.Thing.ThingName}/*",
                  "ARN:topicfilter/cmd/${iot:Connection.Thing.ThingName}/*"]},
    {"Sid": "Commands", "Effect": "Allow", "Action": "iot:Receive",
     "Resource": "ARN:topic/cmd/${iot:Connection.Thing.ThingName}/*"},
    {"Sid": "Shadow", "Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": "ARN:topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"},
    {"Sid": "ShadowSubscribe", "Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": "ARN:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"},
    {"Sid": "Fleet", "Effect": "Allow", "Action": "iot:Publish",
     "Resource": "ARN:topic/fleet/${iot:Connection.Thing.Attributes[site]}/*",
     "Condition": {"StringLike": {"iot:ClientId": "sensor-*"}}},
    {"Sid": "Presence", "Effect": "Allow", "Action": ["iot:Subscribe", "iot:Receive"],
     "Resource": ["ARN:topicfilter/$aws/events/presence/*", "ARN:topic/$aws/events/presence/*"],
     "Condition": {"StringEquals": {"iot:Connection.Thing.ThingTypeName": "gateway"}}},
    {"Sid": "NoRetain", "Effect": "Deny", "Action": "iot:RetainPublish", "Resource": "*"},
    {"Sid": "Restricted", "Effect": "Deny", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": "ARN:topic/dt/*/restricted/*"}
  ]
}"#;

/// What each connected thing asks, as (action, resource after the prefix);
/// `{t}` is the thing's own name, `{o}` another thing's.
const REQUESTS: [(Action<'static>, &str); 12] = [
    (Action::Connect, "client/{t}"),
    (Action::Publish, "topic/dt/{t}/temperature"),
    (Action::Publish, "topic/dt/{o}/temperature"),
    (Action::Subscribe, "topicfilter/cmd/{t}/#"),
    (Action::Receive, "topic/cmd/{t}/reboot"),
    (Action::Publish, "topic/dt/{t}/restricted/x"),
    (Action::RetainPublish, "topic/dt/{t}/state"),
    (Action::Publish, "topic/$aws/things/{t}/shadow/update"),
    (
        Action::Subscribe,
        "topicfilter/$aws/events/presence/connected/+",
    ),
    (Action::Receive, "topic/$aws/events/presence/connected/{o}"),
    (Action::Publish, "topic/fleet/berlin/{t}"),
    (Action::Receive, "topic/other/{t}"),
];

struct Case {
    thing: usize,
    action: Action<'static>,
    resource: String,
    expected: Decision,
}

struct Figures {
    decisions: u64,
    elapsed: Duration,
    errors: u64,
    allowed: u64,
    explicit_deny: u64,
    implicit_deny: u64,
}

pub(crate) fn run(options: &Options) -> anyhow::Result<Value> {
    let prefix = format!("arn:aws:iot:{REGION}:{ACCOUNT}:");
    let policy = Policy::parse("bench-device", &POLICY.replace("ARN:", &prefix))
        .context("parse the bench policy")?;
    let contexts: Vec<Context> = (0..THINGS).map(context).collect();
    let cases = cases(&prefix, &policy, &contexts);
    eprintln!(
        "policy: {} statements, {} things, {} distinct requests, single-threaded for {:?}",
        policy.statement_count(),
        THINGS,
        cases.len(),
        options.phase,
    );
    let figures = measure(&policy, &contexts, &cases, options.phase);
    let rate = per_sec(figures.decisions, figures.elapsed);
    let ns = if figures.decisions == 0 {
        0.0
    } else {
        round(
            figures.elapsed.as_nanos() as f64 / figures.decisions as f64,
            1,
        )
    };
    eprintln!(
        "policy: {} decisions in {:.2} s = {rate} decisions/s, {ns} ns each (target ≥ {TARGET_PER_SEC}: {})",
        figures.decisions,
        figures.elapsed.as_secs_f64(),
        if rate >= TARGET_PER_SEC {
            "met"
        } else {
            "MISSED"
        },
    );
    Ok(json!({
        "bench": "policy",
        "decisions": figures.decisions,
        "secs": round(figures.elapsed.as_secs_f64(), 3),
        "decisions_per_sec": rate,
        "ns_per_decision": ns,
        "per_core_target": TARGET_PER_SEC,
        "target_met": rate >= TARGET_PER_SEC,
        "errors": figures.errors,
        "mix": {
            "allowed": figures.allowed,
            "explicit_deny": figures.explicit_deny,
            "implicit_deny": figures.implicit_deny,
        },
        "workload": {
            "statements": policy.statement_count(),
            "things": THINGS,
            "distinct_requests": cases.len(),
            "threads": 1,
        },
    }))
}

fn is_gateway(index: usize) -> bool {
    index.is_multiple_of(GATEWAY_EVERY)
}

fn thing_name(index: usize) -> String {
    if is_gateway(index) {
        format!("gateway-{index:03}")
    } else {
        format!("sensor-{index:03}")
    }
}

/// What the gateway knows about a connected, attached thing.
fn context(index: usize) -> Context {
    let name = thing_name(index);
    let thing_type = if is_gateway(index) {
        "gateway"
    } else {
        "sensor"
    };
    Context::new()
        .with_client_id(name.clone())
        .with_thing_name(name)
        .with_thing_type_name(thing_type)
        .with_thing_attribute("site", "berlin")
        .with_attached(true)
        .with_source_ip([192, 0, 2, (index % 250) as u8 + 1].into())
}

/// Every request of every thing, with the decision `explain` gives for it,
/// interleaved thing by thing so that consecutive decisions differ.
fn cases(prefix: &str, policy: &Policy, contexts: &[Context]) -> Vec<Case> {
    let mut cases = Vec::with_capacity(REQUESTS.len() * contexts.len());
    for (action, template) in REQUESTS {
        for (thing, context) in contexts.iter().enumerate() {
            let other = thing_name((thing + 1) % contexts.len());
            let resource = format!(
                "{prefix}{}",
                template
                    .replace("{t}", &thing_name(thing))
                    .replace("{o}", &other)
            );
            let expected = explain([policy], &Request::new(action, &resource, context)).decision;
            cases.push(Case {
                thing,
                action,
                resource,
                expected,
            });
        }
    }
    cases
}

fn measure(policy: &Policy, contexts: &[Context], cases: &[Case], phase: Duration) -> Figures {
    let mut figures = Figures {
        decisions: 0,
        elapsed: Duration::ZERO,
        errors: 0,
        allowed: 0,
        explicit_deny: 0,
        implicit_deny: 0,
    };
    let policies = [policy];
    let start = Instant::now();
    let mut next = 0;
    while start.elapsed() < phase {
        for _ in 0..BATCH {
            let case = &cases[next];
            next = if next + 1 == cases.len() { 0 } else { next + 1 };
            let request = Request::new(case.action, &case.resource, &contexts[case.thing]);
            let decision = decide(black_box(policies), black_box(&request));
            match decision {
                Decision::Allowed => figures.allowed += 1,
                Decision::ExplicitDeny => figures.explicit_deny += 1,
                Decision::ImplicitDeny => figures.implicit_deny += 1,
            }
            if decision != case.expected {
                figures.errors += 1;
            }
        }
        figures.decisions += BATCH as u64;
    }
    figures.elapsed = start.elapsed();
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decision each request template should get, for a sensor and for
    /// a gateway: the workload covers all three outcomes.
    const EXPECTED: [(Decision, Decision); REQUESTS.len()] = {
        use Decision::{Allowed as A, ExplicitDeny as E, ImplicitDeny as I};
        [
            (A, A),
            (A, A),
            (I, I),
            (A, A),
            (A, A),
            (E, E),
            (E, E),
            (A, A),
            (I, A),
            (I, A),
            (A, I),
            (I, I),
        ]
    };

    #[test]
    fn the_workload_decides_as_designed() {
        let prefix = format!("arn:aws:iot:{REGION}:{ACCOUNT}:");
        let policy = Policy::parse("bench-device", &POLICY.replace("ARN:", &prefix)).unwrap();
        assert_eq!(policy.statement_count(), 10);
        let contexts: Vec<Context> = (0..THINGS).map(context).collect();
        let cases = cases(&prefix, &policy, &contexts);
        assert_eq!(cases.len(), REQUESTS.len() * THINGS);
        for (index, case) in cases.iter().enumerate() {
            let (sensor, gateway) = EXPECTED[index / THINGS];
            let expected = if is_gateway(case.thing) {
                gateway
            } else {
                sensor
            };
            assert_eq!(case.expected, expected, "{} {}", case.action, case.resource);
            let request = Request::new(case.action, &case.resource, &contexts[case.thing]);
            assert_eq!(decide([&policy], &request), expected);
        }
    }

    #[test]
    fn a_short_run_reports_no_errors() {
        let options = Options {
            name: "policy".into(),
            phase: Duration::from_millis(50),
        };
        let report = run(&options).unwrap();
        assert_eq!(report["errors"], 0);
        assert!(report["decisions"].as_u64().unwrap() > 0);
        for outcome in ["allowed", "explicit_deny", "implicit_deny"] {
            assert!(report["mix"][outcome].as_u64().unwrap() > 0, "{outcome}");
        }
    }
}
