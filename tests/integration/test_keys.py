"""API keys have a life, on the real API, database and CLI: listed without secrets,
revoked and expired keys refused on their next request (by every API process), an open
live feed closed when its key is revoked, every change in the audit log."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import websockets

from tests.conftest import ROOT, _api_server
from tests.http import call
from transit import keys

CLOSE_BOUND_S = 10.0  # the feed re-reads keys every second; generous for a loaded host


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "transit.cli", "keys", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.fixture
def second_api() -> Iterator[str]:
    """Another API process on the same database (deployments run several)."""
    yield from _api_server()


def _make(api_url: str, admin_key: str, **body) -> dict:
    """A key made through the API; it expires within a day unless the test says
    otherwise (no test key outlives its run for long)."""
    if "expires_at" not in body:
        body.setdefault("expires_in_days", 1)
    status, made = call(f"{api_url}/api/v1/keys", "POST", admin_key, body)
    assert status == 201, made
    return made


def test_list_shows_a_created_key_without_its_secret(api_url, admin_key) -> None:
    made = _make(api_url, admin_key, role="control_room", label="list test", expires_in_days=2)
    assert made["key"].startswith(f"tk_{made['id']}_") and made["status"] == "active"
    status, listed = call(f"{api_url}/api/v1/keys", key=admin_key)
    assert status == 200
    mine = [k for k in listed["items"] if k["id"] == made["id"]]
    assert len(mine) == 1
    item = mine[0]
    assert item["role"] == "control_room" and item["label"] == "list test"
    assert item["created_by"].startswith("admin:") and item["expires_at"]
    assert "key" not in item and "key_hash" not in item
    secret = made["key"].split("_", 2)[2]
    assert secret not in json.dumps(listed)
    out = cli("list").stdout
    assert made["id"] in out and "list test" in out and secret not in out


def test_a_revoked_key_is_refused_on_its_next_request(api_url, admin_key) -> None:
    made = _make(api_url, admin_key, role="control_room", label="revoke test")
    assert call(f"{api_url}/api/v1/me", key=made["key"])[0] == 200
    status, body = call(
        f"{api_url}/api/v1/keys/{made['id']}/revoke", "POST", admin_key, {"reason": "lost"}
    )
    assert status == 200 and body["status"] == "revoked" and body["revoked_by"].startswith("admin:")
    status, body = call(f"{api_url}/api/v1/me", key=made["key"])
    assert status == 401
    assert f"the API key {made['id']} was revoked" in body["detail"]
    # Revoking twice is a conflict, an unknown id is not found.
    assert call(f"{api_url}/api/v1/keys/{made['id']}/revoke", "POST", admin_key)[0] == 409
    assert call(f"{api_url}/api/v1/keys/00000000/revoke", "POST", admin_key)[0] == 404


def test_a_key_revoked_through_one_api_process_is_refused_by_another(
    api_url, second_api, admin_key
) -> None:
    made = _make(api_url, admin_key, role="control_room", label="two processes")
    assert call(f"{second_api}/api/v1/me", key=made["key"])[0] == 200
    assert call(f"{api_url}/api/v1/keys/{made['id']}/revoke", "POST", admin_key)[0] == 200
    status, body = call(f"{second_api}/api/v1/me", key=made["key"])
    assert status == 401 and "revoked" in body["detail"]


def test_an_expired_key_is_refused(api_url, admin_key, db) -> None:
    made = _make(api_url, admin_key, role="control_room", label="expiry test", expires_in_days=1)
    assert call(f"{api_url}/api/v1/me", key=made["key"])[0] == 200
    # Its day has passed: the key's life moved back in time.
    db.execute(
        "UPDATE api_keys SET created_at = now() - interval '2 days',"
        " expires_at = now() - interval '1 day' WHERE prefix = %s",
        (made["id"],),
    )
    db.commit()
    status, body = call(f"{api_url}/api/v1/me", key=made["key"])
    assert status == 401
    assert f"the API key {made['id']} expired at" in body["detail"]
    _, active = call(f"{api_url}/api/v1/keys", key=admin_key)
    assert made["id"] not in {k["id"] for k in active["items"]}
    _, every = call(f"{api_url}/api/v1/keys?all=true", key=admin_key)
    assert {k["id"]: k["status"] for k in every["items"]}[made["id"]] == "expired"


def test_a_key_records_when_it_was_last_used(api_url, admin_key) -> None:
    made = _make(api_url, admin_key, role="control_room", label="last use")
    assert made["last_used_at"] is None
    assert call(f"{api_url}/api/v1/me", key=made["key"])[0] == 200
    _, listed = call(f"{api_url}/api/v1/keys", key=admin_key)
    assert {k["id"]: k["last_used_at"] for k in listed["items"]}[made["id"]] is not None


def test_making_a_key_refuses_bad_input_naming_the_field(api_url, admin_key) -> None:
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    cases = {
        "expires_at": {"role": "control_room", "expires_at": past},
        "office": {"role": "officer"},
        "country": {"role": "partner", "country": "Thailand"},
    }
    for field, body in cases.items():
        status, answer = call(f"{api_url}/api/v1/keys", "POST", admin_key, body)
        assert status == 422, (field, answer)
        assert field in answer["detail"][0]["loc"], (field, answer)
    both = {"role": "control_room", "expires_at": past, "expires_in_days": 1}
    status, answer = call(f"{api_url}/api/v1/keys", "POST", admin_key, both)
    assert status == 422 and "not both" in json.dumps(answer)


async def _close_frame(ws) -> tuple[int | None, str]:
    """Read until the server closes (frames may come until then); its close code and
    reason (None: no close frame). A feed still open after ``CLOSE_BOUND_S`` fails the
    test (TimeoutError)."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), CLOSE_BOUND_S)
    except websockets.exceptions.ConnectionClosed as exc:
        got = exc.rcvd
    return (got.code, got.reason) if got is not None else (None, "")


