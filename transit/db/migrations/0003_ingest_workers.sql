-- Each ingest worker's counters, written as it commits; the API's /metrics and
-- /health/ingest read them, so one endpoint covers every worker process.
CREATE TABLE ingest_workers (
    worker_id    text PRIMARY KEY,
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    stats        jsonb NOT NULL
);
