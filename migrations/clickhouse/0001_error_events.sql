-- Every error occurrence. Partitioned by day so retention drops whole
-- partitions; ordered for per-tenant, per-group scans.
CREATE TABLE IF NOT EXISTS error_events (
    tenant_id    UUID,
    group_id     UUID,
    event_id     String,
    timestamp    DateTime,
    ts_ms        UInt64,
    level        Enum8('debug' = 1, 'info' = 2, 'warning' = 3, 'error' = 4, 'critical' = 5),
    fingerprint  String,
    message      String,
    stack_trace  String,
    context      String,
    source       String,
    environment  String,
    url          String,
    user_agent   String,
    ip_address   String
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(timestamp)
ORDER BY (tenant_id, group_id, timestamp);

-- Five-minute rollup: stats over the last day and fine-grained trends.
CREATE TABLE IF NOT EXISTS error_rollup_5m (
    tenant_id  UUID,
    bucket     DateTime,
    level      Enum8('debug' = 1, 'info' = 2, 'warning' = 3, 'error' = 4, 'critical' = 5),
    events     AggregateFunction(count),
    groups     AggregateFunction(uniq, UUID)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant_id, bucket, level);

CREATE MATERIALIZED VIEW IF NOT EXISTS error_rollup_5m_mv TO error_rollup_5m AS
SELECT tenant_id, toStartOfFiveMinute(timestamp) AS bucket, level,
       countState() AS events, uniqState(group_id) AS groups
FROM error_events
GROUP BY tenant_id, bucket, level;

-- Hourly rollup: stats over weeks and months, and coarse trends.
CREATE TABLE IF NOT EXISTS error_rollup_1h (
    tenant_id  UUID,
    bucket     DateTime,
    level      Enum8('debug' = 1, 'info' = 2, 'warning' = 3, 'error' = 4, 'critical' = 5),
    events     AggregateFunction(count),
    groups     AggregateFunction(uniq, UUID)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant_id, bucket, level);

CREATE MATERIALIZED VIEW IF NOT EXISTS error_rollup_1h_mv TO error_rollup_1h AS
SELECT tenant_id, toStartOfHour(timestamp) AS bucket, level,
       countState() AS events, uniqState(group_id) AS groups
FROM error_events
GROUP BY tenant_id, bucket, level;
