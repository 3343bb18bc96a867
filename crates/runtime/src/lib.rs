//! What every Herald service binary shares: layered settings (defaults, then a
//! TOML file, then the environment), logging, and the shutdown signal.
//!
//! Libraries never install a logger; only binaries call [`telemetry::init`].

pub mod grpc;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
