"""The ``transit`` command: every entry point of the system, wired in one place."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import psycopg

from transit import messages, retention
from transit.config import get_settings
from transit.dead_letters import cli as dead_letters_cli
from transit.mqtt import MQTT_VERSIONS


def _conn() -> psycopg.Connection[Any]:
    return psycopg.connect(get_settings().database_url, connect_timeout=10)


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from transit.db.migrate import current_level, migrate

    with _conn() as conn:
        applied = migrate(conn)
        level = current_level(conn)
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "none"
    print(f"migrations applied: {names}; level {level}")
    return 0


def cmd_broker_sync(args: argparse.Namespace) -> int:
    from transit.provision import sync_broker

    with _conn() as conn:
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
    with _conn() as conn:
        register_device(conn, args.device_id, args.kind, key)
        conn.commit()
        sync_broker(conn, settings)
    print(f"device {args.device_id} registered ({args.kind})")
    print(f"mqtt username: {args.device_id}")
    print(f"mqtt password: {device_password(settings.device_secret, args.device_id)}")
    if key is not None:
        print(f"hmac key (shown once): {key.hex()}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from transit.doctor import doctor, storage_lines

    report = doctor(get_settings())
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
    return 0 if report["ok"] else 1


def cmd_ingest(args: argparse.Namespace) -> int:
    import signal
    import threading

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
    worker = IngestWorker(
        get_settings(),
        WorkerConfig(
            batch_size=args.batch_size,
            max_age_ms=args.max_age_ms,
            client_id=args.client_id or "transit-ingest-0",
            group=args.group,
        ),
    )
    worker.install_signal_handlers()
    return worker.run()


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from transit.api.app import create_app

    s = get_settings()
    tls: dict[str, Any] = {}
    if s.api_tls_cert and s.api_tls_key:
        tls = {"ssl_certfile": str(s.api_tls_cert), "ssl_keyfile": str(s.api_tls_key)}
    uvicorn.run(
        create_app(s),
        host=args.host or s.api_host,
        port=args.port or s.api_port,
        log_level="warning",
        **tls,
    )
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    from transit.api.app import create_app

    print(json.dumps(create_app().openapi(), indent=2))
    return 0


def cmd_geo_import(args: argparse.Namespace) -> int:
    from transit.provision import import_geojson

    doc = json.loads(Path(args.file).read_text())
    with _conn() as conn:
        nc, no = import_geojson(conn, doc)
    print(f"imported {nc} corridors and {no} offices from {args.file}")
    return 0


def cmd_geo_export(args: argparse.Namespace) -> int:
    from transit.db import corridors, offices

    with _conn() as conn:
        features = [c.to_feature() for c in corridors.list_all(conn)]
        features += [o.to_feature() for o in offices.list_all(conn)]
    print(json.dumps({"type": "FeatureCollection", "features": features}, indent=1))
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    import signal
    import threading
    import time

    from firmware_sim.fleet import Fleet
    from firmware_sim.scenario import fleet_plan
    from transit.geofence.corridor import acts_network
    from transit.provision import import_geojson, provision_fleet, sync_broker

    settings = get_settings()
    network = acts_network()
    plans = fleet_plan(
        network,
        args.trucks,
        seed=args.seed,
        incidents=not args.no_incidents,
        depart_after_s=args.depart_after,
    )
    # A tracker keeps its seq across runs, in flash, and never reuses one: a simulated
    # one starts from the clock (in ms), past the seqs of any earlier run.
    first = int(time.time() * 1000)
    if args.provision:
        with _conn() as conn:
            import_geojson(conn, network)
            provision_fleet(conn, plans, first_seq=first + 1)
            sync_broker(conn, settings)
    trucks = [p.truck(args.seed * 1000 + i, args.interval) for i, p in enumerate(plans)]
    for truck in trucks:
        truck.flash.seq = first
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(
        f"sim: {len(plans)} trucks on {len({p.corridor_id for p in plans})} corridors", flush=True
    )
    if args.serial:
        return _sim_serial(trucks, Path(args.serial), args, stop)
    keys = _sim_keys([p.device_id for p in plans], args) if args.sign else {}
    fleet = Fleet(settings, trucks, not args.fast, args.mqtt_version, keys)
    fleet.connect()
    try:
        fleet.run(steps=args.steps, start=_fast_start(args), stop=stop)
    finally:
        fleet.close()
    print(f"sim: published {fleet.published} messages", flush=True)
    return 0


def _sim_keys(device_ids: list[str], args: argparse.Namespace) -> dict[str, bytes]:
    """The trackers' HMAC keys as registered; with ``--provision``, a tracker without
    one gets one first."""
    import secrets

    from transit.db import devices

    with _conn() as conn:
        keys = devices.hmac_keys(conn, device_ids)
        if args.provision:
            for d in device_ids:
                if keys.get(d) is None:
                    keys[d] = secrets.token_bytes(32)
                    devices.register(conn, d, "tracker", keys[d])
            conn.commit()
    return {d: k for d, k in keys.items() if k is not None}


def _fast_start(args: argparse.Namespace) -> Any:
    """Fast, a run of a given length ends now: ingest filters a fix ahead of the clock."""
    from datetime import UTC, datetime, timedelta

    if not (args.fast and args.steps):
        return None
    return datetime.now(UTC) - timedelta(seconds=args.steps * args.interval)


def _sim_serial(trucks: list[Any], directory: Path, args: argparse.Namespace, stop: Any) -> int:
    from datetime import UTC, datetime, timedelta

    from firmware_sim.serial_fw import SerialFleet

    fleet = SerialFleet(trucks, directory)
    for device_id, (gps, seal) in fleet.ports.items():
        print(
            f"transit edge --device-id {device_id} --serial {gps.path} --serial {seal.path}",
            flush=True,
        )
    t0, k = _fast_start(args) or datetime.now(UTC), 0
    try:
        while (args.steps is None or k < args.steps) and not stop.is_set():
            k += 1
            # A serial line is not infinitely fast: even in fast mode, a short pause.
            stop.wait(0.01 if args.fast else args.interval)
            fleet.step(t0 + timedelta(seconds=k * args.interval))
    finally:
        fleet.close()
    return 0


def cmd_nmea_decode(args: argparse.Namespace) -> int:
    from transit.devices.nmea import NmeaDecoder

    dec = NmeaDecoder()
    with open(args.file, errors="replace") as f:
        for fix in dec.decode_lines(f):
            print(json.dumps(fix.as_json()))
    if dec.errors:
        print(f"nmea: {dec.errors} sentences refused (bad checksum or fields)", file=sys.stderr)
    return 0


def cmd_edge(args: argparse.Namespace) -> int:
    import signal
    import threading

    from transit.broker import device_password
    from transit.edge.reader import EdgeConfig, run_edge

    settings = get_settings()
    password = args.password or device_password(settings.device_secret, args.device_id)
    outbox = Path(args.outbox or settings.run_dir / "edge" / f"{args.device_id}.sqlite")
    config = EdgeConfig(
        device_id=args.device_id,
        password=password,
        ports=args.serial,
        outbox_path=outbox,
        baudrate=args.baud,
        key=bytes.fromhex(args.key_hex) if args.key_hex else None,
        mqtt_version=args.mqtt_version,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run_edge(settings, config, stop)
    return 0


def _print_figures(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:28} {v}")


def cmd_bench_ingest(args: argparse.Namespace) -> int:
    from transit.bench.ingest import BenchConfig, run

    settings = get_settings()
    counts = tuple(int(n) for n in args.worker_counts.split(","))
    cfg = BenchConfig(
        messages=args.messages, workers=args.workers, devices=args.devices, worker_counts=counts
    )
    result = run(settings, cfg)
    if not args.no_batched:
        batched = run(
            settings,
            BenchConfig(
                messages=args.messages // 10,
                workers=args.workers,
                devices=args.devices,
                fixes_per_message=10,
                naive_messages=300,
                latency_messages=300,
                worker_counts=(args.workers,),
            ),
        )
        result["batched"] = {
            k: batched[k]
            for k in (
                "messages",
                "fixes_per_message",
                "throughput_msg_s",
                "throughput_rows_s",
                "limit_paho_noop_msg_s",
                "ratio_vs_paho_noop",
                "ratio_rows_vs_psql_copy",
                "lost",
                "duplicates",
            )
        }
    _print_figures(result, args.json)
    return 0


def cmd_bench_geofence(args: argparse.Namespace) -> int:
    from transit.bench.geofence import run

    result = run(get_settings(), points=args.points, corridors=args.corridors)
    _print_figures(result, args.json)
    return 0


def cmd_bench_map(args: argparse.Namespace) -> int:
    from transit.bench.map import run

    _print_figures(run(get_settings(), trucks=args.trucks), args.json)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from transit.demo import run_check, run_demo

    without = frozenset(args.without or ())
    if args.check:
        return run_check(
            get_settings(),
            trucks=args.trucks or 8,
            seed=args.seed,
            timeout=args.timeout,
            port=args.port,
            own_broker=args.own_broker,
            without=without,
        )
    return run_demo(
        get_settings(), trucks=args.trucks or 50, seed=args.seed, port=args.port, without=without
    )


def _cli_actor() -> str:
    """How the audit trail names the person at this terminal."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (a bare container)
        return "cli"


