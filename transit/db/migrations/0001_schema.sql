-- The core schema: reference data, transits, telemetry hypertables, alerts,
-- dead letters and the audit log.

CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE offices (
    ref         text PRIMARY KEY CHECK (ref ~ '^[A-Z]{2}[A-Z0-9]{6}$'),
    name        text NOT NULL,
    country     char(2) NOT NULL,
    roles       text[] NOT NULL,
    lon         double precision NOT NULL,
    lat         double precision NOT NULL,
    radius_m    double precision NOT NULL DEFAULT 500,
    area        jsonb
);

CREATE TABLE corridors (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    width_m     double precision NOT NULL CHECK (width_m > 0),
    route       jsonb NOT NULL,
    countries   text[] NOT NULL,
    properties  jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    device_id     text PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('tracker', 'seal', 'edge')),
    hmac_key      bytea,
    registered_at timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz,
    battery_pct   real
);

CREATE TABLE seals (
    seal_id       text PRIMARY KEY,
    manufacturer  text NOT NULL,
    serial        text NOT NULL,
    tracker_id    text REFERENCES devices (device_id),
    status        text,
    armed         boolean NOT NULL DEFAULT false,
    last_counter  bigint,
    last_seen     timestamptz
);

CREATE TABLE transits (
    mrn               char(18) PRIMARY KEY,
    status            text NOT NULL DEFAULT 'declared',
    tracker_id        text NOT NULL REFERENCES devices (device_id),
    corridor_id       text NOT NULL REFERENCES corridors (id),
    vehicle           text,
    seal_ids          text[] NOT NULL DEFAULT '{}',
    office_departure  text NOT NULL REFERENCES offices (ref),
    offices_transit   text[] NOT NULL DEFAULT '{}',
    office_destination text NOT NULL REFERENCES offices (ref),
    countries         text[] NOT NULL,
    time_limit        timestamptz NOT NULL,
    declared_at       timestamptz NOT NULL DEFAULT now(),
    released_at       timestamptz,
    arrived_at        timestamptz,
    closed_at         timestamptz,
    details           jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX transits_tracker ON transits (tracker_id) WHERE status IN ('released', 'in_transit', 'overdue');

CREATE TABLE fixes (
    time         timestamptz NOT NULL,
    device_id    text NOT NULL,
    seq          bigint NOT NULL,
    idx          integer NOT NULL,
    lat          double precision NOT NULL,
    lon          double precision NOT NULL,
    speed_kmh    real,
    course_deg   real,
    hdop         real,
    received_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE seal_events (
    time         timestamptz NOT NULL,
    device_id    text NOT NULL,
    seq          bigint NOT NULL,
    seal_id      text NOT NULL,
    status       text NOT NULL,
    counter      bigint NOT NULL,
    battery_pct  real,
    lat          double precision,
    lon          double precision,
    received_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alerts (
    id            bigserial PRIMARY KEY,
    mrn           char(18) REFERENCES transits (mrn),
    device_id     text NOT NULL,
    type          text NOT NULL,
    cond_key      text NOT NULL DEFAULT '',
    severity      text NOT NULL,
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    event_time    timestamptz NOT NULL,
    raised_at     timestamptz NOT NULL DEFAULT now(),
    lat           double precision,
    lon           double precision,
    details       jsonb NOT NULL DEFAULT '{}',
    cleared_at    timestamptz,
    acknowledged_at timestamptz,
    acknowledged_by text,
    assignee      text,
    resolved_at   timestamptz,
    resolved_by   text,
    note          text
);
-- One live alert per condition: a condition cannot raise again while its alert is
-- neither cleared nor resolved.
CREATE UNIQUE INDEX alerts_one_live ON alerts (mrn, type, cond_key)
    WHERE cleared_at IS NULL AND status <> 'resolved';
CREATE INDEX alerts_recent ON alerts (raised_at DESC);

CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    source       text NOT NULL,
    topic        text,
    raw          bytea NOT NULL,
    reason       text NOT NULL,
    detail       text NOT NULL
);
CREATE INDEX dead_letters_reason ON dead_letters (reason, received_at DESC);

CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    action       text NOT NULL,
    subject      text NOT NULL,
    details      jsonb NOT NULL DEFAULT '{}',
    prev_hash    bytea,
    hash         bytea
);
