//! The statements the store runs, each built with its parameters by one function.

use std::fmt::Write as _;

use serde_json::Value;

use crate::event::StorableEvent;
use crate::filter::{Bound, Filter};
use crate::guard::LockSet;
use crate::keys::{self, Lookup};
use crate::sql::compiler::{Compiler, PageSql, COLUMNS};
use crate::sql::param::{SqlParam, Statement};
use crate::table::TableName;

/// Takes the guard's advisory locks in the order given. `unnest` yields rows in array
/// order, so the locks are taken in that order.
pub fn lock(locks: LockSet) -> Statement {
    let (keys, modes) = locks.into_arrays();
    Statement {
        plan_per_call: false,
        sql: "SELECT CASE WHEN x THEN pg_advisory_xact_lock(k) \
              ELSE pg_advisory_xact_lock_shared(k) END \
              FROM unnest($1::bigint[], $2::bool[]) AS u(k, x)"
            .to_owned(),
        params: vec![SqlParam::BigIntArray(keys), SqlParam::BoolArray(modes)],
    }
}

/// Serialises schema changes on `table` (`CREATE ... IF NOT EXISTS` races otherwise): a
/// session lock, so that each change can commit on its own while it is held.
pub fn lock_schema(table: &TableName) -> Statement {
    Statement {
        plan_per_call: false,
        sql: "SELECT pg_advisory_lock($1)".to_owned(),
        params: vec![SqlParam::BigInt(keys::schema_key(table))],
    }
}

/// Releases [`lock_schema`].
pub fn unlock_schema(table: &TableName) -> Statement {
    Statement {
        plan_per_call: false,
        sql: "SELECT pg_advisory_unlock($1)".to_owned(),
        params: vec![SqlParam::BigInt(keys::schema_key(table))],
    }
}

/// The events matching `filter`, whose key index lookup is `lookup`, in ascending sequence
/// order.
pub fn query(table: &TableName, filter: &Filter, lookup: Option<&Lookup>) -> Statement {
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
    c.finish(sql)
}

/// The condition of an append: no event matching `filter` (whose lookup is `lookup`) has a
/// sequence number above `expected`.
pub struct Guard<'a> {
    pub filter: &'a Filter,
    pub lookup: Option<&'a Lookup>,
    pub expected: i64,
}

