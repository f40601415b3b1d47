-- Every finished database operation (manual or DDL), one row each.
CREATE TABLE IF NOT EXISTS operations (
    tenant_id         UUID,
    operation_id      String,
    event_id          String,
    script_name       String,
    script_type       String,
    status            Enum8('COMPLETED' = 1, 'FAILED' = 2, 'TIMEOUT' = 3),
    started_at        DateTime,
    started_ms        UInt64,
    completed_ms      UInt64,
    duration_ms       UInt64,
    error_message     String,
    db_session_user   String,
    affected_objects  Array(String),
    statement         String,
    origin            Enum8('manual' = 1, 'ddl' = 2)
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(started_at)
ORDER BY (tenant_id, started_at, operation_id);

-- Hourly rollup for the dashboard: counts and durations per type and status.
CREATE TABLE IF NOT EXISTS operations_rollup_1h (
    tenant_id    UUID,
    bucket       DateTime,
    script_type  String,
    status       Enum8('COMPLETED' = 1, 'FAILED' = 2, 'TIMEOUT' = 3),
    ops          AggregateFunction(count),
    duration     AggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant_id, bucket, script_type, status);

CREATE MATERIALIZED VIEW IF NOT EXISTS operations_rollup_1h_mv TO operations_rollup_1h AS
SELECT tenant_id, toStartOfHour(started_at) AS bucket, script_type, status,
       countState() AS ops, sumState(duration_ms) AS duration
FROM operations
GROUP BY tenant_id, bucket, script_type, status;
