-- The orchestrator: the command a user runs (booking.create_booking), the reply handler that
-- `outbox consume` calls (booking.on_reply) and the deadline it runs every second
-- (booking.expire_sagas). Every function changes state and sends its next command in one
-- transaction, and each is idempotent: a reply that does not fit the saga's current step (a
-- duplicate, or a late answer after the saga moved on) changes nothing.

-- Moves a saga to `next_step` and, when `command` is given, sends it to a participant with
-- reply_to "reply.booking". A terminal step also ends the booking.
CREATE FUNCTION booking.advance(saga_id uuid, next_step text, command text DEFAULT NULL, reason text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    saga booking.sagas;
    terminal boolean := next_step IN ('completed', 'failed');
BEGIN
    UPDATE booking.sagas s
       SET step = next_step,
           version = s.version + (command IS NOT NULL)::int,
           payment_requested = s.payment_requested OR command IS NOT DISTINCT FROM 'billing.authorize_payment',
           deadline_at = CASE WHEN terminal THEN NULL
                              ELSE clock_timestamp() + (SELECT step_timeout FROM booking.settings) END,
           ended_at = CASE WHEN terminal THEN clock_timestamp() END,
           reason = coalesce(advance.reason, s.reason)
     WHERE s.booking_id = saga_id
    RETURNING * INTO saga;
    IF terminal THEN
        UPDATE booking.bookings SET status = next_step, updated_at = clock_timestamp() WHERE id = saga_id;
    END IF;
    IF command IS NOT NULL THEN
        PERFORM outbox_emit(command, 'booking', saga_id::text, saga.version,
                            jsonb_build_object('booking_id', saga_id,
                                               'slot_uuid', (SELECT slot_uuid FROM booking.bookings WHERE id = saga_id),
                                               'amount', saga.amount),
                            'reply.booking');
    END IF;
END
$$;

-- The user's command: books `slot`. Returns the booking id. Idempotent on `booking_id`: a client
-- that retries with the same id creates one booking and one saga.
CREATE FUNCTION booking.create_booking(slot uuid, booking_id uuid DEFAULT gen_random_uuid(), amount numeric DEFAULT 100)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    first_command uuid;
BEGIN
    INSERT INTO booking.bookings (id, slot_uuid) VALUES (booking_id, slot) ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN booking_id;
    END IF;
    INSERT INTO booking.sagas (booking_id, step, amount, version, deadline_at)
    VALUES (booking_id, 'blocking', amount, 1, clock_timestamp() + (SELECT step_timeout FROM booking.settings));
    -- Outside a handler, the command's correlation id is its own event id: the saga's id on the wire.
    first_command := outbox_emit('parking.block', 'booking', booking_id::text, 1,
                                 jsonb_build_object('booking_id', booking_id, 'slot_uuid', slot, 'amount', amount),
                                 'reply.booking');
    UPDATE booking.sagas s SET correlation_id = first_command::text WHERE s.booking_id = create_booking.booking_id;
    RETURN booking_id;
END
$$;

-- The handler of every reply (event types parking.* and billing.* on the queue bound to
-- "reply.booking"). The envelope's payload names the booking.
CREATE FUNCTION booking.on_reply(envelope jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    reply text := envelope->>'event_type';
    saga booking.sagas;
BEGIN
    SELECT * INTO saga FROM booking.sagas
     WHERE booking_id = (envelope->'payload'->>'booking_id')::uuid FOR UPDATE;
    IF NOT FOUND THEN
        RAISE WARNING 'booking.on_reply: % for no known booking (%), ignored', reply, envelope->'payload'->>'booking_id';
        RETURN;
    END IF;
    CASE
        WHEN saga.step = 'blocking' AND reply = 'parking.blocked' THEN
            PERFORM booking.advance(saga.booking_id, 'authorizing', 'billing.authorize_payment');
        WHEN saga.step = 'blocking' AND reply = 'parking.unavailable' THEN
            -- Nothing was blocked for this booking, so there is nothing to undo: the slot belongs
            -- to whoever holds it.
            PERFORM booking.advance(saga.booking_id, 'failed', reason => 'the slot is not available');
        WHEN saga.step = 'authorizing' AND reply = 'billing.authorized' THEN
            PERFORM booking.advance(saga.booking_id, 'reserving', 'parking.reserve');
        WHEN saga.step = 'authorizing' AND reply = 'billing.declined' THEN
            PERFORM booking.advance(saga.booking_id, 'unblocking', 'parking.unblock', 'the payment was declined');
        WHEN saga.step = 'reserving' AND reply = 'parking.reserved' THEN
            PERFORM booking.advance(saga.booking_id, 'completed');
        WHEN saga.step = 'reserving' AND reply = 'parking.reserve_failed' THEN
            PERFORM booking.advance(saga.booking_id, 'unblocking', 'parking.unblock', 'the slot could not be reserved');
        WHEN saga.step = 'unblocking' AND reply = 'parking.unblocked' THEN
            IF saga.payment_requested THEN
                PERFORM booking.advance(saga.booking_id, 'refunding', 'billing.refund');
            ELSE
                PERFORM booking.advance(saga.booking_id, 'failed');
            END IF;
        WHEN saga.step = 'refunding' AND reply = 'billing.refunded' THEN
            PERFORM booking.advance(saga.booking_id, 'failed');
        ELSE
            NULL;  -- a duplicate or a late reply: the saga has moved on
    END CASE;
END
$$;

-- The deadline (every second): a forward step without a reply in time is compensated (the slot
-- is unblocked if this booking blocked it, the payment refunded if it was requested); a
-- compensating step without a reply asks again (the participants answer a repeated command as
-- they did the first time). Returns how many sagas it moved.
CREATE FUNCTION booking.expire_sagas() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    saga booking.sagas;
    moved integer := 0;
BEGIN
    FOR saga IN SELECT * FROM booking.sagas
                 WHERE step NOT IN ('completed', 'failed') AND deadline_at < clock_timestamp()
                 ORDER BY deadline_at LIMIT 500 FOR UPDATE SKIP LOCKED LOOP
        -- Outside a handler: the commands carry the saga's correlation id only if we say so.
        PERFORM set_config('outbox.correlation_id', coalesce(saga.correlation_id, ''), true);
        CASE saga.step
            WHEN 'unblocking' THEN
                PERFORM booking.advance(saga.booking_id, 'unblocking', 'parking.unblock');
            WHEN 'refunding' THEN
                PERFORM booking.advance(saga.booking_id, 'refunding', 'billing.refund');
            ELSE
                PERFORM booking.advance(saga.booking_id, 'unblocking', 'parking.unblock',
                                        'no reply while ' || saga.step || ' within the step timeout');
        END CASE;
        moved := moved + 1;
    END LOOP;
    PERFORM set_config('outbox.correlation_id', '', true);
    RETURN moved;
END
$$;
