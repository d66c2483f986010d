//! The compiler from filters to parameterised SQL conditions, and the key index lookup a
//! statement reads its candidates from.

use std::fmt::Write as _;

use serde_json::Value;

use crate::filter::{Bound, Filter, FilterItem, Predicate, PredicateGroup, TagGroup};
use crate::keys::Lookup;
use crate::sql::param::{SqlParam, Statement};
use crate::table::TableName;

/// The columns of an event, in the order every read returns them.
pub const COLUMNS: &str = "sequence_number, occurred_at, event_type, payload, metadata, id, tags";

/// How many [`COLUMNS`] there are: the index of a column a statement adds after them.
pub const COLUMN_COUNT: usize = 7;

/// A filter compiled to a boolean SQL condition and its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// Empty when the filter matches every event.
    pub sql: String,
    pub params: Vec<SqlParam>,
}

/// The bind parameters (`$n`) of one page of a read: sequence numbers in `(lower, upper]`,
/// at most `limit` of them, in `order` (`ASC` or `DESC`).
pub(crate) struct PageSql {
    pub lower: String,
    pub upper: String,
    pub limit: String,
    pub order: &'static str,
}

/// The candidates' events: `(ctes, from)` for a statement reading the events whose sequence
/// numbers `candidates` (a query of `sequence_number, tid`) yields. Arrays, not joins: the
/// row addresses become one TID scan, and the rest one sorted, deduplicated walk of the
/// primary key.
///
/// With `confirmed`, a row found at an address counts only when it is that candidate's
/// event: a page's candidates are cut by its range and limit, which its rows are not checked
/// against again. Without, any row found counts, for a statement that checks the filter's
/// exact condition, bounds included, on every row: a matching event is an answer wherever
/// it was found, and every candidate not found is read through the primary key, so none is
/// missed or read twice (a TID scan yields each row once).
fn fetched(table: &TableName, candidates: &str, confirmed: bool) -> (String, String) {
    let t = table.quoted();
    let confirm = if confirmed {
        " AND sequence_number IN (SELECT sequence_number FROM candidate)"
    } else {
        ""
    };
    let ctes = format!(
        "candidate AS MATERIALIZED ({candidates}), \
         hit AS MATERIALIZED (SELECT {COLUMNS} FROM {t} \
             WHERE ctid = ANY(ARRAY(SELECT tid FROM candidate)){confirm})"
    );
    let from = format!(
        "(SELECT {COLUMNS} FROM hit UNION ALL SELECT {COLUMNS} FROM {t} \
         WHERE sequence_number = ANY(ARRAY(\
             SELECT sequence_number FROM candidate EXCEPT SELECT sequence_number FROM hit))) AS e"
    );
    (ctes, from)
}

/// Builds SQL text and its parameters together: every value becomes the next `$n`.
pub(crate) struct Compiler {
    params: Vec<SqlParam>,
    first: usize,
    plan_per_call: bool,
}

/// Event types up to which a page merges one ordered scan per type (see
/// [`Compiler::page_source`]); past them, a statement's text would grow with its types.
pub(crate) const MERGED_TYPES: usize = 32;

/// Predicates of an ANY group past which the group is checked by hashed membership instead
/// of one containment per predicate (each event's fields looked up in the group, rather than
/// the group scanned for each event).
const HASHED_ANY: usize = 8;

impl Compiler {
    pub(crate) fn new(first: usize) -> Self {
        Self {
            params: Vec::new(),
            first,
            plan_per_call: false,
        }
    }

    /// Where the events matching `lookup` are looked for: `(ctes, from)`, common table
    /// expressions to put in front of the statement and the relation to select from, for a
    /// statement that checks the filter's exact condition on every row. With no key index
    /// lookup, the table itself. Otherwise the events of [`Self::candidates`], fetched by the
    /// row address each key row holds, and through the primary key for the candidates not
    /// found there.
    pub(crate) fn source(
        &mut self,
        table: &TableName,
        lookup: Option<&Lookup>,
        after: Option<&str>,
    ) -> (String, String) {
        match self.candidates(table, lookup, after) {
            Some(candidates) => fetched(table, &candidates, false),
            None => (String::new(), table.quoted()),
        }
    }

