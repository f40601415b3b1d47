-- The deployment (its job-queue namespace, SLUICE_REDIS_PREFIX) whose
-- schedulers run a schedule: deployments sharing one PostgreSQL never
-- claim each other's schedules or sweeps, whose jobs would otherwise land
-- in the wrong queue and backup store.
ALTER TABLE schedules ADD COLUMN IF NOT EXISTS namespace TEXT NOT NULL DEFAULT 'sluice';
CREATE INDEX IF NOT EXISTS schedules_namespace_due ON schedules (namespace, next_run) WHERE enabled;
