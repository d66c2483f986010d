//! Advisory-lock keys that make the append guard hold under concurrency.
//!
//! See `docs/guard.md` for the argument. In short: every key names a set of events, and the
//! keys are chosen so that an event matching a filter always shares at least one key with
//! that filter. Writers lock their events' keys in shared mode; an append locks its
//! filter's keys in exclusive mode (and so does a query, to read a complete prefix), so any
//! two operations that could affect each other's decision are serialised, while operations
//! on disjoint boundaries never wait for each other.
//!
//! Bounds are ignored: they only narrow a filter, and locking more than needed is safe.
//! Hash collisions only add waiting, never lose a conflict.
//!
//! The keys are part of the on-disk protocol: processes running different versions of the
//! library against one table must compute the same keys. Changing them needs a new scheme
//! tag below.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::event::StorableEvent;
use crate::filter::{Filter, PredicateGroup, PredicateValue};
use crate::sql::TableName;

const SCHEME: &[u8] = b"dcb-guard-v1";

/// Lock modes per key, ordered by key so that every transaction locks in the same order
/// (no deadlocks).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LockSet {
    keys: BTreeMap<i64, bool>,
}

impl LockSet {
    fn add(&mut self, key: i64, exclusive: bool) {
        let mode = self.keys.entry(key).or_insert(exclusive);
        *mode |= exclusive;
    }

