#!/usr/bin/env bash
# The demo's bounded check on a fresh database and a broker of its own:
#   scripts/democheck.sh [more `transit demo --check` options, e.g. --timeout 90]
# Drops and recreates the database $DEMOCHECK_DB (default transit_democheck) as the
# postgres superuser, with TimescaleDB and PostGIS, then runs
# `transit demo --check --own-broker` against it: the demo's whole path from an empty
# database, without touching the main database or the shared broker's devices.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENV_FILE="$ROOT/.env"
# shellcheck disable=SC1090
[ -f "$ENV_FILE" ] && set -a && . "$ENV_FILE" && set +a
PG_PORT=${TRANSIT_PG_PORT:-54329}
DB=${DEMOCHECK_DB:-transit_democheck}
if ! [[ $DB =~ ^[a-z_][a-z0-9_]{0,62}$ ]]; then
  echo "democheck: DEMOCHECK_DB must be a plain lower-case name, not '$DB'" >&2
  exit 2
fi
: "${TRANSIT_DATABASE_URL:?democheck: TRANSIT_DATABASE_URL is not set (run make setup)}"

psql_pg() {
  runuser -u postgres -- psql -h "$ROOT/.run/pg" -p "$PG_PORT" -U postgres -qAt \
    -v ON_ERROR_STOP=1 "$@" >/dev/null
}
psql_pg -d postgres -c "SET client_min_messages = warning" \
  -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
  -c "CREATE DATABASE $DB OWNER transit"
psql_pg -d "$DB" -c "CREATE EXTENSION timescaledb" -c "CREATE EXTENSION postgis"

export TRANSIT_DATABASE_URL="${TRANSIT_DATABASE_URL%/*}/$DB"
exec "$ROOT/.venv/bin/transit" demo --check --own-broker "$@"
