#!/usr/bin/env bash
# Run Mosquitto with DIR/mosquitto.conf and start it again within a second whenever it
# dies, as systemd's Restart=on-failure would (scripts/services.sh runs the stack's
# broker under it):
#   scripts/supervise-mosquitto.sh DIR
# Debian 12's Mosquitto 2.0.11 now and then dies of a segfault some seconds after a
# reload (SIGHUP, sent on every device registration); the kernel log here has several.
# Its persistence file keeps the sessions and queued messages across the restart. Each
# restart is logged in DIR/supervisor.log. The broker's pid is written to
# DIR/mosquitto.pid (Mosquitto's own pid_file is for daemon mode). To stop: create
# DIR/stopping, then stop the broker (scripts/services.sh stop-mq does).
set -uo pipefail
d=${1:?usage: supervise-mosquitto.sh DIR}
while :; do
  mosquitto -c "$d/mosquitto.conf" &
  echo $! >"$d/mosquitto.pid"
  wait $!
  rc=$?
  [ -e "$d/stopping" ] && break
  echo "$(date -u +%FT%TZ) mosquitto exited with status $rc; started again" >>"$d/supervisor.log"
  sleep 1
done
rm -f "$d/mosquitto.pid"
