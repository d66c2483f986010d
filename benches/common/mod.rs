//! What the criterion benches share: the lending use case's filter.

use dynamic_streams::filter::{Predicate, PredicateGroup, PredicateValue};
use dynamic_streams::{Bound, Filter, FilterItem};

const TYPES: [&str; 6] = [
    "BookCopyAddedToCirculation",
    "BookCopyRemovedFromCirculation",
    "ReaderRegistered",
    "ReaderContractCanceled",
    "BookCopyLentToReader",
    "BookCopyReturnedByReader",
];

/// All six types of the library domain, and `BookID = book OR ReaderID = reader`.
pub fn lending_filter(book: &str, reader: &str) -> Filter {
    let predicate = |key: &str, value: &str| Predicate {
        key: key.into(),
        value: PredicateValue::Str(value.into()),
    };
    let predicates = vec![predicate("BookID", book), predicate("ReaderID", reader)];
    let types = TYPES.iter().map(|t| (*t).to_string()).collect();
    let item = FilterItem::new(types, Some(PredicateGroup::Any(predicates))).expect("valid item");
    Filter::new(vec![item], Bound::None).expect("valid filter")
}
