-- What a service needs to take part in a saga (issue 16): the outbox carries a correlation id, a
-- causation id, a reply-to and an explicit routing key, and a handler emits or replies through
-- two functions instead of writing these columns itself. The parking primary is also a service
-- database (`[services.parking]`); migrate/sql/service/1001 installs the same on a new one.
--
-- The relay sends correlation_id and reply_to as the AMQP properties of the same names, causation_id
-- as a header, and routing_key (when not NULL) instead of the event type as the routing key.
ALTER TABLE outbox
    ADD COLUMN IF NOT EXISTS correlation_id text,
    ADD COLUMN IF NOT EXISTS causation_id   text,
    ADD COLUMN IF NOT EXISTS reply_to       text,
    ADD COLUMN IF NOT EXISTS routing_key    text;

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
