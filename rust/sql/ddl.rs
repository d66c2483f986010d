//! The DDL the store applies: idempotent, and the same text as `initdb/`.

use std::fmt::Write as _;

use crate::sql::param::{SqlParam, Statement};
use crate::table::TableName;

const TYPE_INDEX: &str = "_event_type_idx";
const TIME_INDEX: &str = "_occurred_at_idx";
const ID_INDEX: &str = "_id_idx";

/// Storage parameters of the events and their key rows, tables that are only ever inserted
/// into. PostgreSQL vacuums a table after inserts of a fifth of its size by default (200,000
/// events at 1M): until then recent pages are not marked all-visible, so every read of a
/// recent event visits the key rows' heap too, and the first one also sets the rows' hint
/// bits, dirtying the page. Vacuumed after every 10,000 inserts instead, each time only over
/// the pages written since (an insert-only table has nothing else to clean), recent events
/// are read from the key index alone within about a minute of their commit (sooner when
/// the store that wrote them vacuums them itself: `upkeep.rs`).
const APPEND_ONLY: &str =
    "autovacuum_vacuum_insert_threshold = 10000, autovacuum_vacuum_insert_scale_factor = 0";

/// Which objects of the schema exist, in their current form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // one flag per object, read from one catalog row
pub struct SchemaState {
    pub events: bool,
    pub keys: bool,
    /// The key rows' row address (`tid`), added after 0.1.0.
    pub keys_tid: bool,
    pub type_index: bool,
    pub time_index: bool,
    pub snapshots: bool,
    /// Both tables carry the `APPEND_ONLY` storage parameters (set since 0.1.0).
    pub append_only: bool,
    /// Events carry an optional unique id (added after 0.1.0).
    pub event_ids: bool,
    pub checkpoints: bool,
    /// Events carry tags (added after 0.1.0).
    pub tags: bool,
}

impl SchemaState {
    /// Reads the state: one row of ten booleans, in field order. A catalog read that takes
    /// no lock a read or an append could wait for.
    pub fn query(table: &TableName, snapshots: &TableName) -> Statement {
        Statement {
            plan_per_call: false,
            sql: "SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL, \
                  EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($2) \
                          AND attname = 'tid' AND NOT attisdropped), \
                  to_regclass($3) IS NOT NULL, to_regclass($4) IS NOT NULL, \
                  to_regclass($5) IS NOT NULL, \
                  (SELECT count(*) = 2 FROM pg_class WHERE oid IN (to_regclass($1), to_regclass($2)) \
                          AND 'autovacuum_vacuum_insert_scale_factor=0' = ANY(reloptions)), \
                  to_regclass($6) IS NOT NULL, to_regclass($7) IS NOT NULL, \
                  EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) \
                          AND attname = 'tags' AND NOT attisdropped)"
                .to_owned(),
            params: [
                table.quoted(),
                table.keys_quoted(),
                table.companion(TYPE_INDEX),
                table.companion(TIME_INDEX),
                snapshots.quoted(),
                table.companion(ID_INDEX),
                table.checkpoints_quoted(),
            ]
            .into_iter()
            .map(SqlParam::Text)
            .collect(),
        }
    }

    pub fn is_current(&self) -> bool {
        *self == Self::current()
    }

    fn current() -> Self {
        Self {
            events: true,
            keys: true,
            keys_tid: true,
            type_index: true,
            time_index: true,
            snapshots: true,
            append_only: true,
            event_ids: true,
            checkpoints: true,
            tags: true,
        }
    }

    /// The DDL that brings this state to the current schema, each text to run as a
    /// transaction of its own, so that no step holds one table's lock while it waits for
    /// another's (appends lock the events, then the key rows). A missing table is created
    /// whole; a table of an earlier version gets only what it lacks, which only waits for the
    /// appends in flight: a column added to the key rows (the rows an earlier version wrote
    /// have none, and reads fetch their events through the primary key), a missing index.
    pub fn upgrade(&self, table: &TableName, snapshots: &TableName) -> Vec<String> {
        let mut steps = Vec::new();
        if self.events && self.keys {
            let t = table.quoted();
            if !self.keys_tid {
                steps.push(format!(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS tid tid",
                    table.keys_quoted()
                ));
            }
            if !self.type_index {
                steps.push(format!(
                    "CREATE INDEX IF NOT EXISTS \"{}{TYPE_INDEX}\" ON {t} (event_type, sequence_number)",
                    table.name()
                ));
            }
            if !self.time_index {
                steps.push(format!(
                    "CREATE INDEX IF NOT EXISTS \"{}{TIME_INDEX}\" ON {t} (occurred_at)",
                    table.name()
                ));
            }
            if !self.event_ids {
                // Adding a column without a default rewrites nothing; the index holds only
                // the events that have an id, none yet.
                steps.push(format!("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS id uuid"));
                steps.push(id_index(table));
            }
            if !self.tags {
                // A constant default: the existing rows are not rewritten.
                steps.push(format!(
                    "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS tags text[] NOT NULL DEFAULT '{{}}'"
                ));
            }
            if !self.append_only {
                // Takes a lock that neither reads nor appends wait for.
                for name in [t.clone(), table.keys_quoted()] {
                    steps.push(format!("ALTER TABLE {name} SET ({APPEND_ONLY})"));
                }
            }
        } else {
            steps.push(create_schema(table));
        }
        if !self.snapshots {
            steps.push(create_snapshots(snapshots));
        }
        if !self.checkpoints {
            steps.push(create_checkpoints(table));
        }
        steps
    }
}