async def _closed_after_revocation(
    feed_url: str, revoke_url: str, admin_key: str, key: str
) -> tuple[int | None, str, float]:
    async with websockets.connect(f"{feed_url}/api/v1/live?key={key}") as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["type"] == "hello"
        status, _ = await asyncio.to_thread(call, revoke_url, "POST", admin_key)
        assert status == 200
        revoked = asyncio.get_running_loop().time()
        code, reason = await _close_frame(ws)
        took = asyncio.get_running_loop().time() - revoked
    return code, reason, took


def test_an_open_live_feed_is_closed_when_its_key_is_revoked(
    api_url, second_api, admin_key
) -> None:
    made = _make(api_url, admin_key, role="control_room", label="live revoke")
    # The feed runs on one API process, the revocation goes through the other.
    ws_url = second_api.replace("http://", "ws://")
    revoke_url = f"{api_url}/api/v1/keys/{made['id']}/revoke"
    code, reason, took = asyncio.run(
        _closed_after_revocation(ws_url, revoke_url, admin_key, made["key"])
    )
    assert code == 4401
    assert f"the API key {made['id']} was revoked" in reason
    assert took < CLOSE_BOUND_S


def test_a_revoked_key_cannot_open_the_live_feed(api_url, admin_key) -> None:
    made = _make(api_url, admin_key, role="control_room", label="live refused")
    assert call(f"{api_url}/api/v1/keys/{made['id']}/revoke", "POST", admin_key)[0] == 200

    async def go() -> tuple[int | None, str]:
        ws_url = api_url.replace("http://", "ws://")
        async with websockets.connect(f"{ws_url}/api/v1/live?key={made['key']}") as ws:
            return await _close_frame(ws)

    code, reason = asyncio.run(go())
    assert code == 4401 and "revoked" in reason


def test_the_audit_log_has_the_creation_and_the_revocation(api_url, admin_key, db) -> None:
    made = _make(api_url, admin_key, role="partner", country="TH", label="audit test")
    call(f"{api_url}/api/v1/keys/{made['id']}/revoke", "POST", admin_key, {"reason": "left"})
    rows = db.execute(
        "SELECT action, actor, details FROM audit_log WHERE subject = %s ORDER BY id",
        (f"key:{made['id']}",),
    ).fetchall()
    admin_actor = f"admin:{keys.key_id(admin_key)}"
    assert [(r[0], r[1]) for r in rows] == [
        ("key.create", admin_actor),
        ("key.revoke", admin_actor),
    ]
    assert rows[0][2]["country"] == "TH" and rows[1][2]["reason"] == "left"


def test_cli_lists_and_revokes_a_key(api_url, db) -> None:
    made = cli("create", "--role", "control_room", "--label", "cli test", "--expires-in", "7")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    kid = keys.key_id(key)
    secret = key.split("_", 2)[2]
    listed = cli("list")
    assert listed.returncode == 0
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith(kid))
    assert "cli test" in line and "active" in line and secret not in listed.stdout
    assert call(f"{api_url}/api/v1/me", key=key)[0] == 200

    revoked = cli("revoke", kid, "--reason", "rotated")
    assert revoked.returncode == 0, revoked.stderr
    status, body = call(f"{api_url}/api/v1/me", key=key)
    assert status == 401 and "revoked" in body["detail"]
    assert kid not in cli("list").stdout
    every = json.loads(cli("list", "--all", "--json").stdout)
    mine = next(k for k in every if k["id"] == kid)
    assert mine["status"] == "revoked" and mine["revoked_by"].startswith("cli")
    assert "key" not in mine and "key_hash" not in mine
    again = cli("revoke", kid)
    assert again.returncode == 2 and "already revoked" in again.stderr
    actions = db.execute(
        "SELECT action FROM audit_log WHERE subject = %s ORDER BY id", (f"key:{kid}",)
    ).fetchall()
    assert [a[0] for a in actions] == ["key.create", "key.revoke"]


def test_cli_refuses_an_expiry_in_the_past() -> None:
    out = cli("create", "--role", "control_room", "--expires", "2001-01-01T00:00Z")
    assert out.returncode == 2 and "not in the future" in out.stderr


def test_an_unknown_key_id_is_named_in_the_error(settings) -> None:
    with psycopg.connect(settings.database_url) as conn, pytest.raises(LookupError, match="no key"):
        keys.revoke(conn, "00000000", "test")
    out = cli("revoke", "not-an-id")
    assert out.returncode == 2 and "8 hex digits" in out.stderr
