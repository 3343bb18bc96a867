//! The parts of the gateway that its integration tests (`tests/it`) and the
//! benches (`crates/bench`) drive directly, below [`run`](crate::run): the
//! bus, the routing engine, the MQTT listener with its session settings and
//! authenticator, the TLS acceptor, the config cache and the event pump.
//!
//! Every other module is private to the crate; this list is the deliberate
//! surface for tests, not an API for applications, and may change with any
//! release. The fuzz targets have theirs in [`fuzzing`](crate::fuzzing).

/// The `$aws` bus and its topic rules.
pub mod bus {
    pub use crate::bus::topic;
    pub use crate::bus::{Bus, Delivery, QoS, SubscriberId};
}

/// The gateway's copy of the config service's policies and certificates.
pub mod config_cache {
    pub use crate::config_cache::{CertificateStatus, ConfigCache};
}

/// The registry's change log, rendered and gated onto the bus.
pub mod events {
    pub use crate::events::EventPump;
}

/// The MQTT listener and what a session is built from.
pub mod mqtt {
    pub use crate::mqtt::lifecycle::VersionCounter;
    pub use crate::mqtt::persist::SessionStore;
    pub use crate::mqtt::server::{Sessions, serve_tcp};
    pub use crate::mqtt::session::{
        Authenticator, PasswordCredential, Principal, SessionContext, SessionSettings,
        password_authenticator,
    };
}

/// Clients naming the (account, region) partition of their calls.
pub mod partition {
    pub use crate::partition::{Tagged, Tagger, tagged};
}

/// The embedded routing engine (rumqttd's router) behind its adapter.
pub mod router {
    pub use crate::mqtt::router::{Delivery, Router, RouterError, RouterSettings};
}

/// The MQTT/TLS listener: server configuration, client certificates, accept loop.
pub mod tls {
    pub use crate::mqtt::tls::{
        CertificatePrincipal, Directory, TlsAcceptor, TlsRejection, accept_loop, certificate_id,
        server_config,
    };
}
