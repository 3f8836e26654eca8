"""The API's connection pool, made to outlive a database failover.

Each connection is checked as it is handed out (``check_connection``: one empty round
trip), so a connection broken while it sat idle (its server killed, a primary that
stepped down) is replaced before a request gets it: after a failover only the requests
that were inside the database at that moment fail. The URL may name several hosts
(``postgresql://u:p@h1:p1,h2:p2/db?target_session_attrs=read-write``): libpq takes the
first that accepts writes, and new connections go on trying, with the pool's backoff,
until one does (docs/cluster-db.md).
"""

from __future__ import annotations

from psycopg_pool import ConnectionPool


def open_pool(url: str, max_size: int = 10, timeout: float = 30.0) -> ConnectionPool:
    """A pool of up to ``max_size`` connections to ``url``, open once its first
    connection is made (waiting ``timeout`` seconds at most)."""
    pool = ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        open=False,
        check=ConnectionPool.check_connection,
    )
    pool.open(wait=True, timeout=timeout)
    return pool
