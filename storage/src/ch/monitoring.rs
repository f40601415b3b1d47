//! Sluice's own health history in ClickHouse: host and request samples
//! (`monitor_samples`) and service probes (`service_probes`), both keyed by
//! deployment (the Redis prefix), and the queries the monitoring endpoints
//! answer from.

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};

use crate::Result;

/// One process's sample: host readings and the requests it served since
/// its previous sample.
#[derive(Debug, Clone, Row, Serialize, Deserialize, PartialEq)]
pub struct SampleRow {
    pub deployment: String,
    pub instance: String,
    pub host: String,
    pub ts: u32,
    pub ts_ms: u64,
    pub cpu_percent: f64,
    pub memory_percent: f64,
    pub disk_percent: f64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub connections: u64,
    pub requests: u64,
    pub errors_5xx: u64,
    pub latency_us: u64,
    pub ingest_requests: u64,
    pub api_requests: u64,
}

/// One probe of one service (or the round's `overall` row).
#[derive(Debug, Clone, Row, Serialize, Deserialize, PartialEq)]
pub struct ProbeRow {
    pub deployment: String,
    pub instance: String,
    pub ts: u32,
    pub ts_ms: u64,
    pub service: String,
    pub status: String,
    pub response_ms: f64,
}

/// The service name of a round's overall row.
pub const OVERALL: &str = "overall";

pub async fn insert_samples(client: &Client, rows: &[SampleRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut ins = client.insert::<SampleRow>("monitor_samples").await?;
    for r in rows {
        ins.write(r).await?;
    }
    ins.end().await?;
    Ok(())
}

pub async fn insert_probes(client: &Client, rows: &[ProbeRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut ins = client.insert::<ProbeRow>("service_probes").await?;
    for r in rows {
        ins.write(r).await?;
    }
    ins.end().await?;
    Ok(())
}

/// Requests served in a window, every tier and process together.
#[derive(Debug, Clone, Copy, Default, Row, Deserialize, PartialEq)]
pub struct RequestTotals {
    pub requests: u64,
    pub errors_5xx: u64,
    pub latency_us: u64,
}

pub async fn request_totals(
    client: &Client,
    deployment: &str,
    since_secs: i64,
) -> Result<RequestTotals> {
    Ok(client
        .query(
            "SELECT sum(requests) AS requests, sum(errors_5xx) AS errors_5xx, sum(latency_us) AS latency_us
             FROM monitor_samples WHERE deployment = ? AND ts >= toDateTime(?)",
        )
        .bind(deployment)
        .bind(since_secs.max(0))
        .fetch_one::<RequestTotals>()
        .await?)
}

/// Bytes the hosts received and sent in a window: per host, the growth of
/// its counters between its first and last sample in the window (several
/// processes on one host read the same counters, so they count once).
#[derive(Debug, Clone, Copy, Default, Row, Deserialize, PartialEq)]
pub struct NetTotals {
    pub bytes_in: u64,
    pub bytes_out: u64,
}

pub async fn net_totals(client: &Client, deployment: &str, since_secs: i64) -> Result<NetTotals> {
    Ok(client
        .query(
            "SELECT sum(rx) AS bytes_in, sum(tx) AS bytes_out FROM (
               SELECT host,
                      toUInt64(max(net_rx_bytes) - min(net_rx_bytes)) AS rx,
                      toUInt64(max(net_tx_bytes) - min(net_tx_bytes)) AS tx
               FROM monitor_samples WHERE deployment = ? AND ts >= toDateTime(?)
               GROUP BY host)",
        )
        .bind(deployment)
        .bind(since_secs.max(0))
        .fetch_one::<NetTotals>()
        .await?)
}

/// Open connections of the other processes of the deployment: each one's
/// latest sample since `since_secs`, summed.
pub async fn connections_elsewhere(
    client: &Client,
    deployment: &str,
    instance: &str,
    since_secs: i64,
) -> Result<u64> {
    Ok(client
        .query(
            "SELECT sum(c) FROM (
               SELECT instance, argMax(connections, ts_ms) AS c FROM monitor_samples
               WHERE deployment = ? AND ts >= toDateTime(?) AND instance != ?
               GROUP BY instance)",
        )
        .bind(deployment)
        .bind(since_secs.max(0))
        .bind(instance)
        .fetch_one::<u64>()
        .await?)
}

/// Probes of one service in a window: how many, how many healthy.
#[derive(Debug, Clone, Default, Row, Deserialize, PartialEq)]
pub struct ServiceShare {
    pub service: String,
    pub probes: u64,
    pub healthy: u64,
}

/// Per service since `since_secs`: probes and healthy ones (the overall
/// row counts as healthy when it was not `unhealthy`).
pub async fn service_shares(
    client: &Client,
    deployment: &str,
    since_secs: i64,
) -> Result<Vec<ServiceShare>> {
    Ok(client
        .query(
            "SELECT service, count() AS probes,
                    countIf(if(service = 'overall', status != 'unhealthy', status = 'healthy')) AS healthy
             FROM service_probes WHERE deployment = ? AND ts >= toDateTime(?)
             GROUP BY service",
        )
        .bind(deployment)
        .bind(since_secs.max(0))
        .fetch_all::<ServiceShare>()
        .await?)
}

/// Minutes (epoch seconds of their start) in which some round found the
/// deployment `unhealthy`, with the first such probe's time in each,
/// oldest first.
#[derive(Debug, Clone, Copy, Row, Deserialize, PartialEq)]
pub struct DownMinute {
    pub minute: u32,
    pub first_ms: u64,
}

pub async fn down_minutes(
    client: &Client,
    deployment: &str,
    since_secs: i64,
) -> Result<Vec<DownMinute>> {
    Ok(client
        .query(
            "SELECT toUInt32(toStartOfMinute(ts)) AS minute, min(ts_ms) AS first_ms
             FROM service_probes
             WHERE deployment = ? AND service = 'overall' AND status = 'unhealthy' AND ts >= toDateTime(?)
             GROUP BY minute ORDER BY minute LIMIT 50000",
        )
        .bind(deployment)
        .bind(since_secs.max(0))
        .fetch_all::<DownMinute>()
        .await?)
}
