-- Health Monitor alerting (contract section 5): a tenant's alert rules,
-- evaluated by the worker processes of one deployment (`namespace`, its
-- SLUICE_REDIS_PREFIX, as schedules are), and incidents, opened by hand or
-- by a rule that fires. Integer ids in creation order, tenant-scoped.
CREATE TABLE IF NOT EXISTS alert_rules (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    namespace       TEXT NOT NULL DEFAULT 'sluice',
    name            TEXT NOT NULL,
    condition       TEXT NOT NULL,
    threshold       DOUBLE PRECISION,
    time_window     TEXT,
    window_secs     BIGINT,
    enabled         BOOLEAN NOT NULL DEFAULT true,
    notifications   TEXT[] NOT NULL DEFAULT '{}',
    severity        TEXT NOT NULL DEFAULT 'warning',
    source          TEXT,
    level           TEXT,
    environment     TEXT,
    last_triggered  TIMESTAMPTZ,
    -- `new_error` rules: error groups created up to here have been
    -- considered (moved forward by compare-and-set, so of several engines
    -- exactly one considers each group).
    checked_until   TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS alert_rules_tenant ON alert_rules (tenant_id, id);
CREATE INDEX IF NOT EXISTS alert_rules_namespace ON alert_rules (namespace) WHERE enabled;

CREATE TABLE IF NOT EXISTS alert_incidents (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    rule_id      BIGINT REFERENCES alert_rules(id) ON DELETE SET NULL,
    title        TEXT NOT NULL,
    severity     TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'investigating',
    description  TEXT,
    assigned_to  TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS alert_incidents_tenant ON alert_incidents (tenant_id, created_at DESC, id DESC);
-- One unresolved incident per rule: however many engines see a rule's
-- condition hold at once, one insert wins and only it fires.
CREATE UNIQUE INDEX IF NOT EXISTS alert_incidents_one_open
    ON alert_incidents (rule_id) WHERE status <> 'resolved';

-- The engine's new_error look-up: a tenant's groups by creation time.
CREATE INDEX IF NOT EXISTS idx_errors_created ON error_groups (tenant_id, created_at);