/// The insert of `events`: it inserts every event and its key index rows, or, with a
/// `guard`, nothing when the guard's condition fails. It returns the assigned sequence
/// numbers in event order (no rows: the guard failed).
pub fn insert(table: &TableName, guard: Option<&Guard<'_>>, events: &[StorableEvent]) -> Statement {
    let mut c = Compiler::new(1);
    let occurred = c.bind(SqlParam::TimestampArray(
        events.iter().map(StorableEvent::occurred_at).collect(),
    ));
    let types = c.bind(SqlParam::TextArray(
        events.iter().map(|e| e.event_type().to_owned()).collect(),
    ));
    let object = |m: &serde_json::Map<String, Value>| Value::Object(m.clone());
    let payloads = c.bind(SqlParam::JsonArray(
        events.iter().map(|e| object(e.payload())).collect(),
    ));
    let metadata = c.bind(SqlParam::JsonArray(
        events.iter().map(|e| object(e.metadata())).collect(),
    ));
    let ids: Vec<_> = events.iter().map(StorableEvent::id).collect();
    let with_ids = ids.iter().any(Option::is_some);
    let ids = c.bind(SqlParam::UuidArray(ids));
    // Tags, when any event has some: each event's as a JSON array (a text[][] must be
    // rectangular). Without, the column keeps its default and the statement its text.
    let tags = events.iter().any(|e| !e.tags().is_empty()).then(|| {
        c.bind(SqlParam::JsonArray(
            events
                .iter()
                .map(|e| Value::from(e.tags().to_vec()))
                .collect(),
        ))
    });
    // The key index rows: (key, 1-based position of the event).
    let (mut index_keys, mut positions) = (Vec::new(), Vec::new());
    for (position, event) in (1_i64..).zip(events) {
        for key in keys::index_keys(table, event.payload(), event.tags()) {
            index_keys.push(key);
            positions.push(position);
        }
    }
    let index_keys = c.bind(SqlParam::BigIntArray(index_keys));
    let positions = c.bind(SqlParam::BigIntArray(positions));

    let t = table.quoted();
    let mut unless = Vec::new();
    if let Some(g) = guard {
        // Each candidate above `expected` is looked up by its sequence number until one
        // matches: a guard that holds finds no candidate, and so fetches nothing.
        let expected = c.bind(SqlParam::BigInt(g.expected));
        let candidates = c.candidates(table, g.lookup, Some(&expected));
        let mut check = vec![
            format!("sequence_number > {expected}"),
            c.condition(g.filter),
        ];
        check.retain(|s| !s.is_empty());
        let check = check.join(" AND ");
        unless.push(match candidates {
            Some(candidates) => format!(
                "NOT EXISTS (SELECT 1 FROM ({candidates}) AS c CROSS JOIN LATERAL (\
                     SELECT 1 FROM {t} WHERE sequence_number = c.sequence_number AND {check} LIMIT 1) AS e)"
            ),
            None => format!("NOT EXISTS (SELECT 1 FROM {t} WHERE {check})"),
        });
    }
    if with_ids {
        // Nothing when one of the ids is stored already (see [`stored_ids`]).
        unless.push(format!(
            "NOT EXISTS (SELECT 1 FROM {t} WHERE id = ANY({ids}::uuid[]))"
        ));
    }
    let unless = if unless.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", unless.join(" AND "))
    };
    let key_table = table.keys_quoted();
    let seq = table.sequence_quoted();
    // The tags' parameter unnested as `g`, and the column it fills.
    let (tags_in, g, tags_column, tags_value) = match tags {
        Some(p) => (
            format!(", {p}::jsonb[]"),
            ", g",
            ", tags",
            ", ARRAY(SELECT jsonb_array_elements_text(g))",
        ),
        None => (String::new(), "", "", ""),
    };
    let sql = format!(
        "WITH new AS (\
             SELECT nextval('{seq}') AS sequence_number, o, e, p, m, d{g}, i \
             FROM unnest({occurred}::timestamptz[], {types}::text[], {payloads}::jsonb[], {metadata}::jsonb[], {ids}::uuid[]{tags_in}) \
                 WITH ORDINALITY AS u(o, e, p, m, d{g}, i)\
             {unless}\
         ), stored AS (\
             INSERT INTO {t} (sequence_number, occurred_at, event_type, payload, metadata, id{tags_column}) \
             SELECT sequence_number, o, e, p, m, d{tags_value} FROM new RETURNING sequence_number, ctid\
         ), indexed AS (\
             INSERT INTO {key_table} (key, sequence_number, tid) \
             SELECT k.key, new.sequence_number, stored.ctid \
             FROM unnest({index_keys}::bigint[], {positions}::bigint[]) AS k(key, i) JOIN new USING (i) JOIN stored USING (sequence_number)\
         ) \
         SELECT sequence_number FROM new ORDER BY i"
    );
    c.finish(sql)
}

