-- The events table, its sequence and its key index for the default table name `events`.
-- The library applies the same text (rust/sql/ddl.rs, create_schema) for any table name.
CREATE SEQUENCE IF NOT EXISTS "events_seq";

CREATE TABLE IF NOT EXISTS "events" (
    sequence_number bigint PRIMARY KEY DEFAULT nextval('"events_seq"'),
    occurred_at timestamptz NOT NULL,
    event_type text NOT NULL CHECK (event_type <> ''),
    payload jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    id uuid,
    tags text[] NOT NULL DEFAULT '{}'
) WITH (autovacuum_vacuum_insert_threshold = 10000, autovacuum_vacuum_insert_scale_factor = 0);

ALTER SEQUENCE "events_seq" OWNED BY "events".sequence_number;

CREATE TABLE IF NOT EXISTS "events_keys" (
    key bigint NOT NULL,
    sequence_number bigint NOT NULL,
    tid tid,
    PRIMARY KEY (key, sequence_number) INCLUDE (tid)
) WITH (autovacuum_vacuum_insert_threshold = 10000, autovacuum_vacuum_insert_scale_factor = 0);

CREATE INDEX IF NOT EXISTS "events_event_type_idx" ON "events" (event_type, sequence_number);
CREATE INDEX IF NOT EXISTS "events_occurred_at_idx" ON "events" (occurred_at);
CREATE UNIQUE INDEX IF NOT EXISTS "events_id_idx" ON "events" (id) WHERE id IS NOT NULL;
