# Londiste 3 (Skytools) for bench/peers/run, which sources this file: parking_slots replicated from
# the database londiste_primary on the primary server to londiste_replica on the replica server,
# database to database, with Londiste's and pgqd's default settings (pgqd ticks every second, or
# every 500 events; an idle worker sleeps loop_delay = 1 s). Uses run's $servers, $events, $rate,
# $seconds, $results, $PRIMARY_PORT, $REPLICA_PORT, peer_url and superuser_sql.

londiste_dir=$servers/londiste

# A libpq connection string for a Londiste or pgqd configuration file.
londiste_connstr() { echo "host=127.0.0.1 port=$1 user=peers password=peers${2:+ dbname=$2}"; }
lsql() { psql "$(peer_url "$1" "$2")" -qtAX -v ON_ERROR_STOP=1 -c "$3"; }

londiste_setup() {
  mkdir -p "$londiste_dir"
  superuser_sql "$PRIMARY_PORT" "CREATE DATABASE londiste_primary OWNER peers" >/dev/null
  superuser_sql "$REPLICA_PORT" "CREATE DATABASE londiste_replica OWNER peers" >/dev/null
  local table="CREATE TABLE parking_slots (uuid uuid PRIMARY KEY, name text NOT NULL,
                 status text NOT NULL DEFAULT 'available', version bigint NOT NULL DEFAULT 1"
  lsql "$PRIMARY_PORT" londiste_primary "$table)"
  # The replica's copy has one more column, for the measurement only: when each row was applied
  # (Londiste inserts the replicated columns, so the default fills it in).
  lsql "$REPLICA_PORT" londiste_replica "$table, applied_at timestamptz DEFAULT clock_timestamp())"
  local node
  for node in primary replica; do
    local port=$PRIMARY_PORT
    [ "$node" = primary ] || port=$REPLICA_PORT
    cat >"$londiste_dir/$node.ini" <<EOF
[londiste]
job_name = londiste_$node
db = $(londiste_connstr "$port" "londiste_$node")
queue_name = parking
logfile = $londiste_dir/$node.log
pidfile = $londiste_dir/$node.pid
EOF
    # pgqd serves the databases of one server: one per server (the ticker works on the primary).
    cat >"$londiste_dir/pgqd-$node.ini" <<EOF
[pgqd]
base_connstr = $(londiste_connstr "$port")
initial_database = postgres
database_list = londiste_$node
logfile = $londiste_dir/pgqd-$node.log
pidfile = $londiste_dir/pgqd-$node.pid
EOF
  done
  local primary_db replica_db
  primary_db=$(londiste_connstr "$PRIMARY_PORT" londiste_primary)
  replica_db=$(londiste_connstr "$REPLICA_PORT" londiste_replica)
  londiste -q "$londiste_dir/primary.ini" create-root primary "$primary_db"
  londiste -q "$londiste_dir/replica.ini" create-leaf replica "$replica_db" --provider="$primary_db"
  londiste_start_daemons
  londiste -d "$londiste_dir/replica.ini" worker
  londiste -q "$londiste_dir/primary.ini" add-table public.parking_slots
  londiste -q "$londiste_dir/replica.ini" add-table public.parking_slots
  timeout 120 londiste -q "$londiste_dir/replica.ini" wait-sync
}

# Stops a daemon by the pid in its pidfile, and waits until it is gone.
londiste_stop() {
  local pidfile=$londiste_dir/$1.pid pid deadline=$((SECONDS + 30))
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { kill -9 "$pid" 2>/dev/null || true; break; }
    sleep 0.05
  done
  rm -f "$pidfile"
}

# Polls (every 5 ms, on one connection) until the replica holds the row UUID, then prints the time.
# Londiste applies a tick's batch in one transaction, so the last row inserted comes with its batch.
# Debian's python3 (the one Londiste runs on) has psycopg2; a python3 earlier on PATH may not.
londiste_wait_row() {
  /usr/bin/python3 - "$(londiste_connstr "$REPLICA_PORT" londiste_replica)" "$1" <<'PY'
import sys, time, psycopg2
connection = psycopg2.connect(sys.argv[1])
connection.autocommit = True
cursor = connection.cursor()
deadline = time.time() + 600
while time.time() < deadline:
    cursor.execute("SELECT 1 FROM parking_slots WHERE uuid = %s", (sys.argv[2],))
    if cursor.fetchone():
        print(f"{time.time():.6f}")
        sys.exit(0)
    time.sleep(0.005)
sys.exit("londiste: the last row did not reach the replica in 10 minutes")
PY
}

# Londiste's daemons: both pgqd and the root's worker (the replica's worker is started by each step).
londiste_start_daemons() {
  pgqd -d "$londiste_dir/pgqd-primary.ini"
  pgqd -d "$londiste_dir/pgqd-replica.ini"
  londiste -d "$londiste_dir/primary.ini" worker
}
londiste_stop_daemons() {
  local daemon
  for daemon in replica primary pgqd-primary pgqd-replica; do londiste_stop "$daemon"; done
}

