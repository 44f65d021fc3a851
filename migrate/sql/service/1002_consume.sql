-- The handler path of `outbox consume` (replicate/apply.hpp): one call per batch, so a batch costs
-- one round trip whatever its size. `outbox consume` calls it inside its batch transaction, which
-- holds the consumer's apply lock; a handler that raises fails the call, and the engine's
-- isolation (savepoints, halving, max_attempts) then parks exactly the failing event.
--
--   batch           the events in delivery order (replicate/envelope.hpp: handler_batch_parameter):
--                   m >= 0 the handler's index in `handlers`, -1 a relay heartbeat, -2 the entry
--                   the applied position moves to, -3 an event no handler takes
--   consumer        the consumer's name (outbox_failed_events.replica, the position's and
--                   heartbeat's row)
--   ignore_blocked  `outbox failed retry`: run even though the aggregate has failed events
--   max_clock_skew_ms  replicate.max_clock_skew: a created_at further ahead moves nothing
--   handlers        the handler functions as regprocedure texts ("booking.on_reserved(jsonb)"),
--                   resolved here again so that a handler dropped since the daemon started is an
--                   error of the database (42883: the engine retries with backoff), not of the event
-- Returns the counts of the table path's statement (replicate/apply_sql.cpp), plus `unhandled`.
CREATE OR REPLACE FUNCTION outbox_handle_batch(
    batch jsonb, consumer text, ignore_blocked boolean, max_clock_skew_ms bigint, handlers jsonb,
    OUT handled bigint, OUT stale bigint, OUT duplicate bigint, OUT heartbeats bigint, OUT blocked text,
    OUT future bigint, OUT future_ahead double precision, OUT unhandled bigint)
LANGUAGE plpgsql AS $$
DECLARE
    latest constant timestamptz := clock_timestamp() + max_clock_skew_ms * interval '1 millisecond';
    calls text[] := '{}';
    handler text;
    call text;
    x record;
    created timestamptz;
    is_future boolean;
    blocked_at int[] := '{}';
    has_position boolean := false;
    -- Usually no aggregate of this consumer has failed events: then no event needs the probe.
    check_blocked constant boolean := NOT ignore_blocked
        AND EXISTS (SELECT 1 FROM outbox_failed_events f WHERE f.replica = consumer);
    position_id uuid;
    position_value bigint;
    position_created timestamptz;
BEGIN
    handled := 0; stale := 0; duplicate := 0; heartbeats := 0; future := 0; future_ahead := 0; unhandled := 0;
    -- Each handler's call, its names quoted by format(%I) from the catalog: never pasted from text.
    FOR handler IN SELECT value FROM jsonb_array_elements_text(handlers) LOOP
        SELECT format('SELECT %I.%I($1)', n.nspname, p.proname) INTO call
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.oid = to_regprocedure(handler);
        IF call IS NULL THEN
            RAISE EXCEPTION 'outbox consume: handler function % does not exist', handler USING ERRCODE = '42883';
        END IF;
        calls := calls || call;
    END LOOP;

    FOR x IN SELECT * FROM jsonb_to_recordset(batch) AS r(i int, id uuid, at text, ag text, v bigint, m int, pos bigint,
                                                           ts bigint, c text, rt text, e jsonb, p jsonb)
             ORDER BY r.i LOOP
        created := timestamptz 'epoch' + x.ts * interval '1 microsecond';
        is_future := coalesce(created > latest, false);
        IF is_future AND x.m <> -2 THEN
            future := future + 1;
            future_ahead := greatest(future_ahead, extract(epoch FROM created - clock_timestamp())::float8);
        END IF;
        IF NOT is_future THEN
            has_position := true;
            position_id := x.id;
            position_value := x.pos;
            position_created := created;
        END IF;
        CONTINUE WHEN x.m = -2;

        IF x.m = -1 THEN
            IF NOT is_future THEN
                INSERT INTO outbox_heartbeat AS h (replica, relay, created_at, applied_at)
                VALUES (consumer, x.p->>'relay', created, clock_timestamp())
                ON CONFLICT (replica) DO UPDATE SET
                    relay = CASE WHEN h.created_at < EXCLUDED.created_at OR h.created_at > latest
                                 THEN EXCLUDED.relay ELSE h.relay END,
                    created_at = CASE WHEN h.created_at < EXCLUDED.created_at OR h.created_at > latest
                                      THEN EXCLUDED.created_at ELSE h.created_at END,
                    applied_at = EXCLUDED.applied_at;
            END IF;
            heartbeats := heartbeats + 1;
            CONTINUE;
        END IF;

        -- Order per aggregate: behind a parked event of its aggregate, an event waits.
        IF check_blocked AND EXISTS (SELECT 1 FROM outbox_failed_events f
                                          WHERE f.replica = consumer AND f.aggregate_type = x.at AND f.aggregate_id = x.ag) THEN
            blocked_at := blocked_at || x.i;
            CONTINUE;
        END IF;

        -- The inbox: an event id handled before (or earlier in this batch) is a no-op.
        INSERT INTO outbox_applied_events (event_id, aggregate_type, aggregate_id, aggregate_version, outbox_position,
                                           created_at, effective)
        VALUES (x.id, x.at, x.ag, x.v, x.pos, created, x.m >= 0)
        ON CONFLICT (event_id) DO NOTHING;
        IF NOT FOUND THEN
            duplicate := duplicate + 1;
            CONTINUE;
        END IF;
        IF x.m < 0 THEN
            unhandled := unhandled + 1;
            CONTINUE;
        END IF;

        -- What outbox_emit and outbox_reply read, for this event only (transaction-local, reset after).
        PERFORM set_config('outbox.correlation_id', x.c, true), set_config('outbox.causation_id', x.id::text, true),
                set_config('outbox.reply_to', coalesce(x.rt, ''), true);
        EXECUTE calls[x.m + 1] USING x.e;
        PERFORM set_config('outbox.correlation_id', '', true), set_config('outbox.causation_id', '', true),
                set_config('outbox.reply_to', '', true);
        handled := handled + 1;
    END LOOP;

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
    blocked := blocked_at::text;
END
$$;
