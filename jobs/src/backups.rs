//! The backup platform's jobs: backup, restore, verify. Each is a thin
//! shell around `sluice-backup`: it loads the records, resolves the
//! server, runs the pipeline with progress, and records the outcome.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sluice_backup::{
    run_backup, run_restore, BackupRequest, Compression, MaskingRules, RestoreRequest,
};
use sluice_storage::pg::backups::{self, Backup};
use sluice_storage::pg::servers;
use tracing::Instrument;
use uuid::Uuid;

use crate::attempt;
use crate::context::JobContext;
use crate::endpoint::{self, Endpoint};
use crate::error::JobError;
use crate::progress::{Event, Progress};
use crate::signing;

/// Take a backup that the API recorded as pending.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupJob {
    pub task_id: String,
    pub tenant: Uuid,
    pub backup_id: i64,
}

/// Restore a completed backup into a server's database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreJob {
    pub task_id: String,
    pub tenant: Uuid,
    pub backup_id: i64,
    pub target_server_id: i64,
    pub target_database: String,
    /// Column name → strategy (`hash`, `randomize`, `null`), when masking.
    #[serde(default)]
    pub masking: Option<BTreeMap<String, String>>,
}

/// Restore a backup into a scratch database, check it, drop it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyJob {
    pub task_id: String,
    pub tenant: Uuid,
    pub backup_id: i64,
    /// Where to restore; the backup's own server when absent.
    #[serde(default)]
    pub server_id: Option<i64>,
}

fn compression(name: &str) -> Result<Compression, JobError> {
    match name {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        other => Err(JobError::Permanent(format!(
            "unknown compression {other:?}"
        ))),
    }
}

async fn server_endpoint(ctx: &JobContext, tenant: Uuid, id: i64) -> Result<Endpoint, JobError> {
    let server = servers::get(&ctx.pg, tenant, id)
        .await?
        .ok_or_else(|| JobError::Permanent(format!("server {id} no longer exists")))?;
    endpoint::load(&ctx.pg, &ctx.secrets, &server)
        .await?
        .map_err(JobError::Permanent)
}

async fn load(ctx: &JobContext, tenant: Uuid, id: i64) -> Result<Backup, JobError> {
    backups::get(&ctx.pg, tenant, id)
        .await?
        .ok_or_else(|| JobError::Permanent(format!("backup {id} no longer exists")))
}

fn same_engine(ep: &Endpoint, b: &Backup) -> Result<(), JobError> {
    if ep.db_type() == b.db_type {
        Ok(())
    } else {
        Err(JobError::Permanent(format!(
            "the backup is of a {} database but the server's database is {}",
            b.db_type,
            ep.db_type()
        )))
    }
}

/// What to back up, as `POST /backups` or a schedule asks.
#[derive(Debug, Clone)]
pub struct BackupOrder<'a> {
    pub server_id: i64,
    pub database_name: &'a str,
    pub db_type: &'a str,
    pub backup_type: &'a str,
    pub compression_type: &'a str,
    pub encrypt: bool,
    /// The schedule that asks, if one does.
    pub schedule_id: Option<i64>,
}

/// A backup recorded as pending, and its job's task id.
#[derive(Debug, Clone)]
pub struct Queued {
    pub backup: Backup,
    pub task_id: String,
}

/// The object's name in the store: tenant, backup id, database, and the
/// format's extensions (`.dump` custom archive / `.sql`, then `.zst` or
/// `.gz`, then `.enc`).
fn object_key(tenant: Uuid, id: i64, db: &str, db_type: &str, comp: &str, enc: bool) -> String {
    let format = if db_type == "mysql" { "sql" } else { "dump" };
    let comp = match comp {
        "zstd" => ".zst",
        "gzip" => ".gz",
        _ => "",
    };
    let enc = if enc { ".enc" } else { "" };
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    format!("{tenant}/{id}/{db}-{stamp}.{format}{comp}{enc}")
}

