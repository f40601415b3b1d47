//! The servers' background health check: every worker process takes the
//! servers whose check is due (claimed in Postgres with SKIP LOCKED, so two
//! processes never check one server at once, and a deployment of many
//! servers is checked a bounded batch at a time), logs in to each server's
//! database through its transport, records `health_status` (`healthy` or
//! `unhealthy`) and `last_heartbeat` (the last healthy answer), and
//! publishes `server_health` on `/ws` to the server's tenant.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use sluice_storage::pg::servers;
use tracing::Instrument;
use uuid::Uuid;

use crate::context::JobContext;
use crate::endpoint;

/// Health check settings.
#[derive(Debug, Clone)]
pub struct HealthSettings {
    /// How often each server is checked.
    pub every: Duration,
    /// How often a worker looks for servers due.
    pub tick: Duration,
    /// Servers one worker takes per tick.
    pub batch: i64,
    /// Checks run at once.
    pub concurrency: usize,
    /// The longest one check may take.
    pub timeout: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(60),
            tick: Duration::from_secs(5),
            batch: 50,
            concurrency: 8,
            timeout: Duration::from_secs(15),
        }
    }
}

async fn check(ctx: &JobContext, s: &HealthSettings, id: i64, tenant: Uuid) {
    let server = match servers::get(&ctx.pg, tenant, id).await {
        Ok(Some(server)) => server,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(server_id = id, error = %e, "health check: server not loaded");
            return;
        }
    };
    let (status, message) = match endpoint::load(&ctx.pg, &ctx.secrets, &server).await {
        Ok(Ok(ep)) => {
            let answer = tokio::time::timeout(
                s.timeout,
                ep.kind
                    .engine()
                    .server_version(&*ep.transport, &ep.connection),
            )
            .await;
            match answer {
                Ok(Ok(version)) => {
                    ep.remember_host_key(&ctx.pg).await;
                    ("healthy", version)
                }
                Ok(Err(e)) => ("unhealthy", e.to_string()),
                Err(_) => (
                    "unhealthy",
                    format!("no answer within {} s", s.timeout.as_secs()),
                ),
            }
        }
        Ok(Err(why)) => ("unhealthy", why),
        Err(e) => {
            tracing::debug!(server_id = id, error = %e, "health check: host key not loaded");
            return;
        }
    };
    if let Err(e) = servers::set_health(&ctx.pg, id, status).await {
        tracing::warn!(server_id = id, error = %e, "health check not recorded");
        return;
    }
    if status != server.health_status {
        tracing::info!(server_id = id, from = %server.health_status, to = status, %message, "server health changed");
    }
    let event = json!({
        "server_id": id,
        "health_status": status,
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    if let Err(e) = ctx.live.publish(tenant, "server_health", &event).await {
        tracing::debug!(error = %e, "server_health not published");
    }
}

/// Checks the servers that are due, in rounds, until `stop` resolves.
pub async fn run(ctx: JobContext, s: HealthSettings, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(s.tick.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        let due = match servers::claim_health_checks(&ctx.pg, s.every.as_secs_f64(), s.batch).await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, "health check: no servers claimed");
                continue;
            }
        };
        let span = tracing::info_span!("health_check", servers = due.len());
        futures::stream::iter(due)
            .for_each_concurrent(s.concurrency.max(1), |(id, tenant)| {
                check(&ctx, &s, id, tenant)
            })
            .instrument(span)
            .await;
    }
}
