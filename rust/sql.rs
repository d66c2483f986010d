//! Every SQL text the store runs, and the compiler from filters to parameterised SQL.
//!
//! No value is ever spliced into SQL text: values travel as bind parameters, and the only
//! identifiers (schema and table) are validated and quoted by [`TableName`].

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use serde_json::Value;
use tokio_postgres::types::{IsNull, Json, ToSql, Type};

use crate::error::{Error, Result};
use crate::filter::{Bound, Filter, FilterItem, PredicateGroup};
use crate::guard::{self, Lookup};

/// Longest table name: PostgreSQL's 63-byte identifier limit less the longest index suffix.
const MAX_TABLE_NAME: usize = 63 - "_occurred_at_idx".len();

/// A validated, optionally schema-qualified table name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableName {
    schema: Option<String>,
    name: String,
}

fn valid_identifier(s: &str, max: usize) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= max
}

impl TableName {
    /// Parses `name` or `schema.name`. Each part must be an identifier of ASCII letters,
    /// digits and underscores that does not start with a digit.
    pub fn parse(qualified: &str) -> Result<Self> {
        let (schema, name) = match qualified.split_once('.') {
            Some((s, n)) => (Some(s), n),
            None => (None, qualified),
        };
        let bad = |what: &str| {
            Error::invalid(format!(
                "invalid {what} in table name {qualified:?}: use letters, digits and underscores, \
                 not starting with a digit (table at most {MAX_TABLE_NAME} characters, schema at most 63)"
            ))
        };
        if let Some(s) = schema {
            if !valid_identifier(s, 63) {
                return Err(bad("schema"));
            }
        }
        if !valid_identifier(name, MAX_TABLE_NAME) {
            return Err(bad("table"));
        }
        Ok(Self {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        })
    }

    /// The quoted, qualified name for SQL text.
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(s) => format!("\"{s}\".\"{}\"", self.name),
            None => format!("\"{}\"", self.name),
        }
    }

    /// The quoted, qualified name of a companion object: `<table><suffix>` in its schema.
    fn companion(&self, suffix: &str) -> String {
        match &self.schema {
            Some(s) => format!("\"{s}\".\"{}{suffix}\"", self.name),
            None => format!("\"{}{suffix}\"", self.name),
        }
    }

    /// The key index table: one row per (payload key and value, event).
    pub fn keys_quoted(&self) -> String {
        self.companion("_keys")
    }

    /// The default snapshot table: `<table>_snapshots` in the same schema.
    #[must_use]
    pub fn snapshots(&self) -> Self {
        Self {
            schema: self.schema.clone(),
            name: format!("{}_snapshots", self.name),
        }
    }

    /// The sequence that numbers the events.
    pub fn sequence_quoted(&self) -> String {
        self.companion("_seq")
    }

    /// The name as given (`schema.table` or `table`).
    pub fn qualified(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }

    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The DDL the store applies (idempotent). `initdb/001_events.sql` is this text for the
/// default table `events`.
///
/// Next to the events, a key index: one row per top-level scalar payload field of each event,
/// holding a 64-bit hash of the field's name and value (see [`crate::guard::index_keys`]).
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

/// Saves a snapshot unless one with a higher sequence number exists: `$1` projection type,
/// `$2` filter hash, `$3` sequence number, `$4` data. Affects one row when it saved.
pub fn save_snapshot(table: &TableName) -> String {
    let t = table.quoted();
    format!(
        "INSERT INTO {t} AS s (projection_type, filter_hash, sequence_number, data) \
         VALUES ($1, $2, $3, $4::jsonb) \
         ON CONFLICT (projection_type, filter_hash) DO UPDATE \
         SET sequence_number = excluded.sequence_number, data = excluded.data, created_at = now() \
         WHERE s.sequence_number <= excluded.sequence_number"
    )
}

pub fn load_snapshot(table: &TableName) -> String {
    format!(
        "SELECT sequence_number, data, created_at FROM {} WHERE projection_type = $1 AND filter_hash = $2",
        table.quoted()
    )
}

