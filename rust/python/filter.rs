//! Filters for Python: items, bounds and the filter itself, each a small native class, so
//! the facade hands over typed values rather than strings and tuples.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyString};

use super::convert::micros;
use super::errors::{invalid, OrRaise};
use crate::filter::{self, Predicate, PredicateGroup, PredicateValue, TagGroup};
use crate::keys;
use crate::sql::statements;
use crate::table::TableName;

fn predicate_value(key: &str, value: &Bound<'_, PyAny>) -> PyResult<PredicateValue> {
    let py = value.py();
    // bool before int: Python's bool is an int.
    if let Ok(b) = value.cast::<PyBool>() {
        return Ok(PredicateValue::Bool(b.is_true()));
    }
    if value.is_instance_of::<PyInt>() {
        return value
            .extract::<i64>()
            .map(PredicateValue::Int)
            .map_err(|_| {
                invalid(
                    py,
                    format!("the value of predicate {key:?}: integers must fit in 64 bits"),
                )
            });
    }
    if value.is_instance_of::<PyFloat>() {
        return Ok(PredicateValue::Float(value.extract()?));
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(PredicateValue::Str(s.to_str()?.to_owned()));
    }
    Err(invalid(
        py,
        format!(
            "the value of predicate {key:?} must be a str, int, float or bool, got {}",
            value.get_type().name()?
        ),
    ))
}

/// How an item's predicates, or its tags, combine.
#[pyclass(eq, eq_int, frozen, module = "dynamic_streams._native", name = "Match")]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PyMatch {
    /// At least one predicate holds.
    #[pyo3(name = "ANY")]
    Any,
    /// Every predicate holds.
    #[pyo3(name = "ALL")]
    All,
}

/// One alternative of a filter: any of its event types, and its predicates, and its tags.
#[pyclass(frozen, module = "dynamic_streams._native", name = "FilterItem")]
pub struct PyFilterItem {
    inner: filter::FilterItem,
}

#[pymethods]
impl PyFilterItem {
    /// Validates and sanitises an item: any of ``event_types`` (if given), and its
    /// ``predicates`` ``(key, value)`` combined as ``match`` says (if given), and its ``tags``
    /// combined as ``tag_match`` says (if given).
    #[new]
    #[pyo3(signature = (event_types, r#match=None, predicates=Vec::new(), tag_match=None, tags=Vec::new()))]
    fn new(
        py: Python<'_>,
        event_types: Vec<String>,
        r#match: Option<PyRef<'_, PyMatch>>,
        predicates: Vec<(String, Bound<'_, PyAny>)>,
        tag_match: Option<PyRef<'_, PyMatch>>,
        tags: Vec<String>,
    ) -> PyResult<Self> {
        let predicates = predicates
            .into_iter()
            .map(|(key, v)| {
                Ok(Predicate {
                    value: predicate_value(&key, &v)?,
                    key,
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let group = match r#match.as_deref() {
            None if predicates.is_empty() => None,
            None => return Err(invalid(py, "predicates need a match: ANY or ALL")),
            Some(PyMatch::Any) => Some(PredicateGroup::Any(predicates)),
            Some(PyMatch::All) => Some(PredicateGroup::All(predicates)),
        };
        let tags = match tag_match.as_deref() {
            None if tags.is_empty() => None,
            None => return Err(invalid(py, "tags need a match: ANY or ALL")),
            Some(PyMatch::Any) => Some(TagGroup::Any(tags)),
            Some(PyMatch::All) => Some(TagGroup::All(tags)),
        };
        Ok(Self {
            inner: filter::FilterItem::with_tags(event_types, group, tags).or_raise(py)?,
        })
    }
}

/// The one global bound of a filter.
#[pyclass(frozen, module = "dynamic_streams._native", name = "Bound")]
pub struct PyBound {
    inner: filter::Bound,
}

#[pymethods]
impl PyBound {
    /// Events that occurred at or after ``start`` (an aware datetime).
    #[staticmethod]
    fn occurred_from(start: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(filter::Bound::OccurredFrom(micros("occurred_from", start)?).into())
    }

    /// Events that occurred at or before ``until`` (an aware datetime).
    #[staticmethod]
    fn occurred_until(until: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(filter::Bound::OccurredUntil(micros("occurred_until", until)?).into())
    }

    /// Events that occurred from ``start`` to ``until``, both inclusive.
    #[staticmethod]
    fn occurred_between(start: &Bound<'_, PyAny>, until: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(filter::Bound::OccurredBetween(
            micros("occurred_from", start)?,
            micros("occurred_until", until)?,
        )
        .into())
    }

    /// Events stored after ``sequence_number`` (exclusive).
    #[staticmethod]
    fn sequence_number_above(sequence_number: i64) -> Self {
        filter::Bound::SequenceNumberAbove(sequence_number).into()
    }
}

impl From<filter::Bound> for PyBound {
    fn from(inner: filter::Bound) -> Self {
        Self { inner }
    }
}

/// A validated, sanitised event filter.
#[pyclass(frozen, module = "dynamic_streams._native", name = "Filter")]
pub struct PyFilter {
    pub(super) inner: Arc<filter::Filter>,
}

impl From<filter::Filter> for PyFilter {
    fn from(inner: filter::Filter) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }
}

#[pymethods]
impl PyFilter {
    /// An OR of ``items``, narrowed by ``bound``; ``items=None`` matches every event.
    #[new]
    #[pyo3(signature = (items, bound=None))]
    fn new(
        py: Python<'_>,
        items: Option<Vec<PyRef<'_, PyFilterItem>>>,
        bound: Option<PyRef<'_, PyBound>>,
    ) -> PyResult<Self> {
        let bound = bound.map_or(filter::Bound::None, |b| b.inner);
        match items {
            None => filter::Filter::any_event(bound),
            Some(items) => {
                filter::Filter::new(items.iter().map(|i| i.inner.clone()).collect(), bound)
            }
        }
        .or_raise(py)
        .map(Self::from)
    }

    /// A deterministic serialisation: equal filters give equal text.
    fn canonical_json(&self) -> String {
        self.inner.canonical_json()
    }

    /// A stable SHA-256 hash (64 hex digits) of the canonical serialisation.
    fn hash(&self) -> String {
        self.inner.hash()
    }

    /// The same filter, only for events stored after ``sequence_number``.
    fn after(&self, py: Python<'_>, sequence_number: i64) -> PyResult<Self> {
        self.inner
            .after(sequence_number)
            .or_raise(py)
            .map(Self::from)
    }

    /// The SQL and parameters this filter's query compiles to, for ``table`` (for
    /// inspection).
    fn to_sql(&self, py: Python<'_>, table: &str) -> PyResult<(String, Vec<String>)> {
        let table = TableName::parse(table).or_raise(py)?;
        let lookup = keys::lookup(&table, &self.inner);
        let s = statements::query(&table, &self.inner, lookup.as_ref());
        Ok((s.sql, s.params.iter().map(|p| format!("{p:?}")).collect()))
    }

    /// The guarded insert this filter compiles to, for ``table`` (for logs and inspection).
    fn append_sql(&self, py: Python<'_>, table: &str) -> PyResult<String> {
        let table = TableName::parse(table).or_raise(py)?;
        let lookup = keys::lookup(&table, &self.inner);
        let guard = statements::Guard {
            filter: &self.inner,
            lookup: lookup.as_ref(),
            expected: 0,
        };
        Ok(statements::insert(&table, Some(&guard), &[]).sql)
    }

    fn __eq__(&self, other: &Self) -> bool {
        self.inner == other.inner
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.inner.canonical_json().hash(&mut h);
        h.finish()
    }
}
