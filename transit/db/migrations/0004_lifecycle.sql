-- The transit lifecycle, API keys, partner notifications.

-- A transit's timeline: state changes, border crossings, incidents, closure decisions.
CREATE TABLE transit_events (
    id          bigserial PRIMARY KEY,
    mrn         char(18) NOT NULL REFERENCES transits (mrn),
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,
    actor       text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX transit_events_mrn ON transit_events (mrn, at);

-- API keys: only a hash is kept; the key is shown once when it is made.
CREATE TABLE api_keys (
    id          bigserial PRIMARY KEY,
    prefix      text NOT NULL UNIQUE,
    key_hash    bytea NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'officer', 'control_room', 'partner')),
    office      text REFERENCES offices (ref),
    country     char(2),
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CHECK ((role = 'officer') = (office IS NOT NULL)),
    CHECK ((role = 'partner') = (country IS NOT NULL))
);

-- A partner country's endpoint for notices (one per country).
CREATE TABLE partner_endpoints (
    country     char(2) PRIMARY KEY,
    url         text NOT NULL,
    secret      bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Notices waiting to be delivered: written in the transaction of what caused them.
CREATE TABLE webhook_outbox (
    id           bigserial PRIMARY KEY,
    country      char(2) NOT NULL,
    event        text NOT NULL,
    mrn          char(18),
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    attempts     integer NOT NULL DEFAULT 0,
    next_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    last_error   text
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_at) WHERE delivered_at IS NULL;

ALTER TABLE seals ADD COLUMN registered_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE devices ADD COLUMN key_rotated_at timestamptz;
