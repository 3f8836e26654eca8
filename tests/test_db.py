"""The schema on the project's real TimescaleDB."""

from datetime import UTC, datetime

from transit.db import store
from transit.db.migrate import available, current_level, migrate
from transit.model import Fix


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


def test_redelivered_batch_writes_no_duplicate(db) -> None:
    t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    fixes = [
        Fix(device_id="TEST-DUP", seq=1, idx=i, time=t, lat=1.0 + i, lon=2.0) for i in range(3)
    ]
    store.prepare_session(db)
    db.execute("DELETE FROM fixes WHERE device_id = 'TEST-DUP'")
    db.commit()
    first, _ = store.write_batch(db, fixes, [], [], [])
    second, _ = store.write_batch(db, fixes, [], [], [])
    n = db.execute("SELECT count(*) FROM fixes WHERE device_id = 'TEST-DUP'").fetchone()[0]
    assert (first, second, n) == (3, 0, 3)
