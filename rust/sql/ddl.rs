//! The DDL the store applies: idempotent, and the same text as `initdb/`.

use std::fmt::Write as _;

use crate::table::TableName;

/// The DDL the store applies (idempotent). `initdb/001_events.sql` is this text for the
/// default table `events`.
///
/// Next to the events, a key index: one row per top-level scalar payload field of each event,
/// holding a 64-bit hash of the field's name and value (see [`crate::keys::index_keys`]).
/// Predicates are looked up there with a B-tree, which stays fast as the table grows and
/// under constant inserts, unlike a GIN index on the payload; the events found are then
/// checked against the real condition, so hash collisions never change a result.
///
/// Each key row also holds `tid`, where its event's row was written (events are never
/// updated, so it stays put), in the index itself: events are fetched straight from the
/// heap instead of through a primary-key descent each. It is a hint, checked against the
/// sequence number on every read; an event not found where its hint points (after a table
/// rewrite such as `VACUUM FULL`, or a key row loaded without one) is fetched through the
/// primary key.
pub fn create_schema(table: &TableName) -> String {
    let t = table.quoted();
    let keys = table.keys_quoted();
    let seq = table.sequence_quoted();
    let n = table.name();
    let mut sql = String::new();
    if let Some(s) = table.schema() {
        let _ = writeln!(sql, "CREATE SCHEMA IF NOT EXISTS \"{s}\";\n");
    }
    let _ = write!(
        sql,
        "CREATE SEQUENCE IF NOT EXISTS {seq};

CREATE TABLE IF NOT EXISTS {t} (
    sequence_number bigint PRIMARY KEY DEFAULT nextval('{seq}'),
    occurred_at timestamptz NOT NULL,
    event_type text NOT NULL CHECK (event_type <> ''),
    payload jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    metadata jsonb NOT NULL DEFAULT '{{}}' CHECK (jsonb_typeof(metadata) = 'object')
);

ALTER SEQUENCE {seq} OWNED BY {t}.sequence_number;

CREATE TABLE IF NOT EXISTS {keys} (
    key bigint NOT NULL,
    sequence_number bigint NOT NULL,
    tid tid,
    PRIMARY KEY (key, sequence_number) INCLUDE (tid)
);

CREATE INDEX IF NOT EXISTS \"{n}_event_type_idx\" ON {t} (event_type, sequence_number);
CREATE INDEX IF NOT EXISTS \"{n}_occurred_at_idx\" ON {t} (occurred_at);
"
    );
    sql
}

/// The DDL of a snapshot table (idempotent): one snapshot per projection type and filter.
pub fn create_snapshots(table: &TableName) -> String {
    let t = table.quoted();
    let mut sql = String::new();
    if let Some(s) = table.schema() {
        let _ = writeln!(sql, "CREATE SCHEMA IF NOT EXISTS \"{s}\";\n");
    }
    let _ = write!(
        sql,
        "CREATE TABLE IF NOT EXISTS {t} (
    projection_type text NOT NULL CHECK (projection_type <> ''),
    filter_hash text NOT NULL CHECK (filter_hash <> ''),
    sequence_number bigint NOT NULL,
    data jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection_type, filter_hash)
);
"
    );
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initdb_holds_the_same_ddl() {
        let table = TableName::parse("events").unwrap();
        let body = |file: &str| {
            file.lines()
                .skip_while(|l| l.starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let events = include_str!("../../initdb/001_events.sql");
        assert_eq!(body(events).trim(), create_schema(&table).trim());
        let snapshots = include_str!("../../initdb/002_snapshots.sql");
        assert_eq!(
            body(snapshots).trim(),
            create_snapshots(&table.snapshots()).trim()
        );
    }
}
