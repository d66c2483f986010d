//! Reads and subscriptions for Python: each page is one call, returned (or awaited) through
//! the store's [`Calls`]; a read also reads its next page ahead while Python takes in this
//! one, and a subscription holds no connection between pages.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::convert::{CallTimeout, Events};
use super::errors::interface_error;
use super::runtime::Calls;
use crate::event::RecordedEvent;
use crate::store::{EventStore, Reader};
use crate::subscription::{Stop, Subscription};

/// A read in progress; ``next()`` returns its next page (empty when it is done).
#[pyclass(frozen, module = "dynamic_streams._native", name = "Reader")]
pub struct PyReader {
    store: Arc<EventStore>,
    progress: Arc<Mutex<Progress>>,
    calls: Calls,
    /// The process the read was started in: a forked child has neither its connections nor
    /// the runtime that runs its read ahead.
    pid: u32,
}

/// How far a read got: where its next page starts, that page being read ahead, and how many
/// pages it returned.
struct Progress {
    reader: Reader,
    ahead: Option<Ahead>,
    pages: u64,
}

/// The read of the next page, on a clone of the reader: the reader moves on only when its
/// page is taken, so a page read ahead and never taken is read again. Dropped, it is
/// stopped (its connection's statement is cancelled).
struct Ahead(JoinHandle<crate::Result<(Reader, Vec<RecordedEvent>)>>);

impl Drop for Ahead {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PyReader {
    pub fn new(store: Arc<EventStore>, reader: Reader, calls: Calls) -> Self {
        Self {
            store,
            progress: Arc::new(Mutex::new(Progress {
                reader,
                ahead: None,
                pages: 0,
            })),
            calls,
            pid: std::process::id(),
        }
    }

    fn check_process(&self, py: Python<'_>) -> PyResult<()> {
        if std::process::id() == self.pid {
            Ok(())
        } else {
            Err(interface_error(
                py,
                "this read was started before the process forked; start it again in the child process",
            ))
        }
    }
}

#[pymethods]
impl PyReader {
    /// The next page. From the second page on, each call also starts reading the page after
    /// it, so that the server reads it while Python takes in this one (a catch-up waits for
    /// the server about a third of its time otherwise). A read that stops after its first
    /// page (`next(store.read(...))`) reads nothing ahead.
    #[pyo3(signature = (timeout))]
    fn next<'py>(&self, py: Python<'py>, timeout: CallTimeout) -> PyResult<Bound<'py, PyAny>> {
        self.check_process(py)?;
        let (store, progress) = (Arc::clone(&self.store), Arc::clone(&self.progress));
        self.calls.run(py, async move {
            let mut progress = progress.lock().await;
            let (next, page) = if let Some(mut pending) = progress.ahead.take() {
                match (&mut pending.0).await {
                    Ok(read) => read?,
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                }
            } else {
                let mut next = progress.reader.clone();
                let page = store.read(&mut next, timeout.0).await?;
                (next, page)
            };
            let read_ahead = (!page.is_empty() && progress.pages > 0).then(|| {
                let mut after = next.clone();
                Ahead(tokio::spawn(async move {
                    let page = store.read(&mut after, timeout.0).await?;
                    Ok((after, page))
                }))
            });
            if read_ahead.is_some() {
                // A few turns of the runtime: the read takes its connection and sends its
                // statement before the caller stops driving the runtime (the synchronous
                // store's runs only while a call waits).
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
            }
            // Nothing is awaited from here on: a call dropped before (Ctrl-C, a cancelled
            // task) leaves the read where it was, and its page is read again.
            progress.reader = next;
            progress.ahead = read_ahead;
            progress.pages += u64::from(!page.is_empty());
            Ok(Events(page))
        })
    }

    /// Stops the read ahead, if any, and waits until it has let go of its connection.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.check_process(py)?;
        let progress = Arc::clone(&self.progress);
        self.calls.run(py, async move {
            let pending = progress.lock().await.ahead.take();
            if let Some(mut pending) = pending {
                pending.0.abort();
                // Stopped, or done: its connection is back in the pool, or dropped; a turn of
                // the runtime has a dropped one's task close its socket now.
                let _ = (&mut pending.0).await;
                tokio::task::yield_now().await;
            }
            Ok(())
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

    /// Stops the subscription: a waiting ``next`` returns None, and its listener ends
    /// (unless another subscription of the store still uses it).
    fn close(&self) {
        self.stop.stop();
        // A `next` in progress holds the subscription, and lets go of the listener itself
        // on its way out.
        if let Ok(mut subscription) = self.subscription.try_lock() {
            subscription.release();
        }
    }

    #[getter]
    fn closed(&self) -> bool {
        self.stop.is_stopped()
    }
}