/// One page of a read: the events matching `filter` (whose lookup is `lookup`) among
/// `$1 < sequence_number <= $2`, at most `$3`, the first in ascending or (`backwards`)
/// descending order, returned in no particular order (the reader sorts them). Each row ends
/// with the sequence number the page's scan reached when the statement can tell (through the
/// key index or the event-type index), NULL when it reached the end of the range or the rows
/// tell (see [`crate::store::Reader`]); a page of no events is then one row of NULL events. A
/// match-all filter walks the primary key.
pub fn page(
    table: &TableName,
    filter: &Filter,
    lookup: Option<&Lookup>,
    range: (i64, i64),
    limit: i64,
    backwards: bool,
) -> Statement {
    let mut c = Compiler::new(1);
    let page = PageSql {
        lower: c.bind(SqlParam::BigInt(range.0)),
        upper: c.bind(SqlParam::BigInt(range.1)),
        limit: c.bind(SqlParam::BigInt(limit)),
        order: if backwards { "DESC" } else { "ASC" },
    };
    let PageSql {
        lower,
        upper,
        limit,
        order,
    } = &page;
    // Either way each page walks indexes in sequence order and stops at its limit, whatever
    // the table's statistics say (an unanalysed table must not make a page sort the range).
    let sql = if let Some(lookup) = lookup {
        let (ctes, from) = c.page_source(table, lookup, &page);
        let condition = c.condition(filter);
        let condition = if condition.is_empty() {
            String::new()
        } else {
            format!(" WHERE {condition}")
        };
        let edge = if backwards { "min" } else { "max" };
        format!(
                "WITH {ctes}, reached AS (\
                     SELECT CASE WHEN count(*) < {limit} THEN NULL ELSE {edge}(sequence_number) END AS at \
                     FROM candidate) \
                 SELECT e.*, reached.at FROM reached LEFT JOIN LATERAL (\
                     SELECT {COLUMNS} FROM {from}{condition}) AS e ON true"
            )
    } else {
        let mut clauses = vec![
            format!("sequence_number > {lower}"),
            format!("sequence_number <= {upper}"),
            c.condition(filter),
        ];
        clauses.retain(|s| !s.is_empty());
        format!(
            "SELECT {COLUMNS}, NULL::bigint FROM {} WHERE {} \
                 ORDER BY sequence_number {order} LIMIT {limit}",
            table.quoted(),
            clauses.join(" AND ")
        )
    };
    c.finish(sql)
}

/// The advisory lock every writer holds until it commits (the match-all key, shared), as
/// `pg_locks` shows it: `classid = $1 AND objid = $2`.
fn writers_lock(table: &TableName) -> Vec<SqlParam> {
    let key = keys::all_key(table);
    vec![
        SqlParam::BigInt((key >> 32) & 0xffff_ffff),
        SqlParam::BigInt(key & 0xffff_ffff),
    ]
}

const WRITERS: &str =
    "l.locktype = 'advisory' AND l.classid::bigint = $1 AND l.objid::bigint = $2 \
     AND l.objsubid = 1 AND l.granted \
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())";

/// The first step of finding the head: the last sequence number handed out (0 when none),
/// kept for [`head_below_mark`] in the transaction's setting `dynamic_streams.mark`, and, read
/// after it, the transactions that hold a writer's lock now (any of them may hold a number
/// at or below it and not have committed yet).
pub fn head_mark(table: &TableName) -> Statement {
    Statement {
        plan_per_call: false,
        sql: format!(
            "SELECT s.mark, ARRAY(SELECT l.virtualtransaction FROM pg_locks AS l \
                 WHERE {WRITERS} AND l.pid <> pg_backend_pid() AND s.mark IS NOT NULL) \
             FROM (SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS mark FROM {}) AS s \
             CROSS JOIN LATERAL set_config('dynamic_streams.mark', s.mark::text, true) AS kept",
            table.sequence_quoted()
        ),
        params: writers_lock(table),
    }
}

/// The last sequence number handed out (0 when none), and the visible sequence numbers
/// above `$1` up to it, at most `$2`, ascending (a walk of the primary key).
pub fn numbers_after(table: &TableName, after: i64, limit: i64) -> Statement {
    Statement {
        plan_per_call: false,
        sql: format!(
            "SELECT s.last, ARRAY(SELECT sequence_number FROM {} \
                 WHERE sequence_number > $1 AND sequence_number <= s.last \
                 ORDER BY sequence_number LIMIT $2) \
             FROM (SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS last FROM {}) AS s",
            table.quoted(),
            table.sequence_quoted()
        ),
        params: vec![SqlParam::BigInt(after), SqlParam::BigInt(limit)],
    }
}

/// How many of the transactions `$3` still hold a writer's lock.
pub fn writers_still_running(table: &TableName, transactions: Vec<String>) -> Statement {
    let mut params = writers_lock(table);
    params.push(SqlParam::TextArray(transactions));
    Statement {
        plan_per_call: false,
        sql: format!(
            "SELECT count(*) FROM pg_locks AS l WHERE {WRITERS} AND l.virtualtransaction = ANY($3::text[])"
        ),
        params,
    }
}

