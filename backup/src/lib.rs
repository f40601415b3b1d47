//! Sluice's backups, as a library that knows nothing of HTTP or job queues.
//!
//! One job: **dump → compress → encrypt → checksum → store**, and the
//! reverse, **fetch → verify checksum → decrypt → decompress → restore**.
//!
//! - [`engine`]: PostgreSQL (`pg_dump` custom format / `pg_restore`) and
//!   MySQL/MariaDB (`mariadb-dump` / `mariadb`) behind the [`Engine`] trait.
//! - [`transport`]: where those tools run, behind the [`Transport`] trait:
//!   [`Local`] (a child process), [`Ssh`] (another host, one SSH connection
//!   per transport, host keys pinned or trusted on first use) and [`Docker`]
//!   (`docker exec` over that SSH connection). Passwords go through the
//!   tools' environment, never their command line, remote ones included.
//! - [`compression`]: none, gzip, zstd, streaming.
//! - [`crypto`]: envelope encryption, AES-256-GCM in an authenticated
//!   chunked stream (truncation and reordering detected), master keys by id.
//! - [`store`]: `object_store` (a local directory by default, an
//!   S3-compatible bucket by configuration: [`BackupStore::from_url`],
//!   [`BackupStore::from_env`]), written by multipart upload, never visible
//!   under its name before it completed; presigned download URLs for S3.
//! - [`mask`]: column masking rules ([`MaskingRules`]) applied while a
//!   restore's SQL streams into the database, so unmasked values never
//!   reach it.
//! - [`run_backup`] and [`run_restore`]: the two pipelines. A restore checks
//!   the stored checksum before it touches the target, replays into a
//!   scratch database and swaps it in only when everything succeeded.
//!
//! Guarantees: memory stays bounded whatever the database's size (chunks of
//! 64 KiB between stages, a few 5 MiB upload parts); nothing is buffered
//! whole in memory or in a temporary file. Errors are typed
//! ([`BackupError`]) and classified transient or permanent for retries.
//! Progress percentages are the caller's (it gets bytes read).

pub mod backup;
pub mod compression;
pub mod crypto;
pub mod engine;
pub mod error;
pub mod mask;
pub mod restore;
pub mod store;
pub mod transport;

pub use backup::{run_backup, BackupOutcome, BackupRequest, ProgressFn};
pub use compression::Compression;
pub use crypto::Keyring;
pub use engine::{Connection, DatabaseInfo, Engine, EngineKind, MaskedRestore};
pub use error::{BackupError, ErrorClass, Result, ToolFailure};
pub use mask::{MaskError, MaskingRules, Strategy};
pub use restore::{run_restore, RestoreOutcome, RestoreRequest};
pub use store::{BackupStore, S3Options};
pub use transport::{Docker, Local, Process, Ssh, SshAuth, SshConfig, ToolCommand, Transport};
