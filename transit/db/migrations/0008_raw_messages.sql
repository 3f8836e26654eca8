-- Every accepted telemetry and seal message as its device signed it: the topic, the
-- exact signed bytes (the payload, or an envelope's body) and the signature, so that
-- an alert's evidence can be verified again by anyone holding the device's key.
-- A status message has no seq and is not kept; a refused one is a dead letter.
--
-- Partitioned by the message's own time (its first fix's, or the seal report's), so
-- a day of messages lives and goes with the day of fixes it carries (retention), and
-- a redelivered message (same bytes, same time) is written once. A time ahead of the
-- server's clock is stored as the time of receipt: a device whose clock runs years
-- ahead makes no chunk in the future.
CREATE TABLE raw_messages (
    time         timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    device_id    text NOT NULL,
    seq          bigint NOT NULL,
    topic        text NOT NULL,
    payload      bytea NOT NULL,
    sig          text,
    envelope     boolean NOT NULL DEFAULT false
);
SELECT create_hypertable('raw_messages', 'time', chunk_time_interval => interval '1 day');
CREATE UNIQUE INDEX raw_messages_identity ON raw_messages (device_id, seq, time);