/// The highest sequence number stored at or below the mark [`head_mark`] kept (0 when none).
pub fn head_below_mark(table: &TableName) -> Statement {
    Statement {
        plan_per_call: false,
        sql: format!(
            "SELECT coalesce(max(sequence_number), 0) FROM {} \
             WHERE sequence_number <= current_setting('dynamic_streams.mark')::bigint",
            table.quoted()
        ),
        params: vec![],
    }
}

/// The highest sequence number stored at or below `$1` (0 when none).
pub fn head_below(table: &TableName, mark: i64) -> Statement {
    Statement {
        plan_per_call: false,
        sql: format!(
            "SELECT coalesce(max(sequence_number), 0) FROM {} WHERE sequence_number <= $1",
            table.quoted()
        ),
        params: vec![SqlParam::BigInt(mark)],
    }
}

/// `$1` new sequence numbers, in ascending order.
pub fn draw_numbers(table: &TableName, count: usize) -> Statement {
    Statement {
        plan_per_call: false,
        sql: format!(
            "SELECT nextval('{}') FROM generate_series(1, $1::bigint)",
            table.sequence_quoted()
        ),
        params: vec![SqlParam::BigInt(i64::try_from(count).unwrap_or(i64::MAX))],
    }
}

/// The `COPY` that loads events whose sequence numbers were drawn ([`draw_numbers`]), in
/// the binary format, columns as [`COPY_TYPES`] lists them.
pub fn copy_events(table: &TableName) -> String {
    format!(
        "COPY {} (sequence_number, occurred_at, event_type, payload, metadata, id, tags) \
         FROM STDIN (FORMAT binary)",
        table.quoted()
    )
}

/// The column types of [`copy_events`].
pub const COPY_TYPES: [tokio_postgres::types::Type; 7] = {
    use tokio_postgres::types::Type;
    [
        Type::INT8,
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::JSONB,
        Type::JSONB,
        Type::UUID,
        Type::TEXT_ARRAY,
    ]
};

/// The key index rows of events loaded by [`copy_events`]: `$1` keys, `$2` their events'
/// sequence numbers, each row with its event's address.
pub fn index_copied(table: &TableName, events: &[(i64, &StorableEvent)]) -> Statement {
    let (mut index_keys, mut numbers) = (Vec::new(), Vec::new());
    for (number, event) in events {
        for key in keys::index_keys(table, event.payload(), event.tags()) {
            index_keys.push(key);
            numbers.push(*number);
        }
    }
    Statement {
        plan_per_call: false,
        sql: format!(
            "INSERT INTO {} (key, sequence_number, tid) \
             SELECT k.key, k.s, e.ctid FROM unnest($1::bigint[], $2::bigint[]) AS k(key, s) \
             JOIN {} AS e ON e.sequence_number = k.s",
            table.keys_quoted(),
            table.quoted()
        ),
        params: vec![
            SqlParam::BigIntArray(index_keys),
            SqlParam::BigIntArray(numbers),
        ],
    }
}

/// Which of `events` are stored already, by id: for each, its position among `events`
/// (from 1), its sequence number, and whether the stored event has the same type, payload
/// (JSON equality: `1.0` and `1` are the same number) and tags.
pub fn stored_ids(table: &TableName, events: &[StorableEvent]) -> Statement {
    let payloads = events
        .iter()
        .map(|e| Value::Object(e.payload().clone()))
        .collect();
    let tags = events
        .iter()
        .map(|e| Value::from(e.tags().to_vec()))
        .collect();
    Statement {
        plan_per_call: false,
        sql: format!(
            "SELECT u.i, t.sequence_number, t.event_type = u.e AND t.payload = u.p AND to_jsonb(t.tags) = u.g \
             FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::jsonb[]) WITH ORDINALITY AS u(d, e, p, g, i) \
             JOIN {} AS t ON t.id = u.d ORDER BY u.i",
            table.quoted()
        ),
        params: vec![
            SqlParam::UuidArray(events.iter().map(StorableEvent::id).collect()),
            SqlParam::TextArray(events.iter().map(|e| e.event_type().to_owned()).collect()),
            SqlParam::JsonArray(payloads),
            SqlParam::JsonArray(tags),
        ],
    }
}

