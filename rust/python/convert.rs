//! Values between the engine and Python, built directly: instants, and the facade's result
//! classes, filled by field name (their JSON from [`super::json`]); and the calls' time
//! limits.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyDateAccess, PyDateTime, PyDelta, PyDeltaAccess, PyDict, PyFloat, PyInt,
    PyList, PyTimeAccess, PyTuple, PyType, PyTzInfo,
};
use std::time::Duration;

use super::errors::invalid;
use super::json::{gc_tracked, object_text, untrack, value_text, Texts};
use crate::event::RecordedEvent;
use crate::store::{QueryResult, Snapshot, Timeout};
use crate::time::{self, Civil};

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
        object_text(py, e.payload.as_str(), texts)?.into_any(),
        object_text(py, e.metadata.as_str(), texts)?.into_any(),
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
        fields.set_item("data", value_text(py, s.data.as_str())?)?;
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
