//! What an accepted event survives: Redis' persistence settings read from
//! the server ([`inspect`]), what they promise in plain words ([`assess`]),
//! and the optional wait for replicas after a write ([`ReplicaWait`]).
//!
//! Ingest answers 2xx once Redis holds an event; until a worker has stored
//! it (usually well under a second) Redis is its only copy. So what an
//! accepted event survives is what Redis' settings make it survive:
//!
//! | Redis | process restart | OS crash | loss of the machine |
//! |---|---|---|---|
//! | no AOF, no snapshots | no | no | no |
//! | RDB snapshots only | up to the last snapshot | up to the last snapshot | no |
//! | AOF, `appendfsync no` | yes | the OS decides (~30 s) | no |
//! | AOF, `appendfsync everysec` | yes | about the last second lost | no |
//! | AOF, `appendfsync always` | yes | yes | no |
//! | `SLUICE_REDIS_MIN_REPLICAS=n` (WAIT) | as above | as above | yes, on n replicas (in their memory) |
//!
//! `CONFIG` is often disabled on managed Redis; then `INFO persistence`
//! still tells whether AOF is on, and the rest is reported as unknown.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_redis::redis;
use serde::Serialize;

use crate::Result;

/// Redis' persistence and replication, as read from the server; `None`
/// where it could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedisPersistence {
    pub appendonly: Option<bool>,
    pub appendfsync: Option<String>,
    /// RDB save points (`""` when snapshots are off).
    pub save: Option<String>,
    pub role: Option<String>,
    pub connected_replicas: Option<u32>,
    /// Whether `CONFIG GET` answered (it is disabled on many managed Redis).
    pub config_readable: bool,
}

fn info_fields(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .collect()
}

async fn config_get(
    conn: &mut deadpool_redis::Connection,
    name: &str,
) -> redis::RedisResult<Option<String>> {
    let m: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(conn)
        .await?;
    Ok(m.get(name).cloned())
}

/// Reads the persistence settings (`CONFIG GET`, falling back on `INFO
/// persistence`) and the replication state (`INFO replication`).
pub async fn inspect(conn: &mut deadpool_redis::Connection) -> Result<RedisPersistence> {
    let mut p = RedisPersistence::default();
    match config_get(conn, "appendonly").await {
        Ok(v) => {
            p.config_readable = true;
            p.appendonly = v.map(|v| v.eq_ignore_ascii_case("yes"));
            p.appendfsync = config_get(conn, "appendfsync").await.ok().flatten();
            p.save = config_get(conn, "save").await.ok().flatten();
        }
        Err(e) => {
            tracing::debug!(error = %e, "CONFIG GET refused; reading INFO persistence");
            let info: String = redis::cmd("INFO")
                .arg("persistence")
                .query_async(conn)
                .await?;
            p.appendonly = info_fields(&info)
                .get("aof_enabled")
                .map(|v| v.trim() == "1");
        }
    }
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(conn)
        .await?;
    let f = info_fields(&info);
    p.role = f.get("role").map(|s| s.trim().to_string());
    p.connected_replicas = f
        .get("connected_slaves")
        .and_then(|s| s.trim().parse().ok());
    Ok(p)
}

/// Whether accepted events survive an event, in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Survival {
    Yes,
    /// AOF with `appendfsync everysec`.
    LastSecondLost,
    /// AOF with `appendfsync no`: the OS flushes when it likes.
    OsFlushWindowLost,
    /// RDB snapshots only.
    SinceSnapshotLost,
    /// Asynchronous replicas, no WAIT.
    UnreplicatedLost,
    /// On the replicas that acknowledged each write (WAIT).
    OnReplicas(u32),
    No,
    Unknown,
}

