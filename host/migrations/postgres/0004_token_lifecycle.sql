-- Tokens expire, are revoked, remember when they were last used (to the minute), and may
-- be narrowed to some of their role's permissions (space-separated; NULL: all of them).
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN revoked_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN last_used_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN scopes TEXT;
