//! What every Herald service binary shares: layered settings (defaults, then a
//! TOML file, then the environment), logging, the shutdown signal, mutual
//! TLS between the services ([`internal_tls`]), and what AWS IoT reads from
//! a client certificate ([`x509`]).
//!
//! Libraries never install a logger; only binaries call [`telemetry::init`].

pub mod calendar;
pub mod grpc;
pub mod internal_tls;
pub mod metrics;
pub mod partition;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod x509;
