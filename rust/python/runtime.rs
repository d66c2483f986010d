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
//! A store's connections live on the runtime of the store's kind, which drives them.

use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3_async_runtimes::generic::{ContextExt, Runtime as GenericRuntime};
use pyo3_async_runtimes::TaskLocals;
use tokio::runtime::Runtime;

struct ProcessRuntime {
    pid: u32,
    runtime: Runtime,
}

static SHARED: AtomicPtr<ProcessRuntime> = AtomicPtr::new(std::ptr::null_mut());
static BLOCKING: AtomicPtr<ProcessRuntime> = AtomicPtr::new(std::ptr::null_mut());

/// The multi-thread runtime of this process.
pub fn shared() -> std::io::Result<&'static Runtime> {
    process_runtime(&SHARED, || {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("dynamic-streams")
            .enable_all()
            .build()
    })
}

/// The current-thread runtime of this process.
pub fn blocking() -> std::io::Result<&'static Runtime> {
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
pub struct Shared;

tokio::task_local! {
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

fn spawn_error(e: &std::io::Error) -> ! {
    // `spawn` has no error channel; failing to build a runtime means the process cannot
    // start threads at all.
    panic!("cannot start the tokio runtime: {e}")
}

impl GenericRuntime for Shared {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        shared().unwrap_or_else(|e| spawn_error(&e)).spawn(fut)
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        shared()
            .unwrap_or_else(|e| spawn_error(&e))
            .spawn_blocking(f)
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
