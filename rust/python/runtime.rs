//! The process's one tokio runtime: built on first use, never at import, and rebuilt in a
//! child process after `fork` (the parent's worker threads do not exist there).
//!
//! Also the bridge that lets pyo3-async-runtimes spawn on this runtime, so sync and async
//! calls share it.

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

static CURRENT: AtomicPtr<ProcessRuntime> = AtomicPtr::new(std::ptr::null_mut());

/// The runtime of this process, built on first use. Lock-free, so that a fork taken while
/// another thread builds it cannot leave the child waiting on a lock.
pub fn get() -> std::io::Result<&'static Runtime> {
    let pid = std::process::id();
    loop {
        let current = CURRENT.load(Ordering::Acquire);
        // SAFETY: a published runtime is never freed (see below), so the pointer stays valid.
        if let Some(rt) = unsafe { current.as_ref() } {
            if rt.pid == pid {
                return Ok(&rt.runtime);
            }
        }
        let fresh = Box::into_raw(Box::new(ProcessRuntime {
            pid,
            runtime: tokio::runtime::Builder::new_multi_thread()
                .thread_name("dynamic-streams")
                .enable_all()
                .build()?,
        }));
        match CURRENT.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
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

/// pyo3-async-runtimes' view of [`get`]: awaitables run on the same runtime as sync calls.
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
        get().unwrap_or_else(|e| spawn_error(&e)).spawn(fut)
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        get().unwrap_or_else(|e| spawn_error(&e)).spawn_blocking(f)
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
