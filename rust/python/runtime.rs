//! The process's tokio runtimes, built on first use, never at import, and rebuilt in a child
//! process after `fork` (the parent's threads do not exist there).
//!
//! - [`blocking`]: a current-thread runtime for the synchronous store. The Python thread that
//!   waits drives the connection's I/O itself, so a call costs no hand-offs between threads
//!   (measured: about 0.1 ms of a 0.5 ms query). Several threads may wait at once; tokio
//!   lets them share the runtime's driver.
//! - [`shared`]: a multi-thread runtime for the asyncio store: its I/O must go on while
//!   Python's event loop runs other tasks. A call's outcome goes back to the loop's own
//!   thread, which turns it into Python ([`Finished`]): no runtime thread takes the GIL for it.
//!
//! A store's connections live on the runtime of the store's kind, which drives them, and
//! [`Calls::run`] is the one place a call meets its runtime: it blocks on it (the GIL
//! released) for a synchronous store, or hands it to asyncio as an awaitable.

use std::cell::RefCell;
use std::future::Future;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, Weak};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::{intern, BoundObject, IntoPyObjectExt};
use tokio::runtime::Runtime;

use super::errors::{interface_error, to_py};

/// How a store's calls run: to their end on the calling thread, or as asyncio awaitables.
#[derive(Clone, Copy)]
pub enum Calls {
    /// The synchronous store: the waiting thread drives the calls on [`blocking`].
    Blocking(&'static Runtime),
    /// The asyncio store: awaitables on [`shared`].
    Asyncio,
}

impl Calls {
    /// The calls of a synchronous (`asyncio` false) or asyncio store, with their runtime
    /// built if this process has none yet.
    pub fn new(asyncio: bool) -> std::io::Result<Self> {
        if asyncio {
            shared().map(|_| Self::Asyncio)
        } else {
            blocking().map(Self::Blocking)
        }
    }

    /// Lets the connections a store just dropped close (the multi-thread runtime's tasks run
    /// by themselves).
    pub fn settle(self, py: Python<'_>) {
        if let Self::Blocking(rt) = self {
            turn(py, rt);
        }
    }

    /// Runs `fut`: its value for a synchronous store, an awaitable of it for an asyncio one.
    pub fn run<'py, T, F>(self, py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = crate::Result<T>> + Send + 'static,
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        match self {
            Self::Blocking(rt) => wait(py, rt, fut)?
                .into_pyobject(py)
                .map(BoundObject::into_any)
                .map(BoundObject::into_bound)
                .map_err(Into::into),
            Self::Asyncio => awaitable(py, fut),
        }
    }
}

/// `fut` as an awaitable of the running event loop: a future of the loop, whose outcome
/// [`Finished`] sets once `fut` has run on [`shared`]. Cancelling the future drops `fut`
/// (which cancels its statement on the server).
fn awaitable<'py, T, F>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = crate::Result<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let event_loop = GET_RUNNING_LOOP
        .get_or_try_init(py, || {
            PyResult::Ok(py.import("asyncio")?.getattr("get_running_loop")?.unbind())
        })?
        .bind(py)
        .call0()?;
    let future = event_loop.call_method0(intern!(py, "create_future"))?;
    let pending = Pending {
        finished: Finished::of(&event_loop)?,
        future: Some(future.clone().unbind()),
    };
    let task = shared()?.spawn(async move {
        let result = fut.await;
        pending.deliver(Box::new(move |py| {
            result.map_err(|e| to_py(py, e))?.into_py_any(py)
        }));
    });
    future.call_method1(
        intern!(py, "add_done_callback"),
        (AbortIfCancelled(task.abort_handle()),),
    )?;
    Ok(future)
}

/// A finished call's outcome, turned into Python on the event loop's thread.
type Delivery = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// The calls of one event loop that have finished, waiting for the loop to set their futures.
/// A runtime thread leaves each here and, unless the loop was told already, writes a byte to
/// `sender`; the loop watches `receiver` and takes them all ([`Deliver`]). So no runtime
/// thread takes the GIL or waits for the loop's thread, and the loop wakes once for however
/// many calls finished meanwhile. Measured against setting each result from a runtime thread
/// that takes the GIL (pyo3-async-runtimes' way), alternating builds on one server, 2 cores:
/// a lending query 0.43 against 0.55 ms, and 8 tasks' use cases 2,500 against 1,950 a second.
struct Finished {
    pid: u32,
    done: Mutex<Vec<(Py<PyAny>, Delivery)>>,
    told: AtomicBool,
    sender: UnixStream,
    receiver: UnixStream,
}

