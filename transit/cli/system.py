"""The system's own commands: schema, broker, devices, doctor, ingest, API, geography, notifier."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from transit.cli.common import connect
from transit.config import get_settings


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from transit.db.migrate import current_level, migrate

    with connect() as conn:
        applied = migrate(conn)
        level = current_level(conn)
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "none"
    print(f"migrations applied: {names}; level {level}")
    return 0


def cmd_broker_sync(args: argparse.Namespace) -> int:
    from transit.provision import sync_broker

    with connect() as conn:
        n = sync_broker(conn, get_settings(), reload=not args.no_reload)
    print(f"broker: password file and ACL written for {n} devices and the backend users")
    return 0


def cmd_devices_register(args: argparse.Namespace) -> int:
    import secrets

    from transit.broker import device_password
    from transit.db.devices import register as register_device
    from transit.devices.payload import split_topic
    from transit.provision import sync_broker

    split_topic(f"transit/v1/devices/{args.device_id}/telemetry")  # refuses a bad id
    key = secrets.token_bytes(32) if args.with_key else None
    settings = get_settings()
    if args.cert or args.csr:
        return _register_with_certificate(args, settings, key)
    with connect() as conn:
        register_device(conn, args.device_id, args.kind, key)
        conn.commit()
        sync_broker(conn, settings)
    print(f"device {args.device_id} registered ({args.kind})")
    print(f"mqtt username: {args.device_id}")
    print(f"mqtt password: {device_password(settings.device_secret, args.device_id)}")
    if key is not None:
        print(f"hmac key (shown once): {key.hex()}")
    return 0


def _register_with_certificate(args: argparse.Namespace, settings: Any, key: bytes | None) -> int:
    """A device that logs in with a client certificate from the device CA: the broker's
    password file is not touched (docs/credentials.md)."""
    import os

    from transit import pki
    from transit.provision import register_with_certificate

    out = Path(args.out)
    # Where the files go is checked before anything is registered: the key made here
    # exists nowhere else, and an earlier one is never overwritten.
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is not a directory")
    taken = [
        p for p in (out / f"{args.device_id}.crt", out / f"{args.device_id}.key") if p.exists()
    ]
    if taken:
        raise ValueError(f"{taken[0]} exists: move it away or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise ValueError(f"--out {out} is not writable")
    try:
        csr = Path(args.csr).read_bytes() if args.csr else None
        with connect() as conn:
            issued = register_with_certificate(
                conn, settings, args.device_id, kind=args.kind, csr=csr, hmac_key=key
            )
    except (pki.CertificateRequestError, OSError) as exc:
        print(f"transit: error: {exc}", file=sys.stderr)
        return 2
    cert_file, key_file = pki.write_issued(issued, out)
    print(f"device {args.device_id} registered ({args.kind}) with certificate {issued.serial}")
    print(f"certificate: {cert_file} (valid until {issued.not_after.isoformat()})")
    if key_file is not None:
        print(f"private key: {key_file} (made here, kept nowhere else)")
    port = os.environ.get("TRANSIT_MQTT_CERT_PORT", "18838")
    print(f"mqtts: the broker's certificate port ({port} here); the CN is the username")
    if key is not None:
        print(f"hmac key (shown once): {key.hex()}")
    return 0


def cmd_devices_revoke(args: argparse.Namespace) -> int:
    import os

    from transit.provision import revoke_certificates

    serial = None
    if args.serial:  # as openssl prints it too: upper case, zero-padded, with colons
        try:
            serial = format(int(args.serial.replace(":", "").strip(), 16), "x")
        except ValueError:
            raise ValueError(f"--serial {args.serial!r} is not a hexadecimal serial") from None
    settings = get_settings()
    with connect() as conn:
        serials = revoke_certificates(conn, settings, args.device_id, serial=serial)
    if not serials:
        err = f"transit: error: {args.device_id} has no valid certificate to revoke"
        err += f" with serial {serial}" if serial else ""
        print(err, file=sys.stderr)
        return 1
    try:
        os.kill(int((settings.run_dir / "mosquitto" / "mosquitto.pid").read_text().strip()), 0)
        said = "the broker reloaded its revocation list"
    except (OSError, ValueError):
        said = "the revocation list is written; the broker is not running and reads it on start"
    print(f"revoked {', '.join(serials)}; {said}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from transit.doctor import doctor, storage_lines

    settings = get_settings()
    report = doctor(settings)
    if args.cluster:
        from transit.cluster.doctor import check_cluster

        report["cluster"] = check_cluster(settings)
        report["ok"] = report["ok"] and report["cluster"]["ok"]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        db, mq = report["database"], report["broker"]
        ts = db.get("timescaledb", {})
        print(f"database:    {'ok' if db['ok'] else 'FAIL'} {db.get('error', '')}")
        print(f"timescaledb: {ts.get('version')} ({ts.get('edition')})")
        print(f"hypertables: {', '.join(db.get('hypertables', [])) or 'none'}")
        print(f"migrations:  {db.get('migrations')}")
        print("\n".join(storage_lines(db)))
        print(
            f"broker:      {'ok' if mq['ok'] else 'FAIL'} {mq.get('error', mq.get('reason', ''))}"
        )
        if "cluster" in report:
            from transit.cluster.doctor import cluster_lines

            print("\ncluster:")
            print("\n".join(cluster_lines(report["cluster"])))
    return 0 if report["ok"] else 1


def cmd_ingest(args: argparse.Namespace) -> int:
    import signal
    import threading

    from transit import bootstrap
    from transit.cluster.amqp_worker import AmqpIngestWorker
    from transit.ingest.worker import IngestWorker, WorkerConfig

    if args.workers > 1:
        from transit.ingest.supervisor import supervise

        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        extra = [
            "--batch-size",
            str(args.batch_size),
            "--max-age-ms",
            str(args.max_age_ms),
            "--group",
            args.group,
        ]
        supervise(args.workers, extra, stop, args.client_id or "transit-ingest")
        return 0
    settings = get_settings()
    config = WorkerConfig(
        batch_size=args.batch_size,
        max_age_ms=args.max_age_ms,
        client_id=args.client_id or "transit-ingest-0",
        group=args.group,
    )
    worker: IngestWorker | AmqpIngestWorker
    if settings.amqp_urls:  # the clustered broker's quorum queue
        worker = bootstrap.amqp_ingest_worker(settings, config)
    else:
        worker = bootstrap.ingest_worker(settings, config)
    worker.install_signal_handlers()
    return worker.run()


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from transit import bootstrap

    s = get_settings()
    tls: dict[str, Any] = {}
    if s.api_tls_cert and s.api_tls_key:
        tls = {"ssl_certfile": str(s.api_tls_cert), "ssl_keyfile": str(s.api_tls_key)}
    uvicorn.run(
        bootstrap.api(s),
        host=args.host or s.api_host,
        port=args.port or s.api_port,
        log_level="warning",
        **tls,
    )
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    from transit import bootstrap

    print(json.dumps(bootstrap.api().openapi(), indent=2))
    return 0


def cmd_geo_import(args: argparse.Namespace) -> int:
    from transit.provision import import_geojson

    doc = json.loads(Path(args.file).read_text())
    with connect() as conn:
        nc, no = import_geojson(conn, doc)
    print(f"imported {nc} corridors and {no} offices from {args.file}")
    return 0


def cmd_geo_export(args: argparse.Namespace) -> int:
    from transit.db import corridors, offices

    with connect() as conn:
        features = [c.to_feature() for c in corridors.list_all(conn)]
        features += [o.to_feature() for o in offices.list_all(conn)]
    print(json.dumps({"type": "FeatureCollection", "features": features}, indent=1))
    return 0


def cmd_notify(args: argparse.Namespace) -> int:
    import threading

    import httpx

    from transit import webhooks

    settings = get_settings()
    if args.once:
        with connect() as conn, httpx.Client(timeout=5.0) as client:
            conn.autocommit = True
            n = webhooks.deliver_due(conn, client, args.backoff)
        sys.stdout.write(f"notices delivered: {n}\n")
        return 0
    stop = threading.Event()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        webhooks.run(settings.database_url, stop, args.backoff)
    return 0


def add_commands(sub: Any) -> None:
    """Add this module's commands to the ``transit`` parser."""
    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_cmd", required=True)
    db.add_parser("migrate", help="apply pending migrations").set_defaults(func=cmd_db_migrate)

    br = sub.add_parser("broker", help="the MQTT broker's users and ACL")
    brs = br.add_subparsers(dest="broker_cmd", required=True)
    sync = brs.add_parser("sync", help="write the password file and ACL from the devices")
    sync.add_argument("--no-reload", action="store_true", help="do not signal the broker")
    sync.set_defaults(func=cmd_broker_sync)

    dev = sub.add_parser("devices", help="trackers, seals and edge readers").add_subparsers(
        dest="devices_cmd", required=True
    )
    reg = dev.add_parser("register", help="register a device (or rotate its key)")
    reg.add_argument("device_id")
    reg.add_argument("--kind", choices=["tracker", "seal", "edge"], default="tracker")
    reg.add_argument(
        "--with-key",
        action="store_true",
        help="give it a new HMAC key (printed once): its messages must be signed",
    )
    reg.add_argument(
        "--cert",
        action="store_true",
        help="log in with a client certificate from the device CA (a key pair is made)",
    )
    reg.add_argument("--csr", metavar="FILE", help="the device's own CSR (PEM): implies --cert")
    reg.add_argument("--out", default=".", help="where DEVICE.crt (and .key) go (default .)")
    reg.set_defaults(func=cmd_devices_register)
    rv = dev.add_parser("revoke", help="revoke a device's certificates (lost or stolen)")
    rv.add_argument("device_id")
    rv.add_argument("--serial", help="only this certificate (hex), not all the device's")
    rv.set_defaults(func=cmd_devices_revoke)

    doc = sub.add_parser("doctor", help="check the database, TimescaleDB and the broker")
    doc.add_argument("--json", action="store_true", help="print the report as JSON")
    doc.add_argument(
        "--cluster",
        action="store_true",
        help="also every node of the cluster profile: broker, database, API (role, health)",
    )
    doc.set_defaults(func=cmd_doctor)

    ing = sub.add_parser("ingest", help="consume device messages into the database")
    ing.add_argument(
        "--workers", type=int, default=1, help="worker processes (restarted if they die)"
    )
    ing.add_argument("--batch-size", type=int, default=2000)
    ing.add_argument("--max-age-ms", type=float, default=50.0)
    ing.add_argument(
        "--client-id",
        help="the worker's slot, its MQTT client id (default transit-ingest-0); with"
        " --workers N, the prefix of the N slots PREFIX-0 ... (default transit-ingest):"
        " one per machine",
    )
    ing.add_argument("--group", default="ingest", help="shared-subscription group")
    ing.set_defaults(func=cmd_ingest)

    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.set_defaults(func=cmd_api)

    sub.add_parser("openapi", help="print the OpenAPI document").set_defaults(func=cmd_openapi)

    geo = sub.add_parser("geo", help="corridors and offices").add_subparsers(
        dest="geo_cmd", required=True
    )
    gi = geo.add_parser("import", help="import corridors and offices from GeoJSON")
    gi.add_argument("file")
    gi.set_defaults(func=cmd_geo_import)
    geo.add_parser("export", help="print corridors and offices as GeoJSON").set_defaults(
        func=cmd_geo_export
    )

    nt = sub.add_parser("notify", help="deliver partner notices from the outbox")
    nt.add_argument("--once", action="store_true", help="deliver what is due, then exit")
    nt.add_argument("--backoff", type=float, default=5.0, help="first retry delay, seconds")
    nt.set_defaults(func=cmd_notify)
