"""PostgreSQL/TimescaleDB: the repositories, where all the SQL lives, and the migrations.

One module per table or feature, named after it, so a feature's SQL is found from its
name: ``transits`` (transits and their timeline), ``alerts`` (and what *open* means,
``open_sql``), ``telemetry`` (fixes and seal events: ingest's COPY, tracks),
``devices``, ``seals``, ``offices``, ``corridors`` (the one place a stored corridor
becomes a :class:`~transit.geofence.corridor.Corridor`), ``keys``, ``audit``,
``partners``, ``outbox``, ``dead_letters``, ``filtered``, ``retention``, ``workers``,
``server`` (the server's own facts, for doctor), ``pool`` (the API's connection
pool, which outlives a failover). ``visibility`` decides who may see
which transit and which of its fields, for every reader. ``store`` is ingest's unit of
work over the repositories; ``migrate`` applies ``migrations/``.

A repository takes the caller's connection and never commits: the caller (an HTTP
request, a command, an ingest batch) owns the transaction. Rows come back as dicts
whatever the connection's row factory (:mod:`transit.db.query`). Outside this package
no module holds SQL, but for the exceptions ``tests/unit/test_sql_in_repositories.py`` names.
"""
