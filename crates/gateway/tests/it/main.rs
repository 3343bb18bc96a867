//! The gateway's integration tests: the real registry and config service
//! in-process on 127.0.0.1, port 0.

mod support;

mod config_cache;
mod crash;
mod dev_credentials;
mod http_edge;
mod internal_tls;
mod mqtt;
mod mqtt5;
mod mqtt_limits;
mod mqtt_strings;
mod pump;
mod retained;
mod router;
mod sessions;
mod tls;
