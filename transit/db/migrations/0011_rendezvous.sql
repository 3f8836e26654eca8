-- The rendezvous rule's episodes under way (pairs of trucks stopped together, since
-- when, reported or not): one row, written by the process that holds the watchdog
-- lease in the transaction of its tick, and read again by the next holder
-- (transit/ingest/meetings.py). The positions it works on are the database's.
CREATE TABLE rendezvous_state (
    id          int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    state       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
