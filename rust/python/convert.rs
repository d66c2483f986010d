//! Values between the engine and Python, built directly (no JSON text round trip): JSON
//! values, instants, and the facade's result classes, filled by field name; and the calls'
//! time limits.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyDateAccess, PyDateTime, PyDelta, PyDeltaAccess, PyDict, PyFloat, PyInt,
    PyList, PyString, PyTimeAccess, PyTuple, PyType, PyTzInfo,
};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use std::time::Duration;

use super::errors::invalid;
use crate::event::RecordedEvent;
use crate::input::canonical_number;
use crate::store::{QueryResult, Snapshot, Timeout};
use crate::time::{self, Civil};

/// A JSON number as Python holds it without loss. PostgreSQL keeps jsonb numbers as exact
/// decimals and writes them without exponent: an integer comes back as an `int` (a
/// `Decimal` beyond Python's limit on digits in int text), a number with a fraction as a
/// `float` when the float is exactly the number stored, else as a `Decimal`.
fn number<'py>(py: Python<'py>, n: &Number) -> PyResult<Bound<'py, PyAny>> {
    static DECIMAL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    if let Some(i) = n.as_i64() {
        return Ok(i.into_pyobject(py)?.into_any());
    }
    if let Some(u) = n.as_u64() {
        return Ok(u.into_pyobject(py)?.into_any());
    }
    let text = n.as_str();
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        if let Ok(int) = py.get_type::<pyo3::types::PyInt>().call1((text,)) {
            return Ok(int);
        }
    } else if let Ok(f) = text.parse::<f64>() {
        if f.is_finite() && canonical_number(&f.to_string()) == canonical_number(text) {
            return Ok(f.into_pyobject(py)?.into_any());
        }
    }
    facade_class(py, &DECIMAL, "decimal", "Decimal")?.call1((text,))
}

/// The texts a batch of events repeats (payload keys, event types), each made a Python `str`
/// once and shared: no decoding per event, and each key's hash computed once. Bounded, as
/// the keys come from stored data: at most [`Self::MAX`] texts of up to [`Self::LONGEST`]
/// bytes; others are made each time.
#[derive(Default)]
struct Texts<'py>(HashMap<String, Bound<'py, PyString>>);

impl<'py> Texts<'py> {
    const MAX: usize = 1024;
    const LONGEST: usize = 64;

    fn get(&mut self, py: Python<'py>, text: &str) -> Bound<'py, PyString> {
        if let Some(made) = self.0.get(text) {
            return made.clone();
        }
        let made = PyString::new(py, text);
        if text.len() <= Self::LONGEST && self.0.len() < Self::MAX {
            self.0.insert(text.to_owned(), made.clone());
        }
        made
    }
}

pub fn value<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    value_in(py, v, &mut Texts::default())
}

fn value_in<'py>(py: Python<'py>, v: &Value, keys: &mut Texts<'py>) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => number(py, n)?,
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(value_in(py, item, keys)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => object(py, map, keys)?.into_any(),
    })
}

fn object<'py>(
    py: Python<'py>,
    map: &Map<String, Value>,
    keys: &mut Texts<'py>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let mut acyclic = true;
    for (k, v) in map {
        let v = value_in(py, v, keys)?;
        acyclic &= !gc_tracked(&v);
        dict.set_item(keys.get(py, k), v)?;
    }
    if acyclic {
        untrack(&dict);
    }
    Ok(dict)
}

/// Whether the cyclic garbage collector follows `obj` (a container that may be in a cycle).
fn gc_tracked(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: `obj` is a live object; the call only reads its header.
    unsafe { ffi::PyObject_GC_IsTracked(obj.as_ptr()) == 1 }
}

/// Stops the cyclic garbage collector following a dict or tuple that holds nothing it
/// follows: no reference cycle can pass through it. CPython applies the same rule to dicts
/// and tuples itself, but only when a collection reaches them; values built by the thousand
/// (a read's events and their payloads) were otherwise traversed collection after
/// collection, a seventh of a catch-up read's time. A dict given a container later is
/// followed again (CPython re-tracks it on insertion).
fn untrack(obj: &Bound<'_, PyAny>) {
    // SAFETY: `obj` is a live dict or tuple; untracking is allowed for any GC object and is a
    // no-op when it is not tracked.
    unsafe { ffi::PyObject_GC_UnTrack(obj.as_ptr().cast()) }
}

