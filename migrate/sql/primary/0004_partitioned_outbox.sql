-- The outbox becomes a table partitioned by RANGE (position) (issue 19, part 3: an outbox that does
-- not bloat). Retention then drops whole partitions once every row in them is published and past
-- relay.retention, instead of deleting rows one by one: no dead tuples, no index bloat, no vacuum
-- debt left behind by the old rows (relay/partition_maintenance.hpp).
--
-- The conversion keeps every row where it is, in the same order, with the same positions: the old
-- table is renamed to outbox_from_0 and attached as the first partition, for every position up to
-- the highest one taken so far. It runs in one transaction (the runner's), under an ACCESS
-- EXCLUSIVE lock on the old table: writers wait for it, none fails, and a writer that committed
-- before it is in the first partition. Its cost is one scan of the old table (ATTACH checks the
-- bound); nothing is copied.
--
-- What changes:
-- - position keeps its identity (GENERATED ALWAYS) and its sequence continues where it was (the
--   sequence is made anew on the partitioned table and set to the old one's last value).
-- - event_id: PostgreSQL 15 accepts a unique index on a partitioned table only if it includes the
--   partition key, so event_id is unique within each partition (each partition has its own
--   UNIQUE (event_id); the first keeps outbox_event_id_unique). Across partitions uniqueness rests on
--   the writers' random UUIDs (gen_random_uuid), which is what made it unique in practice before.
-- - outbox_default catches any row whose partition does not exist yet, so the write path never
--   fails for a missing partition; the relay creates partitions ahead of the writers
--   (relay.partition_size) and keeps the default partition empty in normal operation.
-- - The indexes the relay needs are kept: the primary key (position) and the partial index of
--   unpublished rows, both now partitioned indexes.
LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE;

DO $$
DECLARE
    next_position bigint;
BEGIN
    -- Where the writers will go on: past the highest position taken (committed or not, since the
    -- sequence never goes back) and past the highest row (a row written with an explicit position).
    SELECT greatest(coalesce((SELECT max(position) FROM outbox), 0),
                    coalesce((SELECT last_value FROM pg_sequences
                              WHERE schemaname = current_schema() AND sequencename = 'outbox_position_seq'), 0)) + 1
      INTO next_position;

    ALTER TABLE outbox RENAME TO outbox_from_0;
    ALTER INDEX outbox_pkey RENAME TO outbox_from_0_pkey;
    ALTER INDEX outbox_unpublished RENAME TO outbox_from_0_unpublished;
    DROP TRIGGER outbox_notify ON outbox_from_0;
    -- Drops the old sequence (outbox_position_seq), so that the new one takes its name.
    ALTER TABLE outbox_from_0 ALTER COLUMN position DROP IDENTITY;

    CREATE TABLE outbox (
        position          bigint      GENERATED ALWAYS AS IDENTITY,
        event_id          uuid        NOT NULL,
        aggregate_type    text        NOT NULL,
        aggregate_id      text        NOT NULL,
        aggregate_version bigint      NOT NULL,
        event_type        text        NOT NULL,
        payload           json        NOT NULL,
        created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
        published_at      timestamptz,
        correlation_id    text,
        causation_id      text,
        reply_to          text,
        routing_key       text,
        PRIMARY KEY (position)
    ) PARTITION BY RANGE (position);
    ALTER TABLE outbox ADD CONSTRAINT outbox_aggregate_version_range
        CHECK (aggregate_version BETWEEN 1 AND 9007199254740991) NOT VALID;
    CREATE INDEX outbox_unpublished ON outbox (position) WHERE published_at IS NULL;
    PERFORM setval(pg_get_serial_sequence('outbox', 'position'), next_position, false);

    EXECUTE format('ALTER TABLE outbox ATTACH PARTITION outbox_from_0 FOR VALUES FROM (MINVALUE) TO (%s)', next_position);
    -- The first partition of the new rows; the relay adds the next ones before they are needed.
    EXECUTE format('CREATE TABLE %I PARTITION OF outbox FOR VALUES FROM (%s) TO (%s)',
                   'outbox_from_' || next_position, next_position, next_position + 1000000);
    EXECUTE format('ALTER TABLE %I ADD UNIQUE (event_id)', 'outbox_from_' || next_position);
END
$$;

CREATE TABLE outbox_default PARTITION OF outbox DEFAULT;
ALTER TABLE outbox_default ADD UNIQUE (event_id);

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify('outbox_events');
