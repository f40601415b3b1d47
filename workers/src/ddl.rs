//! Draining the DDL queues of tracked databases: one task per attached
//! database, woken by its `NOTIFY` and by a periodic sweep. Drains are
//! idempotent by queue row id, and rows are locked while drained, so any
//! number of workers may run these tasks at once.

use std::collections::HashMap;
use std::time::Duration;

use sluice_storage::pg::tracked_databases;
use sluice_storage::secrets::SecretBox;
use sluice_storage::{ddl, tracked};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

use crate::Stores;

const SWEEP_EVERY: Duration = Duration::from_secs(2);
const RESCAN_EVERY: Duration = Duration::from_secs(3);

/// Keeps one drainer per tracked database until shutdown.
pub async fn supervise(stores: Stores, secrets: SecretBox, mut shutdown: watch::Receiver<bool>) {
    let mut running: HashMap<Uuid, JoinHandle<()>> = HashMap::new();
    loop {
        match tracked_databases::list(&stores.pg, None).await {
            Ok(dbs) => {
                running.retain(|id, h| {
                    let keep = dbs.iter().any(|d| d.id == *id) && !h.is_finished();
                    if !keep {
                        h.abort();
                    }
                    keep
                });
                for db in dbs {
                    if running.contains_key(&db.id) {
                        continue;
                    }
                    match secrets.open(&db.url_ciphertext) {
                        Ok(url) => {
                            let span = tracing::info_span!("ddl_drain", db = %db.id, tenant = %db.tenant_id);
                            let h = tokio::spawn(
                                drainer(stores.clone(), db.tenant_id, db.id, url, shutdown.clone())
                                    .instrument(span),
                            );
                            running.insert(db.id, h);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, db = %db.id, "cannot open tracked database URL")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing tracked databases failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RESCAN_EVERY) => {}
            _ = shutdown.changed() => break,
        }
    }
    for (_, h) in running {
        h.abort();
    }
}

async fn drainer(
    stores: Stores,
    tenant: Uuid,
    db: Uuid,
    url: String,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let target = match tracked::connect(&url).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, %db, "tracked database unreachable; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    _ = shutdown.changed() => return,
                }
            }
        };
        let mut listener = match sqlx::postgres::PgListener::connect_with(&target).await {
            Ok(mut l) => match l.listen(ddl::CHANNEL).await {
                Ok(()) => Some(l),
                Err(_) => None,
            },
            Err(_) => None,
        };
        loop {
            match tracked::drain_once(&target, &stores.ch, tenant, db).await {
                Ok(n) if n > 0 => {
                    metrics::counter!("sluice_ddl_statements_total").increment(n as u64);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, %db, "draining DDL queue failed");
                    break;
                }
            }
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ok = notified => if !ok { listener = None; },
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
