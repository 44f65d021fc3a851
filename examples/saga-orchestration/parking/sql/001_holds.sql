-- The parking service's side of the orchestrated saga. Its database is the parking primary, so
-- its slots are public.parking_slots (primary migration 0001), and every slot change it makes also
-- emits the read-model event (parking.update) that `outbox replicate` applies to the replica.

CREATE SCHEMA parking;

-- What each booking holds, one row per booking: the slot it blocked or reserved, or why it holds
-- nothing. A booking's row is never deleted, so a late or repeated command is answered as before
-- and cannot block a slot after the saga gave it up (unblock before block leaves 'released').
CREATE TABLE parking.holds (
    booking_id uuid        PRIMARY KEY,
    slot_uuid  uuid        NOT NULL,
    state      text        NOT NULL CONSTRAINT holds_state_valid CHECK (state IN
                   ('blocked', 'reserved',   -- this booking holds the slot
                    'refused',               -- the slot was not available when this booking asked
                    'failed',                -- the reserve found the slot no longer blocked for it
                    'lost',                  -- the slot was freed by hand (update_parking_slot) meanwhile
                    'released')),            -- unblocked by the saga's compensation
    -- The aggregate version of this row's replies ("parking_hold", booking_id): one per reply.
    version    bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- At most one booking holds a slot: no slot is blocked or reserved for two bookings.
CREATE UNIQUE INDEX holds_one_booking_per_slot ON parking.holds (slot_uuid) WHERE state IN ('blocked', 'reserved');
