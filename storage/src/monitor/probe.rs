//! Probes of Sluice's own services, each a real round trip, timed:
//!
//! | service | probe |
//! |---|---|
//! | `Database` | one query on a pooled connection: client connections and `max_connections` |
//! | `Cache Service` | `PING` |
//! | `Analytics Store` | `SELECT 1` over ClickHouse's HTTP interface |
//! | `Ingest`, `Workers` | `ZCOUNT` of the tier's heartbeats fresher than the heartbeat TTL (healthy when at least one process beats; `unknown` when Redis cannot tell) |
//!
//! A probe that fails or takes longer than [`PROBE_TIMEOUT`] is
//! `unhealthy`. Downtime periods are computed from stored rounds by
//! [`downtime_periods`].

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::ch::monitoring::{DownMinute, ProbeRow, OVERALL};

/// The services every round probes, in order.
pub const SERVICES: [&str; 5] = [
    "Database",
    "Cache Service",
    "Analytics Store",
    "Ingest",
    "Workers",
];

/// How long one probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The stores a prober reaches.
#[derive(Clone)]
pub struct Stores {
    pub pg: sqlx::PgPool,
    pub ch: clickhouse::Client,
    pub redis: deadpool_redis::Pool,
}

/// One service's probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceProbe {
    pub name: &'static str,
    /// `healthy`, `unhealthy` or `unknown`.
    pub status: &'static str,
    /// The measured round trip, fractional.
    pub response_ms: f64,
    pub details: Value,
}

impl ServiceProbe {
    /// The name as a key (`cache_service`).
    pub fn key(&self) -> String {
        self.name.to_ascii_lowercase().replace(' ', "_")
    }
}

/// One round: every service probed at once.
#[derive(Debug, Clone)]
pub struct Round {
    pub at: DateTime<Utc>,
    pub services: Vec<ServiceProbe>,
    pub overall: &'static str,
}

impl Round {
    /// A round in which nothing was probed: every service `unknown`.
    pub fn unknown() -> Self {
        let services: Vec<ServiceProbe> = SERVICES
            .iter()
            .map(|&name| ServiceProbe {
                name,
                status: "unknown",
                response_ms: 0.0,
                details: json!({}),
            })
            .collect();
        Round {
            at: Utc::now(),
            overall: overall(&services),
            services,
        }
    }

    /// The rows stored for the round: one per service and one `overall`.
    pub fn rows(&self, deployment: &str, instance: &str) -> Vec<ProbeRow> {
        let ms = self.at.timestamp_millis().max(0) as u64;
        let row = |service: &str, status: &str, response_ms: f64| ProbeRow {
            deployment: deployment.to_string(),
            instance: instance.to_string(),
            ts: (ms / 1000) as u32,
            ts_ms: ms,
            service: service.to_string(),
            status: status.to_string(),
            response_ms,
        };
        let mut rows: Vec<ProbeRow> = self
            .services
            .iter()
            .map(|s| row(s.name, s.status, s.response_ms))
            .collect();
        rows.push(row(OVERALL, self.overall, 0.0));
        rows
    }
}

/// `healthy` when every service is; `unhealthy` when `Database` is not
/// healthy; `degraded` otherwise.
pub fn overall(services: &[ServiceProbe]) -> &'static str {
    if services.iter().all(|s| s.status == "healthy") {
        "healthy"
    } else if services
        .iter()
        .any(|s| s.name == "Database" && s.status == "unhealthy")
    {
        "unhealthy"
    } else {
        "degraded"
    }
}

fn ms(t: Instant) -> f64 {
    // a real round trip is never 0; clocks with coarse ticks may say so
    (t.elapsed().as_secs_f64() * 1000.0).max(0.001)
}

async fn timed<F, T>(f: F) -> (Result<T, String>, f64)
where
    F: std::future::Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    let r = match tokio::time::timeout(PROBE_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err("timed out".into()),
    };
    (r, ms(start))
}

async fn database(pg: &sqlx::PgPool) -> ServiceProbe {
    let start = Instant::now();
    let r = tokio::time::timeout(PROBE_TIMEOUT, async {
        let mut conn = pg.acquire().await.map_err(|e| e.to_string())?;
        // the round trip is the query's, not the pool's wait
        let t = Instant::now();
        let (c, m): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int8,
                    current_setting('max_connections')::int8",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
        Ok::<_, String>((c, m, ms(t)))
    })
    .await;
    match r {
        Ok(Ok((c, m, rt))) => ServiceProbe {
            name: "Database",
            status: "healthy",
            response_ms: rt,
            details: json!({"connections": c.max(1), "max_connections": m}),
        },
        Ok(Err(e)) => failed("Database", ms(start), &e),
        Err(_) => failed("Database", ms(start), "timed out"),
    }
}

fn failed(name: &'static str, response_ms: f64, why: &str) -> ServiceProbe {
    tracing::debug!(service = name, error = why, "probe failed");
    ServiceProbe {
        name,
        status: "unhealthy",
        response_ms,
        details: json!({}),
    }
}

