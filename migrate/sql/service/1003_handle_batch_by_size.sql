-- outbox_handle_batch (1002) by the batch's size. 1002 runs a batch as a plpgsql loop: per event
-- an inbox INSERT, two PERFORMs of set_config and a dynamic EXECUTE of the handler (parsed and
-- planned each time). That is the cheapest for the one or few events a batch holds at low rates
-- (about 0.4 ms a call here), where the latency of every hop of a saga is made, but at 500 events
-- a batch it cost a no-op handler's consumer about twice what the set-based form below costs
-- (bench/saga's drain ratio was 0.63 against the target 0.8). So 1002's function stays, renamed
-- outbox_handle_batch_each, the set-based one is outbox_handle_batch_set, and outbox_handle_batch
-- (the engine's one call per batch, replicate/apply.cpp) takes the one that suits the batch. Both
-- keep the same contract (tests/integration/service_test.cpp runs it against both).
--
-- outbox_handle_batch_set is a fixed number of statements, however large the batch:
--   1. the handlers' calls, resolved and quoted from the catalog in one query;
--   2. one statement that inserts every event that is not blocked into the inbox and returns, in
--      delivery order, what the fresh handled events need, with the counts, the position and the
--      times from the future;
--   3. one dynamic SELECT over those arrays that, row by row, sets the event's correlation,
--      causation and reply-to and then calls its handler (a CASE over the handler's index, so
--      only that handler runs), kept to an unnest with no join or sort so that it plans quickly;
--   4. the heartbeats and the applied position.
-- Order: unnest(array, ...) returns the elements in array order, and the arrays are aggregated
-- ORDER BY i; a row's output expressions are evaluated left to right, so an event's settings are
-- in place when its handler runs. A handler that raises fails the whole call, as in 1002: the
-- engine's isolation then parks exactly that event.
ALTER FUNCTION outbox_handle_batch(jsonb, text, boolean, bigint, jsonb) RENAME TO outbox_handle_batch_each;

CREATE FUNCTION outbox_handle_batch_set(
    batch jsonb, consumer text, ignore_blocked boolean, max_clock_skew_ms bigint, handlers jsonb,
    OUT handled bigint, OUT stale bigint, OUT duplicate bigint, OUT heartbeats bigint, OUT blocked text,
    OUT future bigint, OUT future_ahead double precision, OUT unhandled bigint)
LANGUAGE plpgsql AS $$
DECLARE
    latest constant timestamptz := clock_timestamp() + max_clock_skew_ms * interval '1 millisecond';
    dispatch text;
    missing text;
    beat record;
    candidates bigint;
    fresh bigint;
    position_id uuid;
    position_value bigint;
    position_created timestamptz;
    has_position boolean;
    fresh_m int[];
    fresh_c text[];
    fresh_id text[];
    fresh_rt text[];
    fresh_e jsonb[];
    -- Usually no aggregate of this consumer has failed events: then no event needs the probe.
    check_blocked constant boolean := NOT ignore_blocked
        AND EXISTS (SELECT 1 FROM outbox_failed_events f WHERE f.replica = consumer);
BEGIN
    stale := 0;
    -- 1. Each handler's call, its names quoted by format(%I) from the catalog: never pasted from
    -- text. A handler dropped since the daemon started is an error of the database (42883: the
    -- engine retries with backoff), not of the event.
    SELECT string_agg(format(' WHEN %s THEN %I.%I(r.e) IS NULL', h.n - 1, n.nspname, p.proname), '' ORDER BY h.n),
           min(h.name) FILTER (WHERE p.oid IS NULL)
    INTO dispatch, missing
    FROM jsonb_array_elements_text(handlers) WITH ORDINALITY AS h(name, n)
    LEFT JOIN pg_proc p ON p.oid = to_regprocedure(h.name)
    LEFT JOIN pg_namespace n ON n.oid = p.pronamespace;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'outbox consume: handler function % does not exist', missing USING ERRCODE = '42883';
    END IF;

    -- 2. The inbox. Order per aggregate: behind a parked event of its aggregate, an event waits
    -- (blocked); of one id twice in a batch, the first counts and the second is a duplicate.
    WITH input AS (
        SELECT r.i, r.id, r.at, r.ag, r.v, r.m, r.pos, r.c, r.rt, r.e,
               timestamptz 'epoch' + r.ts * interval '1 microsecond' AS created
        FROM jsonb_to_recordset(batch) AS r(i int, id uuid, at text, ag text, v bigint, m int, pos bigint, ts bigint,
                                            c text, rt text, e jsonb)
    ), events AS (
        SELECT * FROM input x WHERE x.m >= 0 OR x.m = -3
    ), waiting AS (
        SELECT x.i FROM events x
        WHERE check_blocked AND EXISTS (SELECT 1 FROM outbox_failed_events f
                                        WHERE f.replica = consumer AND f.aggregate_type = x.at AND f.aggregate_id = x.ag)
    ), first_of_id AS (
        SELECT DISTINCT ON (x.id) x.* FROM events x WHERE x.i NOT IN (SELECT i FROM waiting) ORDER BY x.id, x.i
    ), inserted AS (
        INSERT INTO outbox_applied_events (event_id, aggregate_type, aggregate_id, aggregate_version, outbox_position,
                                           created_at, effective)
        SELECT id, at, ag, v, pos, created, m >= 0 FROM first_of_id
        ON CONFLICT (event_id) DO NOTHING
        RETURNING event_id
    ), fresh_handled AS (
        SELECT f.* FROM first_of_id f JOIN inserted n ON n.event_id = f.id WHERE f.m >= 0
    ), last_in_time AS (
        -- The applied position: the last entry whose time is not from the future.
        SELECT x.id, x.pos, x.created FROM input x WHERE NOT coalesce(x.created > latest, false) ORDER BY x.i DESC LIMIT 1
    )
    SELECT (SELECT count(*) FROM events) - (SELECT count(*) FROM waiting),
           (SELECT count(*) FROM inserted),
           (SELECT coalesce(array_agg(i ORDER BY i), '{}')::text FROM waiting),
           (SELECT count(*) FROM input WHERE m <> -2 AND created > latest),
           (SELECT coalesce(greatest(0, max(extract(epoch FROM created - clock_timestamp()))), 0)::float8
              FROM input WHERE m <> -2 AND created > latest),
           (SELECT count(*) FROM input WHERE m = -1),
           l.id, l.pos, l.created, l.id IS NOT NULL,
           h.ms, h.cs, h.ids, h.rts, h.es
    INTO candidates, fresh, blocked, future, future_ahead, heartbeats,
         position_id, position_value, position_created, has_position,
         fresh_m, fresh_c, fresh_id, fresh_rt, fresh_e
    FROM (SELECT array_agg(m ORDER BY i) AS ms, array_agg(c ORDER BY i) AS cs, array_agg(id::text ORDER BY i) AS ids,
                 array_agg(coalesce(rt, '') ORDER BY i) AS rts, array_agg(e ORDER BY i) AS es
          FROM fresh_handled) h
    LEFT JOIN last_in_time l ON true;
    handled := coalesce(cardinality(fresh_m), 0);
    unhandled := fresh - handled;
    duplicate := candidates - fresh;

    -- 3. The handlers, in delivery order; what outbox_emit and outbox_reply read is set per event
    -- (transaction-local) and cleared after the last.
    IF handled > 0 THEN
        EXECUTE 'SELECT count(*) FROM (SELECT set_config(''outbox.correlation_id'', r.c, true),'
                ' set_config(''outbox.causation_id'', r.id, true), set_config(''outbox.reply_to'', r.rt, true),'
                ' CASE r.m' || dispatch || ' END'
                ' FROM unnest($1, $2, $3, $4, $5) AS r(m, c, id, rt, e)) handled'
        USING fresh_m, fresh_c, fresh_id, fresh_rt, fresh_e;
        PERFORM set_config('outbox.correlation_id', '', true), set_config('outbox.causation_id', '', true),
                set_config('outbox.reply_to', '', true);
    END IF;

    -- 4. Heartbeats from the future (beyond max_clock_skew) move nothing.
    IF heartbeats > 0 THEN
        FOR beat IN SELECT r.p->>'relay' AS relay, timestamptz 'epoch' + r.ts * interval '1 microsecond' AS created
                    FROM jsonb_to_recordset(batch) AS r(i int, m int, ts bigint, p jsonb)
                    WHERE r.m = -1 ORDER BY r.i LOOP
            CONTINUE WHEN coalesce(beat.created > latest, false);
            INSERT INTO outbox_heartbeat AS h (replica, relay, created_at, applied_at)
            VALUES (consumer, beat.relay, beat.created, clock_timestamp())
            ON CONFLICT (replica) DO UPDATE SET
                relay = CASE WHEN h.created_at < EXCLUDED.created_at OR h.created_at > latest
                             THEN EXCLUDED.relay ELSE h.relay END,
                created_at = CASE WHEN h.created_at < EXCLUDED.created_at OR h.created_at > latest
                                  THEN EXCLUDED.created_at ELSE h.created_at END,
                applied_at = EXCLUDED.applied_at;
        END LOOP;
    END IF;

    -- The applied position, as the table path moves it (an old event's retry never moves it back).
    IF has_position THEN
        INSERT INTO outbox_applied_position AS o (replica, last_event_id, last_position, last_created_at, applied_at)
        VALUES (consumer, position_id, position_value, position_created, clock_timestamp())
        ON CONFLICT (replica) DO UPDATE SET last_event_id = EXCLUDED.last_event_id,
            last_position = EXCLUDED.last_position, last_created_at = EXCLUDED.last_created_at,
            applied_at = EXCLUDED.applied_at
        WHERE o.last_created_at IS NULL OR (EXCLUDED.last_created_at IS NULL AND NOT ignore_blocked)
            OR o.last_created_at <= EXCLUDED.last_created_at OR o.last_created_at > latest;
    END IF;
END
$$;

-- Below 16 entries the loop's per-event statements cost less than the set-based form's fixed
-- ones (planning its statements); from 16 on, the set-based form is cheaper per event.
CREATE FUNCTION outbox_handle_batch(
    batch jsonb, consumer text, ignore_blocked boolean, max_clock_skew_ms bigint, handlers jsonb,
    OUT handled bigint, OUT stale bigint, OUT duplicate bigint, OUT heartbeats bigint, OUT blocked text,
    OUT future bigint, OUT future_ahead double precision, OUT unhandled bigint)
LANGUAGE plpgsql AS $$
BEGIN
    IF jsonb_array_length(batch) < 16 THEN
        SELECT * INTO handled, stale, duplicate, heartbeats, blocked, future, future_ahead, unhandled
        FROM outbox_handle_batch_each(batch, consumer, ignore_blocked, max_clock_skew_ms, handlers);
    ELSE
        SELECT * INTO handled, stale, duplicate, heartbeats, blocked, future, future_ahead, unhandled
        FROM outbox_handle_batch_set(batch, consumer, ignore_blocked, max_clock_skew_ms, handlers);
    END IF;
END
$$;
