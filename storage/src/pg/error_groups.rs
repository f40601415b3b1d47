//! Error groups: one row per tenant and fingerprint, upserted by the
//! workers a batch at a time and read by the API.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::model::{ErrorEvent, ErrorGroup};
use crate::Result;

/// A context key, borrowed from the context's text when it has no escapes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(
                self,
                v: &'de str,
            ) -> std::result::Result<Key<'a>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// Contexts merged key by key: values stay as their JSON text.
type Merged<'a> = BTreeMap<Key<'a>, &'a RawValue>;

fn merged_json(m: &Merged<'_>) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // A str always serializes.
        out.push_str(&serde_json::to_string(k.0.as_ref()).unwrap_or_default());
        out.push(':');
        out.push_str(v.get());
    }
    out.push('}');
    out
}

/// One batch's worth of occurrences of a group, folded together.
#[derive(Debug, Clone)]
struct Fold<'a> {
    latest: &'a ErrorEvent<'a>,
    count: i64,
    first_ms: i64,
    context: Option<Merged<'a>>,
}

/// Folds events per group: count, first and last seen, the newest event's
/// fields, and contexts merged key by key (newer values win). Sorted by
/// group id, so concurrent upserts lock rows in one order and never deadlock.
fn fold<'a>(events: impl Iterator<Item = &'a ErrorEvent<'a>>) -> Vec<Fold<'a>> {
    let mut by_group: HashMap<Uuid, Fold<'a>> = HashMap::new();
    let mut sorted: Vec<&ErrorEvent<'a>> = events.collect();
    sorted.sort_by_key(|e| e.ts_ms);
    for ev in sorted {
        let f = by_group.entry(ev.group_id).or_insert(Fold {
            latest: ev,
            count: 0,
            first_ms: ev.ts_ms,
            context: None,
        });
        f.count += 1;
        f.latest = ev;
        // Ingest stores only JSON objects here; anything else is skipped.
        // Events come oldest first, so a newer value replaces an older one.
        let parsed = ev
            .context
            .as_deref()
            .and_then(|c| serde_json::from_str::<Merged<'a>>(c).ok());
        if let Some(map) = parsed {
            match &mut f.context {
                Some(merged) => merged.extend(map),
                None => f.context = Some(map),
            }
        }
    }
    let mut folds: Vec<Fold<'a>> = by_group.into_values().collect();
    folds.sort_by_key(|f| f.latest.group_id);
    folds
}

fn ts(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// One stream entry's events, as the workers hand them over.
#[derive(Debug, Clone, Copy)]
pub struct EntryEvents<'b, 'e> {
    pub stream: &'b str,
    pub entry_id: &'b str,
    pub events: &'b [ErrorEvent<'e>],
}

/// Applies stream entries to `error_groups` exactly once: the entry ids
/// are recorded in the same transaction, and entries already recorded (a
/// reclaimed batch) are skipped. Returns how many events were new.
pub async fn apply_batch(pool: &PgPool, entries: &[EntryEvents<'_, '_>]) -> Result<usize> {
    if entries.is_empty() {
        return Ok(0);
    }
    let mut tx = pool.begin().await?;
    let streams: Vec<&str> = entries.iter().map(|e| e.stream).collect();
    let ids: Vec<&str> = entries.iter().map(|e| e.entry_id).collect();
    let fresh: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO ingest_applied (stream, entry_id)
         SELECT * FROM UNNEST($1::text[], $2::text[]) ON CONFLICT DO NOTHING
         RETURNING stream, entry_id",
    )
    .bind(&streams)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let fresh: std::collections::HashSet<(String, String)> = fresh.into_iter().collect();
    let is_fresh =
        |e: &&EntryEvents<'_, '_>| fresh.contains(&(e.stream.to_string(), e.entry_id.to_string()));
    let applied: usize = entries
        .iter()
        .filter(is_fresh)
        .map(|e| e.events.len())
        .sum();
    let folds = fold(
        entries
            .iter()
            .filter(is_fresh)
            .flat_map(|e| e.events.iter()),
    );
    if !folds.is_empty() {
        upsert(&mut tx, &folds).await?;
    }
    tx.commit().await?;
    Ok(applied)
}

