//! Why a job failed, and whether trying again can help.

use sluice_backup::BackupError;
use sluice_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt after a pause (a dropped connection, a
    /// server restarting, Sluice's own database briefly away).
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help (authentication refused, a database that does
    /// not exist, a corrupt object, a bad masking rule).
    #[error("{0}")]
    Permanent(String),
}

impl JobError {
    pub fn is_transient(&self) -> bool {
        matches!(self, JobError::Transient(_))
    }

    pub fn message(&self) -> &str {
        match self {
            JobError::Transient(m) | JobError::Permanent(m) => m,
        }
    }
}

impl From<BackupError> for JobError {
    fn from(e: BackupError) -> Self {
        if e.is_transient() {
            JobError::Transient(e.to_string())
        } else {
            JobError::Permanent(e.to_string())
        }
    }
}

impl From<StorageError> for JobError {
    fn from(e: StorageError) -> Self {
        JobError::Transient(format!("Sluice's database: {e}"))
    }
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        JobError::Transient(format!("Sluice's database: {e}"))
    }
}