thread_local! {
    /// The event loop this thread last called from, and its [`Finished`] while the loop keeps
    /// it: the loop's reader ([`Deliver`]) and the calls in flight hold it, so its socket pair
    /// closes with the loop (`close` drops the loop's readers), not at this thread's next loop.
    static LOOP: RefCell<Option<(Py<PyAny>, Weak<Finished>)>> = const { RefCell::new(None) };
}

impl Finished {
    /// Those of `event_loop`, the running loop of this thread: made, and watched by the loop,
    /// on its first call (and again in a child process after `fork`).
    fn of(event_loop: &Bound<'_, PyAny>) -> PyResult<Arc<Self>> {
        let pid = std::process::id();
        let known = LOOP.with_borrow(|current| match current {
            Some((known, finished)) if known.is(event_loop) => {
                finished.upgrade().filter(|f| f.pid == pid)
            }
            _ => None,
        });
        if let Some(finished) = known {
            return Ok(finished);
        }
        let (receiver, sender) = UnixStream::pair()?;
        receiver.set_nonblocking(true)?;
        sender.set_nonblocking(true)?;
        let fd = receiver.as_raw_fd();
        let finished = Arc::new(Self {
            pid,
            done: Mutex::new(Vec::new()),
            told: AtomicBool::new(false),
            sender,
            receiver,
        });
        event_loop.call_method1(
            intern!(event_loop.py(), "add_reader"),
            (fd, Deliver(finished.clone())),
        )?;
        LOOP.set(Some((
            event_loop.clone().unbind(),
            Arc::downgrade(&finished),
        )));
        Ok(finished)
    }

    fn leave(&self, future: Py<PyAny>, outcome: Delivery) {
        self.done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((future, outcome));
        if !self.told.swap(true, Ordering::AcqRel) {
            // Only fails when the socket's buffer is full: of bytes the loop is yet to read.
            let _ = (&self.sender).write(&[1]);
        }
    }
}

/// A call's future until the call leaves its outcome. Dropped without one (the call panicked),
/// it leaves an error, so that nobody awaits for ever; dropped because the future was
/// cancelled, its error is never seen.
struct Pending {
    finished: Arc<Finished>,
    future: Option<Py<PyAny>>,
}

