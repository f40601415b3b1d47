-- Backup platform: retention policies (restic-style keep rules) and backup
-- schedules (five-field cron in an IANA zone), tenant-scoped, integer ids
-- in creation order.
CREATE TABLE IF NOT EXISTS retention_policies (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    description   TEXT,
    -- A rule not given is NULL; every rule is >= 0.
    keep_last_n   INTEGER CHECK (keep_last_n >= 0),
    keep_days     INTEGER CHECK (keep_days >= 0),
    keep_daily    INTEGER CHECK (keep_daily >= 0),
    keep_weekly   INTEGER CHECK (keep_weekly >= 0),
    keep_monthly  INTEGER CHECK (keep_monthly >= 0),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS retention_policies_tenant ON retention_policies (tenant_id, id);

CREATE TABLE IF NOT EXISTS schedules (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id            UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name                 TEXT NOT NULL,
    description          TEXT,
    -- A schedule goes with its server.
    server_id            BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    database_name        TEXT NOT NULL,
    cron_expression      TEXT NOT NULL,
    timezone             TEXT NOT NULL DEFAULT 'UTC',
    backup_type          TEXT NOT NULL DEFAULT 'full',
    compression_type     TEXT NOT NULL DEFAULT 'zstd'
                         CHECK (compression_type IN ('zstd', 'gzip', 'none')),
    encrypt              BOOLEAN NOT NULL DEFAULT true,
    -- Deleting a policy detaches it: the schedule then keeps everything.
    retention_policy_id  BIGINT REFERENCES retention_policies(id) ON DELETE SET NULL,
    enabled              BOOLEAN NOT NULL DEFAULT true,
    notify_on_success    BOOLEAN NOT NULL DEFAULT false,
    notify_on_failure    BOOLEAN NOT NULL DEFAULT true,
    last_run             TIMESTAMPTZ,
    -- The next instant the cron expression matches, in UTC.
    next_run             TIMESTAMPTZ,
    -- When a worker last queued this schedule's retention sweep (claimed
    -- with a conditional UPDATE, so one worker per period does it).
    retention_swept_at   TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS schedules_tenant ON schedules (tenant_id, id);
CREATE INDEX IF NOT EXISTS schedules_due ON schedules (next_run) WHERE enabled;

-- The schedule that queued a backup (NULL for one asked for by hand).
ALTER TABLE backups ADD COLUMN IF NOT EXISTS schedule_id BIGINT;
CREATE INDEX IF NOT EXISTS backups_retention
    ON backups (tenant_id, server_id, database_name) WHERE status = 'completed';
