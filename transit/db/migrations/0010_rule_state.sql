-- What the alert rules remember of each transit under way, kept here and not in an
-- ingest worker's memory: a shared subscription hands one truck's messages to every
-- worker in turn, so the next message may reach any worker on any machine. A batch
-- locks the rows of its transits (in MRN order, so two workers never deadlock), reads
-- them, runs the rules, and writes them back with the fixes and alerts it made, in one
-- transaction (docs/scaling.md).
CREATE TABLE rule_state (
    mrn          char(18) PRIMARY KEY REFERENCES transits (mrn) ON DELETE CASCADE,
    device_id    text NOT NULL,
    -- the device's messages are evaluated in seq order: the last one evaluated, the
    -- seq at or below which the rules never applied (sent before this row existed),
    -- and the gaps passed over at a timeout ([[lo, hi], ...], inclusive)
    last_seq     bigint,
    base_seq     bigint,
    skipped      jsonb NOT NULL DEFAULT '[]',
    state        jsonb NOT NULL,  -- transit/rules/state.py
    version      bigint NOT NULL DEFAULT 0,  -- transactions that took its messages or changed it
    last_worker  text,  -- the worker of the last of them
    handoffs     bigint NOT NULL DEFAULT 0,  -- of them, by another worker than the one before
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rule_state_device ON rule_state (device_id);

-- Messages that came before their predecessor (a device's seq N + 2 while N + 1 is
-- still on its way through another worker): held, as received, until the gap fills or
-- times out. Written before the message is acknowledged, so nothing acknowledged is
-- lost; any worker evaluates them.
CREATE TABLE pending_messages (
    device_id    text NOT NULL,
    seq          bigint NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic        text NOT NULL,
    payload      bytea NOT NULL,
    sig          text,
    PRIMARY KEY (device_id, seq)
);
CREATE INDEX pending_messages_age ON pending_messages (received_at);

-- When each ingest worker last had nothing in hand (everything it had received was
-- committed and acknowledged, so the broker held nothing back for it): a gap in a
-- device's seqs is skipped only once every live worker has been drained since the
-- message beyond it was held (transit/ingest/sequencing.py).
ALTER TABLE ingest_workers ADD COLUMN IF NOT EXISTS drained_at timestamptz;

-- Each device's newest stored seq: where a new transit's cursor starts.
ALTER TABLE devices ADD COLUMN IF NOT EXISTS last_seq bigint;
UPDATE devices d SET last_seq = greatest(
    (SELECT max(seq) FROM fixes f WHERE f.device_id = d.device_id),
    (SELECT max(seq) FROM seal_events s WHERE s.device_id = d.device_id));