pub fn delete_snapshot(table: &TableName) -> String {
    format!(
        "DELETE FROM {} WHERE projection_type = $1 AND filter_hash = $2",
        table.quoted()
    )
}

/// The columns of an event, in the order every read returns them.
const COLUMNS: &str = "sequence_number, occurred_at, event_type, payload, metadata";

/// Takes the guard's advisory locks in the order given: `$1` keys, `$2` exclusive flags.
/// `unnest` yields rows in array order, so the locks are taken in that order.
pub const LOCK: &str = "SELECT CASE WHEN x THEN pg_advisory_xact_lock(k) \
     ELSE pg_advisory_xact_lock_shared(k) END \
     FROM unnest($1::bigint[], $2::bool[]) AS u(k, x)";

/// Serialises concurrent schema creation (`CREATE ... IF NOT EXISTS` races otherwise).
pub const LOCK_ONE: &str = "SELECT pg_advisory_xact_lock($1)";

/// A bind parameter. Each variant delegates to the tokio-postgres conversion of its type.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlParam {
    Text(String),
    TextArray(Vec<String>),
    Json(Value),
    JsonArray(Vec<Value>),
    /// Microseconds since the Unix epoch, sent as `timestamptz`.
    Timestamp(i64),
    TimestampArray(Vec<i64>),
    BigInt(i64),
    BigIntArray(Vec<i64>),
    BoolArray(Vec<bool>),
}

pub(crate) fn micros_to_system_time(micros: i64) -> SystemTime {
    let d = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

pub(crate) fn system_time_to_micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

impl ToSql for SqlParam {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Self::Text(v) => v.to_sql_checked(ty, out),
            Self::TextArray(v) => v.to_sql_checked(ty, out),
            Self::Json(v) => Json(v).to_sql_checked(ty, out),
            Self::JsonArray(v) => v
                .iter()
                .map(Json)
                .collect::<Vec<_>>()
                .to_sql_checked(ty, out),
            Self::Timestamp(v) => micros_to_system_time(*v).to_sql_checked(ty, out),
            Self::TimestampArray(v) => v
                .iter()
                .map(|m| micros_to_system_time(*m))
                .collect::<Vec<_>>()
                .to_sql_checked(ty, out),
            Self::BigInt(v) => v.to_sql_checked(ty, out),
            Self::BigIntArray(v) => v.to_sql_checked(ty, out),
            Self::BoolArray(v) => v.to_sql_checked(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Each variant checks its own type in `to_sql`.
        true
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.to_sql(ty, out)
    }
}

/// A filter compiled to a boolean SQL condition and its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// Empty when the filter matches every event.
    pub sql: String,
    pub params: Vec<SqlParam>,
}

struct Compiler {
    params: Vec<SqlParam>,
    first: usize,
}

impl Compiler {
    fn new(first: usize) -> Self {
        Self {
            params: Vec::new(),
            first,
        }
    }

