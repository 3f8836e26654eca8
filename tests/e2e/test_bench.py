"""The ingest benchmark runs end to end and loses nothing (its speed is its own output,
never a pass/fail condition here)."""

from transit.bench.ingest import BenchConfig, run


def test_bench_ingest_reports_every_figure_and_no_loss(settings) -> None:
    result = run(
        settings,
        BenchConfig(
            messages=2000, devices=20, naive_messages=200, latency_messages=200, latency_rate=500
        ),
    )
    for key in (
        "messages",
        "throughput_msg_s",
        "limit_paho_noop_msg_s",
        "ratio_vs_paho_noop",
        "limit_psql_copy_rows_s",
        "naive_msg_s",
        "speedup_vs_naive",
        "latency_p50_ms",
        "latency_p99_ms",
    ):
        assert result[key] is not None and result[key] > 0, key
    assert result["messages"] == 2000
    assert (result["lost"], result["duplicates"]) == (0, 0)
    # 1, 2 and 4 workers side by side, each with its no-op reference and where time went
    assert set(result["by_workers"]) == {"1", "2", "4"}
    for figures in result["by_workers"].values():
        assert figures["throughput_msg_s"] > 0 and figures["limit_paho_noop_msg_s"] > 0
        assert figures["us_per_msg"]["decode"] > 0 and figures["us_per_msg"]["write"] > 0
