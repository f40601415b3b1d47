//! From a stored server to what the backup library needs: the engine, the
//! transport its tools run through, and the database connection (its
//! password opened from the secret box only here, for the tool's
//! environment).

use sluice_backup::transport::Local;
use sluice_backup::{Connection, EngineKind, Transport};
use sluice_storage::pg::servers::Server;
use sluice_storage::secrets::SecretBox;

/// A server's database, ready for the backup library.
pub struct Endpoint {
    pub kind: EngineKind,
    pub transport: Box<dyn Transport>,
    pub connection: Connection,
}

impl Endpoint {
    /// `postgresql` or `mysql`, as the API names engines.
    pub fn db_type(&self) -> &'static str {
        db_type_name(self.kind)
    }
}

pub fn db_type_name(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::MySql => "mysql",
        EngineKind::Postgres => "postgresql",
    }
}

/// The server's endpoint, or a sentence saying why it has none usable.
pub fn resolve(secrets: &SecretBox, s: &Server) -> Result<Endpoint, String> {
    let f = &s.fields;
    let (Some(t), Some(host), Some(user)) = (&f.db_type, &f.db_host, &f.db_username) else {
        return Err("this server has no database configured (set `database`)".into());
    };
    let open = |sealed: &Option<Vec<u8>>, what: &str| -> Result<Option<String>, String> {
        match sealed {
            None => Ok(None),
            Some(b) => secrets.open(b).map(Some).map_err(|_| {
                format!("the stored {what} cannot be decrypted with this SLUICE_SECRET_KEY")
            }),
        }
    };
    let password = open(&f.db_password_sealed, "database password")?;
    let kind = if t == "mysql" {
        EngineKind::MySql
    } else {
        EngineKind::Postgres
    };
    let default_port = if kind == EngineKind::MySql { 3306 } else { 5432 };
    let port = f
        .db_port
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(default_port);
    let transport: Box<dyn Transport> = match f.kind.as_str() {
        "local" => Box::new(Local),
        other => {
            return Err(format!(
                "the {other} transport is not built yet: Sluice can only reach the databases of local servers today"
            ))
        }
    };
    Ok(Endpoint {
        kind,
        transport,
        connection: Connection {
            host: host.clone(),
            port,
            user: user.clone(),
            password: password.filter(|p| !p.is_empty()),
        },
    })
}
