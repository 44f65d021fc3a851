-- The parking service of the choreographed saga. Its database is the parking primary, so its
-- slots are public.parking_slots, and each slot change also emits the read-model event
-- (parking.update) that `outbox replicate` applies to the replica.

CREATE SCHEMA parking;

-- Parking's answer per booking, kept for good: a second bill.paid for the same booking finds it
-- and reserves nothing more.
CREATE TABLE parking.reservations (
    booking_id uuid        PRIMARY KEY,
    slot_uuid  uuid        NOT NULL,
    state      text        NOT NULL CONSTRAINT reservations_state_valid CHECK (state IN ('reserved', 'unavailable')),
    at         timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- No slot is reserved for two bookings.
CREATE UNIQUE INDEX reservations_one_booking_per_slot ON parking.reservations (slot_uuid) WHERE state = 'reserved';
