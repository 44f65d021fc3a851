-- The read model of the parking example and the bookkeeping of idempotent, version-guarded apply.

CREATE TABLE parking_slots (
    uuid    uuid PRIMARY KEY,
    name    text   NOT NULL,
    status  text   NOT NULL,
    version bigint NOT NULL
);

-- The newest version applied per aggregate. A delete keeps its row with deleted = true (a
-- tombstone), so that a late, older create cannot bring the row back.
CREATE TABLE outbox_aggregate_versions (
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    version        bigint      NOT NULL,
    deleted        boolean     NOT NULL DEFAULT false,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- Every event id applied (or skipped as stale), committed in the same transaction as its effect.
CREATE TABLE outbox_applied_events (
    event_id          uuid        PRIMARY KEY,
    aggregate_type    text        NOT NULL,
    aggregate_id      text        NOT NULL,
    aggregate_version bigint      NOT NULL,
    outbox_position   bigint,
    created_at        timestamptz,
    applied_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    effective         boolean     NOT NULL
);
CREATE INDEX outbox_applied_events_applied_at ON outbox_applied_events (applied_at);

-- Where this replica is: the last event applied, when it was created on the primary, and when it
-- was applied here. One row per replica name.
CREATE TABLE outbox_applied_position (
    replica         text PRIMARY KEY,
    last_event_id   uuid,
    last_position   bigint,
    last_created_at timestamptz,
    applied_at      timestamptz
);

-- Events that could not be applied (poison), and later events of the same aggregate that wait
-- behind them so that order is kept. The whole message is kept for a retry.
CREATE TABLE outbox_failed_events (
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
CREATE INDEX outbox_failed_events_aggregate ON outbox_failed_events (replica, aggregate_type, aggregate_id, id);