async fn cache(redis: &deadpool_redis::Pool) -> ServiceProbe {
    let conn = tokio::time::timeout(PROBE_TIMEOUT, redis.get()).await;
    let mut conn = match conn {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return failed(
                "Cache Service",
                PROBE_TIMEOUT.as_secs_f64() * 1000.0,
                &e.to_string(),
            )
        }
        Err(_) => {
            return failed(
                "Cache Service",
                PROBE_TIMEOUT.as_secs_f64() * 1000.0,
                "timed out",
            )
        }
    };
    let (r, rt) = timed(async {
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    match r {
        Ok(_) => ServiceProbe {
            name: "Cache Service",
            status: "healthy",
            response_ms: rt,
            details: json!({}),
        },
        Err(e) => failed("Cache Service", rt, &e),
    }
}

async fn analytics(ch: &clickhouse::Client) -> ServiceProbe {
    let (r, rt) = timed(async {
        ch.query("SELECT 1")
            .fetch_one::<u8>()
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    match r {
        Ok(_) => ServiceProbe {
            name: "Analytics Store",
            status: "healthy",
            response_ms: rt,
            details: json!({}),
        },
        Err(e) => failed("Analytics Store", rt, &e),
    }
}

async fn heartbeat(
    name: &'static str,
    tier: &str,
    redis: &deadpool_redis::Pool,
    deployment: &str,
    ttl: Duration,
) -> ServiceProbe {
    let key = super::alive_key(deployment, tier);
    let since = (Utc::now().timestamp_millis() - ttl.as_millis() as i64).max(0);
    let start = Instant::now();
    let r = tokio::time::timeout(PROBE_TIMEOUT, async {
        let mut conn = redis.get().await.map_err(|e| e.to_string())?;
        let t = Instant::now();
        let n: u64 = redis::cmd("ZCOUNT")
            .arg(&key)
            .arg(since)
            .arg("+inf")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((n, ms(t)))
    })
    .await;
    match r {
        Ok(Ok((n, rt))) => ServiceProbe {
            name,
            status: if n > 0 { "healthy" } else { "unhealthy" },
            response_ms: rt,
            details: json!({"instances": n}),
        },
        // Redis cannot tell whether the tier lives
        _ => ServiceProbe {
            name,
            status: "unknown",
            response_ms: ms(start),
            details: json!({}),
        },
    }
}

/// Probes every service at once.
pub async fn round(stores: &Stores, deployment: &str, heartbeat_ttl: Duration) -> Round {
    let at = Utc::now();
    let (db, cache, ch, ingest, workers) = tokio::join!(
        database(&stores.pg),
        cache(&stores.redis),
        analytics(&stores.ch),
        heartbeat("Ingest", "ingest", &stores.redis, deployment, heartbeat_ttl),
        heartbeat(
            "Workers",
            "workers",
            &stores.redis,
            deployment,
            heartbeat_ttl
        ),
    );
    let services = vec![db, cache, ch, ingest, workers];
    let overall = overall(&services);
    Round {
        at,
        services,
        overall,
    }
}

/// Downtime periods from the minutes in which a round found the
/// deployment `unhealthy` (oldest first): consecutive minutes are one
/// period. Answers how many periods and when the latest began (epoch ms).
pub fn downtime_periods(minutes: &[DownMinute]) -> (u64, Option<u64>) {
    let mut count = 0;
    let mut last_start = None;
    let mut prev: Option<u32> = None;
    for m in minutes {
        if prev.is_none_or(|p| m.minute > p + 60) {
            count += 1;
            last_start = Some(m.first_ms);
        }
        prev = Some(m.minute);
    }
    (count, last_start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &'static str, status: &'static str) -> ServiceProbe {
        ServiceProbe {
            name,
            status,
            response_ms: 1.0,
            details: json!({}),
        }
    }

    #[test]
    fn overall_health() {
        let all = [p("Database", "healthy"), p("Workers", "healthy")];
        assert_eq!(overall(&all), "healthy");
        let w = [p("Database", "healthy"), p("Workers", "unknown")];
        assert_eq!(overall(&w), "degraded");
        let d = [p("Database", "unhealthy"), p("Workers", "healthy")];
        assert_eq!(overall(&d), "unhealthy");
    }

    #[test]
    fn periods_join_consecutive_minutes() {
        let m = |minute: u32, first_ms: u64| DownMinute { minute, first_ms };
        assert_eq!(downtime_periods(&[]), (0, None));
        let mins = [
            m(600, 600_500),
            m(660, 660_000),
            m(720, 720_000),
            m(900, 900_250),
            m(960, 960_000),
        ];
        assert_eq!(downtime_periods(&mins), (2, Some(900_250)));
        assert_eq!(downtime_periods(&mins[..1]), (1, Some(600_500)));
    }

    #[test]
    fn rows_have_an_overall() {
        let r = Round {
            at: Utc::now(),
            services: vec![p("Database", "healthy"), p("Cache Service", "unhealthy")],
            overall: "degraded",
        };
        let rows = r.rows("d", "i");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].service, OVERALL);
        assert_eq!(rows[2].status, "degraded");
        assert_eq!(r.services[1].key(), "cache_service");
    }
}
