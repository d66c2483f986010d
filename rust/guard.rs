//! The append guard's advisory locks: which keys an operation locks, and in which mode.
//!
//! See `docs/guard.md` for the argument. In short: writers lock their events' keys in shared
//! mode; an append locks its filter's keys in exclusive mode (and so does a strong read, to
//! read a complete prefix), so any two operations that could affect each other's decision are
//! serialised, while operations on disjoint boundaries never wait for each other.
//!
//! The footprint is bounded: past [`MAX_FINE_KEYS`] keys a transaction locks coarse keys
//! (one of [`keys::COARSE_KEYS`] buckets each) in exclusive mode instead, and every
//! transaction that locks fine keys also locks their coarse keys in shared mode, so an
//! escalated transaction meets every transaction it could affect (docs/guard.md, "A bounded
//! footprint").
//!
//! Bounds are ignored: they only narrow a filter, and locking more than needed is safe.

use std::collections::{BTreeMap, BTreeSet};

use crate::event::StorableEvent;
use crate::keys::{self, Lookup};
use crate::table::TableName;

/// Most fine keys (types and fields, of the filter and the events together) one transaction
/// locks; past it, it locks coarse keys instead. With their coarse keys, a transaction holds
/// at most `2 * MAX_FINE_KEYS + 1` locks, or `COARSE_KEYS + 1` when escalated: well within
/// PostgreSQL's shared lock table at default settings (64 per connection).
pub const MAX_FINE_KEYS: usize = 32;

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

/// What a transaction must lock before the bound is applied.
#[derive(Default)]
struct Wanted {
    /// The match-all key, and whether exclusively.
    all: Option<bool>,
    /// Fine keys the filter needs exclusively.
    exclusive: BTreeSet<i64>,
    /// Fine keys the events carry, to hold shared.
    shared: BTreeSet<i64>,
}

impl Wanted {
    fn filter(table: &TableName, lookup: Option<&Lookup>) -> Self {
        let mut wanted = Self::default();
        match lookup {
            None => wanted.all = Some(true),
            Some(found) => {
                wanted.exclusive.extend(found.keys.iter().copied());
                wanted
                    .exclusive
                    .extend(found.types.iter().map(|t| keys::type_key(table, t)));
            }
        }
        wanted
    }

    /// The keys an event carries, in shared mode: the match-all key, its type key, its field
    /// and tag keys.
    fn add_event(&mut self, table: &TableName, event: &StorableEvent) {
        self.all.get_or_insert(false);
        self.shared
            .insert(keys::type_key(table, event.event_type()));
        self.shared
            .extend(keys::index_keys(table, event.payload(), event.tags()));
    }

    fn into_locks(self, table: &TableName) -> LockSet {
        let mut set = LockSet::default();
        if let Some(exclusive) = self.all {
            set.add(keys::all_key(table), exclusive);
        }
        let fine = self.exclusive.union(&self.shared).count();
        if fine > MAX_FINE_KEYS {
            // Escalated: each fine key's coarse key, exclusively (it stands for fine keys
            // held exclusively by a filter and shared by events alike).
            for k in self.exclusive.iter().chain(&self.shared) {
                set.add(keys::coarse_key(table, *k), true);
            }
        } else {
            for k in &self.exclusive {
                set.add(*k, true);
            }
            for k in &self.shared {
                set.add(*k, false);
            }
            for k in self.exclusive.iter().chain(&self.shared) {
                set.add(keys::coarse_key(table, *k), false);
            }
        }
        set
    }
}

/// Locks for a strong read of the filter with `lookup` (`None`: a match-any-event filter):
/// exclusive on its lookup's field and type keys, or on the match-all key, so that no writer
/// of a matching event is between its lock and its commit while the read runs.
pub fn for_read(table: &TableName, lookup: Option<&Lookup>) -> LockSet {
    Wanted::filter(table, lookup).into_locks(table)
}