/// An event Postgres refused for good: its entry's index in the batch, its
/// index in the entry, and the error.
#[derive(Debug)]
pub struct Refused {
    pub entry: usize,
    pub event: usize,
    pub error: crate::StorageError,
}

/// A batch applied in an open transaction: [`Applied::commit`] makes it
/// durable, dropping it rolls it back.
pub struct Applied {
    tx: sqlx::Transaction<'static, Postgres>,
    /// Events applied (of entries not applied before).
    pub applied: usize,
    /// Events refused for good; they are not applied, the rest are.
    pub refused: Vec<Refused>,
    /// Groups this batch created or reopened (for `new_error`), once
    /// committed.
    pub changed: Vec<GroupChange>,
}

/// A group an upsert created (a fingerprint the tenant had not seen) or
/// reopened (it was resolved and occurred again: a regression).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct GroupChange {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub created: bool,
    pub reopened: bool,
}

impl Applied {
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// [`apply_batch`] for batches that may hold events Postgres refuses (text
/// with NUL, jsonb with `\u0000`, an index row over the btree limit): the
/// upsert runs under a savepoint and, when it fails for a permanent reason
/// ([`crate::failure`]), is bisected over the events until each refused
/// one is isolated ([`crate::failure::Isolate`]). Entry ids are recorded
/// as in [`apply_batch`], so a re-store skips the whole entry, refused
/// events included. Events for which `skip(entry, event)` holds are left
/// out (another store refused them). Nothing is committed until the
/// caller has set the refused events aside and calls [`Applied::commit`].
pub async fn apply_isolating(
    pool: &PgPool,
    entries: &[EntryEvents<'_, '_>],
    skip: impl Fn(usize, usize) -> bool,
) -> Result<Applied> {
    let mut tx = pool.begin().await?;
    if entries.is_empty() {
        return Ok(Applied {
            tx,
            applied: 0,
            refused: Vec::new(),
            changed: Vec::new(),
        });
    }
    let streams: Vec<&str> = entries.iter().map(|e| e.stream).collect();
    let ids: Vec<&str> = entries.iter().map(|e| e.entry_id).collect();
    let fresh: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO ingest_applied (stream, entry_id)
         SELECT * FROM UNNEST($1::text[], $2::text[]) ON CONFLICT DO NOTHING
         RETURNING stream, entry_id",
    )
    .bind(&streams)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let fresh: std::collections::HashSet<(String, String)> = fresh.into_iter().collect();
    let events: Vec<(usize, usize, &ErrorEvent<'_>)> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| fresh.contains(&(e.stream.to_string(), e.entry_id.to_string())))
        .flat_map(|(ei, e)| e.events.iter().enumerate().map(move |(i, ev)| (ei, i, ev)))
        .filter(|(ei, i, _)| !skip(*ei, *i))
        .collect();
    let mut search = crate::failure::Isolate::new(events.len());
    let mut changed = Vec::new();
    while let Some(r) = search.next_range() {
        sqlx::query("SAVEPOINT isolate").execute(&mut *tx).await?;
        let folds = fold(events[r.clone()].iter().map(|(_, _, e)| *e));
        let result = upsert(&mut tx, &folds).await.map(|c| changed.extend(c));
        if result.is_ok() {
            sqlx::query("RELEASE SAVEPOINT isolate")
                .execute(&mut *tx)
                .await?;
        } else {
            // When this fails too, the next statement fails as a transient
            // error and the whole batch is retried.
            let _ = sqlx::query("ROLLBACK TO SAVEPOINT isolate")
                .execute(&mut *tx)
                .await;
        }
        search.record(r, result)?;
    }
    let refused = search.into_refused();
    let refused: Vec<Refused> = refused
        .into_iter()
        .map(|(i, error)| Refused {
            entry: events[i].0,
            event: events[i].1,
            error,
        })
        .collect();
    Ok(Applied {
        tx,
        applied: events.len() - refused.len(),
        refused,
        changed,
    })
}

/// Upserts the folded groups; answers those it created or reopened.
async fn upsert(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    folds: &[Fold<'_>],
) -> Result<Vec<GroupChange>> {
    let n = folds.len();
    let mut id = Vec::with_capacity(n);
    let mut tenant = Vec::with_capacity(n);
    let mut fp = Vec::with_capacity(n);
    let mut level = Vec::with_capacity(n);
    let mut message = Vec::with_capacity(n);
    let mut stack = Vec::with_capacity(n);
    let mut context = Vec::with_capacity(n);
    let mut source = Vec::with_capacity(n);
    let mut env = Vec::with_capacity(n);
    let mut ua = Vec::with_capacity(n);
    let mut ip = Vec::with_capacity(n);
    let mut url = Vec::with_capacity(n);
    let mut count = Vec::with_capacity(n);
    let mut first = Vec::with_capacity(n);
    let mut last = Vec::with_capacity(n);
    for f in folds {
        let e = f.latest;
        id.push(e.group_id);
        tenant.push(e.tenant_id);
        fp.push(e.fingerprint.as_ref());
        level.push(e.level.as_str());
        message.push(e.message.as_ref());
        stack.push(e.stack_trace.as_deref());
        context.push(f.context.as_ref().map(merged_json));
        source.push(e.source.as_ref());
        env.push(e.environment.as_deref());
        ua.push(e.user_agent.as_deref());
        ip.push(e.ip_address.as_deref());
        url.push(e.url.as_deref());
        count.push(f.count);
        first.push(ts(f.first_ms));
        last.push(ts(e.ts_ms));
    }
    // `old` reads the rows as they were before this statement: a group
    // resolved then and open after it has regressed. `xmax = 0` marks a
    // row the INSERT created rather than updated.
    let changed = sqlx::query_as::<_, GroupChange>(
        "WITH old AS (SELECT id, resolved FROM error_groups WHERE id = ANY($1::uuid[])),
         up AS (
         INSERT INTO error_groups (id, tenant_id, fingerprint, level, message, stack_trace, context,
                                   source, environment, user_agent, ip_address, url, count, first_seen, last_seen)
         SELECT id, tenant_id, fp, level, message, stack, ctx::jsonb, source, env, ua, ip, url, cnt, first_seen, last_seen
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int8[],
                     $14::timestamptz[], $15::timestamptz[])
              AS t(id, tenant_id, fp, level, message, stack, ctx, source, env, ua, ip, url, cnt, first_seen, last_seen)
         ON CONFLICT (id) DO UPDATE SET
           count = error_groups.count + EXCLUDED.count,
           first_seen = LEAST(error_groups.first_seen, EXCLUDED.first_seen),
           last_seen = GREATEST(error_groups.last_seen, EXCLUDED.last_seen),
           level = CASE WHEN EXCLUDED.last_seen >= error_groups.last_seen THEN EXCLUDED.level ELSE error_groups.level END,
           message = CASE WHEN EXCLUDED.last_seen >= error_groups.last_seen THEN EXCLUDED.message ELSE error_groups.message END,
           stack_trace = CASE WHEN EXCLUDED.last_seen >= error_groups.last_seen THEN EXCLUDED.stack_trace ELSE error_groups.stack_trace END,
           source = CASE WHEN EXCLUDED.last_seen >= error_groups.last_seen THEN EXCLUDED.source ELSE error_groups.source END,
           environment = CASE WHEN EXCLUDED.last_seen >= error_groups.last_seen THEN EXCLUDED.environment ELSE error_groups.environment END,
           user_agent = CASE WHEN EXCLUDED.last_seen >= error_groups.last_seen THEN EXCLUDED.user_agent ELSE error_groups.user_agent END,
           ip_address = CASE WHEN EXCLUDED.last_seen >= error_groups.last_seen THEN EXCLUDED.ip_address ELSE error_groups.ip_address END,
           url = CASE WHEN EXCLUDED.last_seen >= error_groups.last_seen THEN EXCLUDED.url ELSE error_groups.url END,
           context = CASE
               WHEN EXCLUDED.context IS NULL THEN error_groups.context
               WHEN error_groups.context IS NULL THEN EXCLUDED.context
               WHEN EXCLUDED.last_seen >= error_groups.last_seen THEN error_groups.context || EXCLUDED.context
               ELSE EXCLUDED.context || error_groups.context END,
           resolved = error_groups.resolved AND EXCLUDED.last_seen <= error_groups.resolved_at,
           resolved_at = CASE WHEN error_groups.resolved AND EXCLUDED.last_seen <= error_groups.resolved_at
                              THEN error_groups.resolved_at ELSE NULL END,
           updated_at = now()
         RETURNING id, tenant_id, (xmax = 0) AS created, resolved)
         SELECT up.id, up.tenant_id, up.created,
                (COALESCE(old.resolved, false) AND NOT up.resolved) AS reopened
         FROM up LEFT JOIN old ON old.id = up.id
         WHERE up.created OR (COALESCE(old.resolved, false) AND NOT up.resolved)",
    )
    .bind(&id)
    .bind(&tenant)
    .bind(&fp)
    .bind(&level)
    .bind(&message)
    .bind(&stack)
    .bind(&context)
    .bind(&source)
    .bind(&env)
    .bind(&ua)
    .bind(&ip)
    .bind(&url)
    .bind(&count)
    .bind(&first)
    .bind(&last)
    .fetch_all(&mut **tx)
    .await?;
    Ok(changed)
}

/// Forgets applied entry ids older than `older_than`: by then their
/// streams no longer hold them, so no reclaim can bring them back.
pub async fn prune_applied(pool: &PgPool, older_than: DateTime<Utc>) -> Result<u64> {
    let r = sqlx::query("DELETE FROM ingest_applied WHERE applied_at < $1")
        .bind(older_than)
        .execute(pool)
        .await?;
    Ok(r.rows_affected())
}

/// Filters of the error list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub level: Option<String>,
    pub source: Option<String>,
    pub resolved: Option<bool>,
    pub search: Option<String>,
}

