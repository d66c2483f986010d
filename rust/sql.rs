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
pub fn create_schema(table: &TableName) -> String {
    let t = table.quoted();
    let n = table.name();
    let mut sql = String::new();
    if let Some(s) = table.schema() {
        let _ = writeln!(sql, "CREATE SCHEMA IF NOT EXISTS \"{s}\";\n");
    }
    let _ = write!(
        sql,
        "CREATE TABLE IF NOT EXISTS {t} (
    sequence_number bigserial PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    event_type text NOT NULL CHECK (event_type <> ''),
    payload jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    metadata jsonb NOT NULL DEFAULT '{{}}' CHECK (jsonb_typeof(metadata) = 'object')
);

CREATE INDEX IF NOT EXISTS \"{n}_event_type_idx\" ON {t} (event_type);
CREATE INDEX IF NOT EXISTS \"{n}_occurred_at_idx\" ON {t} (occurred_at);
CREATE INDEX IF NOT EXISTS \"{n}_payload_idx\" ON {t} USING gin (payload jsonb_path_ops);
"
    );
    sql
}

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

/// Compiles `filter` to a condition whose parameters are numbered from `$first`.
pub fn compile(filter: &Filter, first: usize) -> Condition {
    let mut c = Compiler {
        params: Vec::new(),
        first,
    };
    let mut clauses = Vec::new();
    let items = filter.items();
    if !items.is_empty() {
        let compiled: Vec<(String, usize)> = items.iter().map(|i| c.item(i)).collect();
        if compiled.len() == 1 {
            clauses.push(
                compiled
                    .into_iter()
                    .next()
                    .map(|(s, _)| s)
                    .unwrap_or_default(),
            );
        } else {
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
            clauses.push(format!("occurred_at >= {}", c.bind(SqlParam::Timestamp(f))));
        }
        Bound::OccurredUntil(u) => {
            clauses.push(format!("occurred_at <= {}", c.bind(SqlParam::Timestamp(u))));
        }
        Bound::OccurredBetween(f, u) => {
            clauses.push(format!("occurred_at >= {}", c.bind(SqlParam::Timestamp(f))));
            clauses.push(format!("occurred_at <= {}", c.bind(SqlParam::Timestamp(u))));
        }
        Bound::SequenceNumberAbove(n) => {
            clauses.push(format!("sequence_number > {}", c.bind(SqlParam::BigInt(n))));
        }
    }
    // Several clauses with a single OR-ed item list: the list is already parenthesised.
    Condition {
        sql: clauses.join(" AND "),
        params: c.params,
    }
}

/// The query for `filter`: matching events in ascending sequence order.
pub fn query(table: &TableName, filter: &Filter) -> (String, Vec<SqlParam>) {
    let cond = compile(filter, 1);
    let mut sql = format!(
        "SELECT sequence_number, occurred_at, event_type, payload::text, metadata::text FROM {}",
        table.quoted()
    );
    if !cond.sql.is_empty() {
        let _ = write!(sql, " WHERE {}", cond.sql);
    }
    sql.push_str(" ORDER BY sequence_number");
    (sql, cond.params)
}

/// The guarded insert: `$1..$4` are the events' columns as arrays, `$5` the expected maximum
/// sequence number, the filter's parameters follow. It inserts every event or none, and
/// returns the assigned sequence numbers (no rows: the guard failed).
pub fn guarded_insert(table: &TableName, filter: &Filter) -> (String, Vec<SqlParam>) {
    let cond = compile(filter, 6);
    let t = table.quoted();
    let extra = if cond.sql.is_empty() {
        String::new()
    } else {
        format!(" AND {}", cond.sql)
    };
    let sql = format!(
        "INSERT INTO {t} (occurred_at, event_type, payload, metadata) \
         SELECT o, e, p, m FROM unnest($1::timestamptz[], $2::text[], $3::jsonb[], $4::jsonb[]) AS u(o, e, p, m) \
         WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE sequence_number > $5{extra}) \
         RETURNING sequence_number"
    );
    (sql, cond.params)
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
        let file = include_str!("../initdb/001_events.sql");
        let body: String = file
            .lines()
            .skip_while(|l| l.starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(body.trim(), create_schema(&table()).trim());
    }

    #[test]
    fn any_event_has_no_condition() {
        let f = Filter::any_event(Bound::None).unwrap();
        assert_eq!(
            query(&table(), &f).0,
            "SELECT sequence_number, occurred_at, event_type, payload::text, metadata::text \
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
        assert!(
            sql.contains("WHERE sequence_number > $5 AND event_type = $6"),
            "{sql}"
        );
        assert_eq!(params, vec![SqlParam::Text("A".into())]);
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
        assert_eq!(params.len(), 2);
    }
}