impl Survival {
    pub fn words(self) -> String {
        match self {
            Survival::Yes => "yes".into(),
            Survival::LastSecondLost => "yes, except about the last second of writes".into(),
            Survival::OsFlushWindowLost => {
                "partly: writes the OS had not flushed yet (up to about 30 s) are lost".into()
            }
            Survival::SinceSnapshotLost => {
                "partly: writes since the last RDB snapshot are lost".into()
            }
            Survival::UnreplicatedLost => {
                "partly: writes not yet copied to a replica are lost".into()
            }
            Survival::OnReplicas(n) => format!(
                "yes, if one of the {n} replica(s) that acknowledged each write is promoted (they hold it in memory)"
            ),
            Survival::No => "no".into(),
            Survival::Unknown => "unknown".into(),
        }
    }
}

impl Serialize for Survival {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.words())
    }
}

/// The persistence level, for machines (`/health`'s `durability.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// No AOF, no snapshots.
    None,
    Snapshots,
    AofNo,
    AofEverysec,
    AofAlways,
    Unknown,
}

/// What Sluice can promise about an accepted event.
#[derive(Debug, Clone, Serialize)]
pub struct Durability {
    pub level: Level,
    /// Replicas that must acknowledge each write before ingest answers 2xx.
    pub min_replicas: u32,
    pub survives_redis_restart: Survival,
    pub survives_os_crash: Survival,
    pub survives_machine_loss: Survival,
    pub warnings: Vec<String>,
    pub redis: RedisPersistence,
}

impl Durability {
    /// Redis did not answer: nothing can be promised.
    pub fn unreachable(min_replicas: u32, error: &str) -> Self {
        Durability {
            level: Level::Unknown,
            min_replicas,
            survives_redis_restart: Survival::Unknown,
            survives_os_crash: Survival::Unknown,
            survives_machine_loss: Survival::Unknown,
            warnings: vec![format!("Redis' settings could not be read: {error}")],
            redis: RedisPersistence::default(),
        }
    }

    /// Whether Redis keeps an append-only file.
    pub fn aof(&self) -> bool {
        matches!(
            self.level,
            Level::AofNo | Level::AofEverysec | Level::AofAlways
        )
    }
}

/// What `p` promises when ingest waits for `min_replicas` replicas.
pub fn assess(p: &RedisPersistence, min_replicas: u32) -> Durability {
    let snapshots = p.save.as_deref().map(|s| !s.trim().is_empty());
    let level = match (p.appendonly, p.appendfsync.as_deref(), snapshots) {
        (Some(true), Some(f), _) if f.eq_ignore_ascii_case("always") => Level::AofAlways,
        (Some(true), Some(f), _) if f.eq_ignore_ascii_case("no") => Level::AofNo,
        (Some(true), Some(_), _) => Level::AofEverysec,
        // AOF on, fsync policy unreadable: assume the default (everysec).
        (Some(true), None, _) => Level::AofEverysec,
        (Some(false), _, Some(true)) => Level::Snapshots,
        // No AOF; snapshots off or unknown (CONFIG disabled): promise nothing.
        (Some(false), _, Some(false) | None) => Level::None,
        _ => Level::Unknown,
    };
    let (restart, os_crash) = match level {
        Level::None => (Survival::No, Survival::No),
        Level::Snapshots => (Survival::SinceSnapshotLost, Survival::SinceSnapshotLost),
        Level::AofNo => (Survival::Yes, Survival::OsFlushWindowLost),
        Level::AofEverysec => (Survival::Yes, Survival::LastSecondLost),
        Level::AofAlways => (Survival::Yes, Survival::Yes),
        Level::Unknown => (Survival::Unknown, Survival::Unknown),
    };
    let replicas = p.connected_replicas.unwrap_or(0);
    let machine_loss = if min_replicas > 0 {
        Survival::OnReplicas(min_replicas)
    } else if replicas > 0 {
        Survival::UnreplicatedLost
    } else {
        Survival::No
    };
    let mut warnings = Vec::new();
    if !p.config_readable {
        warnings.push(
            "CONFIG is disabled on this Redis: its persistence was read from INFO, the fsync policy and snapshots are not known".to_string(),
        );
    }
    match level {
        Level::None | Level::Snapshots => warnings.push(
            "Redis runs without AOF (appendonly no): events answered 2xx but not yet stored by the workers are lost when Redis restarts; set appendonly yes".to_string(),
        ),
        Level::Unknown => warnings.push(
            "whether Redis keeps an append-only file is not known".to_string(),
        ),
        _ => {}
    }
    if min_replicas > replicas {
        warnings.push(format!(
            "SLUICE_REDIS_MIN_REPLICAS is {min_replicas} but {replicas} replica(s) are connected: ingest answers 503 until enough acknowledge each write"
        ));
    }
    Durability {
        level,
        min_replicas,
        survives_redis_restart: restart,
        survives_os_crash: os_crash,
        survives_machine_loss: machine_loss,
        warnings,
        redis: p.clone(),
    }
}

