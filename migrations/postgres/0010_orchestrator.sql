-- Schema migration orchestrator: registered databases (connection strings
-- sealed), migrations, approvals and executions. At most one execution
-- runs per registered database at a time: the partial unique index is the
-- lock, so API processes cannot race past each other.

CREATE TABLE orch_databases (
    id BIGSERIAL PRIMARY KEY,
    tenant_id UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    db_type TEXT NOT NULL,
    environment TEXT NOT NULL,
    master_sealed BYTEA NOT NULL,
    -- [{"replicaId", "role"}] in registration order; their connection
    -- strings, sealed, in `replica_conns_sealed` in the same order.
    replicas JSONB NOT NULL DEFAULT '[]',
    replica_conns_sealed BYTEA[] NOT NULL DEFAULT '{}',
    created_by UUID,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX orch_databases_tenant ON orch_databases (tenant_id, id);

CREATE TABLE orch_migrations (
    id BIGSERIAL PRIMARY KEY,
    tenant_id UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    database_id BIGINT NOT NULL REFERENCES orch_databases(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT,
    migration_script TEXT NOT NULL,
    rollback_script TEXT,
    strategy TEXT NOT NULL,
    requested_risk TEXT NOT NULL,
    risk_level TEXT NOT NULL,
    requires_approval BOOLEAN NOT NULL,
    tags TEXT[] NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'Draft',
    created_by UUID,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX orch_migrations_tenant ON orch_migrations (tenant_id, created_at DESC, id DESC);
CREATE INDEX orch_migrations_database ON orch_migrations (database_id);

CREATE TABLE orch_approvals (
    id BIGSERIAL PRIMARY KEY,
    tenant_id UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    migration_id BIGINT NOT NULL REFERENCES orch_migrations(id) ON DELETE CASCADE,
    status TEXT NOT NULL DEFAULT 'Pending',
    submitted_by UUID,
    submitted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    reviewed_by TEXT,
    reviewer_id UUID,
    reviewed_at TIMESTAMPTZ,
    notes TEXT
);
CREATE INDEX orch_approvals_migration ON orch_approvals (migration_id, id DESC);

CREATE TABLE orch_executions (
    id BIGSERIAL PRIMARY KEY,
    tenant_id UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    migration_id BIGINT NOT NULL REFERENCES orch_migrations(id) ON DELETE CASCADE,
    database_id BIGINT NOT NULL REFERENCES orch_databases(id) ON DELETE CASCADE,
    status TEXT NOT NULL DEFAULT 'Running',
    dry_run BOOLEAN NOT NULL DEFAULT false,
    strategy TEXT NOT NULL,
    -- [{"name", "status", "startedAt", "completedAt", "error"}] in order.
    phases JSONB NOT NULL,
    current_phase TEXT,
    progress INT NOT NULL DEFAULT 0,
    -- {"avgQueryLatencyMs", "p99QueryLatencyMs", "replicationLagSeconds"}
    metrics JSONB NOT NULL DEFAULT '{}',
    -- {"maxLatencyIncreasePercent", "maxReplicationLagSeconds"}
    thresholds JSONB NOT NULL DEFAULT '{}',
    halt_reason TEXT,
    estimated_duration BIGINT NOT NULL DEFAULT 0,
    task_id TEXT,
    created_by UUID,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at TIMESTAMPTZ,
    rollback_reason TEXT,
    rollback_completed_at TIMESTAMPTZ,
    rollback_duration DOUBLE PRECISION
);
CREATE INDEX orch_executions_migration ON orch_executions (migration_id, id);
-- The execution lock: one running execution per registered database.
CREATE UNIQUE INDEX orch_executions_one_running ON orch_executions (database_id)
    WHERE status = 'Running';
