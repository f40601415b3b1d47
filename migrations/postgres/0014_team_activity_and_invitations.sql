-- Team (Health Monitor settings): each member's last activity (flushed in
-- batches with the API keys' last_used), and invitations that can be
-- accepted: the SHA-256 of a token shown once, and an expiry.
ALTER TABLE tenant_members ADD COLUMN IF NOT EXISTS last_active_at TIMESTAMPTZ;
ALTER TABLE team_invitations ADD COLUMN IF NOT EXISTS token_hash BYTEA;
ALTER TABLE team_invitations ADD COLUMN IF NOT EXISTS expires_at TIMESTAMPTZ;
CREATE UNIQUE INDEX IF NOT EXISTS team_invitations_token ON team_invitations (token_hash)
    WHERE token_hash IS NOT NULL;