/// Locks for a guarded append: exclusive on the filter's keys, shared on its events' keys.
pub fn for_append(table: &TableName, lookup: Option<&Lookup>, events: &[StorableEvent]) -> LockSet {
    let mut wanted = Wanted::filter(table, lookup);
    for e in events {
        wanted.add_event(table, e);
    }
    wanted.into_locks(table)
}

/// Locks for an append without a condition: shared on its events' keys. Every writer holds
/// the match-all key (shared) until it commits, which is how [`crate::store::EventStore::head`]
/// finds the writers in flight.
pub fn for_writer(table: &TableName, events: &[StorableEvent]) -> LockSet {
    let mut wanted = Wanted::default();
    for e in events {
        wanted.add_event(table, e);
    }
    wanted.into_locks(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{Bound, Filter, PredicateGroup, PredicateValue};
    use crate::keys::tests::{event, event_and_predicate_filters, filter, pred, table};

    fn writer(events: &[StorableEvent]) -> LockSet {
        for_writer(&table(), events)
    }

    /// Whether two lock sets conflict: a key both hold, one of them exclusively.
    fn conflict(a: &LockSet, b: &LockSet) -> bool {
        a.keys
            .iter()
            .any(|(k, x)| b.keys.get(k).is_some_and(|y| *x || *y))
    }

    fn shares_a_key(f: &Filter, e: &StorableEvent) -> bool {
        let read = for_read(&table(), keys::lookup(&table(), f).as_ref());
        conflict(&read, &writer(std::slice::from_ref(e)))
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
    fn every_writer_holds_the_match_all_key() {
        // How the head finds the writers in flight, escalated or not.
        let all = keys::all_key(&table());
        for events in [many_events(1, "BookID"), many_events(5_000, "BookID")] {
            let (keys, modes) = writer(&events).into_arrays();
            let i = keys.iter().position(|k| *k == all).unwrap();
            assert!(
                !modes[i],
                "shared, so that writers never wait for each other"
            );
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

    fn many_events(n: usize, field: &str) -> Vec<StorableEvent> {
        (0..n)
            .map(|i| event("Lent", &format!(r#"{{"{field}":"v{i}"}}"#)))
            .collect()
    }

    fn wide_filter(n: usize, field: &str) -> Filter {
        let preds = (0..n)
            .map(|i| pred(field, PredicateValue::Str(format!("v{i}"))))
            .collect();
        filter(&["Lent"], Some(PredicateGroup::Any(preds)))
    }

    #[test]
    fn the_footprint_is_bounded() {
        let most = usize::try_from(keys::COARSE_KEYS).unwrap() + 1;
        let big = keys::lookup(&table(), &wide_filter(100_000, "BookID"));
        assert!(for_read(&table(), big.as_ref()).len() <= most);
        let events = many_events(10_000, "BookID");
        assert!(for_append(&table(), big.as_ref(), &events).len() <= most);
        let small = keys::lookup(&table(), &filter(&["Lent"], None));
        assert!(for_append(&table(), small.as_ref(), &events).len() <= most);
        let few = many_events(3, "BookID");
        assert!(for_append(&table(), small.as_ref(), &few).len() <= 2 * MAX_FINE_KEYS + 1);
    }

    #[test]
    fn escalated_or_not_a_matching_writer_always_conflicts() {
        // Filters and writers on both sides of the bound, all touching BookID = v0.
        for f in [wide_filter(1, "BookID"), wide_filter(5_000, "BookID")] {
            let lookup = keys::lookup(&table(), &f);
            for w in [many_events(1, "BookID"), many_events(5_000, "BookID")] {
                let read = for_read(&table(), lookup.as_ref());
                assert!(conflict(&read, &writer(&w)), "{}", w.len());
                let append = for_append(&table(), lookup.as_ref(), &many_events(1, "Other"));
                assert!(conflict(&append, &writer(&w)));
            }
        }
        // Fine transactions on disjoint keys never wait for each other.
        let lookup = keys::lookup(&table(), &wide_filter(1, "BookID"));
        let other = many_events(1, "ReaderID");
        let read = for_read(&table(), lookup.as_ref());
        assert!(!conflict(&read, &writer(&other)));
    }
}
