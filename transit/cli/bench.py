"""Benchmarks and the demo."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from transit.cli.common import positive_int
from transit.config import get_settings


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


def cmd_bench_nmea(args: argparse.Namespace) -> int:
    from pathlib import Path

    from transit.bench import nmea

    r = nmea.report(Path(args.dir) if args.dir else nmea.DEFAULT_DIR)
    return 0 if r.per_file else 1


def cmd_bench_fuzz_eseal(args: argparse.Namespace) -> int:
    from transit.bench.fuzz_eseal import report

    return 0 if report(args.count, args.seed).exceptions == 0 else 1


def cmd_bench_rendezvous(args: argparse.Namespace) -> int:
    from transit.bench.rendezvous import report, run_sizes

    sizes = tuple(int(n) for n in args.trucks.split(","))
    results = run_sizes(sizes, stopped_share=args.stopped_share)
    print(json.dumps(results, indent=2) if args.json else report(results))
    return 0


def cmd_bench_risk(args: argparse.Namespace) -> int:
    from transit.bench.risk import run

    result = run(transits=args.transits, covert_share=args.covert_share, seed=args.seed)
    _print_figures(result, args.json)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from transit.demo import run_check, run_demo

    without = frozenset(args.without or ())
    if args.cluster and (without or args.own_broker or args.port):
        # the cluster profile runs every service, on its own ports and broker nodes
        print(
            "transit: error: --cluster takes none of --without, --own-broker, --port",
            file=sys.stderr,
        )
        return 2
    if args.check:
        return run_check(
            get_settings(),
            trucks=args.trucks or 8,
            seed=args.seed,
            timeout=args.timeout,
            port=args.port,
            own_broker=args.own_broker,
            without=without,
            cluster=args.cluster,
        )
    return run_demo(
        get_settings(),
        trucks=args.trucks or 50,
        seed=args.seed,
        port=args.port,
        without=without,
        cluster=args.cluster,
    )


def cmd_bench_credentials(args: argparse.Namespace) -> int:
    from transit.bench.credentials import main

    return main(
        [
            f"--devices={args.devices}",
            f"--password-at={args.password_at}",
            f"--repeat={args.repeat}",
        ]
    )


def add_commands(sub: Any) -> None:
    """Add this module's commands to the ``transit`` parser."""
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
    bn = bench.add_parser("nmea", help="the NMEA decoder against gpsd on 69 real receivers")
    bn.add_argument("dir", nargs="?", help="captures (default ../shared/data/gpsd-nmea)")
    bn.set_defaults(func=cmd_bench_nmea)
    bf = bench.add_parser("fuzz-eseal", help="the e-seal frame decoder fuzzed; exit 1 on a crash")
    bf.add_argument("--count", type=int, default=1_000_000)
    bf.add_argument("--seed", type=int, default=0)
    bf.set_defaults(func=cmd_bench_fuzz_eseal)
    br = bench.add_parser(
        "rendezvous", help="trucks stopped together: the grid and STRtree joins against all pairs"
    )
    br.add_argument("--json", action="store_true", help="print one JSON object")
    br.add_argument("--trucks", default="1000,10000,50000", help="fleet sizes, comma-separated")
    br.add_argument("--stopped-share", type=float, default=0.3, help="share of trucks stopped")
    br.set_defaults(func=cmd_bench_rendezvous)
    bk = bench.add_parser(
        "risk", help="the risk score on simulated fleets with covert trucks (AUC, top 10 %%)"
    )
    bk.add_argument("--json", action="store_true", help="print one JSON object")
    bk.add_argument("--transits", type=int, default=500, help="trucks per fleet (train, test)")
    bk.add_argument("--covert-share", type=float, default=0.1)
    bk.add_argument("--seed", type=int, default=1, help="the training fleet's; test: seed + 1")
    bk.set_defaults(func=cmd_bench_risk)
    bc = bench.add_parser(
        "credentials",
        help="registering the 100,000th device with a certificate against the password file",
    )
    bc.add_argument("--devices", type=positive_int, default=100_000, help="the last one timed")
    bc.add_argument("--password-at", type=positive_int, default=10_000, help="password file size")
    bc.add_argument("--repeat", type=positive_int, default=10, help="registrations timed per point")
    bc.set_defaults(func=cmd_bench_credentials)

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
        "--cluster",
        action="store_true",
        help="on the clustered stack: 3 RabbitMQ nodes, Patroni primary and synchronous"
        " standby, 2 APIs behind HAProxy, 2 notifiers, 2 ingest workers over AMQP (make"
        " demo-cluster)",
    )
    demo.add_argument(
        "--without",
        action="append",
        choices=["ingest", "notify", "sim"],
        help="leave a service out (one already runs elsewhere; or see what --check says)",
    )
    demo.set_defaults(func=cmd_demo)
