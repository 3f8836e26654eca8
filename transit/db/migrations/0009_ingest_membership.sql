-- Ingest workers' membership of their shared-subscription group. Each slot is an MQTT
-- client id with a persistent session at the broker; the worker that owns it holds a
-- session-level advisory lock on it (transit.db.membership) and beats its heart here.
-- A slot whose worker is gone (lock free, or heartbeat stale) still has its session,
-- which keeps receiving its share of the group's messages: another worker drains it.
CREATE TABLE ingest_slots (
    group_name   text NOT NULL,
    client_id    text NOT NULL,
    -- starting: not yet subscribed; running: a member; leaving: stopping gracefully;
    -- left: stopped, its session gone; parked: stopped as the group's last member, its
    -- session kept so that nothing published meanwhile is dropped; reaping: another
    -- worker drains it; reaped: drained, its session gone.
    state        text NOT NULL CHECK (state IN
                   ('starting', 'running', 'leaving', 'left', 'parked', 'reaping', 'reaped')),
    host         text NOT NULL,
    pid          integer NOT NULL,
    backend_pid  integer NOT NULL,  -- the owner's lock connection, to fence a frozen one
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    reaped_by    text,
    reaped_at    timestamptz,
    drained      bigint NOT NULL DEFAULT 0,  -- messages the last reaper took from it
    reaps        integer NOT NULL DEFAULT 0,
    PRIMARY KEY (group_name, client_id)
);

-- Who holds a database-wide lease (the watchdog: silence, overdue, retention). The
-- lease itself is a session-level advisory lock; this row says who has it, for
-- operators and tests.
CREATE TABLE leases (
    name         text PRIMARY KEY,
    holder       text NOT NULL,
    group_name   text NOT NULL,
    host         text NOT NULL,
    pid          integer NOT NULL,
    acquired_at  timestamptz NOT NULL,
    renewed_at   timestamptz NOT NULL,
    takeovers    integer NOT NULL DEFAULT 0
);
