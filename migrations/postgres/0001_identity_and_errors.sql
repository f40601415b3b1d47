-- Tenants, API keys (hashes only) and error groups.
CREATE TABLE IF NOT EXISTS tenants (
    id          UUID PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS api_keys (
    id                  UUID PRIMARY KEY,
    tenant_id           UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    key_hash            BYTEA NOT NULL UNIQUE,
    key_preview         TEXT NOT NULL,
    permissions         TEXT[] NOT NULL DEFAULT '{}',
    rate_limit_per_min  INTEGER,
    expires_at          TIMESTAMPTZ,
    revoked_at          TIMESTAMPTZ,
    last_used_at        TIMESTAMPTZ,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_api_keys_tenant ON api_keys(tenant_id);

CREATE TABLE IF NOT EXISTS error_groups (
    id           UUID PRIMARY KEY,
    tenant_id    UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    fingerprint  TEXT NOT NULL,
    level        TEXT NOT NULL,
    message      TEXT NOT NULL,
    stack_trace  TEXT,
    context      JSONB,
    source       TEXT NOT NULL,
    environment  TEXT,
    user_agent   TEXT,
    ip_address   TEXT,
    url          TEXT,
    resolved     BOOLEAN NOT NULL DEFAULT false,
    resolved_at  TIMESTAMPTZ,
    count        BIGINT NOT NULL,
    first_seen   TIMESTAMPTZ NOT NULL,
    last_seen    TIMESTAMPTZ NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, fingerprint)
);
-- The contract's indexes, each led by the tenant since every query is scoped to one.
CREATE INDEX IF NOT EXISTS idx_errors_last_seen ON error_groups(tenant_id, last_seen DESC);
CREATE INDEX IF NOT EXISTS idx_errors_level ON error_groups(tenant_id, level, last_seen DESC);
CREATE INDEX IF NOT EXISTS idx_errors_source ON error_groups(tenant_id, source, last_seen DESC);
CREATE INDEX IF NOT EXISTS idx_errors_resolved ON error_groups(tenant_id, resolved, last_seen DESC);
CREATE INDEX IF NOT EXISTS idx_errors_resolved_at ON error_groups(tenant_id, resolved_at) WHERE resolved;

-- Stream entries already applied to error_groups: reclaimed entries of a
-- dead consumer are skipped here, so a group is never counted twice.
CREATE TABLE IF NOT EXISTS ingest_applied (
    stream      TEXT NOT NULL,
    entry_id    TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, entry_id)
);
CREATE INDEX IF NOT EXISTS idx_ingest_applied_at ON ingest_applied(applied_at);
