//! Quick single-core throughput check of `decide`:
//! `cargo run --release -p herald-policy --example throughput [secs]`.
//!
//! The same workload as `herald-bench policy` (a 10-statement device policy
//! with variables, conditions and two Denies; 64 attached things; a
//! round-robin mix of Connect/Publish/Subscribe/Receive/RetainPublish
//! requests), without the report file. Prints one line to stdout.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use herald_policy::{Action, Context, Decision, Policy, Request, decide, explain};

const PREFIX: &str = "arn:aws:iot:us-east-1:123456789012:";
const THINGS: usize = 64;

const POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect", "Resource": "ARN:client/${iot:ClientId}",
     "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": "ARN:topic/dt/${iot:Connection.Thing.ThingName}/*"},
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": ["ARN:topicfilter/dt/${iot:Connection.Thing.ThingName}/*",
                  "ARN:topicfilter/cmd/${iot:Connection.Thing.ThingName}/*"]},
    {"Effect": "Allow", "Action": "iot:Receive", "Resource": "ARN:topic/cmd/${iot:Connection.Thing.ThingName}/*"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": "ARN:topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"},
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": "ARN:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"},
    {"Effect": "Allow", "Action": "iot:Publish",
     "Resource": "ARN:topic/fleet/${iot:Connection.Thing.Attributes[site]}/*",
     "Condition": {"StringLike": {"iot:ClientId": "sensor-*"}}},
    {"Effect": "Allow", "Action": ["iot:Subscribe", "iot:Receive"],
     "Resource": ["ARN:topicfilter/$aws/events/presence/*", "ARN:topic/$aws/events/presence/*"],
     "Condition": {"StringEquals": {"iot:Connection.Thing.ThingTypeName": "gateway"}}},
    {"Effect": "Deny", "Action": "iot:RetainPublish", "Resource": "*"},
    {"Effect": "Deny", "Action": ["iot:Publish", "iot:Receive"], "Resource": "ARN:topic/dt/*/restricted/*"}
  ]
}"#;

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

fn name(index: usize) -> String {
    if index.is_multiple_of(8) {
        format!("gateway-{index:03}")
    } else {
        format!("sensor-{index:03}")
    }
}

#[allow(clippy::print_stdout)]
fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .map_or(3, |arg| arg.parse().expect("seconds"));
    let policy = Policy::parse("device", &POLICY.replace("ARN:", PREFIX)).expect("policy");
    let contexts: Vec<Context> = (0..THINGS)
        .map(|index| {
            let kind = if index.is_multiple_of(8) {
                "gateway"
            } else {
                "sensor"
            };
            Context::new()
                .with_client_id(name(index))
                .with_thing_name(name(index))
                .with_thing_type_name(kind)
                .with_thing_attribute("site", "berlin")
                .with_attached(true)
        })
        .collect();
    let mut cases = Vec::new();
    for (action, template) in REQUESTS {
        for (thing, context) in contexts.iter().enumerate() {
            let resource = template
                .replace("{t}", &name(thing))
                .replace("{o}", &name((thing + 1) % THINGS));
            let resource = format!("{PREFIX}{resource}");
            let request = Request::new(action, &resource, context);
            let expected = explain([&policy], &request).decision;
            cases.push((action, resource, thing, expected));
        }
    }

    let phase = Duration::from_secs(secs);
    let (mut decisions, mut allowed, mut mismatches) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < phase {
        for (action, resource, thing, expected) in &cases {
            let request = Request::new(*action, resource, &contexts[*thing]);
            let decision = decide(black_box([&policy]), black_box(&request));
            allowed += u64::from(decision == Decision::Allowed);
            mismatches += u64::from(decision != *expected);
        }
        decisions += cases.len() as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{decisions} decisions in {elapsed:.2} s: {:.0} decisions/s, {:.1} ns each ({allowed} allowed, {mismatches} mismatches)",
        decisions as f64 / elapsed,
        elapsed * 1e9 / decisions as f64,
    );
    assert_eq!(mismatches, 0, "decide disagreed with explain");
}
