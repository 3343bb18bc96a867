//! The gateway's MQTT session layer (MQTT 3.1.1 and MQTT 5), from the
//! bottom up:
//!
//! - [`lifecycle`]: the `$aws/events/presence/...` and
//!   `$aws/events/subscriptions/...` events (topics, exact payloads,
//!   `disconnectReason`, `versionNumber`).
//! - `codec`: the only module that touches packet bytes and rumqttd's codec
//!   types: decoding with every check MQTT asks for, the connection's
//!   buffered wire, CONNACK and PUBLISH encoding.
//! - `principal`: who a connection acts for.
//! - [`router`]: rumqttd's router as the engine for ordinary topics, one
//!   local link per session (the only module using rumqttd's router).
//! - [`retained`]: retained messages, bounded, in the gateway's data folder.
//! - [`persist`]: persistent sessions as the gateway stores them.
//! - `replay`: a session's own read of the registry's change log.
//! - `context`: what every session shares (settings, the live and away
//!   sessions).
//! - `cluster`: the other gateway replicas over NATS (ordinary messages,
//!   retained messages and the `$aws` bus's own traffic both ways; client
//!   ids claimed in a JetStream bucket).
//! - `authz`: the policy checks of one connection.
//! - `connect`: the CONNECT handshake and authentication.
//! - `shadow`: the Device Shadow service's MQTT topics, answered by the
//!   registry and published on the bus.
//! - [`session`]: the state machine of an established session.
//! - [`server`]: the plain-TCP listener and the session tracker the TLS
//!   listener uses too; [`tls`]: the TLS listener.
//!
//! The `$aws` bus and the topic rules live below this module (and below
//! `events`), in `crate::bus`; they are re-exported here as [`bus`] and
//! [`topic`].

mod authz;
pub(crate) mod cluster;
mod codec;
mod connect;
mod context;
pub(crate) mod jitr;
mod jobs;
pub(crate) mod lifecycle;
pub(crate) mod partitions;
pub(crate) mod persist;
mod principal;
mod replay;
pub(crate) mod retained;
pub(crate) mod router;
pub(crate) mod server;
pub(crate) mod session;
mod shadow;
pub(crate) mod tls;
