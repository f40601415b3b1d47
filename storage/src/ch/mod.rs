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

/// The tables whose rows carry the identity of what they were made from
/// (`event_id`: a stream entry, or a tracked database's queue row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyed {
    ErrorEvents,
    Operations,
}

impl Keyed {
    fn table_and_time(self) -> (&'static str, &'static str) {
        match self {
            Keyed::ErrorEvents => ("error_events", "timestamp"),
            Keyed::Operations => ("operations", "started_at"),
        }
    }
}

/// Keeps the items whose id is not yet stored in `table`, so a retried or
/// reclaimed batch inserts no twins. `ts_ms` gives each item's time, which
/// bounds the partitions the check reads.
pub async fn unstored<'a, T>(
    client: &Client,
    table: Keyed,
    items: Vec<&'a (String, T)>,
    ts_ms: impl Fn(&T) -> i64,
) -> crate::Result<Vec<&'a (String, T)>> {
    if items.is_empty() {
        return Ok(items);
    }
    let ids: Vec<&str> = items.iter().map(|(id, _)| id.as_str()).collect();
    let min = items.iter().map(|(_, t)| ts_ms(t)).min().unwrap_or(0);
    let max = items.iter().map(|(_, t)| ts_ms(t)).max().unwrap_or(0);
    let (name, time) = table.table_and_time();
    let present: std::collections::HashSet<String> = client
        .query(&format!(
            "SELECT event_id FROM {name}
             WHERE {time} >= toDateTime(?) AND {time} <= toDateTime(?) AND has(?, event_id)"
        ))
        .bind((min / 1000 - 1).max(0))
        .bind(max / 1000 + 1)
        .bind(ids)
        .fetch_all::<String>()
        .await?
        .into_iter()
        .collect();
    Ok(items
        .into_iter()
        .filter(|(id, _)| !present.contains(id))
        .collect())
}
