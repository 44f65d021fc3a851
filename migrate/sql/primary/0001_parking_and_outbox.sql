-- The write model of the parking example and its transactional outbox.

CREATE TABLE parking_slots (
    uuid    uuid PRIMARY KEY,
    name    text   NOT NULL CONSTRAINT parking_slots_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    status  text   NOT NULL DEFAULT 'available'
                   CONSTRAINT parking_slots_status_valid CHECK (status IN ('available', 'blocked', 'reserved')),
    version bigint NOT NULL DEFAULT 1 CONSTRAINT parking_slots_version_positive CHECK (version > 0)
);

-- One row per event, inserted in the same transaction as the change it describes.
-- The relay publishes rows whose published_at is NULL and then sets it (or deletes the row).
-- A per-row marker, not a moving "last id" cursor, is what makes the relay gap-free: a row whose
-- transaction commits late (with a lower position than rows already published) is still NULL
-- and is found by the next read.
CREATE TABLE outbox (
    position          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id          uuid        NOT NULL CONSTRAINT outbox_event_id_unique UNIQUE,
    aggregate_type    text        NOT NULL,
    aggregate_id      text        NOT NULL,
    aggregate_version bigint      NOT NULL,
    event_type        text        NOT NULL,
    -- json, not jsonb: the relay publishes the payload byte for byte as it was written.
    payload           json        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at      timestamptz
);

-- Small while the relay keeps up: only unpublished rows are in it.
CREATE INDEX outbox_unpublished ON outbox (position) WHERE published_at IS NULL;
-- No index on published_at: marking a row would have to insert into it, which costs more on the
-- hot path than retention saves. Retention walks the primary key from the oldest position, where
-- the old published rows are.

-- Wakes the relay at once (LISTEN outbox_events); one notification per statement, not per row.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify('outbox_events');
