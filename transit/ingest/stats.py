"""What an ingest worker counts: written to ``ingest_workers`` with each batch (at most
once a second) and exported by the API at /metrics and /health/ingest."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transit.ingest.transaction import Written

BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000)
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


@dataclass
class Histogram:
    """Bucket counts (non-cumulative) and the sum, as Prometheus histograms need."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)
        i = next((k for k, b in enumerate(self.bounds) if value <= b), len(self.bounds))
        self.counts[i] += 1
        self.total += value

    def as_json(self) -> dict[str, Any]:
        """The histogram as stored."""
        return {"bounds": list(self.bounds), "counts": self.counts, "sum": self.total}


@dataclass
class Stats:
    """Counters a worker keeps; written to ``ingest_workers`` and exported at /metrics."""

    messages_in: int = 0
    rows_written: int = 0
    duplicates: int = 0
    batches: int = 0
    alerts_raised: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    filtered_fixes: Counter[str] = field(default_factory=Counter)  # by reason
    batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_SIZE_BUCKETS))
    commit_ms: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_MS))
    ack_lag_ms: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_MS))
    queue_depth: int = 0
    last_ack_lag_ms: float = 0.0
    # messages taken from dead members' sessions, and how many sessions were drained
    reaped_messages: int = 0
    reaps: int = 0
    # where the batches' time went (ms by phase: decode, discover, lock, read, plan,
    # rules, write, commit), and the ordering of each device's messages by seq
    phase_ms: dict[str, float] = field(default_factory=dict)
    held: int = 0  # came before their predecessor: held
    released: int = 0  # held, then evaluated
    redelivered: int = 0  # evaluated before: acknowledged, nothing written
    risk_errors: int = 0  # batches stored without their risk scores (logged why)

    def note(self, written: Written, batch: bool = False) -> None:
        """Count one transaction's phases and ordering; and, unless it wrote a ``batch``
        (counted with its messages), the rows it wrote."""
        for name, ms in written.timings.items():
            self.phase_ms[name] = self.phase_ms.get(name, 0.0) + ms
        self.held += written.held
        self.released += written.released
        self.redelivered += written.duplicates
        self.risk_errors += written.risk_errors
        if not batch:
            self.rows_written += written.rows
            self.filtered_fixes.update(f.reason for f in written.result.filtered)

    def as_json(self) -> dict[str, Any]:
        """The snapshot stored for /metrics."""
        return {
            "messages_in": self.messages_in,
            "rows_written": self.rows_written,
            "duplicates": self.duplicates,
            "risk_errors": self.risk_errors,
            "batches": self.batches,
            "alerts_raised": self.alerts_raised,
            "dead_letters": dict(self.dead_letters),
            "filtered_fixes": dict(self.filtered_fixes),
            "batch_size": self.batch_size.as_json(),
            "commit_ms": self.commit_ms.as_json(),
            "ack_lag_ms": self.ack_lag_ms.as_json(),
            "queue_depth": self.queue_depth,
            "last_ack_lag_ms": self.last_ack_lag_ms,
            "reaped_messages": self.reaped_messages,
            "reaps": self.reaps,
            "phase_ms": {k: round(v, 1) for k, v in self.phase_ms.items()},
            "held": self.held,
            "released": self.released,
            "redelivered": self.redelivered,
        }
