//! Storable events for Python.

use pyo3::prelude::*;
use pyo3::types::PyDateTime;

use super::convert::{datetime, micros};
use super::errors::OrRaise;
use crate::event::StorableEvent;

/// An event validated for appending.
#[pyclass(frozen, module = "dynamic_streams._native", name = "StorableEvent")]
pub struct PyStorableEvent {
    pub(super) inner: StorableEvent,
}

#[pymethods]
impl PyStorableEvent {
    /// Validates an event: ``payload`` and ``metadata`` are JSON object texts, ``occurred_at``
    /// an aware datetime (now when None), ``tags`` non-empty strings.
    #[new]
    #[pyo3(signature = (event_type, payload, metadata=None, occurred_at=None, id=None, tags=Vec::new()))]
    fn new(
        py: Python<'_>,
        event_type: String,
        payload: &str,
        metadata: Option<&str>,
        occurred_at: Option<&Bound<'_, PyAny>>,
        id: Option<&str>,
        tags: Vec<String>,
    ) -> PyResult<Self> {
        let occurred_at = occurred_at.map(|t| micros("occurred_at", t)).transpose()?;
        let mut event =
            StorableEvent::new(event_type, payload, metadata, occurred_at).or_raise(py)?;
        if let Some(id) = id {
            event = event.with_id(id).or_raise(py)?;
        }
        if !tags.is_empty() {
            event = event.with_tags(tags).or_raise(py)?;
        }
        Ok(Self { inner: event })
    }

    /// The event's tags, in the order given, each once.
    #[getter]
    fn tags(&self) -> Vec<String> {
        self.inner.tags().to_vec()
    }

    /// The event's id (a UUID's text), if it has one.
    #[getter]
    fn id(&self) -> Option<String> {
        self.inner.id().map(|id| id.to_string())
    }

    #[getter]
    fn event_type(&self) -> &str {
        self.inner.event_type()
    }

    /// When the event occurred, in UTC.
    #[getter]
    fn occurred_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDateTime>> {
        datetime(py, self.inner.occurred_at())
    }
}
