//! Engine values to Python objects, built directly (no JSON text round trip).

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDateTime, PyDict, PyList, PyTuple, PyType, PyTzInfo};
use serde_json::{Map, Number, Value};

use crate::event::RecordedEvent;
use crate::store::{QueryResult, Snapshot};

fn number<'py>(py: Python<'py>, n: &Number) -> PyResult<Bound<'py, PyAny>> {
    if let Some(i) = n.as_i64() {
        return Ok(i.into_pyobject(py)?.into_any());
    }
    if let Some(u) = n.as_u64() {
        return Ok(u.into_pyobject(py)?.into_any());
    }
    let text = n.as_str();
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        // An integer beyond 64 bits: Python's int keeps it exact.
        return py.get_type::<pyo3::types::PyInt>().call1((text,));
    }
    Ok(n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any())
}

pub fn value<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => number(py, n)?,
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(value(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => object(py, map)?.into_any(),
    })
}

pub fn object<'py>(py: Python<'py>, map: &Map<String, Value>) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (k, v) in map {
        dict.set_item(k, value(py, v)?)?;
    }
    Ok(dict)
}

/// Days since 1970-01-01 to a civil date (proleptic Gregorian).
#[allow(clippy::cast_possible_truncation)]
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month, day)
}

/// Microseconds since the Unix epoch to an aware UTC `datetime`.
#[allow(clippy::cast_possible_truncation)]
pub fn datetime(py: Python<'_>, micros: i64) -> PyResult<Bound<'_, PyDateTime>> {
    let (days, rest) = (
        micros.div_euclid(86_400_000_000),
        micros.rem_euclid(86_400_000_000),
    );
    let (year, month, day) = civil_from_days(days);
    let secs = rest / 1_000_000;
    let utc = PyTzInfo::utc(py)?;
    PyDateTime::new(
        py,
        year,
        month,
        day,
        (secs / 3600) as u8,
        (secs / 60 % 60) as u8,
        (secs % 60) as u8,
        (rest % 1_000_000) as u32,
        Some(&utc),
    )
}

/// The facade's `RecordedEvent`, looked up once and checked to be what the code below can
/// fill: a tuple subclass whose instances hold nothing but their items (a `NamedTuple`).
fn recorded_event_class(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    CLASS
        .get_or_try_init(py, || {
            let class: Bound<'_, PyType> = py
                .import("dynamic_streams.events")?
                .getattr("RecordedEvent")?
                .cast_into()?;
            let tuple = py.get_type::<PyTuple>();
            let plain = class.is_subclass(&tuple)?
                && class
                    .getattr("__basicsize__")?
                    .eq(tuple.getattr("__basicsize__")?)?
                && class.getattr("_fields")?.len()? == 5;
            if !plain {
                return Err(PyTypeError::new_err(
                    "dynamic_streams.events.RecordedEvent must be a NamedTuple of five fields",
                ));
            }
            Ok(class.unbind())
        })
        .map(|class| class.bind(py))
}

/// A `RecordedEvent`, built the way the interpreter builds a tuple (no Python-level
/// `__new__` per event).
fn event<'py>(
    py: Python<'py>,
    class: &Bound<'py, PyType>,
    e: &RecordedEvent,
) -> PyResult<Bound<'py, PyAny>> {
    let items = [
        e.sequence_number.into_pyobject(py)?.into_any(),
        datetime(py, e.occurred_at)?.into_any(),
        e.event_type.as_str().into_pyobject(py)?.into_any(),
        object(py, &e.payload)?.into_any(),
        object(py, &e.metadata)?.into_any(),
    ];
    // SAFETY: `class` is a tuple subclass with the tuple's layout (checked when it was looked
    // up), so its allocator returns a tuple of `items.len()` empty slots, which each take
    // one owned reference, exactly once, before the object is used.
    unsafe {
        let obj = ffi::PyType_GenericAlloc(class.as_type_ptr(), items.len() as ffi::Py_ssize_t);
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        for (i, item) in items.into_iter().enumerate() {
            ffi::PyTuple_SET_ITEM(obj, i as ffi::Py_ssize_t, item.into_ptr());
        }
        Ok(Bound::from_owned_ptr(py, obj))
    }
}

/// A query result for Python: `([RecordedEvent, ...], max_sequence_number, from_replica)`.
pub struct Rows(pub QueryResult);

impl<'py> IntoPyObject<'py> for Rows {
    type Target = PyTuple;
    type Output = Bound<'py, PyTuple>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        let class = recorded_event_class(py)?;
        let events = PyList::empty(py);
        for e in &self.0.events {
            events.append(event(py, class, e)?)?;
        }
        PyTuple::new(
            py,
            [
                events.into_any(),
                self.0.max_sequence_number.into_pyobject(py)?.into_any(),
                pyo3::types::PyBool::new(py, self.0.from_replica)
                    .to_owned()
                    .into_any(),
            ],
        )
    }
}

/// A snapshot for Python: `(sequence_number, data, created_at)`.
pub struct SnapshotRow(pub Snapshot);

impl<'py> IntoPyObject<'py> for SnapshotRow {
    type Target = PyTuple;
    type Output = Bound<'py, PyTuple>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        PyTuple::new(
            py,
            [
                self.0.sequence_number.into_pyobject(py)?.into_any(),
                value(py, &self.0.data)?,
                datetime(py, self.0.created_at)?.into_any(),
            ],
        )
    }
}