/// Reads and assesses a Redis' durability on demand (start-up, `/health`).
#[derive(Clone)]
pub struct Inspector {
    pub pool: deadpool_redis::Pool,
    /// `SLUICE_REDIS_MIN_REPLICAS`.
    pub min_replicas: u32,
}

impl Inspector {
    /// The report, within 1 s; a Redis that does not answer gives a report
    /// saying so. Sets the `sluice_redis_aof_enabled` and
    /// `sluice_redis_connected_replicas` gauges.
    pub async fn report(&self) -> Durability {
        let read = async {
            let mut conn = self.pool.get().await?;
            inspect(&mut conn).await
        };
        let d = match tokio::time::timeout(Duration::from_secs(1), read).await {
            Ok(Ok(p)) => assess(&p, self.min_replicas),
            Ok(Err(e)) => return Durability::unreachable(self.min_replicas, &e.to_string()),
            Err(_) => return Durability::unreachable(self.min_replicas, "timed out"),
        };
        metrics::gauge!("sluice_redis_aof_enabled").set(if d.aof() { 1.0 } else { 0.0 });
        if let Some(n) = d.redis.connected_replicas {
            metrics::gauge!("sluice_redis_connected_replicas").set(f64::from(n));
        }
        d
    }
}

/// Makes a write wait for replicas: `WAIT replicas timeout` after it, on
/// the same connection (so it covers every write sent before it). Redis
/// 7.0 has no `WAITAOF`: an acknowledgement means the replica holds the
/// write in memory, not on its disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaWait {
    pub replicas: u32,
    pub timeout: Duration,
}

/// Fewer replicas than asked acknowledged a write in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{acked} of {wanted} replica(s) acknowledged the write in time")]
pub struct NotReplicated {
    pub acked: u32,
    pub wanted: u32,
}

impl ReplicaWait {
    /// No waiting (`replicas` 0).
    pub fn none() -> Self {
        ReplicaWait {
            replicas: 0,
            timeout: Duration::from_secs(1),
        }
    }

    pub fn enabled(&self) -> bool {
        self.replicas > 0
    }

    /// The timeout in milliseconds, at least 1 (`WAIT … 0` blocks forever).
    fn timeout_ms(&self) -> u64 {
        (self.timeout.as_millis() as u64).max(1)
    }

    /// Appends the `WAIT` to `pipe`; its reply is the pipeline's last.
    pub fn append(&self, pipe: &mut redis::Pipeline) {
        pipe.cmd("WAIT").arg(self.replicas).arg(self.timeout_ms());
    }

    /// Checks `WAIT`'s reply.
    pub fn check(&self, acked: i64) -> std::result::Result<(), NotReplicated> {
        let acked = u32::try_from(acked.max(0)).unwrap_or(u32::MAX);
        if acked >= self.replicas {
            Ok(())
        } else {
            metrics::counter!("sluice_ingest_not_replicated_total").increment(1);
            Err(NotReplicated {
                acked,
                wanted: self.replicas,
            })
        }
    }

