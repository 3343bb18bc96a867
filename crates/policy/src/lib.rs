//! Herald's AWS IoT policy engine: a pure library (no I/O, no async).
//!
//! [`Policy::parse`] validates a policy document (rejecting it with a
//! [`PolicyError::Malformed`] that names the problem) and compiles it once:
//! actions become bit masks, resources and condition values become glob
//! token lists with variable slots, condition keys become enum values.
//! [`decide`] then answers a [`Request`] against a set of policies, with
//! IAM's rule: an explicit Deny in any policy wins, else an Allow in any
//! policy allows, else the request is implicitly denied. [`explain`] gives
//! the same answer with the policies that decided it, for `TestAuthorization`.
//!
//! ```
//! use herald_policy::{Action, Context, Decision, Policy, Request, arn, decide};
//!
//! let policy = Policy::parse("p", r#"{
//!     "Version": "2012-10-17",
//!     "Statement": [{
//!         "Effect": "Allow",
//!         "Action": "iot:Subscribe",
//!         "Resource": "arn:aws:iot:us-east-1:123456789012:topicfilter/my/${iot:ClientId}/*"
//!     }]
//! }"#)?;
//! let context = Context::new().with_client_id("c1");
//! let resource = arn::topic_filter("us-east-1", "123456789012", "my/c1/#");
//! let request = Request::new(Action::Subscribe, &resource, &context);
//! assert_eq!(decide([&policy], &request), Decision::Allowed);
//! # Ok::<(), herald_policy::PolicyError>(())
//! ```
//!
//! Matching rules (AWS IoT Core Developer Guide: "AWS IoT Core policy actions", "AWS IoT Core policy variables"):
//! - `*` matches any sequence (including `/`), `?` one character; everything
//!   else is literal, including MQTT's `+` and `#` and the `$` of `$aws`.
//!   Patterns are anchored over the whole ARN and case-sensitive; action
//!   names compare ignoring ASCII case.
//! - `${name}` is a policy variable (version 2012-10-17 only); its value is
//!   matched literally. `${*}`, `${?}` and `${$}` stand for the literal
//!   character. A `$` not followed by `{` is literal.
//! - A statement using a variable the context can't resolve doesn't match,
//!   whether it allows or denies.
//!
//! Reading order: `policy` (documents), `action`, `glob`, `key`, `context`,
//! `condition`, `eval`, `arn`.

mod error;
mod json;

mod action;
mod condition;
mod context;
mod eval;
mod glob;
mod key;
mod policy;

pub mod arn;

pub use action::Action;
pub use context::{CertField, Context};
pub use error::PolicyError;
pub use eval::{Decision, Explanation, Request, decide, explain};
pub use policy::{Effect, MAX_DOCUMENT_CHARS, Policy, Version};
