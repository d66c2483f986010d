//! The key index's keys: 64-bit hashes that each name a set of events, from which a
//! filter's candidates are looked up and the guard's locks are named.
//!
//! Every key names a set of events, and the keys are chosen so that an event matching a
//! filter always carries at least one of the filter's keys (see `docs/guard.md`). Hash
//! collisions only widen a lookup (the exact condition is checked afterwards) or add waiting
//! to the guard, never lose a match.
//!
//! The keys are part of the on-disk protocol: processes running different versions of the
//! library against one table must compute the same keys. Changing them needs a new scheme
//! tag below.

use serde_json::{Map, Value};

use crate::filter::{Filter, PredicateGroup, PredicateValue, TagGroup};
use crate::table::TableName;

const SCHEME: &[u8] = b"dcb-guard-v1";

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
const TAG: &[u8] = b"tag";

pub(crate) fn all_key(table: &TableName) -> i64 {
    key(table, &[ALL])
}

pub(crate) fn type_key(table: &TableName, event_type: &str) -> i64 {
    key(table, &[TYPE, event_type.as_bytes()])
}

fn field_key(table: &TableName, name: &str, canonical_value: &[u8]) -> i64 {
    key(table, &[FIELD, name.as_bytes(), canonical_value])
}

fn tag_key(table: &TableName, tag: &str) -> i64 {
    key(table, &[TAG, tag.as_bytes()])
}

/// Where a filter's events are found in the key index: `keys` to look up for the items with
/// predicates or tags (the first of an ALL group, each of an ANY group), and the event types
/// of the items with neither.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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

/// The field and tag keys of an event: one per top-level scalar payload field, one per tag.
/// They are its rows in the key index and its locks beyond the type. (A scalar predicate
/// never matches a field holding an array or object: `{"k":["x"]} @> {"k":"x"}` is false in
/// PostgreSQL.) Sorted, without duplicates.
pub fn index_keys(table: &TableName, payload: &Map<String, Value>, tags: &[String]) -> Vec<i64> {
    let mut keys: Vec<i64> = payload
        .iter()
        .filter_map(|(k, v)| scalar(v).map(|s| field_key(table, k, &s)))
        .chain(tags.iter().map(|t| tag_key(table, t)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The key index lookup of `filter`; `None` for a match-any-event filter. Every event the
/// filter matches carries one of these field or tag keys, or has one of these types. An item
/// with predicates is looked up by them, else one with tags by its tags, else by its types.
pub fn lookup(table: &TableName, filter: &Filter) -> Option<Lookup> {
    if filter.matches_any_event() {
        return None;
    }
    let mut found = Lookup::default();
    for item in filter.items() {
        match (item.predicates(), item.tags()) {
            (Some(group), _) => {
                let preds = match group {
                    PredicateGroup::All(p) => &p[..1],
                    PredicateGroup::Any(p) => &p[..],
                };
                found.keys.extend(
                    preds
                        .iter()
                        .map(|p| field_key(table, &p.key, &predicate_scalar(&p.value))),
                );
            }
            (None, Some(group)) => {
                let tags = match group {
                    TagGroup::All(t) => &t[..1],
                    TagGroup::Any(t) => &t[..],
                };
                found.keys.extend(tags.iter().map(|t| tag_key(table, t)));
            }
            (None, None) => found.types.extend(item.event_types().iter().cloned()),
        }
    }
    found.keys.sort_unstable();
    found.keys.dedup();
    found.types.sort_unstable();
    found.types.dedup();
    Some(found)
}

/// How many coarse keys there are: every fine key (a type, field or tag key) belongs to one.
pub const COARSE_KEYS: u64 = 64;

/// The coarse key of `fine`: one of [`COARSE_KEYS`], shared by every fine key in its bucket.
pub(crate) fn coarse_key(table: &TableName, fine: i64) -> i64 {
    let bucket = (fine as u64) % COARSE_KEYS;
    key(table, &[b"coarse", &bucket.to_le_bytes()])
}

/// The notification channel on which `table`'s appends wake its subscribers: an identifier
/// of 32 characters, whatever the table's name.
pub fn channel(table: &TableName) -> String {
    #[allow(clippy::cast_sign_loss)]
    let k = key(table, &[b"channel"]) as u64;
    format!("dynamic_streams_{k:016x}")
}

/// The key that serialises schema creation on `table`.
pub fn schema_key(table: &TableName) -> i64 {
    key(table, &[b"ddl"])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::StorableEvent;
    use crate::filter::{Bound, FilterItem, Predicate};

    pub(crate) fn table() -> TableName {
        TableName::parse("events").unwrap()
    }

    pub(crate) fn event(t: &str, payload: &str) -> StorableEvent {
        StorableEvent::new(t, payload, None, Some(0)).unwrap()
    }

    pub(crate) fn pred(k: &str, v: PredicateValue) -> Predicate {
        Predicate {
            key: k.into(),
            value: v,
        }
    }

    pub(crate) fn filter(types: &[&str], group: Option<PredicateGroup>) -> Filter {
        let types = types.iter().map(|t| (*t).to_string()).collect();
        Filter::new(vec![FilterItem::new(types, group).unwrap()], Bound::None).unwrap()
    }

    /// An event, and filters with predicates that all match it.
    pub(crate) fn event_and_predicate_filters() -> (StorableEvent, Vec<Filter>) {
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
    fn a_matching_event_is_found_through_the_key_index() {
        let (e, filters) = event_and_predicate_filters();
        let index = index_keys(&table(), e.payload(), &[]);
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
    fn a_tagged_event_is_found_through_its_tags() {
        let t = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let index = index_keys(&table(), &Map::new(), &t(&["course", "student"]));
        assert_eq!(index.len(), 2);
        for group in [
            TagGroup::All(t(&["student", "course"])),
            TagGroup::Any(t(&["nobody", "course"])),
            TagGroup::All(t(&["student"])),
        ] {
            let item = FilterItem::with_tags(t(&["Joined"]), None, Some(group)).unwrap();
            let f = Filter::new(vec![item], Bound::None).unwrap();
            let found = lookup(&table(), &f).unwrap();
            assert!(found.types.is_empty(), "tags, not types, are looked up");
            assert!(found.keys.iter().any(|k| index.contains(k)), "{f:?}");
        }
        let field = index_keys(&table(), &Map::new(), &[]);
        assert!(field.is_empty());
        let as_field: Map<String, Value> = serde_json::from_str(r#"{"tag":"course"}"#).unwrap();
        assert!(
            !index_keys(&table(), &as_field, &[]).contains(&tag_key(&table(), "course")),
            "a tag and a payload field of the same text are different keys"
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
