//! Durable service state in sled (embedded, the default) or PostgreSQL
//! (beyond one machine), with an ordered change log written in the same
//! transaction.
//!
//! A service keeps its records in one state tree under prefixed keys and
//! submits every mutation to a [`Writer`]: one thread applies mutations in
//! arrival order, commits each one's writes and events atomically, and
//! acknowledges it only after the flush that made it durable (group commit).
//! A [`ChangeLog`] replays the log from a cursor and then follows it, never
//! past what is durable.
//!
//! Failures are [`StoreError`]s. A service that speaks another error type
//! gives its store the conversion once ([`Store::with_errors`]); reads,
//! [`Changes`] and [`Writer::mutate`] then fail with that type, so that a
//! mutation's own checks and its storage failures share one error type.
//!
//! **Architecture Invariant:** only the writer thread writes, so sequence
//! numbers are assigned in commit order with no gaps.

mod error;
mod log;
mod paging;
mod postgres;
mod store;
mod writer;

pub use error::StoreError;
pub use log::{ChangeLog, Record, WatchError};
pub use paging::{DEFAULT_PAGE, MAX_PAGE, Page, Paged};
pub use postgres::Backend;
pub use store::{Changes, Store, key, prefix};
pub use writer::{Writer, WriterThread, now_ms};

pub mod tags;
