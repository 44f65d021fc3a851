# pg-transactional-outbox (npm) for bench/peers/run, which sources this file: PEER_EVENTS parking
# messages committed in its own outbox table (database pgto on the primary server), then its
# replication listener started with an amqplib confirm channel; the clock runs from the start of
# node until the durable queue holds every message. Uses run's $servers, $build, $peers,
# $peers_dir, $peer_events, $results, $PRIMARY_PORT, peer_url and superuser_sql.

pgto_run() {
  local dir=$peers/pg-transactional-outbox log=$results/pg-transactional-outbox-relay.log queue=pgto.events
  superuser_sql "$PRIMARY_PORT" "CREATE DATABASE pgto OWNER peers" >/dev/null
  PGTO_URL=$(peer_url "$PRIMARY_PORT" pgto)
  export NODE_PATH=$peers_dir/node_modules PGTO_URL BROKER_URL=$OUTBOX_BROKER_URL QUEUE=$queue
  EVENTS=$peer_events node "$dir/setup-db.js"
  local start end deadline=$((SECONDS + 60))
  start=$(now)
  node "$dir/relay.js" >"$log" 2>&1 &
  node_pid=$!
  # The queue exists once the relay has declared it (it prints "ready").
  until grep -q '^ready' "$log"; do
    kill -0 "$node_pid" 2>/dev/null || { cat "$log" >&2; return 1; }
    [ $SECONDS -lt $deadline ] || { echo "pg-transactional-outbox: the relay did not start in 60 s" >&2; return 1; }
    sleep 0.01
  done
  "$build/bench/relay_bench" wait-depth "$OUTBOX_BROKER_URL" "$queue" "$peer_events" ||
    { echo "pg-transactional-outbox: the queue did not reach $peer_events messages in 10 minutes" >&2; return 1; }
  end=$(now)
  local rss
  rss=$(peak_rss_mb "$node_pid")
  kill -TERM "$node_pid"
  wait "$node_pid" || true
  node_pid=
  local rate
  rate=$(python3 -c "print(f'{$peer_events / ($end - $start):.0f}')")
  echo "pg-transactional-outbox: $peer_events messages in $(python3 -c "print(f'{$end - $start:.2f}')") s," \
    "$rate msg/s, node peak RSS $rss MB"
  echo "pgto_drain_rate $rate" >>"$results/figures"
  echo "pgto_rss_mb $rss" >>"$results/figures"
}