/// The DDL the store applies (idempotent). `initdb/001_events.sql` is this text for the
/// default table `events`.
///
/// Next to the events, a key index: one row per top-level scalar payload field and per tag of
/// each event, holding a 64-bit hash of the field's name and value, or of the tag (see
/// [`crate::keys::index_keys`]).
/// Predicates are looked up there with a B-tree, which stays fast as the table grows and
/// under constant inserts, unlike a GIN index on the payload; the events found are then
/// checked against the real condition, so hash collisions never change a result.
///
/// Each key row also holds `tid`, where its event's row was written (events are never
/// updated, so it stays put), in the index itself: events are fetched straight from the
/// heap instead of through a primary-key descent each. It is a hint: whatever row is found
/// there is checked against the filter's exact condition like any other (a page of a read
/// also checks that it is the candidate's event), and an event not found where its hint
/// points (after a table rewrite such as `VACUUM FULL`, or a key row loaded without one) is
/// fetched through the primary key. A guard does not use it: it looks each candidate above
/// its position up by sequence number until one matches, and a guard that holds has none.
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
    metadata jsonb NOT NULL DEFAULT '{{}}' CHECK (jsonb_typeof(metadata) = 'object'),
    id uuid,
    tags text[] NOT NULL DEFAULT '{{}}'
) WITH ({APPEND_ONLY});

ALTER SEQUENCE {seq} OWNED BY {t}.sequence_number;

CREATE TABLE IF NOT EXISTS {keys} (
    key bigint NOT NULL,
    sequence_number bigint NOT NULL,
    tid tid,
    PRIMARY KEY (key, sequence_number) INCLUDE (tid)
) WITH ({APPEND_ONLY});

CREATE INDEX IF NOT EXISTS \"{n}{TYPE_INDEX}\" ON {t} (event_type, sequence_number);
CREATE INDEX IF NOT EXISTS \"{n}{TIME_INDEX}\" ON {t} (occurred_at);
{};
",
        id_index(table)
    );
    sql
}

/// Event ids are unique; events without one (most) are not in the index at all.
fn id_index(table: &TableName) -> String {
    format!(
        "CREATE UNIQUE INDEX IF NOT EXISTS \"{}{ID_INDEX}\" ON {} (id) WHERE id IS NOT NULL",
        table.name(),
        table.quoted()
    )
}

/// The DDL of the projections' checkpoint table (idempotent): the position of each named
/// projection, beside the events.
pub fn create_checkpoints(table: &TableName) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (
    name text PRIMARY KEY CHECK (name <> ''),
    position bigint NOT NULL CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
",
        table.checkpoints_quoted()
    )
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
    fn each_state_gets_only_what_it_lacks() {
        let table = TableName::parse("events").unwrap();
        let snapshots = table.snapshots();
        let current = SchemaState::current();
        assert!(current.is_current());
        assert!(current.upgrade(&table, &snapshots).is_empty());
        let nothing = SchemaState::default();
        assert_eq!(
            nothing.upgrade(&table, &snapshots),
            [
                create_schema(&table),
                create_snapshots(&snapshots),
                create_checkpoints(&table)
            ]
        );
        let without_ids = SchemaState {
            event_ids: false,
            ..current
        };
        assert_eq!(
            without_ids.upgrade(&table, &snapshots),
            [
                "ALTER TABLE \"events\" ADD COLUMN IF NOT EXISTS id uuid".to_owned(),
                id_index(&table)
            ]
        );
        let untagged = SchemaState {
            tags: false,
            ..current
        };
        assert_eq!(
            untagged.upgrade(&table, &snapshots),
            ["ALTER TABLE \"events\" ADD COLUMN IF NOT EXISTS tags text[] NOT NULL DEFAULT '{}'"]
        );
        let earlier = SchemaState {
            keys_tid: false,
            ..current
        };
        assert_eq!(
            earlier.upgrade(&table, &snapshots),
            ["ALTER TABLE \"events_keys\" ADD COLUMN IF NOT EXISTS tid tid"]
        );
        let untuned = SchemaState {
            append_only: false,
            ..current
        };
        assert_eq!(
            untuned.upgrade(&table, &snapshots),
            [
                format!("ALTER TABLE \"events\" SET ({APPEND_ONLY})"),
                format!("ALTER TABLE \"events_keys\" SET ({APPEND_ONLY})"),
            ]
        );
    }

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
        let checkpoints = include_str!("../../initdb/003_checkpoints.sql");
        assert_eq!(body(checkpoints).trim(), create_checkpoints(&table).trim());
    }
}
