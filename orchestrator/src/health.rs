//! A registered database's health, measured when asked (conventions §4):
//!
//! - `is_healthy`: the master and every replica accept a connection and
//!   answer `SELECT 1` (a replica that is not in recovery still counts);
//! - `active_connections`: the `pg_stat_activity` rows whose `datname` is
//!   the master's database, counted on the master;
//! - `replication_lag`: the largest replay lag, in seconds, among replicas
//!   where `pg_is_in_recovery()` is true — 0 when the received WAL is all
//!   replayed, else `now() - pg_last_xact_replay_timestamp()`; `None` when
//!   no replica is a standby.
//!
//! Members are probed concurrently and the whole measure returns within
//! its timeout, however unreachable a host is. Needs no privilege beyond
//! logging in.

use std::time::Duration;

use futures::future::join_all;
use sqlx::postgres::PgConnection;

use crate::executor::{pg_message, ExecError};
use crate::target::Target;

/// A database's health; see the module doc.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub is_healthy: bool,
    pub active_connections: Option<i64>,
    pub replication_lag: Option<f64>,
    pub members: Vec<MemberHealth>,
}

/// One member (the master or a replica) of a registration.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberHealth {
    /// `master` or the replica's id.
    pub name: String,
    /// It accepted a connection and answered `SELECT 1`.
    pub reachable: bool,
    /// `pg_is_in_recovery()`, when it answered.
    pub in_recovery: Option<bool>,
    /// Why it is not reachable (never containing a password).
    pub error: Option<String>,
}

/// What one member answered.
struct Reading {
    member: MemberHealth,
    active_connections: Option<i64>,
    lag: Option<f64>,
}

/// Measures `master` and `replicas` (each `(replica id, target)`), within
/// `timeout` in all.
pub async fn measure(master: &Target, replicas: &[(String, Target)], timeout: Duration) -> Health {
    let mut members = vec![("master".to_string(), master, true)];
    members.extend(replicas.iter().map(|(id, t)| (id.clone(), t, false)));
    let readings = join_all(
        members
            .into_iter()
            .map(|(name, target, is_master)| async move {
                match tokio::time::timeout(timeout, read(target, is_master, timeout)).await {
                    Ok(Ok((in_recovery, active_connections, lag))) => Reading {
                        member: MemberHealth {
                            name,
                            reachable: true,
                            in_recovery: Some(in_recovery),
                            error: None,
                        },
                        active_connections,
                        lag,
                    },
                    Ok(Err(e)) => unreachable_member(name, e.to_string()),
                    Err(_) => unreachable_member(
                        name,
                        format!(
                            "{}: no answer within {} ms",
                            target.display_name(),
                            timeout.as_millis()
                        ),
                    ),
                }
            }),
    )
    .await;
    let is_healthy = readings.iter().all(|r| r.member.reachable);
    let active_connections = readings.first().and_then(|r| r.active_connections);
    let replication_lag = readings
        .iter()
        .skip(1)
        .filter_map(|r| r.lag)
        .reduce(f64::max);
    Health {
        is_healthy,
        active_connections,
        replication_lag,
        members: readings.into_iter().map(|r| r.member).collect(),
    }
}

fn unreachable_member(name: String, error: String) -> Reading {
    tracing::info!(member = %name, %error, "database member unreachable");
    Reading {
        member: MemberHealth {
            name,
            reachable: false,
            in_recovery: None,
            error: Some(error),
        },
        active_connections: None,
        lag: None,
    }
}

/// Connects, checks `SELECT 1`, reads recovery state; on the master the
/// connection count, on a standby its lag.
async fn read(
    target: &Target,
    is_master: bool,
    timeout: Duration,
) -> Result<(bool, Option<i64>, Option<f64>), ExecError> {
    let mut conn = target.connect(timeout).await?;
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .map_err(ExecError::from)?;
    if one != 1 {
        return Err(ExecError::Database("SELECT 1 did not answer 1".to_string()));
    }
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut conn)
        .await
        .map_err(ExecError::from)?;
    let active = if is_master {
        Some(
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
            )
            .bind(target.database())
            .fetch_one(&mut conn)
            .await
            .map_err(ExecError::from)?,
        )
    } else {
        None
    };
    let lag = if !is_master && in_recovery {
        standby_lag(&mut conn).await?
    } else {
        None
    };
    let _ = sqlx::Connection::close(conn).await;
    Ok((in_recovery, active, lag))
}

/// A standby's replay lag in seconds: 0 when everything received is
/// replayed, else the age of the last replayed transaction; `None` when
/// the standby has replayed nothing yet (or is not in recovery).
pub async fn standby_lag(conn: &mut PgConnection) -> Result<Option<f64>, ExecError> {
    sqlx::query_scalar::<_, Option<f64>>(
        "SELECT CASE WHEN NOT pg_is_in_recovery() THEN NULL
                     WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0::float8
                     ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
                END",
    )
    .fetch_one(conn)
    .await
    .map_err(|e| ExecError::Database(pg_message(&e)))
}