    /// Where the events matching `lookup` are looked for: `(ctes, from)`, common table
    /// expressions to put in front of the statement and the relation to select from. With
    /// no key index lookup, the table itself. Otherwise a superset of the events `lookup`
    /// stands for: the key index's candidates (and the event-type index's, for items
    /// without predicates), fetched by the row address each key row holds where it still
    /// names the candidate, and through the primary key where it does not. `after`
    /// narrows the index range scans.
    fn source(
        &mut self,
        table: &TableName,
        lookup: Option<&Lookup>,
        after: Option<&str>,
    ) -> (String, String) {
        let t = table.quoted();
        let Some(lookup) = lookup.filter(|l| l.uses_key_index()) else {
            return (String::new(), t);
        };
        let after = after.map_or(String::new(), |a| format!(" AND sequence_number > {a}"));
        let keys = self.bind(SqlParam::BigIntArray(lookup.keys.clone()));
        let mut candidates = format!(
            "SELECT sequence_number, tid FROM {} WHERE key = ANY({keys}::bigint[]){after}",
            table.keys_quoted()
        );
        if !lookup.types.is_empty() {
            let types = self.bind(SqlParam::TextArray(lookup.types.clone()));
            let _ = write!(
                candidates,
                " UNION ALL SELECT sequence_number, NULL::tid FROM {t} WHERE event_type = ANY({types}::text[]){after}"
            );
        }
        // Arrays, not joins: the row addresses become one TID scan, and the rest one sorted,
        // deduplicated walk of the primary key.
        let ctes = format!(
            "candidate AS MATERIALIZED ({candidates}), \
             hit AS MATERIALIZED (SELECT {COLUMNS} FROM {t} \
                 WHERE ctid = ANY(ARRAY(SELECT tid FROM candidate)) \
                 AND sequence_number = ANY(ARRAY(SELECT sequence_number FROM candidate)))"
        );
        let from = format!(
            "(SELECT {COLUMNS} FROM hit UNION ALL SELECT {COLUMNS} FROM {t} \
             WHERE sequence_number = ANY(ARRAY(\
                 SELECT sequence_number FROM candidate EXCEPT SELECT sequence_number FROM hit))) AS e"
        );
        (ctes, from)
    }

    fn bind(&mut self, p: SqlParam) -> String {
        self.params.push(p);
        format!("${}", self.first + self.params.len() - 1)
    }

    fn containment(&mut self, object: serde_json::Map<String, Value>) -> String {
        format!(
            "payload @> {}::jsonb",
            self.bind(SqlParam::Json(Value::Object(object)))
        )
    }

    fn item(&mut self, item: &FilterItem) -> (String, usize) {
        let mut parts = Vec::new();
        match item.event_types() {
            [] => {}
            [one] => parts.push(format!(
                "event_type = {}",
                self.bind(SqlParam::Text(one.clone()))
            )),
            many => parts.push(format!(
                "event_type = ANY({}::text[])",
                self.bind(SqlParam::TextArray(many.to_vec()))
            )),
        }
        match item.predicates() {
            None => {}
            Some(PredicateGroup::All(preds)) => {
                // One containment of the merged object, unless a key repeats (then each
                // predicate stands alone and the AND can never hold for two values).
                let mut merged = serde_json::Map::new();
                let unique = preds
                    .iter()
                    .all(|p| merged.insert(p.key.clone(), p.value.to_json()).is_none());
                if unique {
                    parts.push(self.containment(merged));
                } else {
                    for p in preds {
                        let mut one = serde_json::Map::new();
                        one.insert(p.key.clone(), p.value.to_json());
                        parts.push(self.containment(one));
                    }
                }
            }
            Some(PredicateGroup::Any(preds)) => {
                let alternatives: Vec<String> = preds
                    .iter()
                    .map(|p| {
                        let mut one = serde_json::Map::new();
                        one.insert(p.key.clone(), p.value.to_json());
                        self.containment(one)
                    })
                    .collect();
                parts.push(format!("({})", alternatives.join(" OR ")));
            }
        }
        let n = parts.len();
        (parts.join(" AND "), n)
    }
}

impl Compiler {
    /// The exact condition of `filter` (empty when it matches every event).
    fn condition(&mut self, filter: &Filter) -> String {
        let mut clauses = Vec::new();
        let compiled: Vec<(String, usize)> = filter.items().iter().map(|i| self.item(i)).collect();
        match compiled.len() {
            0 => {}
            1 => clauses.extend(compiled.into_iter().map(|(s, _)| s)),
            _ => {
                let ors: Vec<String> = compiled
                    .into_iter()
                    .map(|(s, parts)| if parts > 1 { format!("({s})") } else { s })
                    .collect();
                clauses.push(format!("({})", ors.join(" OR ")));
            }
        }
        match filter.bound() {
            Bound::None => {}
            Bound::OccurredFrom(f) => {
                clauses.push(format!(
                    "occurred_at >= {}",
                    self.bind(SqlParam::Timestamp(f))
                ));
            }
            Bound::OccurredUntil(u) => {
                clauses.push(format!(
                    "occurred_at <= {}",
                    self.bind(SqlParam::Timestamp(u))
                ));
            }
            Bound::OccurredBetween(f, u) => {
                clauses.push(format!(
                    "occurred_at >= {}",
                    self.bind(SqlParam::Timestamp(f))
                ));
                clauses.push(format!(
                    "occurred_at <= {}",
                    self.bind(SqlParam::Timestamp(u))
                ));
            }
            Bound::SequenceNumberAbove(n) => {
                clauses.push(format!(
                    "sequence_number > {}",
                    self.bind(SqlParam::BigInt(n))
                ));
            }
        }
        clauses.join(" AND ")
    }
}

