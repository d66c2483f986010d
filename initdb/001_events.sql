-- The events table and its indexes for the default table name `events`.
-- The library applies the same text (rust/sql.rs, create_schema) for any table name.
CREATE TABLE IF NOT EXISTS "events" (
    sequence_number bigserial PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    event_type text NOT NULL CHECK (event_type <> ''),
    payload jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object')
);

CREATE INDEX IF NOT EXISTS "events_event_type_idx" ON "events" (event_type);
CREATE INDEX IF NOT EXISTS "events_occurred_at_idx" ON "events" (occurred_at);
CREATE INDEX IF NOT EXISTS "events_payload_idx" ON "events" USING gin (payload jsonb_path_ops);
