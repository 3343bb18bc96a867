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
//! - [`router`]: rumqttd's Router as the pub/sub engine for ordinary
//!   topics, one local link per session (the only module using rumqttd).
//! - [`session`]: one MQTT 3.1.1 or 5 client session over any stream:
//!   CONNECT, policy checks per packet and per delivery, lifecycle events,
//!   persistent sessions.
//! - [`persist`]: persistent sessions as the gateway stores them.
//! - [`retained`]: retained messages, bounded, in the gateway's data folder.
//! - `replay`: a session's own read of the registry's change log.
//! - [`server`]: the plain-TCP listener and the session tracker the TLS
//!   listener uses too.

mod authz;
pub mod bus;
mod codec;
mod connect;
mod context;
pub mod lifecycle;
pub mod persist;
mod principal;
mod replay;
pub mod retained;
pub mod router;
pub mod server;
pub mod session;
pub mod tls;
pub mod topic;
