//! Any input: `Policy::parse` returns (never panics, never hangs), and an
//! accepted policy can be evaluated against a few requests without panicking.

#![no_main]

use herald_policy::{Action, CertField, Context, Policy, Request, decide, explain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::parse("fuzz", text) else {
        return;
    };
    let context = Context::new()
        .with_client_id("c1")
        .with_thing_name("t1")
        .with_thing_attribute("a", "1")
        .with_subject_field(CertField::CommonName, ["cn"])
        .with_source_ip([10, 0, 0, 1].into());
    let resources = [
        "arn:aws:iot:us-east-1:123456789012:client/c1",
        "arn:aws:iot:us-east-1:123456789012:topic/a/b",
        "arn:aws:iot:us-east-1:123456789012:topicfilter/a/#",
        "",
    ];
    for resource in resources {
        for action in [
            Action::Connect,
            Action::Publish,
            Action::Subscribe,
            Action::Other("iot:X"),
        ] {
            let request = Request::new(action, resource, &context);
            let decision = decide([&policy], &request);
            assert_eq!(explain([&policy], &request).decision, decision);
        }
    }
});
