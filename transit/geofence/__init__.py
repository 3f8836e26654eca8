"""Corridors and zones as prepared Shapely geometry, with batched point checks."""

from transit.geofence.corridor import Corridor, Office, build_corridor, load_geojson

__all__ = ["Corridor", "Office", "build_corridor", "load_geojson"]
