-- Sluice's own health, for the Health Monitor's monitoring endpoints.
-- `deployment` is the Redis prefix (SLUICE_REDIS_PREFIX): every process of
-- one deployment shares it, so its history is one whole and another
-- deployment on the same ClickHouse (a test run) never mixes in.

-- One row per process every SLUICE_MONITOR_SAMPLE_SECS: the host's current
-- readings, its network counters (cumulative since boot) and the requests
-- this process served since its previous row, aggregated in memory.
CREATE TABLE IF NOT EXISTS monitor_samples (
    deployment       String,
    instance         String,
    host             String,
    ts               DateTime,
    ts_ms            UInt64,
    cpu_percent      Float64,
    memory_percent   Float64,
    disk_percent     Float64,
    net_rx_bytes     UInt64,
    net_tx_bytes     UInt64,
    connections      UInt64,
    requests         UInt64,
    errors_5xx       UInt64,
    latency_us       UInt64,
    ingest_requests  UInt64,
    api_requests     UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (deployment, ts, instance);

-- One row per service per probe round (every SLUICE_MONITOR_PROBE_SECS, by
-- each API process), plus one row `overall` per round.
CREATE TABLE IF NOT EXISTS service_probes (
    deployment   String,
    instance     String,
    ts           DateTime,
    ts_ms        UInt64,
    service      String,
    status       String,
    response_ms  Float64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (deployment, service, ts);
