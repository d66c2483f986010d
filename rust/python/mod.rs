//! The Python bindings: thin wrappers over the engine. Ergonomics live in the Python facade
//! (`python/dynamic_streams`); this module converts arguments, releases the GIL around every
//! wait, and turns engine errors into the facade's exception classes, in one place.

// PyO3 extracts arguments as owned values; borrowing them is not an option here.
#![allow(clippy::needless_pass_by_value)]

mod convert;
mod runtime;

use std::future::Future;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyFloat, PyInt, PyString, PyType};

use crate::error::Error;
use crate::event::StorableEvent as CoreEvent;
use crate::filter::{
    Bound as CoreBound, Filter as CoreFilter, FilterItem, Predicate, PredicateGroup, PredicateValue,
};
use crate::sql::TableName;
use crate::store::{Consistency, EventStore as CoreStore, StoreConfig};
use convert::{Rows, SnapshotRow};

/// One class of the facade's `dynamic_streams.errors`, imported on first use.
fn error_class<'py>(py: Python<'py>, name: &'static str) -> PyResult<Bound<'py, PyType>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = MODULE.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("dynamic_streams.errors")?.unbind())
    })?;
    Ok(module.bind(py).getattr(name)?.cast_into()?)
}

/// The exception class for a SQLSTATE, by its class (first two characters).
fn class_for_sqlstate(sqlstate: &str) -> &'static str {
    match sqlstate.get(..2) {
        Some("23") => "IntegrityError",
        Some("22") => "DataError",
        Some("42" | "2B" | "2D" | "3F" | "44") => "ProgrammingError",
        Some("08" | "40" | "53" | "54" | "55" | "57" | "58" | "XX") => "OperationalError",
        _ => "DatabaseError",
    }
}

/// The only conversion from engine errors to Python exceptions.
fn to_py(py: Python<'_>, err: Error) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let message = err.to_string();
        let (class, attrs): (&str, Vec<(&str, Py<PyAny>)>) = match &err {
            Error::InvalidInput(_) => ("InvalidInputError", vec![]),
            Error::ConcurrencyConflict { expected } => (
                "ConcurrencyConflictError",
                vec![(
                    "expected_max_sequence_number",
                    expected.into_pyobject(py)?.into_any().unbind(),
                )],
            ),
            Error::Timeout(_) => ("OperationTimeoutError", vec![]),
            Error::Connection(_) => ("OperationalError", vec![]),
            Error::Closed => ("InterfaceError", vec![]),
            Error::Database {
                sqlstate, detail, ..
            } => (
                class_for_sqlstate(sqlstate),
                vec![
                    ("sqlstate", PyString::new(py, sqlstate).into_any().unbind()),
                    (
                        "detail",
                        detail.as_deref().into_pyobject(py)?.into_any().unbind(),
                    ),
                ],
            ),
        };
        let exc = error_class(py, class)?.call1((message,))?;
        for (name, value) in attrs {
            exc.setattr(name, value)?;
        }
        Ok(PyErr::from_value(exc))
    };
    build().unwrap_or_else(|e| e)
}

fn interface_error(py: Python<'_>, message: &str) -> PyErr {
    match error_class(py, "InterfaceError").and_then(|c| c.call1((message,))) {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

fn seconds(py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Duration>> {
    timeout
        .map(|t| {
            Duration::try_from_secs_f64(t)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    to_py(
                        py,
                        Error::invalid("timeout must be a positive, finite number of seconds"),
                    )
                })
        })
        .transpose()
}

enum Outcome<T> {
    Done(crate::Result<T>),
    Interrupted(PyErr),
}

/// The one place that blocks on a future, on `rt`: the GIL is released while it runs, and
/// about four times a second the thread checks for signals, so Ctrl-C interrupts the call
/// (dropping the future cancels its statement on the server).
#[allow(clippy::redundant_closure_for_method_calls)] // a method path is not general over 'py
fn wait<T, F>(py: Python<'_>, rt: &'static Runtime, fut: F) -> PyResult<T>
where
    F: Future<Output = crate::Result<T>> + Send,
    T: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(interface_error(
            py,
            "the synchronous EventStore cannot be called from inside a tokio runtime; use AsyncEventStore",
        ));
    }
    let outcome = py.detach(|| {
        rt.block_on(async move {
            let mut fut = std::pin::pin!(fut);
            loop {
                tokio::select! {
                    result = &mut fut => return Outcome::Done(result),
                    () = tokio::time::sleep(Duration::from_millis(250)) => {
                        if let Err(e) = Python::attach(|py| py.check_signals()) {
                            return Outcome::Interrupted(e);
                        }
                    }
                }
            }
        })
    });
    if !matches!(outcome, Outcome::Done(Ok(_))) {
        // A call that failed or was interrupted may have dropped its connection: one turn of
        // the runtime lets that connection's task see it and close the socket now.
        py.detach(|| rt.block_on(tokio::task::yield_now()));
    }
    match outcome {
        Outcome::Done(Ok(v)) => Ok(v),
        Outcome::Done(Err(e)) => Err(to_py(py, e)),
        Outcome::Interrupted(e) => Err(e),
    }
}

