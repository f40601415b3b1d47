//! Automatic DDL tracking inside a user's PostgreSQL database.
//!
//! Unlike the rest of [`crate::pg`], everything here runs inside the *tracked*
//! (target) database, never in Sluice's own. [`install`] creates the schema
//! [`SCHEMA`] with one queue table, `sluice_tracking.ddl_queue`, two plpgsql
//! functions and two event triggers:
//!
//! - `sluice_tracking_ddl_end` (`ddl_command_end`) records every statement
//!   that `pg_event_trigger_ddl_commands()` reports on (CREATE, ALTER, GRANT…);
//! - `sluice_tracking_sql_drop` (`sql_drop`) records `DROP …` statements from
//!   `pg_event_trigger_dropped_objects()`, keeping only the objects named in
//!   the statement (a dropped table, not its row type, indexes or constraints).
//!
//! Each statement yields exactly one queue row (a [`DdlRecord`]); objects that
//! an extension script creates are folded into the `CREATE EXTENSION` row, and
//! `ALTER TABLE … DROP COLUMN` is recorded once, by the `ddl_command_end`
//! trigger. Sluice's own objects (schema [`SCHEMA`], its functions and the
//! event triggers) are never recorded. After inserting, the trigger sends
//! `NOTIFY` on [`CHANNEL`] (delivered when the user's transaction commits), so
//! a worker can `LISTEN` rather than poll; a rolled-back statement leaves no
//! row and no notification.
//!
//! The trigger functions are `SECURITY DEFINER` (owned by the installing
//! superuser, with a fixed `search_path`) so DDL run by unprivileged roles is
//! still recorded, and they swallow their own errors with a `WARNING`: a
//! tracking failure never fails the user's DDL. Event triggers need a
//! superuser to install.
//!
//! Idempotence: [`install`] and [`uninstall`] may be repeated and run
//! concurrently; each runs in one transaction serialised by a transaction-level
//! advisory lock, and every statement is `IF NOT EXISTS` / `OR REPLACE` /
//! `IF EXISTS`. Re-installing keeps queued rows.
//!
//! Delivery: [`drain`] locks rows with `FOR UPDATE SKIP LOCKED` and deletes
//! them in the same transaction only after the caller's `store` succeeded, so
//! concurrent drainers never see the same row and a failed `store` leaves the
//! rows queued. Delivery to `store` is at-least-once, not exactly-once: if the
//! commit of the delete fails after `store` succeeded, the rows are handed out
//! again, so `store` should be idempotent (for example keyed on the tracked
//! database and [`DdlRecord::id`]; ids restart after an uninstall).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// The NOTIFY channel the trigger signals after recording a statement.
pub const CHANNEL: &str = "sluice_ddl";
/// The schema Sluice owns inside a tracked database.
pub const SCHEMA: &str = "sluice_tracking";

/// Key of the transaction-level advisory lock that serialises [`install`] and
/// [`uninstall`] within one database ("sluicedd" in ASCII).
const INSTALL_LOCK_KEY: i64 = 0x736c_7569_6365_6464;

/// One recorded DDL statement, as queued by the event triggers.
#[derive(Debug, Clone, PartialEq)]
pub struct DdlRecord {
    /// Queue row id (bigserial): increases in the order statements were recorded.
    pub id: i64,
    /// The statement's command tag, e.g. `CREATE TABLE`, `ALTER TABLE`, `DROP TABLE`.
    pub command_tag: String,
    /// Type of the statement's main object, e.g. `table`, `index`.
    pub object_type: String,
    /// Schema of the statement's main object (`None` for schemas, extensions…).
    pub schema_name: Option<String>,
    /// Identities of the affected objects, main object first, without
    /// duplicates, e.g. `["public.accounts", "public.accounts_id_seq"]`.
    pub affected_objects: Vec<String>,
    /// `session_user` of the session that ran the statement.
    pub session_user: String,
    /// The client's query text (`current_query()`); with a multi-statement
    /// simple query this is the whole string.
    pub statement: String,
    /// When the statement finished (`clock_timestamp()` in the trigger).
    pub occurred_at: DateTime<Utc>,
}

