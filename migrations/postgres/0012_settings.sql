-- Health Monitor settings (contract section 6): an API key's previous
-- hash, accepted until the rotation's grace period ends; team
-- invitations; per-tenant integrations (public config, sealed secrets).
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS prev_key_hash BYTEA;
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS prev_valid_until TIMESTAMPTZ;

CREATE TABLE IF NOT EXISTS team_invitations (
    id          UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    email       TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'viewer')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS team_invitations_email ON team_invitations (tenant_id, lower(email));

CREATE TABLE IF NOT EXISTS hm_integrations (
    tenant_id       UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    config          JSONB NOT NULL DEFAULT '{}',
    secrets_sealed  BYTEA,
    last_test       TIMESTAMPTZ,
    last_ok         BOOLEAN,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);