const COLUMNS: &str = "id, tenant_id, last_seen AS timestamp, level, message, stack_trace, context, source, environment,
    user_agent, ip_address, url, fingerprint, resolved, resolved_at, count, first_seen, last_seen, created_at, updated_at";

fn push_filter(q: &mut QueryBuilder<Postgres>, tenant_id: Uuid, f: &ListFilter) {
    q.push(" WHERE tenant_id = ").push_bind(tenant_id);
    if let Some(level) = &f.level {
        q.push(" AND level = ").push_bind(level.clone());
    }
    if let Some(source) = &f.source {
        q.push(" AND source = ").push_bind(source.clone());
    }
    if let Some(resolved) = f.resolved {
        q.push(" AND resolved = ").push_bind(resolved);
    }
    if let Some(search) = &f.search {
        let escaped = search
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        // The stack trace too: exception types and function names.
        let pattern = format!("%{escaped}%");
        q.push(" AND (message ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR stack_trace ILIKE ")
            .push_bind(pattern)
            .push(")");
    }
}

/// A page of groups, newest occurrence first, and the total that match.
pub async fn list(
    pool: &PgPool,
    tenant_id: Uuid,
    filter: &ListFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<ErrorGroup>, i64)> {
    let mut q = QueryBuilder::new(format!("SELECT {COLUMNS} FROM error_groups"));
    push_filter(&mut q, tenant_id, filter);
    q.push(" ORDER BY last_seen DESC, id LIMIT ")
        .push_bind(limit)
        .push(" OFFSET ")
        .push_bind(offset);
    let rows = q.build().fetch_all(pool).await?;
    let rows = rows.iter().filter_map(readable).collect();

    let mut c = QueryBuilder::new("SELECT count(*) FROM error_groups");
    push_filter(&mut c, tenant_id, filter);
    let total: (i64,) = c.build_query_as().fetch_one(pool).await?;
    Ok((rows, total.0))
}

