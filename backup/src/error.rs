//! The crate's one error type, and whether retrying can help.
//!
//! The job queue retries transient failures (a dropped connection, a tool
//! killed by a signal, an SSH connection refused or reset, an object store
//! that did not answer) with backoff and gives up at once on permanent ones
//! (authentication refused, the database missing, a checksum mismatch, a
//! wrong key, an SSH host key that changed).

use std::io;

/// Whether a failed backup or restore is worth retrying as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retrying later may succeed (the connection dropped, a server restarted).
    Transient,
    /// Retrying the same request fails the same way.
    Permanent,
}

/// How a database tool (pg_dump, psql, mariadb-dump, mariadb) failed, read
/// from its exit status and the end of what it wrote to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFailure {
    /// The server refused the credentials.
    AuthenticationRefused,
    /// The named database does not exist.
    DatabaseMissing,
    /// The tool could not reach the server, lost it midway, or was killed.
    ConnectionLost,
    /// Anything else (an SQL error while restoring, a bad option, …).
    Failed,
}

impl ToolFailure {
    /// Reads the failure out of a tool's stderr; `signalled` is true when
    /// the tool ended on a signal rather than with an exit code.
    pub fn classify(stderr: &str, signalled: bool) -> Self {
        let s = stderr.to_ascii_lowercase();
        let any = |needles: &[&str]| needles.iter().any(|n| s.contains(n));
        if any(&[
            "password authentication failed",
            "authentication failed",
            "access denied",
            "no pg_hba.conf entry",
            "no password supplied",
        ]) {
            Self::AuthenticationRefused
        } else if any(&["unknown database"])
            || (s.contains("database \"") && s.contains("does not exist"))
        {
            Self::DatabaseMissing
        } else if signalled
            || any(&[
                "could not connect",
                "connection refused",
                "server closed the connection",
                "lost connection",
                "can't connect",
                "gone away",
                "could not translate host name",
                "connection timed out",
                "timeout expired",
                "terminating connection",
                "is being accessed by other users",
                "no route to host",
                "ssl syscall error",
                "eof detected",
                "connection reset",
                "broken pipe",
                "unexpected eof",
            ])
        {
            Self::ConnectionLost
        } else {
            Self::Failed
        }
    }
}

/// Everything that can go wrong in a backup or a restore.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A database tool ended with an error. `message` is the end of its
    /// stderr (tools never see passwords on their command line, so it holds
    /// none).
    #[error("{tool} failed ({status}): {message}")]
    Tool {
        tool: String,
        status: String,
        /// The exit code, when the tool ended with one.
        exit_code: Option<i32>,
        message: String,
        failure: ToolFailure,
    },
    #[error("cannot start {tool}: {source}")]
    Spawn {
        tool: String,
        #[source]
        source: io::Error,
    },
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// The stored object's bytes do not hash to the recorded checksum.
    #[error(
        "checksum mismatch: the stored object hashes to {actual}, the backup recorded {expected}"
    )]
    ChecksumMismatch { expected: String, actual: String },
    /// Authentication of an encrypted object failed: wrong key, corrupted,
    /// truncated or reordered chunks.
    #[error("cannot decrypt the backup: {0}")]
    Decrypt(String),
    /// The object was encrypted under a master key id the keyring lacks.
    #[error("the backup was encrypted under master key {0:?}, which is not configured")]
    UnknownKey(String),
    /// A decompression error: the object is not the compression it claims.
    #[error("cannot decompress the backup: {0}")]
    Decompress(String),
    /// A bad argument (database name, object key, checksum text).
    #[error("invalid {0}")]
    Invalid(String),
    /// The SSH server presented a host key other than the one expected for
    /// it (both SHA-256 fingerprints, OpenSSH `SHA256:…` form): possibly a
    /// man in the middle, or a reinstalled server. Permanent until someone
    /// checks and updates the stored fingerprint.
    #[error(
        "ssh host key mismatch for {host}: expected {expected}, the server presented {presented}"
    )]
    HostKeyMismatch {
        host: String,
        expected: String,
        presented: String,
    },
    /// The SSH server refused the credentials (password or private key).
    #[error("ssh authentication refused for {user}@{host}")]
    SshAuthRefused { user: String, host: String },
    /// The SSH connection failed: refused, reset, timed out, dropped
    /// (transient), or the server and this client share no algorithm
    /// (permanent).
    #[error("ssh {host}: {message}")]
    Ssh {
        host: String,
        message: String,
        class: ErrorClass,
    },
    /// Masking refused the rules or could not mask the dump safely (a
    /// rule the column's type cannot take, an unparseable dump).
    #[error(transparent)]
    Mask(#[from] crate::mask::MaskError),
    /// Something this crate does not do (yet).
    #[error("not supported: {0}")]
    Unsupported(String),
}

