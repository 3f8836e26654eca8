-- Dead letters that can be looked into and replayed once their cause is fixed.
-- The sender is the device id in the topic (kept as a generated column, so every
-- writer fills it and old rows have it too); the signature is kept so a replay
-- verifies the message as ingest would have; a replay is recorded on the row.
ALTER TABLE dead_letters
    ADD COLUMN sig text,
    ADD COLUMN device_id text GENERATED ALWAYS AS (
        CASE WHEN topic ~ '^transit/v1/devices/[^/]+/[^/]+$'
             THEN split_part(topic, '/', 4) END) STORED,
    ADD COLUMN replays integer NOT NULL DEFAULT 0,
    ADD COLUMN replayed_at timestamptz,
    ADD COLUMN replay_outcome text CHECK (replay_outcome IN ('accepted', 'refused')),
    ADD COLUMN first_reason text;
CREATE INDEX dead_letters_device ON dead_letters (device_id, received_at DESC);
CREATE INDEX dead_letters_recent ON dead_letters (received_at DESC);
