-- The snapshot table for the default table name `events`.
-- The library applies the same text (rust/sql/ddl.rs, create_snapshots) in create_schema().
CREATE TABLE IF NOT EXISTS "events_snapshots" (
    projection_type text NOT NULL CHECK (projection_type <> ''),
    filter_hash text NOT NULL CHECK (filter_hash <> ''),
    sequence_number bigint NOT NULL,
    data jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection_type, filter_hash)
);
