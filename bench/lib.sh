# Shared by the bench/* scripts: build, throwaway servers, process measurements.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${OUTBOX_BUILD_DIR:-$repo/build}

bench_setup() {
  # OUTBOX_BENCH_PREBUILT=1: use the build in OUTBOX_BUILD_DIR as it is (another build type, or a
  # worktree whose build must not be reconfigured); say so beside the figures.
  if [ -z "${OUTBOX_BENCH_PREBUILT:-}" ]; then
    cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$build" -j2 --target outbox relay_bench >/dev/null
  fi
  if [ -n "${OUTBOX_BENCH_SERVERS:-}" ]; then
    # bench/peers/run: servers started once and shared by every step (and by the peers), which
    # resets their databases and queues between steps and stops them at the end.
    bench_dir=$OUTBOX_BENCH_SERVERS
  else
    bench_start_servers
  fi
  trap bench_teardown EXIT
  eval "$("$repo/scripts/servers" --dir "$bench_dir" env)"
  # OUTBOX_BENCH_CONFIG: a config file for every outbox command of the bench (bench/peers/run
  # gives one with [relay] pack, which migrate, relay and replicate must all see).
  export OUTBOX_CONFIG=${OUTBOX_BENCH_CONFIG:-/dev/null}
  outbox=$build/outbox
  "$outbox" migrate >/dev/null
}

# Throwaway servers in a new $bench_dir, stopped and removed at exit. The teardown is set first:
# the servers that did start are stopped when another did not, and scripts/servers says why.
bench_start_servers() {
  bench_dir=$(mktemp -d /tmp/outbox-bench.XXXXXX)
  trap bench_teardown EXIT
  bench_servers start
}

# scripts/servers ARGS... on $bench_dir; when it fails, its reason and exit 69.
bench_servers() {
  local output
  if ! output=$("$repo/scripts/servers" --dir "$bench_dir" "$@" 2>&1); then
    echo "bench: scripts/servers $* failed: $output" >&2
    exit 69
  fi
}

bench_teardown() {
  [ -n "${daemon_pid:-}" ] && kill -9 "$daemon_pid" 2>/dev/null || true
  [ -z "${OUTBOX_BENCH_SERVERS:-}" ] || return 0
  "$repo/scripts/servers" --dir "$bench_dir" stop >/dev/null 2>&1 || true
  rm -rf "$bench_dir"
}

# `outbox migrate` declares the replica queue outbox.replica.main, bound with "#": the relay
# benchmarks delete it, so that each message goes to the one durable queue being measured, as in
# the ceiling, and no backlog left by an earlier step slows the broker down.
drop_replica_queue() { "$OUTBOX_RABBITMQCTL" delete_queue outbox.replica.main >/dev/null; }
drop_queue() { "$OUTBOX_RABBITMQCTL" delete_queue "$1" >/dev/null; }

sql() { psql "$OUTBOX_PRIMARY_URL" -qtAX -c "$1"; }

# CPU seconds (user + system) of a process.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
# Peak resident set size in MB.
peak_rss_mb() { awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
now() { date +%s.%N; }

# CPU seconds of a process and all its descendants, including the children they have already
# reaped (a PostgreSQL backend that ended is in its postmaster's cutime).
tree_cpu_seconds() {
  python3 - "$1" <<'PY'
import os, sys
hz = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        children = []
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children += f.read().split()
    except OSError:
        return 0
    return total + sum(cpu(c) for c in children)
print(f"{cpu(int(sys.argv[1])) / hz:.2f}")
PY
}
# The whole machine's busy share over a span: machine_cpu_mark at its start (prints a mark),
# machine_busy_percent MARK at its end prints the percentage, e.g. "95". Busy is user, nice,
# system, irq and softirq time, against those and idle and iowait.
machine_cpu_mark() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat; }
machine_busy_percent() {
  local busy0 idle0
  read -r busy0 idle0 <<<"$1"
  awk -v busy0="$busy0" -v idle0="$idle0" \
    '/^cpu / { busy = $2 + $3 + $4 + $7 + $8 - busy0; idle = $5 + $6 - idle0; printf "%.0f", 100 * busy / (busy + idle) }' /proc/stat
}
# The servers' root processes in a scripts/servers directory: the primary's and the replica's
# postmasters and the RabbitMQ node.
server_pids() {
  local dir=$1
  echo "postgres-primary $(head -1 "$dir/primary/postmaster.pid" 2>/dev/null)"
  echo "postgres-replica $(head -1 "$dir/replica/postmaster.pid" 2>/dev/null)"
  echo "rabbitmq $(cat "$dir/rabbitmq/server.pid" 2>/dev/null)"
}
# Each server's CPU over a span of a benchmark: server_cpu_mark at its start, server_cpu_since
# [SUFFIX] at its end prints one line per server ("  rabbitmq         CPU   1.43 s" and SUFFIX).
declare -A server_cpu_marked
server_cpu_mark() {
  local server pid
  while read -r server pid; do server_cpu_marked[$server]=$(tree_cpu_seconds "$pid"); done < <(server_pids "$bench_dir")
}
server_cpu_since() {
  local server pid
  while read -r server pid; do
    printf '  %-16s CPU %6s s%s\n' "$server" \
      "$(python3 -c "print(f'{$(tree_cpu_seconds "$pid") - ${server_cpu_marked[$server]}:.2f}')")" "${1:-}"
  done < <(server_pids "$bench_dir")
}