/// The one way a backup is created: records the pending backup and
/// pushes its job, both in the caller's transaction `tx` (the caller
/// commits), so there is never a backup without its job or the reverse.
pub async fn enqueue_backup(
    tx: &mut sqlx::PgConnection,
    namespace: &str,
    tenant: Uuid,
    order: &BackupOrder<'_>,
) -> Result<Queued, JobError> {
    let task_id = crate::queue::new_task_id();
    let new = backups::NewBackup {
        server_id: order.server_id,
        database_name: order.database_name,
        db_type: order.db_type,
        backup_type: order.backup_type,
        compression_type: order.compression_type,
        is_encrypted: order.encrypt,
    };
    let mut b = backups::insert(&mut *tx, tenant, &new, |id| {
        object_key(
            tenant,
            id,
            order.database_name,
            order.db_type,
            order.compression_type,
            order.encrypt,
        )
    })
    .await?;
    backups::set_task(&mut *tx, b.id, &task_id).await?;
    b.task_id = Some(task_id.clone());
    if let Some(s) = order.schedule_id {
        sluice_storage::pg::schedules::set_backup_schedule(&mut *tx, b.id, s).await?;
    }
    let job = BackupJob {
        task_id: task_id.clone(),
        tenant,
        backup_id: b.id,
    };
    crate::queue::push(
        tx,
        namespace,
        crate::queue::Kind::Backup,
        &task_id,
        tenant,
        Some(b.id),
        &job,
    )
    .await?;
    Ok(Queued { backup: b, task_id })
}

/// Runs a backup job to its end and records it.
pub async fn backup(ctx: &JobContext, job: BackupJob) -> Result<(), JobError> {
    let span = tracing::info_span!("job", kind = "backup", task_id = %job.task_id, backup_id = job.backup_id);
    async {
        let event = Event {
            tenant: job.tenant,
            event_type: "backup_progress",
            task_id: job.task_id.clone(),
            fields: json!({ "backup_id": job.backup_id }),
        };
        let outcome = attempt::run(ctx, &job.task_id, ctx.settings.backup_timeout, || {
            backup_once(ctx, &job, &event)
        })
        .await;
        match &outcome {
            Ok(()) => {
                let size = backups::get(&ctx.pg, job.tenant, job.backup_id)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|b| b.dump_bytes)
                    .unwrap_or(0);
                event.publish(ctx, 100.0, "completed", size as u64).await;
                tracing::info!("backup completed");
                crate::sweep::after_backup(ctx, job.backup_id).await;
                crate::notices::after_backup(ctx, job.tenant, job.backup_id, None).await;
            }
            Err(e) => {
                if let Err(db) = backups::fail(&ctx.pg, job.backup_id, e.message()).await {
                    tracing::error!(error = %db, "could not record the backup's failure");
                }
                event.publish(ctx, 0.0, "failed", 0).await;
                tracing::warn!(error = %e, "backup failed");
                crate::notices::after_backup(ctx, job.tenant, job.backup_id, Some(e.message()))
                    .await;
            }
        }
        attempt::finish(ctx, &job.task_id, &outcome).await;
        outcome
    }
    .instrument(span)
    .await
}