/// Runs `fut` on the shared runtime as an asyncio awaitable.
fn awaitable<'py, T, F>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = crate::Result<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    pyo3_async_runtimes::generic::future_into_py::<runtime::Shared, _, _>(py, async move {
        fut.await.map_err(|e| Python::attach(|py| to_py(py, e)))
    })
}

fn predicate_value(value: &Bound<'_, PyAny>) -> PyResult<PredicateValue> {
    // bool before int: Python's bool is an int.
    if let Ok(b) = value.cast::<PyBool>() {
        return Ok(PredicateValue::Bool(b.is_true()));
    }
    if value.is_instance_of::<PyInt>() {
        return value
            .extract::<i64>()
            .map(PredicateValue::Int)
            .map_err(|_| {
                to_py(
                    value.py(),
                    Error::invalid("integer predicate values must fit in 64 bits"),
                )
            });
    }
    if value.is_instance_of::<PyFloat>() {
        return Ok(PredicateValue::Float(value.extract()?));
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(PredicateValue::Str(s.to_str()?.to_owned()));
    }
    Err(PyTypeError::new_err(format!(
        "predicate values must be str, int, float or bool, not {}",
        value.get_type().name()?
    )))
}

type RawItem<'py> = (
    Vec<String>,
    Option<String>,
    Vec<(String, Bound<'py, PyAny>)>,
);

fn core_bound(
    py: Python<'_>,
    bound: Option<(&str, Option<i64>, Option<i64>)>,
) -> PyResult<CoreBound> {
    Ok(match bound {
        None => CoreBound::None,
        Some(("from", Some(f), None)) => CoreBound::OccurredFrom(f),
        Some(("until", None, Some(u))) => CoreBound::OccurredUntil(u),
        Some(("between", Some(f), Some(u))) => CoreBound::OccurredBetween(f, u),
        Some(("after", Some(n), None)) => CoreBound::SequenceNumberAbove(n),
        Some(_) => return Err(to_py(py, Error::invalid("unknown bound"))),
    })
}

/// A validated, sanitised event filter.
#[pyclass(frozen, module = "dynamic_streams._native")]
pub struct Filter {
    inner: Arc<CoreFilter>,
}

#[pymethods]
impl Filter {
    /// Builds a filter from items `(event_types, "any" | "all" | None, [(key, value), ...])`
    /// and an optional bound `(kind, a, b)`; `items=None` matches every event.
    #[new]
    #[pyo3(signature = (items, bound=None))]
    fn new(
        py: Python<'_>,
        items: Option<Vec<RawItem<'_>>>,
        bound: Option<(String, Option<i64>, Option<i64>)>,
    ) -> PyResult<Self> {
        let bound = core_bound(py, bound.as_ref().map(|(k, a, b)| (k.as_str(), *a, *b)))?;
        let filter = match items {
            None => CoreFilter::any_event(bound),
            Some(items) => {
                let mut core_items = Vec::with_capacity(items.len());
                for (types, kind, preds) in items {
                    let preds = preds
                        .into_iter()
                        .map(|(key, v)| {
                            Ok(Predicate {
                                key,
                                value: predicate_value(&v)?,
                            })
                        })
                        .collect::<PyResult<Vec<_>>>()?;
                    let group = match kind.as_deref() {
                        None => None,
                        Some("any") => Some(PredicateGroup::Any(preds)),
                        Some("all") => Some(PredicateGroup::All(preds)),
                        Some(other) => {
                            return Err(to_py(
                                py,
                                Error::invalid(format!("unknown predicate group {other:?}")),
                            ))
                        }
                    };
                    core_items.push(FilterItem::new(types, group).map_err(|e| to_py(py, e))?);
                }
                CoreFilter::new(core_items, bound)
            }
        }
        .map_err(|e| to_py(py, e))?;
        Ok(Self {
            inner: Arc::new(filter),
        })
    }

