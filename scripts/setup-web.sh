#!/usr/bin/env bash
# The control-room page's map library: Leaflet (BSD-2-Clause) from the npm registry,
# installed into the ignored .run/web and served by the API, so the page needs no
# internet (no CDN, no online tiles: the basemap is the country-borders dataset).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR="$ROOT/.run/web"
PKG="leaflet@1.9.4"
[ -s "$DIR/node_modules/leaflet/dist/leaflet.js" ] && exit 0
mkdir -p "$DIR"
echo "setup: installing $PKG from the npm registry"
(cd "$DIR" && npm install --no-audit --no-fund --silent --prefix "$DIR" "$PKG" >/dev/null)