impl BackupError {
    /// Whether the job queue should retry.
    pub fn class(&self) -> ErrorClass {
        match self {
            BackupError::Tool { failure, .. } => match failure {
                ToolFailure::ConnectionLost => ErrorClass::Transient,
                ToolFailure::AuthenticationRefused
                | ToolFailure::DatabaseMissing
                | ToolFailure::Failed => ErrorClass::Permanent,
            },
            BackupError::Spawn { source, .. } => match source.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => ErrorClass::Permanent,
                _ => ErrorClass::Transient,
            },
            BackupError::Io(_) => ErrorClass::Transient,
            BackupError::Ssh { class, .. } => *class,
            BackupError::HostKeyMismatch { .. } | BackupError::SshAuthRefused { .. } => {
                ErrorClass::Permanent
            }
            BackupError::Store(e) => match e {
                object_store::Error::NotFound { .. }
                | object_store::Error::InvalidPath { .. }
                | object_store::Error::NotSupported { .. }
                | object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. } => ErrorClass::Permanent,
                _ => ErrorClass::Transient,
            },
            BackupError::ChecksumMismatch { .. }
            | BackupError::Decrypt(_)
            | BackupError::UnknownKey(_)
            | BackupError::Decompress(_)
            | BackupError::Invalid(_)
            | BackupError::Mask(_)
            | BackupError::Unsupported(_) => ErrorClass::Permanent,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }
}

pub type Result<T, E = BackupError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_tool_stderr() {
        let c = ToolFailure::classify;
        assert_eq!(
            c("pg_dump: error: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password authentication failed for user \"x\"", false),
            ToolFailure::AuthenticationRefused
        );
        assert_eq!(
            c("pg_dump: error: connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  database \"nope\" does not exist", false),
            ToolFailure::DatabaseMissing
        );
        assert_eq!(
            c("mariadb-dump: Got error: 1049: \"Unknown database 'nope'\" when selecting the database", false),
            ToolFailure::DatabaseMissing
        );
        assert_eq!(
            c("mariadb-dump: Got error: 1045: \"Access denied for user 'x'@'localhost' (using password: YES)\"", false),
            ToolFailure::AuthenticationRefused
        );
        assert_eq!(
            c("pg_dump: error: connection to server at \"127.0.0.1\", port 1 failed: Connection refused", false),
            ToolFailure::ConnectionLost
        );
        assert_eq!(
            c("pg_dump: error: Dumping the contents of table \"t\" failed: PQgetResult() failed.\nserver closed the connection unexpectedly", false),
            ToolFailure::ConnectionLost
        );
        assert_eq!(
            c("pg_dump: error: Dumping the contents of table \"big\" failed: PQgetCopyData() failed.\npg_dump: detail: Error message from server: SSL SYSCALL error: EOF detected", false),
            ToolFailure::ConnectionLost
        );
        assert_eq!(c("", true), ToolFailure::ConnectionLost);
        assert_eq!(
            c("ERROR:  syntax error at or near \"x\"", false),
            ToolFailure::Failed
        );
        // A missing relation is an SQL error, not a missing database.
        assert_eq!(
            c("ERROR:  relation \"t\" does not exist", false),
            ToolFailure::Failed
        );
    }
}