    /// A deterministic serialisation: equal filters give equal text.
    fn canonical_json(&self) -> String {
        self.inner.canonical_json()
    }

    /// A stable SHA-256 hash (64 hex digits) of the canonical serialisation.
    fn hash(&self) -> String {
        self.inner.hash()
    }

    /// The same filter, only for events stored after `sequence_number`.
    fn after(&self, py: Python<'_>, sequence_number: i64) -> PyResult<Self> {
        let inner = self
            .inner
            .after(sequence_number)
            .map_err(|e| to_py(py, e))?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The SQL and parameters this filter compiles to, for `table` (for inspection).
    fn to_sql(&self, py: Python<'_>, table: &str) -> PyResult<(String, Vec<String>)> {
        let table = TableName::parse(table).map_err(|e| to_py(py, e))?;
        let (sql, params) = crate::sql::query(&table, &self.inner);
        Ok((sql, params.iter().map(|p| format!("{p:?}")).collect()))
    }

    /// The guarded insert this filter compiles to, for `table` (for logs and inspection).
    fn append_sql(&self, py: Python<'_>, table: &str) -> PyResult<String> {
        let table = TableName::parse(table).map_err(|e| to_py(py, e))?;
        Ok(crate::sql::guarded_insert(&table, &self.inner).0)
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

/// An event validated for appending.
#[pyclass(frozen, module = "dynamic_streams._native")]
pub struct StorableEvent {
    inner: CoreEvent,
}

#[pymethods]
impl StorableEvent {
    /// Validates an event: `payload` and `metadata` are JSON object texts, `occurred_at`
    /// microseconds since the Unix epoch (UTC), now when None.
    #[new]
    #[pyo3(signature = (event_type, payload, metadata=None, occurred_at=None))]
    fn new(
        py: Python<'_>,
        event_type: String,
        payload: &str,
        metadata: Option<&str>,
        occurred_at: Option<i64>,
    ) -> PyResult<Self> {
        CoreEvent::new(event_type, payload, metadata, occurred_at)
            .map(|inner| Self { inner })
            .map_err(|e| to_py(py, e))
    }

    #[getter]
    fn event_type(&self) -> &str {
        self.inner.event_type()
    }

    #[getter]
    fn occurred_at(&self) -> i64 {
        self.inner.occurred_at()
    }
}

/// A DCB event store on one table. Every method that waits releases the GIL.
#[pyclass(frozen, module = "dynamic_streams._native")]
pub struct EventStore {
    inner: ManuallyDrop<Arc<CoreStore>>,
    pid: u32,
    /// The runtime that drives this store's connections: the blocking one for synchronous
    /// calls, the shared one for awaitables. A store serves one kind only, since a connection
    /// on the blocking runtime makes progress only while a thread waits on it.
    rt: &'static Runtime,
    asyncio: bool,
}

impl Drop for EventStore {
    fn drop(&mut self) {
        // In a forked child the pool's connections belong to the parent: never close them.
        if std::process::id() == self.pid {
            // SAFETY: dropped exactly once, here.
            unsafe { ManuallyDrop::drop(&mut self.inner) };
        }
    }
}

impl EventStore {
    fn store(&self, py: Python<'_>) -> PyResult<Arc<CoreStore>> {
        if std::process::id() != self.pid {
            return Err(interface_error(
                py,
                "this store was opened before the process forked; open a new store in the child process",
            ));
        }
        Ok(Arc::clone(&self.inner))
    }

    /// Runs a call to its end on the store's runtime. (On an asyncio store that is the shared
    /// runtime, so a synchronous call there works too; the facade makes none.)
    fn wait<T, F>(&self, py: Python<'_>, fut: F) -> PyResult<T>
    where
        F: Future<Output = crate::Result<T>> + Send,
        T: Send,
    {
        wait(py, self.rt, fut)
    }

    /// A call of an asyncio store as an awaitable.
    fn awaitable<'py, T, F>(&self, py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = crate::Result<T>> + Send + 'static,
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        if !self.asyncio {
            return Err(interface_error(
                py,
                "this store was opened for synchronous calls; use AsyncEventStore for asyncio",
            ));
        }
        awaitable(py, fut)
    }

    fn events(events: &[Py<StorableEvent>]) -> Vec<CoreEvent> {
        events.iter().map(|e| e.get().inner.clone()).collect()
    }
}

#[pymethods]
impl EventStore {
    #[new]
    #[pyo3(signature = (dsn, table="events", pool_size=10, timeout=Some(30.0), snapshot_table=None, replica_dsn=None, asyncio=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        dsn: String,
        table: &str,
        pool_size: usize,
        timeout: Option<f64>,
        snapshot_table: Option<&str>,
        replica_dsn: Option<String>,
        asyncio: bool,
    ) -> PyResult<Self> {
        let table = TableName::parse(table).map_err(|e| to_py(py, e))?;
        let snapshot_table = snapshot_table
            .map(TableName::parse)
            .transpose()
            .map_err(|e| to_py(py, e))?;
        let timeout = seconds(py, timeout)?;
        let store = CoreStore::new(StoreConfig {
            dsn,
            table,
            pool_size,
            timeout,
            snapshot_table,
            replica_dsn,
        })
        .map_err(|e| to_py(py, e))?;
        let rt = if asyncio {
            runtime::shared()
        } else {
            runtime::blocking()
        }
        .map_err(|e| interface_error(py, &format!("cannot start the runtime: {e}")))?;
        Ok(Self {
            inner: ManuallyDrop::new(Arc::new(store)),
            pid: std::process::id(),
            rt,
            asyncio,
        })
    }

    /// The table name as given.
    #[getter]
    fn table(&self) -> String {
        self.inner.table().qualified()
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Closes the connection pool; later calls raise `InterfaceError`.
    fn close(&self) {
        if std::process::id() == self.pid {
            self.inner.close();
        }
    }

    #[pyo3(signature = (timeout=None))]
    fn create_schema(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let (store, timeout) = (self.store(py)?, seconds(py, timeout)?);
        self.wait(py, async move { store.create_schema(timeout).await })
    }

    /// The snapshot table, as given or derived (`<table>_snapshots`).
    #[getter]
    fn snapshot_table(&self) -> String {
        self.inner.snapshot_table().qualified()
    }

    #[pyo3(signature = (projection_type, filter_hash, sequence_number, data, timeout=None))]
    fn save_snapshot(
        &self,
        py: Python<'_>,
        projection_type: String,
        filter_hash: String,
        sequence_number: i64,
        data: &str,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        let (store, timeout, data) = (
            self.store(py)?,
            seconds(py, timeout)?,
            snapshot_data(py, data)?,
        );
        self.wait(py, async move {
            store
                .save_snapshot(
                    &projection_type,
                    &filter_hash,
                    sequence_number,
                    &data,
                    timeout,
                )
                .await
        })
    }

    #[pyo3(signature = (projection_type, filter_hash, timeout=None, eventual=false))]
    fn load_snapshot(
        &self,
        py: Python<'_>,
        projection_type: String,
        filter_hash: String,
        timeout: Option<f64>,
        eventual: bool,
    ) -> PyResult<Option<SnapshotRow>> {
        let (store, timeout) = (self.store(py)?, seconds(py, timeout)?);
        self.wait(py, async move {
            store
                .load_snapshot(
                    &projection_type,
                    &filter_hash,
                    consistency(eventual),
                    timeout,
                )
                .await
                .map(|s| s.map(SnapshotRow))
        })
    }

    #[pyo3(signature = (projection_type, filter_hash, timeout=None))]
    fn delete_snapshot(
        &self,
        py: Python<'_>,
        projection_type: String,
        filter_hash: String,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        let (store, timeout) = (self.store(py)?, seconds(py, timeout)?);
        self.wait(py, async move {
            store
                .delete_snapshot(&projection_type, &filter_hash, timeout)
                .await
        })
    }

    #[pyo3(signature = (projection_type, filter_hash, sequence_number, data, timeout=None))]
    fn save_snapshot_async<'py>(
        &self,
        py: Python<'py>,
        projection_type: String,
        filter_hash: String,
        sequence_number: i64,
        data: &str,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (store, timeout, data) = (
            self.store(py)?,
            seconds(py, timeout)?,
            snapshot_data(py, data)?,
        );
        self.awaitable(py, async move {
            store
                .save_snapshot(
                    &projection_type,
                    &filter_hash,
                    sequence_number,
                    &data,
                    timeout,
                )
                .await
        })
    }

    #[pyo3(signature = (projection_type, filter_hash, timeout=None, eventual=false))]
    fn load_snapshot_async<'py>(
        &self,
        py: Python<'py>,
        projection_type: String,
        filter_hash: String,
        timeout: Option<f64>,
        eventual: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (store, timeout) = (self.store(py)?, seconds(py, timeout)?);
        self.awaitable(py, async move {
            store
                .load_snapshot(
                    &projection_type,
                    &filter_hash,
                    consistency(eventual),
                    timeout,
                )
                .await
                .map(|s| s.map(SnapshotRow))
        })
    }

    #[pyo3(signature = (projection_type, filter_hash, timeout=None))]
    fn delete_snapshot_async<'py>(
        &self,
        py: Python<'py>,
        projection_type: String,
        filter_hash: String,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (store, timeout) = (self.store(py)?, seconds(py, timeout)?);
        self.awaitable(py, async move {
            store
                .delete_snapshot(&projection_type, &filter_hash, timeout)
                .await
        })
    }

