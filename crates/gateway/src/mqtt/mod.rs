//! The pure building blocks of the gateway's MQTT session layer; a later
//! piece wires them to sockets.
//!
//! - [`topic`]: topic name and filter validation under the AWS IoT limits,
//!   and MQTT matching with the `$` rule of MQTT 3.1.1 §4.7.2.
//! - [`lifecycle`]: the `$aws/events/presence/...` and
//!   `$aws/events/subscriptions/...` events (topics, exact payloads,
//!   `disconnectReason`, `versionNumber`).
//! - [`bus`]: the gateway-owned `$aws` topic bus, with a per-subscriber
//!   bounded queue and an `iot:Receive` check on every delivery.

pub mod bus;
pub mod lifecycle;
pub mod topic;
