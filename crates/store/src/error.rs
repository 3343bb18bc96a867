//! The store's own error type. Services turn it into their own errors (AWS
//! errors, for Herald's services) where they open their store.

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// sled failed, or a stored record does not decode.
    #[error("storage failure: {0}")]
    Storage(String),
    /// The writer has stopped taking mutations: the service is shutting down
    /// (or a flush failed).
    #[error("the service is shutting down")]
    ShuttingDown,
    /// A request's `nextToken` or `maxResults` is not valid.
    #[error("{0}")]
    InvalidPage(String),
}

impl StoreError {
    pub(crate) fn storage(err: impl std::fmt::Display) -> StoreError {
        StoreError::Storage(err.to_string())
    }
}
