//! The error a processor returns. The exchange applies the processor's failure mode to
//! it: fail open skips the processor, fail closed answers with `status`.

/// A processor failure with the status a fail-closed exchange answers with.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ProcessorError {
    pub status: http::StatusCode,
    pub message: String,
}

impl ProcessorError {
    /// An internal failure (answers 500 when fail-closed).
    pub fn internal(message: impl Into<String>) -> Self {
        ProcessorError {
            status: http::StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }

    /// A failure of an external dependency (answers 503 when fail-closed).
    pub fn unavailable(message: impl Into<String>) -> Self {
        ProcessorError {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
        }
    }
}
