"""The schema on the project's real TimescaleDB."""

from datetime import UTC, datetime

import pytest

from transit.db import devices, store, transits
from transit.db.migrate import available, current_level, migrate
from transit.model import AlertEvent, AlertType, Fix, Severity


def test_fixes_and_seal_events_are_hypertables(db) -> None:
    rows = db.execute("SELECT hypertable_name FROM timescaledb_information.hypertables").fetchall()
    assert {"fixes", "seal_events"} <= {r[0] for r in rows}


def test_second_migration_run_changes_nothing(db) -> None:
    migrate(db)
    before = db.execute("SELECT version, applied_at FROM schema_migrations ORDER BY 1").fetchall()
    assert migrate(db) == []
    after = db.execute("SELECT version, applied_at FROM schema_migrations ORDER BY 1").fetchall()
    assert before == after
    assert current_level(db) == available()[-1].version


def test_time_bucket_and_drop_chunks_work_under_this_edition(db) -> None:
    assert db.execute("SELECT time_bucket('1 hour', now()) IS NOT NULL").fetchone()[0]
    db.execute("SELECT drop_chunks('fixes', older_than => interval '100 years')")
    db.rollback()


def test_redelivered_batch_writes_no_duplicate(tx) -> None:
    t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    fixes = [
        Fix(device_id="TEST-DUP-TX", seq=1, idx=i, time=t, lat=1.0 + i, lon=2.0) for i in range(3)
    ]
    store.create_staging(tx)
    first, _ = store.write_batch(tx, fixes, [], [], [])
    second, _ = store.write_batch(tx, fixes, [], [], [])
    n = tx.execute("SELECT count(*) FROM fixes WHERE device_id = 'TEST-DUP-TX'").fetchone()[0]
    assert (first, second, n) == (3, 0, 3)


def _transit_on(db, corridor: str, serial: str, details=None) -> str:
    """A transit under way, in the test's transaction (rolled back after it)."""
    from transit.geofence.corridor import acts_network
    from transit.model import make_mrn
    from transit.provision import import_geojson

    import_geojson(db, acts_network())
    mrn = make_mrn(26, "MY", serial)
    devices.register(db, "TEST-TRK-DB", "tracker")
    transits.declare(
        db,
        mrn=mrn,
        tracker_id="TEST-TRK-DB",
        corridor_id=corridor,
        office_departure="MYKUL001",
        office_destination="THBKK001",
        countries=["MY", "TH"],
        time_limit=datetime(2030, 1, 1, tzinfo=UTC),
        status="in_transit",
        details=details,
    )
    transits.finish_other_transits(db, "TEST-TRK-DB", mrn)
    return mrn


def test_later_evidence_is_attached_to_the_open_alert(tx) -> None:
    db = tx
    mrn = _transit_on(db, "MY-TH-BKK", "DBEVIDENCETX")
    t = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def ev(action: str, minute: int, counter: int) -> AlertEvent:
        return AlertEvent(
            mrn=mrn,
            device_id="TEST-TRK-DB",
            type=AlertType.SEAL_TAMPERED,
            severity=Severity.CRITICAL,
            action=action,
            time=t.replace(minute=minute),
            lat=5.0,
            lon=100.4,
            key="SEAL-1",
            details={"counter": counter},
        )

    store.create_staging(db)
    _, first = store.write_batch(db, [], [], [], [ev("open", 0, 1)])
    _, again = store.write_batch(db, [], [], [], [ev("open", 1, 2), ev("evidence", 2, 3)])
    rows = db.execute(
        "SELECT id, details FROM alerts WHERE mrn = %s AND type = 'seal_tampered'", (mrn,)
    ).fetchall()
    assert len(first) == 1 and again == [] and len(rows) == 1
    details = rows[0][1]
    assert details["counter"] == 1  # the first report stays as it was
    assert details["evidence_count"] == 2
    assert [e["details"]["counter"] for e in details["evidence"]] == [2, 3]
    # Once cleared, the same condition opens a new alert; the old one keeps its history.
    store.write_batch(db, [], [], [], [ev("clear", 3, 3), ev("open", 4, 4)])
    rows = db.execute(
        "SELECT cleared_at IS NOT NULL, details->'evidence_count' FROM alerts"
        " WHERE mrn = %s ORDER BY id",
        (mrn,),
    ).fetchall()
    assert rows == [(True, 2), (False, None)]


def test_thresholds_come_from_the_corridor_and_the_transit_over_it(tx) -> None:
    mrn = _transit_on(tx, "MY-TH-BKK", "DBTHRESHLDTX", {"thresholds": {"stop_limit_s": 300}})
    tx.execute(
        "UPDATE corridors SET properties = properties || %s::jsonb WHERE id = 'MY-TH-BKK'",
        ('{"thresholds": {"stop_limit_s": 600, "low_battery_pct": 20}}',),
    )
    active = {t.mrn: t for t in transits.under_way(tx).values()}
    assert active[mrn].thresholds == {"stop_limit_s": 300, "low_battery_pct": 20}
    from transit.ingest.pipeline import rules_config

    th = rules_config({"stop_limit_s": 300, "route_debounce_s": 90})
    assert (th.stop_limit_s, th.route_debounce_s, th.low_battery_pct) == (300, 90, 15)
    with pytest.raises(ValueError, match=r"thresholds\.stop_limt_s: unknown"):
        rules_config({"stop_limt_s": 300})
    with pytest.raises(ValueError, match=r"thresholds\.jump_min_m: must be a positive number"):
        rules_config({"jump_min_m": -1})