    /// The keys and their exclusive flags, in ascending key order: `$1` and `$2` of
    /// [`crate::sql::LOCK`].
    pub fn into_arrays(self) -> (Vec<i64>, Vec<bool>) {
        self.keys.into_iter().unzip()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A canonical scalar: equal JSON values give equal bytes (numbers by their `f64` value, so
/// `1` and `1.0` agree; distinct numbers may collide, which only over-locks).
fn scalar(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some([b"s:".as_slice(), s.as_bytes()].concat()),
        Value::Bool(b) => Some(if *b { b"b:1".to_vec() } else { b"b:0".to_vec() }),
        Value::Number(n) => n.as_f64().map(|f| {
            let f = if f == 0.0 { 0.0 } else { f };
            [b"n:".as_slice(), &f.to_bits().to_be_bytes()].concat()
        }),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn predicate_scalar(v: &PredicateValue) -> Vec<u8> {
    scalar(&v.to_json()).unwrap_or_default()
}

/// FNV-1a over length-prefixed parts, finished with a 64-bit avalanche mix. Stable across
/// platforms, Rust versions and processes.
fn key(table: &TableName, parts: &[&[u8]]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(SCHEME);
    feed(table.qualified().as_bytes());
    for p in parts {
        feed(p);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h as i64
}

const ALL: &[u8] = b"all";
const TYPE: &[u8] = b"type";
const FIELD: &[u8] = b"field";

fn all_key(table: &TableName) -> i64 {
    key(table, &[ALL])
}

fn type_key(table: &TableName, event_type: &str) -> i64 {
    key(table, &[TYPE, event_type.as_bytes()])
}

fn field_key(table: &TableName, name: &str, canonical_value: &[u8]) -> i64 {
    key(table, &[FIELD, name.as_bytes(), canonical_value])
}

/// Where a filter's events are found in the key index: `keys` to look up for the items with
/// predicates (the first of an ALL group, each of an ANY group), and the event types of the
/// items without predicates.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Lookup {
    pub keys: Vec<i64>,
    pub types: Vec<String>,
}

impl Lookup {
    /// Whether candidates come from the key index: such statements have one good plan
    /// whatever their values.
    pub fn uses_key_index(&self) -> bool {
        !self.keys.is_empty()
    }
}

/// The field keys of an event: one per top-level scalar payload field. They are its rows in
/// the key index and its locks beyond the type. (A scalar predicate never matches a field
/// holding an array or object: `{"k":["x"]} @> {"k":"x"}` is false in PostgreSQL.) Sorted,
/// without duplicates.
pub fn index_keys(table: &TableName, payload: &Map<String, Value>) -> Vec<i64> {
    let mut keys: Vec<i64> = payload
        .iter()
        .filter_map(|(k, v)| scalar(v).map(|s| field_key(table, k, &s)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The key index lookup of `filter`; `None` for a match-any-event filter. Every event the
/// filter matches carries one of these field keys, or has one of these types.
pub fn lookup(table: &TableName, filter: &Filter) -> Option<Lookup> {
    if filter.matches_any_event() {
        return None;
    }
    let mut found = Lookup::default();
    for item in filter.items() {
        let preds = match item.predicates() {
            None => {
                found.types.extend(item.event_types().iter().cloned());
                continue;
            }
            Some(PredicateGroup::All(p)) => &p[..1],
            Some(PredicateGroup::Any(p)) => &p[..],
        };
        for p in preds {
            found
                .keys
                .push(field_key(table, &p.key, &predicate_scalar(&p.value)));
        }
    }
    found.keys.sort_unstable();
    found.keys.dedup();
    found.types.sort_unstable();
    found.types.dedup();
    Some(found)
}

/// The key that serialises schema creation on `table`.
pub fn schema_key(table: &TableName) -> i64 {
    key(table, &[b"ddl"])
}

/// Locks for a query: exclusive on the filter's keys (its lookup's field keys and type keys,
/// or the match-all key), so that no writer of a matching event is between its lock and its
/// commit while the query reads.
pub fn for_query(table: &TableName, filter: &Filter) -> LockSet {
    for_lookup(table, lookup(table, filter).as_ref())
}

/// [`for_query`] from the filter's lookup, already derived.
pub fn for_lookup(table: &TableName, found: Option<&Lookup>) -> LockSet {
    let mut set = LockSet::default();
    match found {
        None => set.add(all_key(table), true),
        Some(found) => {
            for k in &found.keys {
                set.add(*k, true);
            }
            for t in &found.types {
                set.add(type_key(table, t), true);
            }
        }
    }
    set
}

/// The keys an event carries, in shared mode: the match-all key, its type key, its field keys.
fn add_event(set: &mut LockSet, table: &TableName, event: &StorableEvent) {
    set.add(all_key(table), false);
    set.add(type_key(table, event.event_type()), false);
    for k in index_keys(table, event.payload()) {
        set.add(k, false);
    }
}

/// Locks for a guarded append: exclusive on the filter's keys, shared on its events' keys.
pub fn for_append(table: &TableName, filter: &Filter, events: &[StorableEvent]) -> LockSet {
    for_append_lookup(table, lookup(table, filter).as_ref(), events)
}

/// [`for_append`] from the filter's lookup, already derived.
pub fn for_append_lookup(
    table: &TableName,
    found: Option<&Lookup>,
    events: &[StorableEvent],
) -> LockSet {
    let mut set = for_lookup(table, found);
    for e in events {
        add_event(&mut set, table, e);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{Bound, FilterItem, Predicate};

    fn table() -> TableName {
        TableName::parse("events").unwrap()
    }

    fn event(t: &str, payload: &str) -> StorableEvent {
        StorableEvent::new(t, payload, None, Some(0)).unwrap()
    }

    fn pred(k: &str, v: PredicateValue) -> Predicate {
        Predicate {
            key: k.into(),
            value: v,
        }
    }

    fn filter(types: &[&str], group: Option<PredicateGroup>) -> Filter {
        let types = types.iter().map(|t| (*t).to_string()).collect();
        Filter::new(vec![FilterItem::new(types, group).unwrap()], Bound::None).unwrap()
    }

    fn shares_a_key(f: &Filter, e: &StorableEvent) -> bool {
        let (fk, _) = for_query(&table(), f).into_arrays();
        let mut es = LockSet::default();
        add_event(&mut es, &table(), e);
        let (ek, _) = es.into_arrays();
        fk.iter().any(|k| ek.contains(k))
    }

    /// An event, and filters with predicates that all match it.
    fn event_and_predicate_filters() -> (StorableEvent, Vec<Filter>) {
        let e = event(
            "Lent",
            r#"{"BookID":"b1","ReaderID":"r1","n":1,"ok":true,"o":{"x":1}}"#,
        );
        let s = |v: &str| PredicateValue::Str(v.into());
        let filters = vec![
            filter(
                &[],
                Some(PredicateGroup::All(vec![pred("BookID", s("b1"))])),
            ),
            filter(
                &["Lent"],
                Some(PredicateGroup::Any(vec![
                    pred("BookID", s("zz")),
                    pred("ReaderID", s("r1")),
                ])),
            ),
            filter(
                &["Lent"],
                Some(PredicateGroup::All(vec![
                    pred("ReaderID", s("r1")),
                    pred("BookID", s("b1")),
                ])),
            ),
            filter(
                &[],
                Some(PredicateGroup::All(vec![pred(
                    "n",
                    PredicateValue::Float(1.0),
                )])),
            ),
            filter(
                &[],
                Some(PredicateGroup::All(vec![pred(
                    "ok",
                    PredicateValue::Bool(true),
                )])),
            ),
        ];
        (e, filters)
    }

    #[test]
    fn a_matching_event_always_shares_a_key_with_the_filter() {
        let (e, mut filters) = event_and_predicate_filters();
        filters.extend([
            Filter::any_event(Bound::None).unwrap(),
            filter(&["Lent"], None),
            filter(&["Lent", "Other"], None),
        ]);
        for f in filters {
            assert!(shares_a_key(&f, &e), "{f:?}");
        }
    }

    #[test]
    fn disjoint_boundaries_share_no_key() {
        let e = event("Lent", r#"{"BookID":"b2","ReaderID":"r2"}"#);
        let s = |v: &str| PredicateValue::Str(v.into());
        let f = filter(
            &["Lent", "Returned"],
            Some(PredicateGroup::Any(vec![
                pred("BookID", s("b1")),
                pred("ReaderID", s("r1")),
            ])),
        );
        assert!(!shares_a_key(&f, &e));
        assert!(!shares_a_key(&filter(&["Returned"], None), &e));
    }

    #[test]
    fn keys_are_sorted_and_modes_merge_to_exclusive() {
        let f = filter(&["Lent"], None);
        let set = for_append(&table(), &f, &[event("Lent", "{}")]);
        let (keys, modes) = set.into_arrays();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let lent = type_key(&table(), "Lent");
        let i = keys.iter().position(|k| *k == lent).unwrap();
        assert!(modes[i]);
        assert_eq!(modes.iter().filter(|m| **m).count(), 1);
    }

    #[test]
    fn a_matching_event_is_found_through_the_key_index() {
        let (e, filters) = event_and_predicate_filters();
        let index = index_keys(&table(), e.payload());
        assert_eq!(index.len(), 4, "only top-level scalars are indexed");
        for f in filters {
            let found = lookup(&table(), &f).unwrap();
            assert!(found.keys.iter().any(|k| index.contains(k)), "{f:?}");
        }
        let types_only = lookup(&table(), &filter(&["B", "A"], None)).unwrap();
        assert_eq!(
            (types_only.keys.len(), types_only.types),
            (0, vec!["A".to_owned(), "B".to_owned()])
        );
        assert_eq!(
            lookup(&table(), &Filter::any_event(Bound::None).unwrap()),
            None
        );
    }

    #[test]
    fn keys_are_stable() {
        // Part of the protocol between processes: must never change within a scheme.
        assert_eq!(
            key(&table(), &[ALL]),
            key(&TableName::parse("events").unwrap(), &[ALL])
        );
        assert_ne!(
            key(&table(), &[ALL]),
            key(&TableName::parse("other").unwrap(), &[ALL])
        );
        assert_eq!(key(&table(), &[ALL]), 1_124_205_441_579_999_157);
    }
}