/// Commits, then wakes the table's subscribers (see `pool::commit`). The channel is an
/// identifier the library makes from the table's name (`keys::channel`), never input.
pub fn commit_and_notify(table: &TableName) -> String {
    format!("COMMIT; NOTIFY \"{}\"", keys::channel(table))
}

/// Vacuums the key rows and the events: marks the pages written since the last vacuum
/// all-visible and sets their rows' hint bits (why: `upkeep.rs`). Never waits for a
/// lock (`SKIP_LOCKED`: another vacuum at work is left to it), and never truncates, which
/// would take a lock that holds off every read and write for a moment.
pub fn vacuum(table: &TableName) -> String {
    format!(
        "VACUUM (SKIP_LOCKED, TRUNCATE false) {}, {}",
        table.keys_quoted(),
        table.quoted()
    )
}

/// The position of the projection named `$1` (no row: none saved).
pub fn load_checkpoint(table: &TableName, name: &str) -> Statement {
    Statement {
        plan_per_call: false,
        sql: format!(
            "SELECT position FROM {} WHERE name = $1",
            table.checkpoints_quoted()
        ),
        params: vec![SqlParam::Text(name.to_owned())],
    }
}

/// Saves `$2` as the position of the projection named `$1`, unless a later one is saved
/// (positions only move forward). Affects one row when it saved.
pub fn save_checkpoint(table: &TableName, name: &str, position: i64) -> Statement {
    Statement {
        plan_per_call: false,
        sql: format!(
            "INSERT INTO {} AS c (name, position) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = now() \
             WHERE c.position < excluded.position",
            table.checkpoints_quoted()
        ),
        params: vec![SqlParam::Text(name.to_owned()), SqlParam::BigInt(position)],
    }
}

fn snapshot_key(projection_type: &str, filter_hash: &str) -> Vec<SqlParam> {
    vec![
        SqlParam::Text(projection_type.to_owned()),
        SqlParam::Text(filter_hash.to_owned()),
    ]
}

/// Saves a snapshot unless one with a higher sequence number exists. Affects one row when
/// it saved.
pub fn save_snapshot(
    table: &TableName,
    projection_type: &str,
    filter_hash: &str,
    sequence_number: i64,
    data: Value,
) -> Statement {
    let mut params = snapshot_key(projection_type, filter_hash);
    params.extend([SqlParam::BigInt(sequence_number), SqlParam::Json(data)]);
    Statement {
        plan_per_call: false,
        sql: format!(
            "INSERT INTO {} AS s (projection_type, filter_hash, sequence_number, data) \
             VALUES ($1, $2, $3, $4::jsonb) \
             ON CONFLICT (projection_type, filter_hash) DO UPDATE \
             SET sequence_number = excluded.sequence_number, data = excluded.data, created_at = now() \
             WHERE s.sequence_number <= excluded.sequence_number",
            table.quoted()
        ),
        params,
    }
}

/// The snapshot's sequence number, data and creation time.
pub fn load_snapshot(table: &TableName, projection_type: &str, filter_hash: &str) -> Statement {
    Statement {
        plan_per_call: false,
        sql: format!(
            "SELECT sequence_number, data, created_at FROM {} \
             WHERE projection_type = $1 AND filter_hash = $2",
            table.quoted()
        ),
        params: snapshot_key(projection_type, filter_hash),
    }
}

pub fn delete_snapshot(table: &TableName, projection_type: &str, filter_hash: &str) -> Statement {
    Statement {
        plan_per_call: false,
        sql: format!(
            "DELETE FROM {} WHERE projection_type = $1 AND filter_hash = $2",
            table.quoted()
        ),
        params: snapshot_key(projection_type, filter_hash),
    }
}

