//! herald-policy's integration tests: documents in, decisions out, through
//! the public API only.

mod support;

mod conditions;
mod explain;
mod parse;
mod properties;
mod spec;
mod variables;
