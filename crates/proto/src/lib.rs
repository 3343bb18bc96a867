//! Herald's gRPC contracts (generated from `proto/`), the AWS error types
//! that every service carries in its gRPC statuses, and AWS's rules for
//! tags ([`tags`]).
//!
//! **API Boundary:** field numbers are never reused; a breaking change gets a
//! new package version (`v2`).

pub mod error;
pub mod tags;

pub mod registry {
    pub mod v1 {
        #![allow(clippy::all, unreachable_pub, missing_docs)]
        tonic::include_proto!("herald.registry.v1");
    }
}

pub mod config {
    pub mod v1 {
        #![allow(clippy::all, unreachable_pub, missing_docs)]
        tonic::include_proto!("herald.config.v1");
    }
}

/// The encoded descriptors of every Herald service, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("descriptor");