/// Microseconds since the Unix epoch to an aware UTC `datetime`.
///
/// Built from its pickled state, `datetime(state, tzinfo)`, the constructor pickle has
/// called since Python 2 (so it stays): ten bytes instead of eight arguments to parse, a
/// tenth of a catch-up's time before. Years out of `datetime`'s range take the checked
/// constructor, which raises.
pub fn datetime(py: Python<'_>, micros: i64) -> PyResult<Bound<'_, PyDateTime>> {
    let c = time::to_civil(micros);
    let utc = PyTzInfo::utc(py)?;
    let Ok(year @ 1..=9999) = u16::try_from(c.year) else {
        return PyDateTime::new(
            py,
            c.year,
            c.month,
            c.day,
            c.hour,
            c.minute,
            c.second,
            c.microsecond,
            Some(&utc),
        );
    };
    let [y1, y2] = year.to_be_bytes();
    let [_, m1, m2, m3] = c.microsecond.to_be_bytes();
    let state = [
        y1, y2, c.month, c.day, c.hour, c.minute, c.second, m1, m2, m3,
    ];
    let state = PyBytes::new(py, &state);
    Ok(py
        .get_type::<PyDateTime>()
        .call1((state, utc))?
        .cast_into::<PyDateTime>()?)
}

/// An aware `datetime` to microseconds since the Unix epoch; `what` names the argument in
/// the error for anything else.
pub fn micros(what: &str, moment: &Bound<'_, PyAny>) -> PyResult<i64> {
    let py = moment.py();
    let Ok(dt) = moment.cast::<PyDateTime>() else {
        return Err(invalid(
            py,
            format!(
                "{what}: expected a datetime, got {}",
                moment.get_type().name()?
            ),
        ));
    };
    let offset = dt.call_method0("utcoffset")?;
    let Ok(offset) = offset.cast::<PyDelta>() else {
        return Err(invalid(
            py,
            format!(
                "{what}: naive datetimes are ambiguous: give a timezone (for example timezone.utc)"
            ),
        ));
    };
    let local = time::from_civil(&Civil {
        year: dt.get_year(),
        month: dt.get_month(),
        day: dt.get_day(),
        hour: dt.get_hour(),
        minute: dt.get_minute(),
        second: dt.get_second(),
        microsecond: dt.get_microsecond(),
    });
    let offset = (i64::from(offset.get_days()) * 86_400 + i64::from(offset.get_seconds()))
        * 1_000_000
        + i64::from(offset.get_microseconds());
    Ok(local - offset)
}

/// A class of the facade (or of the standard library), looked up once per process.
fn facade_class<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    module: &str,
    name: &str,
) -> PyResult<&'py Bound<'py, PyType>> {
    cell.get_or_try_init(py, || {
        Ok::<_, PyErr>(
            py.import(module)?
                .getattr(name)?
                .cast_into::<PyType>()?
                .unbind(),
        )
    })
    .map(|class| class.bind(py))
}

/// The fields of `RecordedEvent`, in the order [`event`] fills them.
const RECORDED_EVENT_FIELDS: [&str; 7] = [
    "sequence_number",
    "occurred_at",
    "event_type",
    "payload",
    "metadata",
    "id",
    "tags",
];

/// The facade's `RecordedEvent`, looked up once and checked to be what [`event`] can fill: a
/// tuple subclass whose instances hold nothing but their items (a `NamedTuple`), with
/// exactly the fields above in that order.
fn recorded_event_class(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    static CHECKED: PyOnceLock<()> = PyOnceLock::new();
    let class = facade_class(py, &CLASS, "dynamic_streams.events", "RecordedEvent")?;
    CHECKED.get_or_try_init(py, || {
        let tuple = py.get_type::<PyTuple>();
        let plain = class.is_subclass(&tuple)?
            && class
                .getattr("__basicsize__")?
                .eq(tuple.getattr("__basicsize__")?)?
            && class
                .getattr("_fields")?
                .eq(PyTuple::new(py, RECORDED_EVENT_FIELDS)?)?;
        if plain {
            Ok(())
        } else {
            Err(PyTypeError::new_err(format!(
                "dynamic_streams.events.RecordedEvent must be a NamedTuple of the fields {RECORDED_EVENT_FIELDS:?}"
            )))
        }
    })?;
    Ok(class)
}

/// A `RecordedEvent`, built the way the interpreter builds a tuple (no Python-level
/// `__new__` per event).
fn event<'py>(
    py: Python<'py>,
    class: &Bound<'py, PyType>,
    e: &RecordedEvent,
    texts: &mut Texts<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    // In the order of RECORDED_EVENT_FIELDS.
    let items = [
        e.sequence_number.into_pyobject(py)?.into_any(),
        datetime(py, e.occurred_at)?.into_any(),
        texts.get(py, &e.event_type).into_any(),
        object(py, &e.payload, texts)?.into_any(),
        object(py, &e.metadata, texts)?.into_any(),
        match e.id {
            Some(id) => uuid(py, id)?,
            None => py.None().into_bound(py),
        },
        if e.tags.is_empty() {
            PyTuple::empty(py).into_any()
        } else {
            let tags = PyTuple::new(py, &e.tags)?.into_any();
            untrack(&tags);
            tags
        },
    ];
    let acyclic = items.iter().all(|item| !gc_tracked(item));
    // SAFETY: `class` is a tuple subclass with the tuple's layout (checked when it was looked
    // up), so its allocator returns a new tuple (one reference, ours) of `items.len()` empty
    // slots, which each take one owned reference, exactly once, before the object is used.
    // `PyTuple_SetItem` (the stable ABI's way) steals the item's reference even when it fails.
    unsafe {
        let obj = Bound::from_owned_ptr_or_err(
            py,
            ffi::PyType_GenericAlloc(class.as_type_ptr(), items.len() as ffi::Py_ssize_t),
        )?;
        for (i, item) in items.into_iter().enumerate() {
            if ffi::PyTuple_SetItem(obj.as_ptr(), i as ffi::Py_ssize_t, item.into_ptr()) != 0 {
                return Err(PyErr::fetch(py));
            }
        }
        if acyclic {
            untrack(&obj);
        }
        Ok(obj)
    }
}

