-- Fixes the ingest filters kept apart (transit/rules/filters.py): a time in the
-- future or far behind the device's newest fix, a position out of range or at 0,0,
-- a poor hdop, a jump. Kept with the reason for inspection, never drawn: `fixes`
-- keeps only believed fixes, so every reader of it (track, live map, last position,
-- exports) stays right without a filter of its own.
--
-- Partitioned by when the server received the fix, not by the fix's own time: a
-- device with a broken clock could otherwise make a chunk for every day it invents.
CREATE TABLE filtered_fixes (
    received_at  timestamptz NOT NULL DEFAULT now(),
    time         timestamptz NOT NULL,
    device_id    text NOT NULL,
    seq          bigint NOT NULL,
    idx          integer NOT NULL,
    lat          double precision NOT NULL,
    lon          double precision NOT NULL,
    speed_kmh    real,
    course_deg   real,
    hdop         real,
    reason       text NOT NULL,
    detail       text NOT NULL
);
SELECT create_hypertable('filtered_fixes', 'received_at', chunk_time_interval => interval '1 day');
-- A redelivered message is recognised by (device_id, seq, idx) and written once.
CREATE INDEX filtered_fixes_identity ON filtered_fixes (device_id, seq, idx);
CREATE INDEX filtered_fixes_device ON filtered_fixes (device_id, received_at DESC);

-- Each device's newest stored fix: the reference of the stale filter, shared by
-- every ingest worker.
ALTER TABLE devices ADD COLUMN last_fix_time timestamptz;
UPDATE devices d SET last_fix_time = (
    SELECT max(time) FROM fixes f
    WHERE f.device_id = d.device_id AND f.time <= now() + interval '5 minutes');

-- Fixes stored before the filters with a time in the future (beyond the default
-- tolerance of five minutes) move to where they belong.
WITH moved AS (
    DELETE FROM fixes WHERE time > now() + interval '5 minutes' RETURNING *
)
INSERT INTO filtered_fixes (received_at, time, device_id, seq, idx, lat, lon, speed_kmh,
                            course_deg, hdop, reason, detail)
SELECT received_at, time, device_id, seq, idx, lat, lon, speed_kmh, course_deg, hdop,
       'future', 'stored before the filters; moved by migration 0005' FROM moved;
