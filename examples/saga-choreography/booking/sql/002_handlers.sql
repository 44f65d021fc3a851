-- The user's command (booking.create_booking) and the handlers `outbox consume` calls. A booking
-- ends once: an event for a booking that is no longer pending changes nothing.

-- Books `slot`; returns the booking id. Idempotent on `booking_id` (a retried request books once).
-- The event carries the slot and the booking, also as the original's "<slot_uuid>:<booking_uuid>".
CREATE FUNCTION booking.create_booking(slot uuid, booking_id uuid DEFAULT gen_random_uuid())
RETURNS uuid LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO booking.bookings (id, slot_uuid) VALUES (booking_id, slot) ON CONFLICT (id) DO NOTHING;
    IF FOUND THEN
        PERFORM outbox_emit('booking.created', 'booking', booking_id::text, 1,
                            jsonb_build_object('booking_id', booking_id, 'slot_uuid', slot,
                                               'id', slot::text || ':' || booking_id::text));
    END IF;
    RETURN booking_id;
END
$$;

-- Ends a pending booking; a booking that already ended stays as it is.
CREATE FUNCTION booking.finish(booking uuid, final_status text, why text DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
    UPDATE booking.bookings
       SET status = final_status, reason = why, version = version + 1, ended_at = clock_timestamp()
     WHERE id = booking AND status = 'pending';
$$;

-- parking.reserved: the slot is this booking's.
CREATE FUNCTION booking.on_parking_reserved(envelope jsonb) RETURNS void LANGUAGE sql AS $$
    SELECT booking.finish((envelope->'payload'->>'booking_id')::uuid, 'done');
$$;

-- parking.unavailable (the slot was taken; billing refunds) or bill.cancelled (not paid in time).
CREATE FUNCTION booking.on_booking_failed(envelope jsonb) RETURNS void LANGUAGE sql AS $$
    SELECT booking.finish((envelope->'payload'->>'booking_id')::uuid, 'failed',
                          CASE envelope->>'event_type' WHEN 'bill.cancelled' THEN 'the bill was not paid in time'
                                                       ELSE 'the slot is not available' END);
$$;
