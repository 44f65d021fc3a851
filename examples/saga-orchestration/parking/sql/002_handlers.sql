-- The parking handlers of the orchestrated saga: parking.block, parking.reserve, parking.unblock.
-- Each answers with outbox_reply (routed to the command's reply_to, with its correlation id), in
-- the same transaction as its change. A command asked again is answered from the booking's hold
-- row, without changing anything.

-- Moves a slot from `from_status` to `to_status` when it is in `from_status`, and emits the
-- read-model event of the change. Returns whether it changed.
CREATE FUNCTION parking.change_slot(slot uuid, from_status text, to_status text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    changed public.parking_slots;
BEGIN
    UPDATE public.parking_slots SET status = to_status, version = version + 1
     WHERE uuid = slot AND status = from_status
    RETURNING * INTO changed;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- The same event type and payload as `outbox update_parking_slot` writes.
    PERFORM outbox_emit('parking.update', 'parking_slot', changed.uuid::text, changed.version,
                        jsonb_build_object('uuid', changed.uuid, 'name', changed.name,
                                           'status', changed.status, 'version', changed.version));
    RETURN true;
END
$$;

-- Sets a booking's hold (inserting it if it has none) and answers the command with `reply`.
CREATE FUNCTION parking.answer(booking uuid, slot uuid, new_state text, reply text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    hold parking.holds;
BEGIN
    INSERT INTO parking.holds AS h (booking_id, slot_uuid, state, version)
    VALUES (booking, slot, new_state, 1)
    ON CONFLICT (booking_id) DO UPDATE
       SET state = new_state, version = h.version + 1, updated_at = clock_timestamp()
    RETURNING * INTO hold;
    PERFORM outbox_reply(reply, 'parking_hold', booking::text, hold.version,
                         jsonb_build_object('booking_id', booking, 'slot_uuid', hold.slot_uuid, 'state', hold.state));
END
$$;

CREATE FUNCTION parking.on_block(envelope jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    booking uuid := (envelope->'payload'->>'booking_id')::uuid;
    slot uuid := (envelope->'payload'->>'slot_uuid')::uuid;
    hold parking.holds;
BEGIN
    SELECT * INTO hold FROM parking.holds WHERE booking_id = booking FOR UPDATE;
    IF FOUND THEN
        -- Asked before (or already given up by the saga): the same answer, no change.
        PERFORM parking.answer(booking, hold.slot_uuid, hold.state,
                               CASE WHEN hold.state IN ('blocked', 'reserved') THEN 'parking.blocked'
                                    ELSE 'parking.unavailable' END);
        RETURN;
    END IF;
    IF parking.change_slot(slot, 'available', 'blocked') THEN
        -- A hold on a slot that was available is stale: someone freed the slot by hand.
        UPDATE parking.holds SET state = 'lost', updated_at = clock_timestamp()
         WHERE slot_uuid = slot AND state IN ('blocked', 'reserved');
        PERFORM parking.answer(booking, slot, 'blocked', 'parking.blocked');
    ELSE
        -- Blocked or reserved by another booking (or no such slot): refused, and that booking's
        -- hold is left alone.
        PERFORM parking.answer(booking, slot, 'refused', 'parking.unavailable');
    END IF;
END
$$;

CREATE FUNCTION parking.on_reserve(envelope jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    booking uuid := (envelope->'payload'->>'booking_id')::uuid;
    slot uuid := (envelope->'payload'->>'slot_uuid')::uuid;
    hold parking.holds;
BEGIN
    SELECT * INTO hold FROM parking.holds WHERE booking_id = booking FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM parking.answer(booking, slot, 'failed', 'parking.reserve_failed');
    ELSIF hold.state = 'reserved' THEN
        PERFORM parking.answer(booking, hold.slot_uuid, 'reserved', 'parking.reserved');
    ELSIF hold.state = 'blocked' THEN
        -- (Nested, not AND: SQL does not promise to skip the slot change when the state differs.)
        IF parking.change_slot(hold.slot_uuid, 'blocked', 'reserved') THEN
            PERFORM parking.answer(booking, hold.slot_uuid, 'reserved', 'parking.reserved');
        ELSE
            -- The slot is no longer blocked (changed or deleted by hand): this booking holds nothing.
            PERFORM parking.answer(booking, hold.slot_uuid, 'failed', 'parking.reserve_failed');
        END IF;
    ELSE
        PERFORM parking.answer(booking, hold.slot_uuid, hold.state, 'parking.reserve_failed');
    END IF;
END
$$;

-- The compensation: frees the slot only if this booking holds it, and only from the status this
-- booking put it in; a slot another booking holds is never touched.
CREATE FUNCTION parking.on_unblock(envelope jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    booking uuid := (envelope->'payload'->>'booking_id')::uuid;
    slot uuid := (envelope->'payload'->>'slot_uuid')::uuid;
    hold parking.holds;
BEGIN
    SELECT * INTO hold FROM parking.holds WHERE booking_id = booking FOR UPDATE;
    IF FOUND AND hold.state IN ('blocked', 'reserved') THEN
        PERFORM parking.change_slot(hold.slot_uuid, hold.state, 'available');
        PERFORM parking.answer(booking, hold.slot_uuid, 'released', 'parking.unblocked');
    ELSIF FOUND THEN
        PERFORM parking.answer(booking, hold.slot_uuid, hold.state, 'parking.unblocked');
    ELSE
        -- The unblock overtook its block: remember it, so that the block, when it comes, is refused.
        PERFORM parking.answer(booking, slot, 'released', 'parking.unblocked');
    END IF;
END
$$;
