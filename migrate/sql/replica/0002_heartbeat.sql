-- The newest relay heartbeat applied to this replica (event type outbox.heartbeat), one row per
-- replica name. created_at is when the relay wrote the heartbeat into the primary's outbox,
-- applied_at when replicate applied it here: now() - created_at bounds the end-to-end lag even
-- while no other events flow (read by `outbox lag`).
CREATE TABLE outbox_heartbeat (
    replica    text PRIMARY KEY,
    relay      text,
    created_at timestamptz NOT NULL,
    applied_at timestamptz NOT NULL
);
