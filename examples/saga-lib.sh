# Shared by the saga examples' scripts (examples/saga-*/): sourced, never run. The caller sets
# EXAMPLE to its folder name (saga-orchestration or saga-choreography) before sourcing.
#
# The examples run on the local throwaway servers of scripts/servers: the three service databases
# and the parking primary on its primary cluster, the read model on its replica cluster. Each
# example has databases of its own (saga_<style>_booking, _billing, _parking, _read), so both can
# live on the same servers. The example's outbox.toml names fixed local addresses; saga_config
# writes a copy with the servers' ports into the work dir, and `outbox_x` runs outbox with it.
set -eEuo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
example_dir="$repo_root/examples/$EXAMPLE"
style="${EXAMPLE#saga-}"
outbox_bin="${OUTBOX_BIN:-$repo_root/build/outbox}"

# The servers' addresses: the caller's environment (eval "$(scripts/servers env)"), else ask
# scripts/servers for those of the default servers dir.
if [ -z "${OUTBOX_PRIMARY_URL:-}" ] || [ -z "${OUTBOX_REPLICA_URL:-}" ] || [ -z "${OUTBOX_BROKER_URL:-}" ]; then
  if ! server_env="$("$repo_root/scripts/servers" env 2>/dev/null)"; then
    echo "$EXAMPLE: no local servers; start them with: scripts/servers start (or run $EXAMPLE/run)" >&2
    exit 69
  fi
  eval "$server_env"
fi
work_dir="${OUTBOX_SERVERS_DIR:-$repo_root/.servers}/$EXAMPLE"
config="$work_dir/outbox.toml"
primary_base="${OUTBOX_PRIMARY_URL%/*}"
replica_base="${OUTBOX_REPLICA_URL%/*}"

# The database URL of a service (booking, billing, parking) or of the read model (read).
database_url() {
  case "$1" in
    read) echo "$replica_base/saga_${style}_read" ;;
    *) echo "$primary_base/saga_${style}_$1" ;;
  esac
}

# psql on a service's database, quiet, stopping at the first error.
sql() {
  local database="$1"
  shift
  psql -X -q -v ON_ERROR_STOP=1 "$(database_url "$database")" "$@"
}

# outbox with the example's config; the servers' OUTBOX_*_URL variables would override it.
outbox_x() {
  env -u OUTBOX_PRIMARY_URL -u OUTBOX_REPLICA_URL -u OUTBOX_REPLICA2_URL -u OUTBOX_BROKER_URL \
    OUTBOX_CONFIG="$config" "$outbox_bin" "$@"
}

require_config() {
  if [ ! -f "$config" ]; then
    echo "$EXAMPLE: not set up yet (no $config); run $EXAMPLE/run first" >&2
    exit 78
  fi
}

# Creates the example's databases (if missing) and writes the config with the servers' addresses
# and absolute migration directories.
saga_config() {
  mkdir -p "$work_dir"
  local database
  for database in booking billing parking read; do
    local server_url="$OUTBOX_PRIMARY_URL"
    [ "$database" = read ] && server_url="$OUTBOX_REPLICA_URL"
    echo "SELECT 'CREATE DATABASE saga_${style}_$database' WHERE NOT EXISTS
            (SELECT FROM pg_database WHERE datname = 'saga_${style}_$database') \gexec" |
      psql -X -q -v ON_ERROR_STOP=1 "$server_url" >/dev/null
  done
  sed -e "s|postgresql://outbox:outbox@127.0.0.1:5432|$primary_base|" \
    -e "s|postgresql://outbox:outbox@127.0.0.1:5433|$replica_base|" \
    -e "s|amqp://outbox:outbox@127.0.0.1:5672/|$OUTBOX_BROKER_URL|" \
    -e "s|^migrations = \"|migrations = \"$example_dir/|" \
    "$example_dir/outbox.toml" >"$config.tmp"
  chmod 0600 "$config.tmp"
  mv "$config.tmp" "$config"
}

# A fresh start for `run`: drops the example's databases and empties its queues (whose messages
# would name bookings and slots that no longer exist).
saga_reset() {
  local database
  for database in booking billing parking read; do
    local server_url="$OUTBOX_PRIMARY_URL"
    [ "$database" = read ] && server_url="$OUTBOX_REPLICA_URL"
    # FORCE refuses while a session of a daemon just stopped is still ending (the server sees no
    # role for it for a moment): tried again for a few seconds, then its error is shown.
    local attempt error
    for attempt in $(seq 20); do
      error=$(psql -X -q -v ON_ERROR_STOP=1 "$server_url" -c "DROP DATABASE IF EXISTS saga_${style}_$database WITH (FORCE)" 2>&1 >/dev/null) && break
      [ "$attempt" -lt 20 ] || { echo "$error" >&2; return 1; }
      sleep 0.25
    done
  done
  local queue
  [ -n "${OUTBOX_RABBITMQCTL:-}" ] || return 0
  for queue in outbox.consumer.booking outbox.consumer.billing outbox.consumer.parking outbox.replica.main; do
    "$OUTBOX_RABBITMQCTL" purge_queue "$queue" >/dev/null 2>&1 || true
  done
}

# The daemons run in the background; their logs and pid files go to the work dir.
start_daemon() {
  local name="$1"
  shift
  local pid_file="$work_dir/$name.pid"
  if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    return
  fi
  printf '+ outbox %s &\n' "$*" >&2
  # Not through outbox_x: $! must be the daemon's own pid (env execs outbox).
  env -u OUTBOX_PRIMARY_URL -u OUTBOX_REPLICA_URL -u OUTBOX_REPLICA2_URL -u OUTBOX_BROKER_URL \
    OUTBOX_CONFIG="$config" "$outbox_bin" "$@" >>"$work_dir/$name.log" 2>&1 &
  echo $! >"$pid_file"
}
stop_daemon() {
  local pid_file="$work_dir/$1.pid"
  [ -f "$pid_file" ] || return 0
  local pid
  pid="$(cat "$pid_file")"
  printf '+ stop %s (pid %s)\n' "$1" "$pid" >&2
  if kill "$pid" 2>/dev/null; then
    local i
    for i in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  rm -f "$pid_file"
}
daemons() { echo relay-booking relay-billing relay-parking consume-booking consume-billing consume-parking replicate; }
start_service_daemons() {
  local service
  for service in booking billing parking; do
    start_daemon "relay-$service" relay --service "$service"
    start_daemon "consume-$service" consume --service "$service"
  done
  start_daemon replicate replicate
}
stop_all_daemons() {
  local name
  for name in $(daemons); do stop_daemon "$name"; done
}

# Polls `sql DATABASE -tAc QUERY` until it prints EXPECTED (60 s at most); on time out shows the
# daemons' logs and fails.
wait_until() {
  local what="$1" database="$2" query="$3" expected="$4" got=""
  local i
  for i in $(seq 300); do
    got="$(sql "$database" -tAc "$query" 2>/dev/null || true)"
    [ "$got" = "$expected" ] && return 0
    sleep 0.2
  done
  echo "$EXAMPLE: $what did not happen within 60 s (got '$got', expected '$expected'); the daemons' logs:" >&2
  local name
  for name in $(daemons); do
    [ -f "$work_dir/$name.log" ] && tail -n 5 "$work_dir/$name.log" | sed "s/^/$name: /" >&2
  done
  return 1
}

say() { printf '\n== %s\n' "$*"; }

slots() {
  local from="${1:-replica}"
  outbox_x parking_slot_list --from "$from"
}
