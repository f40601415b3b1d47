-- Backup platform: background tasks (one row per apalis job, scoped to a
-- tenant, holding what the contract's task answer shows) and backups.
CREATE TABLE IF NOT EXISTS tasks (
    -- The apalis task id (a ULID): the contract's `task_id`.
    id            TEXT PRIMARY KEY,
    tenant_id     UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    progress      DOUBLE PRECISION NOT NULL DEFAULT 0,
    error         TEXT,
    resource_id   BIGINT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at    TIMESTAMPTZ,
    finished_at   TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS tasks_tenant ON tasks (tenant_id, created_at);

CREATE TABLE IF NOT EXISTS backups (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id         UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- Kept when the server is deleted: the backup stays restorable elsewhere.
    server_id         BIGINT NOT NULL,
    database_name     TEXT NOT NULL,
    db_type           TEXT NOT NULL CHECK (db_type IN ('postgresql', 'mysql')),
    backup_type       TEXT NOT NULL DEFAULT 'full',
    status            TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    compression_type  TEXT NOT NULL CHECK (compression_type IN ('zstd', 'gzip', 'none')),
    is_encrypted      BOOLEAN NOT NULL,
    object_key        TEXT NOT NULL,
    storage_path      TEXT,
    size_bytes        BIGINT,
    dump_bytes        BIGINT,
    checksum          TEXT,
    -- Tables and their exact row counts, read just before the dump.
    table_counts      JSONB,
    task_id           TEXT,
    started_at        TIMESTAMPTZ,
    completed_at      TIMESTAMPTZ,
    duration_seconds  DOUBLE PRECISION,
    error_message     TEXT,
    verified_at       TIMESTAMPTZ,
    verify_status     TEXT,
    verify_details    JSONB,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS backups_tenant ON backups (tenant_id, id DESC);

-- The SSH host key fingerprint (`SHA256:…`) an ssh or docker server
-- presented on first use; every later connection must present the same.
ALTER TABLE servers ADD COLUMN IF NOT EXISTS ssh_host_key TEXT;

-- When the background health check last took the server (claimed with
-- SKIP LOCKED, so several workers never check one server twice at once).
ALTER TABLE servers ADD COLUMN IF NOT EXISTS health_checked_at TIMESTAMPTZ;
CREATE INDEX IF NOT EXISTS servers_health_due ON servers (health_checked_at NULLS FIRST);
