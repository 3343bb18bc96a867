//! The registry's integration tests: the real service on 127.0.0.1, port 0,
//! driven through its gRPC API.

mod support;

mod billing;
mod changes;
mod crash;
mod dynamic;
mod groups;
mod indexing;
mod jobs;
mod membership;
mod partitions;
mod principals;
mod shadow_index;
mod shadows;
mod thing_types;
mod things;
