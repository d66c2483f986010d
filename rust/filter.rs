//! The filter model: an OR of items, optionally narrowed by one global bound.
//!
//! Constructors validate and sanitise, so a [`Filter`] value is always well formed and equal
//! filters have identical contents (and therefore compile to identical SQL): blank event types
//! (which name no event) are dropped, duplicates removed, order normalised. An empty predicate
//! key is an error; an empty string *value* is a JSON value like any other and is matched
//! literally (dropping it would silently widen an ALL group or narrow an ANY group, and the
//! guard with it). A part of an item that was given but is empty after sanitising is an
//! error, never a silent widening of the filter.

use crate::error::{Error, Result};
use crate::input::{canonical_number, reject_nul};
use crate::time;

/// The value of a payload predicate, compared as a JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum PredicateValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A number in canonical decimal form: what [`PredicateValue::Int`] and
    /// [`PredicateValue::Float`] are normalised to when an item is built.
    Number(String),
}

impl PredicateValue {
    /// Numbers become their canonical decimal form, so equal predicates sanitise to one.
    fn normalised(self) -> Result<Self> {
        match self {
            Self::Float(f) if !f.is_finite() => Err(Error::invalid(
                "predicate values must be finite numbers (JSON has no NaN or infinity)",
            )),
            // `Display` of f64 writes the shortest round-trip digits, never an exponent.
            Self::Float(f) => Ok(Self::Number(canonical_number(&f.to_string()))),
            Self::Int(i) => Ok(Self::Number(i.to_string())),
            Self::Number(n) => Ok(Self::Number(canonical_number(&n))),
            other => Ok(other),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Str(s) => serde_json::Value::from(s.as_str()),
            Self::Int(i) => serde_json::Value::from(*i),
            Self::Float(f) => serde_json::Value::from(*f),
            Self::Bool(b) => serde_json::Value::from(*b),
            Self::Number(n) => n
                .parse::<serde_json::Number>()
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
        }
    }
}

/// `payload[key] == value` on the payload's top level.
#[derive(Clone, Debug, PartialEq)]
pub struct Predicate {
    pub key: String,
    pub value: PredicateValue,
}

impl Predicate {
    fn sort_key(&self) -> (String, String) {
        (self.key.clone(), self.value.to_json().to_string())
    }
}

/// One part of an item, its predicates or its tags, combined with OR (`Any`) or AND (`All`).
#[derive(Clone, Debug, PartialEq)]
pub enum Group<T> {
    Any(Vec<T>),
    All(Vec<T>),
}

/// An item's payload predicates.
pub type PredicateGroup = Group<Predicate>;
/// An item's tags.
pub type TagGroup = Group<String>;

impl<T: PartialEq> Group<T> {
    pub fn members(&self) -> &[T] {
        match self {
            Self::Any(m) | Self::All(m) => m,
        }
    }

    /// Each member checked and normalised by `check`, then sorted by `order` and
    /// deduplicated; one member means the same under ANY and ALL and becomes ALL. An empty
    /// group (`what` names its members) is an error: it would change what the item matches.
    fn sanitised<K: Ord>(
        self,
        what: &str,
        check: impl Fn(T) -> Result<T>,
        order: impl Fn(&T) -> K,
    ) -> Result<Self> {
        let any = matches!(self, Self::Any(_));
        let (Self::Any(members) | Self::All(members)) = self;
        if members.is_empty() {
            return Err(Error::invalid(format!(
                "filter item: a {what} group needs at least one {what}; an empty group would change what the item matches"
            )));
        }
        let mut kept = members.into_iter().map(check).collect::<Result<Vec<_>>>()?;
        kept.sort_by_cached_key(order);
        kept.dedup();
        Ok(if any && kept.len() > 1 {
            Self::Any(kept)
        } else {
            Self::All(kept)
        })
    }
}

fn checked_predicate(p: Predicate) -> Result<Predicate> {
    reject_nul("a predicate key", &p.key)?;
    if let PredicateValue::Str(s) = &p.value {
        reject_nul("a predicate value", s)?;
    }
    if p.key.is_empty() {
        return Err(Error::invalid(
            "a predicate key must not be empty: it names a top-level payload field",
        ));
    }
    Ok(Predicate {
        key: p.key,
        value: p.value.normalised()?,
    })
}

