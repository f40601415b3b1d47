-- Product-wide notification channels (Slack, webhook, email) and the record
-- of every delivery. Integer ids in creation order, tenant-scoped. A
-- channel's non-secret settings are in `config`; its secrets (a password,
-- a signing secret, a Slack webhook URL) are stored only in
-- `secrets_sealed`, a JSON object sealed by SecretBox (AES-256-GCM).
CREATE TABLE IF NOT EXISTS notification_channels (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('slack', 'webhook', 'email')),
    is_enabled      BOOLEAN NOT NULL DEFAULT true,
    config          JSONB NOT NULL DEFAULT '{}'::jsonb,
    secrets_sealed  BYTEA,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS notification_channels_tenant_id
    ON notification_channels (tenant_id, id);

-- One row per delivery (all its attempts): what happened and why.
CREATE TABLE IF NOT EXISTS notification_deliveries (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id  BIGINT NOT NULL REFERENCES notification_channels(id) ON DELETE CASCADE,
    tenant_id   UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    status      TEXT NOT NULL CHECK (status IN ('delivered', 'failed')),
    attempts    INTEGER NOT NULL,
    error       TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS notification_deliveries_channel
    ON notification_deliveries (tenant_id, channel_id, id);