/// Compiles `filter` to its exact condition, with parameters numbered from `$first`.
pub fn compile(filter: &Filter, first: usize) -> Condition {
    let mut c = Compiler::new(first);
    let sql = c.condition(filter);
    Condition {
        sql,
        params: c.params,
    }
}

/// The query for `filter`: matching events in ascending sequence order.
pub fn query(table: &TableName, filter: &Filter) -> (String, Vec<SqlParam>) {
    query_with(table, filter, guard::lookup(table, filter).as_ref())
}

/// [`query`] with the filter's key index lookup already derived.
pub fn query_with(
    table: &TableName,
    filter: &Filter,
    lookup: Option<&Lookup>,
) -> (String, Vec<SqlParam>) {
    let mut c = Compiler::new(1);
    let keyed = lookup.is_some_and(Lookup::uses_key_index);
    let after = match filter.bound() {
        Bound::SequenceNumberAbove(n) if keyed => Some(c.bind(SqlParam::BigInt(n))),
        _ => None,
    };
    let (ctes, from) = c.source(table, lookup, after.as_deref());
    let condition = c.condition(filter);
    let mut sql = String::new();
    if !ctes.is_empty() {
        let _ = write!(sql, "WITH {ctes} ");
    }
    let _ = write!(sql, "SELECT {COLUMNS} FROM {from}");
    if !condition.is_empty() {
        let _ = write!(sql, " WHERE {condition}");
    }
    sql.push_str(" ORDER BY sequence_number");
    (sql, c.params)
}

/// The guarded insert. `$1..$4` are the events' columns as arrays, `$5` the expected maximum
/// sequence number, `$6` and `$7` the key index rows (key, 1-based event position); the
/// filter's parameters follow. It inserts every event and its keys, or nothing, and returns
/// the assigned sequence numbers in event order (no rows: the guard failed).
pub fn guarded_insert(table: &TableName, filter: &Filter) -> (String, Vec<SqlParam>) {
    guarded_insert_with(table, filter, guard::lookup(table, filter).as_ref())
}

