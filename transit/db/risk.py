"""The risk score's tables (``risk_models``, ``transit_risk``, ``transit_inspections``):
the models, each transit's current score with its accumulators, the history a new
score starts from, and the inspections recorded at closing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from transit.db.query import Conn, row, rows, run, value
from transit.lifecycle import FINISHED

MIN_PAST = 10  # finished transits on a corridor before its own median pace is used


@dataclass(frozen=True)
class Stored:
    """What a transit's score is updated from: its accumulators as stored (None: not
    scored yet) and its alerts as counted now."""

    mrn: str
    running: dict[str, Any] | None
    seal_events: int
    seal_seq: int
    history: dict[str, int] | None
    corridor_pace: float | None
    alerts: int
    rendezvous: int


@dataclass(frozen=True)
class NewScore:
    """A transit's score and accumulators to write."""

    mrn: str
    probability: float
    level: str
    reasons: list[dict[str, Any]]
    features: dict[str, float]
    model_version: int
    running: dict[str, Any]
    seal_events: int
    seal_seq: int
    history: dict[str, int]
    corridor_pace: float | None
    pace: float | None


def read(conn: Conn, mrns: Sequence[str]) -> tuple[list[Stored], int | None]:
    """Each transit's stored accumulators and its alerts (all, and rendezvous), and the
    newest model's version (None: none trained), in one statement."""
    found = rows(
        conn,
        "SELECT m.mrn, r.running, coalesce(r.seal_events, 0) AS seal_events,"
        " coalesce(r.seal_seq, -1) AS seal_seq, r.history,"
        " r.corridor_pace, a.n AS alerts, a.rdv AS rendezvous,"
        " (SELECT max(version) FROM risk_models) AS model_version"
        " FROM unnest(%s::char(18)[]) AS m(mrn)"
        " LEFT JOIN transit_risk r ON r.mrn = m.mrn"
        " CROSS JOIN LATERAL (SELECT count(*) AS n,"
        "   count(*) FILTER (WHERE type = 'rendezvous') AS rdv"
        "   FROM alerts WHERE alerts.mrn = m.mrn) a",
        (list(mrns),),
    )
    version = found[0]["model_version"] if found else None
    return [
        Stored(
            r["mrn"].strip(),
            r["running"],
            int(r["seal_events"]),
            int(r["seal_seq"]),
            r["history"],
            r["corridor_pace"],
            int(r["alerts"]),
            int(r["rendezvous"]),
        )
        for r in found
    ], version


