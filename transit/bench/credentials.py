"""``transit bench credentials``: what registering one device costs as the fleet grows,
with a certificate from the device CA against the broker's password file.

On the ``transit_bench`` database, with a data folder of its own
(``.run/bench/credentials``: its password file and device CA; no broker is signalled).
The registrations timed go through the real paths: ``register_with_certificate`` (one
signature, two rows) and, for the password file, register + ``sync_broker`` (every
password device hashed again by ``mosquitto_passwd``, as ``transit devices register``
does). The devices before those timed are bulk-inserted in one COPY (with their
certificate rows for the certificate path), so the table holds what it would. Every
device the benchmark made is deleted at the end. Figures are medians of the timed
registrations, in ms, with ratios from the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from transit.config import Settings, get_settings
from transit.db import device_certs, devices
from transit.db.migrate import migrate
from transit.localstack import bench_settings
from transit.pki import CERT_DAYS
from transit.provision import device_ca, register_with_certificate, sync_broker

PREFIX = "CRED-"


def _bulk(conn: psycopg.Connection[Any], up_to: int, tag: str, cert_pem: str | None) -> int:
    """Bulk-register devices (with ``cert_pem``, each with a certificate row) until the
    table holds ``up_to`` devices; how many were added."""
    n = max(0, up_to - device_certs.registered_count(conn))
    ids = [f"{PREFIX}{tag}-{i:07d}" for i in range(n)]
    device_certs.bulk_register(conn, ids, cert_pem, datetime.now(UTC), CERT_DAYS)
    conn.commit()
    return n


def _timed(
    conn: psycopg.Connection[Any], times: int, tag: str, register: Callable[[str], object]
) -> dict[str, Any]:
    """Register ``times`` devices one by one; the count before the first, each time."""
    before = device_certs.registered_count(conn)
    ms = []
    for i in range(times):
        t0 = time.perf_counter()
        register(f"{PREFIX}{tag}-{i:03d}")
        ms.append((time.perf_counter() - t0) * 1000)
    return {
        "registered_before": before,
        "last_is_device_number": before + times,
        "ms": [round(m, 2) for m in ms],
        "median_ms": round(statistics.median(ms), 2),
        "last_ms": round(ms[-1], 2),
    }


def run(
    settings: Settings, devices_total: int = 100_000, password_at: int = 10_000, repeat: int = 10
) -> dict[str, Any]:
    """Time certificate registrations near 10 and up to ``devices_total`` devices, and
    password registrations near 10 and at ``password_at``."""
    bench = bench_settings(settings, settings.mqtt_port).model_copy(
        update={"run_dir": settings.run_dir / "bench" / "credentials"}
    )
    bench.run_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"devices_total": devices_total, "password_at": password_at}
    with psycopg.connect(bench.database_url) as conn:
        if not device_certs.table_exists(conn):
            migrate(conn)
        device_certs.delete_devices(conn, PREFIX)
        conn.commit()
        out["other_devices_in_table"] = device_certs.registered_count(conn)
        ca = device_ca(bench)

        def with_cert(device_id: str) -> None:
            register_with_certificate(conn, bench, device_id)

        in_file: list[int] = []

        def with_password(device_id: str) -> None:
            devices.register(conn, device_id, "tracker")
            conn.commit()
            in_file.append(sync_broker(conn, bench))

        try:
            out["certificate_small"] = _timed(conn, repeat, "CS", with_cert)
            out["password_small"] = _timed(conn, max(3, repeat // 2), "PS", with_password)
            out["password_small"]["devices_in_file_last"] = in_file[-1]
            out["password_bulk_rows"] = _bulk(conn, password_at - repeat // 2, "PB", None)
            out["password_large"] = _timed(conn, max(3, repeat // 2), "PL", with_password)
            out["password_large"]["devices_in_file_last"] = in_file[-1]
            # The certificate path's bulk rows carry certificates: they are left out of
            # the password file, as certificate devices are.
            pem = ca.issue("bulk", ca.key.public_key(), datetime.now(UTC)).cert_pem
            out["certificate_bulk_rows"] = _bulk(conn, devices_total - repeat, "CB", pem)
            out["certificate_large"] = _timed(conn, repeat, "CL", with_cert)
        finally:
            conn.rollback()
            device_certs.delete_devices(conn, PREFIX)
            conn.commit()
    cs, cl = out["certificate_small"], out["certificate_large"]
    ps, pl = out["password_small"], out["password_large"]
    out["ratios"] = {
        "certificate_large_vs_small": round(cl["median_ms"] / cs["median_ms"], 2),
        "password_large_vs_small": round(pl["median_ms"] / ps["median_ms"], 2),
        "certificate_large_vs_password_large": round(cl["median_ms"] / pl["median_ms"], 4),
        "certificate_large_vs_password_small": round(cl["median_ms"] / ps["median_ms"], 2),
    }
    out["summary"] = (
        f"certificate: device {cl['last_is_device_number']} took {cl['last_ms']} ms"
        f" (median {cl['median_ms']} ms) against {cs['median_ms']} ms at"
        f" {cs['registered_before']}; password file: {pl['median_ms']} ms at"
        f" {pl['registered_before']} against {ps['median_ms']} ms at {ps['registered_before']}"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the figures as JSON."""
    parser = argparse.ArgumentParser(prog="transit bench credentials", description=__doc__)
    parser.add_argument("--devices", type=int, default=100_000, help="the last one timed")
    parser.add_argument("--password-at", type=int, default=10_000, help="password file size")
    parser.add_argument("--repeat", type=int, default=10, help="registrations timed per point")
    args = parser.parse_args(argv)
    if args.devices < 2 * args.repeat or args.password_at < 2 * args.repeat:
        parser.error("--devices and --password-at must be at least twice --repeat")
    print(json.dumps(run(get_settings(), args.devices, args.password_at, args.repeat), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
