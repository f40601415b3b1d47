-- Backup platform: the servers a tenant registers. Integer ids in creation
-- order; secrets (ssh password and key, database password) are stored only
-- sealed by SecretBox (AES-256-GCM), never in plaintext.
CREATE TABLE IF NOT EXISTS servers (
    id                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id             UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    description           TEXT,
    kind                  TEXT NOT NULL CHECK (kind IN ('local', 'ssh', 'docker')),
    environment           TEXT,
    host                  TEXT,
    port                  INTEGER,
    container             TEXT,
    tags                  JSONB NOT NULL DEFAULT '{}'::jsonb,
    ssh_username          TEXT,
    ssh_password_sealed   BYTEA,
    ssh_key_sealed        BYTEA,
    db_type               TEXT CHECK (db_type IN ('postgresql', 'mysql')),
    db_host               TEXT,
    db_port               INTEGER,
    db_username           TEXT,
    db_password_sealed    BYTEA,
    health_status         TEXT NOT NULL DEFAULT 'unknown',
    last_heartbeat        TIMESTAMPTZ,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS servers_tenant_id ON servers (tenant_id, id);
