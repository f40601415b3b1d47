//! From a stored server to what the backup library needs: the engine, the
//! transport its tools run through (`local`, `ssh`, `docker` over SSH), and
//! the database connection. Secrets are opened from the secret box only
//! here, for a tool's environment or the SSH handshake.
//!
//! SSH host keys are trusted on first use: with none recorded, the key the
//! server presents is recorded ([`Endpoint::remember_host_key`]); after
//! that, a server presenting another key is refused.

use std::sync::Arc;
use std::time::Duration;

use sluice_backup::transport::Local;
use sluice_backup::{Connection, Docker, EngineKind, Ssh, SshAuth, SshConfig, Transport};
use sluice_storage::pg::servers::{self, Server};
use sluice_storage::secrets::SecretBox;

/// How long an SSH connection may take to open.
const SSH_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A server's database, ready for the backup library.
pub struct Endpoint {
    pub server_id: i64,
    pub kind: EngineKind,
    pub transport: Box<dyn Transport>,
    pub connection: Connection,
    /// The SSH connection under an `ssh` or `docker` transport.
    ssh: Option<Arc<Ssh>>,
    /// Whether a host key was already recorded for this server.
    pinned: bool,
}

impl Endpoint {
    /// `postgresql` or `mysql`, as the API names engines.
    pub fn db_type(&self) -> &'static str {
        db_type_name(self.kind)
    }

    /// Records the host key the SSH server presented, when none was
    /// recorded before (trust on first use). Call after a successful use.
    pub async fn remember_host_key(&self, pg: &sqlx::PgPool) {
        remember(pg, self.server_id, self.ssh.as_deref(), self.pinned).await;
    }
}

/// Where a server's commands run, whether or not it has a database: the
/// transport alone (for saved shell commands).
pub struct Target {
    pub server_id: i64,
    pub transport: Box<dyn Transport>,
    ssh: Option<Arc<Ssh>>,
    pinned: bool,
}

impl Target {
    /// As [`Endpoint::remember_host_key`].
    pub async fn remember_host_key(&self, pg: &sqlx::PgPool) {
        remember(pg, self.server_id, self.ssh.as_deref(), self.pinned).await;
    }
}

async fn remember(pg: &sqlx::PgPool, server_id: i64, ssh: Option<&Ssh>, pinned: bool) {
    let (Some(ssh), false) = (ssh, pinned) else {
        return;
    };
    if let Some(fp) = ssh.seen_host_key() {
        match servers::record_host_key(pg, server_id, &fp).await {
            Ok(()) => {
                tracing::info!(server_id, fingerprint = %fp, "ssh host key recorded (first use)")
            }
            Err(e) => {
                tracing::warn!(server_id, error = %e, "ssh host key not recorded")
            }
        }
    }
}

type Transports = (Box<dyn Transport>, Option<Arc<Ssh>>);

/// The server's transport (`local`, `ssh`, `docker` over SSH).
fn transport_of(
    secrets: &SecretBox,
    s: &Server,
    host_key: Option<&str>,
) -> Result<Transports, String> {
    let f = &s.fields;
    Ok(match f.kind.as_str() {
        "ssh" => {
            let s = ssh(secrets, s, host_key)?;
            (Box::new(Arc::clone(&s)), Some(s))
        }
        "docker" => {
            let container = f
                .container
                .clone()
                .filter(|c| !c.is_empty())
                .ok_or("a docker server needs `container`")?;
            let s = ssh(secrets, s, host_key)?;
            let d = Docker::new(Arc::clone(&s), container).map_err(|e| e.to_string())?;
            (Box::new(d), Some(s))
        }
        _ => (Box::new(Local), None),
    })
}

/// The server's [`Target`], or a sentence saying why it has none usable.
pub fn resolve_target(
    secrets: &SecretBox,
    s: &Server,
    host_key: Option<&str>,
) -> Result<Target, String> {
    let (transport, ssh) = transport_of(secrets, s, host_key)?;
    Ok(Target {
        server_id: s.id,
        transport,
        ssh,
        pinned: host_key.is_some(),
    })
}

