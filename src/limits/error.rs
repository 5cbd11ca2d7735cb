//! The limits module's errors. A processor maps [`LimitError::Unavailable`] to 503 (the
//! shared store is down and the policy fails closed) and everything else to 500.

use std::time::Duration;

/// What can go wrong with limits.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// A limit that cannot be computed with (zero capacity, NaN rate, …).
    #[error("invalid limit: {reason}")]
    InvalidLimit { reason: String },

    /// The shared store could not answer and the failure mode is `FailClosed`.
    #[error("limit store unavailable for key {key:?} ({op}): {source}")]
    Unavailable {
        key: String,
        op: &'static str,
        #[source]
        source: StoreFailure,
    },

    /// The Redis URL does not parse.
    #[error("redis url: {source}")]
    RedisUrl {
        #[source]
        source: ::redis::RedisError,
    },

    /// Something that spawns background work was built outside a Tokio runtime.
    #[error("{what} must be created inside a Tokio runtime")]
    NoRuntime { what: &'static str },
}

/// Why one call to the shared store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreFailure {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected reply from the script: {0}")]
    Reply(String),
}

// === impl LimitError ===

impl LimitError {
    pub(crate) fn invalid(reason: impl Into<String>) -> LimitError {
        LimitError::InvalidLimit {
            reason: reason.into(),
        }
    }

    /// The shared store is down and the policy fails closed: answer 503.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, LimitError::Unavailable { .. })
    }
}
