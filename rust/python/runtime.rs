//! The process's tokio runtimes, built on first use, never at import, and rebuilt in a child
//! process after `fork` (the parent's threads do not exist there).
//!
//! - [`blocking`]: a current-thread runtime for the synchronous store. The Python thread that
//!   waits drives the connection's I/O itself, so a call costs no hand-offs between threads
//!   (measured: about 0.1 ms of a 0.5 ms query). Several threads may wait at once; tokio
//!   lets them share the runtime's driver.
//! - [`shared`]: a multi-thread runtime for the asyncio store, which pyo3-async-runtimes spawns
//!   awaitables on: their I/O must go on while Python's event loop runs other tasks.
//!
//! A store's connections live on the runtime of the store's kind, which drives them, and
//! [`Calls::run`] is the one place a call meets its runtime: it blocks on it (the GIL
//! released) for a synchronous store, or hands it to asyncio as an awaitable.

use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use std::task::Poll;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::BoundObject;
use pyo3_async_runtimes::generic::{ContextExt, Runtime as GenericRuntime};
use pyo3_async_runtimes::TaskLocals;
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
            Self::Asyncio => {
                pyo3_async_runtimes::generic::future_into_py::<Shared, _, _>(py, async move {
                    fut.await.map_err(|e| Python::attach(|py| to_py(py, e)))
                })
            }
        }
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

/// The multi-thread runtime of this process.
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

/// pyo3-async-runtimes' view of [`shared`].
struct Shared;

tokio::task_local! {
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

fn spawn_error(e: &std::io::Error) -> ! {
    // `spawn` has no error channel; failing to build a runtime means the process cannot
    // start threads at all.
    panic!("cannot start the tokio runtime: {e}")
}

/// Whether the runtime's threads may still enter Python: closed by [`close_python_gate`]
/// when the interpreter exits. An awaitable's completion sets its asyncio future's result
/// from a runtime thread, which takes the GIL; a thread that takes it while the interpreter
/// finalizes is ended by the interpreter in the middle of Rust frames, which aborts the process (one
/// `asyncio.run` in five did, right after its last await). So every task and blocking job
/// of [`Shared`] runs holding this gate's read side, and the exit hook takes the write side.
static PYTHON_GATE: RwLock<bool> = RwLock::new(true);

fn gate() -> RwLockReadGuard<'static, bool> {
    PYTHON_GATE.read().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` with the GIL from a runtime thread, unless the interpreter is exiting (then not
/// at all).
pub fn enter_python(f: impl FnOnce(Python<'_>)) {
    let open = gate();
    if *open {
        Python::attach(f);
    }
}

/// Registered with `atexit` when the module loads: waits (the GIL released) for the runtime
/// threads that are inside Python or about to enter it, and keeps every later one out. Work
/// still in flight then never completes, as the process is ending.
#[pyfunction]
pub fn close_python_gate(py: Python<'_>) {
    py.detach(|| *PYTHON_GATE.write().unwrap_or_else(PoisonError::into_inner) = false);
}

/// A task that is polled only while the gate is open (after it closes, it stays pending and
/// is never woken again).
struct Gated<F>(Pin<Box<F>>);

impl<F: Future<Output = ()>> Future for Gated<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let open = gate();
        if *open {
            self.0.as_mut().poll(cx)
        } else {
            Poll::Pending
        }
    }
}

impl GenericRuntime for Shared {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        shared()
            .unwrap_or_else(|e| spawn_error(&e))
            .spawn(Gated(Box::pin(fut)))
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        shared()
            .unwrap_or_else(|e| spawn_error(&e))
            .spawn_blocking(move || {
                let open = gate();
                if *open {
                    f();
                }
            })
    }
}

impl ContextExt for Shared {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}