fn checked_tag(t: String) -> Result<String> {
    check_tag(&t)?;
    Ok(t)
}

/// A tag is a non-empty string (PostgreSQL text: no NUL).
pub fn check_tag(tag: &str) -> Result<()> {
    reject_nul("a tag", tag)?;
    if tag.is_empty() {
        return Err(Error::invalid("a tag must not be empty"));
    }
    Ok(())
}

/// One alternative of a filter: any of `event_types` (if given) AND its predicates (if given)
/// AND its tags (if given).
#[derive(Clone, Debug, PartialEq)]
pub struct FilterItem {
    event_types: Vec<String>,
    predicates: Option<PredicateGroup>,
    tags: Option<TagGroup>,
}

impl FilterItem {
    /// Builds an item from event types (any of them) and an optional predicate group.
    pub fn new(event_types: Vec<String>, predicates: Option<PredicateGroup>) -> Result<Self> {
        Self::with_tags(event_types, predicates, None)
    }

    /// Builds an item from event types (any of them), an optional predicate group and an
    /// optional tag group.
    ///
    /// Blank event types are dropped and duplicates removed; a predicate with an empty key or
    /// an empty tag is rejected; if the types, predicates or tags were given but nothing is
    /// left of them, or the item has none of them, it is rejected.
    pub fn with_tags(
        event_types: Vec<String>,
        predicates: Option<PredicateGroup>,
        tags: Option<TagGroup>,
    ) -> Result<Self> {
        let types_given = !event_types.is_empty();
        let mut types = Vec::with_capacity(event_types.len());
        for t in event_types {
            reject_nul("an event type", &t)?;
            if !t.trim().is_empty() {
                types.push(t);
            }
        }
        types.sort_unstable();
        types.dedup();
        if types_given && types.is_empty() {
            return Err(Error::invalid(
                "filter item: every event type given is empty; an empty item would match everything",
            ));
        }

        let predicates = predicates
            .map(|g| g.sanitised("predicate", checked_predicate, Predicate::sort_key))
            .transpose()?;
        let tags = tags
            .map(|g| g.sanitised("tag", checked_tag, String::clone))
            .transpose()?;
        if types.is_empty() && predicates.is_none() && tags.is_none() {
            return Err(Error::invalid(
                "filter item is empty: give event types, predicates, tags or a combination (use a match-any-event filter on purpose)",
            ));
        }
        Ok(Self {
            event_types: types,
            predicates,
            tags,
        })
    }

    pub fn event_types(&self) -> &[String] {
        &self.event_types
    }

    pub fn predicates(&self) -> Option<&PredicateGroup> {
        self.predicates.as_ref()
    }

    pub fn tags(&self) -> Option<&TagGroup> {
        self.tags.as_ref()
    }

    /// A deterministic JSON form of the item, used for ordering items and for a stable
    /// serialisation of the whole filter.
    pub fn canonical_json(&self) -> serde_json::Value {
        let mut item = serde_json::Map::new();
        if !self.event_types.is_empty() {
            item.insert("types".into(), self.event_types.clone().into());
        }
        if let Some(group) = &self.predicates {
            let (kind, preds) = match group {
                PredicateGroup::Any(p) => ("any", p),
                PredicateGroup::All(p) => ("all", p),
            };
            let list: Vec<serde_json::Value> = preds
                .iter()
                .map(|p| serde_json::json!([p.key, p.value.to_json()]))
                .collect();
            item.insert(kind.into(), list.into());
        }
        // Only items with tags gain a member: the serialisation, and so the hashes keying
        // snapshots, of every filter without tags stay what they were.
        match &self.tags {
            None => {}
            Some(TagGroup::Any(t)) => {
                item.insert("tags_any".into(), t.clone().into());
            }
            Some(TagGroup::All(t)) => {
                item.insert("tags_all".into(), t.clone().into());
            }
        }
        item.into()
    }
}

