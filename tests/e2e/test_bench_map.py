"""The map benchmark runs in Chromium and draws every truck it was given (its speed is
its output, never a pass/fail condition here)."""

from transit.bench.map import run


def test_bench_map_draws_the_synthetic_fleet(settings) -> None:
    r = run(settings, trucks=1_000, frames=10, dom_trucks=100)
    assert r["trucks"] >= 1_000
    assert r["draw_ms_p50"] > 0 and r["dom_markers_draw_ms"] > 0