def cmd_keys_create(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from transit import keys

    with _conn() as conn:
        try:
            expires = keys.expiry(datetime.now(UTC), args.expires_in, args.expires)
            key = keys.create(
                conn, args.role, args.office, args.country, args.label, _cli_actor(), expires
            )
        except ValueError as exc:
            sys.stderr.write(f"transit keys create: {exc}\n")
            return 2
        conn.commit()
    sys.stdout.write(key + "\n")
    sys.stderr.write("keep this key: it is stored hashed and will not be shown again\n")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from transit import keys

    with _conn() as conn:
        found = keys.list_keys(conn, include_inactive=args.all)
    if args.json:
        sys.stdout.write(json.dumps([k.as_dict() for k in found], indent=2) + "\n")
    else:
        sys.stdout.write(keys.render(found))
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from transit import keys

    with _conn() as conn:
        try:
            info = keys.revoke(conn, keys.key_id(args.id), _cli_actor(), args.reason)
        except (LookupError, ValueError) as exc:
            sys.stderr.write(f"transit keys revoke: {exc}\n")
            return 2
        conn.commit()
    sys.stdout.write(f"revoked {info.id} ({info.role}, {info.label or 'no label'})\n")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from transit import audit

    with _conn() as conn:
        verdict = audit.verify(conn, args.head)
    for p in verdict.problems:
        sys.stdout.write(f"TAMPERED {p}\n")
    head = f"{verdict.head_id}:{verdict.head_hash}" if verdict.head_id else "none"
    state = "intact" if verdict.ok else "BROKEN"
    sys.stdout.write(f"audit log: {verdict.rows} rows, chain {state}, head {head}\n")
    return 0 if verdict.ok else 1


def cmd_notify(args: argparse.Namespace) -> int:
    import threading

    import httpx

    from transit import webhooks

    settings = get_settings()
    if args.once:
        with _conn() as conn, httpx.Client(timeout=5.0) as client:
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


ROLE_CHOICES = ["admin", "officer", "control_room", "partner"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one subcommand per entry point."""
    p = argparse.ArgumentParser(prog="transit", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    reg.set_defaults(func=cmd_devices_register)

    doc = sub.add_parser("doctor", help="check the database, TimescaleDB and the broker")
    doc.add_argument("--json", action="store_true", help="print the report as JSON")
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

    sim = sub.add_parser(
        "sim",
        help="run a simulated fleet (MQTT, or serial pseudo-terminals)",
        description="Simulated trucks along the ACTS corridors, deterministic for a seed."
        " Examples: `transit sim --trucks 50 --provision` (real time, over MQTT);"
        " `transit sim --trucks 8 --fast --steps 360` (an hour of event time at once, ending"
        " now);"
        " `transit sim --trucks 2 --serial .run/tty` (NMEA and e-seal frames on"
        " pseudo-terminals, with the `transit edge` line to read each truck).",
    )
    sim.add_argument("--trucks", type=int, default=50)
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--interval", type=float, default=10.0, help="reporting period, seconds")
    sim.add_argument("--steps", type=int, help="reporting periods to run (default: forever)")
    sim.add_argument(
        "--fast",
        action="store_true",
        help="no waiting: event time runs ahead (with --steps, the run ends now)",
    )
    sim.add_argument(
        "--depart-after",
        type=float,
        metavar="SECONDS",
        help="start parked at the office of departure, seals armed, and drive off after"
        " SECONDS (the office declares and releases meanwhile, as `transit demo` does)",
    )
    sim.add_argument(
        "--provision",
        action="store_true",
        help="register the devices and write their transits as under way first (a shortcut"
        " that skips declaration and release)",
    )
    sim.add_argument("--no-incidents", action="store_true", help="clean transits only")
    sim.add_argument(
        "--sign",
        action="store_true",
        help="sign each tracker's messages with its key as registered (with --provision, a"
        " tracker without one gets one)",
    )
    sim.add_argument(
        "--mqtt-version",
        choices=sorted(MQTT_VERSIONS),
        default="5",
        help="the protocol the trucks speak; on 3.1.1 a signed message is an envelope",
    )
    sim.add_argument(
        "--serial",
        metavar="DIR",
        help="talk NMEA and e-seal frames on pseudo-terminals in DIR instead of MQTT",
    )
    sim.set_defaults(func=cmd_sim)

    nmea = sub.add_parser("nmea", help="NMEA 0183 tools").add_subparsers(
        dest="nmea_cmd", required=True
    )
    nd = nmea.add_parser("decode", help="print one JSON object per fix of an NMEA capture")
    nd.add_argument("file")
    nd.set_defaults(func=cmd_nmea_decode)

    edge = sub.add_parser("edge", help="read GNSS and e-seal serial ports, publish over MQTT")
    edge.add_argument(
        "--serial",
        action="append",
        required=True,
        metavar="PORT",
        help="a serial port (repeat for several); NMEA or e-seal, found by sniffing",
    )
    edge.add_argument("--device-id", required=True, help="the MQTT identity of this reader")
    edge.add_argument("--password", help="MQTT password (default: derived from the secret)")
    edge.add_argument("--key-hex", help="HMAC key to sign messages with, in hex")
    edge.add_argument(
        "--mqtt-version",
        choices=sorted(MQTT_VERSIONS),
        default="5",
        help="the protocol to publish with; on 3.1.1 a signed message is an envelope",
    )
    edge.add_argument("--baud", type=int, default=9600)
    edge.add_argument("--outbox", help="store-and-forward SQLite file")
    edge.set_defaults(func=cmd_edge)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(
        dest="bench_cmd", required=True
    )
    bi = bench.add_parser("ingest", help="ingest throughput against its references")
    bi.add_argument("--json", action="store_true", help="print one JSON object")
    bi.add_argument("--messages", type=int, default=20000)
    bi.add_argument("--workers", type=int, default=2, help="the run of the headline figures")
    bi.add_argument("--worker-counts", default="1,2,4", help="worker counts measured side by side")
    bi.add_argument("--devices", type=int, default=100)
    bi.add_argument("--no-batched", action="store_true", help="skip the 10-fixes-per-message run")
    bi.set_defaults(func=cmd_bench_ingest)
    bg = bench.add_parser("geofence", help="geofence engine against its references")
    bg.add_argument("--json", action="store_true", help="print one JSON object")
    bg.add_argument("--points", type=int, default=500_000)
    bg.add_argument("--corridors", type=int, default=100)
    bg.set_defaults(func=cmd_bench_geofence)
    bm = bench.add_parser("map", help="the control-room page drawing many trucks")
    bm.add_argument("--json", action="store_true", help="print one JSON object")
    bm.add_argument("--trucks", type=int, default=10_000)
    bm.set_defaults(func=cmd_bench_map)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_cmd", required=True)
    kc = keys.add_parser("create", help="make an API key and print it once")
    kc.add_argument(
        "--role", required=True, choices=["admin", "officer", "control_room", "partner"]
    )
    kc.add_argument("--office", help="the officer's office (8 characters)")
    kc.add_argument("--country", help="the partner's country (ISO alpha-2)")
    kc.add_argument("--label", default="", help="who holds it")
    kc.add_argument("--expires-in", type=float, metavar="DAYS", help="stop working DAYS from now")
    kc.add_argument("--expires", metavar="AT", help="stop working at AT (ISO 8601; UTC if no zone)")
    kc.set_defaults(func=cmd_keys_create)
    kl = keys.add_parser("list", help="the active keys (no secrets): id, role, scope, expiry")
    kl.add_argument("--all", action="store_true", help="revoked and expired keys too")
    kl.add_argument("--json", action="store_true", help="print a JSON list")
    kl.set_defaults(func=cmd_keys_list)
    kr = keys.add_parser("revoke", help="revoke a key: refused at once, everywhere")
    kr.add_argument("id", help="the key's id (the 8 hex digits after tk_, as `keys list` shows)")
    kr.add_argument("--reason", default="", help="kept in the audit log")
    kr.set_defaults(func=cmd_keys_revoke)

    au = sub.add_parser("audit", help="the audit trail").add_subparsers(
        dest="audit_cmd", required=True
    )
    av = au.add_parser("verify", help="check the hash chain; exit 1 if a row was altered")
    av.add_argument("--head", help="ID:HASH printed by an earlier verify, still expected")
    av.set_defaults(func=cmd_audit_verify)

    nt = sub.add_parser("notify", help="deliver partner notices from the outbox")
    nt.add_argument("--once", action="store_true", help="deliver what is due, then exit")
    nt.add_argument("--backoff", type=float, default=5.0, help="first retry delay, seconds")
    nt.set_defaults(func=cmd_notify)

    dead_letters_cli.add_commands(sub)
    retention.add_commands(sub)
    messages.add_commands(sub)

    demo = sub.add_parser(
        "demo",
        help="run API, ingest and a simulated fleet together",
        description="Migrate, load the bundled ACTS network, make keys, start the API, ingest,"
        " the notifier and the simulator, and put the fleet under way as a customs office"
        " does: trackers registered, transits declared and released over the HTTP API."
        " With --check: the same path, bounded; exit 0 once fixes are stored, a truck has"
        " departed and an alert is raised, 1 with the reason otherwise.",
    )
    demo.add_argument("--trucks", type=int, help="simulated trucks (default 50; 8 with --check)")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--port", type=int, help="API port (default: the settings'; --check: free)")
    demo.add_argument("--check", action="store_true", help="run bounded and give a verdict")
    demo.add_argument(
        "--timeout", type=float, default=120.0, help="with --check: seconds before failing"
    )
    demo.add_argument(
        "--own-broker",
        action="store_true",
        help="with --check: run a Mosquitto of its own on a free port, so the check's devices"
        " never replace the shared broker's",
    )
    demo.add_argument(
        "--without",
        action="append",
        choices=["ingest", "notify", "sim"],
        help="leave a service out (one already runs elsewhere; or see what --check says)",
    )
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``transit`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        rc: int = args.func(args)
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stderr.close()
        return 0
    except ValueError as exc:  # bad input named by the layer that refused it
        print(f"transit: error: {exc}", file=sys.stderr)
        return 2
    return rc


if __name__ == "__main__":
    sys.exit(main())
