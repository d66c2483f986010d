//! The append guard's advisory locks: which keys an operation locks, and in which mode.
//!
//! See `docs/guard.md` for the argument. In short: writers lock their events' keys in shared
//! mode; an append locks its filter's keys in exclusive mode (and so does a strong read, to
//! read a complete prefix), so any two operations that could affect each other's decision are
//! serialised, while operations on disjoint boundaries never wait for each other.
//!
//! Bounds are ignored: they only narrow a filter, and locking more than needed is safe.

use std::collections::BTreeMap;

use crate::event::StorableEvent;
use crate::keys::{self, Lookup};
use crate::table::TableName;

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

    /// The keys and their exclusive flags, in ascending key order.
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

/// Locks for a strong read of the filter with `lookup` (`None`: a match-any-event filter):
/// exclusive on its lookup's field and type keys, or on the match-all key, so that no writer
/// of a matching event is between its lock and its commit while the read runs.
pub fn for_read(table: &TableName, lookup: Option<&Lookup>) -> LockSet {
    let mut set = LockSet::default();
    match lookup {
        None => set.add(keys::all_key(table), true),
        Some(found) => {
            for k in &found.keys {
                set.add(*k, true);
            }
            for t in &found.types {
                set.add(keys::type_key(table, t), true);
            }
        }
    }
    set
}

/// The keys an event carries, in shared mode: the match-all key, its type key, its field keys.
fn add_event(set: &mut LockSet, table: &TableName, event: &StorableEvent) {
    set.add(keys::all_key(table), false);
    set.add(keys::type_key(table, event.event_type()), false);
    for k in keys::index_keys(table, event.payload()) {
        set.add(k, false);
    }
}

/// Locks for a guarded append: exclusive on the filter's keys, shared on its events' keys.
pub fn for_append(table: &TableName, lookup: Option<&Lookup>, events: &[StorableEvent]) -> LockSet {
    let mut set = for_read(table, lookup);
    for e in events {
        add_event(&mut set, table, e);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{Bound, Filter, PredicateGroup, PredicateValue};
    use crate::keys::tests::{event, event_and_predicate_filters, filter, pred, table};

    fn shares_a_key(f: &Filter, e: &StorableEvent) -> bool {
        let (fk, _) = for_read(&table(), keys::lookup(&table(), f).as_ref()).into_arrays();
        let mut es = LockSet::default();
        add_event(&mut es, &table(), e);
        let (ek, _) = es.into_arrays();
        fk.iter().any(|k| ek.contains(k))
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
        let set = for_append(
            &table(),
            keys::lookup(&table(), &f).as_ref(),
            &[event("Lent", "{}")],
        );
        let (keys, modes) = set.into_arrays();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let lent = keys::type_key(&table(), "Lent");
        let i = keys.iter().position(|k| *k == lent).unwrap();
        assert!(modes[i]);
        assert_eq!(modes.iter().filter(|m| **m).count(), 1);
    }
}
