"""The simulated firmware: deterministic, realistic, and faulty on request."""

from datetime import UTC, datetime, timedelta

import numpy as np
import serial

from firmware_sim.route import Route
from firmware_sim.scenario import fleet_plan
from firmware_sim.serial_fw import SerialFleet
from firmware_sim.truck import Incident, Truck
from transit.devices import payload as wire
from transit.devices.stream import PortDecoder, Reject
from transit.geofence.corridor import acts_network, load_geojson

T0 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
ROUTE = Route([(101.6869, 3.1390), (101.5770, 3.3210), (101.5180, 3.6850)])


def drive(truck: Truck, steps: int):
    out = []
    for k in range(1, steps + 1):
        out.append(truck.step(T0 + timedelta(seconds=10 * k)))
    return out


def test_same_seed_same_messages_other_seed_other_messages() -> None:
    def run(seed: int):
        return [
            (tel.model_dump_json() if tel else None)
            for tel, _ in drive(Truck("T1", ROUTE, ["ES01-0000000001"], seed=seed), 30)
        ]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_every_message_validates_against_wire_protocol_v1() -> None:
    truck = Truck(
        "T1",
        ROUTE,
        ["ES01-0000000001"],
        seed=1,
        incidents=[Incident("seal_cut", 50), Incident("reboot", 100, 60)],
    )
    for tel, seals in drive(truck, 40):
        for kind, model in [*(("seal", s) for s in seals), *([("telemetry", tel)] if tel else [])]:
            topic = wire.topic_for("T1", kind)
            assert wire.decode(topic, wire.encode(model))[1] == model


def test_trucks_drive_at_realistic_speed_inside_their_corridor() -> None:
    corridors, _ = load_geojson(acts_network())
    plans = fleet_plan(acts_network(), 6, seed=3, incidents=False, traffic=False)
    for i, plan in enumerate(plans):
        corridor = next(c for c in corridors if c.id == plan.corridor_id)
        fixes = [tel.fixes[0] for tel, _ in drive(plan.truck(i), 60) if tel]
        inside = corridor.contains(
            np.array([f.lon for f in fixes]), np.array([f.lat for f in fixes])
        )
        assert inside.all()
        assert 50 < sum(f.speed_kmh for f in fixes) / len(fixes) < 95


def test_reboot_keeps_seq_from_flash_and_uploads_the_backlog_in_one_batch() -> None:
    truck = Truck("T1", ROUTE, [], seed=1, incidents=[Incident("reboot", 50, 40)])
    out = drive(truck, 12)
    seqs = [tel.seq for tel, _ in out if tel]
    assert seqs == list(range(1, len(seqs) + 1))  # no seq reused or skipped
    sizes = [len(tel.fixes) if tel else 0 for tel, _ in out]
    assert sizes[4:8] == [0, 0, 0, 0]  # offline while rebooting
    assert sizes[8] == 5  # four logged fixes and the current one, in one message


def test_tunnel_gives_no_fix_and_stop_gives_zero_speed() -> None:
    truck = Truck(
        "T1", ROUTE, [], seed=1, incidents=[Incident("tunnel", 30, 30), Incident("stop", 100, 60)]
    )
    out = drive(truck, 20)
    assert [tel is None for tel, _ in out][2:5] == [True, True, True]
    speeds = [tel.fixes[-1].speed_kmh for tel, _ in out if tel]
    assert 0.0 in speeds


def test_battery_drain_goes_under_15_percent_and_clock_drifts() -> None:
    truck = Truck(
        "T1",
        ROUTE,
        [],
        seed=1,
        incidents=[Incident("battery_drain", 10), Incident("clock_drift", 10)],
    )
    out = drive(truck, 30)
    last = out[-1][0]
    assert last is not None and last.battery_pct is not None and last.battery_pct < 15
    drift = (last.fixes[0].t - (T0 + timedelta(seconds=300))).total_seconds()
    assert drift >= 40


def test_seals_armed_at_departure_and_opened_at_destination() -> None:
    truck = Truck("T1", Route([(100.0, 10.0), (100.0, 10.02)]), ["ES01-0000000001"], seed=1)
    armed = truck.arm_seals(T0)
    assert [s.status.value for s in armed] == ["sealed"]
    seals = [s for _, ss in drive(truck, 20) for s in ss]
    assert [s.status.value for s in seals] == ["opened"]
    assert truck.arrived


def test_serial_fleet_speaks_nmea_and_seal_frames_on_pseudo_terminals(tmp_path) -> None:
    truck = Truck(
        "TS1",
        ROUTE,
        ["ES01-0000000007"],
        seed=2,
        incidents=[Incident("seal_cut", 20), Incident("noise", 30, 20)],
    )
    fleet = SerialFleet([truck], tmp_path)
    gps_path, seal_path = (p.path for p in fleet.ports["TS1"])
    with (
        serial.Serial(str(gps_path), timeout=0.2) as gps,
        serial.Serial(str(seal_path), timeout=0.2) as seal,
    ):
        for k in range(1, 8):
            fleet.step(T0 + timedelta(seconds=10 * k))
        got_gps = PortDecoder().receive_data(gps.read(100_000))
        got_seal = PortDecoder().receive_data(seal.read(100_000))
    fleet.close()
    fixes = [g for g in got_gps if not isinstance(g, Reject)]
    assert [f.time for f in fixes] == [T0 + timedelta(seconds=10 * k) for k in range(1, 8)]
    frames = [g for g in got_seal if not isinstance(g, Reject)]
    assert [(f.seal_id, f.status.value) for f in frames] == [("ES01-0000000007", "tampered")]


def test_default_fleet_meets_traffic_stops_and_tunnels() -> None:
    plans = fleet_plan(acts_network(), 10, seed=1, incidents=False)
    kinds = [{i.kind for i in p.incidents} for p in plans]
    assert all(k == {"stop", "tunnel"} for k in kinds)
    truck = plans[0].truck(0)
    tunnel = next(i for i in plans[0].incidents if i.kind == "tunnel")
    out = drive(truck, int((tunnel.at_s + tunnel.for_s) / 10) + 2)
    assert any(tel is None for tel, _ in out)  # no fix inside the tunnel
