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

    /// The Redis client could not be built (a URL that does not parse, …).
    #[error("redis client: {source}")]
    RedisClient {
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
    #[error("redis failed less than {0:?} ago; not tried again yet")]
    BackingOff(Duration),
}

// === impl StoreFailure ===

impl StoreFailure {
    /// Redis answered and refused the operation itself (a key of the wrong type, a
    /// script error, a reply we cannot read): retrying the same operation cannot help.
    /// Everything else (I/O, timeouts, `LOADING`, `READONLY`, …) is worth retrying.
    pub fn is_rejection(&self) -> bool {
        use ::redis::{ErrorKind, ServerErrorKind};
        match self {
            StoreFailure::Timeout(_) | StoreFailure::BackingOff(_) => false,
            StoreFailure::Reply(_) => true,
            StoreFailure::Redis(e) => matches!(
                e.kind(),
                ErrorKind::Server(ServerErrorKind::ResponseError)
                    | ErrorKind::Extension
                    | ErrorKind::UnexpectedReturnType
                    | ErrorKind::Parse
            ),
        }
    }
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
