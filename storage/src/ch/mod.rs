//! ClickHouse: the client, the versioned schema runner, event inserts and
//! the analytics queries over the rollups.
//!
//! Every statement runs on ClickHouse 18.16 (Debian's package) as well as on
//! current releases: no `TTL`, `LowCardinality` or `DateTime64`.

pub mod events;
pub mod operations;
pub mod schema;

use clickhouse::Client;

/// Where ClickHouse is and which database Sluice owns there.
#[derive(Debug, Clone)]
pub struct ChConfig {
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

/// A client bound to Sluice's database, with schema validation off so it
/// also talks to servers that predate `RowBinaryWithNamesAndTypes`.
pub fn client(cfg: &ChConfig) -> Client {
    server_client(cfg).with_database(cfg.database.clone())
}

fn server_client(cfg: &ChConfig) -> Client {
    let mut c = Client::default()
        .with_url(cfg.url.clone())
        .with_validation(false);
    if let Some(u) = &cfg.user {
        c = c.with_user(u.clone());
    }
    if let Some(p) = &cfg.password {
        c = c.with_password(p.clone());
    }
    c
}