    /// Sends `WAIT` on `conn` (after writes sent on it) and checks it.
    pub async fn wait(
        &self,
        conn: &mut deadpool_redis::Connection,
    ) -> std::result::Result<std::result::Result<(), NotReplicated>, redis::RedisError> {
        if !self.enabled() {
            return Ok(Ok(()));
        }
        let acked: i64 = redis::cmd("WAIT")
            .arg(self.replicas)
            .arg(self.timeout_ms())
            .query_async(conn)
            .await?;
        Ok(self.check(acked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(
        aof: Option<bool>,
        fsync: Option<&str>,
        save: Option<&str>,
        replicas: u32,
    ) -> RedisPersistence {
        RedisPersistence {
            appendonly: aof,
            appendfsync: fsync.map(str::to_string),
            save: save.map(str::to_string),
            role: Some("master".into()),
            connected_replicas: Some(replicas),
            config_readable: fsync.is_some() || save.is_some(),
        }
    }

    #[test]
    fn no_persistence_promises_nothing_and_warns() {
        let d = assess(&settings(Some(false), Some("everysec"), Some(""), 0), 0);
        assert_eq!(d.level, Level::None);
        assert_eq!(d.survives_redis_restart, Survival::No);
        assert_eq!(d.survives_machine_loss, Survival::No);
        assert!(!d.aof());
        assert!(d.warnings.iter().any(|w| w.contains("without AOF")));
    }

    #[test]
    fn snapshots_keep_what_they_hold() {
        let d = assess(
            &settings(Some(false), Some("everysec"), Some("3600 1 300 100"), 0),
            0,
        );
        assert_eq!(d.level, Level::Snapshots);
        assert_eq!(d.survives_redis_restart, Survival::SinceSnapshotLost);
    }

    #[test]
    fn aof_levels() {
        let every = assess(&settings(Some(true), Some("everysec"), Some(""), 0), 0);
        assert_eq!(every.level, Level::AofEverysec);
        assert_eq!(every.survives_redis_restart, Survival::Yes);
        assert_eq!(every.survives_os_crash, Survival::LastSecondLost);
        assert!(every.warnings.is_empty(), "{:?}", every.warnings);
        let always = assess(&settings(Some(true), Some("always"), Some(""), 0), 0);
        assert_eq!(always.survives_os_crash, Survival::Yes);
        assert_eq!(always.survives_machine_loss, Survival::No);
        let no = assess(&settings(Some(true), Some("no"), Some(""), 0), 0);
        assert_eq!(no.survives_os_crash, Survival::OsFlushWindowLost);
    }

    #[test]
    fn replicas_count_only_when_waited_for() {
        let async_only = assess(&settings(Some(true), Some("everysec"), Some(""), 1), 0);
        assert_eq!(async_only.survives_machine_loss, Survival::UnreplicatedLost);
        let waited = assess(&settings(Some(true), Some("everysec"), Some(""), 1), 1);
        assert_eq!(waited.survives_machine_loss, Survival::OnReplicas(1));
        let missing = assess(&settings(Some(true), Some("everysec"), Some(""), 0), 1);
        assert!(missing.warnings.iter().any(|w| w.contains("503")));
    }

    #[test]
    fn config_disabled_falls_back_on_info() {
        let d = assess(&settings(Some(true), None, None, 0), 0);
        assert_eq!(d.level, Level::AofEverysec);
        assert!(d.warnings.iter().any(|w| w.contains("CONFIG is disabled")));
        let unknown = assess(&settings(None, None, None, 0), 0);
        assert_eq!(unknown.level, Level::Unknown);
        assert_eq!(unknown.survives_redis_restart, Survival::Unknown);
    }

    #[test]
    fn info_is_parsed_by_field() {
        let f = info_fields("# Replication\r\nrole:master\r\nconnected_slaves:2\r\n");
        assert_eq!(f.get("connected_slaves").map(|s| s.trim()), Some("2"));
        assert_eq!(f.get("role").map(|s| s.trim()), Some("master"));
    }

    #[test]
    fn wait_replies_are_checked() {
        let w = ReplicaWait {
            replicas: 2,
            timeout: Duration::ZERO,
        };
        assert_eq!(w.timeout_ms(), 1, "WAIT 0 would block forever");
        assert!(w.check(2).is_ok());
        assert_eq!(
            w.check(1),
            Err(NotReplicated {
                acked: 1,
                wanted: 2
            })
        );
        assert!(!ReplicaWait::none().enabled());
    }
}
