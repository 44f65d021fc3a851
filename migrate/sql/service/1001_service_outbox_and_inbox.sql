-- A service database (issue 16: database per service): its own outbox, which its own relay
-- publishes (`outbox relay --service NAME`), and its own inbox, which `outbox consume` fills.
-- Every statement is IF NOT EXISTS / OR REPLACE, because a database may also be the primary (the
-- parking primary is also the parking service): then the primary set (run first by `outbox
-- migrate`) has made the outbox already, and this set adds only what is missing. The versions of
-- this set start at 1001 so that one schema_migrations table holds both sets.

-- The outbox, as the primary's migrations 0001, 0002 and 0003 define it.
CREATE TABLE IF NOT EXISTS outbox (
    position          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id          uuid        NOT NULL CONSTRAINT outbox_event_id_unique UNIQUE,
    aggregate_type    text        NOT NULL,
    aggregate_id      text        NOT NULL,
    aggregate_version bigint      NOT NULL CONSTRAINT outbox_aggregate_version_range
                                  CHECK (aggregate_version BETWEEN 1 AND 9007199254740991),
    event_type        text        NOT NULL,
    -- json, not jsonb: the relay publishes the payload byte for byte as it was written.
    payload           json        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at      timestamptz
);
ALTER TABLE outbox
    ADD COLUMN IF NOT EXISTS correlation_id text,
    ADD COLUMN IF NOT EXISTS causation_id   text,
    ADD COLUMN IF NOT EXISTS reply_to       text,
    ADD COLUMN IF NOT EXISTS routing_key    text;
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (position) WHERE published_at IS NULL;

-- Wakes the relay at once (LISTEN outbox_events); one notification per statement, not per row.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify('outbox_events');

-- Outbox rows the relay cannot publish (see the primary's 0002).
CREATE TABLE IF NOT EXISTS outbox_parked (
    id              bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    outbox_table    text        NOT NULL,
    position        bigint      NOT NULL,
    event_id        text,
    event_type      text,
    aggregate_type  text,
    aggregate_id    text,
    attempts        integer     NOT NULL DEFAULT 1,
    error           text        NOT NULL,
    first_failed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_failed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    parked_at       timestamptz,
    PRIMARY KEY (outbox_table, position)
);

-- The consuming side: the same bookkeeping as a replica's (the replica set's 0001 and 0002), as
-- `outbox consume` runs replicate's engine. outbox_applied_events is the inbox: an event id in it
-- has been handled (or skipped) and commits with the handler's effect; a redelivery finds it.
CREATE TABLE IF NOT EXISTS outbox_aggregate_versions (
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    version        bigint      NOT NULL,
    deleted        boolean     NOT NULL DEFAULT false,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);

CREATE TABLE IF NOT EXISTS outbox_applied_events (
    event_id          uuid        PRIMARY KEY,
    aggregate_type    text        NOT NULL,
    aggregate_id      text        NOT NULL,
    aggregate_version bigint      NOT NULL,
    outbox_position   bigint,
    created_at        timestamptz,
    applied_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    effective         boolean     NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_applied_events_applied_at ON outbox_applied_events (applied_at);

-- One row per consumer name (the column keeps the replica set's name).
CREATE TABLE IF NOT EXISTS outbox_applied_position (
    replica         text PRIMARY KEY,
    last_event_id   uuid,
    last_position   bigint,
    last_created_at timestamptz,
    applied_at      timestamptz
);

-- Events a handler failed on (parked), and later events of their aggregate that wait behind them;
-- `outbox failed ... --consumer NAME` reads and retries them (replica = the consumer name).
CREATE TABLE IF NOT EXISTS outbox_failed_events (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    replica           text        NOT NULL,
    event_id          text,
    aggregate_type    text,
    aggregate_id      text,
    aggregate_version bigint,
    event_type        text,
    routing_key       text,
    properties        jsonb       NOT NULL DEFAULT '{}',
    body              bytea       NOT NULL,
    error             text        NOT NULL,
    attempts          integer     NOT NULL,
    state             text        NOT NULL CONSTRAINT outbox_failed_events_state CHECK (state IN ('parked', 'waiting')),
    failed_at         timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS outbox_failed_events_aggregate ON outbox_failed_events (replica, aggregate_type, aggregate_id, id);

CREATE TABLE IF NOT EXISTS outbox_heartbeat (
    replica    text PRIMARY KEY,
    relay      text,
    created_at timestamptz NOT NULL,
    applied_at timestamptz NOT NULL
);

-- The service's own migrations (services.NAME.migrations: its schema and handler functions), applied
-- by `outbox migrate` in name order after this set, each once: the file name and the checksum
-- (sha256 of its text) it had when it was applied. A changed file is refused, never run again.
CREATE TABLE IF NOT EXISTS outbox_service_migrations (
    file       text        PRIMARY KEY,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- The handlers' way out: the same functions as the primary's 0003.
-- outbox_emit: one outbox row, in the caller's transaction. Inside a handler `outbox consume` has set
-- outbox.correlation_id and outbox.causation_id (transaction-local) from the event being handled, so
-- the new event carries the saga's correlation id and names its cause without the handler passing
-- them. Outside a handler the new event starts a conversation: its correlation id is its own id.
-- search_path FROM CURRENT: a handler may run with its own search_path; the row still goes to the
-- outbox this migration created.
CREATE OR REPLACE FUNCTION outbox_emit(
    event_type text, aggregate_type text, aggregate_id text, aggregate_version bigint, payload jsonb,
    reply_to text DEFAULT NULL, routing_key text DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    new_id uuid := gen_random_uuid();
BEGIN
    INSERT INTO outbox (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload,
                        correlation_id, causation_id, reply_to, routing_key)
    VALUES (new_id, outbox_emit.aggregate_type, outbox_emit.aggregate_id, outbox_emit.aggregate_version,
            outbox_emit.event_type, outbox_emit.payload::json,
            coalesce(nullif(current_setting('outbox.correlation_id', true), ''), new_id::text),
            nullif(current_setting('outbox.causation_id', true), ''),
            outbox_emit.reply_to, outbox_emit.routing_key);
    RETURN new_id;
END
$$;

-- outbox_reply: answers the command being handled. The reply goes to the routing key the command
-- named as its reply_to, with the same correlation id; a command without reply_to cannot be
-- answered, which is the handler's mistake (22023 invalid_parameter_value: `outbox consume` parks it).
CREATE OR REPLACE FUNCTION outbox_reply(
    event_type text, aggregate_type text, aggregate_id text, aggregate_version bigint, payload jsonb) RETURNS uuid
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    requester text := nullif(current_setting('outbox.reply_to', true), '');
BEGIN
    IF requester IS NULL THEN
        RAISE EXCEPTION 'outbox_reply: the event being handled has no reply_to' USING ERRCODE = '22023';
    END IF;
    RETURN outbox_emit(event_type, aggregate_type, aggregate_id, aggregate_version, payload, NULL, requester);
END
$$;