/// The one global bound of a filter. Time bounds are microseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Bound {
    #[default]
    None,
    /// `occurred_at >= from`
    OccurredFrom(i64),
    /// `occurred_at <= until`
    OccurredUntil(i64),
    /// `from <= occurred_at <= until`
    OccurredBetween(i64, i64),
    /// `sequence_number > n`
    SequenceNumberAbove(i64),
}

impl Bound {
    fn validate(self) -> Result<Self> {
        match self {
            Self::OccurredFrom(t) | Self::OccurredBetween(t, _) => {
                time::check("occurred_from", t)?;
            }
            Self::OccurredUntil(_) | Self::None | Self::SequenceNumberAbove(_) => {}
        }
        if let Self::OccurredUntil(t) | Self::OccurredBetween(_, t) = self {
            time::check("occurred_until", t)?;
        }
        match self {
            Self::OccurredBetween(from, until) if from > until => Err(Error::invalid(
                "occurred_from is after occurred_until: the filter could never match",
            )),
            Self::SequenceNumberAbove(n) if n < 0 => Err(Error::invalid(
                "sequence_number_higher_than must not be negative",
            )),
            other => Ok(other),
        }
    }
}

/// A validated, sanitised event filter. An empty item list matches every event; it can only be
/// made on purpose, with [`Filter::any_event`].
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    items: Vec<FilterItem>,
    bound: Bound,
}

impl Filter {
    /// An OR of `items` (at least one), narrowed by `bound`.
    pub fn new(items: Vec<FilterItem>, bound: Bound) -> Result<Self> {
        if items.is_empty() {
            return Err(Error::invalid(
                "a filter needs at least one item; use a match-any-event filter on purpose",
            ));
        }
        let mut keyed: Vec<(String, FilterItem)> = items
            .into_iter()
            .map(|i| (i.canonical_json().to_string(), i))
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        keyed.dedup_by(|a, b| a.0 == b.0);
        Ok(Self {
            items: keyed.into_iter().map(|(_, i)| i).collect(),
            bound: bound.validate()?,
        })
    }

    /// A filter that matches every event, optionally bounded.
    pub fn any_event(bound: Bound) -> Result<Self> {
        Ok(Self {
            items: Vec::new(),
            bound: bound.validate()?,
        })
    }

    pub fn items(&self) -> &[FilterItem] {
        &self.items
    }

    pub fn bound(&self) -> Bound {
        self.bound
    }

    pub fn matches_any_event(&self) -> bool {
        self.items.is_empty()
    }

    /// The same filter, but only for events stored after `sequence_number` (an incremental
    /// read after a snapshot). An existing sequence bound is kept if it is higher. Filters
    /// with time bounds cannot be reopened: events stored later may have occurred earlier,
    /// so "after N" and a time window do not combine into one bound.
    pub fn after(&self, sequence_number: i64) -> Result<Self> {
        let bound = match self.bound {
            Bound::None => Bound::SequenceNumberAbove(sequence_number),
            Bound::SequenceNumberAbove(n) => Bound::SequenceNumberAbove(n.max(sequence_number)),
            Bound::OccurredFrom(_) | Bound::OccurredUntil(_) | Bound::OccurredBetween(..) => {
                return Err(Error::invalid(
                    "a filter with a time bound cannot be reopened after a sequence number",
                ));
            }
        };
        Ok(Self {
            items: self.items.clone(),
            bound: bound.validate()?,
        })
    }

    /// A stable hash of [`Filter::canonical_json`]: SHA-256, as 64 hex digits. Equal filters
    /// hash equal, in every process and version of the library.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        use std::fmt::Write as _;
        let digest = Sha256::digest(self.canonical_json().as_bytes());
        digest.iter().fold(String::with_capacity(64), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
    }

