-- event_id is unique among the unpublished rows of each partition of the outbox, rather than among
-- all of its rows (issue 19: the relay's marks cost the primary twice what they must).
--
-- A mark (UPDATE ... SET published_at) is never a HOT update: the partial index of unpublished rows
-- names published_at in its predicate. So each mark adds the row's new version to every full index
-- of its partition: to the primary key, at the index's end (position order), and to UNIQUE
-- (event_id), at a random place and after a visit of the heap to see that the entry with the same
-- id is the row's own old version. That second entry was half of a mark's cost: 100,000 marks in
-- statements of 5,000 took 1.14-1.17 s, and 0.51-0.63 s with the index only over the unpublished
-- rows (bench/README, "event_id unique while unpublished"). A marked row leaves that index.
--
-- What the guard keeps: a row whose event id is the id of a row not yet published is refused (a
-- writer that inserts the same event twice, as it waits for the relay). What it gives up: an id
-- used again once its row was published is taken. Across partitions uniqueness already rested on
-- the writers' random UUIDs (gen_random_uuid; 0004).
--
-- Only the partitions that hold no row are converted here (the relay's partitions ahead of the
-- writers, the migration's first one on a new outbox, the default partition when empty): each is
-- instant. A partition with rows keeps its full index until retention drops it, rather than be
-- scanned for a new index under a lock the writers wait for. The relay makes every later partition
-- with the partial index (relay/outbox_partitions.cpp). The lock is the one the relay's attach
-- takes: the writers wait for these few statements, and no row arrives between the check for
-- emptiness and the conversion.
LOCK TABLE outbox IN SHARE ROW EXCLUSIVE MODE;

DO $$
DECLARE
    target record;
    has_rows boolean;
BEGIN
    FOR target IN
        SELECT con.conrelid::regclass AS partition, con.conname
        FROM pg_inherits i
        JOIN pg_constraint con ON con.conrelid = i.inhrelid
        WHERE i.inhparent = 'outbox'::regclass
          AND con.contype = 'u'
          AND pg_get_constraintdef(con.oid) = 'UNIQUE (event_id)'
        ORDER BY 1
    LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', target.partition) INTO has_rows;
        CONTINUE WHEN has_rows;
        EXECUTE format('CREATE UNIQUE INDEX ON %s (event_id) WHERE published_at IS NULL', target.partition);
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', target.partition, target.conname);
    END LOOP;
END
$$;
