"""``transit doctor --cluster``: every node of the cluster profile, its role and health.

The broker: each RabbitMQ node of scripts/cluster-broker.sh (its process, whether the
cluster counts it as running, whether it leads or holds a replica of the ingest queue).
The database: each Patroni member of scripts/cluster-db.sh (leader, synchronous
standby or replica; running or streaming; its lag). The API: each process behind
HAProxy in scripts/cluster-api.sh, as HAProxy's health checks see it. A part that was
never started is reported as such; ``ok`` is true only when every node of every part
is up and the broker's queue and the database have a leader.
"""

from __future__ import annotations

import urllib.error
from typing import Any

from transit.cluster.api import ClusterApi
from transit.cluster.broker import Management, load_nodes, nodes_file
from transit.cluster.database import ClusterDatabase
from transit.config import Settings

DB_HEALTHY = {"running", "streaming"}


def check_broker(settings: Settings) -> dict[str, Any]:
    """The RabbitMQ nodes: process, cluster membership, role for the ingest queue."""
    path = nodes_file(settings)
    if not path.exists():
        return {"ok": False, "error": "not started (make cluster-up)", "nodes": []}
    nodes = load_nodes(path)
    out: dict[str, Any] = {"nodes": []}
    admin = Management(nodes, settings.mqtt_admin_user, settings.mqtt_admin_password)
    try:
        running = set(admin.running_nodes())
        leader: str | None = admin.queue_leader()
        members = set(admin.queue_members())
    except (RuntimeError, OSError, KeyError) as exc:
        running, leader, members = set(), None, set()
        out["error"] = f"no node's management API answered: {exc}"
    for n in nodes:
        pid = n.pid()
        role = "queue leader" if n.name == leader else "queue replica" if n.name in members else ""
        out["nodes"].append(
            {
                "name": n.name,
                "pid": pid,
                "up": pid is not None and n.name in running,
                "role": role or "no replica of the ingest queue",
                "mqtt": n.mqtt_url,
                "amqp_port": n.amqp_port,
            }
        )
    out["queue_leader"] = leader
    out["ok"] = leader is not None and all(n["up"] for n in out["nodes"])
    return out


def check_database(db: ClusterDatabase | None = None) -> dict[str, Any]:
    """The Patroni members: role, state, lag."""
    db = db or ClusterDatabase()
    try:
        members = db.roles()
    except ConnectionError as exc:
        return {"ok": False, "error": f"not running (make cluster-db-up): {exc}", "members": []}
    rows = [
        {
            "name": m.name,
            "role": m.role,
            "state": m.state,
            "up": m.state in DB_HEALTHY,
            "lag_bytes": m.lag,
            "port": m.port,
            "timeline": m.timeline,
        }
        for m in members
    ]
    leader = any(r["role"] == "leader" and r["state"] == "running" for r in rows)
    sync = any(r["role"] == "sync_standby" and r["up"] for r in rows)
    return {
        "ok": leader and sync and all(r["up"] for r in rows),
        "members": rows,
        "leader": leader,
        "synchronous_standby": sync,
    }


def check_api(api: ClusterApi | None = None) -> dict[str, Any]:
    """The API processes as HAProxy's health checks see them."""
    api = api or ClusterApi()
    try:
        servers = api.servers()
    except (OSError, urllib.error.URLError) as exc:
        return {"ok": False, "error": f"HAProxy not running (make cluster-api-up): {exc}"}
    rows = [
        {"name": s.name, "status": s.status, "check": s.check, "up": s.status.startswith("UP")}
        for s in servers.values()
    ]
    return {"ok": bool(rows) and all(r["up"] for r in rows), "url": api.url, "servers": rows}


def check_cluster(settings: Settings) -> dict[str, Any]:
    """The three parts; ``ok`` when every node of each is up."""
    parts = {
        "broker": check_broker(settings),
        "database": check_database(),
        "api": check_api(),
    }
    return {"ok": all(p["ok"] for p in parts.values()), **parts}


def cluster_lines(report: dict[str, Any]) -> list[str]:
    """The report as lines for a person."""

    def mark(ok: bool) -> str:
        return "ok  " if ok else "DOWN"

    out = []
    b = report["broker"]
    out.append(f"broker:   {mark(b['ok'])} {b.get('error', '')}".rstrip())
    for n in b["nodes"]:
        out.append(
            f"  {mark(n['up'])} {n['name']:<22} {n['role']:<16} {n['mqtt']}, amqp"
            f" {n['amqp_port']}, pid {n['pid'] or '-'}"
        )
    d = report["database"]
    out.append(f"database: {mark(d['ok'])} {d.get('error', '')}".rstrip())
    for m in d["members"]:
        lag = "" if m["lag_bytes"] is None else f", lag {m['lag_bytes']} B"
        out.append(
            f"  {mark(m['up'])} {m['name']:<22} {m['role']:<16} {m['state']}, port"
            f" {m['port']}, timeline {m['timeline']}{lag}"
        )
    a = report["api"]
    out.append(f"api:      {mark(a['ok'])} {a.get('url', a.get('error', ''))}")
    for s in a.get("servers", []):
        out.append(f"  {mark(s['up'])} {s['name']:<22} {s['status']:<16} check {s['check']}")
    return out
