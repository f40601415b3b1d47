-- Health Monitor data retention (`/api/settings/retention`): how many days
-- of error occurrences a tenant keeps. A tenant without a row keeps the
-- default (90 days).
CREATE TABLE IF NOT EXISTS error_retention_settings (
    tenant_id    UUID PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    events_days  INTEGER NOT NULL CHECK (events_days BETWEEN 1 AND 3650),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
