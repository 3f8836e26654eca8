"""The control-room page and what it loads: its own files, Leaflet (installed from the
npm registry by the set-up into .run/web) and the country borders for the basemap.
Nothing comes from the internet."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

router = APIRouter(include_in_schema=False)
WEB = Path(str(resources.files("transit.api").joinpath("web")))
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".png": "image/png"}


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/map")


@router.get("/map")
def page() -> FileResponse:
    """The control room's live map."""
    return FileResponse(WEB / "index.html", media_type="text/html")


@router.get("/web/{name}")
def own_file(name: str) -> FileResponse:
    path = WEB / name
    if "/" in name or not path.is_file():
        raise HTTPException(404, detail=f"no file {name}")
    return FileResponse(path, media_type=TYPES.get(path.suffix, "application/octet-stream"))


@router.get("/vendor/leaflet/{name:path}")
def leaflet(name: str, request: Request) -> FileResponse:
    base = request.app.state.settings.run_dir / "web" / "node_modules" / "leaflet" / "dist"
    path = (base / name).resolve()
    if not path.is_file() or base.resolve() not in path.parents:
        raise HTTPException(404, detail=f"no file {name} (run make setup: scripts/setup-web.sh)")
    return FileResponse(path, media_type=TYPES.get(path.suffix, "application/octet-stream"))


@router.get("/web-data/borders.geojson")
def borders(request: Request) -> Response:
    """The basemap: the country borders the geofence uses (Natural Earth via npm)."""
    path = request.app.state.settings.run_dir / "geodata" / "borders.geojson"
    if not path.is_file():
        raise HTTPException(404, detail="no borders (run make setup: scripts/setup-geodata.sh)")
    return FileResponse(path, media_type="application/geo+json")