/// [`guarded_insert`] with the filter's key index lookup already derived.
pub fn guarded_insert_with(
    table: &TableName,
    filter: &Filter,
    lookup: Option<&Lookup>,
) -> (String, Vec<SqlParam>) {
    let mut c = Compiler::new(8);
    let (ctes, from) = c.source(table, lookup, Some("$5"));
    let mut check = vec!["sequence_number > $5".to_owned(), c.condition(filter)];
    check.retain(|s| !s.is_empty());
    let check = check.join(" AND ");
    let ctes = if ctes.is_empty() {
        ctes
    } else {
        format!("{ctes}, ")
    };
    let t = table.quoted();
    let keys = table.keys_quoted();
    let seq = table.sequence_quoted();
    let sql = format!(
        "WITH {ctes}new AS (\
             SELECT nextval('{seq}') AS sequence_number, o, e, p, m, i \
             FROM unnest($1::timestamptz[], $2::text[], $3::jsonb[], $4::jsonb[]) WITH ORDINALITY AS u(o, e, p, m, i) \
             WHERE NOT EXISTS (SELECT 1 FROM {from} WHERE {check})\
         ), stored AS (\
             INSERT INTO {t} (sequence_number, occurred_at, event_type, payload, metadata) \
             SELECT sequence_number, o, e, p, m FROM new RETURNING sequence_number, ctid\
         ), indexed AS (\
             INSERT INTO {keys} (key, sequence_number, tid) \
             SELECT k.key, new.sequence_number, stored.ctid \
             FROM unnest($6::bigint[], $7::bigint[]) AS k(key, i) JOIN new USING (i) JOIN stored USING (sequence_number)\
         ) \
         SELECT sequence_number FROM new ORDER BY i"
    );
    (sql, c.params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{Predicate, PredicateValue};

    fn types(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_string()).collect()
    }

    fn p(k: &str, v: &str) -> Predicate {
        Predicate {
            key: k.into(),
            value: PredicateValue::Str(v.into()),
        }
    }

    fn obj(k: &str, v: Value) -> SqlParam {
        let mut object = serde_json::Map::new();
        object.insert(k.to_owned(), v);
        SqlParam::Json(Value::Object(object))
    }

    fn table() -> TableName {
        TableName::parse("events").unwrap()
    }

    #[test]
    fn table_names_are_validated() {
        for ok in ["events", "_e1", "app.events", "A_b.C9"] {
            assert!(TableName::parse(ok).is_ok(), "{ok}");
        }
        let long = "x".repeat(MAX_TABLE_NAME + 1);
        for bad in [
            "",
            "1events",
            "ev-ents",
            "ev ents",
            "a.b.c",
            ".events",
            "events.",
            "e\"; DROP TABLE x; --",
            "événements",
            long.as_str(),
        ] {
            assert!(TableName::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            TableName::parse("app.events").unwrap().quoted(),
            "\"app\".\"events\""
        );
    }

    #[test]
    fn initdb_holds_the_same_ddl() {
        let body = |file: &str| {
            file.lines()
                .skip_while(|l| l.starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let events = include_str!("../initdb/001_events.sql");
        assert_eq!(body(events).trim(), create_schema(&table()).trim());
        let snapshots = include_str!("../initdb/002_snapshots.sql");
        assert_eq!(
            body(snapshots).trim(),
            create_snapshots(&table().snapshots()).trim()
        );
    }

    #[test]
    fn any_event_has_no_condition() {
        let f = Filter::any_event(Bound::None).unwrap();
        assert_eq!(
            query(&table(), &f).0,
            "SELECT sequence_number, occurred_at, event_type, payload, metadata \
             FROM \"events\" ORDER BY sequence_number"
        );
    }

    #[test]
    fn one_type() {
        let f = Filter::new(
            vec![FilterItem::new(types(&["A"]), None).unwrap()],
            Bound::None,
        )
        .unwrap();
        let c = compile(&f, 1);
        assert_eq!(c.sql, "event_type = $1");
        assert_eq!(c.params, vec![SqlParam::Text("A".into())]);
    }

    #[test]
    fn several_types() {
        let f = Filter::new(
            vec![FilterItem::new(types(&["B", "A"]), None).unwrap()],
            Bound::None,
        )
        .unwrap();
        let c = compile(&f, 1);
        assert_eq!(c.sql, "event_type = ANY($1::text[])");
        assert_eq!(c.params, vec![SqlParam::TextArray(types(&["A", "B"]))]);
    }

    #[test]
    fn all_predicates_merge_into_one_containment() {
        let item = FilterItem::new(
            vec![],
            Some(PredicateGroup::All(vec![p("b", "2"), p("a", "1")])),
        )
        .unwrap();
        let c = compile(&Filter::new(vec![item], Bound::None).unwrap(), 1);
        assert_eq!(c.sql, "payload @> $1::jsonb");
        assert_eq!(
            c.params,
            vec![SqlParam::Json(serde_json::json!({"a": "1", "b": "2"}))]
        );
    }

    #[test]
    fn all_predicates_with_a_repeated_key_stay_apart() {
        let item = FilterItem::new(
            vec![],
            Some(PredicateGroup::All(vec![p("a", "2"), p("a", "1")])),
        )
        .unwrap();
        let c = compile(&Filter::new(vec![item], Bound::None).unwrap(), 1);
        assert_eq!(c.sql, "payload @> $1::jsonb AND payload @> $2::jsonb");
        assert_eq!(c.params, vec![obj("a", "1".into()), obj("a", "2".into())]);
    }

    #[test]
    fn types_and_any_predicates() {
        let item = FilterItem::new(
            types(&["A", "B"]),
            Some(PredicateGroup::Any(vec![
                p("k", "v"),
                Predicate {
                    key: "n".into(),
                    value: PredicateValue::Int(3),
                },
                Predicate {
                    key: "f".into(),
                    value: PredicateValue::Bool(true),
                },
            ])),
        )
        .unwrap();
        let c = compile(&Filter::new(vec![item], Bound::None).unwrap(), 1);
        assert_eq!(
            c.sql,
            "event_type = ANY($1::text[]) AND (payload @> $2::jsonb OR payload @> $3::jsonb OR payload @> $4::jsonb)"
        );
        assert_eq!(
            c.params,
            vec![
                SqlParam::TextArray(types(&["A", "B"])),
                obj("f", true.into()),
                obj("k", "v".into()),
                obj("n", 3.into()),
            ]
        );
    }

    #[test]
    fn items_or_and_bounds() {
        let a =
            FilterItem::new(types(&["A"]), Some(PredicateGroup::All(vec![p("k", "1")]))).unwrap();
        let b = FilterItem::new(types(&["B"]), None).unwrap();
        for (bound, tail, extra) in [
            (
                Bound::OccurredFrom(7),
                " AND occurred_at >= $5",
                vec![SqlParam::Timestamp(7)],
            ),
            (
                Bound::OccurredUntil(8),
                " AND occurred_at <= $5",
                vec![SqlParam::Timestamp(8)],
            ),
            (
                Bound::OccurredBetween(7, 8),
                " AND occurred_at >= $5 AND occurred_at <= $6",
                vec![SqlParam::Timestamp(7), SqlParam::Timestamp(8)],
            ),
            (
                Bound::SequenceNumberAbove(9),
                " AND sequence_number > $5",
                vec![SqlParam::BigInt(9)],
            ),
            (Bound::None, "", vec![]),
        ] {
            let f = Filter::new(vec![b.clone(), a.clone()], bound).unwrap();
            let c = compile(&f, 2);
            assert_eq!(
                c.sql,
                format!("((event_type = $2 AND payload @> $3::jsonb) OR event_type = $4){tail}")
            );
            let mut params = vec![
                SqlParam::Text("A".into()),
                obj("k", "1".into()),
                SqlParam::Text("B".into()),
            ];
            params.extend(extra);
            assert_eq!(c.params, params);
        }
    }

    #[test]
    fn guarded_insert_numbers_filter_params_after_the_events() {
        let f = Filter::new(
            vec![FilterItem::new(types(&["A"]), None).unwrap()],
            Bound::None,
        )
        .unwrap();
        let (sql, params) = guarded_insert(&table(), &f);
        assert!(sql.contains("WHERE NOT EXISTS (SELECT 1 FROM \"events\" WHERE sequence_number > $5 AND event_type = $8)"), "{sql}");
        assert!(sql.contains("nextval('\"events_seq\"')"), "{sql}");
        assert_eq!(params, vec![SqlParam::Text("A".into())]);
    }

    #[test]
    fn only_key_index_lookups_count_as_value_independent() {
        let keyed =
            FilterItem::new(types(&["A"]), Some(PredicateGroup::All(vec![p("k", "v")]))).unwrap();
        let types_only = FilterItem::new(types(&["A"]), None).unwrap();
        let bound = Bound::SequenceNumberAbove(3);
        let uses = |f: Filter| guard::lookup(&table(), &f).is_some_and(|l| l.uses_key_index());
        assert!(uses(Filter::new(vec![keyed.clone()], bound).unwrap()));
        assert!(uses(
            Filter::new(vec![keyed, types_only.clone()], bound).unwrap()
        ));
        assert!(!uses(Filter::new(vec![types_only], bound).unwrap()));
        assert!(!uses(Filter::any_event(bound).unwrap()));
    }

    #[test]
    fn every_parameter_is_referenced() {
        let types_only = FilterItem::new(types(&["A"]), None).unwrap();
        for bound in [
            Bound::None,
            Bound::SequenceNumberAbove(3),
            Bound::OccurredFrom(1),
        ] {
            for f in [
                Filter::new(vec![types_only.clone()], bound).unwrap(),
                Filter::any_event(bound).unwrap(),
            ] {
                let (sql, params) = query(&table(), &f);
                for n in 1..=params.len() {
                    assert!(sql.contains(&format!("${n}")), "${n} unused in {sql}");
                }
                assert!(!sql.contains(&format!("${}", params.len() + 1)), "{sql}");
            }
        }
    }

    #[test]
    fn predicates_are_looked_up_in_the_key_index() {
        let item = FilterItem::new(
            types(&["A"]),
            Some(PredicateGroup::Any(vec![p("k", "1"), p("j", "2")])),
        )
        .unwrap();
        let other = FilterItem::new(types(&["B"]), None).unwrap();
        let f = Filter::new(vec![item.clone()], Bound::SequenceNumberAbove(4)).unwrap();
        let (sql, params) = query(&table(), &f);
        assert_eq!(
            sql,
            "WITH candidate AS MATERIALIZED (\
                 SELECT sequence_number, tid FROM \"events_keys\" WHERE key = ANY($2::bigint[]) AND sequence_number > $1), \
             hit AS MATERIALIZED (SELECT sequence_number, occurred_at, event_type, payload, metadata FROM \"events\" \
                 WHERE ctid = ANY(ARRAY(SELECT tid FROM candidate)) \
                 AND sequence_number = ANY(ARRAY(SELECT sequence_number FROM candidate))) \
             SELECT sequence_number, occurred_at, event_type, payload, metadata \
             FROM (SELECT sequence_number, occurred_at, event_type, payload, metadata FROM hit \
                 UNION ALL SELECT sequence_number, occurred_at, event_type, payload, metadata FROM \"events\" \
                 WHERE sequence_number = ANY(ARRAY(\
                     SELECT sequence_number FROM candidate EXCEPT SELECT sequence_number FROM hit))) AS e \
             WHERE event_type = $3 AND (payload @> $4::jsonb OR payload @> $5::jsonb) AND sequence_number > $6 \
             ORDER BY sequence_number"
        );
        let lookup = guard::lookup(&table(), &f).unwrap();
        assert_eq!(
            params[..2],
            [SqlParam::BigInt(4), SqlParam::BigIntArray(lookup.keys)]
        );

        // An item without predicates adds its types to the candidates.
        let f = Filter::new(vec![item, other], Bound::None).unwrap();
        let (sql, _) = guarded_insert(&table(), &f);
        assert!(
            sql.contains("candidate AS MATERIALIZED (\
                              SELECT sequence_number, tid FROM \"events_keys\" WHERE key = ANY($8::bigint[]) AND sequence_number > $5 \
                              UNION ALL SELECT sequence_number, NULL::tid FROM \"events\" WHERE event_type = ANY($9::text[]) AND sequence_number > $5)"),
            "{sql}"
        );
    }

    #[test]
    fn hostile_strings_only_travel_as_parameters() {
        let evil = "'); DROP TABLE events; --\"\\";
        let item = FilterItem::new(
            vec![evil.to_string()],
            Some(PredicateGroup::All(vec![p(evil, evil)])),
        )
        .unwrap();
        let (sql, params) = query(&table(), &Filter::new(vec![item], Bound::None).unwrap());
        assert!(!sql.contains("DROP"), "{sql}");
        assert_eq!(params.len(), 3);
    }
}
