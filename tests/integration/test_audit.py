"""The audit trail is a hash chain: an edited or deleted row is found."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg

from transit import audit
from transit.db.migrate import migrate
from transit.localstack import bench_settings


def test_edited_and_deleted_rows_are_found(db) -> None:
    ids = [audit.append(db, "test", "thing.do", f"subject-{i}", {"n": i}) for i in range(3)]
    assert audit.verify(db).ok
    db.execute("SAVEPOINT before")
    db.execute("UPDATE audit_log SET details = '{\"n\": 99}' WHERE id = %s", (ids[1],))
    problems = audit.verify(db).problems
    assert problems == [f"row {ids[1]}: its content does not match its hash (edited)"]
    db.execute("ROLLBACK TO SAVEPOINT before")
    db.execute("UPDATE audit_log SET actor = 'someone else' WHERE id = %s", (ids[0],))
    assert (
        f"row {ids[0]}: its content does not match its hash (edited)" in audit.verify(db).problems
    )
    db.execute("ROLLBACK TO SAVEPOINT before")
    db.execute("DELETE FROM audit_log WHERE id = %s", (ids[1],))
    problems = audit.verify(db).problems
    assert problems == [
        f"row {ids[2]}: does not follow row {ids[0]} (a row was deleted or altered)"
    ]
    db.execute("ROLLBACK TO SAVEPOINT before")
    head = audit.verify(db)
    assert head.ok and head.head_id == ids[2]
    db.execute("DELETE FROM audit_log WHERE id = %s", (ids[2],))
    # Deleting the newest row leaves a whole chain: the head kept outside finds it.
    assert audit.verify(db).ok
    assert audit.verify(db, f"{head.head_id}:{head.head_hash}").problems == [
        f"the head {head.head_id}:{head.head_hash} recorded earlier is no longer in the chain"
    ]
    db.rollback()


def test_transit_audit_verify_exits_1_on_a_tampered_log(settings) -> None:
    bench = bench_settings(settings, settings.mqtt_port + 1)
    env = dict(os.environ, TRANSIT_DATABASE_URL=bench.database_url)
    with psycopg.connect(bench.database_url) as conn:
        migrate(conn)
        conn.execute("TRUNCATE audit_log")
        for i in range(5):
            audit.append(conn, "test", "thing.do", f"s{i}", {"i": i})
        conn.commit()

        def verify() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "transit.cli", "audit", "verify"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        ok = verify()
        assert ok.returncode == 0 and "5 rows, chain intact" in ok.stdout
        conn.execute(
            "UPDATE audit_log SET subject = 'forged' WHERE id = (SELECT min(id) + 2 FROM audit_log)"
        )
        conn.commit()
        bad = verify()
        assert bad.returncode == 1
        assert "TAMPERED row" in bad.stdout and "chain BROKEN" in bad.stdout
        conn.execute("TRUNCATE audit_log")
        conn.commit()
