//! The gateway's integration tests: the real registry and config service
//! in-process on 127.0.0.1, port 0.

mod support;

mod config_cache;
mod crash;
mod internal_tls;
mod mqtt;
mod mqtt5;
mod pump;
mod sessions;
mod tls;
