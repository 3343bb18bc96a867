//! The config service's integration tests: the real service (and the real
//! registry it reads thing groups and principals from) on 127.0.0.1, port 0,
//! driven through its gRPC API. The contract is docs/config-semantics.md.

mod support;

mod attachments;
mod authorization;
mod ca_certificates;
mod certificates;
mod event_configurations;
mod policies;
mod watch;