/// A row as a group; a row that cannot be read is logged and counted, and
/// left out rather than failing the whole page.
fn readable(row: &sqlx::postgres::PgRow) -> Option<ErrorGroup> {
    use sqlx::{FromRow, Row};
    match ErrorGroup::from_row(row) {
        Ok(g) => Some(g),
        Err(e) => {
            let id: Option<Uuid> = row.try_get("id").ok();
            tracing::error!(error = %e, group = ?id, "an error group could not be read; left out of the page");
            metrics::counter!("sluice_unreadable_rows_total", "table" => "error_groups")
                .increment(1);
            None
        }
    }
}

pub async fn get(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<Option<ErrorGroup>> {
    Ok(sqlx::query_as::<_, ErrorGroup>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM error_groups WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// Marks a group resolved; false when the tenant has no such group.
pub async fn resolve(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE error_groups SET resolved = true, resolved_at = COALESCE(resolved_at, now()), updated_at = now()
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn delete(pool: &PgPool, tenant_id: Uuid, id: Uuid) -> Result<bool> {
    let r = sqlx::query("DELETE FROM error_groups WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Group-level figures for the stats endpoint.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct GroupTotals {
    pub total: i64,
    pub resolved: i64,
    /// Mean seconds from first occurrence to resolution, over resolved groups.
    pub avg_resolution_secs: Option<f64>,
}

pub async fn totals(pool: &PgPool, tenant_id: Uuid) -> Result<GroupTotals> {
    Ok(sqlx::query_as::<_, GroupTotals>(
        "SELECT count(*) AS total,
                count(*) FILTER (WHERE resolved) AS resolved,
                (avg(EXTRACT(EPOCH FROM (resolved_at - first_seen))) FILTER (WHERE resolved))::float8
                    AS avg_resolution_secs
         FROM error_groups WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_one(pool)
    .await?)
}

/// Resolution times of groups resolved since `since`, for trend buckets.
pub async fn resolved_since(
    pool: &PgPool,
    tenant_id: Uuid,
    since: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>> {
    let rows: Vec<(DateTime<Utc>,)> = sqlx::query_as(
        "SELECT resolved_at FROM error_groups
         WHERE tenant_id = $1 AND resolved AND resolved_at >= $2",
    )
    .bind(tenant_id)
    .bind(since)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Level;

    fn ev(group: u128, ts_ms: i64, ctx: serde_json::Value) -> ErrorEvent<'static> {
        ErrorEvent {
            tenant_id: Uuid::from_u128(1),
            group_id: Uuid::from_u128(group),
            ts_ms,
            level: Level::Error,
            message: format!("m{ts_ms}").into(),
            stack_trace: None,
            context: Some(ctx.to_string().into()),
            source: "s".into(),
            environment: None,
            url: None,
            user_agent: None,
            ip_address: None,
            fingerprint: format!("fp{group}").into(),
        }
    }

    #[test]
    fn fold_counts_and_merges() {
        let evs = [
            ev(1, 30, serde_json::json!({"a": 3, "c": 1})),
            ev(
                1,
                10,
                serde_json::json!({"a": 1, "b": 1, "q\"k": {"n": [1, "x"]}}),
            ),
            ev(2, 20, serde_json::json!({})),
        ];
        let mut folds = fold(evs.iter());
        folds.sort_by_key(|f| f.latest.group_id);
        assert_eq!(folds.len(), 2);
        assert_eq!(folds[0].count, 2);
        assert_eq!(folds[0].first_ms, 10);
        assert_eq!(folds[0].latest.ts_ms, 30);
        let merged: serde_json::Value =
            serde_json::from_str(&merged_json(folds[0].context.as_ref().unwrap())).unwrap();
        assert_eq!(
            merged,
            serde_json::json!({"a": 3, "b": 1, "c": 1, "q\"k": {"n": [1, "x"]}})
        );
        assert_eq!(folds[1].count, 1);
    }
}
