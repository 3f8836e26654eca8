#!/usr/bin/env bash
# A RabbitMQ cluster of three nodes on loopback for the clustered profile (issue 14):
# MQTT for devices on every node, a quorum queue that ingest consumes over AMQP.
#   scripts/cluster-broker.sh start|stop|status
#
# Installs Debian 12's rabbitmq-server (3.10) when absent, without starting the system's
# own service. Nodes transit-r1..r3@localhost run as the rabbitmq user, with data and logs
# under .run/cluster/rabbitmq/<node>, a shared Erlang cookie there, and an epmd of their
# own on EPMD_PORT. Ports (node i = 1..3): MQTT 18850+i, AMQP 18860+i, management HTTP
# 18870+i, Erlang distribution 18880+i; CLUSTER_PORT_BASE moves them all (default 18850).
# `start` is idempotent and quick when the nodes run; it writes nodes.json, which
# transit/cluster/broker.py reads. The quorum queue and its bindings are declared by
# `python -m transit.cluster.broker setup` once the three nodes have joined.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN="$ROOT/.run"
BASE="$RUN/cluster/rabbitmq"
ENV_FILE="$ROOT/.env"
RMQ=/usr/lib/rabbitmq/bin
NODES=(r1 r2 r3)
PORT_BASE=${CLUSTER_PORT_BASE:-18850}
EPMD_PORT=$((PORT_BASE + 40))

# shellcheck disable=SC1090
[ -f "$ENV_FILE" ] && set -a && . "$ENV_FILE" && set +a

nodename() { echo "transit-$1@localhost"; }
index() { echo "${1#r}"; }
mqtt_port() { echo $((PORT_BASE + $(index "$1"))); }
amqp_port() { echo $((PORT_BASE + 10 + $(index "$1"))); }
mgmt_port() { echo $((PORT_BASE + 20 + $(index "$1"))); }
dist_port() { echo $((PORT_BASE + 30 + $(index "$1"))); }

install() {
  [ -x "$RMQ/rabbitmq-server" ] && return 0
  echo "installing rabbitmq-server (Debian 12: 3.10)" >&2
  # The package would start the system-wide service; a policy-rc.d for this install
  # only (the postinst honours it) keeps it stopped: the project runs its own nodes.
  local policy=/usr/sbin/policy-rc.d had_policy=0
  [ -e "$policy" ] && had_policy=1
  if [ "$had_policy" = 0 ]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends rabbitmq-server \
    >"$RUN/rabbitmq-install.log" 2>&1 || { apt-get update -q >/dev/null 2>&1 &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends rabbitmq-server \
      >"$RUN/rabbitmq-install.log" 2>&1; } || { [ "$had_policy" = 0 ] && rm -f "$policy";
    cat "$RUN/rabbitmq-install.log" >&2; echo "rabbitmq-server could not be installed" >&2; exit 1; }
  [ "$had_policy" = 0 ] && rm -f "$policy"
  return 0
}

# Run a RabbitMQ command as the rabbitmq user, in node $1's environment.
as_node() {
  local n=$1; shift
  local d="$BASE/$n"
  # HOME (each node's own, with a copy of the cluster's cookie) tells the nodes apart in ps.
  runuser -u rabbitmq -- env -i PATH=/usr/bin:/bin HOME="$d" LANG=C.UTF-8 \
    RABBITMQ_NODENAME="$(nodename "$n")" \
    RABBITMQ_NODE_PORT="$(amqp_port "$n")" \
    RABBITMQ_DIST_PORT="$(dist_port "$n")" \
    RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" \
    RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$BASE/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$d/mnesia" \
    RABBITMQ_LOG_BASE="$d/log" \
    RABBITMQ_PID_FILE="$d/pid" \
    RABBITMQ_PLUGINS_EXPAND_DIR="$d/plugins-expand" \
    ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} +sbwt none +sbwtdcpu none +sbwtdio none" \
    "$@"
}

# The node's VM, found by its HOME: the pid file goes as soon as a node starts stopping.
pid_of() { pgrep -u rabbitmq -f -- "beam.smp .*-home $BASE/$1 " | head -1 || true; }
running() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

password_hash() {
  # rabbit_password_hashing_sha256: base64(salt + sha256(salt + password)), 4-byte salt.
  python3 -c 'import base64,hashlib,os,sys; s=os.urandom(4)
print(base64.b64encode(s + hashlib.sha256(s + sys.argv[1].encode()).digest()).decode())' "$1"
}

