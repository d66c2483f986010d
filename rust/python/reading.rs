//! Reads and subscriptions for Python: each page is one call, returned (or awaited) through
//! the store's [`Calls`], so a Python iterator holds no connection between pages.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::sync::Mutex;

use super::convert::{CallTimeout, Events};
use super::runtime::Calls;
use crate::store::{EventStore, Reader};
use crate::subscription::{Stop, Subscription};

/// A read in progress; ``next()`` returns its next page (empty when it is done).
#[pyclass(frozen, module = "dynamic_streams._native", name = "Reader")]
pub struct PyReader {
    store: Arc<EventStore>,
    reader: Arc<Mutex<Reader>>,
    calls: Calls,
}

impl PyReader {
    pub fn new(store: Arc<EventStore>, reader: Reader, calls: Calls) -> Self {
        Self {
            store,
            reader: Arc::new(Mutex::new(reader)),
            calls,
        }
    }
}

#[pymethods]
impl PyReader {
    #[pyo3(signature = (timeout))]
    fn next<'py>(&self, py: Python<'py>, timeout: CallTimeout) -> PyResult<Bound<'py, PyAny>> {
        let (store, reader) = (Arc::clone(&self.store), Arc::clone(&self.reader));
        self.calls.run(py, async move {
            let mut reader = reader.lock().await;
            store.read(&mut reader, timeout.0).await.map(Events)
        })
    }
}

/// A subscription; ``next(wait)`` returns its next page: None once closed, empty when
/// ``wait`` seconds passed without events.
#[pyclass(frozen, module = "dynamic_streams._native", name = "Subscription")]
pub struct PySubscription {
    store: Arc<EventStore>,
    subscription: Arc<Mutex<Subscription>>,
    stop: Arc<Stop>,
    calls: Calls,
}

impl PySubscription {
    pub fn new(store: Arc<EventStore>, subscription: Subscription, calls: Calls) -> Self {
        Self {
            store,
            stop: subscription.stop_handle(),
            subscription: Arc::new(Mutex::new(subscription)),
            calls,
        }
    }
}

#[pymethods]
impl PySubscription {
    #[pyo3(signature = (wait=None))]
    fn next<'py>(&self, py: Python<'py>, wait: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let wait = wait.map(|w| Duration::from_secs_f64(w.max(0.0)));
        let (store, subscription) = (Arc::clone(&self.store), Arc::clone(&self.subscription));
        self.calls.run(py, async move {
            let mut subscription = subscription.lock().await;
            Ok(subscription.next(&store, wait).await?.map(Events))
        })
    }

    /// Stops the subscription: a waiting ``next`` returns None, and its listener ends.
    fn close(&self) {
        self.stop.stop();
    }

    #[getter]
    fn closed(&self) -> bool {
        self.stop.is_stopped()
    }
}
