-- The risk score (issue 15): the trained models, each transit's current score with the
-- accumulators its features need (kept up to date by ingest, batch by batch), and what
-- the officers' inspections found (which feeds the history of the vehicle, tracker and
-- trader).

-- A model fitted by `transit risk train` (transit/services/risk.py). The newest version
-- scores; with none, the packaged default (transit/risk/default_model.json, version 0).
CREATE TABLE risk_models (
    version     integer PRIMARY KEY CHECK (version > 0),
    model       jsonb NOT NULL,
    trained_at  timestamptz NOT NULL DEFAULT now(),
    metrics     jsonb NOT NULL DEFAULT '{}'
);

-- One transit's current score. level: high from probability 0.8, medium from 0.4, low
-- below (transit.risk.model.LEVELS). reasons: [{feature, value, weight, contribution}],
-- largest contribution first; with the model's intercept they add up to the logit.
CREATE TABLE transit_risk (
    mrn            char(18) PRIMARY KEY REFERENCES transits (mrn) ON DELETE CASCADE,
    probability    double precision NOT NULL CHECK (probability BETWEEN 0 AND 1),
    level          text NOT NULL CHECK (level IN ('low', 'medium', 'high')),
    reasons        jsonb NOT NULL,
    features       jsonb NOT NULL,
    model_version  integer NOT NULL,
    -- transit.risk.running.Running: what the track features need, fix by fix
    running        jsonb NOT NULL,
    seal_events    integer NOT NULL DEFAULT 0,  -- seal reports other than sealed
    seal_seq       bigint,  -- the newest seq counted (a redelivery counts nothing twice)
    -- earlier incidents of the vehicle, tracker and trader, read when first scored
    history        jsonb NOT NULL,
    corridor_pace  double precision,  -- the corridor's median s/km then (NULL: none)
    pace           double precision,  -- this transit's s/km so far (a later one's history)
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transit_risk_rank ON transit_risk (probability DESC);

-- What an exit officer's inspection found, recorded with the closure.
CREATE TABLE transit_inspections (
    id          bigserial PRIMARY KEY,
    mrn         char(18) NOT NULL REFERENCES transits (mrn) ON DELETE CASCADE,
    inspected   boolean NOT NULL,
    found       boolean NOT NULL CHECK (inspected OR NOT found),
    note        text,
    office      text,
    actor       text NOT NULL,
    -- the score the officer saw when deciding
    probability double precision,
    level       text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transit_inspections_mrn ON transit_inspections (mrn);

-- A transit's alerts counted per batch, and the history looked up by vehicle, tracker
-- and trader.
CREATE INDEX IF NOT EXISTS alerts_mrn ON alerts (mrn);
CREATE INDEX IF NOT EXISTS transits_vehicle ON transits (vehicle) WHERE vehicle IS NOT NULL;
CREATE INDEX IF NOT EXISTS transits_tracker_all ON transits (tracker_id);
CREATE INDEX IF NOT EXISTS transits_trader ON transits ((details->>'trader'))
    WHERE details ? 'trader';