/// A query result as the facade's `QueryResult`.
pub struct Rows(pub QueryResult);

impl<'py> IntoPyObject<'py> for Rows {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        static CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        let fields = PyDict::new(py);
        fields.set_item("events", event_list(py, &self.0.events)?)?;
        fields.set_item("max_sequence_number", self.0.max_sequence_number)?;
        fields.set_item("from_replica", self.0.from_replica)?;
        facade_class(py, &CLASS, "dynamic_streams.events", "QueryResult")?.call((), Some(&fields))
    }
}

/// Events as a list of the facade's `RecordedEvent`.
pub struct Events(pub Vec<RecordedEvent>);

impl<'py> IntoPyObject<'py> for Events {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        Ok(event_list(py, &self.0)?.into_any())
    }
}

/// A list of the facade's `RecordedEvent`.
fn event_list<'py>(py: Python<'py>, events: &[RecordedEvent]) -> PyResult<Bound<'py, PyList>> {
    let class = recorded_event_class(py)?;
    let list = PyList::empty(py);
    let mut texts = Texts::default();
    for e in events {
        list.append(event(py, class, e, &mut texts)?)?;
    }
    Ok(list)
}

/// An event id as a `uuid.UUID`.
fn uuid(py: Python<'_>, id: uuid::Uuid) -> PyResult<Bound<'_, PyAny>> {
    static UUID: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    let fields = PyDict::new(py);
    fields.set_item("bytes", pyo3::types::PyBytes::new(py, id.as_bytes()))?;
    facade_class(py, &UUID, "uuid", "UUID")?.call((), Some(&fields))
}

/// A snapshot as the facade's `Snapshot`, or None.
pub struct SnapshotRow(pub Option<Snapshot>);

impl<'py> IntoPyObject<'py> for SnapshotRow {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        static CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        let Some(s) = self.0 else {
            return Ok(py.None().into_bound(py));
        };
        let fields = PyDict::new(py);
        fields.set_item("projection_type", s.projection_type)?;
        fields.set_item("filter_hash", s.filter_hash)?;
        fields.set_item("sequence_number", s.sequence_number)?;
        fields.set_item("data", value(py, &s.data)?)?;
        fields.set_item("created_at", datetime(py, s.created_at)?)?;
        facade_class(py, &CLASS, "dynamic_streams.snapshots", "Snapshot")?.call((), Some(&fields))
    }
}

/// The argument that stands for the store's default timeout.
#[pyclass(frozen, module = "dynamic_streams._native", name = "StoreDefault")]
pub struct PyStoreDefault;

#[pymethods]
impl PyStoreDefault {
    #[allow(clippy::unused_self)] // a method, for Python
    fn __repr__(&self) -> &'static str {
        "STORE_DEFAULT"
    }
}

/// A positive, finite number of seconds; `what` names the argument in the error.
pub fn seconds(what: &str, value: &Bound<'_, PyAny>) -> PyResult<Duration> {
    let number = !value.is_instance_of::<PyBool>()
        && (value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyInt>());
    number
        .then(|| value.extract::<f64>().ok())
        .flatten()
        .and_then(|t| Duration::try_from_secs_f64(t).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            invalid(
                value.py(),
                format!("{what} must be a positive, finite number of seconds"),
            )
        })
}

/// A call's `timeout` argument: `STORE_DEFAULT`, None (no limit) or seconds.
pub struct CallTimeout(pub Timeout);

impl<'a, 'py> FromPyObject<'a, 'py> for CallTimeout {
    type Error = PyErr;

    fn extract(value: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(Self(if value.is_none() {
            Timeout::Unlimited
        } else if value.is_instance_of::<PyStoreDefault>() {
            Timeout::StoreDefault
        } else {
            Timeout::After(seconds(
                "timeout (seconds, None for no limit, or STORE_DEFAULT)",
                &value,
            )?)
        }))
    }
}

pub const STORE_DEFAULT: CallTimeout = CallTimeout(Timeout::StoreDefault);
