"""Store and forward: every reading is written to SQLite before anything else happens.

A row leaves the outbox only when the broker has acknowledged its message (PUBACK).
Its rowid is the message's ``seq``: monotonic across restarts (AUTOINCREMENT never
reuses a number), so ``(device_id, seq)`` identifies a reading end to end and a
message sent twice is recognised downstream.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    kind  TEXT NOT NULL,
    body  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rejects (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    port      TEXT NOT NULL,
    reason    TEXT NOT NULL,
    raw       BLOB NOT NULL
);
"""


class Outbox:
    """A durable FIFO of readings, safe to share between threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def put_many(self, items: list[tuple[str, dict[str, Any]]]) -> list[int]:
        """Append readings ``(kind, body)`` durably; returns their seq numbers."""
        seqs = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for kind, body in items:
                cur = self._db.execute(
                    "INSERT INTO outbox (kind, body) VALUES (?, ?)",
                    (kind, json.dumps(body, separators=(",", ":"))),
                )
                seqs.append(int(cur.lastrowid or 0))
            self._db.execute("COMMIT")
        return seqs

    def after(self, seq: int, limit: int) -> list[tuple[int, str, str]]:
        """Up to ``limit`` readings with a seq above ``seq``, oldest first."""
        with self._lock:
            return list(
                self._db.execute(
                    "SELECT seq, kind, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                    (seq, limit),
                )
            )

    def remove(self, seqs: list[int]) -> None:
        """Forget readings the broker has acknowledged."""
        if not seqs:
            return
        with self._lock:
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def pending(self) -> int:
        """How many readings wait for an acknowledgement."""
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM outbox").fetchone()
        return int(row[0])

    def reject(self, port: str, reason: str, raw: bytes) -> None:
        """Keep a refused frame or sentence for inspection."""
        with self._lock:
            self._db.execute(
                "INSERT INTO rejects (port, reason, raw) VALUES (?, ?, ?)", (port, reason, raw)
            )

    def rejects(self) -> list[tuple[str, str, bytes]]:
        """Every refused item kept: port, reason, raw bytes."""
        with self._lock:
            return list(self._db.execute("SELECT port, reason, raw FROM rejects ORDER BY id"))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
