"""The fleet's side: the simulator, NMEA decoding, the edge reader on serial ports."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from transit.cli.common import connect
from transit.config import get_settings
from transit.mqtt import MQTT_VERSIONS


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
        with connect() as conn:
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

    with connect() as conn:
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


def add_commands(sub: Any) -> None:
    """Add this module's commands to the ``transit`` parser."""
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
