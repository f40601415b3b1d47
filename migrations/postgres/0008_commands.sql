-- Backup platform: saved shell commands (templates with {{variables}}) and
-- their executions, each run as an apalis job of kind `command`.
CREATE TABLE IF NOT EXISTS commands (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id           UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    description         TEXT,
    command_template    TEXT NOT NULL,
    type                TEXT NOT NULL DEFAULT 'shell' CHECK (type IN ('shell', 'docker')),
    tags                TEXT,
    -- The creator's username when it was created (kept if the user goes).
    created_by          TEXT NOT NULL,
    created_by_user_id  UUID,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS commands_tenant ON commands (tenant_id, id);

CREATE TABLE IF NOT EXISTS command_executions (
    id                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id             UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    command_id            BIGINT NOT NULL REFERENCES commands(id) ON DELETE CASCADE,
    -- Kept when the server is deleted.
    server_id             BIGINT NOT NULL,
    -- The template with the variables substituted: what `sh -c` ran.
    command_text          TEXT NOT NULL,
    status                TEXT NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    exit_code             INTEGER,
    stdout                TEXT,
    stderr                TEXT,
    -- Bytes read past the capture bound and dropped.
    stdout_dropped_bytes  BIGINT NOT NULL DEFAULT 0,
    stderr_dropped_bytes  BIGINT NOT NULL DEFAULT 0,
    error_message         TEXT,
    executed_by           TEXT NOT NULL,
    executed_by_user_id   UUID,
    task_id               TEXT,
    started_at            TIMESTAMPTZ,
    completed_at          TIMESTAMPTZ,
    duration_seconds      DOUBLE PRECISION,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS command_executions_command
    ON command_executions (tenant_id, command_id, id DESC);
