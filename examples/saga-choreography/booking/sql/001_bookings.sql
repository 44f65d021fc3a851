-- The booking service of the choreographed saga. No one gives orders here: booking emits
-- booking.created, billing and parking react to the events they see, and booking ends the booking
-- when parking says whether the slot was reserved (or billing cancels an unpaid bill).

CREATE SCHEMA booking;

-- The booking is this service's saga state: pending until the saga ends, then done or failed,
-- once (ended_at).
CREATE TABLE booking.bookings (
    id         uuid        PRIMARY KEY,
    slot_uuid  uuid        NOT NULL,
    status     text        NOT NULL DEFAULT 'pending'
                           CONSTRAINT bookings_status_valid CHECK (status IN ('pending', 'done', 'failed')),
    reason     text,       -- why it failed, for people
    -- The aggregate version of this booking's events ("booking", id).
    version    bigint      NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at   timestamptz,
    CONSTRAINT bookings_ended_when_terminal CHECK ((status <> 'pending') = (ended_at IS NOT NULL))
);
