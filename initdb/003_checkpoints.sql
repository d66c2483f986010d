-- The projections' checkpoint table for the default table name `events`.
-- The library applies the same text (rust/sql/ddl.rs, create_checkpoints) in create_schema().
CREATE TABLE IF NOT EXISTS "events_checkpoints" (
    name text PRIMARY KEY CHECK (name <> ''),
    position bigint NOT NULL CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
