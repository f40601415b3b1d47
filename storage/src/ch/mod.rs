//! ClickHouse: the client, the versioned schema runner, event inserts and
//! the analytics queries over the rollups.
//!
//! Every statement runs on ClickHouse 18.16 (Debian's package) as well as on
//! current releases: no `TTL`, `LowCardinality` or `DateTime64`.

pub mod alert_counts;
pub mod events;
pub mod monitoring;
pub mod operations;
// Health Monitor: retention by whole partitions (issue 12)
pub mod retention;
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
/// (`event_id`: a stream entry and an index in it, a stream entry, or a
/// tracked database's queue row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyed {
    /// `event_id` is `<stream>/<entry id>/<index>`.
    ErrorEvents,
    /// `event_id` is `<stream>/<entry id>`, or a queue row's identity.
    Operations,
}

impl Keyed {
    fn table_and_time(self) -> (&'static str, &'static str) {
        match self {
            Keyed::ErrorEvents => ("error_events", "timestamp"),
            Keyed::Operations => ("operations", "started_at"),
        }
    }

    /// What the de-duplication query matches, in SQL and for an id: for
    /// error events the entry an event came in (one name for many events,
    /// so the query stays small), otherwise the id itself.
    fn key_sql(self) -> &'static str {
        match self {
            Keyed::ErrorEvents => "replaceRegexpOne(event_id, '/[0-9]+$', '')",
            Keyed::Operations => "event_id",
        }
    }

    fn key_of(self, id: &str) -> &str {
        match self {
            Keyed::ErrorEvents => id.rsplit_once('/').map_or(id, |(entry, _)| entry),
            Keyed::Operations => id,
        }
    }
}

/// Keys per de-duplication query: ClickHouse refuses queries over its
/// `max_query_size` (256 KiB by default).
const KEYS_PER_QUERY: usize = 1000;

/// Keeps the items whose id is not yet stored in `table`, so a retried or
/// reclaimed batch inserts no twins. `ts_ms` and `tenant` give each item's
/// time and tenant, which bound the partitions and key ranges read.
pub async fn unstored<'a, T>(
    client: &Client,
    table: Keyed,
    items: Vec<&'a (String, T)>,
    ts_ms: impl Fn(&T) -> i64,
    tenant: impl Fn(&T) -> uuid::Uuid,
) -> crate::Result<Vec<&'a (String, T)>> {
    if items.is_empty() {
        return Ok(items);
    }
    let min = items.iter().map(|(_, t)| ts_ms(t)).min().unwrap_or(0);
    let max = items.iter().map(|(_, t)| ts_ms(t)).max().unwrap_or(0);
    let tenants: std::collections::BTreeSet<String> =
        items.iter().map(|(_, t)| tenant(t).to_string()).collect();
    let tenants: Vec<String> = tenants.into_iter().collect();
    let mut keys: Vec<&str> = items.iter().map(|(id, _)| table.key_of(id)).collect();
    keys.sort_unstable();
    keys.dedup();
    let (name, time) = table.table_and_time();
    let sql = format!(
        "SELECT event_id FROM {name}
         WHERE {time} >= toDateTime(?) AND {time} <= toDateTime(?)
           AND tenant_id IN (SELECT arrayJoin(arrayMap(x -> toUUID(x), ?)))
           AND has(?, {})",
        table.key_sql()
    );
    let mut present = std::collections::HashSet::new();
    for part in keys.chunks(KEYS_PER_QUERY) {
        let ids = client
            .query(&sql)
            .bind((min / 1000 - 1).max(0))
            .bind(max / 1000 + 1)
            .bind(&tenants)
            .bind(part)
            .fetch_all::<String>()
            .await?;
        present.extend(ids);
    }
    Ok(items
        .into_iter()
        .filter(|(id, _)| !present.contains(id))
        .collect())
}
