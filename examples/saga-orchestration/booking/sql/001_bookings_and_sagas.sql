-- The booking service of the orchestrated saga. Booking runs the orchestrator: it sends each
-- participant a command (with reply_to "reply.booking") and moves the saga on when the reply comes.
-- The saga's state is this table, not memory: a command is sent in the same transaction as the step
-- that sends it (outbox_emit), so a crash loses neither.

CREATE SCHEMA booking;

-- What a user sees: a booking is pending until its saga ends, then completed or failed.
CREATE TABLE booking.bookings (
    id         uuid        PRIMARY KEY,
    slot_uuid  uuid        NOT NULL,
    status     text        NOT NULL DEFAULT 'pending'
                           CONSTRAINT bookings_status_valid CHECK (status IN ('pending', 'completed', 'failed')),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The orchestrator's state machine, one row per booking:
--   blocking -> authorizing -> reserving -> completed          (the happy path)
--   blocking -> failed                                         (the slot is not available)
--   authorizing | reserving -> unblocking -> refunding -> failed   (compensation)
--   blocking (no reply) -> unblocking -> failed                (nothing was charged)
-- completed and failed are terminal: a saga reaches exactly one of them, once (ended_at).
CREATE TABLE booking.sagas (
    booking_id        uuid          PRIMARY KEY REFERENCES booking.bookings,
    step              text          NOT NULL CONSTRAINT sagas_step_valid CHECK (step IN
                          ('blocking', 'authorizing', 'reserving', 'unblocking', 'refunding', 'completed', 'failed')),
    amount            numeric(12,2) NOT NULL CONSTRAINT sagas_amount_positive CHECK (amount > 0),
    -- Every command and reply of this saga carries it (the first command's event id).
    correlation_id    text,
    -- A billing.authorize_payment was sent, so a compensation must ask billing for a refund.
    payment_requested boolean       NOT NULL DEFAULT false,
    -- The aggregate version of the saga's next command ("booking", booking_id): one per command.
    version           bigint        NOT NULL DEFAULT 0,
    -- When the current step stops waiting for its reply (booking.expire_sagas, a deadline).
    deadline_at       timestamptz,
    reason            text,         -- why a saga failed, for people
    started_at        timestamptz   NOT NULL DEFAULT clock_timestamp(),
    ended_at          timestamptz,
    CONSTRAINT sagas_ended_when_terminal CHECK ((step IN ('completed', 'failed')) = (ended_at IS NOT NULL))
);
CREATE INDEX sagas_waiting ON booking.sagas (deadline_at) WHERE step NOT IN ('completed', 'failed');

-- How long a step waits for its reply before the saga compensates (forward steps) or asks again
-- (compensating steps). One row.
CREATE TABLE booking.settings (
    only_row     boolean  PRIMARY KEY DEFAULT true CONSTRAINT settings_one_row CHECK (only_row),
    step_timeout interval NOT NULL DEFAULT '30 seconds'
);
INSERT INTO booking.settings DEFAULT VALUES;