# The same rows as bench/bulk, committed 1,000 per transaction while the replica's worker is
# stopped (pgqd keeps ticking); then the worker starts and the clock runs until the last row is on
# the replica: the same "committed backlog -> applied" as bench/bulk times for outbox. A later
# round starts from empty tables, as each bench/bulk does: both sides are emptied directly with
# session_replication_role = replica, so that Londiste's triggers neither queue the TRUNCATE on
# the primary nor refuse it on the replica (every event of the round before has been applied).
londiste_bulk() {
  londiste_stop replica
  lsql "$PRIMARY_PORT" londiste_primary "SET session_replication_role = replica; TRUNCATE parking_slots"
  lsql "$REPLICA_PORT" londiste_replica "SET session_replication_role = replica; TRUNCATE parking_slots"
  lsql "$PRIMARY_PORT" londiste_primary "
    DO \$\$
    BEGIN
      FOR batch_start IN 1..$events BY 1000 LOOP
        INSERT INTO parking_slots (uuid, name, status)
        SELECT gen_random_uuid(), 'Parking slot ' || g || ' level 2 north wing', 'available'
        FROM generate_series(batch_start, least(batch_start + 999, $events)) g;
        COMMIT;
      END LOOP;
    END
    \$\$"
  local last
  last=$(lsql "$PRIMARY_PORT" londiste_primary "SELECT uuid FROM parking_slots WHERE name = 'Parking slot $events level 2 north wing'")
  # Every event is in a tick before the consumer starts, as every outbox row is committed.
  lsql "$PRIMARY_PORT" londiste_primary "SELECT pgq.ticker('parking')" >/dev/null
  local start end
  start=$(now)
  londiste -d "$londiste_dir/replica.ini" worker
  end=$(londiste_wait_row "$last")
  local rows
  rows=$(lsql "$REPLICA_PORT" londiste_replica "SELECT count(*) FROM parking_slots")
  [ "$rows" = "$events" ] || { echo "londiste bulk: $rows of $events rows on the replica" >&2; return 1; }
  python3 -c "print(f'londiste bulk: $events rows in {$end - $start:.2f} s')"
  echo "londiste_bulk_seconds $(python3 -c "print(f'{$end - $start:.3f}')")" >>"$results/figures"
}

# RATE single-row inserts a second, RATE x SECONDS in all (pgbench, open loop, 4 clients like
# replicate_bench write), each row's name carrying the
# insert's clock_timestamp(); latency is the replica's applied_at minus it.
londiste_end_to_end() {
  lsql "$PRIMARY_PORT" londiste_primary "TRUNCATE parking_slots"
  local deadline=$((SECONDS + 120))
  until [ "$(lsql "$REPLICA_PORT" londiste_replica "SELECT count(*) FROM parking_slots")" = 0 ]; do
    [ $SECONDS -lt $deadline ] || { echo "londiste: the TRUNCATE did not reach the replica" >&2; return 1; }
    sleep 0.1
  done
  cat >"$londiste_dir/insert.sql" <<'EOF'
INSERT INTO parking_slots (uuid, name, status)
VALUES (gen_random_uuid(), 'Parking slot level 2 north wing @' || extract(epoch FROM clock_timestamp()), 'available');
EOF
  PGPASSWORD=peers pgbench -n -h 127.0.0.1 -p "$PRIMARY_PORT" -U peers -c 4 -j 2 -R "$rate" -t $((rate * seconds / 4)) \
    -f "$londiste_dir/insert.sql" londiste_primary >"$londiste_dir/pgbench.out" 2>&1
  local written
  written=$(lsql "$PRIMARY_PORT" londiste_primary "SELECT count(*) FROM parking_slots")
  deadline=$((SECONDS + 120))
  until [ "$(lsql "$REPLICA_PORT" londiste_replica "SELECT count(*) FROM parking_slots")" = "$written" ]; do
    [ $SECONDS -lt $deadline ] || { echo "londiste: not every row reached the replica" >&2; return 1; }
    sleep 0.2
  done
  local result
  result=$(lsql "$REPLICA_PORT" londiste_replica "
    SELECT round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY lag))::int || ' ' ||
           round(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY lag))::int || ' ' || count(*)
    FROM (SELECT extract(epoch FROM applied_at) - split_part(name, '@', 2)::float8 AS lag FROM parking_slots) rows")
  set -- $result
  echo "londiste end-to-end: $3 rows at $rate/s for ${seconds}s: p50 $1 ms, p99 $2 ms"
  echo "londiste_p50_ms $1" >>"$results/figures"
  echo "londiste_p99_ms $2" >>"$results/figures"
}

# After the bulk rounds (londiste_setup, then londiste_bulk once per round, its daemons stopped
# between rounds with londiste_stop_daemons): the end-to-end step, then everything is stopped.
londiste_finish() {
  londiste_end_to_end
  londiste_stop_daemons
  cp "$londiste_dir"/*.log "$londiste_dir/pgbench.out" "$results/"
}
