//! The store for Python: one native method per operation. A store serves either
//! synchronous calls or asyncio ones, chosen when it is opened; each method returns the
//! value, or an awaitable of it, through [`Calls::run`].

use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat};

use super::convert::{seconds, CallTimeout, Rows, SnapshotRow, STORE_DEFAULT};
use super::errors::{interface_error, invalid, OrRaise};
use super::event::PyStorableEvent;
use super::filter::PyFilter;
use super::reading::{PyReader, PySubscription};
use super::runtime::{enter_python, spawn_background, Calls};
use crate::event::StorableEvent;
use crate::pool::PoolStatus;
use crate::sql::statements;
use crate::store::{Consistency, EventStore, Reader, StoreConfig};
use crate::subscription::Subscription;
use crate::table::TableName;
use crate::upkeep::Background;

/// The engine's events, out of their Python wrappers (the call outlives the borrow).
fn owned(events: &[PyRef<'_, PyStorableEvent>]) -> Vec<StorableEvent> {
    events.iter().map(|e| e.inner.clone()).collect()
}

fn consistency(eventual: bool) -> Consistency {
    if eventual {
        Consistency::Eventual
    } else {
        Consistency::Strong
    }
}

/// The events a store writes between two vacuums of its tables, unless told otherwise: as
/// many as make autovacuum consider them (`sql/ddl.rs`).
const VACUUM_EVERY: u64 = 10_000;

/// Runs a store's background work on the runtime that runs all the time; if the process
/// cannot start it, the work is left undone (autovacuum does it later).
fn spawn(work: Pin<Box<dyn Future<Output = ()> + Send>>) {
    drop(spawn_background(work));
}

/// Tells what a store's background work could not do as a warning of the library's logger
/// (`dynamic_streams`), unless the interpreter is exiting.
fn warn(message: &str) {
    enter_python(|py| {
        let logged = py
            .import("logging")
            .and_then(|logging| logging.call_method1("getLogger", ("dynamic_streams",)))
            .and_then(|logger| logger.call_method1("warning", ("%s", message)));
        if let Err(e) = logged {
            e.write_unraisable(py, None);
        }
    });
}

/// A DCB event store on one table. Every method that waits releases the GIL.
#[pyclass(frozen, module = "dynamic_streams._native", name = "EventStore")]
pub struct PyEventStore {
    inner: ManuallyDrop<Arc<EventStore>>,
    pid: u32,
    calls: Calls,
}

impl Drop for PyEventStore {
    fn drop(&mut self) {
        // In a forked child the pool's connections belong to the parent: never close them.
        if std::process::id() == self.pid {
            // SAFETY: dropped exactly once, here.
            unsafe { ManuallyDrop::drop(&mut self.inner) };
        }
    }
}

impl PyEventStore {
    fn store(&self, py: Python<'_>) -> PyResult<Arc<EventStore>> {
        if std::process::id() != self.pid {
            return Err(interface_error(
                py,
                "this store was opened before the process forked; open a new store in the child process",
            ));
        }
        Ok(Arc::clone(&self.inner))
    }
}

#[pymethods]
impl PyEventStore {
    /// Opens a store (no I/O): its calls return values, or awaitables when ``asyncio``.
    #[new]
    #[pyo3(signature = (dsn, table="events", pool_size=10, timeout=Some(30.0), snapshot_table=None, replica_dsn=None, asyncio=false, pool_timeout=None, vacuum_every=Some(VACUUM_EVERY)))]
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
        pool_timeout: Option<f64>,
        vacuum_every: Option<u64>,
    ) -> PyResult<Self> {
        let store = EventStore::new(StoreConfig {
            dsn,
            table: TableName::parse(table).or_raise(py)?,
            pool_size,
            timeout: timeout
                .map(|t| seconds("timeout", &PyFloat::new(py, t)))
                .transpose()?,
            snapshot_table: snapshot_table
                .map(TableName::parse)
                .transpose()
                .or_raise(py)?,
            replica_dsn,
            pool_timeout: pool_timeout
                .map(|t| seconds("pool_timeout", &PyFloat::new(py, t)))
                .transpose()?,
            vacuum_every,
            background: Some(Background { spawn, warn }),
        })
        .or_raise(py)?;
        let calls = Calls::new(asyncio)
            .map_err(|e| interface_error(py, &format!("cannot start the runtime: {e}")))?;
        Ok(Self {
            inner: ManuallyDrop::new(Arc::new(store)),
            pid: std::process::id(),
            calls,
        })
    }

    /// The table name as given.
    #[getter]
    fn table(&self) -> String {
        self.inner.table().qualified()
    }

    /// The snapshot table, as given or derived (``<table>_snapshots``).
    #[getter]
    fn snapshot_table(&self) -> String {
        self.inner.snapshot_table().qualified()
    }

    /// Whether ``close()`` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Its pools' connections (open, idle, waiting callers, most) and its vacuums (done,
    /// failed), now, as plain values (no I/O).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.store(py)?.stats();
        let pool = |p: PoolStatus| (p.open, p.idle, p.waiting, p.max_size);
        let out = PyDict::new(py);
        out.set_item("pool", pool(stats.pool))?;
        out.set_item("replica_pool", stats.replica.map(pool))?;
        out.set_item("vacuums", stats.vacuums.done)?;
        out.set_item("failed_vacuums", stats.vacuums.failed)?;
        out.set_item("own_connections", stats.own_connections)?;
        Ok(out)
    }

    /// Closes the connection pool, its sessions ended; later calls raise ``InterfaceError``.
    fn close(&self, py: Python<'_>) {
        if std::process::id() == self.pid {
            self.inner.close();
            self.calls.settle(py);
        }
    }

    #[pyo3(signature = (timeout=STORE_DEFAULT))]
    fn create_schema<'py>(
        &self,
        py: Python<'py>,
        timeout: CallTimeout,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store(py)?;
        self.calls
            .run(py, async move { store.create_schema(timeout.0).await })
    }

    /// Drops the table and everything in it (for tests and tooling).
    #[pyo3(signature = (timeout=STORE_DEFAULT))]
    fn drop_table<'py>(
        &self,
        py: Python<'py>,
        timeout: CallTimeout,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store(py)?;
        self.calls
            .run(py, async move { store.drop_table(timeout.0).await })
    }

    #[pyo3(signature = (filter, timeout=STORE_DEFAULT, eventual=false))]
    fn query<'py>(
        &self,
        py: Python<'py>,
        filter: &PyFilter,
        timeout: CallTimeout,
        eventual: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (store, filter) = (self.store(py)?, Arc::clone(&filter.inner));
        self.calls.run(py, async move {
            store
                .query(&filter, consistency(eventual), timeout.0)
                .await
                .map(Rows)
        })
    }

    #[pyo3(signature = (filter, expected_max_sequence_number, events, timeout=STORE_DEFAULT))]
    fn append<'py>(
        &self,
        py: Python<'py>,
        filter: &PyFilter,
        expected_max_sequence_number: i64,
        events: Vec<PyRef<'py, PyStorableEvent>>,
        timeout: CallTimeout,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (store, filter) = (self.store(py)?, Arc::clone(&filter.inner));
        let events = owned(&events);
        self.calls.run(py, async move {
            store
                .append(&filter, expected_max_sequence_number, &events, timeout.0)
                .await
        })
    }

    #[pyo3(signature = (events, timeout=STORE_DEFAULT))]
    fn append_unconditionally<'py>(
        &self,
        py: Python<'py>,
        events: Vec<PyRef<'py, PyStorableEvent>>,
        timeout: CallTimeout,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store(py)?;
        let events = owned(&events);
        self.calls.run(py, async move {
            store.append_unconditionally(&events, timeout.0).await
        })
    }

    /// One batch of an import (through ``COPY``).
    #[pyo3(signature = (events, timeout=STORE_DEFAULT))]
    fn import_batch<'py>(
        &self,
        py: Python<'py>,
        events: Vec<PyRef<'py, PyStorableEvent>>,
        timeout: CallTimeout,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store(py)?;
        let events = owned(&events);
        self.calls
            .run(py, async move { store.import(&events, timeout.0).await })
    }

    #[pyo3(signature = (timeout=STORE_DEFAULT))]
    fn head<'py>(&self, py: Python<'py>, timeout: CallTimeout) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store(py)?;
        self.calls
            .run(py, async move { store.head(timeout.0).await })
    }

    /// A read (no I/O until its first page).
    #[pyo3(signature = (filter, after, limit, backwards, batch_size))]
    fn read(
        &self,
        py: Python<'_>,
        filter: &PyFilter,
        after: i64,
        limit: Option<u64>,
        backwards: bool,
        batch_size: usize,
    ) -> PyResult<PyReader> {
        let store = self.store(py)?;
        let reader = Reader::new(
            store.table(),
            (*filter.inner).clone(),
            after,
            limit,
            backwards,
            batch_size,
        )
        .or_raise(py)?;
        Ok(PyReader::new(store, reader, self.calls))
    }

    /// A subscription, its listener started in the background.
    #[pyo3(signature = (filter, after, batch_size, poll_interval))]
    fn subscribe(
        &self,
        py: Python<'_>,
        filter: &PyFilter,
        after: i64,
        batch_size: usize,
        poll_interval: f64,
    ) -> PyResult<PySubscription> {
        let store = self.store(py)?;
        if store.is_closed() {
            return Err(interface_error(py, "the store is closed"));
        }
        let poll = seconds("poll_interval", &PyFloat::new(py, poll_interval))?;
        let (subscription, listener) =
            Subscription::new(&store, (*filter.inner).clone(), after, batch_size, poll)
                .or_raise(py)?;
        if let Some(listener) = listener {
            spawn_background(listener.run())
                .map_err(|e| interface_error(py, &format!("cannot start the runtime: {e}")))?;
        }
        Ok(PySubscription::new(store, subscription, self.calls))
    }

    #[pyo3(signature = (name, timeout=STORE_DEFAULT))]
    fn checkpoint<'py>(
        &self,
        py: Python<'py>,
        name: String,
        timeout: CallTimeout,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store(py)?;
        self.calls
            .run(py, async move { store.checkpoint(&name, timeout.0).await })
    }

    #[pyo3(signature = (name, position, timeout=STORE_DEFAULT))]
    fn save_checkpoint<'py>(
        &self,
        py: Python<'py>,
        name: String,
        position: i64,
        timeout: CallTimeout,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store(py)?;
        self.calls.run(py, async move {
            store.save_checkpoint(&name, position, timeout.0).await
        })
    }

    /// The checkpoint statements for a connection of the application's own (a projection
    /// that saves its read model and its position in one transaction): the load's and the
    /// save's SQL, parameters ``$1`` the name (and ``$2`` the position).
    #[getter]
    fn checkpoint_sql(&self) -> (String, String) {
        let table = self.inner.table();
        (
            statements::load_checkpoint(table, "").sql,
            statements::save_checkpoint(table, "", 0).sql,
        )
    }

    /// ``data`` is JSON text (anything JSON).
    #[pyo3(signature = (projection_type, filter_hash, sequence_number, data, timeout=STORE_DEFAULT))]
    fn save_snapshot<'py>(
        &self,
        py: Python<'py>,
        projection_type: String,
        filter_hash: String,
        sequence_number: i64,
        data: &str,
        timeout: CallTimeout,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store(py)?;
        let data = serde_json::from_str(data)
            .map_err(|e| invalid(py, format!("the snapshot data is not valid JSON: {e}")))?;
        self.calls.run(py, async move {
            store
                .save_snapshot(
                    &projection_type,
                    &filter_hash,
                    sequence_number,
                    data,
                    timeout.0,
                )
                .await
        })
    }

    #[pyo3(signature = (projection_type, filter_hash, timeout=STORE_DEFAULT, eventual=false))]
    fn load_snapshot<'py>(
        &self,
        py: Python<'py>,
        projection_type: String,
        filter_hash: String,
        timeout: CallTimeout,
        eventual: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store(py)?;
        self.calls.run(py, async move {
            store
                .load_snapshot(
                    &projection_type,
                    &filter_hash,
                    consistency(eventual),
                    timeout.0,
                )
                .await
                .map(SnapshotRow)
        })
    }

    #[pyo3(signature = (projection_type, filter_hash, timeout=STORE_DEFAULT))]
    fn delete_snapshot<'py>(
        &self,
        py: Python<'py>,
        projection_type: String,
        filter_hash: String,
        timeout: CallTimeout,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store(py)?;
        self.calls.run(py, async move {
            store
                .delete_snapshot(&projection_type, &filter_hash, timeout.0)
                .await
        })
    }
}
