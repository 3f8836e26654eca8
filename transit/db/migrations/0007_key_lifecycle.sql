-- API keys have a life: who made them, when they expire, who revoked them, and when
-- they were last used (recorded at most once a minute per key).
ALTER TABLE api_keys
    ADD COLUMN created_by   text NOT NULL DEFAULT '',
    ADD COLUMN expires_at   timestamptz,
    ADD COLUMN revoked_by   text,
    ADD COLUMN last_used_at timestamptz;

-- A key revoked by hand before this migration: nobody recorded who did it.
UPDATE api_keys SET revoked_by = 'unknown' WHERE revoked_at IS NOT NULL;

ALTER TABLE api_keys
    ADD CONSTRAINT api_keys_expires_after_created CHECK (expires_at > created_at),
    ADD CONSTRAINT api_keys_revoked_by_whom CHECK ((revoked_at IS NULL) = (revoked_by IS NULL));
