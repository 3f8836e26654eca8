"""The composition root: the one place that builds the real adapters and hands them in.

Every process of the system starts here. ``transit ingest`` asks for
:func:`ingest_worker`, ``transit api`` for :func:`api`, a dead-letter replay (from the
API or the command line) for :func:`pipeline`. Nothing below this module builds its
own MQTT client, its own rule pipeline or reads the border file: it is given them, so a
test wires others (a pipeline with tighter filter bounds, a client with another
identity) by passing them here, and the settings' bounds reach every path that
evaluates telemetry (the worker's batches, the watchdog's ticks, a replay).

The pattern is cosmicpython's ``bootstrap()`` (../shared/docs/style.md): defaults for
production, keyword arguments for a test's own parts.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

from transit.config import Settings, get_settings
from transit.geofence import borders as border_file
from transit.ingest.pipeline import Pipeline
from transit.rules.filters import FixFilters

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt
    from fastapi import FastAPI

    from transit.cluster.amqp_source import AmqpSource
    from transit.cluster.amqp_worker import AmqpIngestWorker
    from transit.geofence.borders import Borders
    from transit.geofence.engine import GeofenceEngine
    from transit.ingest.worker import IngestWorker, WorkerConfig


@lru_cache(maxsize=1)
def country_borders() -> Borders | None:
    """The countries' borders (crossings are found against them), read once per
    process; None when the border file was not installed (crossings then unknown)."""
    path = border_file.default_path()
    return border_file.load(path) if path.exists() else None


def fix_filters(settings: Settings) -> FixFilters:
    """The bounds a fix must keep to before the rules see it, from the settings."""
    return FixFilters(settings.filter_future_s, settings.filter_stale_s, settings.filter_max_hdop)


def pipeline(settings: Settings, filters: FixFilters | None = None) -> Pipeline:
    """The rule pipeline with the settings' filter bounds (or a test's own)."""
    built = Pipeline()
    built.filters = filters or fix_filters(settings)
    return built


def offline_pipeline(engine: GeofenceEngine) -> Pipeline:
    """A pipeline over an engine built in the process, with the default filter bounds:
    for event-time runs with no database and no settings (the risk benchmark)."""
    return Pipeline(engine)


def ingest_worker(
    settings: Settings | None = None,
    config: WorkerConfig | None = None,
    *,
    client: mqtt.Client | None = None,
    rules: Pipeline | None = None,
    borders: Borders | None = None,
) -> IngestWorker:
    """One ingest worker wired to the real broker and database: its MQTT client logs
    in as the ingest user with the slot's client id (persistent session, manual
    acknowledgements after commit)."""
    from transit.ingest.worker import IngestWorker, WorkerConfig
    from transit.mqtt import make_client

    cfg = settings or get_settings()
    conf = config or WorkerConfig()
    mqtt_client = client or make_client(
        cfg,
        cfg.mqtt_ingest_user,
        cfg.mqtt_ingest_password,
        client_id=conf.client_id,
        manual_ack=True,
    )
    return IngestWorker(
        cfg,
        conf,
        client=mqtt_client,
        pipeline=rules or pipeline(cfg),
        borders=borders if borders is not None else country_borders(),
    )


def amqp_urls(settings: Settings) -> list[str]:
    """The cluster's AMQP URLs, each with the ingest user's login where it names none."""
    out = []
    for url in settings.amqp_urls:
        parts = urlsplit(url)
        if not parts.username:
            login = f"{quote(settings.mqtt_ingest_user, safe='')}:"
            login += quote(settings.mqtt_ingest_password, safe="")
            parts = parts._replace(netloc=f"{login}@{parts.netloc}")
        out.append(urlunsplit(parts))
    return out


def amqp_ingest_worker(
    settings: Settings | None = None,
    config: WorkerConfig | None = None,
    *,
    source: AmqpSource | None = None,
    rules: Pipeline | None = None,
    borders: Borders | None = None,
) -> AmqpIngestWorker:
    """One ingest worker on the clustered broker: a consumer of its quorum queue over
    AMQP, failing over across the nodes the settings list (``TRANSIT_AMQP_URL``)."""
    from transit.cluster.amqp_source import AmqpSource
    from transit.cluster.amqp_worker import AmqpIngestWorker
    from transit.ingest.worker import WorkerConfig

    cfg = settings or get_settings()
    conf = config or WorkerConfig()
    return AmqpIngestWorker(
        cfg,
        conf,
        source=source or AmqpSource(amqp_urls(cfg), prefetch=conf.batch_size),
        pipeline=rules or pipeline(cfg),
        borders=borders if borders is not None else country_borders(),
    )


def api(settings: Settings | None = None) -> FastAPI:
    """The HTTP API (its connection pool opens when the server starts)."""
    from transit.api.app import create_app

    return create_app(settings or get_settings())