async fn backup_once(ctx: &JobContext, job: &BackupJob, event: &Event) -> Result<(), JobError> {
    let b = load(ctx, job.tenant, job.backup_id).await?;
    if b.status == "completed" {
        // A worker died after completing it but before apalis heard.
        return Ok(());
    }
    let ep = server_endpoint(ctx, job.tenant, b.server_id).await?;
    same_engine(&ep, &b)?;
    let compression = compression(&b.compression_type)?;
    if !backups::start(&ctx.pg, b.id).await? {
        return Ok(());
    }
    let engine = ep.kind.engine();
    let transport = &*ep.transport;
    let databases = engine.list_databases(transport, &ep.connection).await?;
    let Some(info) = databases.iter().find(|d| d.name == b.database_name) else {
        return Err(JobError::Permanent(format!(
            "database {:?} does not exist on server {}",
            b.database_name, b.server_id
        )));
    };
    let counts = engine
        .table_counts(transport, &ep.connection, &b.database_name)
        .await?;
    let counts: serde_json::Map<String, Value> =
        counts.into_iter().map(|(t, n)| (t, json!(n))).collect();
    backups::set_table_counts(&ctx.pg, b.id, &Value::Object(counts)).await?;
    ep.remember_host_key(&ctx.pg).await;

    let progress = Progress::start(ctx, event.clone(), Some(info.size_bytes));
    let outcome = run_backup(
        &ctx.store,
        BackupRequest {
            engine,
            transport,
            connection: &ep.connection,
            database: &b.database_name,
            compression,
            encryption: b.is_encrypted.then_some(&ctx.keyring),
            object_key: &b.object_key,
            progress: Some(progress.callback()),
        },
    )
    .await;
    progress.stop().await;
    let out = outcome?;
    backups::complete(
        &ctx.pg,
        b.id,
        &backups::Completed {
            storage_path: &out.storage_url,
            size_bytes: i64::try_from(out.size_bytes).unwrap_or(i64::MAX),
            dump_bytes: i64::try_from(out.dump_bytes).unwrap_or(i64::MAX),
            checksum: &out.checksum,
        },
    )
    .await?;
    Ok(())
}

/// Restores `b` into `database` on `ep`, reporting progress.
async fn restore_into(
    ctx: &JobContext,
    ep: &Endpoint,
    b: &Backup,
    database: &str,
    masking: Option<&MaskingRules>,
    event: &Event,
) -> Result<(), JobError> {
    let checksum = b
        .checksum
        .as_deref()
        .filter(|_| b.status == "completed")
        .ok_or_else(|| {
            JobError::Permanent(format!(
                "backup {} is {}, not completed: nothing to restore",
                b.id, b.status
            ))
        })?;
    let total = b.size_bytes.and_then(|n| u64::try_from(n).ok());
    let progress = Progress::start(ctx, event.clone(), total);
    let outcome = run_restore(
        &ctx.store,
        RestoreRequest {
            engine: ep.kind.engine(),
            transport: &*ep.transport,
            connection: &ep.connection,
            target_database: database,
            object_key: &b.object_key,
            expected_checksum: checksum,
            compression: compression(&b.compression_type)?,
            decryption: b.is_encrypted.then_some(&ctx.keyring),
            progress: Some(progress.callback()),
            masking,
        },
    )
    .await;
    progress.stop().await;
    outcome?;
    ep.remember_host_key(&ctx.pg).await;
    Ok(())
}

/// Runs a restore job to its end and records it.
pub async fn restore(ctx: &JobContext, job: RestoreJob) -> Result<(), JobError> {
    let span = tracing::info_span!("job", kind = "restore", task_id = %job.task_id, backup_id = job.backup_id, target = %job.target_database);
    async {
        let event = Event {
            tenant: job.tenant,
            event_type: "restore_progress",
            task_id: job.task_id.clone(),
            fields: json!({ "backup_id": job.backup_id, "target_database": job.target_database }),
        };
        let outcome = attempt::run(ctx, &job.task_id, ctx.settings.restore_timeout, || async {
            let b = load(ctx, job.tenant, job.backup_id).await?;
            let ep = server_endpoint(ctx, job.tenant, job.target_server_id).await?;
            same_engine(&ep, &b)?;
            let rules = match job.masking.as_ref().filter(|m| !m.is_empty()) {
                None => None,
                Some(m) => Some(
                    MaskingRules::parse(
                        signing::masking_key(&ctx.masking_secret, job.tenant).to_vec(),
                        m.iter().map(|(c, s)| (c.as_str(), s.as_str())),
                    )
                    .map_err(|e| JobError::Permanent(format!("masking rules: {e}")))?,
                ),
            };
            restore_into(ctx, &ep, &b, &job.target_database, rules.as_ref(), &event).await
        })
        .await;
        let (pct, status) = if outcome.is_ok() {
            (100.0, "completed")
        } else {
            (0.0, "failed")
        };
        event.publish(ctx, pct, status, 0).await;
        match &outcome {
            Ok(()) => tracing::info!("restore completed"),
            Err(e) => tracing::warn!(error = %e, "restore failed"),
        }
        attempt::finish(ctx, &job.task_id, &outcome).await;
        outcome
    }
    .instrument(span)
    .await
}

