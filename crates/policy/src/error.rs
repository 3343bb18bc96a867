//! The crate's error type.

/// Why a policy document was rejected.
///
/// There is one case, AWS's `MalformedPolicyException`; its message names the
/// problem and, where it has one, where in the document it is (a JSON line
/// and column, or a path such as `Statement[1].Condition`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The document is not a valid policy.
    #[error("malformed policy: {0}")]
    Malformed(String),
}

impl PolicyError {
    /// The message without the `malformed policy: ` prefix.
    pub fn message(&self) -> &str {
        match self {
            PolicyError::Malformed(message) => message,
        }
    }
}

/// Shorthand for building a [`PolicyError::Malformed`].
pub(crate) fn malformed(message: impl Into<String>) -> PolicyError {
    PolicyError::Malformed(message.into())
}