/// Schema, queue table, trigger functions and event triggers. Every statement
/// is idempotent; [`install`] runs it in one transaction under an advisory lock.
const INSTALL_SQL: &str = r#"
CREATE SCHEMA IF NOT EXISTS sluice_tracking;
CREATE TABLE IF NOT EXISTS sluice_tracking.ddl_queue (
    id               bigserial   PRIMARY KEY,
    command_tag      text        NOT NULL,
    object_type      text        NOT NULL,
    schema_name      text,
    affected_objects text[]      NOT NULL DEFAULT '{}',
    executed_by      text        NOT NULL,
    statement        text        NOT NULL,
    occurred_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE OR REPLACE FUNCTION sluice_tracking.record_ddl_command()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r            record;
    objs         text[] := '{}';
    first_type   text;
    first_schema text;
    found_any    boolean := false;
BEGIN
    -- DROP statements are recorded by the sql_drop trigger.
    IF tg_tag LIKE 'DROP %' THEN
        RETURN;
    END IF;
    FOR r IN
        SELECT c.object_type, c.schema_name, c.object_identity
          FROM pg_event_trigger_ddl_commands() WITH ORDINALITY AS c
         WHERE NOT c.in_extension
           AND coalesce(c.schema_name, '') <> 'sluice_tracking'
           AND coalesce(c.object_type, '') <> 'event trigger'
           AND coalesce(c.object_identity, '') <> 'sluice_tracking'
           AND left(coalesce(c.object_identity, ''), 16) <> 'sluice_tracking.'
         ORDER BY (c.command_tag = tg_tag) DESC, c.ordinality
    LOOP
        IF NOT found_any THEN
            found_any := true;
            first_type := r.object_type;
            first_schema := r.schema_name;
        END IF;
        IF r.object_identity IS NOT NULL AND NOT (r.object_identity = ANY (objs)) THEN
            objs := array_append(objs, r.object_identity);
        END IF;
    END LOOP;
    IF NOT found_any THEN
        RETURN;
    END IF;
    INSERT INTO sluice_tracking.ddl_queue
        (command_tag, object_type, schema_name, affected_objects, executed_by, statement, occurred_at)
    VALUES
        (tg_tag, coalesce(first_type, ''), first_schema, objs, session_user,
         coalesce(current_query(), ''), clock_timestamp());
    PERFORM pg_notify('sluice_ddl', '');
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'sluice: could not record DDL statement (%): %', tg_tag, SQLERRM;
END;
$fn$;
CREATE OR REPLACE FUNCTION sluice_tracking.record_sql_drop()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r             record;
    objs          text[] := '{}';
    first_type    text;
    first_schema  text;
    found_any     boolean := false;
    only_original boolean := false;
BEGIN
    -- Other statements that drop objects (ALTER TABLE ... DROP COLUMN) are
    -- recorded by the ddl_command_end trigger.
    IF tg_tag NOT LIKE 'DROP %' THEN
        RETURN;
    END IF;
    FOR r IN
        SELECT d.original, d.object_type, d.schema_name, d.object_identity
          FROM pg_event_trigger_dropped_objects() WITH ORDINALITY AS d
         WHERE coalesce(d.schema_name, '') <> 'sluice_tracking'
           AND coalesce(d.object_type, '') <> 'event trigger'
           AND coalesce(d.object_identity, '') <> 'sluice_tracking'
           AND left(coalesce(d.object_identity, ''), 16) <> 'sluice_tracking.'
         ORDER BY d.original DESC, d.ordinality
    LOOP
        IF NOT found_any THEN
            found_any := true;
            only_original := r.original;
            first_type := r.object_type;
            first_schema := r.schema_name;
        ELSIF only_original AND NOT r.original THEN
            EXIT;
        END IF;
        IF r.object_identity IS NOT NULL AND NOT (r.object_identity = ANY (objs)) THEN
            objs := array_append(objs, r.object_identity);
        END IF;
    END LOOP;
    IF NOT found_any THEN
        RETURN;
    END IF;
    INSERT INTO sluice_tracking.ddl_queue
        (command_tag, object_type, schema_name, affected_objects, executed_by, statement, occurred_at)
    VALUES
        (tg_tag, coalesce(first_type, ''), first_schema, objs, session_user,
         coalesce(current_query(), ''), clock_timestamp());
    PERFORM pg_notify('sluice_ddl', '');
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'sluice: could not record dropped objects (%): %', tg_tag, SQLERRM;
END;
$fn$;
DROP EVENT TRIGGER IF EXISTS sluice_tracking_ddl_end;
CREATE EVENT TRIGGER sluice_tracking_ddl_end ON ddl_command_end
    EXECUTE FUNCTION sluice_tracking.record_ddl_command();
DROP EVENT TRIGGER IF EXISTS sluice_tracking_sql_drop;
CREATE EVENT TRIGGER sluice_tracking_sql_drop ON sql_drop
    EXECUTE FUNCTION sluice_tracking.record_sql_drop();
"#;

/// Everything [`install`] creates, in dependency order.
const UNINSTALL_SQL: &str = r#"
DROP EVENT TRIGGER IF EXISTS sluice_tracking_ddl_end;
DROP EVENT TRIGGER IF EXISTS sluice_tracking_sql_drop;
DROP FUNCTION IF EXISTS sluice_tracking.record_ddl_command();
DROP FUNCTION IF EXISTS sluice_tracking.record_sql_drop();
DROP SCHEMA IF EXISTS sluice_tracking CASCADE;
"#;

/// Installs (idempotently) schema `sluice_tracking`, table
/// `sluice_tracking.ddl_queue`, the trigger functions and two event triggers
/// (`ddl_command_end` and `sql_drop`). Needs a superuser connection.
pub async fn install(target: &PgPool) -> crate::Result<()> {
    let mut tx = target.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(INSTALL_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(INSTALL_SQL).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Removes the event triggers, functions and the schema (CASCADE), dropping
/// any rows still queued. Idempotent.
pub async fn uninstall(target: &PgPool) -> crate::Result<()> {
    let mut tx = target.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(INSTALL_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(UNINSTALL_SQL).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Whether Sluice's event triggers (both of them) exist in the target database.
pub async fn is_installed(target: &PgPool) -> crate::Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_catalog.pg_event_trigger
          WHERE evtname IN ('sluice_tracking_ddl_end', 'sluice_tracking_sql_drop')",
    )
    .fetch_one(target)
    .await?;
    Ok(n == 2)
}

type Row = (
    i64,
    String,
    String,
    Option<String>,
    Vec<String>,
    String,
    String,
    DateTime<Utc>,
);

/// In one transaction: locks up to `limit` queued rows in id order with
/// `FOR UPDATE SKIP LOCKED`, hands them to `store`; if `store` succeeds,
/// deletes exactly those rows and commits; if it fails, rolls back (rows stay
/// queued) and returns its error. Returns how many rows were drained. Two
/// drainers running at once never get the same row.
///
/// When nothing is queued (or `limit <= 0`), `store` is not called and the
/// result is `Ok(0)`.
pub async fn drain<F, Fut>(target: &PgPool, limit: i64, store: F) -> crate::Result<usize>
where
    F: FnOnce(Vec<DdlRecord>) -> Fut,
    Fut: std::future::Future<Output = crate::Result<()>>,
{
    if limit <= 0 {
        return Ok(0);
    }
    let mut tx = target.begin().await?;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, command_tag, object_type, schema_name, affected_objects,
                executed_by, statement, occurred_at
           FROM sluice_tracking.ddl_queue
          ORDER BY id
          LIMIT $1
          FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let records: Vec<DdlRecord> = rows
        .into_iter()
        .map(
            |(
                id,
                command_tag,
                object_type,
                schema_name,
                affected_objects,
                session_user,
                statement,
                occurred_at,
            )| DdlRecord {
                id,
                command_tag,
                object_type,
                schema_name,
                affected_objects,
                session_user,
                statement,
                occurred_at,
            },
        )
        .collect();
    if let Err(e) = store(records).await {
        // Dropping `tx` would roll back too; an explicit rollback releases the
        // row locks now. The store error is the one worth reporting.
        let _ = tx.rollback().await;
        return Err(e);
    }
    sqlx::query("DELETE FROM sluice_tracking.ddl_queue WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(ids.len())
}
