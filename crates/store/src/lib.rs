//! Durable service state in sled, with an ordered change log written in the
//! same transaction.
//!
//! A service keeps its records in one state tree under prefixed keys and
//! submits every mutation to a [`Writer`]: one thread applies mutations in
//! arrival order, commits each one's writes and events atomically, and
//! acknowledges it only after the flush that made it durable (group commit).
//! A [`ChangeLog`] replays the log from a cursor and then follows it, never
//! past what is durable.
//!
//! **Architecture Invariant:** only the writer thread writes, so sequence
//! numbers are assigned in commit order with no gaps.

mod log;
mod paging;
mod store;
mod writer;

pub use log::{ChangeLog, Record, WatchError};
pub use paging::{DEFAULT_PAGE, MAX_PAGE, Page, Paged};
pub use store::{Changes, Store, decode, internal, key, prefix};
pub use writer::{Writer, WriterThread, now_ms};
