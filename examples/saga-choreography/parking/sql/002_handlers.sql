-- bill.paid: reserve the slot if it is available (parking.reserved), else parking.unavailable.
CREATE FUNCTION parking.on_bill_paid(envelope jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    booking uuid := (envelope->'payload'->>'booking_id')::uuid;
    slot uuid := (envelope->'payload'->>'slot_uuid')::uuid;
    changed public.parking_slots;
    answer text := 'unavailable';
BEGIN
    IF EXISTS (SELECT FROM parking.reservations WHERE booking_id = booking) THEN
        RETURN;  -- answered before, in the transaction that recorded it
    END IF;
    UPDATE public.parking_slots SET status = 'reserved', version = version + 1
     WHERE uuid = slot AND status = 'available'
    RETURNING * INTO changed;
    IF FOUND THEN
        answer := 'reserved';
        -- The same event type and payload as `outbox update_parking_slot` writes: the read model follows.
        PERFORM outbox_emit('parking.update', 'parking_slot', changed.uuid::text, changed.version,
                            jsonb_build_object('uuid', changed.uuid, 'name', changed.name,
                                               'status', changed.status, 'version', changed.version));
    END IF;
    INSERT INTO parking.reservations (booking_id, slot_uuid, state) VALUES (booking, slot, answer);
    PERFORM outbox_emit('parking.' || answer, 'parking_reservation', booking::text, 1,
                        jsonb_build_object('booking_id', booking, 'slot_uuid', slot,
                                           'id', slot::text || ':' || booking::text));
END
$$;