def history(conn: Conn, mrns: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per transit, the earlier transits of its vehicle, of its tracker and of its
    trader (``details.trader``) with an incident or an inspection that found something."""
    found = rows(
        conn,
        "WITH bad AS (SELECT e.mrn, e.vehicle, e.tracker_id, e.details->>'trader' AS trader,"
        "   e.declared_at FROM transits e"
        "   WHERE EXISTS (SELECT 1 FROM transit_events ev WHERE ev.mrn = e.mrn"
        "     AND ev.kind = 'incident')"
        "   OR EXISTS (SELECT 1 FROM transit_inspections i WHERE i.mrn = e.mrn AND i.found))"
        " SELECT t.mrn,"
        " (SELECT count(*) FROM bad WHERE bad.vehicle = t.vehicle AND bad.mrn <> t.mrn"
        "   AND bad.declared_at < t.declared_at) AS vehicle,"
        " (SELECT count(*) FROM bad WHERE bad.tracker_id = t.tracker_id AND bad.mrn <> t.mrn"
        "   AND bad.declared_at < t.declared_at) AS tracker,"
        " (SELECT count(*) FROM bad WHERE bad.trader = t.details->>'trader'"
        "   AND bad.mrn <> t.mrn AND bad.declared_at < t.declared_at) AS trader"
        " FROM transits t WHERE t.mrn = ANY(%s)",
        (list(mrns),),
    )
    return {
        r["mrn"].strip(): {
            "vehicle_incidents": int(r["vehicle"]),
            "tracker_incidents": int(r["tracker"]),
            "trader_incidents": int(r["trader"]),
        }
        for r in found
    }


def corridor_paces(conn: Conn, mrns: Sequence[str]) -> dict[str, tuple[str, float | None]]:
    """Per transit: its corridor and the median seconds per km of the finished
    transits on that corridor (None with fewer than :data:`MIN_PAST` of them)."""
    found = rows(
        conn,
        "SELECT t.mrn, t.corridor_id, p.median FROM transits t"
        " LEFT JOIN LATERAL (SELECT CASE WHEN count(*) >= %s THEN"
        "   percentile_cont(0.5) WITHIN GROUP (ORDER BY r.pace) END AS median"
        "   FROM transit_risk r JOIN transits e ON e.mrn = r.mrn"
        "   WHERE e.corridor_id = t.corridor_id AND e.status = ANY(%s) AND r.pace IS NOT NULL"
        " ) p ON true WHERE t.mrn = ANY(%s)",
        (MIN_PAST, sorted(FINISHED), list(mrns)),
    )
    return {r["mrn"].strip(): (r["corridor_id"], r["median"]) for r in found}


def save(conn: Conn, scores: Sequence[NewScore]) -> None:
    """Write these scores and accumulators (one row per transit), in one statement
    (the rows as one JSON document: quicker to send than arrays of JSON texts)."""
    if not scores:
        return
    run(
        conn,
        "INSERT INTO transit_risk (mrn, probability, level, reasons, features,"
        " model_version, running, seal_events, seal_seq, history, corridor_pace, pace,"
        " updated_at) SELECT x.*, now() FROM jsonb_to_recordset(%s::jsonb) AS x(mrn char(18),"
        " probability float8, level text, reasons jsonb, features jsonb, model_version int,"
        " running jsonb, seal_events int, seal_seq int8, history jsonb, corridor_pace float8,"
        " pace float8)"
        " ON CONFLICT (mrn) DO UPDATE SET probability = EXCLUDED.probability,"
        " level = EXCLUDED.level, reasons = EXCLUDED.reasons,"
        " features = EXCLUDED.features, model_version = EXCLUDED.model_version,"
        " running = EXCLUDED.running, seal_events = EXCLUDED.seal_events,"
        " seal_seq = EXCLUDED.seal_seq, pace = EXCLUDED.pace, updated_at = now()",
        (json.dumps([vars(s) for s in scores]),),
    )


def forget(conn: Conn, mrn: str) -> None:
    """Drop a transit's score (its declaration was replaced: a new journey)."""
    run(conn, "DELETE FROM transit_risk WHERE mrn = %s", (mrn,))


def current(conn: Conn, mrn: str) -> dict[str, Any] | None:
    """A transit's score as shown: probability, level, reasons, updated_at."""
    return row(
        conn,
        "SELECT probability, level, reasons, updated_at FROM transit_risk WHERE mrn = %s",
        (mrn,),
    )


def model(conn: Conn, version: int) -> dict[str, Any] | None:
    """A stored model's JSON."""
    found = value(conn, "SELECT model FROM risk_models WHERE version = %s", (version,))
    return dict(found) if found is not None else None


MODEL_LOCK = 0x715C01  # pg_advisory_xact_lock key: one new model version at a time


def add_model(conn: Conn, model_json: dict[str, Any], metrics: dict[str, Any]) -> int:
    """Store a newly trained model as the next version; its version (two trainings at
    once take the next two)."""
    run(conn, "SELECT pg_advisory_xact_lock(%s)", (MODEL_LOCK,))
    return int(
        value(
            conn,
            "INSERT INTO risk_models (version, model, metrics)"
            " SELECT coalesce(max(version), 0) + 1, %s, %s FROM risk_models RETURNING version",
            (json.dumps(model_json), json.dumps(metrics)),
        )
    )


def labelled(conn: Conn) -> list[dict[str, Any]]:
    """Finished transits with a score, for training: their features and whether
    anything was found (an inspection that found something, or an incident)."""
    return rows(
        conn,
        "SELECT r.mrn, r.features,"
        " (EXISTS (SELECT 1 FROM transit_inspections i WHERE i.mrn = r.mrn AND i.found)"
        "  OR EXISTS (SELECT 1 FROM transit_events ev WHERE ev.mrn = r.mrn"
        "    AND ev.kind = 'incident')) AS found"
        " FROM transit_risk r JOIN transits t ON t.mrn = r.mrn"
        " WHERE t.status = ANY(%s) ORDER BY r.mrn",
        (sorted(FINISHED),),
    )


def inspect(
    conn: Conn,
    mrn: str,
    *,
    inspected: bool,
    found: bool,
    note: str | None,
    office: str | None,
    actor: str,
    probability: float | None,
    level: str | None,
) -> int:
    """Record what an inspection found; its id."""
    return int(
        value(
            conn,
            "INSERT INTO transit_inspections (mrn, inspected, found, note, office, actor,"
            " probability, level) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (mrn, inspected, found, note, office, actor, probability, level),
        )
    )


def inspections(conn: Conn, mrn: str) -> list[dict[str, Any]]:
    """A transit's inspections, oldest first."""
    return rows(
        conn,
        "SELECT inspected, found, note, office, actor, probability, level, at"
        " FROM transit_inspections WHERE mrn = %s ORDER BY at, id",
        (mrn,),
    )
