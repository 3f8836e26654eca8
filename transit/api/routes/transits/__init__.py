"""Transits over HTTP, split by what the routes do: ``queries`` (the list, one transit,
its timeline), ``actions`` (declare, release, close, cancel, incidents), ``tracks``
(the track as GeoJSON, GPX and CSV) and ``report`` (a page to print).

The routes parse, call :mod:`transit.services.transits` or a repository, and answer;
what a caller may see is :class:`transit.db.visibility.Visibility`'s to say.
"""

from __future__ import annotations

from fastapi import APIRouter

from transit.api.routes.transits import actions, queries, report, tracks

router = APIRouter(tags=["transits"])
for part in (queries, actions, tracks, report):
    router.include_router(part.router)