/// Loads what [`resolve_target`] needs about a server and resolves it.
pub async fn load_target(
    pg: &sqlx::PgPool,
    secrets: &SecretBox,
    s: &Server,
) -> Result<Result<Target, String>, sluice_storage::StorageError> {
    let key = if s.fields.kind == "local" {
        None
    } else {
        servers::host_key(pg, s.id).await?
    };
    Ok(resolve_target(secrets, s, key.as_deref()))
}

pub fn db_type_name(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::MySql => "mysql",
        EngineKind::Postgres => "postgresql",
    }
}

fn open(
    secrets: &SecretBox,
    sealed: &Option<Vec<u8>>,
    what: &str,
) -> Result<Option<String>, String> {
    match sealed {
        None => Ok(None),
        Some(b) => secrets.open(b).map(Some).map_err(|_| {
            format!("the stored {what} cannot be decrypted with this SLUICE_SECRET_KEY")
        }),
    }
}

fn ssh(secrets: &SecretBox, s: &Server, host_key: Option<&str>) -> Result<Arc<Ssh>, String> {
    let f = &s.fields;
    let host = f
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .ok_or("an ssh or docker server needs `host`")?;
    let user = f
        .ssh_username
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or("an ssh or docker server needs `credentials.username`")?;
    let password = open(secrets, &f.ssh_password_sealed, "ssh password")?;
    let key = open(secrets, &f.ssh_key_sealed, "ssh key")?;
    let auth = match (key, password) {
        (Some(pem), passphrase) => SshAuth::PrivateKey { pem, passphrase },
        (None, Some(p)) => SshAuth::Password(p),
        (None, None) => {
            return Err(
                "an ssh or docker server needs `credentials.password` or `credentials.ssh_key`"
                    .into(),
            )
        }
    };
    let port = f.port.and_then(|p| u16::try_from(p).ok()).unwrap_or(22);
    let mut cfg = SshConfig::new(host, user, auth)
        .port(port)
        .connect_timeout(SSH_CONNECT_TIMEOUT);
    if let Some(k) = host_key {
        cfg = cfg.expected_host_key(k);
    }
    Ssh::new(cfg).map(Arc::new).map_err(|e| e.to_string())
}

/// The server's endpoint, or a sentence saying why it has none usable.
/// `host_key` is the fingerprint recorded for it ([`servers::host_key`]).
pub fn resolve(
    secrets: &SecretBox,
    s: &Server,
    host_key: Option<&str>,
) -> Result<Endpoint, String> {
    let f = &s.fields;
    let (Some(t), Some(host), Some(user)) = (&f.db_type, &f.db_host, &f.db_username) else {
        return Err("this server has no database configured (set `database`)".into());
    };
    let password = open(secrets, &f.db_password_sealed, "database password")?;
    let kind = if t == "mysql" {
        EngineKind::MySql
    } else {
        EngineKind::Postgres
    };
    let default_port = if kind == EngineKind::MySql {
        3306
    } else {
        5432
    };
    let port = f
        .db_port
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(default_port);
    let (transport, ssh) = transport_of(secrets, s, host_key)?;
    Ok(Endpoint {
        server_id: s.id,
        kind,
        transport,
        connection: Connection {
            host: host.clone(),
            port,
            user: user.clone(),
            password: password.filter(|p| !p.is_empty()),
        },
        ssh,
        pinned: host_key.is_some(),
    })
}

/// Loads what [`resolve`] needs about a server and resolves it.
pub async fn load(
    pg: &sqlx::PgPool,
    secrets: &SecretBox,
    s: &Server,
) -> Result<Result<Endpoint, String>, sluice_storage::StorageError> {
    let key = if s.fields.kind == "local" {
        None
    } else {
        servers::host_key(pg, s.id).await?
    };
    Ok(resolve(secrets, s, key.as_deref()))
}