/// Compares the row counts recorded at backup time with a restored copy's.
fn compare(expected: Option<&Value>, found: &[(String, u64)]) -> (Value, Vec<String>) {
    let found_map: BTreeMap<&str, u64> = found.iter().map(|(t, n)| (t.as_str(), *n)).collect();
    let mut problems = Vec::new();
    if let Some(Value::Object(exp)) = expected {
        for (table, n) in exp {
            let n = n.as_u64().unwrap_or(0);
            match found_map.get(table.as_str()) {
                None => problems.push(format!("table {table} is missing")),
                Some(&got) if got != n => {
                    problems.push(format!("table {table}: {got} rows, {n} at backup time"))
                }
                Some(_) => {}
            }
        }
        for (table, _) in found {
            if !exp.contains_key(table) {
                problems.push(format!("table {table} was not there at backup time"));
            }
        }
    }
    let rows: u64 = found.iter().map(|(_, n)| n).sum();
    let details = json!({
        "tables": found.len(),
        "rows": rows,
        "table_counts": found.iter().map(|(t, n)| (t.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "problems": problems,
    });
    (details, problems)
}

async fn verify_once(ctx: &JobContext, job: &VerifyJob, event: &Event) -> Result<Value, JobError> {
    let b = load(ctx, job.tenant, job.backup_id).await?;
    let ep = server_endpoint(ctx, job.tenant, job.server_id.unwrap_or(b.server_id)).await?;
    same_engine(&ep, &b)?;
    let scratch = format!(
        "sluice_verify_{}_{}",
        b.id,
        &Uuid::new_v4().simple().to_string()[..8]
    );
    let engine = ep.kind.engine();
    let checked = async {
        restore_into(ctx, &ep, &b, &scratch, None, event).await?;
        let found = engine
            .table_counts(&*ep.transport, &ep.connection, &scratch)
            .await?;
        Ok::<_, JobError>(compare(b.table_counts.as_ref().map(|j| &j.0), &found))
    }
    .await;
    if let Err(e) = engine
        .drop_database(&*ep.transport, &ep.connection, &scratch)
        .await
    {
        tracing::warn!(database = %scratch, error = %e, "verification scratch database not dropped");
    }
    let (details, problems) = checked?;
    if problems.is_empty() {
        Ok(details)
    } else {
        Err(JobError::Permanent(format!(
            "verification found differences: {}",
            problems.join("; ")
        )))
    }
}

/// Runs a verification job to its end and records the result on the backup.
pub async fn verify(ctx: &JobContext, job: VerifyJob) -> Result<(), JobError> {
    let span = tracing::info_span!("job", kind = "verify", task_id = %job.task_id, backup_id = job.backup_id);
    async {
        let event = Event {
            tenant: job.tenant,
            event_type: "verify_progress",
            task_id: job.task_id.clone(),
            fields: json!({ "backup_id": job.backup_id }),
        };
        let outcome = attempt::run(ctx, &job.task_id, ctx.settings.restore_timeout, || {
            verify_once(ctx, &job, &event)
        })
        .await;
        let (status, recorded) = match &outcome {
            Ok(details) => ("passed", details.clone()),
            Err(e) => ("failed", json!({ "error": e.message() })),
        };
        if let Err(e) =
            backups::record_verification(&ctx.pg, job.backup_id, status, &recorded).await
        {
            tracing::error!(error = %e, "could not record the verification");
        }
        let pct = if outcome.is_ok() { 100.0 } else { 0.0 };
        event
            .publish(
                ctx,
                pct,
                if outcome.is_ok() {
                    "completed"
                } else {
                    "failed"
                },
                0,
            )
            .await;
        tracing::info!(result = status, "verification finished");
        attempt::finish(ctx, &job.task_id, &outcome).await;
        outcome.map(drop)
    }
    .instrument(span)
    .await
}
