-- Outbox rows the relay cannot publish (issue: one poison row must not stop every partition).
--
-- A row the broker can never take (an event type over AMQP's 255-byte limit, headers over the
-- frame size, a payload over relay.max_message_size, a version outside 1 .. 2^53-1, a NULL column)
-- is parked here at once; a row the broker refuses (channel closed with 406) is recorded here and
-- parked after relay.max_attempts refusals. The outbox row itself stays as it is: not deleted, not
-- marked published. While a row of an aggregate is parked, the relay publishes no later row of
-- that aggregate (per-aggregate order); every other aggregate goes on.
-- `outbox failed list|show|retry|discard --relay` reads and clears this table.
CREATE TABLE outbox_parked (
    id              bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    outbox_table    text        NOT NULL,  -- as configured in relay.tables: "public.outbox"
    position        bigint      NOT NULL,
    event_id        text,                  -- text: a row that breaks the contract may hold NULL
    event_type      text,
    aggregate_type  text,
    aggregate_id    text,
    attempts        integer     NOT NULL DEFAULT 1,
    error           text        NOT NULL,
    first_failed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_failed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    parked_at       timestamptz,           -- NULL while the broker's refusals are still being retried
    PRIMARY KEY (outbox_table, position)
);
-- No index on the aggregate: the relay's anti-join reads this (normally empty) table whole, and
-- an aggregate id can be longer than a B-tree entry allows.

-- The primary forbids versions the pipeline cannot carry (core/aggregate_version.hpp). NOT VALID:
-- rows written before this migration are not checked here; the relay parks those.
ALTER TABLE outbox ADD CONSTRAINT outbox_aggregate_version_range
    CHECK (aggregate_version BETWEEN 1 AND 9007199254740991) NOT VALID;
