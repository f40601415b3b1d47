//! The one error type of delivery, classified for retries.

use std::time::Duration;

/// Why a delivery (or one attempt of it) failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Worth another attempt: the receiver could not be reached, or
    /// answered "try later" (HTTP 5xx or 429, SMTP 4xx).
    #[error("{0}")]
    Transient(String),
    /// The receiver refused the notification; retrying will not help.
    #[error("{0}")]
    Rejected(String),
    /// The attempt took longer than allowed.
    #[error("no answer within {} s", .0.as_secs_f64())]
    Timeout(Duration),
    /// The channel's configuration cannot be used.
    #[error("invalid channel configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Storage(#[from] sluice_storage::StorageError),
}

impl NotifyError {
    /// Whether another attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, NotifyError::Transient(_) | NotifyError::Timeout(_))
    }
}