impl Pending {
    fn deliver(mut self, outcome: Delivery) {
        if let Some(future) = self.future.take() {
            self.finished.leave(future, outcome);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(future) = self.future.take() {
            let lost: Delivery = Box::new(|py| {
                Err(interface_error(
                    py,
                    "the call failed inside the library (a bug)",
                ))
            });
            self.finished.leave(future, lost);
        }
    }
}

/// The event loop's reader of [`Finished`]: sets the futures of the calls that finished.
#[pyclass(frozen)]
struct Deliver(Arc<Finished>);

#[pymethods]
impl Deliver {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        let mut bytes = [0_u8; 64];
        while matches!((&self.0.receiver).read(&mut bytes), Ok(n) if n > 0) {}
        // Cleared before taking: a call left after this is taken now, or tells the loop again.
        self.0.told.store(false, Ordering::Release);
        let done = std::mem::take(&mut *self.0.done.lock().unwrap_or_else(PoisonError::into_inner));
        // Every future is set, whatever one of them raises.
        let mut failed = None;
        for (future, outcome) in done {
            if let Err(e) = settle(future.bind(py), outcome) {
                failed.get_or_insert(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

fn settle(future: &Bound<'_, PyAny>, outcome: Delivery) -> PyResult<()> {
    let py = future.py();
    // Cancelled while its call ran: nobody awaits it.
    if future.call_method0(intern!(py, "done"))?.is_truthy()? {
        return Ok(());
    }
    match outcome(py) {
        Ok(value) => future.call_method1(intern!(py, "set_result"), (value,)),
        Err(e) => future.call_method1(intern!(py, "set_exception"), (e,)),
    }
    .map(drop)
}

/// A future's done callback: a cancelled future's call is dropped on the runtime.
#[pyclass(frozen)]
struct AbortIfCancelled(tokio::task::AbortHandle);

#[pymethods]
impl AbortIfCancelled {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future
            .call_method0(intern!(future.py(), "cancelled"))?
            .is_truthy()?
        {
            self.0.abort();
        }
        Ok(())
    }
}

/// One turn of a current-thread runtime, whose tasks run only while a caller waits on it: the
/// tasks of connections just dropped see it, and close their sockets now rather than at the
/// next call (or never, if no call comes).
fn turn(py: Python<'_>, rt: &'static Runtime) {
    py.detach(|| rt.block_on(tokio::task::yield_now()));
}

/// Runs `fut` in the background on the process's multi-thread runtime, which runs all the
/// time (a subscription's listener must read notifications whatever its consumer does).
pub fn spawn_background(fut: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    shared()?.spawn(fut);
    Ok(())
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
        // A call that failed or was interrupted may have dropped its connection.
        turn(py, rt);
    }
    match outcome {
        Outcome::Done(Ok(v)) => Ok(v),
        Outcome::Done(Err(e)) => Err(to_py(py, e)),
        Outcome::Interrupted(e) => Err(e),
    }
}

struct ProcessRuntime {
    pid: u32,
    runtime: Runtime,
}

static SHARED: AtomicPtr<ProcessRuntime> = AtomicPtr::new(std::ptr::null_mut());
static BLOCKING: AtomicPtr<ProcessRuntime> = AtomicPtr::new(std::ptr::null_mut());

/// The multi-thread runtime of this process: the asyncio stores' calls, the subscriptions'
/// listeners, the vacuums.
fn shared() -> std::io::Result<&'static Runtime> {
    process_runtime(&SHARED, || {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("dynamic-streams")
            .enable_all()
            .build()
    })
}

/// The current-thread runtime of this process.
fn blocking() -> std::io::Result<&'static Runtime> {
    process_runtime(&BLOCKING, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    })
}

/// Lock-free, so that a fork taken while another thread builds a runtime cannot leave the
/// child waiting on a lock.
fn process_runtime(
    cell: &AtomicPtr<ProcessRuntime>,
    build: impl Fn() -> std::io::Result<Runtime>,
) -> std::io::Result<&'static Runtime> {
    let pid = std::process::id();
    loop {
        let current = cell.load(Ordering::Acquire);
        // SAFETY: a published runtime is never freed (see below), so the pointer stays valid.
        if let Some(rt) = unsafe { current.as_ref() } {
            if rt.pid == pid {
                return Ok(&rt.runtime);
            }
        }
        let fresh = Box::into_raw(Box::new(ProcessRuntime {
            pid,
            runtime: build()?,
        }));
        match cell.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
            // A runtime inherited through fork is leaked on purpose: its threads are gone,
            // and dropping it would wait for them.
            // SAFETY: `fresh` was just published and is never freed.
            Ok(_) => return Ok(unsafe { &(*fresh).runtime }),
            // Another thread published first: drop ours (never used) and take theirs.
            // SAFETY: `fresh` was never shared.
            Err(_) => drop(unsafe { Box::from_raw(fresh) }),
        }
    }
}

/// Whether the runtime's threads may still enter Python: closed by [`close_python_gate`]
/// when the interpreter exits. A thread that takes the GIL while the interpreter finalizes
/// is ended by the interpreter in the middle of Rust frames, which aborts the process. So a
/// runtime thread enters Python only through [`enter_python`], holding this gate's read side,
/// and the exit hook takes the write side.
static PYTHON_GATE: RwLock<bool> = RwLock::new(true);

/// Runs `f` with the GIL from a runtime thread, unless the interpreter is exiting (then not
/// at all).
pub fn enter_python(f: impl FnOnce(Python<'_>)) {
    let open: RwLockReadGuard<'_, bool> =
        PYTHON_GATE.read().unwrap_or_else(PoisonError::into_inner);
    if *open {
        Python::attach(f);
    }
}

/// Registered with `atexit` when the module loads: waits (the GIL released) for the runtime
/// threads that are inside Python, and keeps every later one out.
#[pyfunction]
pub fn close_python_gate(py: Python<'_>) {
    py.detach(|| *PYTHON_GATE.write().unwrap_or_else(PoisonError::into_inner) = false);
}