    /// Drops the table and everything in it (for tests and tooling).
    #[pyo3(signature = (timeout=None))]
    fn drop_table(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let (store, timeout) = (self.store(py)?, seconds(py, timeout)?);
        self.wait(py, async move { store.drop_table(timeout).await })
    }

    #[pyo3(signature = (filter, timeout=None, eventual=false))]
    fn query(
        &self,
        py: Python<'_>,
        filter: &Filter,
        timeout: Option<f64>,
        eventual: bool,
    ) -> PyResult<Rows> {
        let (store, timeout, filter) = (
            self.store(py)?,
            seconds(py, timeout)?,
            Arc::clone(&filter.inner),
        );
        self.wait(py, async move {
            store
                .query(&filter, consistency(eventual), timeout)
                .await
                .map(Rows)
        })
    }

    #[pyo3(signature = (filter, expected_max_sequence_number, events, timeout=None))]
    fn append(
        &self,
        py: Python<'_>,
        filter: &Filter,
        expected_max_sequence_number: i64,
        events: Vec<Py<StorableEvent>>,
        timeout: Option<f64>,
    ) -> PyResult<Vec<i64>> {
        let (store, timeout, filter) = (
            self.store(py)?,
            seconds(py, timeout)?,
            Arc::clone(&filter.inner),
        );
        let events = Self::events(&events);
        self.wait(py, async move {
            store
                .append(&filter, expected_max_sequence_number, &events, timeout)
                .await
        })
    }