    /// The query of `sequence_number, tid` of a superset of the events `lookup` stands for
    /// (above `after`): the key index's candidates, and the event-type index's for items
    /// without predicates (with no address). `None` with no key index lookup: event types
    /// only, or every event, are read from the table, and the best plan for them depends on
    /// the values (a generic plan for `event_type = $1 AND sequence_number > $2` walks the
    /// primary key), so the statement is planned per call.
    pub(crate) fn candidates(
        &mut self,
        table: &TableName,
        lookup: Option<&Lookup>,
        after: Option<&str>,
    ) -> Option<String> {
        let Some(lookup) = lookup.filter(|l| l.uses_key_index()) else {
            self.plan_per_call = true;
            return None;
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
                " UNION ALL SELECT sequence_number, NULL::tid FROM {} WHERE event_type = ANY({types}::text[]){after}",
                table.quoted()
            );
        }
        Some(candidates)
    }

    /// Like [`Self::source`] for one page of a read: the first `page.limit` candidates in
    /// `page.range`, in the page's order (the key index and the event-type index each walked
    /// in order, per key and per type, so a page costs its own size however many candidates
    /// the range holds).
    pub(crate) fn page_source(
        &mut self,
        table: &TableName,
        lookup: &Lookup,
        page: &PageSql,
    ) -> (String, String) {
        let t = table.quoted();
        let PageSql {
            lower,
            upper,
            limit,
            order,
        } = page;
        let range = format!("sequence_number > {lower} AND sequence_number <= {upper}");
        if lookup.keys.is_empty() {
            // Event types only: the event-type index yields the events themselves, one
            // ordered scan per type. Up to MERGED_TYPES types, the scans are merged and stop
            // once the page is full: a page reads its own events, not `limit` of each type.
            let types = self.bind(SqlParam::TextArray(lookup.types.clone()));
            let scan = |event_type: &str| {
                format!(
                    "SELECT {COLUMNS} FROM {t} WHERE event_type = {event_type} AND {range} \
                     ORDER BY sequence_number {order} LIMIT {limit}"
                )
            };
            let scans = if lookup.types.len() <= MERGED_TYPES {
                (1..=lookup.types.len())
                    .map(|i| format!("({})", scan(&format!("({types}::text[])[{i}]"))))
                    .collect::<Vec<_>>()
                    .join(" UNION ALL ")
            } else {
                format!(
                    "SELECT c.* FROM unnest({types}::text[]) AS q(event_type) \
                     CROSS JOIN LATERAL ({}) AS c",
                    scan("q.event_type")
                )
            };
            let ctes = format!(
                "candidate AS MATERIALIZED (SELECT * FROM ({scans}) AS u \
                 ORDER BY sequence_number {order} LIMIT {limit})"
            );
            return (ctes, "candidate AS e".to_owned());
        }
        let keys = self.bind(SqlParam::BigIntArray(lookup.keys.clone()));
        let mut parts = vec![format!(
            "SELECT c.sequence_number, c.tid FROM unnest({keys}::bigint[]) AS q(key) \
             CROSS JOIN LATERAL (SELECT sequence_number, tid FROM {} \
                 WHERE key = q.key AND {range} ORDER BY sequence_number {order} LIMIT {limit}) AS c",
            table.keys_quoted()
        )];
        if !lookup.types.is_empty() {
            let types = self.bind(SqlParam::TextArray(lookup.types.clone()));
            parts.push(format!(
                "SELECT c.sequence_number, NULL::tid FROM unnest({types}::text[]) AS q(event_type) \
                 CROSS JOIN LATERAL (SELECT sequence_number FROM {t} \
                     WHERE event_type = q.event_type AND {range} \
                     ORDER BY sequence_number {order} LIMIT {limit}) AS c"
            ));
        }
        let candidates = format!(
            "SELECT sequence_number, tid FROM ({}) AS u ORDER BY sequence_number {order} LIMIT {limit}",
            parts.join(" UNION ALL ")
        );
        fetched(table, &candidates, true)
    }

    pub(crate) fn bind(&mut self, p: SqlParam) -> String {
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
        // However many predicates, one parameter: the statement's text, and so the prepared
        // statements a connection keeps, do not grow with them.
        let single = |p: &Predicate| {
            let mut one = serde_json::Map::new();
            one.insert(p.key.clone(), p.value.to_json());
            Value::Object(one)
        };
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
                    let all = self.bind(SqlParam::JsonArray(preds.iter().map(single).collect()));
                    parts.push(format!("payload @> ALL({all}::jsonb[])"));
                }
            }
            Some(PredicateGroup::Any(preds)) if preds.len() > HASHED_ANY => {
                // For scalar values `payload @> {"k": v}` is `payload -> 'k' = v`: an event
                // matches when one of its fields, as `{"k": v}`, is in the group. Planned
                // for the values, the group becomes a hash table, built once per call.
                let any = self.bind(SqlParam::JsonArray(preds.iter().map(single).collect()));
                self.plan_per_call = true;
                parts.push(format!(
                    "EXISTS (SELECT 1 FROM jsonb_each(payload) AS f(k, v) \
                     WHERE jsonb_build_object(f.k, f.v) = ANY({any}::jsonb[]))"
                ));
            }
            Some(PredicateGroup::Any(preds)) => {
                let any = self.bind(SqlParam::JsonArray(preds.iter().map(single).collect()));
                parts.push(format!("payload @> ANY({any}::jsonb[])"));
            }
        }
        match item.tags() {
            None => {}
            Some(TagGroup::All(tags)) => parts.push(format!(
                "tags @> {}::text[]",
                self.bind(SqlParam::TextArray(tags.clone()))
            )),
            Some(TagGroup::Any(tags)) => parts.push(format!(
                "tags && {}::text[]",
                self.bind(SqlParam::TextArray(tags.clone()))
            )),
        }
        let n = parts.len();
        (parts.join(" AND "), n)
    }
}

impl Compiler {
    /// The exact condition of `filter` (empty when it matches every event).
    pub(crate) fn condition(&mut self, filter: &Filter) -> String {
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

impl Compiler {
    /// The statement: `sql` with the parameters bound so far.
    pub(crate) fn finish(self, sql: String) -> Statement {
        Statement {
            sql,
            params: self.params,
            plan_per_call: self.plan_per_call,
        }
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
