"""Prometheus metrics and ingest health, from the counters every worker stores."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from transit.api.deps import Db
from transit.db import workers as worker_rows

router = APIRouter(tags=["operations"])
STALE_S = 10.0  # a worker silent for longer is not counted as running


class _IngestCollector:
    def __init__(self, rows: list[tuple[str, float, dict[str, Any]]]) -> None:
        self.rows = rows

    def collect(self) -> Iterator[Metric]:
        counters = {
            "messages_in": "MQTT messages taken in and acknowledged",
            "rows_written": "fix rows written (new, not duplicates)",
            "duplicates": "fixes already stored (redeliveries, replays)",
            "batches": "batches committed",
            "alerts_raised": "alerts raised",
            "reaped_messages": "messages taken from the sessions of workers gone",
            "reaps": "sessions of workers gone drained",
        }
        for key, doc in counters.items():
            fam = CounterMetricFamily(f"transit_ingest_{key}", doc, labels=["worker"])
            for wid, _, st in self.rows:
                fam.add_metric([wid], float(st.get(key, 0)))
            yield fam
        dead = CounterMetricFamily(
            "transit_ingest_dead_letters",
            "messages refused, by reason",
            labels=["worker", "reason"],
        )
        for wid, _, st in self.rows:
            for reason, n in st.get("dead_letters", {}).items():
                dead.add_metric([wid, reason], float(n))
        yield dead
        kept_apart = CounterMetricFamily(
            "transit_ingest_filtered_fixes",
            "fixes the ingest filters kept apart (not drawn, not ruled on), by reason",
            labels=["worker", "reason"],
        )
        for wid, _, st in self.rows:
            for reason, n in st.get("filtered_fixes", {}).items():
                kept_apart.add_metric([wid, reason], float(n))
        yield kept_apart
        for key, doc in (
            ("batch_size", "messages per committed batch"),
            ("commit_ms", "milliseconds to write and commit a batch"),
            ("ack_lag_ms", "milliseconds from a batch's first message arriving to its PUBACK"),
        ):
            hist = HistogramMetricFamily(f"transit_ingest_{key}", doc, labels=["worker"])
            for wid, _, st in self.rows:
                h = st.get(key) or {}
                counts = h.get("counts") or []
                if not counts:
                    continue
                cumulative, buckets = 0, []
                for bound, n in zip([*h["bounds"], float("inf")], counts, strict=True):
                    cumulative += n
                    buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
                hist.add_metric([wid], buckets, float(h.get("sum", 0.0)))
            yield hist
        depth = GaugeMetricFamily(
            "transit_ingest_queue_depth", "messages waiting", labels=["worker"]
        )
        age = GaugeMetricFamily(
            "transit_ingest_seconds_since_update", "age of the worker's report", labels=["worker"]
        )
        for wid, seconds, st in self.rows:
            depth.add_metric([wid], float(st.get("queue_depth", 0)))
            age.add_metric([wid], seconds)
        yield depth
        yield age


@router.get("/metrics", response_class=Response)
def metrics(db: Db) -> Response:
    """Prometheus text exposition of every ingest worker's counters."""
    registry = CollectorRegistry()
    registry.register(_IngestCollector(worker_rows.all_stats(db)))
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")


@router.get("/health/ingest")
def ingest_health(db: Db, response: Response) -> dict[str, Any]:
    """Whether ingest keeps up: a worker reported lately, none has a long queue or
    a long acknowledgement lag. 503 when not."""
    workers = []
    for wid, seconds, st in worker_rows.all_stats(db):
        if seconds > STALE_S:
            continue
        limit = st.get("queue_limit") or 1
        ok = st.get("queue_depth", 0) < limit / 2 and st.get("last_ack_lag_ms", 0) < 5000
        workers.append(
            {
                "worker": wid,
                "keeping_up": ok,
                "queue_depth": st.get("queue_depth"),
                "last_ack_lag_ms": st.get("last_ack_lag_ms"),
            }
        )
    keeping_up = bool(workers) and all(w["keeping_up"] for w in workers)
    if not keeping_up:
        response.status_code = 503
    return {"keeping_up": keeping_up, "workers": workers}
