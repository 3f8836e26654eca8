"""The geofence benchmark runs and agrees with PostGIS point for point (its speed is
its output, never a pass/fail condition here)."""

from transit.bench.geofence import run


def test_bench_geofence_engine_and_postgis_agree(settings) -> None:
    r = run(settings, points=20_000, corridors=10, transits=200, loop_points=2_000)
    assert r["inside_engine"] == r["inside_postgis"] > 0
    for key in ("throughput_pts_s", "ceiling_contains_xy_pts_s", "loop_pts_s", "postgis_pts_s"):
        assert r[key] > 0, key
