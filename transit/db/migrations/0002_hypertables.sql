-- Telemetry as TimescaleDB hypertables, one-day chunks. A message is identified by
-- (device_id, seq); the unique indexes include the partitioning column, as
-- TimescaleDB requires, and make every write idempotent.
SELECT create_hypertable('fixes', 'time', chunk_time_interval => interval '1 day');
SELECT create_hypertable('seal_events', 'time', chunk_time_interval => interval '1 day');
CREATE UNIQUE INDEX fixes_identity ON fixes (device_id, seq, idx, time);
CREATE INDEX fixes_device_time ON fixes (device_id, time DESC);
CREATE UNIQUE INDEX seal_events_identity ON seal_events (device_id, seq, seal_id, time);
CREATE INDEX seal_events_seal_time ON seal_events (seal_id, time DESC);