    #[pyo3(signature = (timeout=None))]
    fn create_schema_async<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (store, timeout) = (self.store(py)?, seconds(py, timeout)?);
        self.awaitable(py, async move { store.create_schema(timeout).await })
    }

    #[pyo3(signature = (filter, timeout=None, eventual=false))]
    fn query_async<'py>(
        &self,
        py: Python<'py>,
        filter: &Filter,
        timeout: Option<f64>,
        eventual: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (store, timeout, filter) = (
            self.store(py)?,
            seconds(py, timeout)?,
            Arc::clone(&filter.inner),
        );
        self.awaitable(py, async move {
            store
                .query(&filter, consistency(eventual), timeout)
                .await
                .map(Rows)
        })
    }

    #[pyo3(signature = (filter, expected_max_sequence_number, events, timeout=None))]
    fn append_async<'py>(
        &self,
        py: Python<'py>,
        filter: &Filter,
        expected_max_sequence_number: i64,
        events: Vec<Py<StorableEvent>>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (store, timeout, filter) = (
            self.store(py)?,
            seconds(py, timeout)?,
            Arc::clone(&filter.inner),
        );
        let events = Self::events(&events);
        self.awaitable(py, async move {
            store
                .append(&filter, expected_max_sequence_number, &events, timeout)
                .await
        })
    }
}

/// The key index rows of an event with payload `payload_json` stored in `table`, for bulk
/// loaders that write the tables directly (with COPY).
#[pyfunction]
fn index_keys(py: Python<'_>, table: &str, payload_json: &str) -> PyResult<Vec<i64>> {
    let table = TableName::parse(table).map_err(|e| to_py(py, e))?;
    let event = CoreEvent::new("_", payload_json, None, Some(0)).map_err(|e| to_py(py, e))?;
    Ok(crate::guard::index_keys(&table, event.payload()))
}

fn consistency(eventual: bool) -> Consistency {
    if eventual {
        Consistency::Eventual
    } else {
        Consistency::Strong
    }
}

/// Snapshot data arrives as JSON text; anything JSON is allowed.
fn snapshot_data(py: Python<'_>, text: &str) -> PyResult<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| {
        to_py(
            py,
            Error::invalid(format!("the snapshot data is not valid JSON: {e}")),
        )
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(index_keys, m)?)?;
    m.add_class::<Filter>()?;
    m.add_class::<StorableEvent>()?;
    m.add_class::<EventStore>()?;
    Ok(())
}
