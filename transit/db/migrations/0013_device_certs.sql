-- Per-device X.509 client certificates issued by the device CA (transit/pki.py): one
-- row per certificate, its serial in lowercase hex. A device with any row here logs in
-- with its certificate only: it is left out of the broker's password file, so a
-- revoked certificate cannot be stepped around with a password. The revocation list
-- (CRL) is written from the rows with revoked_at.
CREATE TABLE device_certs (
    serial      text PRIMARY KEY CHECK (serial ~ '^[0-9a-f]{1,40}$'),
    device_id   text NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
    not_before  timestamptz NOT NULL,
    not_after   timestamptz NOT NULL CHECK (not_after > not_before),
    issued_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    cert_pem    text NOT NULL
);
CREATE INDEX device_certs_device ON device_certs (device_id);
CREATE INDEX device_certs_revoked ON device_certs (revoked_at) WHERE revoked_at IS NOT NULL;
