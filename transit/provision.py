"""Loading reference data and simulated fleets into the database and the broker, and
the devices' broker credentials: a password in the broker's file, or a certificate
from the device CA."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transit import broker, pki
from transit.config import Settings
from transit.db import corridors, device_certs, devices, offices, rule_state, transits
from transit.db.store import Conn
from transit.geofence.corridor import load_geojson

if TYPE_CHECKING:
    from firmware_sim.scenario import TruckPlan


def import_geojson(conn: Conn, doc: dict[str, Any]) -> tuple[int, int]:
    """Upsert the corridors and offices of a FeatureCollection. Returns their counts."""
    found_corridors, found_offices = load_geojson(doc)
    with conn.transaction():
        for o in found_offices:
            offices.upsert(conn, o)
        for c in found_corridors:
            corridors.upsert(conn, c)
    return len(found_corridors), len(found_offices)


def provision_fleet(
    conn: Conn, plans: list[TruckPlan], hours: float = 72, first_seq: int = 1
) -> None:
    """Register each plan's tracker and write its transit as under way, skipping
    declaration and release: a shortcut for tests, benchmarks and ``transit sim
    --provision``. ``transit demo`` goes through the API as a customs office does.
    ``first_seq`` is the seq of the trackers' first message, which the rules take
    first (the release checks would have heard the one before)."""
    limit = datetime.now(UTC) + timedelta(hours=hours)
    with conn.transaction():
        for p in plans:
            devices.register(conn, p.device_id, "tracker")
            transits.declare(
                conn,
                mrn=p.mrn,
                tracker_id=p.device_id,
                corridor_id=p.corridor_id,
                office_departure=p.office_departure,
                offices_transit=p.offices_transit,
                office_destination=p.office_destination,
                countries=p.countries,
                time_limit=limit,
                seal_ids=p.seal_ids,
                vehicle=f"SIM {p.device_id}",
                status="in_transit",
            )
            transits.finish_other_transits(conn, p.device_id, p.mrn)
            rule_state.start_over(conn, p.device_id, p.mrn, first_seq - 1)


def sync_broker(conn: Conn, settings: Settings, reload: bool = True) -> int:
    """Rewrite the broker's password file and ACL from the devices that log in with a
    password (not those issued a certificate), make the device CA if missing and sign
    its CRL again; reload the broker."""
    conn.commit()  # what the caller registered is visible to the next process's read
    device_certs.lock_broker_files(conn)
    ids = device_certs.password_device_ids(conn)
    directory = settings.run_dir / "mosquitto"
    try:
        broker.write_files(settings, ids, directory)
    except BaseException:
        conn.rollback()  # the lock goes with the transaction
        raise
    refresh_crl(conn, settings)  # still under the lock; it commits
    if reload:
        broker.reload(directory)
    return len(ids)


def device_ca(settings: Settings, now: datetime | None = None) -> pki.DeviceCA:
    """The device CA under the data folder (``<run_dir>/device-ca``), made when missing."""
    return pki.DeviceCA.open(settings.run_dir / "device-ca", now or datetime.now(UTC))


def register_with_certificate(
    conn: Conn,
    settings: Settings,
    device_id: str,
    *,
    kind: str = "tracker",
    csr: bytes | str | None = None,
    hmac_key: bytes | None = None,
    now: datetime | None = None,
    ca: pki.DeviceCA | None = None,
) -> pki.Issued:
    """Register a device that logs in with an X.509 certificate (CN = its id), and issue
    it one: on the CSR's key, or on a key pair made here and returned once
    (``Issued.key_pem``; never stored). The certificate is recorded in the same
    transaction as the device. The broker's password file is not touched, unless the
    device had logged in with a password until now: that password is withdrawn.

    Raises:
        pki.CertificateRequestError: a bad device id or CSR, naming the problem.
    """
    now = now or datetime.now(UTC)
    reserved = frozenset(
        {settings.mqtt_ingest_user, settings.mqtt_api_user, settings.mqtt_admin_user}
    )
    pki.check_device_id(device_id, reserved)
    key = None
    if csr is not None:
        public = pki.parse_csr(csr, device_id)
    else:
        key = pki.new_key()
        public = key.public_key()
    ca = ca or device_ca(settings, now)
    issued = ca.issue(device_id, public, now)
    with conn.transaction():
        had_password = devices.exists(conn, device_id) and not device_certs.has_any(conn, device_id)
        devices.register(conn, device_id, kind, hmac_key)
        device_certs.add(
            conn, issued.serial, device_id, issued.not_before, issued.not_after, issued.cert_pem
        )
    if had_password:
        sync_broker(conn, settings)
    return issued if key is None else replace(issued, key_pem=pki.key_pem(key))


def revoke_certificates(
    conn: Conn,
    settings: Settings,
    device_id: str,
    *,
    serial: str | None = None,
    now: datetime | None = None,
    ca: pki.DeviceCA | None = None,
    broker_dir: Path | None = None,
) -> list[str]:
    """Revoke a device's certificates (all its valid ones, or ``serial``): the rows are
    marked, the CRL is written from every revoked row before the commit (a failure
    leaves a CRL that refuses more, never less), and the broker is told to reload it
    (SIGHUP to the pid in ``broker_dir``, the project's broker by default). Returns the
    serials revoked; an empty list when there was nothing to revoke."""
    now = now or datetime.now(UTC)
    with conn.transaction():
        # Revocations and CRL refreshes one at a time: the CRL each writes lists every
        # serial revoked before it, its own included, so the last one written has all.
        device_certs.lock_broker_files(conn)
        serials = device_certs.revoke(conn, device_id, now, serial)
        if serials:
            if ca is None:
                if not (settings.run_dir / "device-ca" / "ca.key").exists():
                    raise ValueError(
                        f"no device CA under {settings.run_dir / 'device-ca'}: revoke on the"
                        " machine whose CA issued the certificates"
                    )
                ca = device_ca(settings, now)
            listed = device_certs.revoked(conn, now)
            ca.write_crl([pki.Revoked(s, at) for s, at in listed], now)
    if serials:
        broker.reload(broker_dir or settings.run_dir / "mosquitto")
    return serials


def refresh_crl(
    conn: Conn, settings: Settings, now: datetime | None = None, ca: pki.DeviceCA | None = None
) -> Path:
    """Sign the CRL again from the database when it lists other serials or is past half
    its life (it is believed for ``pki.CRL_DAYS``): at every set-up and broker sync, and
    daily where the stack runs for long. Makes the CA if missing."""
    now = now or datetime.now(UTC)
    device_certs.lock_broker_files(conn)  # not between a revocation and its CRL
    try:
        ca = ca or device_ca(settings, now)
        listed = [pki.Revoked(s, at) for s, at in device_certs.revoked(conn, now)]
        if ca.crl_is_current(listed, now):
            return ca.crl_path
        return ca.write_crl(listed, now)
    finally:
        conn.commit()  # the lock goes with the transaction