    /// A deterministic serialisation: equal filters, however built, give equal text.
    pub fn canonical_json(&self) -> String {
        let items: Vec<serde_json::Value> =
            self.items.iter().map(FilterItem::canonical_json).collect();
        let bound = match self.bound {
            Bound::None => serde_json::Value::Null,
            Bound::OccurredFrom(f) => serde_json::json!({ "from": f }),
            Bound::OccurredUntil(u) => serde_json::json!({ "until": u }),
            Bound::OccurredBetween(f, u) => serde_json::json!({ "from": f, "until": u }),
            Bound::SequenceNumberAbove(n) => serde_json::json!({ "after": n }),
        };
        serde_json::json!({ "items": items, "bound": bound }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str, v: &str) -> Predicate {
        Predicate {
            key: k.into(),
            value: PredicateValue::Str(v.into()),
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_string()).collect()
    }

    #[test]
    fn types_are_sanitised() {
        let item = FilterItem::new(s(&["B", "", "A", "B", "  "]), None).unwrap();
        assert_eq!(item.event_types(), ["A", "B"]);
    }

    #[test]
    fn predicates_are_sanitised_and_single_any_becomes_all() {
        let item = FilterItem::new(
            vec![],
            Some(PredicateGroup::Any(vec![p("b", "2"), p("b", "2")])),
        )
        .unwrap();
        assert_eq!(
            item.predicates(),
            Some(&PredicateGroup::All(vec![p("b", "2")]))
        );
    }

    #[test]
    fn an_empty_value_is_kept_and_an_empty_key_rejected() {
        let item = FilterItem::new(
            vec![],
            Some(PredicateGroup::Any(vec![p("b", "2"), p("a", "")])),
        )
        .unwrap();
        assert_eq!(
            item.predicates(),
            Some(&PredicateGroup::Any(vec![p("a", ""), p("b", "2")]))
        );
        assert!(FilterItem::new(vec![], Some(PredicateGroup::Any(vec![p("", "x")]))).is_err());
        assert!(FilterItem::new(
            s(&["A"]),
            Some(PredicateGroup::All(vec![p("k", "v"), p("", "v")]))
        )
        .is_err());
    }

    #[test]
    fn empty_items_are_errors() {
        assert!(FilterItem::new(vec![], None).is_err());
        assert!(FilterItem::new(s(&["", " "]), None).is_err());
        assert!(FilterItem::new(vec![], Some(PredicateGroup::All(vec![p("", "")]))).is_err());
        // Types survive, but the predicates given were none: widening would be a silent bug.
        assert!(FilterItem::new(s(&["A"]), Some(PredicateGroup::Any(vec![]))).is_err());
        assert!(Filter::new(vec![], Bound::None).is_err());
    }

    #[test]
    fn nul_is_rejected() {
        assert!(FilterItem::new(s(&["A\0"]), None).is_err());
        assert!(FilterItem::new(vec![], Some(PredicateGroup::All(vec![p("k\0", "v")]))).is_err());
        assert!(FilterItem::new(vec![], Some(PredicateGroup::All(vec![p("k", "v\0")]))).is_err());
    }

    #[test]
    fn floats_normalise_and_non_finite_is_rejected() {
        let item = FilterItem::new(
            vec![],
            Some(PredicateGroup::Any(vec![
                Predicate {
                    key: "n".into(),
                    value: PredicateValue::Float(1.0),
                },
                Predicate {
                    key: "n".into(),
                    value: PredicateValue::Int(1),
                },
            ])),
        )
        .unwrap();
        assert_eq!(item.predicates().unwrap().members().len(), 1);
        let num = |v: PredicateValue| {
            FilterItem::new(
                vec![],
                Some(PredicateGroup::All(vec![Predicate {
                    key: "n".into(),
                    value: v,
                }])),
            )
            .unwrap()
        };
        // jsonb compares numbers by value, at every magnitude.
        for (a, b) in [
            (
                PredicateValue::Float(1e16),
                PredicateValue::Int(10_i64.pow(16)),
            ),
            (PredicateValue::Float(-0.0), PredicateValue::Int(0)),
            (
                PredicateValue::Float(2.5e-7),
                PredicateValue::Number("0.00000025".into()),
            ),
            (
                PredicateValue::Float(1e300),
                PredicateValue::Number(format!("1{}", "0".repeat(300))),
            ),
            (
                PredicateValue::Float(-1.5),
                PredicateValue::Number("-1.50".into()),
            ),
        ] {
            assert_eq!(num(a.clone()), num(b.clone()), "{a:?} {b:?}");
        }
        assert_ne!(
            num(PredicateValue::Float(0.1)),
            num(PredicateValue::Float(0.2))
        );
        let nan = Predicate {
            key: "n".into(),
            value: PredicateValue::Float(f64::NAN),
        };
        assert!(FilterItem::new(vec![], Some(PredicateGroup::All(vec![nan]))).is_err());
    }

    #[test]
    fn bounds_are_validated() {
        assert!(Filter::any_event(Bound::OccurredBetween(2, 1)).is_err());
        assert!(Filter::any_event(Bound::OccurredBetween(1, 1)).is_ok());
        assert!(Filter::any_event(Bound::SequenceNumberAbove(-1)).is_err());
        assert!(Filter::any_event(Bound::OccurredFrom(i64::MIN)).is_err());
        assert!(Filter::any_event(Bound::OccurredUntil(i64::MAX)).is_err());
    }

    #[test]
    fn reopening_after_a_sequence_number() {
        let item = FilterItem::new(s(&["A"]), None).unwrap();
        let f = Filter::new(vec![item.clone()], Bound::None).unwrap();
        assert_eq!(f.after(5).unwrap().bound(), Bound::SequenceNumberAbove(5));
        let g = Filter::new(vec![item.clone()], Bound::SequenceNumberAbove(9)).unwrap();
        assert_eq!(g.after(5).unwrap().bound(), Bound::SequenceNumberAbove(9));
        assert!(Filter::new(vec![item], Bound::OccurredFrom(1))
            .unwrap()
            .after(5)
            .is_err());
        assert!(f.after(-1).is_err());
    }

    #[test]
    fn tags_are_sanitised_and_bad_tags_rejected() {
        let t = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let item =
            FilterItem::with_tags(vec![], None, Some(TagGroup::Any(t(&["b", "a", "b"])))).unwrap();
        assert_eq!(item.tags(), Some(&TagGroup::Any(t(&["a", "b"]))));
        let one = FilterItem::with_tags(vec![], None, Some(TagGroup::Any(t(&["a", "a"])))).unwrap();
        assert_eq!(one.tags(), Some(&TagGroup::All(t(&["a"]))));
        assert_eq!(
            one.canonical_json().to_string(),
            r#"{"tags_all":["a"]}"#,
            "tags serialise apart from types and predicates"
        );
        for bad in [t(&[]), t(&[""]), t(&["a", "b\0"])] {
            assert!(FilterItem::with_tags(vec![], None, Some(TagGroup::All(bad))).is_err());
        }
        let untagged = FilterItem::new(s(&["A"]), None).unwrap();
        assert_eq!(untagged.canonical_json().to_string(), r#"{"types":["A"]}"#);
    }

    #[test]
    fn hashes_are_stable_and_tell_filters_apart() {
        let a = Filter::new(vec![FilterItem::new(s(&["A"]), None).unwrap()], Bound::None).unwrap();
        let b = Filter::new(vec![FilterItem::new(s(&["B"]), None).unwrap()], Bound::None).unwrap();
        assert_eq!(a.hash().len(), 64);
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash(), a.clone().hash());
        assert_ne!(a.hash(), a.after(1).unwrap().hash());
    }

    #[test]
    fn equal_filters_are_equal_however_built() {
        let a = Filter::new(
            vec![
                FilterItem::new(s(&["X", "Y"]), None).unwrap(),
                FilterItem::new(
                    s(&["Z"]),
                    Some(PredicateGroup::All(vec![p("a", "1"), p("b", "2")])),
                )
                .unwrap(),
            ],
            Bound::None,
        )
        .unwrap();
        let b = Filter::new(
            vec![
                FilterItem::new(
                    s(&["Z"]),
                    Some(PredicateGroup::All(vec![p("b", "2"), p("a", "1")])),
                )
                .unwrap(),
                FilterItem::new(s(&["Y", "X", "Y"]), None).unwrap(),
                FilterItem::new(s(&["X", "Y"]), None).unwrap(),
            ],
            Bound::None,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.canonical_json(), b.canonical_json());
    }
}