write_config() {
  mkdir -p "$BASE"
  local admin_pw=${TRANSIT_MQTT_ADMIN_PASSWORD:-} ingest_pw=${TRANSIT_MQTT_INGEST_PASSWORD:-}
  [ -n "$admin_pw" ] && [ -n "$ingest_pw" ] || {
    echo "no TRANSIT_MQTT_ADMIN_PASSWORD / TRANSIT_MQTT_INGEST_PASSWORD in .env (scripts/services.sh start makes them)" >&2
    exit 1
  }
  if [ ! -f "$BASE/.erlang.cookie" ]; then
    (umask 077; python3 -c 'import secrets; print(secrets.token_hex(20), end="")' >"$BASE/.erlang.cookie")
  fi
  echo '[rabbitmq_management,rabbitmq_mqtt].' >"$BASE/enabled_plugins"
  # Users of the backend, loaded by every node at boot (hashed; devices are added over the
  # management API by transit.cluster.broker). No guest user.
  if [ ! -f "$BASE/definitions.json" ] || [ "$ENV_FILE" -nt "$BASE/definitions.json" ]; then
    cat >"$BASE/definitions.json" <<JSON
{"vhosts": [{"name": "/"}],
 "users": [
  {"name": "${TRANSIT_MQTT_ADMIN_USER:-transit-admin}", "password_hash": "$(password_hash "$admin_pw")",
   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": "administrator"},
  {"name": "${TRANSIT_MQTT_INGEST_USER:-transit-ingest}", "password_hash": "$(password_hash "$ingest_pw")",
   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ""}],
 "permissions": [
  {"user": "${TRANSIT_MQTT_ADMIN_USER:-transit-admin}", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
  {"user": "${TRANSIT_MQTT_INGEST_USER:-transit-ingest}", "vhost": "/", "configure": "^transit\\\\.", "write": "^transit\\\\.", "read": "^(transit\\\\..*|amq\\\\.topic)$"}]}
JSON
  fi
  local n d
  for n in "${NODES[@]}"; do
    d="$BASE/$n"
    mkdir -p "$d/mnesia" "$d/log"
    cp "$BASE/.erlang.cookie" "$d/.erlang.cookie"
    : >"$d/rabbitmq-env.conf"
    echo '[].' >"$d/advanced.config"
    cat >"$d/rabbitmq.conf" <<CONF
# Generated by scripts/cluster-broker.sh: node $(nodename "$n"), loopback only.
listeners.tcp.1 = 127.0.0.1:$(amqp_port "$n")
mqtt.listeners.tcp.1 = 127.0.0.1:$(mqtt_port "$n")
mqtt.allow_anonymous = false
mqtt.vhost = /
mqtt.exchange = amq.topic
management.tcp.ip = 127.0.0.1
management.tcp.port = $(mgmt_port "$n")
management.rates_mode = none
load_definitions = $BASE/definitions.json
cluster_partition_handling = pause_minority
vm_memory_high_watermark.absolute = 1GiB
disk_free_limit.absolute = 500MB
log.console = false
log.file.level = info
CONF
  done
  chown -R rabbitmq:rabbitmq "$BASE"
  chmod 400 "$BASE/.erlang.cookie" "$BASE"/r?/.erlang.cookie
  chmod 600 "$BASE/definitions.json"
}

write_nodes_json() {
  local n first=1
  {
    echo '{"nodes": ['
    for n in "${NODES[@]}"; do
      [ $first = 1 ] || echo ','
      first=0
      printf '{"name": "%s", "mqtt_port": %s, "amqp_port": %s, "management_port": %s, "pid_file": "%s"}' \
        "$(nodename "$n")" "$(mqtt_port "$n")" "$(amqp_port "$n")" "$(mgmt_port "$n")" "$BASE/$n/pid"
    done
    echo ']}'
  } >"$BASE/nodes.json"
}

launch() {
  local n=$1 port
  running "$n" && return 0
  for port in "$(mqtt_port "$n")" "$(amqp_port "$n")" "$(mgmt_port "$n")" "$(dist_port "$n")"; do
    if listening "$port"; then
      echo "port $port of $(nodename "$n") is taken by another process:" >&2
      ss -ltnp "sport = :$port" >&2 2>/dev/null || true
      exit 1
    fi
  done
  as_node "$n" "$RMQ/rabbitmq-server" -detached >"$BASE/$n/log/start.out" 2>&1
}

# Wait up to $2 half-seconds for node $1's AMQP and MQTT listeners.
await_node() {
  local n=$1 i
  for i in $(seq 1 "$2"); do
    listening "$(amqp_port "$n")" && listening "$(mqtt_port "$n")" && running "$n" && return 0
    # A node whose VM is gone (past its first seconds) will not come up.
    [ "$i" -gt 20 ] && ! running "$n" && return 1
    sleep 0.5
  done
  return 1
}

join() {
  local n=$1
  [ -f "$BASE/$n/joined" ] && return 0
  as_node "$n" "$RMQ/rabbitmqctl" -q stop_app
  as_node "$n" "$RMQ/rabbitmqctl" -q join_cluster "$(nodename r1)"
  as_node "$n" "$RMQ/rabbitmqctl" -q start_app
  touch "$BASE/$n/joined" && chown rabbitmq:rabbitmq "$BASE/$n/joined"
}

start() {
  mkdir -p "$RUN"
  install
  write_config
  write_nodes_json
  local n fresh=0 first=r1 up=0
  [ -f "$BASE/r2/joined" ] && [ -f "$BASE/r3/joined" ] || fresh=1
  for n in "${NODES[@]}"; do running "$n" && up=1; done
  # With the whole cluster down, the node that stopped last starts first (its tables are
  # the newest), alone; then the others, one at a time, each joining nodes that run. (Run
  # together, 3.10's MQTT plugin waits 100 s at boot for its peers' client-id trackers.)
  [ $up = 0 ] && [ -f "$BASE/last_stopped" ] && first=$(cat "$BASE/last_stopped")
  launch "$first"
  if ! await_node "$first" 60; then
    # It waits for a peer's tables (the cluster did not stop through this script): all
    # start together, and the MQTT listeners come after the plugin's wait.
    echo "$(nodename "$first") waits for its peers; starting them together (up to 3 minutes)" >&2
    for n in "${NODES[@]}"; do launch "$n"; done
  fi
  for n in "${NODES[@]}"; do
    launch "$n"
    await_node "$n" 480 || {
      echo "node $(nodename "$n") did not start; see $BASE/$n/log" >&2
      grep -h -m3 -E "eaddrinuse|BOOT FAILED|listen_error" "$BASE/$n/log/$(nodename "$n").log" >&2
      tail -20 "$BASE/$n/log/$(nodename "$n").log" >&2 2>/dev/null
      exit 1
    }
  done
  if [ $fresh = 1 ]; then
    touch "$BASE/r1/joined"
    join r2
    join r3
  fi
  "$ROOT/.venv/bin/python" -m transit.cluster.broker setup --nodes "$BASE/nodes.json"
  status
}

# Stop nodes and wait for their VMs to end (TERM, then KILL after a minute).
stop_nodes() {
  local n p i pids=()
  for n in "$@"; do
    p=$(pid_of "$n")
    [ -n "$p" ] && pids+=("$p") && kill -TERM "$p" 2>/dev/null && echo "$n" >"$BASE/last_stopped"
  done
  for p in "${pids[@]}"; do
    for i in $(seq 1 120); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p"; fi
  done
  return 0
}

stop() {
  # The nodes that run stop first, one of them last (r1 when it runs): the node to start
  # first next time (last_stopped), the one whose tables are the newest.
  local n last="" others=()
  for n in r2 r3 r1; do running "$n" && last=$n; done
  for n in "${NODES[@]}"; do [ "$n" != "$last" ] && others+=("$n"); done
  # The MQTT plugin's client-id tracker (a Raft group over the nodes) is left with the
  # last node alone, which then restarts it alone; the others join it again as they
  # start. Otherwise each restarting node waits 100 s for the group to have a leader.
  if [ -n "$last" ]; then
    for n in "${others[@]}"; do
      as_node "$last" "$RMQ/rabbitmqctl" -q --timeout 20 decommission_mqtt_node "$(nodename "$n")" \
        >/dev/null 2>&1 || true
    done
  fi
  stop_nodes "${others[@]}"
  [ -n "$last" ] && stop_nodes "$last"
  rm -f "$BASE"/r?/pid
  # The epmd of this cluster (its own port) goes with it.
  ERL_EPMD_PORT=$EPMD_PORT epmd -kill >/dev/null 2>&1 || true
}

status() {
  local n rc=0
  for n in "${NODES[@]}"; do
    if running "$n"; then
      echo "$(nodename "$n"): running (pid $(pid_of "$n"), mqtt $(mqtt_port "$n"), amqp $(amqp_port "$n"), http $(mgmt_port "$n"))"
    else
      echo "$(nodename "$n"): stopped"; rc=3
    fi
  done
  return $rc
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