/// Drops the events table, its key index (and with them its sequence), the snapshots and
/// the checkpoints.
pub fn drop_tables(table: &TableName, snapshots: &TableName) -> String {
    format!(
        "DROP TABLE IF EXISTS {}, {}, {}, {}",
        table.quoted(),
        table.keys_quoted(),
        snapshots.quoted(),
        table.checkpoints_quoted()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{FilterItem, Predicate, PredicateGroup, PredicateValue};
    use crate::sql::compiler::{compile, MERGED_TYPES};

    fn query(table: &TableName, f: &Filter) -> (String, Vec<SqlParam>) {
        let s = super::query(table, f, keys::lookup(table, f).as_ref());
        (s.sql, s.params)
    }

    /// The guarded insert of no events: its filter's parameters follow the eight of the
    /// events and the expected number.
    fn guarded_insert(table: &TableName, f: &Filter) -> (String, Vec<SqlParam>) {
        let lookup = keys::lookup(table, f);
        let guard = Guard {
            filter: f,
            lookup: lookup.as_ref(),
            expected: 0,
        };
        let s = super::insert(table, Some(&guard), &[]);
        (s.sql, s.params[8..].to_vec())
    }

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
    fn any_event_has_no_condition() {
        let f = Filter::any_event(Bound::None).unwrap();
        assert_eq!(
            query(&table(), &f).0,
            "SELECT sequence_number, occurred_at, event_type, payload, metadata, id, tags \
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
        assert_eq!(c.sql, "payload @> ALL($1::jsonb[])");
        assert_eq!(
            c.params,
            vec![SqlParam::JsonArray(vec![
                serde_json::json!({"a": "1"}),
                serde_json::json!({"a": "2"})
            ])]
        );
    }

    #[test]
    fn tags_all_contain_and_tags_any_overlap() {
        use crate::filter::TagGroup;
        let item = |group| {
            FilterItem::with_tags(
                types(&["A"]),
                Some(PredicateGroup::All(vec![p("k", "v")])),
                Some(group),
            )
            .unwrap()
        };
        let all = compile(
            &Filter::new(vec![item(TagGroup::All(types(&["y", "x"])))], Bound::None).unwrap(),
            1,
        );
        assert_eq!(
            all.sql,
            "event_type = $1 AND payload @> $2::jsonb AND tags @> $3::text[]"
        );
        assert_eq!(all.params[2], SqlParam::TextArray(types(&["x", "y"])));
        let any = compile(
            &Filter::new(vec![item(TagGroup::Any(types(&["y", "x"])))], Bound::None).unwrap(),
            1,
        );
        assert!(any.sql.ends_with("tags && $3::text[]"), "{}", any.sql);
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
            "event_type = ANY($1::text[]) AND payload @> ANY($2::jsonb[])"
        );
        assert_eq!(
            c.params,
            vec![
                SqlParam::TextArray(types(&["A", "B"])),
                SqlParam::JsonArray(vec![
                    serde_json::json!({"f": true}),
                    serde_json::json!({"k": "v"}),
                    serde_json::json!({"n": 3}),
                ]),
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
        assert!(sql.contains("WHERE NOT EXISTS (SELECT 1 FROM \"events\" WHERE sequence_number > $8 AND event_type = $9)"), "{sql}");
        assert!(sql.contains("nextval('\"events_seq\"')"), "{sql}");
        assert_eq!(params, vec![SqlParam::Text("A".into())]);
    }

    #[test]
    fn pages_walk_indexes_in_order_with_generic_plans() {
        let every = Filter::any_event(Bound::None).unwrap();
        let types_only = Filter::new(
            vec![FilterItem::new(types(&["A", "B"]), None).unwrap()],
            Bound::None,
        )
        .unwrap();
        for (f, backwards) in [(&every, false), (&types_only, true)] {
            let s = page(
                &table(),
                f,
                keys::lookup(&table(), f).as_ref(),
                (0, 9),
                5,
                backwards,
            );
            // Planned per call on a table without statistics, a page sorted its whole range.
            assert!(!s.plan_per_call, "{}", s.sql);
            let order = if backwards { "DESC" } else { "ASC" };
            assert!(
                s.sql
                    .contains(&format!("ORDER BY sequence_number {order} LIMIT $3")),
                "{}",
                s.sql
            );
        }
        let s = page(
            &table(),
            &types_only,
            keys::lookup(&table(), &types_only).as_ref(),
            (0, 9),
            5,
            false,
        );
        // One scan per type, merged.
        for i in [1, 2] {
            let scan = format!("(SELECT sequence_number, occurred_at, event_type, payload, metadata, id, tags FROM \"events\" WHERE event_type = ($4::text[])[{i}] AND sequence_number > $1");
            assert!(s.sql.contains(&scan), "{}", s.sql);
        }
        assert!(!s.sql.contains("CROSS JOIN LATERAL"), "{}", s.sql);
        // Past MERGED_TYPES types, the statement's text stays the same size.
        let many: Vec<String> = (0..=MERGED_TYPES).map(|i| format!("T{i}")).collect();
        let many = Filter::new(vec![FilterItem::new(many, None).unwrap()], Bound::None).unwrap();
        let lookup = keys::lookup(&table(), &many);
        let s = page(&table(), &many, lookup.as_ref(), (0, 9), 5, false);
        assert!(s.sql.contains("CROSS JOIN LATERAL (SELECT sequence_number, occurred_at, event_type, payload, metadata, id, tags FROM \"events\" WHERE event_type = q.event_type"), "{}", s.sql);
    }

    #[test]
    fn only_key_index_lookups_count_as_value_independent() {
        let keyed =
            FilterItem::new(types(&["A"]), Some(PredicateGroup::All(vec![p("k", "v")]))).unwrap();
        let types_only = FilterItem::new(types(&["A"]), None).unwrap();
        let bound = Bound::SequenceNumberAbove(3);
        let uses = |f: Filter| keys::lookup(&table(), &f).is_some_and(|l| l.uses_key_index());
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
             hit AS MATERIALIZED (SELECT sequence_number, occurred_at, event_type, payload, metadata, id, tags FROM \"events\" \
                 WHERE ctid = ANY(ARRAY(SELECT tid FROM candidate))) \
             SELECT sequence_number, occurred_at, event_type, payload, metadata, id, tags \
             FROM (SELECT sequence_number, occurred_at, event_type, payload, metadata, id, tags FROM hit \
                 UNION ALL SELECT sequence_number, occurred_at, event_type, payload, metadata, id, tags FROM \"events\" \
                 WHERE sequence_number = ANY(ARRAY(\
                     SELECT sequence_number FROM candidate EXCEPT SELECT sequence_number FROM hit))) AS e \
             WHERE event_type = $3 AND payload @> ANY($4::jsonb[]) AND sequence_number > $5 \
             ORDER BY sequence_number"
        );
        let lookup = keys::lookup(&table(), &f).unwrap();
        assert_eq!(
            params[..2],
            [SqlParam::BigInt(4), SqlParam::BigIntArray(lookup.keys)]
        );

        // An item without predicates adds its types to the candidates. A guard looks each
        // candidate up by its sequence number, until one matches.
        let f = Filter::new(vec![item, other], Bound::None).unwrap();
        let (sql, _) = guarded_insert(&table(), &f);
        assert!(
            sql.contains("NOT EXISTS (SELECT 1 FROM (\
                              SELECT sequence_number, tid FROM \"events_keys\" WHERE key = ANY($9::bigint[]) AND sequence_number > $8 \
                              UNION ALL SELECT sequence_number, NULL::tid FROM \"events\" WHERE event_type = ANY($10::text[]) AND sequence_number > $8) AS c \
                          CROSS JOIN LATERAL (SELECT 1 FROM \"events\" WHERE sequence_number = c.sequence_number \
                              AND sequence_number > $8 AND ((event_type = $11 AND payload @> ANY($12::jsonb[])) OR event_type = $13) LIMIT 1) AS e)"),
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
